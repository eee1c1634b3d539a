//! Fleet mode end to end, over IPv4 and IPv6: a real `redis-server`
//! (Debian's package) on a private Unix socket with an ACL user, and three
//! gateways, each a real `sesamed` in its own pair of namespaces (gateway,
//! client). The clients
//! of the three pairs share the knocker's address, 198.18.0.2, so one
//! knock at A can be checked for at B and C by a TCP connect from the same
//! address; 198.18.0.3 plays the attacker. Root; under `CI=true` never
//! skipped.

mod support;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use sesame::testbed::{Side, Testbed, CLIENT2_V4};
use sesame_core::spa::{encode_symmetric, Payload};
use sesame_testkit::redis::{fleet_table, write_password, RedisServer, USER};
use support::*;

const SSH: u16 = 2222;
const VPN: u16 = 2223;
const SPA_PORT: u16 = 62201;
const NAMES: [&str; 3] = ["gw-a", "gw-b", "gw-c"];
/// Each gateway's metrics endpoint, in its own namespace.
const METRICS: &str = "127.0.0.1:9464";

/// Redis, three gateways and their keys.
struct Fleet {
    redis: RedisServer,
    beds: Vec<Testbed>,
    daemons: Vec<Daemon>,
    configs: Vec<String>,
    dir: PathBuf,
    _services: Vec<Service>,
}

fn redis_or_skip(tag: &str) -> Option<RedisServer> {
    sesame_testkit::proc::or_skip("redis-server", RedisServer::start(tag))
}

/// The config of gateway `i`: an SPA door whose grants open on the whole
/// group (`open_for`), and a TOTP door that is single use fleet-wide.
fn config(dir: &Path, redis: &RedisServer, i: usize, on_store_down: &str, open_for: u64) -> String {
    let settings = format!(
        "timeout = \"300ms\"\nheartbeat = \"300ms\"\non_store_down = \"{on_store_down}\"\n"
    );
    format!(
        "[daemon]\nstate_dir = \"{state}\"\nmetrics = \"{METRICS}\"\n{fleet}\
         [door.ssh]\nspa_port = {SPA_PORT}\nopen_for = \"{open_for}s\"\nprotect = [\"tcp/{SSH}\"]\nfleet = \"group\"\n\
         [door.ssh.users.alice]\nkey = \"{alice}\"\n\
         [door.vpn]\ntotp_ports = \"30000-30999\"\ntotp_length = 3\ntotp_period = \"10s\"\nseq_timeout = \"5s\"\n\
         open_for = \"30s\"\nprotect = [\"tcp/{VPN}\"]\nfleet = true\n[door.vpn.users.bob]\ntotp_secret = \"{bob}\"\n",
        state = dir.join(format!("state-{i}")).display(),
        fleet = fleet_table(redis, dir, "edge", NAMES[i], &NAMES, &settings),
        alice = dir.join("alice.key").display(),
        bob = dir.join("bob.totp").display(),
    )
}

impl Fleet {
    /// `None` where it cannot run (never under `CI=true`).
    fn start(tag: &str, on_store_down: [&str; 3], open_for: u64) -> Option<Fleet> {
        let redis = redis_or_skip(tag)?;
        let mut beds = Vec::new();
        for i in 0..3 {
            beds.push(testbed(&format!("{tag}{i}"))?);
        }
        let dir = beds[0].scratch();
        for n in NAMES {
            keygen("identity", &dir.join(format!("{n}.key")));
        }
        keygen("spa", &dir.join("alice.key"));
        keygen("totp", &dir.join("bob.totp"));
        write_password(&dir).unwrap();
        let mut services = Vec::new();
        let mut daemons = Vec::new();
        let mut configs = Vec::new();
        for (i, bed) in beds.iter_mut().enumerate() {
            services.push(Service::start(bed, SSH).expect("echo ssh"));
            services.push(Service::start(bed, VPN).expect("echo vpn"));
            let c = config(&dir, &redis, i, on_store_down[i], open_for);
            daemons.push(start_daemon(bed, &c, &[]));
            configs.push(c);
        }
        let fleet = Fleet {
            redis,
            beds,
            daemons,
            configs,
            dir,
            _services: services,
        };
        // Every gateway has reached the store (its heartbeat thread runs).
        for d in &fleet.daemons {
            d.log
                .expect(&["fleet_store_up"], Duration::from_secs(5), "the store");
        }
        Some(fleet)
    }

