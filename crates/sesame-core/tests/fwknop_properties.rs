//! Property tests for the fwknop codec: encode→decode round trips in every
//! mode, HMAC type and digest type; random and mutated packets never decode
//! (or, without HMAC, decode only to the same request).

use std::net::{IpAddr, Ipv4Addr};

use proptest::prelude::*;
use sesame_core::fwknop::{
    decode, encode, AccessPort, DigestType, EncMode, FwknopEncodeError, FwknopKeys, FwknopRequest,
    MsgType, GPG_MIN_LEN, MAX_PACKET_LEN, MIN_PACKET_LEN,
};
use sesame_core::Service;

const NOW: u64 = 1_795_533_693;
const MAX_AGE: u64 = 120;

fn mode() -> impl Strategy<Value = EncMode> {
    proptest::sample::select(EncMode::ALL.to_vec())
}

fn digest_type() -> impl Strategy<Value = DigestType> {
    proptest::sample::select(DigestType::ALL.to_vec())
}

fn keys() -> impl Strategy<Value = FwknopKeys> {
    (
        proptest::collection::vec(any::<u8>(), 1..=32),
        mode(),
        proptest::option::of((
            proptest::collection::vec(any::<u8>(), 1..=136),
            digest_type(),
        )),
    )
        .prop_map(|(k, m, h)| {
            FwknopKeys::new(&k, m, h.as_ref().map(|(hk, t)| (&hk[..], *t))).unwrap()
        })
}

fn access_port() -> impl Strategy<Value = AccessPort> {
    (0u8..4, 1u16..=65535).prop_map(|(p, port)| match p {
        0 => AccessPort::Service(Service::tcp(port)),
        1 => AccessPort::Service(Service::udp(port)),
        2 => AccessPort::Icmp(port),
        _ => AccessPort::Unspecified(port),
    })
}

fn request() -> impl Strategy<Value = FwknopRequest> {
    (
        "[a-zA-Z0-9._@ -]{1,24}",
        -120i64..=120,
        0u8..=6,
        proptest::option::of(any::<u32>()),
        proptest::collection::vec(access_port(), 1..=4),
        "[a-z]{1,12}(/[a-z]{1,8}){0,2}",
        ("[a-z0-9.-]{1,30}", 1u16..=65535),
        proptest::option::of(any::<u32>()),
        proptest::option::of("[a-zA-Z0-9]{1,16}"),
        digest_type(),
    )
        .prop_map(
            |(user, dt, t, ip, access, cmd, nat, timeout, sa, digest_type)| {
                let msg_type = MsgType::from_number(t).unwrap();
                FwknopRequest {
                    username: user,
                    timestamp: NOW.wrapping_add_signed(dt),
                    msg_type,
                    access_ip: ip
                        .map(|a| IpAddr::V4(Ipv4Addr::from(a)))
                        .filter(|a| !a.is_unspecified()),
                    access: if msg_type == MsgType::Command {
                        vec![]
                    } else {
                        access
                    },
                    command: (msg_type == MsgType::Command).then_some(cmd),
                    nat_access: msg_type.has_nat_access().then_some(nat),
                    server_auth: sa,
                    client_timeout: msg_type
                        .has_client_timeout()
                        .then_some(timeout.unwrap_or(30)),
                    digest_type,
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn round_trip(req in request(), keys in keys(), random in any::<u64>(), salt in any::<[u8; 8]>()) {
        match encode(&req, &keys, random, salt) {
            Ok(packet) => {
                prop_assert!(packet.len() >= MIN_PACKET_LEN && packet.len() <= MAX_PACKET_LEN);
                let m = decode(packet.as_bytes(), &keys, NOW, MAX_AGE).unwrap();
                prop_assert_eq!(&m.request, &req);
                prop_assert_eq!(&m.random, &format!("{:016}", random % 10_000_000_000_000_000));
                prop_assert_eq!(m.version.as_str(), "3.0.0");
                // Deterministic given its randomness.
                prop_assert_eq!(encode(&m.request, &keys, random, salt).unwrap(), packet);
            }
            // Only a request too big for a Rijndael packet (or too small for
            // a server to take) may fail.
            Err(FwknopEncodeError::PacketLength { len, body }) => {
                prop_assert!(body >= GPG_MIN_LEN || len < MIN_PACKET_LEN);
            }
            Err(e) => prop_assert!(false, "refused: {}", e),
        }
    }

    #[test]
    fn every_mode_and_hmac_type_round_trips(
        m in mode(),
        hmac in proptest::option::of(digest_type()),
        dt in digest_type(),
        salt in any::<[u8; 8]>(),
    ) {
        let keys = FwknopKeys::new(b"fwknoptest", m, hmac.map(|t| (&b"hmac key"[..], t))).unwrap();
        let mut req = FwknopRequest::access(
            "root",
            NOW,
            Some(IpAddr::from([10, 77, 0, 2])),
            vec![AccessPort::Service(Service::tcp(22 ))],
        );
        req.digest_type = dt;
        let packet = encode(&req, &keys, 1_234_567_890_123_456, salt).unwrap();
        let got = decode(packet.as_bytes(), &keys, NOW, MAX_AGE).unwrap();
        prop_assert_eq!(&got.request, &req);
        prop_assert_eq!(got.request.digest_type, dt);
        prop_assert_eq!(got.digest.len(), dt.digest_len());
    }

    #[test]
    fn random_bytes_never_decode(bytes in proptest::collection::vec(any::<u8>(), 0..1600), keys in keys()) {
        prop_assert!(decode(&bytes, &keys, NOW, MAX_AGE).is_err());
    }

    #[test]
    fn random_base64_never_decodes(s in "[A-Za-z0-9+/]{140,420}", keys in keys()) {
        prop_assert!(decode(s.as_bytes(), &keys, NOW, MAX_AGE).is_err());
    }

    /// One character changed: with an HMAC never accepted; without, accepted
    /// only as the very same request (same replay key), which the strict
    /// outer base64 makes impossible in practice.
    #[test]
    fn mutated_packets(
        keys in keys(),
        salt in any::<[u8; 8]>(),
        at in any::<prop::sample::Index>(),
        to in proptest::sample::select(
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".to_vec()
        ),
    ) {
        let req = FwknopRequest::access(
            "root",
            NOW,
            None,
            vec![AccessPort::Service(Service::udp(53 ))],
        );
        let packet = encode(&req, &keys, 42, salt).unwrap();
        let original = decode(packet.as_bytes(), &keys, NOW, MAX_AGE).unwrap();
        let mut bad = packet.into_bytes();
        let i = at.index(bad.len());
        prop_assume!(bad[i] != to);
        bad[i] = to;
        match decode(&bad, &keys, NOW, MAX_AGE) {
            Err(_) => {}
            Ok(m) => {
                prop_assert!(keys.hmac_type().is_none(), "HMAC packet accepted after a change at {}", i);
                prop_assert_eq!(m.replay_key(), original.replay_key());
            }
        }
    }
}
