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

use std::time::{Duration, Instant};

use sesame::client::fwknop::{AllowIp, FwknopDoor, KeySource};
use sesame::daemon::replay_file::PersistentReplay;
use sesame_core::fwknop::{self, AccessPort, DigestType, EncMode, FwknopKeys};
use sesame_core::replay::{ReplayCache, ReplayKey};
use zeroize::Zeroizing;

const MAX_AGE: u64 = 120;

fn stats(label: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let q = |p: f64| {
        let i = ((samples.len() as f64 - 1.0) * p).round() as usize;
        samples[i].as_secs_f64() * 1e6
    };
    println!(
        "{label:<44} n={:<6} median {:>9.1} µs   p99 {:>9.1} µs   max {:>9.1} µs",
        samples.len(),
        q(0.5),
        q(0.99),
        q(1.0)
    );
}

fn door() -> (FwknopDoor, FwknopKeys) {
    let enc = [7u8; 32];
    let hmac = [9u8; 64];
    use base64::Engine;
    let b64 = |k: &[u8]| base64::engine::general_purpose::STANDARD.encode(k);
    let door = FwknopDoor {
        port: 62201,
        access: vec![AccessPort::Service("tcp/2222".parse().expect("service"))],
        allow_ip: AllowIp::Source,
        key: KeySource::Base64(Zeroizing::new(b64(&enc))),
        hmac: Some((
            KeySource::Base64(Zeroizing::new(b64(&hmac))),
            DigestType::Sha256,
        )),
        mode: EncMode::Cbc,
        digest: DigestType::Sha256,
        client_timeout: None,
        username: Some("bench".into()),
        nat_access: None,
    };
    let keys = FwknopKeys::new(&enc, EncMode::Cbc, Some((&hmac, DigestType::Sha256)))
        .expect("fwknop keys");
    (door, keys)
}

fn main() {
    let n: usize = std::env::var("SESAME_BENCH_REPLAY_SAMPLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let now = sesame::daemon::unix_now();
    let (door, keys) = door();

    let packets: Vec<Vec<u8>> = (0..n)
        .map(|_| door.packet(&keys, now).expect("packet").text.into_bytes())
        .collect();
    let mut decode = Vec::with_capacity(n);
    let mut msgs = Vec::with_capacity(n);
    for p in &packets {
        let t = Instant::now();
        let msg = fwknop::decode(p, &keys, now, MAX_AGE).expect("decode");
        decode.push(t.elapsed());
        msgs.push(msg);
    }
    stats("fwknop::decode (HMAC + AES-CBC + digest)", decode);

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
        stats(&format!("cache.check_and_insert ({prefill} held)"), insert);
        stats(
            &format!("PersistentReplay::record ({prefill} held)"),
            persist,
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
