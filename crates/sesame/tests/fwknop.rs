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
use std::time::Duration;

use fwknop_support::{Capture, Keys, Sesamed};
use nix::sys::signal::Signal;
use sesame::testbed::{Side, Testbed, CLIENT2_V4, CLIENT_V4, CLIENT_V6, SERVER_V4, SERVER_V6};
use support::*;

/// The protected service.
const PORT: u16 = 2222;
/// fwknop's default SPA port.
const SPA_PORT: u16 = 62201;

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
    let mut bed = testbed_or_skip!("fwk-cli");
    let dir = bed.scratch();
    let keys = Keys::generate();
    let _service = Service::start(&bed, PORT).expect("echo service");
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
    daemon.log.expect(
        &["event=\"fwknop_accepted\"", "198.18.0.2"],
        Duration::from_secs(2),
        "no fwknop_accepted line",
    );
    // Only the address in the packet was granted.
    assert!(!connects_from(&bed, CLIENT2_V4.into(), server));
}

#[test]
fn a_replayed_fwknop_packet_is_refused_even_after_a_restart() {
    let Some(progs) = fwknop_support::programs(&["fwknop"]) else {
        return;
    };
    let mut bed = testbed_or_skip!("fwk-replay");
    let dir = bed.scratch();
    let keys = Keys::generate();
    let _service = Service::start(&bed, PORT).expect("echo service");
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
    daemon.log.expect(
        &[
            "event=\"fwknop_refused\"",
            "reason=\"replay\"",
            "198.18.0.3",
        ],
        Duration::from_secs(2),
        "the replay was not refused as such",
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
    daemon.log.expect(
        &[
            "event=\"fwknop_refused\"",
            "reason=\"replay\"",
            "198.18.0.3",
        ],
        Duration::from_secs(2),
        "the replay after a restart was not refused as such",
    );
    assert!(!connects_from(&bed, second, server));
}

#[test]
fn sesame_knock_opens_a_real_fwknopd_door() {
    let Some(progs) = fwknop_support::programs(&["fwknopd", "iptables"]) else {
        return;
    };
    let mut bed = testbed_or_skip!("fwk-fwknopd");
    let dir = bed.scratch();
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
    let _service = Service::start(&bed, PORT).expect("echo service");
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
    fwknopd.log.expect(
        &["(stanza #2)"],
        Duration::from_secs(2),
        "expected log line",
    );
}

#[test]
fn sesame_knock_in_fwknop_format_opens_sesamed_over_ipv6() {
    let mut bed = testbed_or_skip!("fwk-v6");
    let dir = bed.scratch();
    let keys = Keys::generate();
    let _service = Service::start(&bed, PORT).expect("echo service");
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
    daemon.log.expect(
        &["event=\"fwknop_accepted\"", "fd53:5e5a::2"],
        Duration::from_secs(2),
        "expected log line",
    );
    // IPv4 stays closed: only the source's family and address were granted.
    assert!(!connects_from(&bed, CLIENT_V4.into(), SERVER_V4.into()));
}

// ---------------------------------------------------------------------------
// fwknop's own test-suite configurations, real fwknopd and sesamed side by
// side (issue 14, item 7): the same access.conf, the same packets from the
// real fwknop client, the same outcome.

/// A second protected port, for stanzas that must not match.
const OTHER_PORT: u16 = 2223;

/// What one daemon did with a case's packet.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    /// The client could connect to PORT afterwards.
    opened: bool,
    /// For command cases: the files the command made (names), and the
    /// owner uid of the first.
    made: Vec<String>,
    owner: Option<u32>,
}

