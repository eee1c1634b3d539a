//! The fwknop codec against 27 packets made by the real fwknop 2.6.10 client
//! (`tests/data/fwknop-vectors.json`, with their keys and the client's own
//! dump of every field), and every refusal reason on variations of them.

use std::net::IpAddr;

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use sesame_core::fwknop::{
    decode, digest_b64, encode, seal, AccessPort, DigestType, EncMode, FwknopError, FwknopKeys,
    FwknopMessage, FwknopRequest, HmacType, Malformed, MsgType, GPG_MIN_LEN, MAX_PACKET_LEN,
    MIN_PACKET_LEN,
};
use sesame_core::replay::{ReplayCache, ReplayError};
use sesame_core::Service;

const VECTORS: &str = include_str!("data/fwknop-vectors.json");
/// The vectors' timestamp.
const NOW: u64 = 1_795_533_693;
const MAX_AGE: u64 = 120;

struct Vector {
    name: String,
    packet: String,
    dump: Value,
    keys: FwknopKeys,
    enc_key: Vec<u8>,
    hmac_key: Vec<u8>,
}

fn all() -> Vec<Vector> {
    let root: Value = serde_json::from_str(VECTORS).unwrap();
    let key_b64 = STANDARD
        .decode(root["KEY_BASE64"].as_str().unwrap())
        .unwrap();
    let hmac_key = STANDARD
        .decode(root["HMAC_KEY_BASE64"].as_str().unwrap())
        .unwrap();
    let passphrase = root["KEY_passphrase"].as_str().unwrap().as_bytes().to_vec();
    root["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            let dump = v["client_dump"].clone();
            let argv = v["argv"].as_str().unwrap();
            let enc_key = if argv.contains("--key-rijndael ") {
                passphrase.clone()
            } else {
                key_b64.clone()
            };
            let mode = match number(&dump["Encryption Mode"]) {
                1 => EncMode::Ecb,
                2 => EncMode::Cbc,
                3 => EncMode::Cfb,
                5 => EncMode::Ofb,
                6 => EncMode::Ctr,
                8 => EncMode::CbcLegacyIv,
                n => panic!("mode {n}"),
            };
            // The same mapping through the access.conf names.
            let name = label(&dump["Encryption Mode"]);
            assert_eq!(name.parse::<EncMode>().unwrap(), mode);
            let hmac = match number(&dump["HMAC Type"]) {
                0 => None,
                _ => Some(label(&dump["HMAC Type"]).parse::<HmacType>().unwrap()),
            };
            let keys = FwknopKeys::new(&enc_key, mode, hmac.map(|t| (&hmac_key[..], t))).unwrap();
            let packet = v["spa_packet"].as_str().unwrap().to_string();
            assert_eq!(packet.len() as u64, v["spa_packet_len"].as_u64().unwrap());
            Vector {
                name: v["name"].as_str().unwrap().to_string(),
                packet,
                dump,
                keys,
                enc_key,
                hmac_key: hmac_key.clone(),
            }
        })
        .collect()
}

/// `"3 (SHA256)"` → 3.
fn number(v: &Value) -> u8 {
    v.as_str()
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// `"3 (SHA256)"` → `SHA256`.
fn label(v: &Value) -> &str {
    let s = v.as_str().unwrap();
    s[s.find('(').unwrap() + 1..s.len() - 1].trim()
}

fn field<'a>(v: &'a Vector, k: &str) -> &'a str {
    v.dump[k]
        .as_str()
        .unwrap_or_else(|| panic!("{}: {k}", v.name))
}

fn get(name: &str) -> Vector {
    all().into_iter().find(|v| v.name == name).unwrap()
}

fn reason(r: Result<FwknopMessage, FwknopError>) -> &'static str {
    match r {
        Ok(m) => panic!("decoded: {m:?}"),
        Err(e) => e.reason(),
    }
}

/// Keys like `v`'s but with another encryption key, HMAC key or HMAC type.
fn keys(v: &Vector, enc: &[u8], hmac: Option<(&[u8], HmacType)>) -> FwknopKeys {
    FwknopKeys::new(enc, v.keys.mode(), hmac).unwrap()
}

