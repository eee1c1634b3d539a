//! The fleet spend's round trip alone: the adapter and a private
//! `redis-server` on a Unix socket, nothing else running. From
//! `FleetStore::spend` to the answer read off the wake-up socket, as the
//! daemon's loop sees it; plain spends, and spends that publish their
//! grant in the same script.
//!
//! Run: `cargo bench -p sesame-fleet --bench spend_rtt` (needs
//! redis-server; no root). `SESAME_BENCH_SPENDS` sets the count (2000).

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use sesame_core::fleet::{EntryKind, Outgoing, Signers, Targets};
use sesame_core::ports::{FleetSpend, FleetStore, Ticket};
use sesame_core::spa::IdentityKey;
use sesame_fleet::{FleetConfig, FleetEvent, RedisFleet};
use sesame_testkit::net::{bench_samples, latency_line};
use sesame_testkit::redis::{RedisServer, PASSWORD, USER};

fn main() {
    let Some(spends) = bench_samples("SESAME_BENCH_SPENDS", 2000, 100..=20_000) else {
        return;
    };
    let redis = RedisServer::start("spend-bench").expect("the benchmark needs redis-server");
    let key = IdentityKey::from_seed(&[1; 32]);
    let mut fleet = RedisFleet::start(FleetConfig {
        url: redis.url(),
        user: Some(USER.into()),
        password: Some(zeroize::Zeroizing::new(PASSWORD.into())),
        name: "gw-a".into(),
        group: "bench".into(),
        signers: Signers::new([("gw-a".to_string(), key.public())]),
        key,
        timeout: Duration::from_millis(500),
        heartbeat: Duration::from_secs(1),
        catch_up: Duration::from_secs(1),
    })
    .expect("adapter");
    for publish in [false, true] {
        let mut samples = Vec::with_capacity(spends);
        let mut failures = 0;
        for i in 0..spends {
            let mut token = [0u8; 32];
            token[..8].copy_from_slice(&(i as u64).to_le_bytes());
            token[8] = publish as u8;
            let out = publish.then(|| Outgoing {
                kind: EntryKind::Grant,
                door: "ssh".into(),
                addr: "198.51.100.7".parse().unwrap(),
                services: vec!["tcp/22".parse().unwrap()],
                to: Targets::Group,
                lasts: Duration::from_secs(30),
            });
            let start = Instant::now();
            if fleet.spend(Ticket(i as u64), token, Duration::from_secs(60), out)
                != FleetSpend::Pending
            {
                failures += 1;
                continue;
            }
            let answered = 'wait: loop {
                {
                    let wake = fleet.wake_fd();
                    let mut fds = [PollFd::new(wake.as_fd(), PollFlags::POLLIN)];
                    let _ = poll(&mut fds, PollTimeout::from(1000u16));
                }
                for e in fleet.drain(64) {
                    if let FleetEvent::Answer { .. } = e {
                        break 'wait true;
                    }
                }
                if start.elapsed() > Duration::from_secs(2) {
                    break false;
                }
            };
            match answered {
                true => samples.push(start.elapsed()),
                false => failures += 1,
            }
        }
        let label = if publish {
            "spend + signed grant (one script)"
        } else {
            "spend (SET NX PX)"
        };
        println!("{}", latency_line(label, samples, failures));
    }
}
