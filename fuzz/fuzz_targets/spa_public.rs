//! Public-key-mode SPA requests: encoded with the fixed identity key to the
//! fixed server key, then verified. A valid request verifies, or fails only
//! for a policy or time reason; a second use is a replay; any flipped byte
//! makes it fail. Slower than `spa_decode` (several curve operations per
//! input).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;
use common::{fixture, request};

fuzz_target!(|data: &[u8]| {
    request(fixture(), data, true);
});
