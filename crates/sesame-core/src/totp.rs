//! Time-based (TOTP) knock sequences.
//!
//! Each time step (default 30 s) has its own knock sequence, derived from a
//! user's secret and the step number and mapped into a port range without
//! repeats. A door lists several users, each with their own secret, so users
//! never share sequences (two users' sequences coincide only by chance: with
//! `n` ports and a sequence of `len`, one in `n!/(n-len)!`).
//!
//! # Derivation (version 1)
//!
//! ```text
//! block(i) = HMAC-SHA-256(secret, "sesame-totp-v1" || u64be(step) || u32be(i))   i = 0, 1, 2, ...
//! stream   = block(0) || block(1) || ...
//! ```
//!
//! The stream is read as big-endian 16-bit draws. With `n = hi - lo + 1`
//! ports, a draw `v` is used only when `v < 65536 - 65536 % n` (rejection
//! sampling, so every port is equally likely) and gives port `lo + v % n`; a
//! port already in the sequence is skipped (so no port repeats). Draws go on
//! until the sequence has `len` ports.
//!
//! # Acceptance
//!
//! At unix time `t` the step is `floor(t / period)`; the sequences of that
//! step and of the steps just before and after are accepted (±1 step of
//! clock skew). A sequence of step `s` is thus accepted until the end of step
//! `s + 1`: [`replay_expires`] gives that last second, for the
//! [`crate::replay::ReplayCache`] entry that makes the sequence single-use
//! (key: [`crate::replay::ReplayKey::totp`]).

use std::fmt;
use std::ops::RangeInclusive;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::door::{Knock, Proto, MAX_SEQUENCE_LEN};

/// Default time step in seconds.
pub const DEFAULT_PERIOD: u64 = 30;
/// Shortest accepted secret, in bytes.
pub const MIN_SECRET_LEN: usize = 16;
/// Domain-separation label of the derivation.
const LABEL: &[u8] = b"sesame-totp-v1";
/// Upper bound on HMAC blocks per sequence. Reaching it takes odds far below
/// 2^-1000 with any valid spec; it only guarantees termination.
const MAX_BLOCKS: u32 = 4096;

type HmacSha256 = Hmac<Sha256>;

/// Why a TOTP spec or secret is unusable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TotpError {
    /// Sequence length not in 1..=32.
    #[error("TOTP sequence length {0} is invalid: expected 1 to 32 knocks")]
    BadLength(usize),
    /// Port range empty or including port 0.
    #[error("TOTP port range {0}-{1} is invalid: expected LOW-HIGH with 1 <= LOW <= HIGH")]
    BadRange(u16, u16),
    /// Fewer ports in the range than knocks in the sequence.
    #[error("TOTP port range has {ports} ports, fewer than the {len} knocks of a sequence")]
    RangeTooSmall {
        /// Ports in the range.
        ports: u32,
        /// Knocks per sequence.
        len: usize,
    },
    /// The period is zero.
    #[error("TOTP period must be longer than zero")]
    ZeroPeriod,
    /// The secret is shorter than [`MIN_SECRET_LEN`].
    #[error("TOTP secret is {0} bytes; at least 16 are required")]
    SecretTooShort(usize),
    /// The derivation ran out of blocks (not expected to ever happen).
    #[error("TOTP derivation did not converge")]
    Exhausted,
}

/// A user's TOTP secret. Wiped from memory when dropped; `Debug` shows only
/// its length.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct TotpSecret(Vec<u8>);

impl TotpSecret {
    /// Wraps `bytes` (at least [`MIN_SECRET_LEN`]). The caller should wipe
    /// its own copy.
    pub fn new(bytes: &[u8]) -> Result<Self, TotpError> {
        if bytes.len() < MIN_SECRET_LEN {
            return Err(TotpError::SecretTooShort(bytes.len()));
        }
        Ok(TotpSecret(bytes.to_vec()))
    }

    /// The secret bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TotpSecret({} bytes)", self.0.len())
    }
}

/// The time step containing `unix_secs` (a period of 0 is taken as 1).
pub const fn step_of(unix_secs: u64, period: u64) -> u64 {
    let period = if period == 0 { 1 } else { period };
    unix_secs / period
}

