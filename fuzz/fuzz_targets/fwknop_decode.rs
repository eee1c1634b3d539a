//! The fwknop (FKO 3.0.0) decoder against hostile input.
//!
//! The first byte picks the keys (AES mode, HMAC type or none) from a fixed
//! set; the second picks what the rest is:
//! - 0..=127: a raw packet. It must never decode (no one without the keys
//!   can make one that does) and never panic.
//! - 128..=223: an encoded message (the plaintext without its digest),
//!   given its correct inner digest (type from the third byte), encrypted
//!   and MAC'd with the keys: this reaches every check behind the HMAC (the
//!   "decrypted OK" check, printability, field counts, field validation,
//!   the age window). Whatever decodes must re-encode to a packet that
//!   decodes to the same request.
//! - 224..=255: a structured request for the encoder. It must round-trip,
//!   and any changed character of the packet must make it fail (with HMAC),
//!   or decode to the same request (without).
#![no_main]

use std::net::{IpAddr, Ipv4Addr};

use libfuzzer_sys::fuzz_target;
use sesame_core::fwknop::{
    decode, digest_b64, encode, seal, AccessPort, DigestType, EncMode, FwknopEncodeError,
    FwknopKeys, FwknopRequest, MsgType,
};
use sesame_core::Service;

const NOW: u64 = 1_795_533_693;
const MAX_AGE: u64 = 120;
const SALT: [u8; 8] = [0x5a, 0x17, 0x99, 0x01, 0xfe, 0x00, 0x42, 0x80];

fn keys(b: u8) -> FwknopKeys {
    let mode = EncMode::ALL[usize::from(b & 0x07) % EncMode::ALL.len()];
    let hmac = match b >> 3 {
        n if usize::from(n) < DigestType::ALL.len() => Some(DigestType::ALL[usize::from(n)]),
        _ => None,
    };
    FwknopKeys::new(
        b"fuzz passphrase",
        mode,
        hmac.map(|t| (&b"fuzz hmac key, 64 bytes would be usual"[..], t)),
    )
    .expect("valid fixture keys")
}

/// Reads fields off the front of the input, zero-padded.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn byte(&mut self) -> u8 {
        let Some((&b, rest)) = self.0.split_first() else {
            return 0;
        };
        self.0 = rest;
        b
    }
    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.byte(), self.byte()])
    }
    fn u32(&mut self) -> u32 {
        u32::from_be_bytes([self.byte(), self.byte(), self.byte(), self.byte()])
    }
    /// Up to `max` bytes mapped onto `alphabet`.
    fn text(&mut self, alphabet: &[u8], max: usize) -> String {
        let n = usize::from(self.byte()) % (max + 1);
        (0..n)
            .map(|_| char::from(alphabet[usize::from(self.byte()) % alphabet.len()]))
            .collect()
    }
}

const USER: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ._-@!#$%&()";
const HOST: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789.-";
const CMD: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789 /._-,:;=";

fn request(r: &mut Reader) -> FwknopRequest {
    let msg_type = MsgType::from_number(r.byte() % 7).expect("0-6");
    let user = r.text(USER, 40);
    let timestamp = NOW.wrapping_add_signed(i64::from(r.byte() as i8).clamp(-120, 120));
    let ip = Ipv4Addr::from(r.u32());
    let access_ip = (!ip.is_unspecified() && r.byte() & 1 == 0).then_some(IpAddr::V4(ip));
    let n = if msg_type == MsgType::Command {
        0
    } else {
        1 + usize::from(r.byte() % 4)
    };
    let access = (0..n)
        .map(|_| {
            let p = r.byte();
            let port = r.u16().max(1);
            match p % 4 {
                0 => AccessPort::Service(Service::tcp(port)),
                1 => AccessPort::Service(Service::udp(port)),
                2 => AccessPort::Icmp(port),
                _ => AccessPort::Unspecified(port),
            }
        })
        .collect();
    let command = r.text(CMD, 60);
    let nat = (r.text(HOST, 40), r.u16());
    let timeout = r.u32();
    let server_auth = r.text(USER, 20);
    let digest_type = DigestType::ALL[usize::from(r.byte()) % DigestType::ALL.len()];
    FwknopRequest {
        username: user,
        timestamp,
        msg_type,
        access_ip,
        access,
        command: (msg_type == MsgType::Command).then_some(command),
        nat_access: msg_type.has_nat_access().then_some(nat),
        server_auth: (!server_auth.is_empty()).then_some(server_auth),
        client_timeout: msg_type.has_client_timeout().then_some(timeout),
        digest_type,
    }
}

fuzz_target!(|data: &[u8]| {
    let mut r = Reader(data);
    let keys = keys(r.byte());
    let selector = r.byte();
    match selector {
        0..=127 => {
            let result = decode(r.0, &keys, NOW, MAX_AGE);
            assert!(result.is_err(), "raw bytes decoded: {result:?}");
        }
        128..=223 => {
            let t = DigestType::ALL[usize::from(r.byte()) % DigestType::ALL.len()];
            let encoded = r.0;
            let mut plain = encoded.to_vec();
            plain.push(b':');
            plain.extend_from_slice(digest_b64(t, encoded).as_bytes());
            let packet = seal(&plain, &keys, SALT);
            if let Ok(m) = decode(packet.as_bytes(), &keys, NOW, MAX_AGE) {
                // Accepted: its request is valid and canonical.
                let random: u64 = m.random.parse().expect("16 digits");
                match encode(&m.request, &keys, random, SALT) {
                    Ok(again) => {
                        let back = decode(again.as_bytes(), &keys, NOW, MAX_AGE)
                            .expect("re-encoded request decodes");
                        assert_eq!(back.request, m.request);
                        assert_eq!(back.random, m.random);
                    }
                    // The version string or lenient inner base64 can make
                    // the canonical packet shorter than the minimum.
                    Err(FwknopEncodeError::PacketLength { .. }) => {}
                    Err(e) => panic!("accepted request does not re-encode: {e}"),
                }
            }
        }
        _ => {
            let req = request(&mut r);
            let random = u64::from(r.u32()) << 20 | u64::from(r.u32());
            let packet = match encode(&req, &keys, random, SALT) {
                Ok(p) => p,
                Err(FwknopEncodeError::PacketLength { .. }) => return,
                Err(FwknopEncodeError::Invalid(_)) => return, // e.g. a bad username
                Err(e) => panic!("consistent request refused: {e}"),
            };
            let m = decode(packet.as_bytes(), &keys, NOW, MAX_AGE).expect("round trip");
            assert_eq!(m.request, req);
            let at = usize::from(r.u16()) % packet.len();
            let mut bad = packet.into_bytes();
            let to = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
                [usize::from(r.byte()) % 64];
            if bad[at] == to {
                return;
            }
            bad[at] = to;
            match decode(&bad, &keys, NOW, MAX_AGE) {
                Err(_) => {}
                Ok(m2) => {
                    assert!(
                        keys.hmac_type().is_none(),
                        "HMAC packet accepted after a change at {at}"
                    );
                    assert_eq!(m2.replay_key(), m.replay_key());
                }
            }
        }
    }
});
