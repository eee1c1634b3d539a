//! fwknop interop, end to end: Debian's `fwknop` client against `sesamed
//! --fwknop-access`, `sesame knock` (fwknop format) against Debian's real
//! `fwknopd`, a byte-for-byte replay of a captured fwknop packet from another
//! address (also after a daemon restart), and `sesame knock` over IPv6, which
//! fwknop itself cannot do. Real daemons, real kernel, throw-away namespaces
//! (root; under `CI=true` a missing root, namespace or program is a failure,
//! never a skip).
//!
//! How fwknopd runs here: see `tests/fwknop_support/mod.rs`.

mod fwknop_support;
mod support;

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use fwknop_support::{Capture, Keys, Sesamed};
use nix::sys::signal::Signal;
use sesame::testbed::{Side, Testbed, CLIENT2_V4, CLIENT_V4, CLIENT_V6, SERVER_V4, SERVER_V6};
use support::*;

/// The protected service.
const PORT: u16 = 2222;
/// fwknop's default SPA port.
const SPA_PORT: u16 = 62201;

fn scratch(bed: &Testbed, what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("{}-{what}", bed.server));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes `access.conf` and starts `sesamed --fwknop-access` on it, with a
/// private state directory under `dir` (see
/// [`fwknop_support::start_sesamed`]).
fn start_sesamed(bed: &mut Testbed, dir: &Path, access_conf: &str) -> Sesamed {
    let access = dir.join("access.conf");
    std::fs::write(&access, access_conf).unwrap();
    std::fs::set_permissions(&access, std::fs::Permissions::from_mode(0o600)).unwrap();
    fwknop_support::start_sesamed(
        bed,
        &bin("sesamed"),
        &dir.join("var-lib"),
        &["--fwknop-access", access.to_str().unwrap()],
        true,
    )
}

