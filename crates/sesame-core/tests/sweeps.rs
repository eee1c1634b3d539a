//! Blind random-order port sweeps against knock doors, on a virtual clock.
//!
//! The attacker knows nothing but the door type: they send every port of the
//! range once per sweep, in a fresh random order, back to back at 1.488 Mpps
//! (line rate of minimum-size frames on 1 GbE), all from one IPv6 /64.
//!
//! Each test first checks the per-sweep success probability `p` of a door
//! against a simulation of a small door where `p` is large enough to count,
//! then runs the real default door under the default failure budget for a
//! simulated stretch of days, counting the sweeps the budget let through.
//! The expected time to open is `days / (sweeps · p)`, and must exceed a year.
//! `SECURITY.md` walks through the same arithmetic.

use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

use sesame_core::door::tcp_flag::SYN;
use sesame_core::{
    BanPolicy, Door, Event, Guard, Instant, Knock, Observation, PortRange, Proto, Service, Tracker,
};

const SEED: [u64; 2] = [0x5eed, 0x5a5e];
const SERVER: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1));
/// Packets per second of the sweeping attacker.
const ATTACKER_PPS: u64 = 1_488_000;
const YEAR: f64 = 365.0 * 24.0 * 3600.0;

/// xorshift64*: a fixed-seed generator, so every run sweeps the same way.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            v.swap(i, self.below(i + 1));
        }
    }

    /// `k` distinct ports of `range`, in order.
    fn sequence(&mut self, range: PortRange, k: usize) -> Vec<Knock> {
        let mut out: Vec<Knock> = Vec::with_capacity(k);
        while out.len() < k {
            let port = range.first + self.below(range.len()) as u16;
            if out.iter().all(|x| x.port != port) {
                out.push(Knock {
                    port,
                    proto: range.proto,
                });
            }
        }
        out
    }
}

fn door(name: &str, sequence: Vec<Knock>, guard: Guard) -> Door {
    let ssh = Service::tcp(22);
    Door {
        guard,
        ..Door::new(name, sequence, vec![ssh])
    }
}

/// The attacker's address `n` within their one /64.
fn attacker(n: u64) -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(
        0x2001,
        0xdb8,
        0xbad,
        0,
        (n >> 48) as u16,
        (n >> 32) as u16,
        (n >> 16) as u16,
        n as u16,
    ))
}

fn syn(src: IpAddr, port: u16) -> Observation {
    Observation {
        src,
        dst: SERVER,
        proto: Proto::Tcp,
        dst_port: port,
        tcp_flags: SYN,
    }
}

/// Probability that one random-order sweep delivers `k` knocks in order
/// when `n` ports (knocks included) are observed and every observed port
/// other than the next knock resets: the knocks must come consecutively
/// and in order among the `n`, so `(n - k + 1)! / n!`.
fn sweep_odds(n: usize, k: usize) -> f64 {
    (0..k - 1).map(|i| 1.0 / (n - i) as f64).product()
}

/// What a simulated attack saw.
#[derive(Debug, Default)]
struct Outcome {
    /// Sweeps with at least one packet not ignored.
    sweeps_through: u64,
    /// Sweeps sent in all (while banned, only one per ban is simulated).
    opens: u64,
    bans: u64,
    ignored_while_banned: u64,
}

/// Asserts that `days` of sweeps opened nothing, were banned at least
/// once a day, and that at `p` (the odds that one sweep opens) the
/// expected time to open is over a year; prints the figures.
fn assert_outlasts_a_year(label: &str, out: &Outcome, days: u64, p: f64) {
    assert_eq!(out.opens, 0, "{out:?}");
    assert!(out.bans >= days, "{out:?}");
    // Chained back-to-back sweeps can carry an attempt over a sweep's end;
    // doubling p covers that with room to spare.
    let expected_seconds = (days * 86_400) as f64 / (out.sweeps_through as f64 * 2.0 * p);
    println!(
        "{label}: {} sweeps through in {days} days, p = {p:.3e} per sweep, expected time to open {:.3e} years",
        out.sweeps_through,
        expected_seconds / YEAR
    );
    assert!(
        expected_seconds > YEAR,
        "{:.2} years",
        expected_seconds / YEAR
    );
}

