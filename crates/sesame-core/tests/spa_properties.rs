//! Property tests for SPA, the replay cache and TOTP: encode→verify round
//! trips, random and mutated bytes never verify, a credential is never
//! accepted twice, and TOTP sequences keep their shape.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use sesame_core::replay::{ReplayCache, ReplayKey};
use sesame_core::spa::{
    self, Credential, IdentityKey, Mode, Payload, ServerKey, SpaKey, UserPolicy, Verifier,
    MAX_PACKET_LEN, MAX_SERVICES,
};
use sesame_core::totp;
use sesame_core::{Proto, Service};

const NOW: u64 = 1_750_000_000;
const WINDOW: u64 = 60;

fn allowed() -> Vec<Service> {
    let mut services = Vec::new();
    for port in [22, 80, 443, 8080, 51820] {
        services.push(Service::tcp(port));
        services.push(Service::udp(port));
    }
    services
}

fn sym_key() -> SpaKey {
    SpaKey::from_bytes(&[0x5a; 32])
}

fn identity() -> IdentityKey {
    IdentityKey::from_seed(&[0x17; 32])
}

fn server() -> ServerKey {
    ServerKey::from_bytes(&[0x99; 32])
}

fn verifier() -> Verifier {
    let mut v = Verifier::new(WINDOW, Some(server()));
    let policy = UserPolicy {
        services: allowed(),
        max_duration: 3600,
        allow_address: true,
        retired_after: None,
    };
    v.add_user("sym", Credential::Symmetric(sym_key()), policy.clone())
        .unwrap();
    v.add_user("pub", Credential::Public(identity().public()), policy)
        .unwrap();
    v
}

/// Addresses a grant may go to (see `sesame_core::spa::usable_address`).
fn address() -> impl Strategy<Value = Option<IpAddr>> {
    any_address().prop_filter("a grantable address", |a| {
        a.is_none_or(sesame_core::spa::usable_address)
    })
}

fn any_address() -> impl Strategy<Value = Option<IpAddr>> {
    prop_oneof![
        Just(None),
        (1u8..=223, any::<[u8; 3]>())
            .prop_map(|(a, [b, c, d])| Some(IpAddr::V4(Ipv4Addr::new(a, b, c, d)))),
        (0x2000u16..0xfe00, any::<[u16; 7]>()).prop_map(|(a, r)| Some(IpAddr::V6(Ipv6Addr::new(
            a, r[0], r[1], r[2], r[3], r[4], r[5], r[6]
        )))),
    ]
}

/// Payloads the verifier accepts: fresh, allowed services, any duration.
fn valid_payload() -> impl Strategy<Value = Payload> {
    (
        NOW - WINDOW..=NOW + WINDOW,
        any::<[u8; 16]>(),
        proptest::sample::subsequence(allowed(), 0..=MAX_SERVICES),
        any::<u32>(),
        address(),
    )
        .prop_map(|(timestamp, nonce, services, duration, address)| Payload {
            timestamp,
            nonce,
            services,
            duration,
            address,
        })
}