#[test]
fn all_27_vectors_decode_to_the_clients_fields() {
    let vectors = all();
    assert_eq!(vectors.len(), 27);
    for v in &vectors {
        let m = decode(v.packet.as_bytes(), &v.keys, NOW, MAX_AGE)
            .unwrap_or_else(|e| panic!("{}: {e} ({})", v.name, e.reason()));
        let n = &v.name;
        assert_eq!(m.random, field(v, "Random Value"), "{n}");
        assert_eq!(m.request.username, field(v, "Username"), "{n}");
        assert_eq!(
            m.request.timestamp.to_string(),
            field(v, "Timestamp"),
            "{n}"
        );
        assert_eq!(m.version, field(v, "FKO Version"), "{n}");
        assert_eq!(
            m.request.msg_type.number(),
            number(&v.dump["Message Type"]),
            "{n}"
        );
        assert_eq!(
            m.request.msg_type.name(),
            label(&v.dump["Message Type"]),
            "{n}"
        );
        assert_eq!(m.message_string(), field(v, "Message String"), "{n}");
        let nat = m
            .request
            .nat_access
            .as_ref()
            .map_or("<NULL>".to_string(), |(h, p)| format!("{h},{p}"));
        assert_eq!(nat, field(v, "Nat Access"), "{n}");
        assert_eq!(
            m.request.server_auth.as_deref().unwrap_or("<NULL>"),
            field(v, "Server Auth"),
            "{n}"
        );
        assert_eq!(
            m.request.client_timeout.unwrap_or(0).to_string(),
            field(v, "Client Timeout"),
            "{n}"
        );
        assert_eq!(
            m.request.client_timeout.is_some(),
            m.request.msg_type.has_client_timeout(),
            "{n}"
        );
        assert_eq!(
            m.request.digest_type.number(),
            number(&v.dump["Digest Type"]),
            "{n}"
        );
        assert_eq!(
            STANDARD_NO_PAD.encode(&m.digest),
            field(v, "SPA Data Digest"),
            "{n}"
        );
        assert_eq!(m.digest.len(), m.request.digest_type.digest_len(), "{n}");
        // The HMAC the client printed is the packet's tail.
        match v.keys.hmac_type() {
            Some(t) => {
                let hmac = field(v, "HMAC");
                assert_eq!(hmac.len(), t.b64_len(), "{n}");
                assert!(v.packet.ends_with(hmac), "{n}");
            }
            None => assert_eq!(number(&v.dump["HMAC Type"]), 0, "{n}"),
        }
        assert_eq!(field(v, "Final SPA Data"), v.packet, "{n}");
        assert_eq!(field(v, "Encryption Type"), "1 (Rijndael)", "{n}");
        // The replay key is the inner digest's.
        assert_eq!(
            m.replay_key(),
            sesame_core::ReplayKey::fwknop(&m.digest),
            "{n}"
        );
    }
}

#[test]
fn the_vectors_exercise_every_mode_hmac_digest_and_type_they_claim() {
    let vectors = all();
    let modes: std::collections::BTreeSet<_> = vectors.iter().map(|v| v.keys.mode()).collect();
    assert_eq!(modes.len(), EncMode::ALL.len());
    let hmacs: std::collections::BTreeSet<_> = vectors.iter().map(|v| v.keys.hmac_type()).collect();
    assert_eq!(hmacs.len(), HmacType::ALL.len() + 1);
    let digests: std::collections::BTreeSet<_> = vectors
        .iter()
        .map(|v| {
            decode(v.packet.as_bytes(), &v.keys, NOW, MAX_AGE)
                .unwrap()
                .request
                .digest_type
        })
        .collect();
    // SHA3-512 as the inner digest is not among the vectors; the property
    // tests cover it.
    assert_eq!(digests.len(), 6);
    let types: std::collections::BTreeSet<_> = vectors
        .iter()
        .map(|v| {
            decode(v.packet.as_bytes(), &v.keys, NOW, MAX_AGE)
                .unwrap()
                .request
                .msg_type
        })
        .collect();
    assert_eq!(types.len(), 6, "every type but 6");
}

