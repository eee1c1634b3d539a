//! End-to-end tests: real sesamed, real kernel, real TCP connects, in
//! throw-away network namespaces. They need root; under `CI=true` they fail
//! rather than skip when root or namespaces are unavailable.

mod support;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use sesame::testbed::{Side, Testbed};
use support::*;

const PORT: u16 = 2222;
const SEQ: [&str; 3] = ["7000", "8000:udp", "9000"];
const WRONG: [&str; 3] = ["7000", "9000", "8000:udp"];

fn config(open_for_secs: u64) -> String {
    format!(
        "[door.ssh]\nsequence = [\"7000\", \"8000:udp\", \"9000\"]\nseq_timeout = \"5s\"\nopen_for = \"{open_for_secs}s\"\nprotect = [\"tcp/{PORT}\"]\n"
    )
}

/// closed before → stays closed after a wrong order → open after the knock →
/// the grant is a kernel set element for this client → closed after open_for.
fn knock_lifecycle(v6: bool) {
    let mut bed = testbed_or_skip!(if v6 { "life6" } else { "life4" });
    let _service = Service::start(&bed, PORT).expect("echo service");
    let daemon = start_daemon(&mut bed, &config(3), &[]);
    let server = Testbed::addr(Side::Server, v6);
    let client = Testbed::addr(Side::Client, v6);

    assert!(!can_connect(&bed, server, PORT), "open before any knock");

    knock(&bed, server, &WRONG);
    daemon.log.expect(
        &["event=\"reset\"", &format!("source={client}")],
        Duration::from_secs(2),
        "wrong order was not logged as a reset",
    );
    assert!(!can_connect(&bed, server, PORT), "open after a wrong order");

    let knocked = Instant::now();
    knock(&bed, server, &SEQ);
    assert!(
        wait_connect(&bed, server, PORT, true, Duration::from_secs(2)),
        "still closed after the right knock:\n{}",
        daemon.log.dump()
    );
    let set = nft(
        &bed,
        &[
            "list",
            "set",
            "inet",
            "sesame",
            if v6 { "grants6" } else { "grants4" },
        ],
    );
    assert!(
        set.contains(&format!("{client} . tcp . {PORT}")),
        "no grant element for {client}:\n{set}"
    );
    daemon.log.expect(
        &["event=\"open\"", "door=ssh"],
        Duration::from_secs(1),
        "expected log line",
    );

    // Closed again once open_for (3 s) has passed, without any daemon action.
    assert!(
        wait_connect(&bed, server, PORT, false, Duration::from_secs(6)),
        "still open long after open_for"
    );
    let elapsed = knocked.elapsed();
    assert!(
        elapsed >= Duration::from_millis(2900),
        "closed too early: {elapsed:?}"
    );
    daemon.log.expect(
        &["event=\"close\"", "door=ssh"],
        Duration::from_secs(2),
        "expected log line",
    );
}

#[test]
fn knock_lifecycle_ipv4() {
    knock_lifecycle(false);
}

#[test]
fn knock_lifecycle_ipv6() {
    knock_lifecycle(true);
}

#[test]
fn grant_is_for_the_knocking_address_only() {
    let mut bed = testbed_or_skip!("only");
    let _service = Service::start(&bed, PORT).expect("echo service");
    let _daemon = start_daemon(&mut bed, &config(10), &[]);
    let server = Testbed::addr(Side::Server, false);
    knock(&bed, server, &SEQ);
    assert_opens(&bed, server, PORT);
    // The same client over IPv6 is another address: still closed.
    assert!(!can_connect(&bed, Testbed::addr(Side::Server, true), PORT));
    // A second address of the client host (198.18.0.3) is not granted either.
    let other = bed
        .run_in(Side::Client, move || {
            let sock =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            sock.bind(&SocketAddr::new(sesame::testbed::CLIENT2_V4.into(), 0).into())
                .unwrap();
            sock.connect_timeout(
                &SocketAddr::new(server, PORT).into(),
                Duration::from_millis(300),
            )
            .is_ok()
        })
        .unwrap();
    assert!(!other, "a different source address got through");
}

#[test]
fn cli_knock_binary_opens_over_ipv6() {
    let mut bed = testbed_or_skip!("cli6");
    let _service = Service::start(&bed, PORT).expect("echo service");
    let _daemon = start_daemon(&mut bed, &config(10), &[]);
    let server = Testbed::addr(Side::Server, true);
    let out = bed
        .command(Side::Client, bin("sesame").to_str().unwrap())
        .args(["knock", "-6", "-v", "-d", "10", &server.to_string()])
        .args(SEQ)
        .output()
        .unwrap();
    assert_success(&out, "sesame knock -6");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().count(), 3, "-v prints each hit: {stdout}");
    assert_opens(&bed, server, PORT);
}

