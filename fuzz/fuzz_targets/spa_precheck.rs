//! The version 2 pre-check (`Verifier::precheck`: length, magic, version,
//! mode, mac1, key id), which runs on every datagram before any public-key
//! work, against hostile input.
//!
//! The first byte picks what the rest is:
//! - 0..=251: raw datagram bytes. `precheck` never panics and never passes
//!   a public-key packet (that would need mac1 under the server's key).
//! - 252..=255: a genuine version 2 packet with the rest XORed into it,
//!   mac1 made anew (what someone who knows the server's public key can
//!   send): the pre-check passes only when the header is intact, and the
//!   full verification (run for a sample: it costs curve operations) never
//!   panics and refuses any change.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sesame_core::spa::{
    encode_public, mac1, mac1_key, Cost, Payload, SpaError, PUBLIC_PACKET_LEN,
    PUBLIC_V2_PACKET_LEN,
};

#[path = "common.rs"]
#[allow(dead_code)] // shared with the targets that build requests
mod common;
use common::{fixture, NOW};

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    if selector < 252 {
        if let Ok(cost) = f.verifier.precheck(rest) {
            assert_eq!(cost, Cost::Cheap, "raw bytes passed mac1");
            // A symmetric packet that names the key id still fails the tag.
            assert!(f.verifier.verify(rest, NOW).is_err());
        }
        return;
    }
    let server = f.server_public();
    // One genuine packet, made once (several curve operations).
    static TEMPLATE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    let mut packet = TEMPLATE
        .get_or_init(|| {
            let payload = Payload {
                timestamp: NOW,
                nonce: [5; 16],
                services: vec![],
                duration: 0,
                address: None,
            };
            encode_public(&f.identity_key(), &server, &payload, &[7; 32], [9; 24]).unwrap()
        })
        .clone();
    assert_eq!(packet.len(), PUBLIC_V2_PACKET_LEN);
    let mut changed = false;
    for (i, b) in rest.iter().take(PUBLIC_PACKET_LEN).enumerate() {
        packet[i] ^= b;
        changed |= *b != 0;
    }
    let tag = mac1(&mac1_key(&server.0), &packet[..PUBLIC_PACKET_LEN]);
    packet[PUBLIC_PACKET_LEN..].copy_from_slice(&tag);
    match f.verifier.precheck(&packet) {
        Ok(cost) => {
            assert_eq!(cost, Cost::PublicKey);
            // The full verification costs curve operations: run it for one
            // input in 16 (and always for the unchanged packet).
            if !changed || selector == 255 && rest.len() % 16 == 0 {
                let result = f.verifier.verify(&packet, NOW);
                assert_eq!(result.is_ok(), !changed, "{result:?}");
            }
        }
        Err(e) => assert!(
            changed
                && matches!(
                    e,
                    SpaError::BadMagic
                        | SpaError::UnsupportedVersion(_)
                        | SpaError::UnsupportedMode(_)
                        | SpaError::LegacyPublic
                        | SpaError::Truncated { .. }
                        | SpaError::Oversized { .. }
                        | SpaError::UnknownKey { .. }
                ),
            "{e}"
        ),
    }
});