#[test]
fn specific_vectors() {
    let m = |name: &str| {
        let v = get(name);
        decode(v.packet.as_bytes(), &v.keys, NOW, MAX_AGE).unwrap()
    };
    let v01 = m("v01_cbc_hmac_sha256");
    assert_eq!(v01.request.access_ip, Some(IpAddr::from([10, 77, 0, 2])));
    assert_eq!(v01.request.access, [AccessPort::Service(Service::tcp(22))]);
    assert_eq!(v01.request.msg_type, MsgType::Access);
    assert_eq!(v01.request.command, None);
    let v14 = m("v14_multi_port");
    assert_eq!(
        v14.request
            .access
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>(),
        ["tcp/22", "udp/53", "tcp/8443"]
    );
    assert_eq!(m("v15_source_any").request.access_ip, None);
    assert_eq!(m("v16_spoof_user").request.username, "alice");
    let v18 = m("v18_nat_access_timeout");
    assert_eq!(v18.request.msg_type, MsgType::ClientTimeoutNatAccess);
    assert_eq!(
        v18.request.nat_access,
        Some(("192.168.10.5".to_string(), 22))
    );
    assert_eq!(v18.request.client_timeout, Some(60));
    assert_eq!(m("v19_nat_local").request.msg_type, MsgType::LocalNatAccess);
    let v20 = m("v20_command");
    assert_eq!(v20.request.msg_type, MsgType::Command);
    assert_eq!(v20.request.command.as_deref(), Some("touch /tmp/x"));
    assert!(v20.request.access.is_empty());
    assert_eq!(
        m("v12_digest_sha3_256").request.digest_type,
        DigestType::Sha3_256
    );
}

/// The salt of a packet (bytes 8..16 of its decoded blob).
fn salt_of(v: &Vector) -> [u8; 8] {
    let body = match v.keys.hmac_type() {
        Some(t) => &v.packet[..v.packet.len() - t.b64_len()],
        None => &v.packet[..],
    };
    let blob = STANDARD_NO_PAD.decode(format!("U2FsdGVkX1{body}")).unwrap();
    blob[8..16].try_into().unwrap()
}

#[test]
fn the_encoder_reproduces_every_vector_byte_for_byte() {
    for v in all() {
        let m = decode(v.packet.as_bytes(), &v.keys, NOW, MAX_AGE).unwrap();
        let random: u64 = m.random.parse().unwrap();
        let packet = encode(&m.request, &v.keys, random, salt_of(&v)).unwrap();
        assert_eq!(packet, v.packet, "{}", v.name);
    }
}

#[test]
fn age_window() {
    let v = get("v01_cbc_hmac_sha256");
    let p = v.packet.as_bytes();
    assert!(decode(p, &v.keys, NOW + MAX_AGE, MAX_AGE).is_ok());
    assert!(decode(p, &v.keys, NOW - MAX_AGE, MAX_AGE).is_ok());
    assert_eq!(
        decode(p, &v.keys, NOW + MAX_AGE + 1, MAX_AGE),
        Err(FwknopError::Stale {
            timestamp: NOW,
            age: MAX_AGE + 1,
            max_age: MAX_AGE
        })
    );
    assert_eq!(
        decode(p, &v.keys, NOW - MAX_AGE - 1, MAX_AGE),
        Err(FwknopError::Future {
            timestamp: NOW,
            ahead: MAX_AGE + 1,
            max_age: MAX_AGE
        })
    );
    // A configurable window: 10 s.
    assert_eq!(reason(decode(p, &v.keys, NOW + 11, 10)), "stale");
    assert!(decode(p, &v.keys, NOW + 10, 10).is_ok());
    // The real clock (years before the vectors) finds them from the future.
    assert_eq!(reason(decode(p, &v.keys, 1_750_000_000, MAX_AGE)), "future");
}

