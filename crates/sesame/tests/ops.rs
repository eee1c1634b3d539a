//! Operations against a live sesamed in throw-away network namespaces: the
//! control socket (status, grants, revoke, open), reload (SIGHUP and
//! `sesame reload`) and the metrics endpoint. Results are checked as real
//! TCP reachability. They need root; under `CI=true` nothing skips.

mod support;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use sesame::testbed::{Side, Testbed};
use support::*;

const SSH: u16 = 2222;
const WEB: u16 = 2223;
const SSH_SEQ: [&str; 3] = ["7000", "8000:udp", "9000"];
const WEB_SEQ: [&str; 2] = ["7100", "7200"];

fn ssh_door() -> String {
    format!(
        "[door.ssh]\nsequence = [\"7000\", \"8000:udp\", \"9000\"]\nseq_timeout = \"5s\"\nopen_for = \"60s\"\nprotect = [\"tcp/{SSH}\"]\n"
    )
}

fn web_door() -> String {
    format!(
        "[door.web]\nsequence = [\"7100\", \"7200\"]\nseq_timeout = \"5s\"\nopen_for = \"60s\"\nprotect = [\"tcp/{WEB}\"]\n"
    )
}

/// A private directory for the control socket and the state.
struct Dirs {
    socket: PathBuf,
    state: PathBuf,
}

fn dirs(bed: &Testbed) -> Dirs {
    let root = std::env::temp_dir().join(format!("{}-ops", bed.server));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o700)).unwrap();
    Dirs {
        socket: root.join("run").join("control.sock"),
        state: root.join("state"),
    }
}

fn daemon_args(d: &Dirs) -> Vec<String> {
    vec![
        "--control-socket".into(),
        d.socket.display().to_string(),
        "--state-dir".into(),
        d.state.display().to_string(),
    ]
}

fn start(bed: &mut Testbed, config: &str, d: &Dirs, extra: &[&str]) -> Daemon {
    let mut args = daemon_args(d);
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    start_daemon(bed, config, &args)
}

/// The config file start_daemon wrote (rewritten for reloads).
fn config_path(bed: &Testbed) -> PathBuf {
    std::env::temp_dir()
        .join(format!("{}-cfg", bed.server))
        .join("sesame.toml")
}