#[test]
fn established_connection_survives_expiry() {
    let mut bed = testbed_or_skip!("estab");
    let _service = Service::start(&bed, PORT).expect("echo service");
    let _daemon = start_daemon(&mut bed, &config(2), &[]);
    let server = Testbed::addr(Side::Server, false);
    knock(&bed, server, &SEQ);
    assert_opens(&bed, server, PORT);
    let survived = bed
        .run_in(Side::Client, move || {
            let mut s = TcpStream::connect_timeout(
                &SocketAddr::new(server, PORT),
                Duration::from_millis(500),
            )
            .expect("connect while open");
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            // Outlive the grant, then talk again on the same connection.
            std::thread::sleep(Duration::from_millis(3500));
            let mut buf = [0u8; 5];
            s.write_all(b"still").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"still"
        })
        .unwrap();
    assert!(
        survived,
        "the established session broke when the door closed"
    );
    assert!(
        !can_connect(&bed, server, PORT),
        "new connections must be refused after expiry"
    );
}

#[test]
fn kill_9_with_door_open_still_closes_on_time() {
    let mut bed = testbed_or_skip!("kill9");
    let _service = Service::start(&bed, PORT).expect("echo service");
    let daemon = start_daemon(&mut bed, &config(3), &[]);
    let server = Testbed::addr(Side::Server, false);
    let knocked = Instant::now();
    knock(&bed, server, &SEQ);
    assert_opens(&bed, server, PORT);
    stop_daemon(&mut bed, &daemon, Signal::SIGKILL);
    // The kernel owns the timeout: the door is still open, then closes alone.
    assert!(
        can_connect(&bed, server, PORT),
        "the grant vanished with the daemon"
    );
    assert_closes(&bed, server, PORT, Duration::from_secs(6));
    assert!(knocked.elapsed() >= Duration::from_millis(2900));
    // Fail closed: with no daemon at all, the port stays dropped.
    std::thread::sleep(Duration::from_millis(500));
    assert!(!can_connect(&bed, server, PORT));
    assert!(nft(&bed, &["list", "tables"]).contains("table inet sesame"));
}

#[test]
fn restart_keeps_one_table_and_active_grants_then_remove_deletes_it() {
    let mut bed = testbed_or_skip!("restart");
    let _service = Service::start(&bed, PORT).expect("echo service");
    let first = start_daemon(&mut bed, &config(30), &[]);
    let ruleset_before = nft(&bed, &["list", "table", "inet", "sesame"]);
    let server = Testbed::addr(Side::Server, false);
    knock(&bed, server, &SEQ);
    assert_opens(&bed, server, PORT);
    stop_daemon(&mut bed, &first, Signal::SIGTERM);
    first.log.expect(
        &["event=\"shutdown\""],
        Duration::from_secs(1),
        "expected log line",
    );
    // Clean shutdown: the table stays, so protected ports stay protected.
    assert!(nft(&bed, &["list", "tables"]).contains("table inet sesame"));

    let second = start_daemon(&mut bed, &config(30), &[]);
    assert!(
        second.log.count("updated nftables table") == 1,
        "{}",
        second.log.dump()
    );
    let tables = nft(&bed, &["list", "tables"]);
    assert_eq!(tables.matches("table inet sesame").count(), 1, "{tables}");
    let ruleset_after = nft(&bed, &["list", "table", "inet", "sesame"]);
    let rules = |s: &str| {
        s.lines()
            .filter(|l| l.contains("drop") || l.contains("accept") || l.contains("log group"))
            .count()
    };
    assert_eq!(
        rules(&ruleset_before),
        rules(&ruleset_after),
        "rules duplicated or lost:\n{ruleset_after}"
    );
    assert!(
        can_connect(&bed, server, PORT),
        "the active grant was lost by the restart"
    );
    stop_daemon(&mut bed, &second, Signal::SIGTERM);

    let out = bed
        .command(Side::Server, bin("sesamed").to_str().unwrap())
        .args(["--remove", "--config", "/nonexistent"])
        .output()
        .unwrap();
    assert_success(&out, "sesamed --remove --config /nonexistent");
    assert!(!nft(&bed, &["list", "tables"]).contains("sesame"));
}