#[test]
fn lengths_and_alphabet() {
    let v = get("v01_cbc_hmac_sha256");
    let p = &v.packet;
    // Truncated.
    assert_eq!(
        decode(&p.as_bytes()[..MIN_PACKET_LEN - 1], &v.keys, NOW, MAX_AGE),
        Err(FwknopError::TooShort {
            len: MIN_PACKET_LEN - 1,
            min: MIN_PACKET_LEN
        })
    );
    for cut in [1, 2, 3, 5, 20] {
        let short = &p.as_bytes()[..p.len() - cut];
        assert_eq!(
            reason(decode(short, &v.keys, NOW, MAX_AGE)),
            "bad_length",
            "{cut}"
        );
    }
    assert_eq!(reason(decode(b"", &v.keys, NOW, MAX_AGE)), "too_short");
    // Oversized.
    let big = "A".repeat(MAX_PACKET_LEN + 1);
    assert_eq!(
        decode(big.as_bytes(), &v.keys, NOW, MAX_AGE),
        Err(FwknopError::Oversized {
            len: MAX_PACKET_LEN + 1,
            max: MAX_PACKET_LEN
        })
    );
    // Extended by junk.
    let long = format!("{p}AAAA");
    assert_eq!(
        reason(decode(long.as_bytes(), &v.keys, NOW, MAX_AGE)),
        "bad_length"
    );
    // Not base64.
    for (at, bad) in [(0, b'*'), (50, b'='), (100, b'-'), (203, b'\n'), (7, 0xff)] {
        let mut q = p.clone().into_bytes();
        q[at] = bad;
        assert_eq!(
            decode(&q, &v.keys, NOW, MAX_AGE),
            Err(FwknopError::BadBase64 { at, byte: bad })
        );
    }
    let padded = format!("{p}=");
    assert_eq!(
        reason(decode(padded.as_bytes(), &v.keys, NOW, MAX_AGE)),
        "bad_base64"
    );
    // The U2FsdGVkX1 prefix put back (a replay-cache dodge against fwknopd).
    let prefixed = format!("U2FsdGVkX1{p}");
    assert_eq!(
        decode(prefixed.as_bytes(), &v.keys, NOW, MAX_AGE),
        Err(FwknopError::SaltedPrefix)
    );
}

#[test]
fn gpg_sized_packets_are_refused_with_their_own_reason() {
    let v = get("v01_cbc_hmac_sha256");
    // GPG packets start with "hQ" once the client strips its prefix.
    let gpg = format!("hQ{}", "B".repeat(GPG_MIN_LEN - 2));
    assert_eq!(
        decode(gpg.as_bytes(), &get("v21_no_hmac").keys, NOW, MAX_AGE),
        Err(FwknopError::GpgUnsupported { len: GPG_MIN_LEN })
    );
    // With an HMAC configured, the threshold applies without the HMAC.
    let just_under = "B".repeat(GPG_MIN_LEN - 1 + 43);
    assert_ne!(
        reason(decode(just_under.as_bytes(), &v.keys, NOW, MAX_AGE)),
        "gpg_unsupported"
    );
    let at = "B".repeat(GPG_MIN_LEN + 43);
    assert_eq!(
        reason(decode(at.as_bytes(), &v.keys, NOW, MAX_AGE)),
        "gpg_unsupported"
    );
    assert_eq!(
        reason(decode("B".repeat(1400).as_bytes(), &v.keys, NOW, MAX_AGE)),
        "gpg_unsupported"
    );
}