/// The steps accepted at `unix_secs`: the current one and its neighbours,
/// oldest first (no step below 0).
pub fn steps_at(unix_secs: u64, period: u64) -> impl Iterator<Item = u64> {
    let step = step_of(unix_secs, period);
    step.saturating_sub(1)..=step.saturating_add(1)
}

/// The last unix second at which the sequence of `step` is accepted (the end
/// of step `step + 1`): the expiry of its replay cache entry.
pub const fn replay_expires(step: u64, period: u64) -> u64 {
    let period = if period == 0 { 1 } else { period };
    step.saturating_add(2)
        .saturating_mul(period)
        .saturating_sub(1)
}

/// The knock sequence of `step` for `secret`: `len` distinct ports of
/// `ports`, all over `proto`. See the module docs for the derivation.
pub fn derive_sequence(
    secret: &[u8],
    step: u64,
    len: usize,
    ports: RangeInclusive<u16>,
    proto: Proto,
) -> Result<Vec<Knock>, TotpError> {
    let (lo, hi) = (*ports.start(), *ports.end());
    check_shape(len, lo, hi)?;
    let n = u32::from(hi) - u32::from(lo) + 1;
    let zone = 65536 - 65536 % n;
    let mac = HmacSha256::new_from_slice(secret).expect("HMAC takes any key length");
    let mut sequence: Vec<Knock> = Vec::with_capacity(len);
    for block in 0..MAX_BLOCKS {
        let mut m = mac.clone();
        m.update(LABEL);
        m.update(&step.to_be_bytes());
        m.update(&block.to_be_bytes());
        let mut bytes = m.finalize().into_bytes();
        for pair in bytes.chunks_exact(2) {
            let v = u32::from(u16::from_be_bytes([pair[0], pair[1]]));
            if v >= zone {
                continue;
            }
            let port = lo + (v % n) as u16;
            if sequence.iter().any(|k| k.port == port) {
                continue;
            }
            sequence.push(Knock { port, proto });
            if sequence.len() == len {
                bytes.zeroize();
                return Ok(sequence);
            }
        }
        bytes.zeroize();
    }
    Err(TotpError::Exhausted)
}

fn check_shape(len: usize, lo: u16, hi: u16) -> Result<(), TotpError> {
    if len == 0 || len > MAX_SEQUENCE_LEN {
        return Err(TotpError::BadLength(len));
    }
    if lo == 0 || lo > hi {
        return Err(TotpError::BadRange(lo, hi));
    }
    let ports = u32::from(hi) - u32::from(lo) + 1;
    if (ports as usize) < len {
        return Err(TotpError::RangeTooSmall { ports, len });
    }
    Ok(())
}

/// The shape of a TOTP door's sequences.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TotpSpec {
    /// Knocks per sequence, 1 to [`MAX_SEQUENCE_LEN`].
    pub len: usize,
    /// Ports the knocks are drawn from (no port 0).
    pub ports: RangeInclusive<u16>,
    /// Protocol of every knock.
    pub proto: Proto,
    /// Seconds per step.
    pub period: u64,
}

/// One sequence accepted at some time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// Index of the user (in the slice given to [`TotpSpec::candidates`]).
    pub user: usize,
    /// Time step of the sequence.
    pub step: u64,
    /// The knocks.
    pub sequence: Vec<Knock>,
}

impl TotpSpec {
    /// Checks the spec.
    pub fn validate(&self) -> Result<(), TotpError> {
        if self.period == 0 {
            return Err(TotpError::ZeroPeriod);
        }
        check_shape(self.len, *self.ports.start(), *self.ports.end())
    }

    /// The sequence of `step` for `secret`.
    pub fn sequence(&self, secret: &TotpSecret, step: u64) -> Result<Vec<Knock>, TotpError> {
        derive_sequence(
            secret.as_bytes(),
            step,
            self.len,
            self.ports.clone(),
            self.proto,
        )
    }