    /// Waits (bounded by `limit` per gateway) until tcp/2222 on `server`
    /// answers the knocker on every gateway (`open`), or on none.
    /// Asserts that a connect from the client to `server:port` through
    /// gateway `i` succeeds (`open`) or fails within `limit`.
    fn wait_at(
        &self,
        i: usize,
        server: IpAddr,
        port: u16,
        open: bool,
        limit: Duration,
        what: &str,
    ) {
        let log = || {
            self.daemons
                .get(i)
                .map(|d| d.log.dump())
                .unwrap_or_default()
        };
        assert!(
            wait_connect(&self.beds[i], server, port, open, limit),
            "{} {what}:\n{}",
            NAMES[i],
            log()
        );
    }

    fn wait_everywhere(&self, server: IpAddr, open: bool, limit: Duration, what: &str) {
        for i in 0..self.beds.len() {
            self.wait_at(i, server, SSH, open, limit, what);
        }
    }

    fn server() -> std::net::IpAddr {
        Testbed::addr(Side::Server, false)
    }

    /// An SPA packet of alice's for tcp/2222, made now.
    fn spa_packet(&self, nonce: u8) -> Vec<u8> {
        let key = sesame::keys::load_spa_key(&self.dir.join("alice.key")).unwrap();
        let payload = Payload {
            timestamp: unix_now(),
            nonce: [nonce; 16],
            services: vec![sesame_core::Service::tcp(SSH)],
            duration: 0,
            address: None,
        };
        encode_symmetric(&key, &payload, [nonce; 24]).unwrap()
    }

    fn send(&self, gw: usize, from: std::net::IpAddr, packet: &[u8]) {
        send_from(
            &self.beds[gw],
            from,
            Self::server(),
            SPA_PORT,
            packet.to_vec(),
        );
    }

    fn knocker() -> std::net::IpAddr {
        Testbed::addr(Side::Client, false)
    }
}

#[test]
fn one_knock_opens_the_group_for_the_knocker_only_and_replays_anywhere_are_refused() {
    let Some(f) = Fleet::start("fl", ["deny"; 3], 4) else {
        return;
    };
    let server = Fleet::server();
    let packet = f.spa_packet(1);
    f.send(0, Fleet::knocker(), &packet);
    let opened = Instant::now();
    f.wait_everywhere(
        server,
        true,
        Duration::from_secs(2),
        "did not open for the knocker",
    );
    for (i, bed) in f.beds.iter().enumerate() {
        assert!(
            !connects_from(bed, CLIENT2_V4.into(), server, SSH),
            "{} opened for another address",
            NAMES[i]
        );
    }
    f.daemons[1].log.expect(
        &["fleet_entry", "from=gw-a", "applied"],
        Duration::from_secs(1),
        "B's log",
    );
    // Metrics: A's spend round trip, B's propagation lag, the store's health.
    let spent = "sesame_fleet_spend_seconds_count{result=\"spent\"}";
    assert_eq!(
        metric(&f.beds[0], METRICS, spent),
        1.0,
        "{}",
        scrape(&f.beds[0], METRICS)
    );
    assert_eq!(
        metric(&f.beds[1], METRICS, "sesame_fleet_grant_lag_seconds_count"),
        1.0
    );
    assert_eq!(metric(&f.beds[1], METRICS, "sesame_fleet_store_up"), 1.0);
    // The captured packet, replayed to B and C from the attacker's address.
    for gw in [1, 2] {
        f.send(gw, CLIENT2_V4.into(), &packet);
        f.daemons[gw].log.expect(
            &["fleet_replay", "198.18.0.3"],
            Duration::from_secs(2),
            "the replay's refusal",
        );
        assert!(!connects_from(&f.beds[gw], CLIENT2_V4.into(), server, SSH));
        let refused = "sesame_rejects_total{door=\"ssh\",kind=\"spa\",reason=\"fleet_replay\"}";
        assert_eq!(metric(&f.beds[gw], METRICS, refused), 1.0);
    }
    // Closed on time everywhere (open_for 4 s), not before.
    let before = Duration::from_secs(3).saturating_sub(opened.elapsed());
    std::thread::sleep(before);
    for bed in &f.beds {
        assert!(can_connect(bed, server, SSH), "closed before open_for");
    }
    f.wait_everywhere(
        server,
        false,
        Duration::from_secs(3),
        "still open after open_for",
    );
    // Over IPv6 too: a packet to A's IPv6 address opens C's.
    let (server6, client6) = (
        Testbed::addr(Side::Server, true),
        Testbed::addr(Side::Client, true),
    );
    send_from(&f.beds[0], client6, server6, SPA_PORT, f.spa_packet(2));
    f.wait_everywhere(
        server6,
        true,
        Duration::from_secs(2),
        "did not open over IPv6",
    );
    for bed in &f.beds {
        assert!(!can_connect(bed, server, SSH), "the IPv6 grant opened IPv4");
    }

    // A TOTP sequence used at A is refused at B. A step that began after
    // the gateways' first start, with time left for both knocks.
    let client = f.dir.join("client.toml");
    std::fs::write(
        &client,
        format!(
            "[server.srv]\nhost = \"{server}\"\n[server.srv.totp.vpn]\nsecret = \"{}\"\nports = \"30000-30999\"\nlength = 3\nperiod = \"10s\"\n",
            f.dir.join("bob.totp").display()
        ),
    )
    .unwrap();
    let started = unix_now();
    let ports: Vec<u16> = fresh_totp_sequence(&client, "vpn", started, 10)
        .iter()
        .map(|k| k.split(':').next().unwrap().parse().unwrap())
        .collect();
    knock_from(&f.beds[0], Fleet::knocker(), server, &ports);
    f.wait_at(
        0,
        server,
        VPN,
        true,
        Duration::from_secs(2),
        "the TOTP knock",
    );
    knock_from(&f.beds[1], CLIENT2_V4.into(), server, &ports);
    f.daemons[1].log.expect(
        &["totp_refused", "fleet_replay"],
        Duration::from_secs(2),
        "the TOTP replay at B",
    );
    assert!(!connects_from(&f.beds[1], CLIENT2_V4.into(), server, VPN));
    // A fleet-only door's grant stays where it was made.
    assert!(!can_connect(&f.beds[2], server, VPN));
}