/// Any encodable payload.
fn any_payload() -> impl Strategy<Value = Payload> {
    let service = (any::<bool>(), 1u16..).prop_map(|(udp, port)| Service {
        proto: if udp { Proto::Udp } else { Proto::Tcp },
        port,
    });
    (
        any::<u64>(),
        any::<[u8; 16]>(),
        proptest::collection::hash_set(service, 0..=MAX_SERVICES),
        any::<u32>(),
        address(),
    )
        .prop_map(|(timestamp, nonce, services, duration, address)| Payload {
            timestamp,
            nonce,
            services: services.into_iter().collect(),
            duration,
            address,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn payload_encoding_round_trips(p in any_payload()) {
        let bytes = p.encode().unwrap();
        prop_assert_eq!(Payload::decode(&bytes), Ok(p));
    }

    #[test]
    fn payload_decoding_is_canonical(bytes in proptest::collection::vec(any::<u8>(), 71)) {
        if let Ok(p) = Payload::decode(&bytes) {
            prop_assert_eq!(p.encode().unwrap().to_vec(), bytes);
        }
    }

    #[test]
    fn symmetric_round_trip(p in valid_payload(), nonce in any::<[u8; 24]>()) {
        let v = verifier();
        let packet = spa::encode_symmetric(&sym_key(), &p, nonce).unwrap();
        prop_assert_eq!(packet.len(), spa::SYMMETRIC_PACKET_LEN);
        let ok = v.verify(&packet, NOW).unwrap();
        prop_assert_eq!(&*ok.user, "sym");
        prop_assert_eq!(ok.mode, Mode::Symmetric);
        prop_assert!(ok.duration.as_secs() <= 3600);
        prop_assert_eq!(ok.payload, p);
    }

    #[test]
    fn public_round_trip(p in valid_payload(), nonce in any::<[u8; 24]>(), eph in any::<[u8; 32]>()) {
        let v = verifier();
        let packet = spa::encode_public(&identity(), &server().public(), &p, &eph, nonce).unwrap();
        prop_assert_eq!(packet.len(), spa::PUBLIC_V2_PACKET_LEN);
        let ok = v.verify(&packet, NOW).unwrap();
        prop_assert_eq!(&*ok.user, "pub");
        prop_assert_eq!(ok.mode, Mode::Public);
        prop_assert_eq!(ok.payload, p);
    }

    #[test]
    fn random_bytes_never_verify(bytes in proptest::collection::vec(any::<u8>(), 0..=MAX_PACKET_LEN + 16)) {
        prop_assert!(verifier().verify(&bytes, NOW).is_err());
    }

    /// Random bytes behind a well-formed header naming a known key still
    /// never verify: the forgery has to get past the tag.
    #[test]
    fn random_bytes_with_a_known_key_id_never_verify(
        public in any::<bool>(),
        body in proptest::collection::vec(any::<u8>(), spa::PUBLIC_PACKET_LEN),
    ) {
        let v = verifier();
        let (mode, key_id) = if public {
            (Mode::Public, identity().public().key_id())
        } else {
            (Mode::Symmetric, sym_key().key_id())
        };
        // Version 2 public-key packets carry a valid mac1 here (the sender
        // knows the server's public key): what is left is the tag.
        let mut packet = if public { b"SSM\x02".to_vec() } else { b"SSM\x01".to_vec() };
        packet.push(mode.byte());
        packet.extend_from_slice(&key_id.0);
        packet.extend_from_slice(&body[..mode.packet_len() - packet.len()]);
        if public {
            let tag = spa::mac1(&spa::mac1_key(&server().public().0), &packet);
            packet.extend_from_slice(&tag);
        }
        let err = v.verify(&packet, NOW).unwrap_err();
        prop_assert!(
            matches!(err.reason(), "bad_tag" | "bad_ephemeral"),
            "{}", err
        );
    }

    #[test]
    fn any_mutation_of_a_valid_packet_fails(
        p in valid_payload(),
        public in any::<bool>(),
        flips in proptest::collection::vec((any::<usize>(), 1u8..), 1..4),
    ) {
        let v = verifier();
        let mut packet = if public {
            spa::encode_public(&identity(), &server().public(), &p, &[7; 32], [3; 24]).unwrap()
        } else {
            spa::encode_symmetric(&sym_key(), &p, [3; 24]).unwrap()
        };
        let len = packet.len();
        let mut touched = HashSet::new();
        for (at, mask) in flips {
            if touched.insert(at % len) {
                packet[at % len] ^= mask;
            }
        }
        prop_assert!(v.verify(&packet, NOW).is_err());
    }

    /// Whatever the sequence of insertions, clock moves (forward and back),
    /// evictions and restarts through the persisted image, no credential is
    /// accepted twice. A credential's expiry is part of it (an SPA packet's
    /// is its timestamp plus the window), so it is a function of the key.
    #[test]
    fn replay_cache_never_accepts_twice(
        ops in proptest::collection::vec((0u8..40, 0u64..200, 0u8..10), 1..300),
        capacity in 1usize..12,
    ) {
        let mut cache = ReplayCache::new(capacity);
        let mut accepted = HashSet::new();
        for (key, now, action) in ops {
            match action {
                0 => cache = ReplayCache::from_bytes(&cache.to_bytes(), capacity).unwrap(),
                1 => { cache.purge(now); }
                _ => {
                    let k = ReplayKey::spa([key; 16]);
                    if cache.check_and_insert(k, u64::from(key) * 5, now).is_ok() {
                        prop_assert!(accepted.insert(k), "accepted twice: {:?}", k);
                    }
                }
            }
            prop_assert!(cache.len() <= capacity);
        }
    }

    #[test]
    fn totp_sequences_are_distinct_and_in_range(
        secret in proptest::collection::vec(any::<u8>(), 16..64),
        step in any::<u64>(),
        lo in 1u16..=65535,
        width in 0u16..2000,
        len in 1usize..=32,
    ) {
        let hi = lo.saturating_add(width);
        let ports = u32::from(hi) - u32::from(lo) + 1;
        let result = totp::derive_sequence(&secret, step, len, lo..=hi, Proto::Udp);
        if (ports as usize) < len {
            prop_assert!(result.is_err());
        } else {
            let seq = result.unwrap();
            prop_assert_eq!(seq.len(), len);
            let distinct: HashSet<u16> = seq.iter().map(|k| k.port).collect();
            prop_assert_eq!(distinct.len(), len);
            prop_assert!(seq.iter().all(|k| (lo..=hi).contains(&k.port) && k.proto == Proto::Udp));
            // Deterministic.
            prop_assert_eq!(totp::derive_sequence(&secret, step, len, lo..=hi, Proto::Udp).unwrap(), seq);
        }
    }
}
