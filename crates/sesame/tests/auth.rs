//! Replay-proof doors end to end: SPA and TOTP, with the real `sesame`
//! client, and byte-for-byte replays from another address (also across a
//! daemon restart). Real daemon, real kernel, throw-away namespaces (root;
//! under `CI=true` never skipped).

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use nix::sys::signal::Signal;
use sesame::testbed::{Side, Testbed, CLIENT2_V4};
use sesame_core::spa::{encode_symmetric, Payload};
use support::*;

const PORT: u16 = 2222;
const SPA_PORT: u16 = 62201;

#[test]
fn spa_client_opens_and_a_replay_from_elsewhere_does_not_even_after_restart() {
    let mut bed = testbed_or_skip!("spa");
    let dir = bed.scratch();
    let key = dir.join("alice.key");
    keygen("spa", &key);
    let state = dir.join("state");
    let config = format!(
        "[daemon]\nstate_dir = \"{state}\"\n[door.ssh]\nspa_port = {SPA_PORT}\nopen_for = \"30s\"\nprotect = [\"tcp/{PORT}\"]\n\
         [door.ssh.users.alice]\nkey = \"{key}\"\n",
        state = state.display(),
        key = key.display()
    );
    let client = dir.join("client.toml");
    std::fs::write(
        &client,
        format!(
            "[server.srv]\nhost = \"{}\"\n[server.srv.spa.ssh]\nport = {SPA_PORT}\nkey = \"{}\"\n",
            Testbed::addr(Side::Server, true),
            key.display()
        ),
    )
    .unwrap();
    let _service = Service::start(&bed, PORT).expect("echo service");
    let daemon = start_daemon(&mut bed, &config, &[]);
    let server6 = Testbed::addr(Side::Server, true);
    let server = Testbed::addr(Side::Server, false);

    // The real client, over IPv6.
    assert!(!can_connect(&bed, server6, PORT));
    sesame_knock(&bed, &client, &["srv", "ssh"]);
    assert!(
        wait_connect(&bed, server6, PORT, true, Duration::from_secs(2)),
        "SPA knock did not open:\n{}",
        daemon.log.dump()
    );

    // A packet made with the same key, sent once from 198.18.0.2 (opens),
    // then byte for byte from 198.18.0.3: refused as a replay.
    let spa_key = sesame::keys::load_spa_key(&key).unwrap();
    let payload = Payload {
        timestamp: unix_now(),
        nonce: [7; 16],
        services: vec![],
        duration: 0,
        address: None,
    };
    let packet = encode_symmetric(&spa_key, &payload, [9; 24]).unwrap();
    let first = Testbed::addr(Side::Client, false);
    send_from(&bed, first, server, SPA_PORT, packet.clone());
    assert_opens(&bed, server, PORT);
    send_from(&bed, CLIENT2_V4.into(), server, SPA_PORT, packet.clone());
    daemon.log.expect(
        &["event=\"spa_refused\"", "reason=\"replay\""],
        Duration::from_secs(2),
        "replay not logged as such",
    );
    assert!(
        !connects_from(&bed, CLIENT2_V4.into(), server, PORT),
        "the replay opened the door"
    );

    // Tampering is refused with its own reason.
    let mut tampered = packet.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    send_from(&bed, CLIENT2_V4.into(), server, SPA_PORT, tampered);
    daemon.log.expect(
        &["event=\"spa_refused\"", "source=198.18.0.3"],
        Duration::from_secs(2),
        "expected log line",
    );

    // Restart: the persisted replay cache still refuses the captured packet.
    stop_daemon(&mut bed, &daemon, Signal::SIGTERM);
    let daemon = start_daemon(&mut bed, &config, &[]);
    send_from(&bed, CLIENT2_V4.into(), server, SPA_PORT, packet);
    daemon.log.expect(
        &["event=\"spa_refused\"", "reason=\"replay\""],
        Duration::from_secs(2),
        "replay after restart not refused",
    );
    assert!(!connects_from(&bed, CLIENT2_V4.into(), server, PORT));
}

#[test]
fn totp_client_opens_and_the_same_sequence_from_elsewhere_does_not() {
    let mut bed = testbed_or_skip!("totp");
    let dir = bed.scratch();
    let secret = dir.join("bob.totp");
    keygen("totp", &secret);
    let config = format!(
        "[daemon]\nstate_dir = \"{state}\"\n[door.vpn]\ntotp_ports = \"30000-30999\"\ntotp_length = 3\n\
         totp_period = \"10s\"\nseq_timeout = \"5s\"\nopen_for = \"30s\"\nprotect = [\"tcp/{PORT}\"]\n\
         [door.vpn.users.bob]\ntotp_secret = \"{secret}\"\n",
        state = dir.join("state").display(),
        secret = secret.display()
    );
    let client = dir.join("client.toml");
    std::fs::write(
        &client,
        format!(
            "[server.srv]\nhost = \"{}\"\n[server.srv.totp.vpn]\nsecret = \"{}\"\nports = \"30000-30999\"\nlength = 3\nperiod = \"10s\"\n",
            Testbed::addr(Side::Server, false),
            secret.display()
        ),
    )
    .unwrap();
    let _service = Service::start(&bed, PORT).expect("echo service");
    let started = unix_now();
    let daemon = start_daemon(&mut bed, &config, &[]);
    let server = Testbed::addr(Side::Server, false);
    // What the client will knock, as the client computes it, in a step
    // that began after the first start.
    let sequence = fresh_totp_sequence(&client, "vpn", started, 10);
    assert_eq!(sequence.len(), 3, "{sequence:?}");

    assert!(!can_connect(&bed, server, PORT));
    sesame_knock(&bed, &client, &["srv", "vpn"]);
    assert!(
        wait_connect(&bed, server, PORT, true, Duration::from_secs(2)),
        "TOTP knock did not open:\n{}",
        daemon.log.dump()
    );
    // The same sequence (a sniffer's replay) from 198.18.0.3.
    let knocks: Vec<sesame_core::Knock> = sequence.iter().map(|k| k.parse().unwrap()).collect();
    bed.run_in(Side::Client, move || {
        for k in knocks {
            let s =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            s.bind(&SocketAddr::new(CLIENT2_V4.into(), 0).into())
                .unwrap();
            s.set_nonblocking(true).unwrap();
            let _ = s.connect(&SocketAddr::new(server, k.port).into());
            std::thread::sleep(Duration::from_millis(5));
        }
    })
    .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !connects_from(&bed, CLIENT2_V4.into(), server, PORT),
        "a replayed TOTP sequence opened the door:\n{}",
        daemon.log.dump()
    );
    // A port of the range that is not in the sequence never answers.
    let unused = (30000..=30999u16)
        .find(|p| !sequence.iter().any(|k| k.starts_with(&p.to_string())))
        .unwrap();
    let answered = bed
        .run_in(Side::Client, move || {
            std::net::TcpStream::connect_timeout(
                &SocketAddr::new(server, unused),
                Duration::from_millis(300),
            )
            .map_err(|e| e.kind())
        })
        .unwrap();
    assert_eq!(
        answered.err(),
        Some(std::io::ErrorKind::TimedOut),
        "port {unused} of the TOTP range answered instead of staying silent"
    );
}
