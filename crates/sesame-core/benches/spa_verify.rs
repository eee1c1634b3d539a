//! SPA verification throughput on one core.
//!
//! `cargo bench -p sesame-core --bench spa_verify` (add `-- --quick` for a
//! short run). Each case runs several timed rounds and reports the median
//! rate. Packets are encoded before timing; the timed loop is verification
//! only (plus the replay cache for accepts).

use std::hint::black_box;
use std::time::{Duration, Instant};

use sesame_core::replay::ReplayCache;
use sesame_core::spa::{
    encode_public, encode_symmetric, Credential, IdentityKey, Payload, ServerKey, SpaKey,
    UserPolicy, Verifier,
};
use sesame_core::Service;

const NOW: u64 = 1_750_000_000;

fn payload(i: u64) -> Payload {
    let mut nonce = [0u8; 16];
    nonce[..8].copy_from_slice(&i.to_be_bytes());
    Payload {
        timestamp: NOW,
        nonce,
        services: vec![Service::tcp(22)],
        duration: 30,
        address: None,
    }
}

fn nonce24(i: u64) -> [u8; 24] {
    let mut n = [0x5a; 24];
    n[..8].copy_from_slice(&i.to_be_bytes());
    n
}

/// Runs `round` (which processes `per_round` packets) `rounds` times and
/// returns the median packets per second.
fn median_rate(rounds: usize, per_round: usize, mut round: impl FnMut()) -> f64 {
    round(); // warm-up
    let mut rates: Vec<f64> = (0..rounds)
        .map(|_| {
            let start = Instant::now();
            round();
            per_round as f64 / start.elapsed().as_secs_f64()
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}

fn report(name: &str, rate: f64) {
    let ns = 1e9 / rate;
    println!("{name:<52} {:>12.0} /s  {ns:>9.1} ns/packet", rate);
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let rounds = if quick { 3 } else { 9 };
    let scale = if quick { 10 } else { 1 };

    let sym_key = SpaKey::from_bytes(&[0x11; 32]);
    let identity = IdentityKey::from_seed(&[0x22; 32]);
    let server = ServerKey::from_bytes(&[0x33; 32]);
    let mut verifier = Verifier::new(60, Some(server.clone()));
    let policy = UserPolicy {
        services: vec![Service::tcp(22)],
        max_duration: 60,
        allow_address: false,
        retired_after: None,
    };
    // A realistic table: 1000 symmetric users plus the ones under test.
    for i in 0..1000u32 {
        let mut k = [0u8; 32];
        k[..4].copy_from_slice(&i.to_be_bytes());
        k[31] = 0xff;
        verifier
            .add_user(
                &format!("user{i}"),
                Credential::Symmetric(SpaKey::from_bytes(&k)),
                policy.clone(),
            )
            .unwrap();
    }
    verifier
        .add_user(
            "sym",
            Credential::Symmetric(sym_key.clone()),
            policy.clone(),
        )
        .unwrap();
    verifier
        .add_user("pub", Credential::Public(identity.public()), policy.clone())
        .unwrap();

    println!(
        "SPA verification, one core, median of {rounds} rounds ({} users)",
        verifier.len()
    );

    // Rejects: bad magic (not an SPA packet at all).
    let junk = vec![0u8; 124];
    let n = 2_000_000 / scale;
    let rate = median_rate(rounds, n, || {
        for _ in 0..n {
            black_box(verifier.verify(black_box(&junk), NOW)).unwrap_err();
        }
    });
    report("reject: bad magic", rate);

    // Rejects: well-formed header, unknown key id.
    let stranger = SpaKey::from_bytes(&[0x99; 32]);
    let unknown = encode_symmetric(&stranger, &payload(0), nonce24(0)).unwrap();
    let rate = median_rate(rounds, n, || {
        for _ in 0..n {
            black_box(verifier.verify(black_box(&unknown), NOW)).unwrap_err();
        }
    });
    report("reject: unknown key id", rate);

    // Rejects: known user, bad MAC (the forgery case), varied packets.
    let forged: Vec<Vec<u8>> = (0..1024u64)
        .map(|i| {
            let mut p = encode_symmetric(&sym_key, &payload(i), nonce24(i)).unwrap();
            let last = p.len() - 1;
            p[last] ^= 1;
            p
        })
        .collect();
    let n = 1_000_000 / scale;
    let rate = median_rate(rounds, n, || {
        for i in 0..n {
            let err = verifier.verify(black_box(&forged[i % forged.len()]), NOW);
            black_box(err).unwrap_err();
        }
    });
    report("reject: bad MAC, known symmetric user", rate);

    // Accepts: valid symmetric packets, a fresh nonce each, replay cache
    // included (a new cache per round, sized to hold every packet).
    let n = 200_000 / scale;
    let valid: Vec<Vec<u8>> = (0..n as u64)
        .map(|i| encode_symmetric(&sym_key, &payload(i), nonce24(i)).unwrap())
        .collect();
    let rate = median_rate(rounds, n, || {
        let mut cache = ReplayCache::new(n);
        for p in &valid {
            black_box(verifier.verify_and_record(black_box(p), NOW, &mut cache)).unwrap();
        }
    });
    report("accept: symmetric, with replay cache", rate);

    // The replay path itself: the same packets again are refused.
    let mut cache = ReplayCache::new(n);
    for p in &valid {
        verifier.verify_and_record(p, NOW, &mut cache).unwrap();
    }
    let rate = median_rate(rounds, n, || {
        for p in &valid {
            black_box(verifier.verify_and_record(black_box(p), NOW, &mut cache)).unwrap_err();
        }
    });
    report("reject: replay (symmetric)", rate);

    // Public-key mode: every packet naming a known user costs one X25519.
    let n = 4_000 / scale;
    let valid: Vec<Vec<u8>> = (0..n as u64)
        .map(|i| {
            let mut eph = [0x44; 32];
            eph[..8].copy_from_slice(&i.to_be_bytes());
            encode_public(&identity, &server.public(), &payload(i), &eph, nonce24(i)).unwrap()
        })
        .collect();
    let forged: Vec<Vec<u8>> = valid
        .iter()
        .map(|p| {
            let mut p = p.clone();
            let last = p.len() - 1;
            p[last] ^= 1;
            p
        })
        .collect();
    let rate = median_rate(rounds, n, || {
        for p in &forged {
            black_box(verifier.verify(black_box(p), NOW)).unwrap_err();
        }
    });
    report("reject: bad MAC, known public-key user", rate);
    let rate = median_rate(rounds, n, || {
        let mut cache = ReplayCache::new(n);
        for p in &valid {
            black_box(verifier.verify_and_record(black_box(p), NOW, &mut cache)).unwrap();
        }
    });
    report("accept: public key, with replay cache", rate);

    // Replay cache at capacity with realistic churn: 100k entries.
    let mut cache = ReplayCache::new(ReplayCache::DEFAULT_CAPACITY);
    let keys: Vec<_> = (0..ReplayCache::DEFAULT_CAPACITY as u64)
        .map(|i| payload(i).nonce)
        .collect();
    let start = Instant::now();
    for k in &keys {
        cache
            .check_and_insert(sesame_core::ReplayKey::spa(*k), NOW + 60, NOW)
            .unwrap();
    }
    let elapsed = start.elapsed();
    report(
        "replay cache: insert into 100k entries",
        keys.len() as f64 / elapsed.as_secs_f64().max(1e-9),
    );
    let start = Instant::now();
    let bytes = cache.to_bytes();
    let save = start.elapsed();
    let start = Instant::now();
    let back = ReplayCache::from_bytes(&bytes, ReplayCache::DEFAULT_CAPACITY).unwrap();
    let load = start.elapsed();
    assert_eq!(back.len(), cache.len());
    println!(
        "replay cache image: {} entries, {} bytes, to_bytes {:?}, from_bytes {:?}",
        back.len(),
        bytes.len(),
        round_ms(save),
        round_ms(load)
    );
}

fn round_ms(d: Duration) -> Duration {
    Duration::from_micros(d.as_micros() as u64)
}
