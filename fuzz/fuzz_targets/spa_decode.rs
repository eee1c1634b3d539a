//! The SPA decoder against hostile input, with a fixed user table.
//!
//! The first byte picks what the rest is:
//! - 0..=127: raw datagram bytes. They must never verify (nobody without a
//!   key can make a packet that passes), and must never panic.
//! - 128..=191: a symmetric-mode request, encoded with a configured key, so
//!   the fuzzer reaches everything behind the tag (payload parsing, time
//!   window, policy, replay cache). A valid request verifies, or fails only
//!   for a policy or time reason; a second use is a replay; any flipped byte
//!   makes it fail.
//! - 192..=255: a 71-byte payload for the strict payload decoder, which must
//!   be canonical (decode → encode gives the same bytes).
//!
//! Public-key requests (slow: several curve operations each) have their own
//! target, `spa_public`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sesame_core::spa::{Payload, PAYLOAD_LEN};

#[path = "common.rs"]
mod common;
use common::{fixture, request, NOW};

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    match selector {
        0..=127 => {
            let result = f.verifier.verify(rest, NOW);
            assert!(result.is_err(), "random bytes verified: {result:?}");
        }
        128..=191 => request(f, rest, false),
        _ => {
            if rest.len() >= PAYLOAD_LEN {
                let bytes = &rest[..PAYLOAD_LEN];
                if let Ok(p) = Payload::decode(bytes) {
                    assert_eq!(&p.encode().unwrap()[..], bytes);
                }
            }
        }
    }
});
