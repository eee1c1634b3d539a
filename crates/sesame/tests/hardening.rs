//! Holes an outside audit found, each kept closed by a test against a real
//! `sesamed` in throw-away namespaces (root; under `CI=true` never skipped).

mod support;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use sesame::testbed::{Side, Testbed};
use support::*;

const PORT: u16 = 2222;
const FTP_LIKE: u16 = 2121;

/// Runs `nft -f -` with `script` in the server namespace.
fn nft_script(bed: &Testbed, script: &str) {
    let mut child = Command::new("ip")
        .args(["netns", "exec", &bed.server, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "nft -f: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Item 9: a conntrack expectation (what an FTP or SIP helper creates when
/// a service replies) makes the next connection from the client to a
/// protected port `related`. It must still need a grant.
#[test]
fn a_related_connection_to_a_protected_port_still_needs_a_grant() {
    let Some(mut bed) = testbed("related") else {
        return;
    };
    let _service = Service::start(&bed, PORT);
    let daemon = start_daemon(
        &mut bed,
        &format!(
            "[door.ssh]\nsequence = [\"7000\", \"8000\", \"9000\", \"10000\"]\nprotect = [\"tcp/{PORT}\"]\n"
        ),
        &[],
    );
    // The server opens a connection to the client (as a helper's master
    // connection does); its first packet creates an expectation of a
    // connection from the client to the protected port. The kernel builds
    // it from the reply tuple: client → server:PORT.
    nft_script(
        &bed,
        &format!(
            "table inet helper {{\n\
             ct expectation data {{ protocol tcp; dport {PORT}; timeout 30s; size 8; l3proto ip; }}\n\
             chain out {{ type filter hook output priority 0; tcp dport {FTP_LIKE} ct state new ct expectation set \"data\"; }}\n\
             }}\n"
        ),
    );
    let server = Testbed::addr(Side::Server, false);
    let client = Testbed::addr(Side::Client, false);
    let listener = bed
        .run_in(Side::Client, move || {
            std::net::TcpListener::bind(SocketAddr::new(client, FTP_LIKE)).unwrap()
        })
        .unwrap();
    let master = bed
        .run_in(Side::Server, move || {
            TcpStream::connect_timeout(&SocketAddr::new(client, FTP_LIKE), Duration::from_secs(2))
        })
        .unwrap();
    assert!(master.is_ok(), "the master connection failed: {master:?}");
    drop(listener);
    assert!(
        !can_connect(&bed, server, PORT),
        "a related connection reached the protected port without a grant:\n{}",
        daemon.log.dump()
    );
    // The door itself still works.
    knock(&bed, server, &["7000", "8000", "9000", "10000"]);
    assert!(wait_connect(
        &bed,
        server,
        PORT,
        true,
        Duration::from_secs(2)
    ));
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Item 12: a key holder allowed to name an address (NAT) cannot aim a
/// grant at the server itself (or loopback, link-local, broadcast).
#[test]
fn an_explicit_spa_address_cannot_be_the_server_itself() {
    use sesame_core::spa::{encode_symmetric, Payload};
    let Some(mut bed) = testbed("ownaddr") else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("{}-ownaddr", bed.server));
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("bob.key");
    let out = Command::new(bin("sesame"))
        .args(["keygen", "spa", key.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success());
    let config = format!(
        "[daemon]\nstate_dir = \"{}\"\n[door.ssh]\nspa_port = 62201\nprotect = [\"tcp/{PORT}\"]\n\
         [door.ssh.users.bob]\nkey = \"{}\"\nallow_address = true\n",
        dir.join("state").display(),
        key.display()
    );
    let daemon = start_daemon(&mut bed, &config, &[]);
    let server = Testbed::addr(Side::Server, false);
    let spa_key = sesame::keys::load_spa_key(&key).unwrap();
    let send = |bed: &Testbed, address: &str, n: u8| {
        let payload = Payload {
            timestamp: unix_now(),
            nonce: [n; 16],
            services: vec![],
            duration: 0,
            address: Some(address.parse().unwrap()),
        };
        let packet = encode_symmetric(&spa_key, &payload, [n; 24]).unwrap();
        bed.run_in(Side::Client, move || {
            let s = std::net::UdpSocket::bind("198.18.0.2:0").unwrap();
            s.send_to(&packet, SocketAddr::new(server, 62201)).unwrap();
        })
        .unwrap();
    };
    send(&bed, "198.18.0.1", 1);
    assert!(
        daemon
            .log
            .wait_for(
                &["address_refused", "198.18.0.1 is an address of this host"],
                Duration::from_secs(3)
            )
            .is_some(),
        "{}",
        daemon.log.dump()
    );
    send(&bed, "198.18.0.77", 2);
    assert!(
        daemon
            .log
            .wait_for(&["door opened", "198.18.0.77"], Duration::from_secs(3))
            .is_some(),
        "{}",
        daemon.log.dump()
    );
    let set = nft(&bed, &["list", "set", "inet", "sesame", "grants4"]);
    assert!(set.contains("198.18.0.77"), "{set}");
    assert!(!set.contains("198.18.0.1 "), "{set}");
}