struct SuiteCase {
    name: &'static str,
    /// access.conf; `{KEY}`, `{HMAC}` and `{DIR}` are filled in.
    access: String,
    /// Files to write in DIR first (name, text; same placeholders).
    files: Vec<(&'static str, String)>,
    /// fwknop client arguments (after the keys and addresses).
    client: Vec<String>,
    /// Extra sesamed arguments.
    sesamed: Vec<&'static str>,
    /// What both must do.
    expect: Outcome,
}

fn fill(text: &str, keys: &Keys, dir: &Path) -> String {
    text.replace("{KEY}", &keys.key)
        .replace("{HMAC}", &keys.hmac)
        .replace("{DIR}", &dir.display().to_string())
}

/// Runs `case` against fwknopd (`real`) or sesamed, each in its own testbed.
fn run_case(case: &SuiteCase, real: bool, progs: &[PathBuf]) -> Outcome {
    let (fwknop, fwknopd) = (&progs[0], &progs[1]);
    let mut bed = testbed(if real { "fwk-sfd" } else { "fwk-ssd" }).expect("testbed");
    let dir = bed.scratch();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o777)).unwrap();
    let keys = Keys::generate();
    for (name, text) in &case.files {
        let path = dir.join(name);
        std::fs::write(&path, fill(text, &keys, &dir)).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let access = fill(&case.access, &keys, &dir);
    let _service = Service::start(&bed, PORT).expect("echo service");
    let log = if real {
        fwknop_support::start_fwknopd(&mut bed, fwknopd, &dir, &access, Capture::Pcap, PORT, true)
            .log
    } else {
        let path = dir.join("access.conf");
        std::fs::write(&path, &access).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let mut args = vec!["--fwknop-access", path.to_str().unwrap()];
        args.extend(case.sesamed.iter().copied());
        fwknop_support::start_sesamed(&mut bed, &bin("sesamed"), &dir.join("var-lib"), &args, true)
            .log
    };
    let server = IpAddr::from(SERVER_V4);
    let client = IpAddr::from(CLIENT_V4);
    let mut args: Vec<String> = vec![
        "-a".into(),
        client.to_string(),
        "-D".into(),
        server.to_string(),
        "--use-hmac".into(),
        "--key-base64-rijndael".into(),
        keys.key.clone(),
        "--key-base64-hmac".into(),
        keys.hmac.clone(),
    ];
    args.extend(case.client.iter().map(|a| fill(a, &keys, &dir)));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    fwknop_support::fwknop_client(&bed, fwknop, &dir, &args);
    let opened = wait_connects_from(&bed, client, server, true);
    // Commands run asynchronously in both daemons.
    std::thread::sleep(Duration::from_millis(500));
    let mut made: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    made.sort();
    let owner = made
        .first()
        .map(|f| std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(out.join(f)).unwrap()));
    eprintln!(
        "{} {}: opened={opened} made={made:?}\n{}",
        if real { "fwknopd" } else { "sesamed" },
        case.name,
        log.dump()
    );
    Outcome {
        opened,
        made,
        owner,
    }
}