#[test]
fn hmac_failures() {
    let v = get("v01_cbc_hmac_sha256");
    let p = v.packet.clone().into_bytes();
    // A flipped bit in the HMAC.
    let mut q = p.clone();
    let last = q.len() - 1;
    q[last] = if q[last] == b'Q' { b'R' } else { b'Q' };
    assert_eq!(
        decode(&q, &v.keys, NOW, MAX_AGE),
        Err(FwknopError::BadHmac {
            hmac_type: HmacType::Sha256
        })
    );
    // A valid base64 character changed in the body (a flipped ciphertext
    // bit): refused by the HMAC, before decryption.
    for at in [0, 1, 40, 100, 160] {
        let mut q = p.clone();
        q[at] = if q[at] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            reason(decode(&q, &v.keys, NOW, MAX_AGE)),
            "bad_hmac",
            "{at}"
        );
    }
    // Wrong HMAC key.
    let wrong = keys(
        &v,
        &v.enc_key,
        Some((b"another hmac key", HmacType::Sha256)),
    );
    assert_eq!(reason(decode(&p, &wrong, NOW, MAX_AGE)), "bad_hmac");
    // Wrong HMAC type, same or different tag length.
    for t in HmacType::ALL {
        if t == HmacType::Sha256 {
            continue;
        }
        let k = keys(&v, &v.enc_key, Some((&v.hmac_key, t)));
        assert_eq!(
            decode(&p, &k, NOW, MAX_AGE),
            Err(FwknopError::HmacTypeMismatch {
                configured: t,
                actual: HmacType::Sha256
            }),
            "{t}"
        );
    }
    // A packet without HMAC where one is required: recognised from its
    // length when only the whole packet is a whole number of AES blocks.
    let v21 = get("v21_no_hmac");
    for t in [HmacType::Md5, HmacType::Sha1, HmacType::Sha512] {
        let required = keys(&v21, &v21.enc_key, Some((&v.hmac_key, t)));
        assert_eq!(
            decode(v21.packet.as_bytes(), &required, NOW, MAX_AGE),
            Err(FwknopError::HmacMissing { expected: t }),
            "{t}"
        );
    }
    // When the packet without its last N characters is well formed too (a
    // 43-character tag is about two AES blocks), no length tells "no HMAC"
    // from "wrong HMAC", and nothing is decrypted to find out.
    let required = keys(&v21, &v21.enc_key, Some((&v.hmac_key, HmacType::Sha256)));
    assert_eq!(
        decode(v21.packet.as_bytes(), &required, NOW, MAX_AGE),
        Err(FwknopError::BadHmac {
            hmac_type: HmacType::Sha256
        })
    );
    // A packet with an HMAC where none is configured: not a whole number of
    // blocks, or (when it happens to be) the tag decrypts to garbage.
    let none = keys(&v, &v.enc_key, None);
    assert_eq!(reason(decode(&p, &none, NOW, MAX_AGE)), "malformed");
    let v02 = get("v02_cbc_hmac_sha1");
    let none = keys(&v02, &v02.enc_key, None);
    assert_eq!(
        reason(decode(v02.packet.as_bytes(), &none, NOW, MAX_AGE)),
        "bad_length"
    );
}

#[test]
fn wrong_encryption_key_or_mode() {
    for name in ["v01_cbc_hmac_sha256", "v21_no_hmac", "v24_ctr_mode"] {
        let v = get(name);
        let hmac = v.keys.hmac_type().map(|t| (&v.hmac_key[..], t));
        let wrong = keys(&v, b"not the key", hmac);
        assert_eq!(
            decode(v.packet.as_bytes(), &wrong, NOW, MAX_AGE),
            Err(FwknopError::DecryptFailed {
                mode: v.keys.mode()
            }),
            "{name}"
        );
        for mode in EncMode::ALL {
            if mode == v.keys.mode() {
                continue;
            }
            let k = FwknopKeys::new(&v.enc_key, mode, hmac).unwrap();
            let r = decode(v.packet.as_bytes(), &k, NOW, MAX_AGE);
            let same = [EncMode::Cbc, EncMode::CbcLegacyIv];
            if same.contains(&mode) && same.contains(&v.keys.mode()) {
                // A 32-byte key: legacy IV mode changes nothing.
                assert!(r.is_ok(), "{name} as {mode}");
                continue;
            }
            // CBC and legacy differ only for passphrases under 16 bytes;
            // CTR, CFB and OFB share their first keystream block, so they
            // may get past the digits check and fail later.
            assert!(
                matches!(reason(r), "decrypt_failed" | "malformed" | "bad_digest"),
                "{name} as {mode}"
            );
        }
    }
    // Legacy IV vector with plain CBC: the '0'-padded passphrase matters.
    let v23 = get("v23_legacy_iv_passphrase");
    let cbc = FwknopKeys::new(&v23.enc_key, EncMode::Cbc, None).unwrap();
    assert_eq!(
        reason(decode(v23.packet.as_bytes(), &cbc, NOW, MAX_AGE)),
        "decrypt_failed"
    );
}

/// Rewrites the decoded blob of `v`'s packet with `f`, re-encodes it and,
/// if `v` has an HMAC, re-computes a valid HMAC-SHA256 over it: a packet
/// only a holder of the HMAC key could make, to reach the checks behind the
/// HMAC.
fn forge(v: &Vector, f: impl FnOnce(&mut Vec<u8>)) -> String {
    let body = match v.keys.hmac_type() {
        Some(t) => &v.packet[..v.packet.len() - t.b64_len()],
        None => &v.packet[..],
    };
    let mut blob = STANDARD_NO_PAD.decode(format!("U2FsdGVkX1{body}")).unwrap();
    f(&mut blob);
    let full = STANDARD_NO_PAD.encode(&blob);
    remac(v, full.strip_prefix("U2FsdGVkX1").unwrap().to_string())
}

