//! Fleet mode's latency, end to end in network namespaces, with a real
//! `redis-server` on a Unix socket and three gateways (A, B, C).
//!
//! Run as root: `cargo bench -p sesame --bench fleet_latency`
//! (`SESAME_BENCH_KNOCKS=N`: samples per series, 100 to 300, default 120).
//!
//! Each round sends three SPA packets to gateway A, each from a fresh
//! client source address, and times until a TCP connect completes:
//!
//! - **single gateway**: a door of A without fleet mode; connect at A;
//! - **fleet, at A**: a fleet door (`fleet = "group"`); connect at A, so
//!   the figure adds the spend's round trip to Redis to a local opening;
//! - **fleet, at C**: the same door; connect at C (the packet went to A
//!   only): spend, publish, C's read of the stream, C's grant.
//!
//! The three series interleave, so they share the machine's load. The
//! daemons' own share (packet or entry read → grant) follows, from their
//! logs.

use std::net::{IpAddr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use sesame::testbed::{Side, Testbed};
use sesame_core::spa::{encode_symmetric, Payload, SpaKey};
use sesame_testkit::net::{bench_samples, latency_line, Openings};
use sesame_testkit::redis::{fleet_table, write_password, RedisServer};

#[path = "../tests/support/mod.rs"]
mod support;

const FLEET_PORT: u16 = 2222;
const SOLO_PORT: u16 = 2224;
const FLEET_SPA: u16 = 62201;
const SOLO_SPA: u16 = 62202;
const NAMES: [&str; 3] = ["gw-a", "gw-b", "gw-c"];
const SAMPLE_LIMIT: Duration = Duration::from_secs(3);

fn source(i: usize) -> IpAddr {
    Ipv6Addr::new(0xfd53, 0x5e5a, 0, 0, 0, 0, 2, i as u16 + 1).into()
}

fn config(dir: &std::path::Path, redis: &RedisServer, i: usize) -> String {
    format!(
        "[daemon]\nstate_dir = \"{state}\"\nmax_grants = 100000\n{fleet}\
         [door.ssh]\nspa_port = {FLEET_SPA}\nopen_for = \"60s\"\nprotect = [\"tcp/{FLEET_PORT}\"]\nfleet = \"group\"\n\
         [door.ssh.users.alice]\nkey = \"{alice}\"\n\
         [door.solo]\nspa_port = {SOLO_SPA}\nopen_for = \"60s\"\nprotect = [\"tcp/{SOLO_PORT}\"]\n\
         [door.solo.users.alice]\nkey = \"{alice}\"\n",
        state = dir.join(format!("state-{i}")).display(),
        fleet = fleet_table(redis, dir, "bench", NAMES[i], &NAMES, ""),
        alice = dir.join("alice.key").display(),
    )
}

fn packet(key: &SpaKey, port: u16, n: u64) -> Vec<u8> {
    let mut nonce = [0u8; 24];
    nonce[..8].copy_from_slice(&n.to_le_bytes());
    nonce[8..10].copy_from_slice(&port.to_le_bytes());
    let mut id = [0u8; 16];
    id.copy_from_slice(&nonce[..16]);
    let payload = Payload {
        timestamp: support::unix_now(),
        nonce: id,
        services: vec![sesame_core::Service::tcp(if port == FLEET_SPA {
            FLEET_PORT
        } else {
            SOLO_PORT
        })],
        duration: 0,
        address: None,
    };
    encode_symmetric(key, &payload, nonce).expect("encode")
}

fn main() {
    let Some(per_series) = bench_samples("SESAME_BENCH_KNOCKS", 120, 100..=300) else {
        return;
    };
    support::ECHO_DAEMON_LOGS.store(false, std::sync::atomic::Ordering::Relaxed);
    let redis = RedisServer::start("bench").expect("the benchmark needs redis-server");
    let mut beds: Vec<Testbed> = (0..3)
        .map(|i| Testbed::create(&format!("flb{i}")).expect("the benchmark needs root"))
        .collect();
    let addresses = 3 * per_series;
    for bed in [&beds[0], &beds[2]] {
        for i in 0..addresses {
            bed.add_client_address(source(i)).expect("a source address");
        }
    }
    let dir = beds[0].scratch();
    for n in NAMES {
        support::keygen("identity", &dir.join(format!("{n}.key")));
    }
    support::keygen("spa", &dir.join("alice.key"));
    write_password(&dir).unwrap();
    let key = sesame::keys::load_spa_key(&dir.join("alice.key")).unwrap();
    let mut services = Vec::new();
    let mut daemons = Vec::new();
    for (i, bed) in beds.iter_mut().enumerate() {
        services.push(support::Service::start(bed, FLEET_PORT).unwrap());
        services.push(support::Service::start(bed, SOLO_PORT).unwrap());
        daemons.push(support::start_daemon(bed, &config(&dir, &redis, i), &[]));
    }
    for d in &daemons {
        d.log
            .expect(&["fleet_store_up"], Duration::from_secs(5), "the store");
    }
    // One UDP socket per source address in A's client namespace: every
    // packet leaves from A's side, whichever gateway is timed.
    let sockets: Vec<UdpSocket> = beds[0]
        .run_in(Side::Client, move || {
            (0..addresses)
                .map(|i| UdpSocket::bind(SocketAddr::new(source(i), 0)).unwrap())
                .collect()
        })
        .unwrap();
    let server = Testbed::addr(Side::Server, true);
    let (mut solo, mut at_a, mut at_c) = (
        Openings::default(),
        Openings::default(),
        Openings::default(),
    );
    println!(
        "fleet latency: SPA packet to gateway A → TCP connect, {per_series} samples per series, IPv6, each from a fresh source address"
    );
    for round in 0..per_series {
        let base = 3 * round;
        let (s, a) = (
            sockets[base].try_clone().unwrap(),
            sockets[base + 1].try_clone().unwrap(),
        );
        let key_a = key.clone();
        let (s_solo, s_a) = beds[0]
            .run_in(Side::Client, move || {
                nix::sys::prctl::set_timerslack(1).expect("prctl(PR_SET_TIMERSLACK)");
                let solo = knock_and_time(&s, &key_a, SOLO_SPA, base, server, SOLO_PORT);
                let at_a = knock_and_time(&a, &key_a, FLEET_SPA, base + 1, server, FLEET_PORT);
                (solo, at_a)
            })
            .unwrap();
        let c = sockets[base + 2].try_clone().unwrap();
        let key_c = key.clone();
        let s_c = beds[2]
            .run_in(Side::Client, move || {
                nix::sys::prctl::set_timerslack(1).expect("prctl(PR_SET_TIMERSLACK)");
                // Sent from A's client namespace (the socket lives there).
                knock_and_time(&c, &key_c, FLEET_SPA, base + 2, server, FLEET_PORT)
            })
            .unwrap();
        merge(&mut solo, s_solo);
        merge(&mut at_a, s_a);
        merge(&mut at_c, s_c);
    }
    println!("{}", solo.report("single gateway (A, no fleet)"));
    println!("{}", at_a.report("fleet door, connect at A (spend added)"));
    println!("{}", at_c.report("fleet door, knock at A, connect at C"));
    for (d, door, label) in [
        (0, "door=solo", "inside A, solo door (read → granted)"),
        (
            0,
            "door=ssh",
            "inside A, fleet door (read → spent → granted)",
        ),
        (2, "door=ssh", "inside C, fleet door (entry read → granted)"),
    ] {
        let samples = support::open_times(&daemons[d].log, door);
        println!("{}", latency_line(label, samples, 0));
    }
}

/// Sends sample `i`'s SPA packet for `spa_port` from `socket`, then times
/// a connect from `source(i)` to `server:port` (inside a client namespace).
fn knock_and_time(
    socket: &UdpSocket,
    key: &SpaKey,
    spa_port: u16,
    i: usize,
    server: IpAddr,
    port: u16,
) -> Openings {
    let mut openings = Openings::default();
    let p = packet(key, spa_port, i as u64);
    socket
        .send_to(&p, SocketAddr::new(server, spa_port))
        .unwrap();
    openings.time(source(i), server, port, Instant::now(), SAMPLE_LIMIT);
    openings
}

fn merge(into: &mut Openings, from: Openings) {
    into.opened.extend(from.opened);
    into.baseline.extend(from.baseline);
    into.failures += from.failures;
}
