//! `sesame demo --fleet`: a private `redis-server` and three gateways, each
//! a `sesamed` in its own pair of namespaces; one SPA packet to the first
//! opens the protected service on all three, for the knocker only, and all
//! three close by themselves. The same packet replayed to another gateway
//! from another address is refused.

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use sesame_core::spa::{encode_symmetric, IdentityKey, Payload, SpaKey};
use sesame_testkit::redis::{fleet_table, write_password, RedisServer, USER};

use crate::demo::{probe, sesamed_path, spawn_sesamed, DemoError, SERVICE_PORT};
use crate::keys::{self, KeyKind};
use crate::testbed::{Side, Testbed, CLIENT2_V4};

const SPA_PORT: u16 = 62201;
const OPEN_FOR: Duration = Duration::from_secs(5);
const NAMES: [&str; 3] = ["gw-a", "gw-b", "gw-c"];

fn random32() -> Result<zeroize::Zeroizing<[u8; 32]>, DemoError> {
    let mut b = zeroize::Zeroizing::new([0u8; 32]);
    getrandom::fill(b.as_mut()).map_err(|e| DemoError::Unexpected(e.to_string()))?;
    Ok(b)
}

fn key_error(e: keys::KeyFileError) -> DemoError {
    DemoError::Unexpected(e.to_string())
}

fn config(dir: &Path, redis: &RedisServer, i: usize) -> String {
    format!(
        "[daemon]\nstate_dir = \"{state}\"\n{fleet}\
         [door.ssh]\nspa_port = {SPA_PORT}\nopen_for = \"{open}s\"\nprotect = [\"tcp/{SERVICE_PORT}\"]\nfleet = \"group\"\n\
         [door.ssh.users.alice]\nkey = \"{alice}\"\n",
        state = dir.join(format!("state-{i}")).display(),
        fleet = fleet_table(redis, dir, "demo", NAMES[i], &NAMES, ""),
        alice = dir.join("alice.key").display(),
        open = OPEN_FOR.as_secs(),
    )
}

fn send(bed: &Testbed, from: IpAddr, server: IpAddr, packet: Vec<u8>) -> Result<(), DemoError> {
    bed.run_in(Side::Client, move || {
        UdpSocket::bind(SocketAddr::new(from, 0))?
            .send_to(&packet, SocketAddr::new(server, SPA_PORT))
            .map(drop)
    })??;
    Ok(())
}

fn all_closed(beds: &[Testbed], server: IpAddr, step: &str) -> Result<(), DemoError> {
    for (bed, name) in beds.iter().zip(NAMES) {
        match probe(bed, None, server) {
            Err(e) => println!("   ✓ {name}: unreachable ({e})"),
            Ok(banner) => {
                return Err(DemoError::Unexpected(format!(
                    "{step}: {name} answered {banner:?} but should be closed"
                )))
            }
        }
    }
    Ok(())
}