/// `body` with a valid HMAC-SHA256 appended when `v` has an HMAC.
fn remac(v: &Vector, mut body: String) -> String {
    if v.keys.hmac_type().is_some() {
        assert_eq!(v.keys.hmac_type(), Some(HmacType::Sha256));
        let mut mac = Hmac::<Sha256>::new_from_slice(&v.hmac_key).unwrap();
        mac.update(format!("U2FsdGVkX1{body}").as_bytes());
        body.push_str(&STANDARD_NO_PAD.encode(mac.finalize().into_bytes()));
    }
    body
}

/// A packet with `v`'s keys and salt around an arbitrary `plaintext`.
fn forge_plaintext(v: &Vector, plaintext: &str) -> String {
    seal(plaintext.as_bytes(), &v.keys, salt_of(v))
}

/// The encoded message (fields without digest) of a decoded message.
fn encoded_of(m: &FwknopMessage) -> String {
    let b = |s: &str| STANDARD_NO_PAD.encode(s);
    let mut s = format!(
        "{}:{}:{}:{}:{}:{}",
        m.random,
        b(&m.request.username),
        m.request.timestamp,
        m.version,
        m.request.msg_type.number(),
        b(&m.message_string())
    );
    if let Some((h, p)) = &m.request.nat_access {
        s.push(':');
        s.push_str(&b(&format!("{h},{p}")));
    }
    if let Some(t) = m.request.client_timeout {
        s.push_str(&format!(":{t}"));
    }
    s
}

#[test]
fn checks_behind_the_hmac() {
    let v = get("v01_cbc_hmac_sha256");
    // The forging helpers reproduce the original packet.
    assert_eq!(forge(&v, |_| {}), v.packet);
    let m = decode(v.packet.as_bytes(), &v.keys, NOW, MAX_AGE).unwrap();
    let enc = encoded_of(&m);
    let digest = STANDARD_NO_PAD.encode(&m.digest);
    let original = format!("{enc}:{digest}");
    assert_eq!(forge_plaintext(&v, &original), v.packet);

    let run = |pt: &str| decode(forge_plaintext(&v, pt).as_bytes(), &v.keys, NOW, MAX_AGE);
    // Not "Salted__".
    let body = &v.packet[..v.packet.len() - 43];
    let p = remac(&v, format!("A{}", &body[1..]));
    assert_eq!(
        decode(p.as_bytes(), &v.keys, NOW, MAX_AGE),
        Err(FwknopError::NotSalted)
    );
    // The "decrypted OK" check: 16 digits, then ':'.
    let bad_random = original.replacen(&m.random[..2], "x1", 1);
    assert_eq!(
        run(&bad_random),
        Err(FwknopError::DecryptFailed { mode: EncMode::Cbc })
    );
    // A field changed (one bit of the timestamp) without its digest.
    let tampered = original.replacen(":1795533693:", ":1795533692:", 1);
    assert_eq!(
        run(&tampered),
        Err(FwknopError::BadDigest {
            digest_type: DigestType::Sha256
        })
    );
    // Non-printable.
    let np = original.replacen(":3.0.0:", ":3.0\t0:", 1);
    assert_eq!(
        run(&np),
        Err(FwknopError::Malformed(Malformed::NotPrintable { at: 38 }))
    );
    // Wrong digest length.
    let short = format!("{enc}:{}", &digest[..40]);
    assert_eq!(
        run(&short),
        Err(FwknopError::Malformed(Malformed::DigestLength(40)))
    );
    // Field rules, with a correct digest: only the fields are wrong.
    let with_digest =
        |enc: &str| format!("{enc}:{}", digest_b64(DigestType::Sha256, enc.as_bytes()));
    let user = enc.replacen(":cm9vdA:", ":cm9v/3Q:", 1);
    assert_eq!(run(&with_digest(&user)), Err(Malformed::Username.into()));
    let ty = enc.replacen(":3.0.0:1:", ":3.0.0:9:", 1);
    assert_eq!(run(&with_digest(&ty)), Err(Malformed::MessageType.into()));
    let count = format!("{enc}:a:b");
    assert_eq!(
        run(&with_digest(&count)),
        Err(Malformed::FieldCount { fields: 8 }.into())
    );
    let msg = STANDARD_NO_PAD.encode("10.77.0.2,tcp/99999");
    let ports = enc.replacen("MTAuNzcuMC4yLHRjcC8yMg", &msg, 1);
    assert_eq!(run(&with_digest(&ports)), Err(Malformed::AccessPort.into()));
    // A field change with its digest recomputed is a new, valid request.
    let other_user = enc.replacen(":cm9vdA:", ":Ym9i:", 1);
    assert_eq!(
        run(&with_digest(&other_user)).unwrap().request.username,
        "bob"
    );
}