#[test]
fn logs_carry_source_door_and_millisecond_timestamps_text_and_json() {
    let mut bed = testbed_or_skip!("logs");
    let daemon = start_daemon(&mut bed, &config(5), &["--log-format", "json"]);
    let server = Testbed::addr(Side::Server, false);
    let client = Testbed::addr(Side::Client, false);
    knock(&bed, server, &SEQ[..2]);
    let line = daemon
        .log
        .wait_for(&["\"event\":\"stage\""], Duration::from_secs(2))
        .unwrap_or_else(|| panic!("no stage line:\n{}", daemon.log.dump()));
    let json: serde_json::Value = serde_json::from_str(&line).expect("JSON log line");
    assert_eq!(json["source"], client.to_string());
    assert_eq!(json["door"], "ssh");
    let ts = json["timestamp"].as_str().unwrap();
    // e.g. 2026-11-24T18:30:00.123456Z: at least millisecond resolution.
    let frac = ts.split('.').nth(1).expect("fractional seconds");
    assert!(frac.trim_end_matches('Z').len() >= 3, "{ts}");
    // The knock is abandoned: a timeout line appears on time, not lazily.
    let timeout = daemon
        .log
        .wait_for(&["\"event\":\"timeout\""], Duration::from_secs(7))
        .unwrap_or_else(|| panic!("no timeout line:\n{}", daemon.log.dump()));
    assert!(timeout.contains(&client.to_string()));
}

#[test]
fn commands_run_once_per_open_and_close_runs_on_sigterm() {
    let mut bed = testbed_or_skip!("cmds");
    let dir = std::env::temp_dir().join(format!("{}-out", bed.server));
    std::fs::create_dir_all(&dir).unwrap();
    let opened = dir.join("opened");
    let closed = dir.join("closed");
    let cfg = format!(
        "{}on_open = [\"/bin/sh\", \"-c\", \"echo %DOOR% %IP% %PROTO% %PORT% >> {}\"]\non_close = [\"/bin/sh\", \"-c\", \"echo %IP% >> {}\"]\n",
        config(30),
        opened.display(),
        closed.display()
    );
    let daemon = start_daemon(&mut bed, &cfg, &[]);
    let server = Testbed::addr(Side::Server, false);
    let client: IpAddr = Testbed::addr(Side::Client, false);
    knock(&bed, server, &SEQ);
    daemon.log.expect(
        &["event=\"command_done\""],
        Duration::from_secs(3),
        "expected log line",
    );
    knock(&bed, server, &SEQ);
    daemon.log.expect(
        &["event=\"refresh\""],
        Duration::from_secs(3),
        "expected log line",
    );
    std::thread::sleep(Duration::from_millis(200));
    let text = std::fs::read_to_string(&opened).unwrap();
    assert_eq!(
        text,
        format!("ssh {client} tcp {PORT}\n"),
        "on_open must run once"
    );
    assert!(!closed.exists());
    stop_daemon(&mut bed, &daemon, Signal::SIGTERM);
    let text = std::fs::read_to_string(&closed).expect("on_close ran at shutdown");
    assert_eq!(text, format!("{client}\n"));
}

/// `sesame demo | head`: the reader goes away after a few lines; the demo
/// must stop and remove its namespaces, its daemon and its files, not die
/// on a write error and leak them.
#[test]
fn the_demo_cleans_up_when_its_output_is_closed() {
    if !nix::unistd::geteuid().is_root() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but not root"
        );
        eprintln!("skipped: needs root");
        return;
    }
    use std::io::{BufRead, BufReader};
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sesame"))
        .arg("demo")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run sesame demo");
    let pid = child.id();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut seen = String::new();
    for _ in 0..3 {
        out.read_line(&mut seen).unwrap();
    }
    assert!(seen.contains("Sesame demo"), "{seen}");
    drop(out);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the demo did not stop within 30 s of its output closing"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "{stderr}");
    assert!(stderr.contains("output closed"), "{status}: {stderr}");
    let namespaces = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap();
    let namespaces = String::from_utf8_lossy(&namespaces.stdout);
    let prefix = format!("sesame-demo-{pid}-");
    assert!(
        !namespaces.contains(&prefix),
        "namespaces left behind: {namespaces}"
    );
    let config_dir = std::env::temp_dir().join(format!("sesame-demo-{pid}"));
    assert!(!config_dir.exists(), "{} left behind", config_dir.display());
    let daemons = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .filter(|c| String::from_utf8_lossy(c).contains(&format!("sesame-demo-{pid}/")))
        .count();
    assert_eq!(daemons, 0, "a sesamed of the demo still runs");
}
