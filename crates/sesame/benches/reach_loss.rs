//! Connection success under packet loss (issue 16): `sesame proxy` (knock,
//! confirm by connecting, knock again with backoff) against a single-shot
//! `sesame knock && connect`, through a link that loses 0%, 10% and 30% of
//! its packets each way.
//!
//! Run as root: `cargo bench -p sesame --bench reach_loss`
//! (`SESAME_BENCH_REACH_ATTEMPTS=N`: attempts per cell, default 200).
//!
//! One SPA door (the client's packet is made fresh for every knock, so a
//! re-knock is never a replay) protecting an echo service; the loss is an
//! nftables `numgen random` drop where each namespace receives (this kernel
//! has no netem). Every attempt starts from a closed door: the grant of the
//! previous one is revoked first. An attempt succeeds when a line sent
//! through the connection comes back.
//!
//! - single shot: `sesame knock srv ssh`, then one connect that may take
//!   3 s (the kernel retransmits a lost SYN within that), then the echo;
//! - proxy: `sesame proxy srv 2222` (10 knocks at most, 2 s per connect),
//!   the line on its stdin, the echo on its stdout.

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use sesame::testbed::{Side, Testbed};
use sesame_testkit::net::bench_samples;

const PORT: u16 = 2222;

/// Closes the door again after an attempt (there is no grant after a
/// failed one: that answer is fine).
fn revoke(daemon: &support::Daemon, client: &str) {
    let socket = daemon.socket.to_str().unwrap();
    let out = std::process::Command::new(support::bin("sesame"))
        .args(["revoke", client, "--socket", socket])
        .output()
        .expect("sesame revoke");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() || err.contains("no active grant"),
        "revoke: {err}"
    );
}

fn single_shot(bed: &Testbed, config: &str) -> bool {
    let knocked = bed
        .command(Side::Client, support::bin("sesame").to_str().unwrap())
        .args(["knock", "srv", "ssh", "--config", config])
        .output()
        .is_ok_and(|o| o.status.success());
    let server = Testbed::addr(Side::Server, false);
    knocked
        && bed
            .run_in(Side::Client, move || {
                let to = SocketAddr::new(server, PORT);
                let Ok(mut s) = TcpStream::connect_timeout(&to, Duration::from_secs(3)) else {
                    return false;
                };
                s.set_read_timeout(Some(Duration::from_secs(10))).ok();
                let mut buf = [0u8; 5];
                s.write_all(b"ping\n").is_ok()
                    && s.read_exact(&mut buf).is_ok()
                    && &buf == b"ping\n"
            })
            .unwrap_or(false)
}

fn proxy(bed: &Testbed, config: &str) -> bool {
    let cmd = support::proxy_command(bed, std::path::Path::new(config), 10, &[]);
    let out = support::run_with_input(cmd, b"ping\n", Duration::from_secs(120));
    out.status.success() && out.stdout == b"ping\n"
}

fn main() {
    let Some(attempts) = bench_samples("SESAME_BENCH_REACH_ATTEMPTS", 200, 10..=2000) else {
        return;
    };
    support::ECHO_DAEMON_LOGS.store(false, std::sync::atomic::Ordering::Relaxed);
    let mut bed = support::testbed("reach").expect("the benchmark needs root");
    let _service = support::Service::start(&bed, PORT).expect("echo service");
    let (client, daemon) = support::spa_door_and_client(&mut bed, false);
    let config = client.to_str().unwrap().to_string();
    let me = Testbed::addr(Side::Client, false).to_string();
    println!("connection success under loss, {attempts} attempts per cell, SPA door");
    println!(
        "{:<8} {:>22} {:>22}",
        "loss", "knock && connect", "sesame proxy"
    );
    for loss in [0u8, 10, 30] {
        support::lossy_link(&bed, loss);
        let mut cells = Vec::new();
        for proxied in [false, true] {
            let start = Instant::now();
            let mut ok = 0;
            for _ in 0..attempts {
                revoke(&daemon, &me);
                ok += usize::from(if proxied {
                    proxy(&bed, &config)
                } else {
                    single_shot(&bed, &config)
                });
            }
            cells.push(format!(
                "{ok}/{attempts} {:5.1}% ({:.0} s)",
                100.0 * ok as f64 / attempts as f64,
                start.elapsed().as_secs_f64()
            ));
        }
        println!(
            "{:<8} {:>22} {:>22}",
            format!("{loss}%"),
            cells[0],
            cells[1]
        );
    }
}
