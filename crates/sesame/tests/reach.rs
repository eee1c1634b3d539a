//! Knock, confirm, retry (issue 16): `sesame proxy` and `sesame exec`
//! against a real sesamed, through a link that loses 30% of its packets
//! each way (an nftables `numgen random` drop where each namespace
//! receives: the kernel here has no netem). Real daemon, real kernel, throw-away
//! namespaces (root; under `CI=true` never skipped).

mod support;

use std::process::Command;
use std::time::Duration;

use sesame::testbed::{Side, Testbed};
use support::*;

const PORT: u16 = 2222;

fn sesame(bed: &Testbed, args: &[&str]) -> Command {
    let mut cmd = bed.command(Side::Client, bin("sesame").to_str().unwrap());
    cmd.args(args);
    cmd
}

#[test]
fn proxy_carries_sessions_through_a_link_losing_thirty_percent() {
    let mut bed = testbed_or_skip!("rproxy");
    let _service = Service::start(&bed, PORT).expect("echo service");
    let (client, daemon) = spa_door_and_client(&mut bed, false);
    let server = Testbed::addr(Side::Server, false);
    assert!(!can_connect(&bed, server, PORT), "closed before the knock");
    lossy_link(&bed, 30);
    let mut retried = 0;
    for i in 0..5 {
        let line = format!("session {i}\n");
        let proxy = proxy_command(&bed, &client, 10, &[]);
        let out = run_with_input(proxy, line.as_bytes(), Duration::from_secs(90));
        assert_success(&out, "sesame proxy");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            line,
            "the echo service's answer, through the proxy"
        );
        retried += usize::from(String::from_utf8_lossy(&out.stderr).contains("answered after"));
        // The grant would let the next session in without a knock: revoke
        // it, so that every session starts from a closed door.
        let out = Command::new(bin("sesame"))
            .args(["revoke", &Testbed::addr(Side::Client, false).to_string()])
            .args(["--socket", daemon.socket.to_str().unwrap()])
            .output()
            .unwrap();
        assert_success(&out, "sesame revoke");
    }
    eprintln!("{retried} of 5 sessions needed more than one knock");
    assert!(
        daemon.log.count("spa_accepted") >= 5,
        "one accepted packet per session at least:\n{}",
        daemon.log.dump()
    );
}

#[test]
fn proxy_gives_up_on_a_door_that_does_not_open_and_says_why() {
    let mut bed = testbed_or_skip!("rfail");
    let _service = Service::start(&bed, PORT).expect("echo service");
    let (client, daemon) = spa_door_and_client(&mut bed, true);
    let out = run_with_input(
        proxy_command(&bed, &client, 3, &["--connect-timeout", "0.3"]),
        b"",
        Duration::from_secs(30),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a wrong key must not connect");
    assert!(
        stderr.contains("did not answer after 3 knock(s)"),
        "{stderr}"
    );
    assert!(
        out.stdout.is_empty(),
        "nothing on stdout: it is ssh's stream"
    );
    assert_eq!(daemon.log.count("spa_accepted"), 0, "{}", daemon.log.dump());
    assert!(!can_connect(&bed, Testbed::addr(Side::Server, false), PORT));
}

#[test]
fn exec_runs_the_program_only_once_the_door_is_open() {
    let mut bed = testbed_or_skip!("rexec");
    let _service = Service::start(&bed, PORT).expect("echo service");
    let (client, _daemon) = spa_door_and_client(&mut bed, false);
    let server = Testbed::addr(Side::Server, false);
    // The program checks the port itself: it only succeeds if it is open.
    let probe = format!(
        "exec 3<>/dev/tcp/{server}/{PORT} && echo through >&3 && read -r reply <&3 && echo \"$reply\""
    );
    let out = sesame(
        &bed,
        &[
            "exec",
            "srv",
            "--port",
            "2222",
            "--config",
            client.to_str().unwrap(),
            "--",
            "bash",
            "-c",
            &probe,
        ],
    )
    .output()
    .unwrap();
    assert_success(&out, "sesame exec");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "through\n");
}
