//! Feeds arbitrary bytes to the IPv4/IPv6 + TCP/UDP parser: it must never
//! panic, and what it returns must lie within the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sesame_core::packet;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = packet::parse(data) {
        let start = data.as_ptr() as usize;
        let at = p.payload.as_ptr() as usize;
        assert!(
            p.payload.is_empty() || (at >= start && at + p.payload.len() <= start + data.len())
        );
        assert!(p.src.is_ipv4() == p.dst.is_ipv4());
    }
});
