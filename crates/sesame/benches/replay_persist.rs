//! Where an accepted fwknop SPA packet spends its time inside sesamed before
//! the firewall call: decode and verify, the replay cache insert, and the
//! persistence of that insert (`PersistentReplay::record`), for several
//! replay cache sizes. No root, no namespace: the state directory is under
//! `std::env::temp_dir()`, as in the attack bench.
//!
//! `cargo bench -p sesame --bench replay_persist`
//! (`SESAME_BENCH_REPLAY_SAMPLES=N`, default 2000, per figure).
//!
//! Prints the median, p99 and max of each step, in microseconds.

use std::time::Instant;

use sesame::daemon::replay_file::PersistentReplay;
use sesame_core::fwknop;
use sesame_core::replay::{ReplayCache, ReplayKey};
use sesame_testkit::fwknop::{Client, Keys};
use sesame_testkit::net::{bench_samples, latency_line};

const MAX_AGE: u64 = 120;

fn main() {
    let Some(n) = bench_samples("SESAME_BENCH_REPLAY_SAMPLES", 2000, 10..=90_000) else {
        return;
    };
    let now = sesame::daemon::unix_now();
    use base64::Engine;
    let b64 = |k: &[u8]| base64::engine::general_purpose::STANDARD.encode(k);
    let client = Client::new(
        &Keys {
            key: b64(&[7; 32]),
            hmac: b64(&[9; 64]),
        },
        2222,
    );
    let packets: Vec<Vec<u8>> = (0..n).map(|_| client.packet_at(now)).collect();
    let mut decode = Vec::with_capacity(n);
    let mut msgs = Vec::with_capacity(n);
    for p in &packets {
        let t = Instant::now();
        let msg = fwknop::decode(p, client.keys(), now, MAX_AGE).expect("decode");
        decode.push(t.elapsed());
        msgs.push(msg);
    }
    println!(
        "{}",
        latency_line("fwknop::decode (HMAC + AES-CBC + digest)", decode, 0)
    );

    for prefill in [0usize, 1_000, 10_000, 100_000 - n] {
        let dir = std::env::temp_dir().join(format!(
            "sesame-bench-replay-{prefill}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let (mut replay, _) =
            PersistentReplay::open(&dir, ReplayCache::DEFAULT_CAPACITY, MAX_AGE, now)
                .expect("open");
        for i in 0..prefill {
            let mut id = [0u8; 16];
            id[..8].copy_from_slice(&(i as u64).to_be_bytes());
            replay
                .cache
                .check_and_insert(ReplayKey::spa(id), now + MAX_AGE, now)
                .expect("prefill");
        }
        replay.compact().expect("compact");
        let (mut insert, mut persist) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for msg in &msgs {
            let (key, expiry) = (msg.replay_key(), msg.replay_expiry(MAX_AGE));
            let t = Instant::now();
            replay
                .cache
                .check_and_insert(key, expiry, now)
                .expect("insert");
            insert.push(t.elapsed());
            let t = Instant::now();
            replay.record(key, expiry).expect("record");
            persist.push(t.elapsed());
        }
        println!(
            "{}",
            latency_line(
                &format!("cache.check_and_insert ({prefill} held)"),
                insert,
                0
            )
        );
        println!(
            "{}",
            latency_line(
                &format!("PersistentReplay::record ({prefill} held)"),
                persist,
                0
            )
        );
        let t = Instant::now();
        replay.compact().expect("compact");
        println!(
            "{:<44} {:>9.1} µs",
            format!("PersistentReplay::compact ({} held)", replay.cache.len()),
            t.elapsed().as_secs_f64() * 1e6
        );
        drop(replay);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