/// Runs `sesame knock --config CLIENT ARGS` in the client namespace.
fn sesame_knock(bed: &Testbed, client_toml: &Path, args: &[&str]) -> Output {
    let mut cmd = bed.command(Side::Client, bin("sesame").to_str().unwrap());
    cmd.arg("knock").arg("--config").arg(client_toml).args(args);
    let out = fwknop_support::run_bounded(cmd, Duration::from_secs(20));
    assert!(
        out.status.success(),
        "sesame knock {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Sends `datagram` to the server's SPA port from `src` in the client
/// namespace.
fn send_from(bed: &Testbed, src: IpAddr, server: IpAddr, datagram: Vec<u8>) {
    bed.run_in(Side::Client, move || {
        let s = UdpSocket::bind(SocketAddr::new(src, 0)).unwrap();
        s.send_to(&datagram, SocketAddr::new(server, SPA_PORT))
            .unwrap();
    })
    .unwrap();
}

/// One TCP connect to the service from `src` (a client-namespace address).
fn connects_from(bed: &Testbed, src: IpAddr, server: IpAddr) -> bool {
    bed.run_in(Side::Client, move || {
        let domain = socket2::Domain::for_address(SocketAddr::new(server, PORT));
        let sock = socket2::Socket::new(domain, socket2::Type::STREAM, None).unwrap();
        sock.bind(&SocketAddr::new(src, 0).into()).unwrap();
        sock.connect_timeout(
            &SocketAddr::new(server, PORT).into(),
            Duration::from_millis(300),
        )
        .is_ok()
    })
    .unwrap()
}

/// Polls [`connects_from`] (bounded) until it returns `want`.
fn wait_connects_from(bed: &Testbed, src: IpAddr, server: IpAddr, want: bool) -> bool {
    fwknop_support::poll(Duration::from_secs(3), Duration::from_millis(20), || {
        connects_from(bed, src, server) == want
    })
}

/// The stanza every test uses: any source, tcp/2222, the default HMAC
/// (SHA256) and mode (CBC).
fn access_conf(keys: &Keys) -> String {
    keys.stanza("ANY", &format!("tcp/{PORT}"), 30)
}

#[test]
fn fwknop_client_opens_a_sesamed_door_over_ipv4() {
    let Some(progs) = fwknop_support::programs(&["fwknop"]) else {
        return;
    };
    let Some(mut bed) = testbed("fwk-cli") else {
        return;
    };
    let dir = scratch(&bed, "fwknop");
    let keys = Keys::generate();
    let _service = Service::start(&bed, PORT);
    let daemon = start_sesamed(&mut bed, &dir, &access_conf(&keys));
    let server = IpAddr::from(SERVER_V4);
    let client = IpAddr::from(CLIENT_V4);

    assert!(
        !connects_from(&bed, client, server),
        "the door is open before any packet"
    );
    // The real client, as its man page shows it: `-a` the address to open.
    fwknop_support::fwknop_client(
        &bed,
        &progs[0],
        &dir,
        &[
            "-A",
            &format!("tcp/{PORT}"),
            "-a",
            &client.to_string(),
            "-D",
            &server.to_string(),
            "--use-hmac",
            "--key-base64-rijndael",
            &keys.key,
            "--key-base64-hmac",
            &keys.hmac,
        ],
    );
    assert!(
        wait_connects_from(&bed, client, server, true),
        "the fwknop client's packet did not open the door:\n{}",
        daemon.log.dump()
    );
    assert!(
        daemon
            .log
            .wait_for(
                &["event=\"fwknop_accepted\"", "198.18.0.2"],
                Duration::from_secs(2)
            )
            .is_some(),
        "no fwknop_accepted line:\n{}",
        daemon.log.dump()
    );
    // Only the address in the packet was granted.
    assert!(!connects_from(&bed, CLIENT2_V4.into(), server));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_replayed_fwknop_packet_is_refused_even_after_a_restart() {
    let Some(progs) = fwknop_support::programs(&["fwknop"]) else {
        return;
    };
    let Some(mut bed) = testbed("fwk-replay") else {
        return;
    };
    let dir = scratch(&bed, "fwknop");
    let keys = Keys::generate();
    let _service = Service::start(&bed, PORT);
    let daemon = start_sesamed(&mut bed, &dir, &access_conf(&keys));
    let server = IpAddr::from(SERVER_V4);
    let first = IpAddr::from(CLIENT_V4);
    let second = IpAddr::from(CLIENT2_V4);

    // `-s`: "open for the packet's source", so a replay from elsewhere
    // would open for the replayer if it were accepted. `-B` saves the
    // packet exactly as sent (plus a newline).
    let saved = dir.join("packet.spa");
    fwknop_support::fwknop_client(
        &bed,
        &progs[0],
        &dir,
        &[
            "-A",
            &format!("tcp/{PORT}"),
            "-s",
            "-D",
            &server.to_string(),
            "--use-hmac",
            "--key-base64-rijndael",
            &keys.key,
            "--key-base64-hmac",
            &keys.hmac,
            "-B",
            saved.to_str().unwrap(),
        ],
    );
    assert!(
        wait_connects_from(&bed, first, server, true),
        "the fwknop client's packet did not open the door:\n{}",
        daemon.log.dump()
    );
    let packet = std::fs::read_to_string(&saved)
        .unwrap()
        .trim_end()
        .as_bytes()
        .to_vec();
    assert!(packet.len() > 140, "saved packet: {packet:?}");

    // The captured bytes, from 198.18.0.3.
    assert!(!connects_from(&bed, second, server));
    send_from(&bed, second, server, packet.clone());
    assert!(
        daemon
            .log
            .wait_for(
                &[
                    "event=\"fwknop_refused\"",
                    "reason=\"replay\"",
                    "198.18.0.3"
                ],
                Duration::from_secs(2)
            )
            .is_some(),
        "the replay was not refused as such:\n{}",
        daemon.log.dump()
    );
    assert!(
        !wait_connects_from(&bed, second, server, true),
        "the replayed packet opened the door for 198.18.0.3:\n{}",
        daemon.log.dump()
    );

    // After a restart the persisted digest cache still refuses it.
    fwknop_support::stop_sesamed(&mut bed, &daemon, Signal::SIGTERM);
    let daemon = start_sesamed(&mut bed, &dir, &access_conf(&keys));
    send_from(&bed, second, server, packet);
    assert!(
        daemon
            .log
            .wait_for(
                &[
                    "event=\"fwknop_refused\"",
                    "reason=\"replay\"",
                    "198.18.0.3"
                ],
                Duration::from_secs(2)
            )
            .is_some(),
        "the replay after a restart was not refused as such:\n{}",
        daemon.log.dump()
    );
    assert!(!connects_from(&bed, second, server));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn sesame_knock_opens_a_real_fwknopd_door() {
    let Some(progs) = fwknop_support::programs(&["fwknopd", "iptables"]) else {
        return;
    };
    let Some(mut bed) = testbed("fwk-fwknopd") else {
        return;
    };
    let dir = scratch(&bed, "fwknop");
    // Stanza 1: base64 keys, as `fwknop --key-gen` makes them. Stanza 2: a
    // passphrase KEY and an HMAC key from a key file, HMAC SHA512; fwknopd
    // tries the stanzas in order, the first that verifies wins.
    let keys = Keys::generate();
    let hmac2 = fwknop_support::random_key_base64(64);
    let access = format!(
        "{}\nSOURCE ANY\nOPEN_PORTS tcp/{PORT}\nKEY correct-horse-battery\nHMAC_KEY_BASE64 {hmac2}\n\
         HMAC_DIGEST_TYPE SHA512\nFW_ACCESS_TIMEOUT 30\nMAX_FW_TIMEOUT 120\n",
        access_conf(&keys)
    );
    let _service = Service::start(&bed, PORT);
    let fwknopd = fwknop_support::start_fwknopd(
        &mut bed,
        &progs[0],
        &dir,
        &access,
        Capture::Pcap,
        PORT,
        true,
    );
    let server = IpAddr::from(SERVER_V4);
    let first = IpAddr::from(CLIENT_V4);
    let second = IpAddr::from(CLIENT2_V4);

    let key_file = dir.join("fwknop.keys");
    std::fs::write(&key_file, format!("HMAC_KEY_BASE64: {hmac2}\n")).unwrap();
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let client = dir.join("client.toml");
    std::fs::write(
        &client,
        format!(
            "[server.srv]\nhost = \"{server}\"\n\
             [server.srv.fwknop.ssh]\naccess = [\"tcp/{PORT}\"]\nkey_base64 = \"{}\"\nhmac_key_base64 = \"{}\"\n\
             [server.srv.fwknop.pw]\naccess = [\"tcp/{PORT}\"]\nkey = \"correct-horse-battery\"\n\
             hmac_key_file = \"{}\"\nhmac_digest = \"sha512\"\nallow_ip = \"{second}\"\nclient_timeout = 60\n\
             username = \"alice\"\n",
            keys.key,
            keys.hmac,
            key_file.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&client, std::fs::Permissions::from_mode(0o600)).unwrap();

    assert!(
        !connects_from(&bed, first, server),
        "open before any packet"
    );
    // A dry run sends nothing.
    let dry = sesame_knock(&bed, &client, &["--dry-run", "srv", "ssh"]);
    let text = String::from_utf8_lossy(&dry.stdout);
    assert!(text.contains("dry run: nothing sent"), "{text}");
    std::thread::sleep(Duration::from_millis(300));
    assert!(!connects_from(&bed, first, server), "the dry run opened");

    // Default door: allow_ip absent = "the packet's source" (0.0.0.0).
    sesame_knock(&bed, &client, &["-v", "srv", "ssh"]);
    assert!(
        wait_connects_from(&bed, first, server, true),
        "fwknopd did not open for sesame knock's packet:\n{}",
        fwknopd.log.dump()
    );
    assert!(fwknopd
        .log
        .find(&["Added access rule to FWKNOP_INPUT for 198.18.0.2"])
        .is_some());
    assert!(!connects_from(&bed, second, server));

    // Second door: stanza 2, an explicit address (198.18.0.3, sent from
    // 198.18.0.2), a client timeout (message type 3), username alice.
    sesame_knock(&bed, &client, &["srv", "pw"]);
    assert!(
        wait_connects_from(&bed, second, server, true),
        "fwknopd did not open 198.18.0.3 for the second door:\n{}",
        fwknopd.log.dump()
    );
    assert!(
        fwknopd
            .log
            .wait_for(&["(stanza #2)"], Duration::from_secs(2))
            .is_some(),
        "{}",
        fwknopd.log.dump()
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn sesame_knock_in_fwknop_format_opens_sesamed_over_ipv6() {
    let Some(mut bed) = testbed("fwk-v6") else {
        return;
    };
    let dir = scratch(&bed, "fwknop");
    let keys = Keys::generate();
    let _service = Service::start(&bed, PORT);
    let daemon = start_sesamed(&mut bed, &dir, &access_conf(&keys));
    let server = IpAddr::from(SERVER_V6);
    let client6 = IpAddr::from(CLIENT_V6);
    let client = dir.join("client.toml");
    std::fs::write(
        &client,
        format!(
            "[server.srv]\nhost = \"{server}\"\n\
             [server.srv.fwknop.ssh]\naccess = [\"tcp/{PORT}\"]\nkey_base64 = \"{}\"\nhmac_key_base64 = \"{}\"\n",
            keys.key, keys.hmac
        ),
    )
    .unwrap();
    std::fs::set_permissions(&client, std::fs::Permissions::from_mode(0o600)).unwrap();

    assert!(
        !connects_from(&bed, client6, server),
        "open before any packet"
    );
    // The access message can only carry IPv4: the client asks for the
    // packet's source (0.0.0.0) and sesamed grants the IPv6 source.
    sesame_knock(&bed, &client, &["srv", "ssh"]);
    assert!(
        wait_connects_from(&bed, client6, server, true),
        "sesame knock (fwknop format) did not open over IPv6:\n{}",
        daemon.log.dump()
    );
    assert!(
        daemon
            .log
            .wait_for(
                &["event=\"fwknop_accepted\"", "fd53:5e5a::2"],
                Duration::from_secs(2)
            )
            .is_some(),
        "{}",
        daemon.log.dump()
    );
    // IPv4 stays closed: only the source's family and address were granted.
    assert!(!connects_from(&bed, CLIENT_V4.into(), SERVER_V4.into()));
    std::fs::remove_dir_all(&dir).ok();
}