#[test]
fn no_hmac_tampering_is_caught_by_decryption_or_the_digest() {
    let v = get("v21_no_hmac");
    let mut seen = std::collections::BTreeSet::new();
    let blob_len = STANDARD_NO_PAD
        .decode(format!("U2FsdGVkX1{}", v.packet))
        .unwrap()
        .len();
    for at in 16..blob_len {
        for bit in 0..8 {
            let p = forge(&v, |blob| blob[at] ^= 1 << bit);
            let r = decode(p.as_bytes(), &v.keys, NOW, MAX_AGE);
            seen.insert(reason(r));
        }
    }
    // CBC: a flip garbles its block and flips a bit of the next one.
    assert!(
        seen.iter()
            .all(|r| ["decrypt_failed", "malformed", "bad_digest"].contains(r)),
        "{seen:?}"
    );
    assert!(seen.contains("decrypt_failed") && seen.contains("malformed"));
    // CTR without HMAC (v24 with its tag removed): a flipped ciphertext bit
    // flips one plaintext bit, which only the inner digest catches.
    let v24 = get("v24_ctr_mode");
    let bare = Vector {
        packet: v24.packet[..v24.packet.len() - 43].to_string(),
        keys: keys(&v24, &v24.enc_key, None),
        ..v24
    };
    assert!(decode(bare.packet.as_bytes(), &bare.keys, NOW, MAX_AGE).is_ok());
    // Plaintext byte 33 is the last timestamp digit ("...:179553369[3]:").
    let p = forge(&bare, |blob| blob[16 + 33] ^= 1);
    assert_eq!(
        decode(p.as_bytes(), &bare.keys, NOW, MAX_AGE),
        Err(FwknopError::BadDigest {
            digest_type: DigestType::Sha256
        })
    );
    // A changed salt changes key and IV.
    let p = forge(&v, |blob| blob[8] ^= 1);
    assert_eq!(
        reason(decode(p.as_bytes(), &v.keys, NOW, MAX_AGE)),
        "decrypt_failed"
    );
    // Non-zero unused bits in the last character (161 + 10 characters:
    // 2 unused bits): no encoder makes it, refused.
    let mut q = v.packet.clone().into_bytes();
    let last = q.len() - 1;
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let idx = alphabet.iter().position(|&c| c == q[last]).unwrap();
    q[last] = alphabet[idx ^ 1];
    assert_eq!(
        decode(&q, &v.keys, NOW, MAX_AGE),
        Err(FwknopError::NonCanonical)
    );
}

#[test]
fn replays_are_caught_across_restarts_and_re_encryption() {
    let v = get("v01_cbc_hmac_sha256");
    let m = decode(v.packet.as_bytes(), &v.keys, NOW, MAX_AGE).unwrap();
    let mut cache = ReplayCache::new(100);
    let expiry = m.replay_expiry(MAX_AGE);
    assert_eq!(expiry, NOW + MAX_AGE);
    assert_eq!(cache.check_and_insert(m.replay_key(), expiry, NOW), Ok(()));
    // The same packet again.
    let again = decode(v.packet.as_bytes(), &v.keys, NOW + 1, MAX_AGE).unwrap();
    assert_eq!(
        cache.check_and_insert(again.replay_key(), expiry, NOW + 1),
        Err(ReplayError::Replayed)
    );
    // After a restart (persisted image).
    let mut restarted = ReplayCache::from_bytes(&cache.to_bytes(), 100).unwrap();
    assert_eq!(
        restarted.check_and_insert(again.replay_key(), expiry, NOW + 2),
        Err(ReplayError::Replayed)
    );
    // The same request re-encrypted with another salt (by a key holder)
    // is still the same request.
    let random: u64 = m.random.parse().unwrap();
    let re = encode(&m.request, &v.keys, random, [0x42; 8]).unwrap();
    assert_ne!(re, v.packet);
    let m2 = decode(re.as_bytes(), &v.keys, NOW, MAX_AGE).unwrap();
    assert_eq!(m2.replay_key(), m.replay_key());
    // Another request is not.
    let other = decode(
        get("v02_cbc_hmac_sha1").packet.as_bytes(),
        &get("v02_cbc_hmac_sha1").keys,
        NOW,
        MAX_AGE,
    )
    .unwrap();
    assert_ne!(other.replay_key(), m.replay_key());
    assert_eq!(
        restarted.check_and_insert(other.replay_key(), expiry, NOW + 2),
        Ok(())
    );
}

