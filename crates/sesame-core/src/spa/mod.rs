//! Sesame's single-packet authorization (SPA) format, version 1.
//!
//! One UDP datagram carries an encrypted, authenticated request: "open these
//! services for this long". The full specification, with byte layouts, the
//! key derivations, the order of checks and worked examples, is
//! `docs/spa-protocol.md`; this module is its reference implementation.
//!
//! Two modes share one header and one payload:
//!
//! - **symmetric** ([`Mode::Symmetric`]): each user has a 32-byte [`SpaKey`]
//!   shared with the server; the AEAD key is derived from it with HKDF.
//! - **public key** ([`Mode::Public`]): each user has an Ed25519
//!   [`IdentityKey`]; the server holds only the users' [`IdentityPublic`]
//!   keys (as `authorized_keys` does) and its own X25519 [`ServerKey`]. The
//!   client encrypts to the server with an ephemeral X25519 key and signs
//!   the request with its identity key.
//!
//! Encoding takes its randomness (nonces, ephemeral key) as arguments and
//! verification takes the time as an argument: nothing here reads a clock or
//! an RNG.
//!
//! ```text
//! symmetric (124 bytes): "SSM" 01 00 key_id[8] nonce[24] | ciphertext(payload[71]) tag[16]
//! public    (220 bytes): "SSM" 01 01 key_id[8] nonce[24] ephemeral[32] | ciphertext(payload[71] sig[64]) tag[16]
//! ```

mod encode;
mod format;
mod keys;
mod payload;
mod verify;

pub use encode::*;
pub use format::*;
pub use keys::*;
pub use payload::*;
pub use verify::*;

#[cfg(test)]
mod tests {
    use super::encode::*;
    use super::format::*;
    use super::keys::*;
    use super::payload::*;
    use super::verify::*;

    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    use std::sync::Arc;
    use std::time::Duration;

    use crate::door::Service;
    use crate::replay::{ReplayCache, ReplayError, ReplayKey};

    const NOW: u64 = 1_700_000_000;

    fn tcp(port: u16) -> Service {
        Service::tcp(port)
    }

    fn udp(port: u16) -> Service {
        Service::udp(port)
    }

    fn seq_bytes<const N: usize>(start: u8) -> [u8; N] {
        std::array::from_fn(|i| start.wrapping_add(i as u8))
    }

    fn alice_key() -> SpaKey {
        SpaKey::from_bytes(&seq_bytes(0x00))
    }

    fn bob_key() -> SpaKey {
        SpaKey::from_bytes(&[0x42; 32])
    }

    fn carol_identity() -> IdentityKey {
        IdentityKey::from_seed(&seq_bytes(0x20))
    }

    fn dave_identity() -> IdentityKey {
        IdentityKey::from_seed(&[0x77; 32])
    }

    fn server_key() -> ServerKey {
        ServerKey::from_bytes(&seq_bytes(0x40))
    }

    fn payload() -> Payload {
        Payload {
            timestamp: NOW,
            nonce: seq_bytes(0x80),
            services: vec![tcp(22)],
            duration: 30,
            address: None,
        }
    }

    fn policy() -> UserPolicy {
        UserPolicy {
            services: vec![tcp(22), udp(51820)],
            max_duration: 60,
            allow_address: false,
            retired_after: None,
        }
    }

    /// alice: symmetric; bob: symmetric with explicit addresses allowed;
    /// carol: public key. dave is unknown to the server.
    fn verifier() -> Verifier {
        let mut v = Verifier::new(DEFAULT_WINDOW_SECS, Some(server_key()));
        v.accept_v1_public(true);
        v.add_user("alice", Credential::Symmetric(alice_key()), policy())
            .unwrap();
        let mut bob = policy();
        bob.allow_address = true;
        bob.services = vec![tcp(443)];
        v.add_user("bob", Credential::Symmetric(bob_key()), bob)
            .unwrap();
        v.add_user(
            "carol",
            Credential::Public(carol_identity().public()),
            policy(),
        )
        .unwrap();
        v
    }

    fn sym(p: &Payload) -> Vec<u8> {
        encode_symmetric(&alice_key(), p, seq_bytes(0xc0)).unwrap()
    }

    /// A version 1 public-key packet: the tests of the checks behind `mac1`
    /// use it (the verifier accepts v1); version 2 has tests of its own.
    fn public(p: &Payload) -> Vec<u8> {
        carol_packet(VERSION, &server_key().public(), p)
    }

