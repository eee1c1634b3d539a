//! Command-line behaviour that needs no privileges.

use std::process::Command;

fn run(bin: &str, args: &[&str]) -> (bool, String, String) {
    let path = match bin {
        "sesamed" => env!("CARGO_BIN_EXE_sesamed"),
        _ => env!("CARGO_BIN_EXE_sesame"),
    };
    let out = Command::new(path).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_config_accepts_the_shipped_example() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/sesame.toml");
    let (ok, stdout, stderr) = run("sesamed", &["--check-config", example]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("OK, 2 door(s): admin, ssh"), "{stdout}");
}

#[test]
fn check_config_names_file_line_and_item() {
    let dir = std::env::temp_dir().join(format!("sesame-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.toml");
    std::fs::write(
        &path,
        "[door.ssh]\nprotect = [\"tcp/22\"]\nsequence = [\"7000\", \"99999\"]\n",
    )
    .unwrap();
    let (ok, _, stderr) = run("sesamed", &["--check-config", path.to_str().unwrap()]);
    assert!(!ok);
    let expected = format!("{}:3:", path.display());
    assert!(stderr.contains(&expected), "{stderr}");
    assert!(stderr.contains("sequence[1] \"99999\""), "{stderr}");
    let (ok, _, stderr) = run("sesamed", &["--check-config", "/nonexistent/sesame.toml"]);
    assert!(!ok);
    assert!(
        stderr.contains("/nonexistent/sesame.toml: cannot read config"),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn knock_rejects_bad_ports_with_their_position() {
    let (ok, _, stderr) = run("sesame", &["knock", "127.0.0.1", "7000", "80000"]);
    assert!(!ok);
    assert!(stderr.contains("knock 2 \"80000\""), "{stderr}");
    let (ok, _, stderr) = run("sesame", &["knock", "127.0.0.1", "7000:icmp"]);
    assert!(!ok);
    assert!(stderr.contains("invalid protocol"), "{stderr}");
    let (ok, _, stderr) = run("sesame", &["knock", "-4", "::1", "7000"]);
    assert!(!ok);
    assert!(stderr.contains("no IPv4 address"), "{stderr}");
}

#[test]
fn knock_uses_a_client_profile() {
    let dir = std::env::temp_dir().join(format!("sesame-prof-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    rx.set_read_timeout(Some(std::time::Duration::from_secs(2)))
        .unwrap();
    let port = rx.local_addr().unwrap().port();
    let path = dir.join("client.toml");
    std::fs::write(
        &path,
        format!(
            "[server.local]\nhost = \"127.0.0.1\"\ndoor.test = [\"{port}:udp\", \"{port}:udp\"]\n"
        ),
    )
    .unwrap();
    let (ok, _, stderr) = run(
        "sesame",
        &["knock", "--config", path.to_str().unwrap(), "local", "test"],
    );
    assert!(ok, "{stderr}");
    let mut buf = [0u8; 4];
    assert_eq!(rx.recv(&mut buf).unwrap(), 1);
    assert_eq!(rx.recv(&mut buf).unwrap(), 1);
    let (ok, _, stderr) = run(
        "sesame",
        &["knock", "--config", path.to_str().unwrap(), "local", "nope"],
    );
    assert!(!ok);
    assert!(stderr.contains("no door \"nope\""), "{stderr}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn knock_one_time_sends_the_first_unused_line_then_marks_it() {
    let dir = std::env::temp_dir().join(format!("sesame-ots-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    rx.set_read_timeout(Some(std::time::Duration::from_secs(2)))
        .unwrap();
    let port = rx.local_addr().unwrap().port();
    let path = dir.join("knockd.ots");
    let file = path.to_str().unwrap();
    std::fs::write(
        &path,
        format!("# pad\n#1,2\n {port}:udp, {port}:udp\n {port}:udp\n"),
    )
    .unwrap();

    let (ok, stdout, stderr) = run("sesame", &["knock", "-v", "--one-time", file, "127.0.0.1"]);
    assert!(ok, "{stderr}");
    let mut buf = [0u8; 4];
    assert_eq!(rx.recv(&mut buf).unwrap(), 1);
    assert_eq!(rx.recv(&mut buf).unwrap(), 1);
    assert!(
        stdout.contains(":3 used; 1 unused sequence(s) left"),
        "{stdout}"
    );
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        format!("# pad\n#1,2\n#{port}:udp, {port}:udp\n {port}:udp\n")
    );

    let (ok, _, stderr) = run("sesame", &["knock", "--one-time", file, "127.0.0.1"]);
    assert!(ok, "{stderr}");
    assert_eq!(rx.recv(&mut buf).unwrap(), 1);
    let (ok, _, stderr) = run("sesame", &["knock", "--one-time", file, "127.0.0.1"]);
    assert!(!ok);
    assert!(stderr.contains("no unused sequence left"), "{stderr}");

    // A failed knock does not use the line up.
    std::fs::write(&path, format!(" {port}:udp\n")).unwrap();
    let (ok, _, stderr) = run("sesame", &["knock", "-6", "--one-time", file, "127.0.0.1"]);
    assert!(!ok);
    assert!(stderr.contains("no IPv6 address"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        format!(" {port}:udp\n")
    );

    // Junk in the file names file:line and the item.
    std::fs::write(&path, " 7000\n 70x0\n").unwrap();
    let (ok, _, stderr) = run("sesame", &["knock", "--one-time", file, "127.0.0.1"]);
    assert!(!ok);
    assert!(stderr.contains(&format!("{file}:2:")), "{stderr}");
    assert!(stderr.contains("\"70x0\""), "{stderr}");

    // Ports and --one-time exclude each other.
    let (ok, _, _) = run(
        "sesame",
        &["knock", "--one-time", file, "127.0.0.1", "7000"],
    );
    assert!(!ok);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn import_knockd_prints_sesame_toml() {
    let dir = std::env::temp_dir().join(format!("sesame-import-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("knockd.conf");
    std::fs::write(
        &path,
        "[options]\n\tUseSyslog\n\n[openSSH]\n\tsequence    = 7000,8000,9000\n\tseq_timeout = 5\n\tcommand     = /sbin/iptables -A INPUT -s %IP% -p tcp --dport 22 -j ACCEPT\n\ttcpflags    = syn\n",
    )
    .unwrap();
    let (ok, stdout, stderr) = run("sesame", &["import", "knockd", path.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("[door.openSSH]"), "{stdout}");
    assert!(
        stdout.contains("sequence = [\"7000\", \"8000\", \"9000\"]"),
        "{stdout}"
    );
    assert!(stdout.contains("on_open_shell = "), "{stdout}");

    // The output is a config sesamed accepts.
    let out = dir.join("sesame.toml");
    std::fs::write(&out, &stdout).unwrap();
    let (ok, stdout, stderr) = run("sesamed", &["--check-config", out.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("openSSH"), "{stdout}");

    std::fs::write(&path, "[openSSH]\nsequence = 7000,70x0\ncommand = x\n").unwrap();
    let (ok, stdout, stderr) = run("sesame", &["import", "knockd", path.to_str().unwrap()]);
    assert!(!ok);
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.contains(&format!(
            "{}:2: [openSSH] sequence item 2 \"70x0\"",
            path.display()
        )),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

// ---- keys, SPA and TOTP client (issue 4) ----

use std::net::UdpSocket;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sesame::keys;
use sesame_core::spa::{
    Credential, UserPolicy, Verifier, PUBLIC_V2_PACKET_LEN, SYMMETRIC_PACKET_LEN,
};
use sesame_core::totp::TotpSpec;
use sesame_core::{Knock, Proto, Service};
use sesame_testkit::proc::ScratchDir;

/// A fresh directory, removed on drop.
struct Scratch(ScratchDir);

impl Scratch {
    fn new(tag: &str) -> Self {
        Scratch(ScratchDir::new(tag).expect("scratch directory"))
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    fn s(&self, name: &str) -> String {
        self.path(name).to_str().unwrap().to_string()
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn keygen(dir: &Scratch, kind: &str, name: &str) -> String {
    let (ok, stdout, stderr) = run("sesame", &["keygen", kind, &dir.s(name)]);
    assert!(ok, "{stderr}");
    stdout
}

/// A UDP socket on 127.0.0.1 that gives up reading after `ms`.
fn udp_receiver(ms: u64) -> (UdpSocket, u16) {
    let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
    rx.set_read_timeout(Some(Duration::from_millis(ms)))
        .unwrap();
    let port = rx.local_addr().unwrap().port();
    (rx, port)
}

fn nothing_arrives(rx: &UdpSocket) {
    rx.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 2048];
    let got = rx.recv(&mut buf);
    assert!(got.is_err(), "unexpected datagram of {:?} bytes", got);
}

#[test]
fn keygen_creates_private_files_and_public_halves() {
    let dir = Scratch::new("keygen");
    let out = keygen(&dir, "spa", "ssh.key");
    let key = keys::load_spa_key(&dir.path("ssh.key")).unwrap();
    assert_eq!(mode(&dir.path("ssh.key")), 0o600);
    assert!(out.contains(&key.key_id().to_string()), "{out}");
    // The server copy must be readable by the service user.
    assert!(
        out.contains("install -D -m 600 -o sesame -g sesame"),
        "{out}"
    );
    assert!(!dir.path("ssh.key.pub").exists());

    // Missing folders are made, private.
    keygen(&dir, "spa", "new/deeper/ssh.key");
    assert_eq!(mode(&dir.path("new")), 0o700);
    assert_eq!(mode(&dir.path("new/deeper")), 0o700);
    assert_eq!(mode(&dir.path("new/deeper/ssh.key")), 0o600);

    let out = keygen(&dir, "identity", "id");
    assert_eq!(mode(&dir.path("id")), 0o600);
    let identity = keys::load_identity(&dir.path("id")).unwrap();
    let public = keys::load_identity_public(&dir.path("id.pub")).unwrap();
    assert_eq!(identity.public(), public);
    let line = std::fs::read_to_string(dir.path("id.pub")).unwrap();
    assert!(line.starts_with("sesame-identity-pub-v1:"), "{line}");
    assert!(out.contains(line.trim()), "{out}");

    keygen(&dir, "server", "server");
    assert_eq!(mode(&dir.path("server")), 0o600);
    let server = keys::load_server_key(&dir.path("server")).unwrap();
    assert_eq!(
        keys::server_public(&dir.s("server.pub")).unwrap(),
        server.public()
    );

    keygen(&dir, "totp", "vpn.totp");
    assert_eq!(mode(&dir.path("vpn.totp")), 0o600);
    assert_eq!(
        keys::load_totp_secret(&dir.path("vpn.totp"))
            .unwrap()
            .as_bytes()
            .len(),
        32
    );

    // Existing files are kept unless --force; a .pub alone also blocks.
    let before = std::fs::read(dir.path("ssh.key")).unwrap();
    let (ok, _, stderr) = run("sesame", &["keygen", "spa", &dir.s("ssh.key")]);
    assert!(!ok);
    assert!(stderr.contains("already exists"), "{stderr}");
    assert_eq!(std::fs::read(dir.path("ssh.key")).unwrap(), before);
    std::fs::write(dir.path("lonely.pub"), "x").unwrap();
    let (ok, _, stderr) = run("sesame", &["keygen", "identity", &dir.s("lonely")]);
    assert!(!ok);
    assert!(stderr.contains("lonely.pub already exists"), "{stderr}");
    assert!(!dir.path("lonely").exists());
    let (ok, _, stderr) = run("sesame", &["keygen", "spa", "--force", &dir.s("ssh.key")]);
    assert!(ok, "{stderr}");
    assert_ne!(std::fs::read(dir.path("ssh.key")).unwrap(), before);
    assert_eq!(mode(&dir.path("ssh.key")), 0o600);
}

/// A client config with an SPA door of each mode and a TOTP door.
fn spa_config(dir: &Scratch, port: u16, totp_ports: &str, totp_proto: &str) -> String {
    let path = dir.path("client.toml");
    std::fs::write(
        &path,
        format!(
            r#"[server.local]
host = "127.0.0.1"

[server.local.spa.ssh]
port = {port}
key = "{key}"
services = ["tcp/22"]
duration = "1h"

[server.local.spa.pk]
port = {port}
identity = "{id}"
server_public = "{server_pub}"

[server.local.totp.vpn]
secret = "{totp}"
ports = "{totp_ports}"
length = 4
proto = "{totp_proto}"
"#,
            key = dir.s("ssh.key"),
            id = dir.s("id"),
            server_pub = dir.s("server.pub"),
            totp = dir.s("vpn.totp"),
        ),
    )
    .unwrap();
    path.to_str().unwrap().to_string()
}

fn spa_keys(dir: &Scratch) {
    keygen(dir, "spa", "ssh.key");
    keygen(dir, "identity", "id");
    keygen(dir, "server", "server");
    keygen(dir, "totp", "vpn.totp");
}

#[test]
fn spa_dry_run_prints_the_packet_and_sends_nothing() {
    let dir = Scratch::new("spa-dry");
    spa_keys(&dir);
    let (rx, port) = udp_receiver(300);
    let cfg = spa_config(&dir, port, "20000-20099", "tcp");
    let (ok, stdout, stderr) = run(
        "sesame",
        &["knock", "--dry-run", "-c", &cfg, "local", "ssh"],
    );
    assert!(ok, "{stderr}");
    let key = keys::load_spa_key(&dir.path("ssh.key")).unwrap();
    for expected in [
        "nothing sent".to_string(),
        "mode:        symmetric".to_string(),
        format!("key id:      {}", key.key_id()),
        format!("destination: 127.0.0.1:{port}"),
        "services:    tcp/22".to_string(),
        "duration:    3600 s".to_string(),
        format!("packet:      {SYMMETRIC_PACKET_LEN} bytes"),
    ] {
        assert!(stdout.contains(&expected), "{expected}\n{stdout}");
    }
    let hex = stdout
        .lines()
        .find_map(|l| l.strip_prefix("hex:"))
        .unwrap()
        .trim();
    assert_eq!(hex.len(), 2 * SYMMETRIC_PACKET_LEN, "{hex}");
    assert!(hex.starts_with("53534d0100"), "{hex}");

    let (ok, stdout, stderr) = run("sesame", &["knock", "-n", "-c", &cfg, "local", "pk"]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("mode:        public-key"), "{stdout}");
    assert!(
        stdout.contains(&format!("packet:      {PUBLIC_V2_PACKET_LEN} bytes")),
        "{stdout}"
    );
    nothing_arrives(&rx);
}

fn verifier(dir: &Scratch) -> Verifier {
    let server = keys::load_server_key(&dir.path("server")).unwrap();
    let mut v = Verifier::new(60, Some(server));
    let policy = UserPolicy {
        services: vec![Service::tcp(22)],
        max_duration: 600,
        allow_address: false,
        retired_after: None,
    };
    v.add_user(
        "alice",
        Credential::Symmetric(keys::load_spa_key(&dir.path("ssh.key")).unwrap()),
        policy.clone(),
    )
    .unwrap();
    v.add_user(
        "bob",
        Credential::Public(keys::load_identity_public(&dir.path("id.pub")).unwrap()),
        policy,
    )
    .unwrap();
    v
}

#[test]
fn spa_knock_sends_one_datagram_the_verifier_accepts() {
    let dir = Scratch::new("spa-send");
    spa_keys(&dir);
    let (rx, port) = udp_receiver(2000);
    let cfg = spa_config(&dir, port, "20000-20099", "tcp");
    let v = verifier(&dir);
    for (door, len, user, duration) in [
        ("ssh", SYMMETRIC_PACKET_LEN, "alice", 600),
        ("pk", PUBLIC_V2_PACKET_LEN, "bob", 600),
    ] {
        let (ok, stdout, stderr) = run("sesame", &["knock", "-v", "-c", &cfg, "local", door]);
        assert!(ok, "{stderr}");
        assert!(
            stdout.contains(&format!("sent {len}-byte SPA packet")),
            "{stdout}"
        );
        let mut buf = [0u8; 2048];
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(n, len, "{door}");
        let verified = v.verify(&buf[..n], now()).unwrap();
        assert_eq!(&*verified.user, user);
        assert_eq!(verified.services, [Service::tcp(22)]);
        assert_eq!(verified.duration, Duration::from_secs(duration));
        assert_eq!(verified.payload.address, None);
        nothing_arrives(&rx);
        rx.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    }
    // -6 applies: 127.0.0.1 has no IPv6 address, nothing is sent.
    let (ok, _, stderr) = run("sesame", &["knock", "-6", "-c", &cfg, "local", "ssh"]);
    assert!(!ok);
    assert!(stderr.contains("no IPv6 address"), "{stderr}");
    // A key file others can read is refused, naming the fix.
    std::fs::set_permissions(dir.path("ssh.key"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let (ok, _, stderr) = run("sesame", &["knock", "-c", &cfg, "local", "ssh"]);
    assert!(!ok);
    assert!(
        stderr.contains(&format!("chmod 600 {}", dir.s("ssh.key"))),
        "{stderr}"
    );
    nothing_arrives(&rx);
}

/// The TOTP door's sequence now, as the core computes it.
fn expected_sequence(dir: &Scratch, spec: &TotpSpec, at: u64) -> Vec<Knock> {
    let secret = keys::load_totp_secret(&dir.path("vpn.totp")).unwrap();
    spec.current(&secret, at).unwrap()
}

#[test]
fn sequence_prints_the_current_totp_sequence() {
    let dir = Scratch::new("seq");
    spa_keys(&dir);
    let cfg = spa_config(&dir, 9, "20000-29999", "udp");
    let spec = TotpSpec {
        len: 4,
        ports: 20000..=29999,
        proto: Proto::Udp,
        period: 30,
    };
    for _ in 0..3 {
        let before = expected_sequence(&dir, &spec, now());
        let (ok, stdout, stderr) = run("sesame", &["sequence", "-v", "-c", &cfg, "local", "vpn"]);
        assert!(ok, "{stderr}");
        let after = expected_sequence(&dir, &spec, now());
        if before != after {
            continue; // a step boundary passed: try again
        }
        let expected: Vec<String> = before.iter().map(|k| format!("{}:udp", k.port)).collect();
        assert_eq!(stdout, format!("{}\n", expected.join(" ")));
        assert!(stderr.contains("s left"), "{stderr}");
        // The printed line is valid knock syntax.
        for item in stdout.split_whitespace() {
            item.parse::<Knock>().unwrap();
        }
        let (ok, _, stderr) = run("sesame", &["sequence", "-c", &cfg, "local", "ssh"]);
        assert!(!ok);
        assert!(stderr.contains("is an SPA door"), "{stderr}");
        return;
    }
    panic!("three step boundaries in a row");
}

/// Binds UDP sockets on 127.0.0.1 for `count` consecutive ports.
fn udp_range(count: u16) -> (u16, Vec<UdpSocket>) {
    for _ in 0..100 {
        let mut r = [0u8; 2];
        getrandom::fill(&mut r).unwrap();
        let base = 20000 + u16::from_le_bytes(r) % 30000;
        let sockets: Result<Vec<_>, _> = (base..base + count)
            .map(|p| UdpSocket::bind(("127.0.0.1", p)))
            .collect();
        if let Ok(sockets) = sockets {
            for s in &sockets {
                s.set_nonblocking(true).unwrap();
            }
            return (base, sockets);
        }
    }
    panic!("no free port range");
}

#[test]
fn totp_knock_sends_the_current_sequence() {
    let dir = Scratch::new("totp");
    spa_keys(&dir);
    let (base, sockets) = udp_range(8);
    let range = format!("{base}-{}", base + 7);
    let cfg = spa_config(&dir, 9, &range, "udp");
    let spec = TotpSpec {
        len: 4,
        ports: base..=base + 7,
        proto: Proto::Udp,
        period: 30,
    };
    for _ in 0..3 {
        let before = expected_sequence(&dir, &spec, now());
        let (ok, stdout, stderr) = run("sesame", &["knock", "-v", "-c", &cfg, "local", "vpn"]);
        assert!(ok, "{stderr}");
        let after = expected_sequence(&dir, &spec, now());
        std::thread::sleep(Duration::from_millis(200));
        let mut hit = Vec::new();
        let mut buf = [0u8; 16];
        for (i, s) in sockets.iter().enumerate() {
            while let Ok(n) = s.recv(&mut buf) {
                assert_eq!(n, 1);
                hit.push(base + i as u16);
            }
        }
        if before != after {
            continue;
        }
        let mut expected: Vec<u16> = before.iter().map(|k| k.port).collect();
        for port in &expected {
            assert!(
                stdout.contains(&format!("hitting udp 127.0.0.1:{port}")),
                "{stdout}"
            );
        }
        expected.sort_unstable();
        assert_eq!(hit, expected, "{stdout}");
        // --dry-run prints the step and the ports, and sends nothing.
        let (ok, stdout, stderr) = run("sesame", &["knock", "-n", "-c", &cfg, "local", "vpn"]);
        assert!(ok, "{stderr}");
        assert!(stdout.contains("(TOTP): step "), "{stdout}");
        assert!(stdout.contains("sequence:"), "{stdout}");
        std::thread::sleep(Duration::from_millis(200));
        assert!(sockets.iter().all(|s| s.recv(&mut buf).is_err()));
        return;
    }
    panic!("three step boundaries in a row");
}

// ---- fwknop server configuration (issue 5) ----

#[test]
fn import_fwknop_prints_toml_sesamed_accepts() {
    let dir = Scratch::new("fwknop-import");
    std::fs::create_dir_all(dir.path("access.d")).unwrap();
    std::fs::write(
        dir.path("access.d/admin.conf"),
        "SOURCE 192.0.2.0/24, 2001:db8::/32\nOPEN_PORTS tcp/22, tcp/443\nKEY admin passphrase\nFW_ACCESS_TIMEOUT 60\n",
    )
    .unwrap();
    let access = dir.path("access.conf");
    std::fs::write(
        &access,
        format!(
            "# access.conf\nSOURCE ANY\nOPEN_PORTS tcp/22\nKEY_BASE64 c2VjcmV0LWtleS0xMjM0NQ==\n\
             HMAC_KEY_BASE64 aG1hYy1rZXktZm9yLXRlc3RzLTAxMjM0NTY3ODk=\nHMAC_DIGEST_TYPE SHA512\n\
             %include_folder {}\n",
            dir.s("access.d")
        ),
    )
    .unwrap();
    let fwknopd = dir.path("fwknopd.conf");
    std::fs::write(
        &fwknopd,
        "PCAP_INTF eth0;\nPCAP_FILTER udp port 40001;\nMAX_SPA_PACKET_AGE 90;\nFLUSH_IPT_AT_EXIT Y;\n",
    )
    .unwrap();
    let (ok, stdout, stderr) = run(
        "sesame",
        &[
            "import",
            "fwknop",
            &dir.s("access.conf"),
            &dir.s("fwknopd.conf"),
        ],
    );
    assert!(ok, "{stderr}");
    for needle in [
        "[door.fwknop]",
        "fwknop_port = 40001",
        "fwknop_max_age = \"90s\"",
        "protect = [\"tcp/22\", \"tcp/443\"]",
        "interfaces = [\"eth0\"]",
        "[[door.fwknop.stanzas]]",
        "source = [\"192.0.2.0/24\", \"2001:db8::/32\"]",
        "hmac_digest = \"SHA512\"",
        "chmod 0600",
        "FLUSH_IPT_AT_EXIT",
    ] {
        assert!(stdout.contains(needle), "{needle} in\n{stdout}");
    }

    // The output is a config sesamed accepts.
    let out = dir.path("sesame.toml");
    std::fs::write(&out, &stdout).unwrap();
    let (ok, stdout, stderr) = run("sesamed", &["--check-config", out.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("OK, 1 door(s): fwknop"), "{stdout}");

    // sesamed runs from access.conf directly, and --check-config checks it.
    let (ok, stdout, stderr) = run(
        "sesamed",
        &[
            "--fwknop-access",
            &dir.s("access.conf"),
            "--fwknopd-conf",
            &dir.s("fwknopd.conf"),
            "--check-config",
        ],
    );
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("access.conf: OK, 1 door(s): fwknop"),
        "{stdout}"
    );
    let (ok, _, stderr) = run(
        "sesamed",
        &[
            "--fwknopd-conf",
            &dir.s("fwknopd.conf"),
            "--check-config",
            "x",
        ],
    );
    assert!(!ok);
    assert!(stderr.contains("--fwknop-access"), "{stderr}");
}

#[test]
fn import_fwknop_refuses_a_broken_access_conf_with_file_and_line() {
    let dir = Scratch::new("fwknop-broken");
    let access = dir.path("access.conf");
    for (text, line, needle) in [
        (
            "SOURCE ANY\nOPEN_PORTS tcp/22\nKEY_BASE64 !!secretpart!!\n",
            3,
            "KEY_BASE64: not valid base64",
        ),
        (
            "SOURCE ANY\nOPEN_PORTS tcp/22\nKEY k\nGPG_DECRYPT_ID ABCD\n",
            4,
            "GPG mode is out of scope",
        ),
        (
            "SOURCE ANY\nOPEN_PORTS tcp/22\nKEY k\nMYSTERY 1\n",
            4,
            "MYSTERY: unknown access.conf keyword",
        ),
        ("SOURCE ANY\nKEY k\n", 1, "no OPEN_PORTS"),
    ] {
        std::fs::write(&access, text).unwrap();
        let (ok, stdout, stderr) = run("sesame", &["import", "fwknop", &dir.s("access.conf")]);
        assert!(!ok, "{text}");
        assert!(stdout.is_empty(), "{stdout}");
        assert!(
            stderr.contains(&format!("{}:{line}: ", access.display())),
            "{text}: {stderr}"
        );
        assert!(stderr.contains(needle), "{text}: {stderr}");
        assert!(!stderr.contains("secretpart"), "{stderr}");
        let (ok, _, stderr2) = run(
            "sesamed",
            &["--fwknop-access", &dir.s("access.conf"), "--check-config"],
        );
        assert!(!ok);
        assert!(
            stderr2.contains(&format!("{}:{line}: ", access.display())),
            "{stderr2}"
        );
    }
    let (ok, _, stderr) = run("sesame", &["import", "fwknop", &dir.s("missing.conf")]);
    assert!(!ok);
    assert!(
        stderr.contains("missing.conf: cannot read access.conf"),
        "{stderr}"
    );
}