    /// The sequence to knock at `unix_secs` (the current step's), as
    /// `sesame knock` and `sesame sequence` compute it.
    pub fn current(&self, secret: &TotpSecret, unix_secs: u64) -> Result<Vec<Knock>, TotpError> {
        self.sequence(secret, step_of(unix_secs, self.period))
    }

    /// Every sequence accepted at `unix_secs`: for each user (by index in
    /// `secrets`), the previous, current and next step.
    pub fn candidates(
        &self,
        secrets: &[TotpSecret],
        unix_secs: u64,
    ) -> Result<Vec<Candidate>, TotpError> {
        self.validate()?;
        let mut out = Vec::with_capacity(secrets.len() * 3);
        for (user, secret) in secrets.iter().enumerate() {
            for step in steps_at(unix_secs, self.period) {
                out.push(Candidate {
                    user,
                    step,
                    sequence: self.sequence(secret, step)?,
                });
            }
        }
        Ok(out)
    }

    /// The step whose sequence for `secret` equals `observed`, among those
    /// accepted at `unix_secs`, or `None`. Compares in constant time and
    /// always checks every step.
    pub fn match_sequence(
        &self,
        secret: &TotpSecret,
        observed: &[Knock],
        unix_secs: u64,
    ) -> Result<Option<u64>, TotpError> {
        self.validate()?;
        let mut found = None;
        for step in steps_at(unix_secs, self.period) {
            if sequences_equal(&self.sequence(secret, step)?, observed) {
                found = found.or(Some(step));
            }
        }
        Ok(found)
    }

    /// [`replay_expires`] for this spec's period.
    pub fn replay_expires(&self, step: u64) -> u64 {
        replay_expires(step, self.period)
    }
}