    /// Carol's public-key packet of `version` to `server`.
    fn carol_packet(version: u8, server: &ServerPublic, p: &Payload) -> Vec<u8> {
        let (eph, nonce) = (seq_bytes(0x60), seq_bytes(0xc0));
        encode_public_version(version, &carol_identity(), server, p, &eph, nonce).unwrap()
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn user(name: &str) -> Arc<str> {
        Arc::from(name)
    }

    // Test vectors: fixed keys, nonces and payload give fixed bytes, so the
    // wire format cannot drift unnoticed. Cross-checked against an
    // independent implementation of docs/spa-protocol.md.
    const SYMMETRIC_KEY_ID: &str = "0ae0d2a67a148471";
    const SYMMETRIC_VECTOR: &str = concat!(
        "53534d01000ae0d2a67a148471c0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2",
        "d3d4d5d6d718268764f9b99cbaf5ad241a63392df5aef961d0d7e0adb52b3258",
        "96d273ce945a2c13c8c7ee06bde85082fe7daef89190a9aa2881f39ec4aac5d2",
        "90eeeeb73f4b8d308d73dbf03a3a729423c32c1fe0beaaa91f63b714",
    );
    const PUBLIC_KEY_ID: &str = "31f14ed720794cad";
    const PUBLIC_VECTOR: &str = concat!(
        "53534d010131f14ed720794cadc0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2",
        "d3d4d5d6d7675dd574ed7789310b3d2e7681f3790b466c773b1521fecf365779",
        "58371ea52f638049aef1886829d041a33e9f885837dc479cdc484b11bb1c30b6",
        "38358d56872449e062d4e9cfec70e073b0b831f27da047842a2c26536492162a",
        "8e3e795a1527e9d3fd0bdc008ceac2eae971a06f289bd4ea88ac5cfab63b73f0",
        "0987aa93e6c6ce5d877a6d5fa5f43e5c07ffe3848ebc1db720d20bfdfdbe4f63",
        "c796cd26ec8fe4be152eb8d994a3172b47982440bb2f7e9c107e45ad",
    );

    const PUBLIC_V2_VECTOR: &str = concat!(
        "53534d020131f14ed720794cadc0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2",
        "d3d4d5d6d7675dd574ed7789310b3d2e7681f3790b466c773b1521fecf365779",
        "58371ea52f638049aef1886829d041a33e9f885837dc479cdc484b11bb1c30b6",
        "38358d56872449e062d4e9cfec70e073b0b831f27da047842a2c26536492162a",
        "8e3e795a1527e9d3fd0bdc005eb629abb20eb89b9de986e9ae034ebe2dbbfa12",
        "b70c2f191845db3add247cccf45cebfb409b6c62246d50843ae66ec4a1e4e5e8",
        "4b269bc94aab6531dc1042dcfc5cd8e0b55c10288b9e06a9c54773fcf28f102f",
        "90e1dbdd83c88398449e5dc3",
    );

    #[test]
    fn test_vectors() {
        assert_eq!(alice_key().key_id().to_string(), SYMMETRIC_KEY_ID);
        assert_eq!(
            carol_identity().public().key_id().to_string(),
            PUBLIC_KEY_ID
        );
        let packet = sym(&payload());
        assert_eq!(packet.len(), SYMMETRIC_PACKET_LEN);
        assert_eq!(hex(&packet), SYMMETRIC_VECTOR);
        let packet = public(&payload());
        assert_eq!(packet.len(), PUBLIC_PACKET_LEN);
        assert_eq!(hex(&packet), PUBLIC_VECTOR);
        // Version 2: the same bytes but for the version byte (so a new
        // tag and signature), then mac1.
        let packet = public_v2(&payload());
        assert_eq!(packet.len(), PUBLIC_V2_PACKET_LEN);
        assert_eq!(hex(&packet), PUBLIC_V2_VECTOR);
    }

    #[test]
    fn payload_layout_is_fixed() {
        let p = Payload {
            timestamp: 0x0102_0304_0506_0708,
            nonce: [0xaa; 16],
            services: vec![tcp(22), udp(0x1234)],
            duration: 0x0a0b_0c0d,
            address: Some("192.0.2.7".parse().unwrap()),
        };
        let mut expected = vec![1, 1, 2, 3, 4, 5, 6, 7, 8];
        expected.extend_from_slice(&[0xaa; 16]);
        expected.extend_from_slice(&[0x0a, 0x0b, 0x0c, 0x0d, 4, 192, 0, 2, 7]);
        expected.extend_from_slice(&[0; 12]);
        expected.extend_from_slice(&[2, 6, 0, 22, 17, 0x12, 0x34]);
        expected.extend_from_slice(&[0; 18]);
        assert_eq!(p.encode().unwrap().to_vec(), expected);
        assert_eq!(Payload::decode(&expected), Ok(p));
    }

    #[test]
    fn round_trip_symmetric() {
        let v = verifier();
        let ok = v.verify(&sym(&payload()), NOW).unwrap();
        assert_eq!(ok.user, user("alice"));
        assert_eq!(ok.mode, Mode::Symmetric);
        assert_eq!(ok.key_id, alice_key().key_id());
        assert_eq!(ok.payload, payload());
        assert_eq!(ok.services, vec![tcp(22)]);
        assert_eq!(ok.duration, Duration::from_secs(30));
        assert_eq!(
            ok.replay_key.owner(),
            ReplayKey::owner_id(b"spa-key", &ok.key_id.0)
        );
        assert_eq!(ok.replay_expires, NOW + 60);
    }

    #[test]
    fn round_trip_public() {
        let v = verifier();
        let mut p = payload();
        p.services = vec![udp(51820), tcp(22)];
        p.duration = 0;
        let ok = v.verify(&public(&p), NOW).unwrap();
        assert_eq!(ok.user, user("carol"));
        assert_eq!(ok.mode, Mode::Public);
        assert_eq!(ok.payload, p);
        assert_eq!(ok.services, vec![udp(51820), tcp(22)]);
        assert_eq!(ok.duration, Duration::from_secs(60));
    }

    #[test]
    fn explicit_address_round_trips_when_allowed() {
        let v = verifier();
        for addr in ["203.0.113.9", "2001:db8::77"] {
            let mut p = payload();
            p.services = vec![tcp(443)];
            p.address = Some(addr.parse().unwrap());
            let packet = encode_symmetric(&bob_key(), &p, [9; 24]).unwrap();
            let ok = v.verify(&packet, NOW).unwrap();
            assert_eq!(ok.user, user("bob"));
            assert_eq!(ok.payload.address, p.address);
        }
    }

    #[test]
    fn explicit_address_is_refused_by_default() {
        let v = verifier();
        let mut p = payload();
        p.address = Some("203.0.113.9".parse().unwrap());
        assert_eq!(
            v.verify(&sym(&p), NOW),
            Err(SpaError::AddressNotAllowed {
                user: user("alice"),
                address: p.address.unwrap()
            })
        );
    }

    #[test]
    fn empty_request_means_everything_allowed_and_duration_is_capped() {
        let v = verifier();
        let mut p = payload();
        p.services.clear();
        p.duration = 3600;
        let ok = v.verify(&sym(&p), NOW).unwrap();
        assert_eq!(ok.services, policy().services);
        assert_eq!(ok.duration, Duration::from_secs(60));
    }

    #[test]
    fn every_tampered_byte_is_rejected_symmetric() {
        let v = verifier();
        let good = sym(&payload());
        let id = alice_key().key_id();
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x80;
            let err = v.verify(&bad, NOW).unwrap_err();
            let expected = match i {
                0..=2 => SpaError::BadMagic,
                3 => SpaError::UnsupportedVersion(VERSION ^ 0x80),
                4 => SpaError::UnsupportedMode(0x80),
                5..=12 => {
                    let mut key_id = id;
                    key_id.0[i - 5] ^= 0x80;
                    SpaError::UnknownKey {
                        mode: Mode::Symmetric,
                        key_id,
                    }
                }
                _ => SpaError::BadTag {
                    user: user("alice"),
                },
            };
            assert_eq!(err, expected, "byte {i}");
        }
    }