#[test]
fn every_reason_label_is_distinct() {
    let t = HmacType::Sha256;
    let all = [
        FwknopError::TooShort { len: 0, min: 0 },
        FwknopError::Oversized { len: 0, max: 0 },
        FwknopError::BadBase64 { at: 0, byte: 0 },
        FwknopError::SaltedPrefix,
        FwknopError::GpgUnsupported { len: 0 },
        FwknopError::BadLength { len: 0 },
        FwknopError::HmacMissing { expected: t },
        FwknopError::HmacTypeMismatch {
            configured: t,
            actual: t,
        },
        FwknopError::BadHmac { hmac_type: t },
        FwknopError::NonCanonical,
        FwknopError::NotSalted,
        FwknopError::DecryptFailed { mode: EncMode::Cbc },
        FwknopError::Malformed(Malformed::Random),
        FwknopError::BadDigest { digest_type: t },
        FwknopError::Stale {
            timestamp: 0,
            age: 0,
            max_age: 0,
        },
        FwknopError::Future {
            timestamp: 0,
            ahead: 0,
            max_age: 0,
        },
    ];
    let labels: std::collections::BTreeSet<_> = all.iter().map(FwknopError::reason).collect();
    assert_eq!(labels.len(), all.len());
}

#[test]
fn encoder_refuses_what_the_decoder_would() {
    let v = get("v01_cbc_hmac_sha256");
    let ssh = vec![AccessPort::Service(Service::tcp(22))];
    let ok = FwknopRequest::access("root", NOW, None, ssh.clone());
    assert!(encode(&ok, &v.keys, 1, [0; 8]).is_ok());
    let bad_user = FwknopRequest::access("a/b", NOW, None, ssh.clone());
    assert_eq!(
        encode(&bad_user, &v.keys, 1, [0; 8])
            .unwrap_err()
            .to_string(),
        "invalid fwknop request: invalid username"
    );
    let v6 = FwknopRequest::access("root", NOW, Some("::1".parse().unwrap()), ssh.clone());
    assert!(encode(&v6, &v.keys, 1, [0; 8]).is_err());
    let no_ports = FwknopRequest::access("root", NOW, None, vec![]);
    assert!(encode(&no_ports, &v.keys, 1, [0; 8]).is_err());
    let mut nat_missing = ok.clone();
    nat_missing.msg_type = MsgType::NatAccess;
    assert!(encode(&nat_missing, &v.keys, 1, [0; 8]).is_err());
    let timeout = ok.clone().with_client_timeout(45);
    assert_eq!(timeout.msg_type, MsgType::ClientTimeoutAccess);
    let p = encode(&timeout, &v.keys, 9_423_011_371_711_637, [1; 8]).unwrap();
    let m = decode(p.as_bytes(), &v.keys, NOW, MAX_AGE).unwrap();
    assert_eq!(m.request.client_timeout, Some(45));
    assert_eq!(m.random, "9423011371711637");
    // Small random values are zero-padded to 16 digits.
    let p = encode(&ok, &v.keys, 7, [1; 8]).unwrap();
    let m = decode(p.as_bytes(), &v.keys, NOW, MAX_AGE).unwrap();
    assert_eq!(m.random, "0000000000000007");
    // Too many ports for a Rijndael packet.
    let many: Vec<AccessPort> = (1..=40)
        .map(|port| AccessPort::Service(Service::udp(port)))
        .collect();
    let r = encode(
        &FwknopRequest::access("root", NOW, None, many),
        &v.keys,
        1,
        [0; 8],
    );
    assert!(r.is_err(), "{r:?}");
}
