//! The legitimate client and the protected service: knocks from a given
//! source address, then non-blocking connect attempts (ppoll with 1 ns timer
//! slack) until one completes the TCP handshake; see [`time_to_connect`].

use std::net::IpAddr;
use std::time::{Duration, Instant};

pub use sesame_core::Knock;
pub use sesame_testkit::net::{percentile, send_knock, time_to_connect, EchoService as Service};

/// Knocks `seq` from `src` with `gap` between packets; returns the instant
/// right after the last knock was sent.
pub fn knock_sequence(src: IpAddr, dst: IpAddr, seq: &[Knock], gap: Duration) -> Instant {
    for k in &seq[..seq.len() - 1] {
        let _ = send_knock(src, dst, *k);
        std::thread::sleep(gap);
    }
    let _ = send_knock(src, dst, seq[seq.len() - 1]);
    Instant::now()
}