/// Runs `sesame ARGS --socket PATH` on the host: (success, stdout, stderr).
fn ctl(socket: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(bin("sesame"))
        .args(args)
        .arg("--socket")
        .arg(socket)
        .output()
        .expect("run sesame");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ctl_ok(socket: &Path, args: &[&str]) -> String {
    let (ok, out, err) = ctl(socket, args);
    assert!(ok, "sesame {args:?} failed: {err}\n{out}");
    out
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[test]
fn control_status_grants_open_revoke() {
    let mut bed = testbed_or_skip!("ctl");
    let _service = Service::start(&bed, SSH).expect("echo service");
    let d = dirs(&bed);
    let daemon = start(&mut bed, &ssh_door(), &d, &[]);
    let server = Testbed::addr(Side::Server, false);
    let client = Testbed::addr(Side::Client, false);
    let client_s = client.to_string();

    // The socket is 0600 (no control_group) and answers status.
    let mode = std::fs::metadata(&d.socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "socket mode {mode:o}");
    let status = json(&ctl_ok(&d.socket, &["status", "--json"]));
    assert_eq!(status["doors"][0]["name"], "ssh");
    assert_eq!(status["doors"][0]["kind"], "knock");
    assert_eq!(status["grants"].as_array().unwrap().len(), 0);
    let human = ctl_ok(&d.socket, &["status"]);
    assert!(
        human.contains("ssh") && human.contains("tcp/2222"),
        "{human}"
    );

    // A knock in progress is counted.
    knock(&bed, server, &SSH_SEQ[..1]);
    let end = Instant::now() + Duration::from_secs(2);
    loop {
        let s = json(&ctl_ok(&d.socket, &["status", "--json"]));
        if s["in_progress"] == 1 && s["doors"][0]["in_progress"] == 1 {
            break;
        }
        assert!(Instant::now() < end, "knock in progress not shown: {s}");
        std::thread::sleep(Duration::from_millis(20));
    }

    // Manual open: reachable, listed, logged as manual.
    assert!(!can_connect(&bed, server, SSH));
    let out = ctl_ok(
        &d.socket,
        &["open", &client_s, "--door", "ssh", "--for", "10m"],
    );
    assert!(out.contains("opened door ssh"), "{out}");
    assert!(can_connect(&bed, server, SSH), "closed after sesame open");
    daemon.log.expect(
        &["event=\"manual_open\"", &format!("source={client}")],
        Duration::from_secs(1),
        "expected log line",
    );
    let grants = json(&ctl_ok(&d.socket, &["grants", "--json"]));
    let g = &grants.as_array().unwrap()[0];
    assert_eq!(g["addr"], client_s.as_str());
    assert_eq!(g["door"], "ssh");
    let left = g["secs_left"].as_u64().unwrap();
    assert!((590..=600).contains(&left), "secs_left {left}");
    let table = ctl_ok(&d.socket, &["grants"]);
    assert!(
        table.contains(&client_s) && table.contains("ssh"),
        "{table}"
    );

    // Revoke: closed at once, in the kernel.
    let out = ctl_ok(&d.socket, &["revoke", &client_s, "--door", "ssh"]);
    assert!(out.contains("revoked"), "{out}");
    assert!(
        wait_connect(&bed, server, SSH, false, Duration::from_secs(1)),
        "still reachable after revoke"
    );
    daemon.log.expect(
        &["event=\"revoke\"", &format!("source={client}")],
        Duration::from_secs(1),
        "expected log line",
    );
    let grants = json(&ctl_ok(&d.socket, &["grants", "--json"]));
    assert!(grants.as_array().unwrap().is_empty(), "{grants}");

    // A knocked grant is revoked the same way (all doors of the address).
    knock(&bed, server, &SSH_SEQ);
    assert_opens(&bed, server, SSH);
    ctl_ok(&d.socket, &["revoke", &client_s]);
    assert_closes(&bed, server, SSH, Duration::from_secs(1));

    // Clear errors.
    let (ok, _, err) = ctl(&d.socket, &["revoke", &client_s]);
    assert!(!ok && err.contains("no active grant"), "{err}");
    let (ok, _, err) = ctl(
        &d.socket,
        &["open", &client_s, "--door", "nope", "--for", "1m"],
    );
    assert!(!ok && err.contains("no door named \"nope\""), "{err}");
    let missing = d.socket.with_file_name("missing.sock");
    let (ok, _, err) = ctl(&missing, &["status"]);
    assert!(!ok && err.contains("is sesamed running?"), "{err}");
    let s = json(&ctl_ok(&d.socket, &["status", "--json"]));
    assert_eq!(s["counters"]["manual_opens"], 1);
    assert_eq!(s["counters"]["revoked"], 2);
    stop_daemon(&mut bed, &daemon, nix::sys::signal::Signal::SIGTERM);
    assert!(!d.socket.exists(), "socket left behind");
}

#[test]
fn control_socket_in_a_world_writable_directory_is_refused() {
    let bed = testbed_or_skip!("ctlperm");
    let d = dirs(&bed);
    let dir = d.socket.parent().unwrap();
    std::fs::create_dir_all(dir).unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let path = config_path(&bed);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, ssh_door()).unwrap();
    let out = bed
        .command(Side::Server, bin("sesamed").to_str().unwrap())
        .arg("--config")
        .arg(&path)
        .args(daemon_args(&d))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started anyway: {err}");
    assert!(err.contains("writable by others"), "{err}");
}

#[test]
fn reload_adds_removes_refuses_and_keeps_grants() {
    let mut bed = testbed_or_skip!("reload");
    let _ssh = Service::start(&bed, SSH).expect("echo service");
    let _web = Service::start(&bed, WEB).expect("echo service");
    let d = dirs(&bed);
    let daemon = start(&mut bed, &ssh_door(), &d, &[]);
    let server = Testbed::addr(Side::Server, false);
    let path = config_path(&bed);

    knock(&bed, server, &SSH_SEQ);
    assert_opens(&bed, server, SSH);
    // A knock of the unchanged door in progress across the reload.
    knock(&bed, server, &SSH_SEQ[..2]);

    // Reload adding a door: `sesame reload`.
    std::fs::write(&path, format!("{}\n{}", ssh_door(), web_door())).unwrap();
    let out = ctl_ok(&d.socket, &["reload"]);
    assert!(
        out.contains("config reloaded") && out.contains("web"),
        "{out}"
    );
    assert!(out.contains("1 grant(s) kept"), "{out}");
    assert!(out.contains("1 knock(s) in progress kept"), "{out}");
    assert!(
        can_connect(&bed, server, SSH),
        "ssh grant lost by the reload"
    );
    assert!(
        !can_connect(&bed, server, WEB),
        "the added door's port is not protected"
    );
    knock(&bed, server, &WEB_SEQ);
    assert!(
        wait_connect(&bed, server, WEB, true, Duration::from_secs(2)),
        "the added door does not open:\n{}",
        daemon.log.dump()
    );

    // A broken config: refused with its line, the old config keeps running.
    std::fs::write(
        &path,
        format!(
            "{}\n[door.web]\nsequence = [\"7100\", \"banana\"]\n",
            ssh_door()
        ),
    )
    .unwrap();
    let (ok, _, err) = ctl(&d.socket, &["reload"]);
    assert!(!ok, "a broken config was accepted");
    let name = path.display().to_string();
    assert!(
        err.contains(&format!("{name}:8:")),
        "error does not name line 8: {err}"
    );
    daemon.log.expect(
        &["event=\"reload_failed\"", ":8:"],
        Duration::from_secs(1),
        "expected log line",
    );
    let client = Testbed::addr(Side::Client, false).to_string();
    ctl_ok(&d.socket, &["revoke", &client, "--door", "web"]);
    assert_closes(&bed, server, WEB, Duration::from_secs(1));
    knock(&bed, server, &WEB_SEQ);
    assert!(
        wait_connect(&bed, server, WEB, true, Duration::from_secs(2)),
        "the old config's door stopped working after a refused reload"
    );

    // SIGHUP removing the door: its grant is revoked, the other kept. The
    // port stays protected by another door, so the revocation is what
    // closes it.
    let web2 = web_door()
        .replace("[door.web]", "[door.web2]")
        .replace("\"7100\", \"7200\"", "\"7300\", \"7400\"");
    std::fs::write(&path, format!("{}\n{web2}", ssh_door())).unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.pid as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    daemon.log.expect(
        &["event=\"reloaded\"", "1 revoked"],
        Duration::from_secs(3),
        "SIGHUP reload not logged",
    );
    assert!(
        wait_connect(&bed, server, WEB, false, Duration::from_secs(1)),
        "the removed door's grant is still reachable"
    );
    assert!(
        can_connect(&bed, server, SSH),
        "ssh grant lost by the second reload"
    );
    let grants = json(&ctl_ok(&d.socket, &["grants", "--json"]));
    let grants = grants.as_array().unwrap();
    assert_eq!(grants.len(), 1, "{grants:?}");
    assert_eq!(grants[0]["door"], "ssh");
    let s = json(&ctl_ok(&d.socket, &["status", "--json"]));
    assert_eq!(s["counters"]["reloads"], 2);
}

fn scrape(bed: &Testbed, addr: SocketAddr) -> String {
    bed.run_in(Side::Client, move || {
        let mut s =
            TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect metrics");
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: sesame\r\n\r\n")
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    })
    .unwrap()
}

fn metric(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(name_and_labels)?
            .strip_prefix(' ')?
            .parse()
            .ok()
    })
}