    #[test]
    fn every_tampered_byte_is_rejected_public() {
        let v = verifier();
        let good = public(&payload());
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x01;
            let reason = v.verify(&bad, NOW).unwrap_err().reason();
            let expected = match i {
                0..=2 => "bad_magic",
                3 => "unsupported_version",
                // Mode 1 -> 0: a 220-byte packet is too long for mode 0.
                4 => "oversized",
                5..=12 => "unknown_key",
                _ => "bad_tag",
            };
            assert_eq!(reason, expected, "byte {i}");
        }
    }

    fn public_v2(p: &Payload) -> Vec<u8> {
        carol_packet(VERSION_2, &server_key().public(), p)
    }

    #[test]
    fn version_2_round_trips_and_every_tampered_byte_fails_mac1() {
        let mut v = verifier();
        v.accept_v1_public(false);
        let good = public_v2(&payload());
        assert_eq!(good.len(), PUBLIC_V2_PACKET_LEN);
        assert_eq!(good[3], VERSION_2);
        assert_eq!(v.precheck(&good), Ok(Cost::PublicKey));
        assert_eq!(v.precheck(&sym(&payload())), Ok(Cost::Cheap));
        assert!(v.verify(&good, NOW).is_ok());
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x01;
            let reason = v.precheck(&bad).unwrap_err().reason();
            let expected = match i {
                0..=2 => "bad_magic",
                // 2 -> 3; mode 1 -> 0 (version 2 has no symmetric mode).
                3 | 4 => "unsupported_version",
                _ => "bad_mac1",
            };
            assert_eq!(reason, expected, "byte {i}");
        }
        // Version 1 public-key packets are refused unless allowed.
        let v1 = public(&payload());
        assert_eq!(v.precheck(&v1), Err(SpaError::LegacyPublic));
        v.accept_v1_public(true);
        assert!(v.verify(&v1, NOW).is_ok());
        // A server without a public key cannot check mac1.
        let bare = Verifier::new(DEFAULT_WINDOW_SECS, None);
        assert_eq!(bare.precheck(&good), Err(SpaError::BadMac1));
    }

    #[test]
    fn mac1_holders_still_meet_every_inner_check() {
        // Someone who knows the server's public key passes mac1, and then
        // meets the same checks as in version 1.
        let v = verifier();
        let mut packet = public_v2(&payload());
        packet[OFF_EPHEMERAL..PUBLIC_HEADER_LEN].fill(0);
        let tag = mac1(
            &mac1_key(&server_key().public().0),
            &packet[..PUBLIC_PACKET_LEN],
        );
        packet[PUBLIC_PACKET_LEN..].copy_from_slice(&tag);
        assert_eq!(
            v.verify(&packet, NOW),
            Err(SpaError::BadEphemeral {
                user: user("carol")
            })
        );
    }

    #[test]
    fn stale_and_future_are_distinct_with_inclusive_window() {
        let v = verifier();
        let packet = sym(&payload());
        assert!(v.verify(&packet, NOW + 60).is_ok());
        assert!(v.verify(&packet, NOW - 60).is_ok());
        assert_eq!(
            v.verify(&packet, NOW + 61),
            Err(SpaError::Stale {
                user: user("alice"),
                timestamp: NOW,
                age: 61,
                window: 60
            })
        );
        assert_eq!(
            v.verify(&packet, NOW - 61),
            Err(SpaError::Future {
                user: user("alice"),
                timestamp: NOW,
                ahead: 61,
                window: 60
            })
        );
        // A configurable window.
        let mut narrow = Verifier::new(5, None);
        narrow
            .add_user("alice", Credential::Symmetric(alice_key()), policy())
            .unwrap();
        assert!(narrow.verify(&packet, NOW + 5).is_ok());
        assert_eq!(
            narrow.verify(&packet, NOW + 6).unwrap_err().reason(),
            "stale"
        );
        assert_eq!(
            narrow.verify(&packet, NOW - 6).unwrap_err().reason(),
            "future"
        );
        // Time near the ends of the u64 range does not overflow.
        let mut p = payload();
        p.timestamp = u64::MAX;
        assert_eq!(v.verify(&sym(&p), 0).unwrap_err().reason(), "future");
        p.timestamp = 0;
        assert_eq!(v.verify(&sym(&p), u64::MAX).unwrap_err().reason(), "stale");
        assert!(v.verify(&sym(&p), 0).is_ok());
    }

    #[test]
    fn wrong_key_is_unknown() {
        let v = verifier();
        let stranger = SpaKey::from_bytes(&[0xee; 32]);
        let packet = encode_symmetric(&stranger, &payload(), [1; 24]).unwrap();
        assert_eq!(
            v.verify(&packet, NOW),
            Err(SpaError::UnknownKey {
                mode: Mode::Symmetric,
                key_id: stranger.key_id()
            })
        );
        let packet = encode_public(
            &dave_identity(),
            &server_key().public(),
            &payload(),
            &[3; 32],
            [1; 24],
        )
        .unwrap();
        assert_eq!(v.verify(&packet, NOW).unwrap_err().reason(), "unknown_key");
        // A symmetric key id is not found among public keys and vice versa.
        let mut packet = sym(&payload());
        packet[4] = Mode::Public.byte();
        packet.resize(PUBLIC_PACKET_LEN, 0);
        assert_eq!(v.verify(&packet, NOW).unwrap_err().reason(), "unknown_key");
    }

    #[test]
    fn wrong_user_is_distinct() {
        let v = verifier();
        // Alice's key id on a packet sealed with Bob's key: the id is known,
        // the tag is not Alice's.
        let (_, bob_aead) = bob_key().derive();
        let packet = seal_symmetric(
            &bob_aead,
            alice_key().key_id(),
            &payload().encode().unwrap(),
            &[5; 24],
        );
        assert_eq!(
            v.verify(&packet, NOW),
            Err(SpaError::BadTag {
                user: user("alice")
            })
        );
        // Dave signs a packet claiming to be Carol: it decrypts (anyone can
        // encrypt to the server) but the signature is not Carol's.
        let packet = seal_public(
            VERSION_2,
            &dave_identity(),
            carol_identity().public().key_id(),
            &server_key().public(),
            &payload().encode().unwrap(),
            &[6; 32],
            &[5; 24],
        )
        .unwrap();
        assert_eq!(
            v.verify(&packet, NOW),
            Err(SpaError::BadSignature {
                user: user("carol")
            })
        );
        // Bob is authentic but asks for what only Alice may open.
        let packet = encode_symmetric(&bob_key(), &payload(), [7; 24]).unwrap();
        assert_eq!(
            v.verify(&packet, NOW),
            Err(SpaError::ServiceNotAllowed {
                user: user("bob"),
                service: tcp(22)
            })
        );
    }

    #[test]
    fn packet_for_another_server_is_refused() {
        let v = verifier();
        let other = ServerKey::from_bytes(&[0x99; 32]);
        let packet = carol_packet(VERSION, &other.public(), &payload());
        assert_eq!(
            v.verify(&packet, NOW),
            Err(SpaError::BadTag {
                user: user("carol")
            })
        );
        // Version 2: refused by mac1, before any public-key work.
        let packet = encode_public(
            &carol_identity(),
            &other.public(),
            &payload(),
            &[3; 32],
            [1; 24],
        )
        .unwrap();
        assert_eq!(v.verify(&packet, NOW), Err(SpaError::BadMac1));
    }

    #[test]
    fn small_order_ephemeral_is_refused() {
        let v = verifier();
        let mut packet = public(&payload());
        packet[OFF_EPHEMERAL..PUBLIC_HEADER_LEN].fill(0);
        assert_eq!(
            v.verify(&packet, NOW),
            Err(SpaError::BadEphemeral {
                user: user("carol")
            })
        );
        assert_eq!(
            encode_public(
                &carol_identity(),
                &ServerPublic([0; 32]),
                &payload(),
                &[3; 32],
                [1; 24]
            ),
            Err(EncodeError::WeakServerKey)
        );
    }

    #[test]
    fn truncated_oversized_and_bad_header() {
        let v = verifier();
        let good = sym(&payload());
        for len in [0, 1, 4] {
            assert_eq!(
                v.verify(&good[..len], NOW),
                Err(SpaError::Truncated { len, expected: 5 })
            );
        }
        for len in [5, 36, 123] {
            assert_eq!(
                v.verify(&good[..len], NOW),
                Err(SpaError::Truncated { len, expected: 124 })
            );
        }
        let good_public = public(&payload());
        assert_eq!(
            v.verify(&good_public[..219], NOW),
            Err(SpaError::Truncated {
                len: 219,
                expected: 220
            })
        );
        let mut long = good.clone();
        long.push(0);
        assert_eq!(
            v.verify(&long, NOW),
            Err(SpaError::Oversized { len: 125, max: 124 })
        );
        let mut long = good_public.clone();
        long.push(0);
        assert_eq!(
            v.verify(&long, NOW),
            Err(SpaError::Oversized { len: 221, max: 220 })
        );
        // Oversized is checked before anything else.
        assert_eq!(
            v.verify(&[0; 1500], NOW),
            Err(SpaError::Oversized {
                len: 1500,
                max: 236
            })
        );
        let mut bad = good.clone();
        bad[0] = b'X';
        assert_eq!(v.verify(&bad, NOW), Err(SpaError::BadMagic));
        let mut bad = good.clone();
        bad[3] = 2;
        assert_eq!(v.verify(&bad, NOW), Err(SpaError::UnsupportedVersion(2)));
        let mut bad = good.clone();
        bad[4] = 7;
        assert_eq!(v.verify(&bad, NOW), Err(SpaError::UnsupportedMode(7)));
    }

    #[test]
    fn malformed_payloads_are_reported_after_authentication() {
        let v = verifier();
        let (id, aead) = alice_key().derive();
        let good = payload().encode().unwrap();
        let cases: [(usize, u8, MalformedPayload); 8] = [
            (0, 2, MalformedPayload::Version(2)),
            (P_ADDR_KIND, 5, MalformedPayload::AddressKind(5)),
            (P_ADDR + 3, 1, MalformedPayload::Padding),
            (P_COUNT, 9, MalformedPayload::ServiceCount(9)),
            (P_SERVICES, 1, MalformedPayload::Proto(1)),
            (P_SERVICES + 2, 0, MalformedPayload::Port),
            (P_SERVICES + 23, 1, MalformedPayload::Padding),
            (
                P_ADDR_KIND,
                4,
                MalformedPayload::Address(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            ),
        ];
        for (at, value, reason) in cases {
            let mut p = good;
            p[at] = value;
            let packet = seal_symmetric(&aead, id, &p, &[1; 24]);
            assert_eq!(
                v.verify(&packet, NOW),
                Err(SpaError::Malformed {
                    user: user("alice"),
                    reason
                }),
                "offset {at}"
            );
        }
        // A key holder allowed explicit addresses still cannot aim a grant
        // at loopback, link-local or mapped forms of them.
        for (kind, bytes) in [
            (4u8, vec![127, 0, 0, 1]),
            (4, vec![169, 254, 1, 1]),
            (6, Ipv6Addr::LOCALHOST.octets().to_vec()),
            (6, "fe80::1".parse::<Ipv6Addr>().unwrap().octets().to_vec()),
            (
                6,
                "::ffff:127.0.0.1"
                    .parse::<Ipv6Addr>()
                    .unwrap()
                    .octets()
                    .to_vec(),
            ),
        ] {
            let mut p = good;
            p[P_ADDR_KIND] = kind;
            p[P_ADDR..P_ADDR + bytes.len()].copy_from_slice(&bytes);
            let packet = seal_symmetric(&aead, id, &p, &[1; 24]);
            assert!(
                matches!(
                    v.verify(&packet, NOW),
                    Err(SpaError::Malformed {
                        reason: MalformedPayload::Address(_),
                        ..
                    })
                ),
                "{bytes:?}"
            );
        }
        let mut p = good;
        p[P_COUNT] = 2;
        p[P_SERVICES + 3..P_SERVICES + 6].copy_from_slice(&[6, 0, 22]);
        let packet = seal_symmetric(&aead, id, &p, &[1; 24]);
        assert_eq!(
            v.verify(&packet, NOW).unwrap_err(),
            SpaError::Malformed {
                user: user("alice"),
                reason: MalformedPayload::DuplicateService(tcp(22))
            }
        );
        assert_eq!(
            Payload::decode(&good[..70]),
            Err(MalformedPayload::Length(70))
        );
    }

    #[test]
    fn encoder_refuses_bad_payloads() {
        let mut p = payload();
        p.services = (1..=9).map(tcp).collect();
        assert_eq!(p.encode(), Err(EncodeError::TooManyServices(9)));
        p.services = vec![tcp(0)];
        assert_eq!(p.encode(), Err(EncodeError::ZeroPort));
        p.services = vec![tcp(22), tcp(22)];
        assert_eq!(p.encode(), Err(EncodeError::DuplicateService(tcp(22))));
        p.services = vec![tcp(22)];
        for bad in [
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::",
            "ff02::1",
            "127.0.0.1",
            "::1",
            "169.254.0.7",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            p.address = Some(bad.parse().unwrap());
            assert!(
                matches!(p.encode(), Err(EncodeError::BadAddress(_))),
                "{bad}"
            );
        }
    }

    /// Audit item 6: one key holder sent more valid packets, dated near
    /// the end of the window, than the replay cache holds; everyone else
    /// was refused as unverifiable for two minutes. Now the flood fills
    /// only the sender's share.
    #[test]
    fn one_key_holder_cannot_fill_the_replay_cache_for_everyone() {
        let v = verifier();
        let mut cache = ReplayCache::new(2_000);
        cache.set_owners(v.key_count());
        let quota = cache.quota();
        let mut refused_own = 0;
        for i in 0..(2_000 + 500u32) {
            let mut p = payload();
            p.timestamp = NOW + 55;
            p.nonce[..4].copy_from_slice(&i.to_be_bytes());
            let packet = encode_symmetric(&alice_key(), &p, seq_bytes(i as u8)).unwrap();
            match v.verify_and_record(&packet, NOW, &mut cache) {
                Ok(_) => {}
                Err(SpaError::ReplayUnverifiable {
                    reason: ReplayError::OwnerFull { .. },
                    ..
                }) => refused_own += 1,
                Err(e) => panic!("packet {i}: {e}"),
            }
        }
        assert_eq!(refused_own, 2_500 - quota, "alice fills exactly her share");
        // Bob, with a packet dated now, is still accepted; so is carol.
        let mut p = payload();
        p.services = vec![tcp(443)];
        let bob = encode_symmetric(&bob_key(), &p, seq_bytes(0x11)).unwrap();
        v.verify_and_record(&bob, NOW, &mut cache).unwrap();
        v.verify_and_record(&public(&payload()), NOW, &mut cache)
            .unwrap();
    }

    #[test]
    fn replay_is_refused_also_after_a_restart() {
        let v = verifier();
        let mut cache = ReplayCache::new(16);
        let packet = sym(&payload());
        assert!(v.verify_and_record(&packet, NOW, &mut cache).is_ok());
        assert_eq!(
            v.verify_and_record(&packet, NOW + 1, &mut cache),
            Err(SpaError::Replay {
                user: user("alice")
            })
        );
        // Same payload, re-encrypted under a new nonce by someone holding the
        // key: same replay id, still refused.
        let again = encode_symmetric(&alice_key(), &payload(), [0x33; 24]).unwrap();
        assert_eq!(
            v.verify_and_record(&again, NOW + 1, &mut cache)
                .unwrap_err()
                .reason(),
            "replay"
        );
        let public_packet = public(&payload());
        // Same nonce as Alice's packet, but another key: another credential
        // (the replay key is the key's owner id and the payload nonce).
        assert!(v.verify_and_record(&public_packet, NOW, &mut cache).is_ok());
        assert_eq!(
            v.verify_and_record(&public_packet, NOW, &mut cache)
                .unwrap_err()
                .reason(),
            "replay"
        );
        let mut p = payload();
        p.nonce = [0x11; 16];
        let public_packet = public(&p);
        assert!(v.verify_and_record(&public_packet, NOW, &mut cache).is_ok());

        // Restart: the cache goes through its bytes.
        let mut restored = ReplayCache::from_bytes(&cache.to_bytes(), 16).unwrap();
        for packet in [&packet, &public_packet] {
            assert_eq!(
                v.verify_and_record(packet, NOW + 30, &mut restored)
                    .unwrap_err()
                    .reason(),
                "replay"
            );
        }
        // Restart without state: the floor refuses everything older.
        let mut lost = ReplayCache::new(16);
        lost.raise_floor(NOW + 10 + v.window_secs());
        assert!(matches!(
            v.verify_and_record(&packet, NOW + 10, &mut lost),
            Err(SpaError::ReplayUnverifiable {
                reason: ReplayError::Forgotten { .. },
                ..
            })
        ));
        let mut fresh = payload();
        fresh.timestamp = NOW + 11;
        fresh.nonce = [0x22; 16];
        assert!(v
            .verify_and_record(&sym(&fresh), NOW + 11, &mut lost)
            .is_ok());
    }

    #[test]
    fn check_order_rejects_forgeries_before_time() {
        // A stale packet whose tag is also broken is reported as tampered;
        // an old packet from an unknown key as unknown.
        let v = verifier();
        let mut packet = sym(&payload());
        let last = packet.len() - 1;
        packet[last] ^= 1;
        assert_eq!(
            v.verify(&packet, NOW + 1000).unwrap_err().reason(),
            "bad_tag"
        );
        let stranger = SpaKey::from_bytes(&[0xee; 32]);
        let packet = encode_symmetric(&stranger, &payload(), [1; 24]).unwrap();
        assert_eq!(
            v.verify(&packet, NOW + 1000).unwrap_err().reason(),
            "unknown_key"
        );
    }

    #[test]
    fn config_errors() {
        let mut v = Verifier::new(60, None);
        assert_eq!(
            v.add_user(
                "carol",
                Credential::Public(carol_identity().public()),
                policy()
            ),
            Err(SpaConfigError::NoServerKey("carol".into()))
        );
        let id = v
            .add_user("alice", Credential::Symmetric(alice_key()), policy())
            .unwrap();
        assert_eq!(id, alice_key().key_id());
        assert_eq!(
            v.add_user("eve", Credential::Symmetric(alice_key()), policy()),
            Err(SpaConfigError::DuplicateKey {
                user: "eve".into(),
                other: "alice".into(),
                key_id: id
            })
        );
        let mut p = policy();
        p.services.clear();
        assert_eq!(
            v.add_user("x", Credential::Symmetric(bob_key()), p),
            Err(SpaConfigError::NoServices("x".into()))
        );
        let mut p = policy();
        p.max_duration = 0;
        assert_eq!(
            v.add_user("x", Credential::Symmetric(bob_key()), p),
            Err(SpaConfigError::ZeroDuration("x".into()))
        );
        // Several credentials for one user.
        v.add_user("alice", Credential::Symmetric(bob_key()), policy())
            .unwrap();
        assert_eq!(v.len(), 2);
        let packet = encode_symmetric(&bob_key(), &payload(), [1; 24]).unwrap();
        assert_eq!(v.verify(&packet, NOW).unwrap().user, user("alice"));
    }

    #[test]
    fn keys_round_trip_and_refuse_weak_points() {
        let id = carol_identity();
        assert_eq!(IdentityKey::from_seed(&id.to_seed()).public(), id.public());
        let public = IdentityPublic::from_bytes(&id.public().to_bytes()).unwrap();
        assert_eq!(public, id.public());
        // The identity point (small order).
        let mut weak = [0u8; 32];
        weak[0] = 1;
        assert_eq!(
            IdentityPublic::from_bytes(&weak),
            Err(KeyError::WeakIdentityKey)
        );
        let server = server_key();
        assert_eq!(
            ServerKey::from_bytes(&server.to_bytes()).public(),
            server.public()
        );
        assert_eq!(alice_key(), SpaKey::from_bytes(alice_key().as_bytes()));
        assert_ne!(alice_key(), bob_key());
    }

    #[test]
    fn debug_never_prints_secrets() {
        let secret_hex = [
            hex(alice_key().as_bytes()),
            hex(&carol_identity().to_seed()[..]),
            hex(&server_key().to_bytes()[..]),
        ];
        let shown = format!(
            "{:?} {:?} {:?} {:?} {:?}",
            alice_key(),
            carol_identity(),
            server_key(),
            Credential::Symmetric(alice_key()),
            verifier()
        );
        for secret in &secret_hex {
            assert!(!shown.contains(&secret[..16]), "{shown}");
        }
        assert!(shown.contains(&alice_key().key_id().to_string()));
    }

    #[test]
    fn reasons_are_distinct() {
        let all = [
            SpaError::Oversized { len: 0, max: 0 },
            SpaError::Truncated {
                len: 0,
                expected: 0,
            },
            SpaError::BadMagic,
            SpaError::UnsupportedVersion(0),
            SpaError::LegacyPublic,
            SpaError::BadMac1,
            SpaError::UnsupportedMode(0),
            SpaError::UnknownKey {
                mode: Mode::Symmetric,
                key_id: KeyId([0; 8]),
            },
            SpaError::BadEphemeral { user: user("u") },
            SpaError::BadTag { user: user("u") },
            SpaError::BadSignature { user: user("u") },
            SpaError::Malformed {
                user: user("u"),
                reason: MalformedPayload::Port,
            },
            SpaError::Stale {
                user: user("u"),
                timestamp: 0,
                age: 0,
                window: 0,
            },
            SpaError::Future {
                user: user("u"),
                timestamp: 0,
                ahead: 0,
                window: 0,
            },
            SpaError::ServiceNotAllowed {
                user: user("u"),
                service: tcp(1),
            },
            SpaError::AddressNotAllowed {
                user: user("u"),
                address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            },
            SpaError::Replay { user: user("u") },
            SpaError::ReplayUnverifiable {
                user: user("u"),
                reason: ReplayError::Full { capacity: 1 },
            },
        ];
        let mut reasons: Vec<_> = all.iter().map(SpaError::reason).collect();
        reasons.sort_unstable();
        reasons.dedup();
        assert_eq!(reasons.len(), all.len());
        let mut messages: Vec<_> = all.iter().map(ToString::to_string).collect();
        messages.sort_unstable();
        messages.dedup();
        assert_eq!(messages.len(), all.len());
    }
}
