//! sesamed running from a knockd.conf (`--knockd-config`): shell commands,
//! the daemon's own door table and stop timer, one-time sequences over IPv6,
//! interface filtering and the knockd bugs Sesame fixes. Real daemon, real
//! kernel, in throw-away namespaces (root; under `CI=true` never skipped).

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use sesame::testbed::{Side, Testbed};
use support::*;

/// Starts sesamed on `conf` (knockd syntax) and returns it.
fn start_knockd_conf(bed: &mut Testbed, dir: &Path, conf: &str) -> Daemon {
    let path = dir.join("knockd.conf");
    std::fs::write(&path, conf).unwrap();
    start_daemon(bed, "", &["--knockd-config", path.to_str().unwrap()])
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Waits (bounded) until `path` contains `needle` `count` times.
fn wait_lines(path: &Path, needle: &str, count: usize, limit: Duration) -> bool {
    let end = Instant::now() + limit;
    loop {
        if read(path).matches(needle).count() >= count {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigterm_runs_the_stop_command_of_an_open_door() {
    let mut bed = testbed_or_skip!("kd-term");
    let dir = bed.scratch();
    let log = dir.join("cmd.log");
    let conf = format!(
        "[options]\n\tLogFile = {dir}/knockd.log\n\n[door]\n\tsequence = 7000,8000\n\tseq_timeout = 5\n\
         \tstart_command = echo start %IP% >> {log}\n\tcmd_timeout = 600\n\tstop_command = echo stop %IP% >> {log}\n",
        dir = dir.display(),
        log = log.display()
    );
    let daemon = start_knockd_conf(&mut bed, &dir, &conf);
    let server = Testbed::addr(Side::Server, false);
    let client = Testbed::addr(Side::Client, false);
    knock(&bed, server, &["7000", "8000"]);
    assert!(
        wait_lines(&log, &format!("start {client}"), 1, Duration::from_secs(3)),
        "start command did not run:\n{}",
        daemon.log.dump()
    );
    assert!(!read(&log).contains("stop"), "stop ran before cmd_timeout");
    stop_daemon(&mut bed, &daemon, Signal::SIGTERM);
    assert!(
        read(&log).contains(&format!("stop {client}")),
        "SIGTERM left the door's stop command unrun:\n{}",
        read(&log)
    );
    assert!(
        read(&dir.join("knockd.log")).contains("event=\"open\""),
        "LogFile received no lines"
    );
}

#[test]
fn repeated_knock_extends_instead_of_rerunning_start() {
    let mut bed = testbed_or_skip!("kd-repeat");
    let dir = bed.scratch();
    let log = dir.join("cmd.log");
    let conf = format!(
        "[door]\nsequence = 7000:udp\nstart_command = echo start %IP% >> {log}\n\
         cmd_timeout = 2\nstop_command = echo stop %IP% >> {log}\n",
        log = log.display()
    );
    let daemon = start_knockd_conf(&mut bed, &dir, &conf);
    let server = Testbed::addr(Side::Server, false);
    // A single-port UDP door hit by a burst (knockd #86 runs the command
    // for every packet) and re-knocked while open.
    for _ in 0..20 {
        knock(&bed, server, &["7000:udp"]);
    }
    let first = Instant::now();
    assert!(wait_lines(&log, "start", 1, Duration::from_secs(2)));
    std::thread::sleep(Duration::from_millis(1200));
    knock(&bed, server, &["7000:udp"]);
    daemon.log.expect(
        &["event=\"refresh\""],
        Duration::from_secs(2),
        "re-knock not logged as a refresh",
    );
    assert!(wait_lines(&log, "stop", 1, Duration::from_secs(5)));
    assert!(
        first.elapsed() >= Duration::from_millis(3000),
        "stop did not wait for the extended close time: {:?}",
        first.elapsed()
    );
    std::thread::sleep(Duration::from_millis(300));
    let text = read(&log);
    assert_eq!(text.matches("start").count(), 1, "{text}");
    assert_eq!(text.matches("stop").count(), 1, "{text}");
}

#[test]
fn one_time_sequences_work_over_ipv6_and_compare_the_whole_sequence() {
    let mut bed = testbed_or_skip!("kd-otp6");
    let dir = bed.scratch();
    let log = dir.join("cmd.log");
    let otp = dir.join("otp");
    // The second sequence shares its first half with the first one: knockd
    // compares only half a sequence, Sesame the whole.
    std::fs::write(&otp, " 7001,7002,7003,7004\n 7001,7002,7005,7006\n").unwrap();
    let conf = format!(
        "[door]\none_time_sequences = {otp}\nseq_timeout = 5\ncmd_timeout = 1\n\
         start_command = echo v4 %IP% >> {log}\nstart_command_6 = echo v6 %IP% >> {log}\n",
        otp = otp.display(),
        log = log.display()
    );
    let daemon = start_knockd_conf(&mut bed, &dir, &conf);
    let server = Testbed::addr(Side::Server, true);
    let client = Testbed::addr(Side::Client, true);
    knock(&bed, server, &["7001", "7002", "7003", "7004"]);
    assert!(
        wait_lines(&log, &format!("v6 {client}"), 1, Duration::from_secs(3)),
        "first one-time sequence did not open over IPv6:\n{}",
        daemon.log.dump()
    );
    assert!(
        wait_lines(&otp, "#", 1, Duration::from_secs(2)),
        "used line not marked"
    );
    assert_eq!(read(&otp), "#7001,7002,7003,7004\n 7001,7002,7005,7006\n");
    // Replaying the used sequence (same first half as the next) fails.
    knock(&bed, server, &["7001", "7002", "7003", "7004"]);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        read(&log).matches("v6").count(),
        1,
        "replay opened the door"
    );
    // Let the door close, so the next open runs the start command again.
    daemon.log.expect(
        &["event=\"close\""],
        Duration::from_secs(3),
        "expected log line",
    );
    // The new sequence works over IPv6 (knockd only regenerates its v4 filter).
    knock(&bed, server, &["7001", "7002", "7005", "7006"]);
    assert!(
        wait_lines(&log, "v6", 2, Duration::from_secs(3)),
        "second one-time sequence did not open over IPv6:\n{}",
        daemon.log.dump()
    );
    assert!(
        !read(&log).contains("v4"),
        "the IPv4 command ran for an IPv6 knocker"
    );
    daemon.log.expect(
        &["event=\"one_time_exhausted\""],
        Duration::from_secs(2),
        "expected log line",
    );
}

#[test]
fn interface_filter_and_interface_flapping() {
    let mut bed = testbed_or_skip!("kd-iface");
    let dir = bed.scratch();
    let log = dir.join("cmd.log");
    let conf = format!(
        "[options]\nInterface = sesame-none0\n[door]\nsequence = 7000,8000\nstart_command = echo start %IP% >> {log}\n",
        log = log.display()
    );
    let server = Testbed::addr(Side::Server, false);
    {
        let daemon = start_knockd_conf(&mut bed, &dir, &conf);
        knock(&bed, server, &["7000", "8000"]);
        std::thread::sleep(Duration::from_millis(500));
        assert!(
            read(&log).is_empty(),
            "a knock on an unlisted interface opened the door"
        );
        stop_daemon(&mut bed, &daemon, Signal::SIGTERM);
    }
    // Listed interface, taken down and up again while the daemon runs: the
    // daemon survives (knockd exits, #69) and knocks work afterwards.
    let daemon = start_daemon(
        &mut bed,
        "",
        &[
            "--knockd-config",
            dir.join("knockd.conf").to_str().unwrap(),
            "--interface",
            "sesame0",
        ],
    );
    for state in ["down", "up"] {
        let ok = bed
            .command(Side::Server, "ip")
            .args(["link", "set", "sesame0", state])
            .status()
            .unwrap()
            .success();
        assert!(ok, "ip link set sesame0 {state}");
    }
    // Wait (bounded) for the veth to carry traffic again.
    let mut up = false;
    for _ in 0..200 {
        let out = bed
            .command(Side::Server, "ip")
            .args(["link", "show", "sesame0"])
            .output()
            .unwrap();
        if String::from_utf8_lossy(&out.stdout).contains("LOWER_UP") {
            up = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(up, "sesame0 did not come back up");
    std::thread::sleep(Duration::from_millis(300));
    knock(&bed, server, &["7000", "8000"]);
    assert!(
        wait_lines(&log, "start", 1, Duration::from_secs(3)),
        "knock after the interface flapped did not open:\n{}",
        daemon.log.dump()
    );
}