#[test]
fn metrics_scrape_matches_the_knocks_sent() {
    let mut bed = testbed_or_skip!("metrics");
    let _service = Service::start(&bed, SSH).expect("echo service");
    let d = dirs(&bed);
    let server = Testbed::addr(Side::Server, false);
    let addr = SocketAddr::new(server, 9751);
    let listen = addr.to_string();
    let _daemon = start(&mut bed, &ssh_door(), &d, &["--metrics", &listen]);
    let empty = scrape(&bed, addr);
    assert!(empty.starts_with("HTTP/1.1 200 OK"), "{empty}");
    assert!(empty.contains("sesame_active_grants 0"), "{empty}");
    // Every per-door series exists from the start, at zero; build and
    // uptime are there too.
    for series in [
        r#"sesame_knocks_total{door="ssh",result="open"} 0"#,
        r#"sesame_grant_events_total{door="ssh",event="open"} 0"#,
        r#"sesame_grant_events_total{door="ssh",event="revoke"} 0"#,
        r#"sesame_open_latency_seconds_count{door="ssh"} 0"#,
        r#"sesame_build_info{version=""#,
        "sesame_uptime_seconds ",
    ] {
        assert!(empty.contains(series), "no {series} in\n{empty}");
    }

    // One wrong order (7000 stage, 9000 reset), then the right knock twice.
    knock(&bed, server, &["7000", "9000", "8000:udp"]);
    knock(&bed, server, &SSH_SEQ);
    assert_opens(&bed, server, SSH);
    knock(&bed, server, &SSH_SEQ);
    let end = Instant::now() + Duration::from_secs(3);
    let text = loop {
        let text = scrape(&bed, addr);
        if metric(&text, r#"sesame_knocks_total{door="ssh",result="open"}"#) == Some(2.0) {
            break text;
        }
        assert!(Instant::now() < end, "2 opens never counted:\n{text}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let get = |m: &str| metric(&text, m).unwrap_or_else(|| panic!("no {m} in\n{text}"));
    for (name, value) in [
        (r#"sesame_knocks_total{door="ssh",result="stage"}"#, 5.0),
        (r#"sesame_knocks_total{door="ssh",result="reset"}"#, 1.0),
        (r#"sesame_grant_events_total{door="ssh",event="open"}"#, 1.0),
        (
            r#"sesame_grant_events_total{door="ssh",event="refresh"}"#,
            1.0,
        ),
        ("sesame_active_grants", 1.0),
    ] {
        assert_eq!(get(name), value, "{name}");
    }
    // One opening (the refresh is not one), well under the last bucket.
    assert_eq!(get(r#"sesame_open_latency_seconds_count{door="ssh"}"#), 1.0);
    assert_eq!(
        get(r#"sesame_open_latency_seconds_bucket{le="0.1",door="ssh"}"#),
        1.0
    );
    assert_eq!(get("sesame_nflog_packets_total"), 9.0);
    assert_eq!(get("sesame_nflog_overruns_total"), 0.0);
    assert_eq!(get("sesame_tracker_evictions_total"), 0.0);
    assert!(text.contains("# TYPE sesame_knocks counter"), "{text}");
    let _: IpAddr = server;
}