/// True when two sequences are equal, in time that depends only on their
/// lengths.
pub fn sequences_equal(a: &[Knock], b: &[Knock]) -> bool {
    let encode = |s: &[Knock]| -> Vec<u8> {
        s.iter()
            .flat_map(|k| {
                let [hi, lo] = k.port.to_be_bytes();
                [k.proto.number(), hi, lo]
            })
            .collect()
    };
    a.len() == b.len() && bool::from(encode(a).ct_eq(&encode(b)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::{ReplayCache, ReplayError, ReplayKey};

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn spec() -> TotpSpec {
        TotpSpec {
            len: 4,
            ports: 20000..=29999,
            proto: Proto::Tcp,
            period: 30,
        }
    }

    fn ports(seq: &[Knock]) -> Vec<u16> {
        seq.iter().map(|k| k.port).collect()
    }

    #[test]
    fn test_vector() {
        // Fixed output: the derivation must never drift (clients and servers
        // of different versions must agree). Cross-checked against an
        // independent implementation of the module docs' algorithm.
        let seq = derive_sequence(SECRET, 58_000_000, 4, 20000..=29999, Proto::Tcp).unwrap();
        assert_eq!(ports(&seq), TEST_VECTOR_PORTS);
        assert!(seq.iter().all(|k| k.proto == Proto::Tcp));
        let seq = derive_sequence(SECRET, 0, 8, 1..=16, Proto::Udp).unwrap();
        assert_eq!(ports(&seq), TEST_VECTOR_SMALL);
    }

    const TEST_VECTOR_PORTS: [u16; 4] = [24461, 28577, 25060, 27637];
    const TEST_VECTOR_SMALL: [u16; 8] = [13, 16, 14, 9, 4, 11, 12, 3];

    #[test]
    fn step_arithmetic() {
        assert_eq!(step_of(0, 30), 0);
        assert_eq!(step_of(29, 30), 0);
        assert_eq!(step_of(30, 30), 1);
        assert_eq!(step_of(100, 0), 100);
        assert_eq!(steps_at(95, 30).collect::<Vec<_>>(), [2, 3, 4]);
        assert_eq!(steps_at(5, 30).collect::<Vec<_>>(), [0, 1]);
        // Step 3 covers 90..=119 and is accepted through step 4 (120..=149).
        assert_eq!(replay_expires(3, 30), 149);
        assert!(steps_at(149, 30).any(|s| s == 3));
        assert!(!steps_at(150, 30).any(|s| s == 3));
    }

    #[test]
    fn sequences_stay_in_range_without_repeats() {
        for step in 0..2000u64 {
            for (len, range) in [(4, 1000..=1009), (8, 8..=15), (32, 40000..=40031)] {
                let seq = derive_sequence(SECRET, step, len, range.clone(), Proto::Udp).unwrap();
                assert_eq!(seq.len(), len);
                let mut p = ports(&seq);
                assert!(p.iter().all(|x| range.contains(x)), "{p:?}");
                p.sort_unstable();
                p.dedup();
                assert_eq!(p.len(), len, "repeat at step {step}");
            }
        }
    }

    #[test]
    fn full_range_is_a_permutation_and_uniform() {
        // len == range size: every port exactly once.
        let seq = derive_sequence(SECRET, 9, 16, 100..=115, Proto::Tcp).unwrap();
        let mut p = ports(&seq);
        p.sort_unstable();
        assert_eq!(p, (100..=115).collect::<Vec<_>>());
        // First knock over a 3-port range: each port about a third of steps.
        let mut counts = [0u32; 3];
        for step in 0..3000 {
            let s = derive_sequence(SECRET, step, 1, 1..=3, Proto::Tcp).unwrap();
            counts[usize::from(s[0].port - 1)] += 1;
        }
        assert!(
            counts.iter().all(|&c| (900..1100).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn steps_and_secrets_give_different_sequences() {
        let other = b"fedcba9876543210fedcba9876543210";
        let a = derive_sequence(SECRET, 1, 4, 20000..=29999, Proto::Tcp).unwrap();
        let b = derive_sequence(SECRET, 2, 4, 20000..=29999, Proto::Tcp).unwrap();
        let c = derive_sequence(other, 1, 4, 20000..=29999, Proto::Tcp).unwrap();
        assert_ne!(a, b);
        assert_ne!(a, c);
        // The protocol is not mixed into the ports.
        let d = derive_sequence(SECRET, 1, 4, 20000..=29999, Proto::Udp).unwrap();
        assert_eq!(ports(&a), ports(&d));
    }

    #[test]
    fn bad_specs_are_refused() {
        let p = Proto::Tcp;
        assert_eq!(
            derive_sequence(SECRET, 0, 0, 1..=10, p),
            Err(TotpError::BadLength(0))
        );
        assert_eq!(
            derive_sequence(SECRET, 0, 33, 1..=100, p),
            Err(TotpError::BadLength(33))
        );
        assert_eq!(
            derive_sequence(SECRET, 0, 2, 0..=10, p),
            Err(TotpError::BadRange(0, 10))
        );
        #[allow(clippy::reversed_empty_ranges)]
        let reversed = 10..=5;
        assert_eq!(
            derive_sequence(SECRET, 0, 2, reversed, p),
            Err(TotpError::BadRange(10, 5))
        );
        assert_eq!(
            derive_sequence(SECRET, 0, 4, 7..=9, p),
            Err(TotpError::RangeTooSmall { ports: 3, len: 4 })
        );
        let mut s = spec();
        s.period = 0;
        assert_eq!(s.validate(), Err(TotpError::ZeroPeriod));
        assert_eq!(
            TotpSecret::new(b"short").unwrap_err(),
            TotpError::SecretTooShort(5)
        );
        assert_eq!(
            format!("{:?}", TotpSecret::new(SECRET).unwrap()),
            "TotpSecret(32 bytes)"
        );
        assert!(
            derive_sequence(SECRET, 0, 1, 65535..=65535, p).unwrap()[0].port == 65535,
            "single-port range"
        );
    }

    #[test]
    fn right_step_and_one_step_of_skew_are_accepted_two_are_not() {
        let spec = spec();
        let secret = TotpSecret::new(SECRET).unwrap();
        let step = 56_666_666u64;
        let knocked = spec.sequence(&secret, step).unwrap();
        let mid = |s: u64| s * 30 + 15;
        // The server's clock is in the same step, or one behind/ahead.
        assert_eq!(
            spec.match_sequence(&secret, &knocked, mid(step)),
            Ok(Some(step))
        );
        assert_eq!(
            spec.match_sequence(&secret, &knocked, mid(step - 1)),
            Ok(Some(step))
        );
        assert_eq!(
            spec.match_sequence(&secret, &knocked, mid(step + 1)),
            Ok(Some(step))
        );
        assert_eq!(
            spec.match_sequence(&secret, &knocked, mid(step - 2)),
            Ok(None)
        );
        assert_eq!(
            spec.match_sequence(&secret, &knocked, mid(step + 2)),
            Ok(None)
        );
        // Edges: first and last accepted seconds.
        assert_eq!(
            spec.match_sequence(&secret, &knocked, (step - 1) * 30),
            Ok(Some(step))
        );
        assert_eq!(
            spec.match_sequence(&secret, &knocked, spec.replay_expires(step)),
            Ok(Some(step))
        );
        assert_eq!(
            spec.match_sequence(&secret, &knocked, spec.replay_expires(step) + 1),
            Ok(None)
        );
        // A wrong sequence never matches.
        let mut wrong = knocked.clone();
        wrong.swap(0, 1);
        assert_eq!(spec.match_sequence(&secret, &wrong, mid(step)), Ok(None));
        assert_eq!(
            spec.match_sequence(&secret, &knocked[..3], mid(step)),
            Ok(None)
        );
    }

    #[test]
    fn a_sequence_is_single_use() {
        let spec = spec();
        let secret = TotpSecret::new(SECRET).unwrap();
        let mut cache = ReplayCache::new(100);
        let now = 1_700_000_000u64;
        let seq = spec.current(&secret, now).unwrap();
        let step = spec.match_sequence(&secret, &seq, now).unwrap().unwrap();
        let key = ReplayKey::totp("ssh", step, &seq);
        let expires = spec.replay_expires(step);
        assert_eq!(cache.check_and_insert(key, expires, now), Ok(()));
        // The same sequence in the same step (any source) is refused...
        assert_eq!(
            cache.check_and_insert(key, expires, now + 5),
            Err(ReplayError::Replayed)
        );
        // ...and in the next step, where it is still accepted by time.
        assert_eq!(
            cache.check_and_insert(key, expires, now + 30),
            Err(ReplayError::Replayed)
        );
        // ...and after a restart through the persisted image.
        let mut restored = ReplayCache::from_bytes(&cache.to_bytes(), 100).unwrap();
        assert_eq!(
            restored.check_and_insert(key, expires, now + 31),
            Err(ReplayError::Replayed)
        );
        // The next step's sequence still opens.
        let next = spec.sequence(&secret, step + 1).unwrap();
        let next_key = ReplayKey::totp("ssh", step + 1, &next);
        assert_eq!(
            restored.check_and_insert(next_key, spec.replay_expires(step + 1), now + 31),
            Ok(())
        );
    }

    #[test]
    fn candidates_cover_users_and_steps() {
        let spec = spec();
        let users = [
            TotpSecret::new(SECRET).unwrap(),
            TotpSecret::new(b"another secret, 32 bytes long!!!").unwrap(),
        ];
        let now = 1_700_000_000u64;
        let c = spec.candidates(&users, now).unwrap();
        assert_eq!(c.len(), 6);
        let step = step_of(now, 30);
        assert_eq!(
            c.iter().map(|c| (c.user, c.step)).collect::<Vec<_>>(),
            [
                (0, step - 1),
                (0, step),
                (0, step + 1),
                (1, step - 1),
                (1, step),
                (1, step + 1)
            ]
        );
        assert_eq!(c[1].sequence, spec.current(&users[0], now).unwrap());
        assert_ne!(c[1].sequence, c[4].sequence);
    }

    #[test]
    fn constant_time_equality() {
        let a = derive_sequence(SECRET, 1, 4, 1000..=2000, Proto::Tcp).unwrap();
        let mut b = a.clone();
        assert!(sequences_equal(&a, &b));
        b[3].proto = Proto::Udp;
        assert!(!sequences_equal(&a, &b));
        assert!(!sequences_equal(&a, &a[..3]));
        assert!(sequences_equal(&[], &[]));
    }
}