#[test]
fn with_redis_stopped_deny_refuses_and_local_opens_single_use_here_only() {
    let Some(mut f) = Fleet::start("fd", ["deny", "local", "deny"], 30) else {
        return;
    };
    let server = Fleet::server();
    f.redis.stop();
    // A: deny.
    f.send(0, Fleet::knocker(), &f.spa_packet(1));
    f.daemons[0].log.expect(
        &["spa_refused", "fleet_store_down"],
        Duration::from_secs(3),
        "A's refusal with the store down",
    );
    assert!(!can_connect(&f.beds[0], server, SSH), "deny opened");
    // B: local, single use on B.
    let packet = f.spa_packet(2);
    f.send(1, Fleet::knocker(), &packet);
    f.daemons[1].log.expect(
        &["fleet_local_only"],
        Duration::from_secs(3),
        "B's fallback",
    );
    f.wait_at(
        1,
        server,
        SSH,
        true,
        Duration::from_secs(2),
        "local fallback",
    );
    f.send(1, CLIENT2_V4.into(), &packet);
    f.daemons[1].log.expect(
        &["spa_refused", "reason=\"replay\""],
        Duration::from_secs(2),
        "the local replay refusal",
    );
    assert!(!connects_from(&f.beds[1], CLIENT2_V4.into(), server, SSH));
    // Status says the store is down.
    let said = status_text(&f.daemons[1]);
    assert!(said.contains("DOWN"), "{said}");
    // The store comes back (empty): fleet doors work again.
    f.redis.restart().unwrap();
    let end = Instant::now() + Duration::from_secs(10);
    let mut nonce = 10;
    while !can_connect(&f.beds[0], server, SSH) {
        assert!(
            Instant::now() < end,
            "A never recovered:\n{}",
            f.daemons[0].log.dump()
        );
        nonce += 1;
        f.send(0, Fleet::knocker(), &f.spa_packet(nonce));
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn a_restarted_gateway_catches_up_and_forged_grants_are_ignored() {
    let Some(mut f) = Fleet::start("fr", ["deny"; 3], 30) else {
        return;
    };
    let server = Fleet::server();
    // C is down while A opens the group.
    let c = f.daemons.pop().unwrap();
    stop_daemon(&mut f.beds[2], &c, Signal::SIGTERM);
    f.send(0, Fleet::knocker(), &f.spa_packet(1));
    f.wait_at(
        1,
        server,
        SSH,
        true,
        Duration::from_secs(2),
        "the group grant",
    );
    assert!(!can_connect(&f.beds[2], server, SSH), "C open while down");
    let c = start_daemon(&mut f.beds[2], &f.configs[2], &[]);
    assert!(
        wait_connect(&f.beds[2], server, SSH, true, Duration::from_secs(3)),
        "C did not catch up:\n{}",
        c.log.dump()
    );
    // Grants written straight into Redis: one signed by a key that is no
    // member's, one with no valid signature, one from a gateway not listed.
    let outsider = sesame_core::spa::IdentityKey::from_seed(&[77; 32]);
    let far = (unix_now() + 60) * 1000;
    let line = |from: &str| {
        format!("v1 grant from={from} door=ssh addr=198.18.0.3 services=tcp/{SSH} to=* made={} expires={far}", unix_now() * 1000)
    };
    let hex = |sig: [u8; 64]| sig.iter().map(|b| format!("{b:02x}")).collect::<String>();
    for (line, sig) in [
        (
            line("gw-a"),
            hex(sesame_core::fleet::sign(&outsider, "edge", &line("gw-a"))),
        ),
        (line("gw-a"), "00".repeat(64)),
        (
            line("gw-z"),
            hex(sesame_core::fleet::sign(&outsider, "edge", &line("gw-z"))),
        ),
    ] {
        f.redis
            .cli(&["XADD", "sesame:{edge}:entries", "*", "m", &line, "s", &sig]);
    }
    // Entries in A's own name are skipped at A unverified (A never installs
    // its own); B and C reject all three.
    for (d, rejected) in [(&f.daemons[0], 1), (&f.daemons[1], 3), (&c, 3)] {
        d.log.expect(
            &["fleet_entry_rejected", "unknown_signer"],
            Duration::from_secs(3),
            "the outsider's entry",
        );
        let logged = d.log.count("fleet_entry_rejected");
        assert_eq!(logged, rejected, "{}", d.log.dump());
    }
    for bed in &f.beds {
        assert!(
            !connects_from(bed, CLIENT2_V4.into(), server, SSH),
            "a forged grant opened"
        );
    }
    // A store that floods junk: every entry is counted, the log is capped.
    let junk: Vec<&str> = (0..30)
        .flat_map(|_| ["XADD", "sesame:{edge}:entries", "*", "m", "junk", "s", "00"])
        .collect();
    for chunk in junk.chunks(7) {
        f.redis.cli(chunk);
    }
    let malformed = "sesame_fleet_entries_rejected_total{reason=\"malformed\"}";
    let end = Instant::now() + Duration::from_secs(3);
    while metric(&f.beds[1], METRICS, malformed) < 30.0 {
        assert!(Instant::now() < end, "{}", scrape(&f.beds[1], METRICS));
        std::thread::sleep(Duration::from_millis(50));
    }
    let logged = f.daemons[1].log.count("fleet_entry_rejected");
    assert_eq!(logged, 21, "20 rejections and one summary line");
    // Status lists the members with their heartbeats.
    let said = status_text(&f.daemons[0]);
    for n in NAMES {
        assert!(said.contains(n), "{said}");
    }
    assert!(
        said.contains("last heartbeat") && said.contains(" up;"),
        "{said}"
    );
    // A revoke at A closes the knocker's grant on B and C too.
    let out = Command::new(bin("sesame"))
        .args(["revoke", &Fleet::knocker().to_string(), "--socket"])
        .arg(&f.daemons[0].socket)
        .output()
        .unwrap();
    assert_success(&out, "sesame revoke");
    f.wait_everywhere(
        server,
        false,
        Duration::from_secs(2),
        "still open after the revoke at A",
    );
    c.log.expect(
        &["fleet_entry", "kind=\"revoke\"", "applied"],
        Duration::from_secs(1),
        "C's revoke",
    );
    // A reload that changes [fleet] gets a new adapter, which must run:
    // the next knock at A opens the group again.
    let changed = f.configs[0].replace("heartbeat = \"300ms\"", "heartbeat = \"400ms\"");
    assert_ne!(changed, f.configs[0]);
    let path = std::env::temp_dir().join(format!("{}-cfg/sesame.toml", f.beds[0].server));
    std::fs::write(&path, &changed).unwrap();
    let out = Command::new(bin("sesame"))
        .args(["reload", "--socket"])
        .arg(&f.daemons[0].socket)
        .output()
        .unwrap();
    assert_success(&out, "sesame reload");
    let end = Instant::now() + Duration::from_secs(5);
    while f.daemons[0].log.count("fleet_store_up") < 2 {
        assert!(
            Instant::now() < end,
            "the reloaded adapter never reached the store:\n{}",
            f.daemons[0].log.dump()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    f.send(0, Fleet::knocker(), &f.spa_packet(41));
    f.wait_everywhere(
        server,
        true,
        Duration::from_secs(3),
        "closed after a knock at A following its [fleet] reload",
    );
}

#[test]
fn the_fleet_demo_opens_three_gateways_with_one_knock() {
    if redis_or_skip("demo-probe").is_none() {
        return;
    }
    if !nix::unistd::geteuid().is_root() {
        assert!(!sesame_testkit::proc::ci(), "CI=true but not root");
        eprintln!("skipped: needs root");
        return;
    }
    let out = sesame_testkit::proc::run_bounded(
        {
            let mut c = Command::new(bin("sesame"));
            c.args(["demo", "--fleet"]);
            c
        },
        Duration::from_secs(90),
    );
    assert_success(&out, "sesame demo --fleet");
    let said = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "gw-a: open",
        "gw-b: open",
        "gw-c: open",
        "reason=\"fleet_replay\"",
        "Fleet demo complete",
    ] {
        assert!(said.contains(needle), "{needle:?} missing:\n{said}");
    }
}

/// `--check-config` reads the fleet's keys and password (no root, no
/// store): a key that is not the one the members list gives this gateway,
/// and a password file others can read, are refused by name.
#[test]
fn check_config_refuses_a_mismatched_key_and_an_open_password_file() {
    let dir = sesame_testkit::proc::ScratchDir::new("fleet-check").unwrap();
    let d = dir.path();
    for n in ["gw-a", "gw-b"] {
        keygen("identity", &d.join(format!("{n}.key")));
    }
    keygen("spa", &d.join("alice.key"));
    write_password(d).unwrap();
    let redis_url = "unix:///nonexistent/redis.sock";
    let config = |name: &str, key: &str| {
        format!(
            "[daemon]\nstate_dir = \"{state}\"\n[fleet]\nname = \"{name}\"\ngroup = \"edge\"\nredis = \"{redis_url}\"\n\
             user = \"{USER}\"\npassword_file = \"{pass}\"\nkey = \"{key}\"\n[fleet.members]\n\
             gw-a = \"{a}\"\ngw-b = \"{b}\"\n[door.ssh]\nspa_port = {SPA_PORT}\nprotect = [\"tcp/{SSH}\"]\nfleet = \"group\"\n\
             [door.ssh.users.alice]\nkey = \"{alice}\"\n",
            state = d.join("state").display(),
            pass = d.join("redis.pass").display(),
            key = d.join(key).display(),
            a = d.join("gw-a.key.pub").display(),
            b = d.join("gw-b.key.pub").display(),
            alice = d.join("alice.key").display(),
        )
    };
    let check = |text: String| {
        let path = d.join("sesame.toml");
        std::fs::write(&path, text).unwrap();
        Command::new(bin("sesamed"))
            .arg("--check-config")
            .arg(&path)
            .output()
            .unwrap()
    };
    let ok = check(config("gw-a", "gw-a.key"));
    assert_success(&ok, "--check-config of a good fleet config");
    let wrong = check(config("gw-a", "gw-b.key"));
    let said = String::from_utf8_lossy(&wrong.stderr);
    assert!(
        !wrong.status.success() && said.contains("is not the key [fleet.members] lists"),
        "{said}"
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(d.join("redis.pass"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let open = check(config("gw-a", "gw-a.key"));
    let said = String::from_utf8_lossy(&open.stderr);
    assert!(
        !open.status.success() && said.contains("password_file") && said.contains("redis.pass"),
        "{said}"
    );
}