/// Sweeps `ports` (the ports the kernel reports for the doors; the rest of
/// the sweep is dropped in the kernel and only takes time) from changing
/// addresses of one /64 for `duration`, starting at `start`. `full_sweep`
/// is the number of ports in a whole sweep (timing only). `roll` runs
/// before every sweep (TOTP steps).
fn attack(
    tracker: &mut Tracker,
    rng: &mut Rng,
    ports: &[u16],
    full_sweep: u64,
    duration: Duration,
    mut roll: impl FnMut(&mut Tracker, Instant, &mut Rng),
) -> Outcome {
    let mut out = Outcome::default();
    let sweep_time = Duration::from_nanos(full_sweep * 1_000_000_000 / ATTACKER_PPS);
    let gap = sweep_time / ports.len() as u32;
    let end = Instant::ZERO + duration;
    let mut now = Instant::ZERO;
    let mut order = ports.to_vec();
    let mut events = Vec::new();
    let mut sweep = 0u64;
    while now < end {
        roll(tracker, now, rng);
        rng.shuffle(&mut order);
        // A fresh address of the /64 for every sweep: the budget is per
        // prefix, so rotating addresses must not help.
        let src = attacker(sweep);
        sweep += 1;
        let banned_at_start = tracker.budget().banned();
        let mut through = false;
        for (i, &port) in order.iter().enumerate() {
            let t = now + gap * i as u32;
            events.clear();
            tracker.expire(t, &mut events);
            let ignored_before = tracker.budget().ignored();
            tracker.observe(t, &syn(src, port), &mut events);
            if tracker.budget().ignored() == ignored_before {
                through = true;
            } else {
                out.ignored_while_banned += 1;
            }
            for e in &events {
                match e {
                    Event::Open { .. } => out.opens += 1,
                    Event::Banned { .. } => out.bans += 1,
                    _ => {}
                }
            }
        }
        if through {
            out.sweeps_through += 1;
        }
        now = now + sweep_time;
        // While banned, one sweep was fed (and must have been ignored
        // whole); the attacker's further sweeps until the ban ends are
        // skipped, since the budget drops them the same way.
        if let Some(&(_, until)) = tracker.budget().bans(now).first() {
            if banned_at_start > 0 {
                assert!(!through, "a banned prefix's sweep got through");
                now = now.max(until);
            }
        }
    }
    out
}

/// `p` measured: sweeps of a small door, no budget, spaced beyond the
/// knock window so each sweep is one independent trial.
fn measured_odds(n: usize, k: usize, sweeps: u64, rng: &mut Rng) -> f64 {
    let range = PortRange {
        proto: Proto::Tcp,
        first: 30_000,
        last: 30_000 + n as u16 - 1,
    };
    let sequence = rng.sequence(range, k);
    let mut tracker = Tracker::new(
        vec![door("small", sequence, Guard::Ranges(vec![range]))],
        1000,
        SEED,
    );
    let mut ports: Vec<u16> = range.ports().collect();
    let mut opens = 0u64;
    let mut events = Vec::new();
    for s in 0..sweeps {
        rng.shuffle(&mut ports);
        let base = Instant::ZERO + Duration::from_secs(20) * s as u32;
        for (i, &port) in ports.iter().enumerate() {
            events.clear();
            let t = base + Duration::from_micros(i as u64);
            tracker.observe(t, &syn(attacker(1), port), &mut events);
            opens += events
                .iter()
                .filter(|e| matches!(e, Event::Open { .. }))
                .count() as u64;
        }
    }
    opens as f64 / sweeps as f64
}