#[test]
fn fwknop_test_suite_configurations_agree_with_fwknopd() {
    let Some(progs) = fwknop_support::programs(&["fwknop", "fwknopd", "iptables"]) else {
        return;
    };
    if testbed("fwk-probe").is_none() {
        return;
    }
    let nobody = nix::unistd::User::from_name("nobody")
        .unwrap()
        .unwrap()
        .uid
        .as_raw();
    let stanza = |ports: &str, extra: &str| {
        format!("SOURCE ANY\n{ports}KEY_BASE64 {{KEY}}\nHMAC_KEY_BASE64 {{HMAC}}\nFW_ACCESS_TIMEOUT 30\n{extra}")
    };
    let ask = vec!["-A".to_string(), format!("tcp/{PORT}")];
    let opened = || Outcome {
        opened: true,
        made: vec![],
        owner: None,
    };
    let closed = || Outcome {
        opened: false,
        made: vec![],
        owner: None,
    };
    let cases = vec![
        // test/conf/hmac_dual_key_usage_access.conf: two stanzas, the same
        // keys; the first does not allow the port asked for, the second
        // does. fwknopd falls through to the second.
        SuiteCase {
            name: "dual key usage (port)",
            access: format!(
                "{}{}",
                stanza(&format!("OPEN_PORTS tcp/{OTHER_PORT}\n"), ""),
                stanza(&format!("OPEN_PORTS tcp/{PORT}\n"), "")
            ),
            files: vec![],
            client: ask.clone(),
            sesamed: vec![],
            expect: opened(),
        },
        // The same with REQUIRE_USERNAME in the first stanza.
        SuiteCase {
            name: "dual key usage (username)",
            access: format!(
                "{}{}",
                stanza(&format!("OPEN_PORTS tcp/{PORT}\n"), "REQUIRE_USERNAME bob\n"),
                stanza(&format!("OPEN_PORTS tcp/{PORT}\n"), "")
            ),
            files: vec![],
            client: vec!["-A".into(), format!("tcp/{PORT}"), "-U".into(), "alice".into()],
            sesamed: vec![],
            expect: opened(),
        },
        // Only the refusing stanza: both refuse.
        SuiteCase {
            name: "username refused",
            access: stanza(&format!("OPEN_PORTS tcp/{PORT}\n"), "REQUIRE_USERNAME bob\n"),
            files: vec![],
            client: vec!["-A".into(), format!("tcp/{PORT}"), "-U".into(), "alice".into()],
            sesamed: vec![],
            expect: closed(),
        },
        // test/conf/include_keys1_hmac_access.conf: the stanza's own keys
        // are wrong; %include_keys reads the right ones from a whole
        // access.conf, ignoring its other lines.
        SuiteCase {
            name: "%include_keys",
            access: format!(
                "SOURCE ANY\nOPEN_PORTS tcp/{PORT}\nKEY_BASE64 {}\nHMAC_KEY_BASE64 {}\nFW_ACCESS_TIMEOUT 30\n%include_keys {{DIR}}/keys.conf\n",
                fwknop_support::random_key_base64(32),
                fwknop_support::random_key_base64(64)
            ),
            files: vec![(
                "keys.conf",
                "SOURCE ANY\nKEY_BASE64 {KEY}\nHMAC_KEY_BASE64 {HMAC}\nFW_ACCESS_TIMEOUT 3\n".into(),
            )],
            client: ask.clone(),
            sesamed: vec![],
            expect: opened(),
        },
        // test/conf/expired_stanza_access.conf and
        // future_expired_stanza_access.conf.
        SuiteCase {
            name: "ACCESS_EXPIRE past",
            access: stanza(&format!("OPEN_PORTS tcp/{PORT}\n"), "ACCESS_EXPIRE 3/10/01\n"),
            files: vec![],
            client: ask.clone(),
            sesamed: vec![],
            expect: closed(),
        },
        SuiteCase {
            name: "ACCESS_EXPIRE future",
            access: stanza(&format!("OPEN_PORTS tcp/{PORT}\n"), "ACCESS_EXPIRE 3/10/2500\n"),
            files: vec![],
            client: ask.clone(),
            sesamed: vec![],
            expect: opened(),
        },
        // Debian's shipped access.conf, keys filled in: no OPEN_PORTS.
        // fwknopd opens what the client asks for; sesamed too, among what
        // it is told to protect.
        SuiteCase {
            name: "no OPEN_PORTS (Debian's access.conf)",
            access: "SOURCE              ANY\nKEY_BASE64          {KEY}\nHMAC_KEY_BASE64     {HMAC}\n".into(),
            files: vec![],
            client: ask.clone(),
            sesamed: vec!["--protect", "tcp/2222"],
            expect: opened(),
        },
        // Commands: split at blanks, no shell (the redirection is an
        // argument of echo, no file appears), then CMD_EXEC_USER.
        SuiteCase {
            name: "command without a shell",
            access: stanza(&format!("OPEN_PORTS tcp/{PORT}\n"), "ENABLE_CMD_EXEC Y\n"),
            files: vec![],
            client: vec!["--server-cmd".into(), "echo x > {DIR}/out/redirected".into()],
            sesamed: vec![],
            expect: closed(),
        },
        SuiteCase {
            name: "command as CMD_EXEC_USER",
            access: stanza(
                &format!("OPEN_PORTS tcp/{PORT}\n"),
                "ENABLE_CMD_EXEC Y\nCMD_EXEC_USER nobody\n",
            ),
            files: vec![],
            client: vec!["--server-cmd".into(), "touch {DIR}/out/made".into()],
            sesamed: vec![],
            expect: Outcome {
                opened: false,
                made: vec!["made".into()],
                owner: Some(nobody),
            },
        },
    ];
    // test/conf/hmac_spa_destination*_access.conf: DESTINATION selects the
    // stanza by the SPA packet's destination address. (fwknopd.conf's
    // ENABLE_DESTINATION_RULE only narrows fwknopd's iptables rule; Sesame
    // refuses it, see docs/fwknop.md.)
    let server = IpAddr::from(SERVER_V4);
    let mut cases = cases;
    for (name, destination, expect) in [
        (
            "DESTINATION matches",
            format!("{server}, 1.2.3.4"),
            opened(),
        ),
        ("DESTINATION ANY", "ANY".to_string(), opened()),
        (
            "DESTINATION misses",
            "1.2.3.4, 127.0.0.1, 123.0.0.0/24".to_string(),
            closed(),
        ),
    ] {
        cases.push(SuiteCase {
            name,
            access: stanza(
                &format!("OPEN_PORTS tcp/{PORT}\n"),
                &format!("DESTINATION {destination}\n"),
            ),
            files: vec![],
            client: ask.clone(),
            sesamed: vec![],
            expect,
        });
    }
    let mut disagreements = Vec::new();
    for case in &cases {
        let real = run_case(case, true, &progs);
        let ours = run_case(case, false, &progs);
        if real != case.expect || ours != case.expect {
            disagreements.push(format!(
                "{}: expected {:?}, fwknopd {:?}, sesamed {:?}",
                case.name, case.expect, real, ours
            ));
        }
    }
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
}