/// Runs the fleet demo; every namespace, process and file is gone when it
/// returns.
pub fn run() -> Result<(), DemoError> {
    let sesamed = sesamed_path()?;
    let redis = RedisServer::start("demo").map_err(DemoError::Unexpected)?;
    let mut beds = Vec::new();
    for i in 0..3 {
        beds.push(Testbed::create(&format!("fleet{i}"))?);
    }
    let dir = sesame_testkit::proc::ScratchDir::new("demo-fleet")?;
    let d = dir.path();
    for n in NAMES {
        let identity = IdentityKey::from_seed(&*random32()?);
        keys::write_secret(
            &d.join(format!("{n}.key")),
            KeyKind::Identity,
            &identity.to_seed(),
            false,
        )
        .map_err(key_error)?;
        let public = identity.public().to_bytes();
        keys::write_public(
            &d.join(format!("{n}.key.pub")),
            KeyKind::IdentityPublic,
            &public,
            false,
        )
        .map_err(key_error)?;
    }
    let alice = random32()?;
    keys::write_secret(&d.join("alice.key"), KeyKind::SpaKey, &alice, false).map_err(key_error)?;
    write_password(d)?;

    println!("Sesame fleet demo");
    println!(
        "   redis-server on {} (ACL user {USER})",
        redis.socket().display()
    );
    let server = Testbed::addr(Side::Server, false);
    let (ready_tx, ready_rx) = mpsc::channel();
    let mut services = Vec::new();
    for (i, bed) in beds.iter_mut().enumerate() {
        let name = NAMES[i];
        println!(
            "   {name}: namespace {} runs sesamed and a service on {server}:{SERVICE_PORT}; its client namespace {} knocks from {}",
            bed.server,
            bed.client,
            Testbed::addr(Side::Client, false)
        );
        services.push(bed.spawn_in(Side::Server, move || -> std::io::Result<()> {
            let listener = TcpListener::bind(("0.0.0.0", SERVICE_PORT))?;
            for stream in listener.incoming().flatten() {
                use std::io::Write;
                let mut s = stream;
                let _ = writeln!(s, "hello from {name}");
            }
            Ok(())
        })?);
        let config_path = d.join(format!("{name}.toml"));
        std::fs::write(&config_path, config(d, &redis, i))?;
        let socket = d.join(format!("{name}.sock"));
        let stderr = spawn_sesamed(bed, &sesamed, &config_path, &socket)?;
        let ready = ready_tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("fleet_store_up") {
                    let _ = ready.send(());
                }
                // Fleet events, openings, refusals and any error (a gateway
                // that cannot start says why here).
                if line.contains("fleet")
                    || line.contains("event=\"open\"")
                    || line.contains("refused")
                    || line.contains("ERROR")
                    || line.starts_with("sesamed:")
                {
                    println!("      {name} │ {line}");
                }
            }
        });
    }
    for _ in 0..3 {
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| {
                DemoError::Daemon(
                    "a gateway did not start or did not reach redis within 10 s (its log is above)"
                        .into(),
                )
            })?;
    }
    println!("\n 1. Before knocking: the service is closed on every gateway");
    all_closed(&beds, server, "before the knock")?;
    let payload = Payload {
        timestamp: crate::daemon::unix_now(),
        nonce: {
            let r = random32()?;
            let mut n = [0u8; 16];
            n.copy_from_slice(&r[..16]);
            n
        },
        services: vec![sesame_core::Service::tcp(SERVICE_PORT)],
        duration: 0,
        address: None,
    };
    let nonce = {
        let r = random32()?;
        let mut n = [0u8; 24];
        n.copy_from_slice(&r[..24]);
        n
    };
    let packet = encode_symmetric(&SpaKey::from_bytes(&alice), &payload, nonce)
        .map_err(|e| DemoError::Unexpected(e.to_string()))?;
    println!(" 2. One SPA packet to gw-a only");
    send(
        &beds[0],
        Testbed::addr(Side::Client, false),
        server,
        packet.clone(),
    )?;
    std::thread::sleep(Duration::from_millis(300));
    for (bed, name) in beds.iter().zip(NAMES) {
        match probe(bed, None, server) {
            Ok(banner) => println!("   ✓ {name}: open — the service says {banner:?}"),
            Err(e) => {
                return Err(DemoError::Unexpected(format!(
                    "{name} is still closed after the knock at gw-a: {e}"
                )))
            }
        }
        if probe(bed, Some(CLIENT2_V4.into()), server).is_ok() {
            return Err(DemoError::Unexpected(format!(
                "{name} opened for {CLIENT2_V4} too"
            )));
        }
    }
    println!("   ✓ and for {CLIENT2_V4}, another address, every gateway stays closed");
    println!(" 3. An attacker replays the captured packet to gw-b from {CLIENT2_V4}");
    send(&beds[1], CLIENT2_V4.into(), server, packet)?;
    std::thread::sleep(Duration::from_millis(300));
    match probe(&beds[1], Some(CLIENT2_V4.into()), server) {
        Err(_) => println!("   ✓ refused: the packet was already spent in the fleet"),
        Ok(_) => return Err(DemoError::Unexpected("the replay opened gw-b".into())),
    }
    println!(
        " 4. Wait {}s: every gateway closes by itself",
        OPEN_FOR.as_secs() + 1
    );
    std::thread::sleep(OPEN_FOR + Duration::from_secs(1));
    all_closed(&beds, server, "after open_for")?;
    println!("\nFleet demo complete: one knock opened three gateways for the knocker only, a replay elsewhere was refused, and all closed on time.");
    drop(beds);
    drop(redis);
    drop(dir);
    Ok(())
}