#[test]
fn sweep_odds_match_a_simulation() {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    for (n, k, sweeps) in [(8, 3, 20_000u64), (12, 4, 60_000)] {
        let p = sweep_odds(n, k);
        let measured = measured_odds(n, k, sweeps, &mut rng);
        let expected = p * sweeps as f64;
        let sigma = expected.sqrt();
        let got = measured * sweeps as f64;
        assert!(
            (got - expected).abs() < 4.0 * sigma,
            "n={n} k={k}: {got} opens in {sweeps} sweeps, model says {expected:.1} ± {sigma:.1}"
        );
    }
}

#[test]
fn without_a_guard_a_totp_range_falls_to_sweeps() {
    // Today's flaw, kept as a contrast: range ports outside the sequence
    // were ignored, so a sweep opened a 4-knock slot 1 time in 4! = 24.
    let mut rng = Rng(42);
    let range = PortRange {
        proto: Proto::Tcp,
        first: 20_000,
        last: 20_099,
    };
    let mut tracker = Tracker::new(
        vec![door("totp", rng.sequence(range, 4), Guard::None)],
        1000,
        SEED,
    );
    let ports: Vec<u16> = range.ports().collect();
    let out = attack(
        &mut tracker,
        &mut rng,
        &ports,
        100,
        Duration::from_secs(1),
        |_, _, _| {},
    );
    assert!(out.opens > 0, "{out:?}");
}

/// The example config's door shape: three TCP knocks with the defaults
/// (10 s window, automatic guard, default failure budget).
#[test]
fn a_default_plain_door_resists_sweeps_for_over_a_year() {
    let mut rng = Rng(0xfeed_beef);
    let sequence: Vec<Knock> = ["7000", "8000", "9000"]
        .iter()
        .map(|k| k.parse().unwrap())
        .collect();
    let plain = door("ssh", sequence.clone(), Guard::Auto);
    let guard = plain.guard_ranges();
    let observed: Vec<u16> = guard.iter().flat_map(|r| r.ports()).collect();
    assert_eq!(observed.len(), 768, "{guard:?}");
    let p = sweep_odds(observed.len(), sequence.len());

    let mut tracker = Tracker::new(vec![plain], 100_000, SEED);
    tracker.set_ban_policy(BanPolicy::DEFAULT);
    let days = 7;
    let out = attack(
        &mut tracker,
        &mut rng,
        &observed,
        65_535,
        Duration::from_secs(days * 86_400),
        |_, _, _| {},
    );
    assert!(out.ignored_while_banned > 0, "{out:?}");
    assert_outlasts_a_year("default plain door", &out, days, p);
}

/// The README's TOTP door: 4 knocks from 20000-29999, 30 s steps, one user
/// (three live slots: the previous, current and next step), the whole range
/// guarded, the default failure budget.
#[test]
fn a_default_totp_door_resists_sweeps_for_over_a_year() {
    let mut rng = Rng(0xc0ff_ee00);
    let range = PortRange {
        proto: Proto::Tcp,
        first: 20_000,
        last: 29_999,
    };
    let slots: Vec<Door> = (0..3)
        .map(|i| {
            door(
                &format!("vpn-slot{i}"),
                rng.sequence(range, 4),
                Guard::Ranges(vec![range]),
            )
        })
        .collect();
    let mut tracker = Tracker::new(slots, 100_000, SEED);
    tracker.set_ban_policy(BanPolicy::DEFAULT);
    let p = 3.0 * sweep_odds(range.len(), 4);
    let ports: Vec<u16> = range.ports().collect();
    let mut step = u64::MAX;
    let days = 2;
    let out = attack(
        &mut tracker,
        &mut rng,
        &ports,
        range.len() as u64,
        Duration::from_secs(days * 86_400),
        |tracker, now, rng| {
            // A new step every 30 s: one slot takes a fresh sequence.
            let s = now.elapsed().as_secs() / 30;
            if s != step {
                step = s;
                tracker.set_sequence((s % 3) as usize, rng.sequence(range, 4));
            }
        },
    );
    assert_outlasts_a_year("default TOTP door", &out, days, p);
}
