//! knockd compliance suite: every scenario is written once and run against
//! Debian's real `knockd` and against `sesamed --knockd-config FILE`, with the
//! same knockd.conf, observing only what is visible from outside: can the
//! protected port be connected to (a real TCP connect from the client
//! namespace), and what did the door commands write.
//!
//! Each scenario yields two tests, `<scenario>::knockd` and
//! `<scenario>::sesame`. Run as root:
//! `CI=true cargo test -p sesame --test compliance` (add `-- ::knockd` or
//! `-- ::sesame` for one side). Under `CI=true` nothing skips: no root, or a
//! missing `knockd`/`knock`/`nft`/`hping3`, is a failure. Without CI the
//! scenarios print `skipped: …` instead. `COMPLIANCE_VERBOSE=1` (with
//! `--nocapture`) prints each daemon's output and cmd.log at the end.
//!
//! Where knockd and Sesame differ on purpose (knockd.md §1.6, Sesame's
//! README), a scenario asserts each side's documented behaviour and says so.

#[path = "../support/mod.rs"]
mod support;

mod harness;

use std::time::{Duration, Instant};

use harness::{Client, Harness, Impl, Probe, Proto};

/// Generates `mod $name { fn knockd(); fn sesame(); }` running `$name(Impl)`.
macro_rules! scenarios {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn knockd() {
                super::$name(super::Impl::Knockd);
            }
            #[test]
            fn sesame() {
                super::$name(super::Impl::Sesame);
            }
        }
    )*};
}

scenarios!(
    tcp_sequence,
    tcp_sequence_sesame_client,
    udp_sequence,
    mixed_sequence,
    tcp_flags,
    seq_timeout_expiry,
    wrong_order,
    cmd_timeout_stop_command,
    ipv6_commands,
    one_time_sequences,
    debian_default_config,
    duplicate_knock,
    interleaved_sources,
    reset_by_first_port,
    other_door_port_between,
    repeat_while_open,
    single_port_udp,
    one_time_sequences_ipv6,
    knock_port_answer,
    sigterm_pending_stop,
    target_directive,
);

const SEC: Duration = Duration::from_secs(1);

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// The client's IPv4 address as the commands see it.
const CLIENT4: &str = "198.18.0.2";
/// The client's IPv6 address as the commands see it.
const CLIENT6: &str = "fd53:5e5a::2";

fn start_line(ip: &str) -> String {
    format!("start {ip}")
}

fn stop_line(ip: &str) -> String {
    format!("stop {ip}")
}

/// Asserts the client (v4) is let in within 3 s and the start command ran
/// `n` times in total.
fn assert_opens(h: &Harness, n: usize, what: &str) {
    assert!(
        h.opens(false, secs(3.0)),
        "{what}: the port did not open{}",
        h.diag()
    );
    assert!(
        h.wait_cmd(&start_line(CLIENT4), n, secs(2.0)),
        "{what}: cmd.log lacks {n}× \"start {CLIENT4}\"{}",
        h.diag()
    );
}

/// Asserts the client (v4) stays out for a second and the start command ran
/// exactly `n` times in total.
fn assert_stays_closed(h: &Harness, n: usize, what: &str) {
    assert!(
        h.stays_closed(false, SEC),
        "{what}: the port opened{}",
        h.diag()
    );
    assert_eq!(
        h.cmd_count(&start_line(CLIENT4)),
        n,
        "{what}: unexpected start commands{}",
        h.diag()
    );
}

// ---------------------------------------------------------------------------
// 1. TCP sequence

const TCP_CONF: &str = "\
# compliance: a plain TCP door
[tcpDoor]
\tSequence = 7000,8000,9000
\tSeq_Timeout = 5
\tStart_Command = @START4@
";

fn tcp_sequence_with(imp: Impl, tag: &str, client: Client) {
    let Some(h) = Harness::start(imp, tag, TCP_CONF, &[]) else {
        return;
    };
    assert!(!h.is_open(false), "open before any knock{}", h.diag());
    h.knock(client, &["7000", "8000", "9000"]);
    assert_opens(&h, 1, "TCP sequence");
    // The command was given the knocker's address, for this address only.
    assert_eq!(h.cmd_log(), format!("start {CLIENT4}\n"), "{}", h.diag());
    assert!(!h.is_open(true), "the client's IPv6 address got in too");
    assert!(
        !h.can_connect_from(Harness::client2()),
        "another address got in too"
    );
}

/// Debian's `knock` (and, on the Sesame side, the knockd client against
/// sesamed).
fn tcp_sequence(imp: Impl) {
    tcp_sequence_with(imp, "tcp", Client::Knock);
}

/// `sesame knock` (on the knockd side, the Sesame client against knockd).
fn tcp_sequence_sesame_client(imp: Impl) {
    tcp_sequence_with(imp, "tcps", Client::Sesame);
}

// ---------------------------------------------------------------------------
// 2. UDP and mixed sequences

const UDP_CONF: &str = "\
[options]
\tInterface = sesame0

[udpDoor]
\tsequence = 7000:udp,8000:udp,9000:udp
\tseq_timeout = 5
\tcommand = @START4@
";

fn udp_sequence(imp: Impl) {
    let Some(h) = Harness::start(imp, "udp", UDP_CONF, &[]) else {
        return;
    };
    assert!(!h.is_open(false), "open before any knock{}", h.diag());
    // TCP knocks on the same ports are not this door's knocks.
    h.knock(Client::Knock, &["7000", "8000", "9000"]);
    assert_stays_closed(&h, 0, "TCP knocks on a UDP door");
    // `-u`: every port without a protocol is UDP.
    h.knock_with(Client::Sesame, false, &["-u"], &["7000", "8000", "9000"]);
    assert_opens(&h, 1, "UDP sequence (sesame knock -u)");
}

const MIXED_CONF: &str = "\
[options]
\tLogFile = @DIR@/knockd.log

[mixed]
\tsequence = 7000,8000:udp,9000
\tseq_timeout = 5
\tstart_command = @START4@
";

fn mixed_sequence(imp: Impl) {
    let Some(h) = Harness::start(imp, "mix", MIXED_CONF, &[]) else {
        return;
    };
    assert!(!h.is_open(false), "open before any knock{}", h.diag());
    // Right ports, wrong protocol in the middle: the UDP stage is TCP here.
    h.knock(Client::Knock, &["7000", "8000", "9000"]);
    assert_stays_closed(&h, 0, "TCP where the sequence wants UDP");
    h.knock(Client::Knock, &["7000", "8000:udp", "9000"]);
    assert_opens(&h, 1, "mixed TCP/UDP sequence");
    // LogFile: both daemons record the opening with the door and the source
    // (in their own formats).
    assert!(
        harness::poll(secs(2.0), Duration::from_millis(20), || h
            .read("knockd.log")
            .lines()
            .any(|l| l.contains("mixed") && l.contains(CLIENT4))),
        "LogFile lacks the opening: {:?}{}",
        h.read("knockd.log"),
        h.diag()
    );
}

// ---------------------------------------------------------------------------
// 3. TCPFlags

const FLAGS_CONF: &str = "\
[flags]
\tSequence = 7000,8000,9000
\tSeq_Timeout = 5
\tTCPFlags = syn,!ack
\tStart_Command = @START4@
";

fn tcp_flags(imp: Impl) {
    let Some(h) = Harness::start(imp, "flags", FLAGS_CONF, &[]) else {
        return;
    };
    // The whole sequence as SYN+ACK packets: never a knock.
    for port in ["7000", "8000", "9000"] {
        h.hping3(&["-q", "-c", "1", "-S", "-A", "-p", port]);
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_stays_closed(&h, 0, "SYN+ACK knocks with TCPFlags = syn,!ack");

    // SYN 7000, then a SYN+ACK to 9000 — a wrong in-sequence port that would
    // reset the attempt if it counted — then SYN 8000, SYN 9000. knockd.md
    // §1.2: a packet whose flags don't match is ignored, it does not reset.
    h.knock(Client::Knock, &["7000"]);
    std::thread::sleep(Duration::from_millis(100));
    h.hping3(&["-q", "-c", "1", "-S", "-A", "-p", "9000"]);
    std::thread::sleep(Duration::from_millis(100));
    h.knock(Client::Knock, &["8000", "9000"]);
    assert_opens(&h, 1, "SYN knocks with a wrong-flags packet in between");
}

// ---------------------------------------------------------------------------
// 4. Seq_Timeout

const TIMEOUT_CONF: &str = "\
[slow]
\tSequence = 7000,8000,9000
\tSeq_Timeout = 2
\tStart_Command = @START4@
";

fn seq_timeout_expiry(imp: Impl) {
    let Some(h) = Harness::start(imp, "seqto", TIMEOUT_CONF, &[]) else {
        return;
    };
    h.knock(Client::Sesame, &["7000", "8000"]);
    // Past the 2 s window (knockd checks it with 1 s granularity).
    std::thread::sleep(secs(3.5));
    h.knock(Client::Sesame, &["9000"]);
    assert_stays_closed(&h, 0, "last knock after Seq_Timeout");
    // The door still works for a knock that fits the window.
    h.knock(Client::Sesame, &["7000", "8000", "9000"]);
    assert_opens(&h, 1, "a timely knock after an expired one");
}

// ---------------------------------------------------------------------------
// 5. Wrong order

fn wrong_order(imp: Impl) {
    let Some(h) = Harness::start(imp, "order", MIXED_CONF, &[]) else {
        return;
    };
    h.knock(Client::Knock, &["7000", "9000", "8000:udp"]);
    assert_stays_closed(&h, 0, "wrong order");
    // 9000 reset the attempt; the rest of the sequence no longer opens.
    h.knock(Client::Knock, &["7000", "9000", "8000:udp", "9000"]);
    assert_stays_closed(&h, 0, "the rest of the sequence after a reset");
    h.knock(Client::Sesame, &["7000", "8000:udp", "9000"]);
    assert_opens(&h, 1, "the right order after wrong ones");
}

// ---------------------------------------------------------------------------
// 6. Cmd_Timeout and Stop_Command

const CMD_TIMEOUT_CONF: &str = "\
[timed]
\tSequence = 7000,8000,9000
\tSeq_Timeout = 5
\tStart_Command = @START4@
\tCmd_Timeout = 2
\tStop_Command = @STOP4@
";

fn cmd_timeout_stop_command(imp: Impl) {
    let Some(h) = Harness::start(imp, "cmdto", CMD_TIMEOUT_CONF, &[]) else {
        return;
    };
    h.knock(Client::Knock, &["7000", "8000", "9000"]);
    let knocked = Instant::now();
    assert_opens(&h, 1, "Cmd_Timeout door");
    assert_eq!(h.cmd_count(&stop_line(CLIENT4)), 0, "stopped at once");
    assert!(
        h.wait_cmd(&stop_line(CLIENT4), 1, secs(6.0)),
        "no stop command within 6 s of a 2 s Cmd_Timeout{}",
        h.diag()
    );
    let elapsed = knocked.elapsed();
    assert!(
        elapsed >= secs(1.5),
        "stop command ran {elapsed:?} after the knock (Cmd_Timeout = 2){}",
        h.diag()
    );
    assert!(
        h.closes(false, secs(2.0)),
        "still open after the stop command{}",
        h.diag()
    );
    assert_eq!(
        h.cmd_log(),
        format!("start {CLIENT4}\nstop {CLIENT4}\n"),
        "{}",
        h.diag()
    );
}

// ---------------------------------------------------------------------------
// 7. IPv6: Start_Command_6 / Stop_Command_6

const V6_CONF: &str = "\
[dual]
\tSequence = 7000,8000:udp,9000
\tSeq_Timeout = 5
\tStart_Command = @START4@
\tStart_Command_6 = @START6@
\tCmd_Timeout = 2
\tStop_Command = @STOP4@
\tStop_Command_6 = @STOP6@
";

fn ipv6_commands(imp: Impl) {
    let Some(h) = Harness::start(imp, "v6", V6_CONF, &[]) else {
        return;
    };
    let start6 = format!("start6 {CLIENT6}");
    let stop6 = format!("stop6 {CLIENT6}");
    assert!(!h.is_open(true), "open before any knock{}", h.diag());
    for (round, client) in [(1, Client::Knock), (2, Client::Sesame)] {
        h.knock_with(client, true, &[], &["7000", "8000:udp", "9000"]);
        assert!(
            h.opens(true, secs(3.0)),
            "{client:?} -6 knock #{round}: IPv6 did not open{}",
            h.diag()
        );
        assert!(
            h.wait_cmd(&start6, round, secs(2.0)),
            "{client:?} -6 knock #{round}: no \"{start6}\"{}",
            h.diag()
        );
        assert!(!h.is_open(false), "IPv4 opened by an IPv6 knock");
        assert!(
            h.wait_cmd(&stop6, round, secs(6.0)),
            "{client:?} -6 knock #{round}: no \"{stop6}\" after Cmd_Timeout{}",
            h.diag()
        );
        assert!(
            h.closes(true, secs(2.0)),
            "IPv6 still open after Stop_Command_6{}",
            h.diag()
        );
    }
    // The v4 commands were never used for the v6 knocker.
    assert_eq!(
        h.cmd_log(),
        format!("{start6}\n{stop6}\n{start6}\n{stop6}\n"),
        "{}",
        h.diag()
    );
}

// ---------------------------------------------------------------------------
// 8. One_Time_Sequences

const OTS_CONF: &str = "\
[once]
\tOne_Time_Sequences = @DIR@/ots
\tSeq_Timeout = 5
\tStart_Command = @START4@
\tCmd_Timeout = 1
\tStop_Command = @STOP4@
";

/// Leading space on each line, as knockd's man page recommends: the used
/// line's first character is overwritten with `#`. The first ports differ so
/// knockd's half-sequence comparison (knockd.md §1.6: it compares `seqcount`
/// bytes of `unsigned short`s) cannot confuse the lines.
const OTS_FILE: &str = " 7001,7002,7003\n 7101,7102,7103\n 7201,7202,7203\n";

fn one_time_sequences(imp: Impl) {
    let Some(h) = Harness::start(imp, "ots", OTS_CONF, &[("ots", OTS_FILE)]) else {
        return;
    };
    let mark = |n: usize| {
        let want: String = OTS_FILE
            .lines()
            .enumerate()
            .map(|(i, l)| {
                if i < n {
                    format!("#{}\n", &l[1..])
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        want
    };
    assert!(!h.is_open(false), "open before any knock{}", h.diag());
    h.knock(Client::Sesame, &["7001", "7002", "7003"]);
    assert_opens(&h, 1, "first one-time sequence");
    assert!(
        harness::poll(secs(2.0), Duration::from_millis(20), || h.read("ots")
            == mark(1)),
        "the used line is not marked: {:?}{}",
        h.read("ots"),
        h.diag()
    );
    assert!(
        h.wait_cmd(&stop_line(CLIENT4), 1, secs(4.0)) && h.closes(false, secs(2.0)),
        "not closed after Cmd_Timeout{}",
        h.diag()
    );
    // The used sequence is spent.
    h.knock(Client::Knock, &["7001", "7002", "7003"]);
    assert_stays_closed(&h, 1, "a used one-time sequence");
    // The next line works, and is marked in turn.
    h.knock(Client::Knock, &["7101", "7102", "7103"]);
    assert_opens(&h, 2, "second one-time sequence");
    assert!(
        harness::poll(secs(2.0), Duration::from_millis(20), || h.read("ots")
            == mark(2)),
        "the second used line is not marked: {:?}{}",
        h.read("ots"),
        h.diag()
    );
}

// ---------------------------------------------------------------------------
// 9. Debian's default /etc/knockd.conf, unchanged

/// Debian knockd 0.8-2's conffile /etc/knockd.conf, byte for byte. Its
/// commands call /sbin/iptables and a knock_add helper that need not exist:
/// the scenario checks the daemon accepts the file, recognises the knock and
/// attempts the command. `UseSyslog` must not stop the daemon from starting
/// when no syslog daemon listens on /dev/log (containers, early boot): knockd
/// uses syslog(3), which then drops the lines silently.
const DEBIAN_CONF: &str = "[options]
\tUseSyslog

[openSSH]
\tsequence    = 7000,8000,9000
\tseq_timeout = 5
\tcommand     = /sbin/iptables -A INPUT -s %IP% -p tcp --dport 22 -j ACCEPT
\ttcpflags    = syn

[closeSSH]
\tsequence    = 9000,8000,7000
\tseq_timeout = 5
\tcommand     = /sbin/iptables -D INPUT -s %IP% -p tcp --dport 22 -j ACCEPT
\ttcpflags    = syn

[openHTTPS]
\tsequence    = 12345,54321,24680,13579
\tseq_timeout = 5
\tcommand     = /usr/local/sbin/knock_add -i -c INPUT -p tcp -d 443 -f %IP%
\ttcpflags    = syn

";

fn debian_default_config(imp: Impl) {
    let Some(h) = Harness::start(imp, "deb", DEBIAN_CONF, &[]) else {
        return;
    };
    let limit = secs(3.0);
    for (door, ports, verb) in [
        ("openSSH", ["7000", "8000", "9000"], "-A"),
        ("closeSSH", ["9000", "8000", "7000"], "-D"),
    ] {
        h.knock(Client::Knock, &ports);
        let cmd = format!("/sbin/iptables {verb} INPUT -s {CLIENT4} -p tcp --dport 22 -j ACCEPT");
        match imp {
            Impl::Knockd => {
                // knockd -v: "<ip>: <door>: OPEN SESAME", then
                // "<door>: running command: <cmd>".
                assert!(
                    h.log
                        .wait_for(&[CLIENT4, &format!("{door}: OPEN SESAME")], limit)
                        .is_some(),
                    "{door}: no OPEN SESAME{}",
                    h.diag()
                );
                assert!(
                    h.log
                        .wait_for(&[&format!("{door}: running command"), &cmd], limit)
                        .is_some(),
                    "{door}: command not attempted{}",
                    h.diag()
                );
            }
            Impl::Sesame => {
                assert!(
                    h.log
                        .wait_for(
                            &[
                                "event=\"open\"",
                                &format!("door={door}"),
                                &format!("source={CLIENT4}")
                            ],
                            limit
                        )
                        .is_some(),
                    "{door}: no event=\"open\"{}",
                    h.diag()
                );
                // sesamed logs the start of the shell and its exit status,
                // tagged with the door and source (not the command text).
                assert!(
                    h.log
                        .wait_for(
                            &[
                                "event=\"command\"",
                                &format!("door={door}"),
                                &format!("source={CLIENT4}")
                            ],
                            limit
                        )
                        .is_some(),
                    "{door}: command ({cmd}) not attempted{}",
                    h.diag()
                );
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // Nothing touched the gate.
    assert!(!h.is_open(false));
}

// ---------------------------------------------------------------------------
// 10. Documented differences (knockd.md §1.6)

/// `knock host 7000 7000 8000 9000`: knockd treats the repeated hit as a
/// wrong port and resets (knockd.md §1.6 "Duplicate packets reset the
/// knock"); Sesame ignores a repeat of the knock just matched (README,
/// "Matching is per (source, door)") and opens.
fn duplicate_knock(imp: Impl) {
    let Some(h) = Harness::start(imp, "dup", TCP_CONF, &[]) else {
        return;
    };
    h.knock(Client::Knock, &["7000", "7000", "8000", "9000"]);
    match imp {
        Impl::Knockd => {
            assert_stays_closed(&h, 0, "knockd: a duplicated knock resets");
            h.knock(Client::Knock, &["7000", "8000", "9000"]);
            assert_opens(&h, 1, "knockd: a clean knock after the reset");
        }
        Impl::Sesame => assert_opens(&h, 1, "Sesame: a duplicated knock is ignored"),
    }
}

/// Another source (198.18.0.3) knocking a wrong order in between A's knocks
/// disturbs neither side: state is per (source, door) in both (knockd.md
/// §1.6 "one entry per (source IP, door)"). Only A gets in.
fn interleaved_sources(imp: Impl) {
    let Some(h) = Harness::start(imp, "inter", MIXED_CONF, &[]) else {
        return;
    };
    let a = Harness::client(false);
    let b = Harness::client2();
    let steps = [
        (a, 7000, Proto::Tcp),
        (b, 7000, Proto::Tcp),
        (b, 9000, Proto::Tcp), // B: wrong port, B resets
        (a, 8000, Proto::Udp),
        (b, 8000, Proto::Udp),
        (b, 7000, Proto::Tcp),
        (a, 9000, Proto::Tcp),
    ];
    for (src, port, proto) in steps {
        h.hit(src, port, proto);
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_opens(&h, 1, "A's knock with B's knocks in between");
    assert!(
        h.stays_closed_from(b, SEC),
        "B got in with a wrong order{}",
        h.diag()
    );
    assert_eq!(h.cmd_log(), format!("start {CLIENT4}\n"), "{}", h.diag());
}

/// 7000 8000:udp 7000 8000:udp 9000: the second 7000 is a wrong port at
/// stage 2, so both reset. knockd does not reconsider the packet that caused
/// the reset as a new first knock (knockd.md §1.6 step 3), so the rest never
/// opens; Sesame restarts an attempt when the resetting knock is the door's
/// first knock (sesame-core tracker, `out_of_order_knock_resets_and_first_
/// port_restarts`), so it opens.
fn reset_by_first_port(imp: Impl) {
    let Some(h) = Harness::start(imp, "restart", MIXED_CONF, &[]) else {
        return;
    };
    h.knock(
        Client::Knock,
        &["7000", "8000:udp", "7000", "8000:udp", "9000"],
    );
    match imp {
        Impl::Knockd => assert_stays_closed(&h, 0, "knockd: no restart on the resetting knock"),
        Impl::Sesame => assert_opens(&h, 1, "Sesame: the resetting first knock restarts"),
    }
}

/// Two doors; a hit on door B's port in the middle of a knock on door A.
/// knockd keeps one attempt per source and resets it on any sequence port of
/// any door (knockd.md §1.6 step 3, §2.2 item 6, #25); Sesame tracks progress
/// per (source, door), so a port outside A's sequence never disturbs A
/// (README "Coming from knockd").
const TWO_DOORS_CONF: &str = "\
[doorA]
\tSequence = 7000,8000,9000
\tSeq_Timeout = 5
\tStart_Command = @START4@

[doorB]
\tSequence = 6000,6001
\tSeq_Timeout = 5
\tStart_Command = echo \"B %IP%\" >> @DIR@/cmd.log
";

fn other_door_port_between(imp: Impl) {
    let Some(h) = Harness::start(imp, "other", TWO_DOORS_CONF, &[]) else {
        return;
    };
    h.knock(Client::Knock, &["7000", "6000", "8000", "9000"]);
    match imp {
        Impl::Knockd => {
            assert_stays_closed(&h, 0, "knockd: another door's port resets");
            h.knock(Client::Knock, &["7000", "8000", "9000"]);
            assert_opens(&h, 1, "knockd: a clean knock");
        }
        Impl::Sesame => assert_opens(&h, 1, "Sesame: another door's port is not A's business"),
    }
    assert!(!h.cmd_log().contains("B "), "door B opened{}", h.diag());
}

const REPEAT_CONF: &str = "\
[again]
\tSequence = 7000,8000,9000
\tSeq_Timeout = 5
\tStart_Command = @START4@
\tCmd_Timeout = 3
\tStop_Command = @STOP4@
";

/// The same client knocks again 1.5 s into a 3 s Cmd_Timeout. knockd runs the
/// start command again and schedules a second stop (no door state, knockd.md
/// §1.3, §2.2 item 9, #14/#70): the first stop closes the port 3 s after the
/// first knock. Sesame extends the open door instead: one start, one stop,
/// 3 s after the second knock (README "Coming from knockd").
fn repeat_while_open(imp: Impl) {
    let Some(h) = Harness::start(imp, "again", REPEAT_CONF, &[]) else {
        return;
    };
    h.knock(Client::Knock, &["7000", "8000", "9000"]);
    let t0 = Instant::now();
    assert_opens(&h, 1, "first knock");
    std::thread::sleep(secs(1.5).saturating_sub(t0.elapsed()));
    h.knock(Client::Knock, &["7000", "8000", "9000"]);
    std::thread::sleep(secs(3.7).saturating_sub(t0.elapsed()));
    let open_at_3_7 = h.is_open(false);
    match imp {
        Impl::Knockd => {
            assert!(
                !open_at_3_7,
                "knockd: open 3.7 s after the first knock{}",
                h.diag()
            );
            assert!(
                h.wait_cmd(&stop_line(CLIENT4), 2, secs(4.0)),
                "knockd: expected two stops{}",
                h.diag()
            );
            assert_eq!(h.cmd_count(&start_line(CLIENT4)), 2, "{}", h.diag());
        }
        Impl::Sesame => {
            assert!(
                open_at_3_7,
                "Sesame: closed 3.7 s after the first knock, though the second knock (1.5 s) extended it{}",
                h.diag()
            );
            assert!(
                h.wait_cmd(&stop_line(CLIENT4), 1, secs(4.0)),
                "Sesame: no stop command{}",
                h.diag()
            );
            assert!(h.closes(false, secs(2.0)), "Sesame: never closed");
            let closed = t0.elapsed();
            assert!(
                closed >= secs(4.2),
                "Sesame: closed {closed:?} after the first knock{}",
                h.diag()
            );
            std::thread::sleep(secs(0.5));
            assert_eq!(
                h.cmd_log(),
                format!("start {CLIENT4}\nstop {CLIENT4}\n"),
                "{}",
                h.diag()
            );
        }
    }
}

const ONE_PORT_CONF: &str = "\
[game]
\tSequence = 5555:udp
\tSeq_Timeout = 5
\tStart_Command = @START4@
";

/// A single-port UDP door hit by three datagrams: knockd runs the start
/// command for every packet (knockd.md §2.2 item 7, #86); Sesame opens once
/// and extends (README "Coming from knockd").
fn single_port_udp(imp: Impl) {
    let Some(h) = Harness::start(imp, "oneport", ONE_PORT_CONF, &[]) else {
        return;
    };
    h.knock(Client::Sesame, &["5555:udp", "5555:udp", "5555:udp"]);
    let n = match imp {
        Impl::Knockd => 3,
        Impl::Sesame => 1,
    };
    assert_opens(&h, n, "single-port UDP door");
    std::thread::sleep(secs(0.5));
    assert_eq!(
        h.cmd_count(&start_line(CLIENT4)),
        n,
        "start commands{}",
        h.diag()
    );
}

const OTS6_CONF: &str = "\
[once6]
\tOne_Time_Sequences = @DIR@/ots
\tSeq_Timeout = 5
\tStart_Command = @START4@
\tStart_Command_6 = @START6@
\tCmd_Timeout = 1
\tStop_Command = @STOP4@
\tStop_Command_6 = @STOP6@
";

/// One-time sequences over IPv6. The first line works on both. After it,
/// knockd regenerates only its IPv4 capture filter (knockd.md §1.6, "The
/// IPv6 filter string is not freed or regenerated"): the second line knocked
/// over IPv6 never reaches it, while over IPv4 it works. Sesame accepts the
/// next line over IPv6 ("One-time sequences work over IPv6").
fn one_time_sequences_ipv6(imp: Impl) {
    let Some(h) = Harness::start(imp, "ots6", OTS6_CONF, &[("ots", OTS_FILE)]) else {
        return;
    };
    let start6 = format!("start6 {CLIENT6}");
    h.knock_with(Client::Knock, true, &[], &["7001", "7002", "7003"]);
    assert!(
        h.opens(true, secs(3.0)) && h.wait_cmd(&start6, 1, secs(2.0)),
        "first one-time line over IPv6{}",
        h.diag()
    );
    assert!(
        h.wait_cmd(&format!("stop6 {CLIENT6}"), 1, secs(4.0)) && h.closes(true, secs(2.0)),
        "not closed after Cmd_Timeout{}",
        h.diag()
    );
    h.knock_with(Client::Knock, true, &[], &["7101", "7102", "7103"]);
    match imp {
        Impl::Knockd => {
            assert!(
                h.stays_closed(true, SEC),
                "knockd: the second line opened over IPv6 (stale v6 filter fixed?){}",
                h.diag()
            );
            assert_eq!(h.cmd_count(&start6), 1, "{}", h.diag());
            // The door did move on: the second line works over IPv4.
            h.knock(Client::Knock, &["7101", "7102", "7103"]);
            assert_opens(&h, 1, "knockd: the second line over IPv4");
        }
        Impl::Sesame => {
            assert!(
                h.opens(true, secs(3.0)) && h.wait_cmd(&start6, 2, secs(2.0)),
                "Sesame: the second line over IPv6{}",
                h.diag()
            );
        }
    }
}

/// What a client sees when it connects to a knock port. knockd leaves knock
/// packets to the kernel, which answers a closed port with a RST; Sesame
/// drops them, so a knock port never answers (README "Coming from knockd").
fn knock_port_answer(imp: Impl) {
    let Some(h) = Harness::start(imp, "answer", TCP_CONF, &[]) else {
        return;
    };
    let seen = h.probe(8000, secs(1.0));
    let want = match imp {
        Impl::Knockd => Probe::Refused,
        Impl::Sesame => Probe::Silent,
    };
    assert_eq!(seen, want, "a connect to knock port 8000{}", h.diag());
}

const SIGTERM_CONF: &str = "\
[term]
\tSequence = 7000,8000,9000
\tSeq_Timeout = 5
\tStart_Command = @START4@
\tCmd_Timeout = 4
\tStop_Command = @STOP4@
";

/// SIGTERM while a door is open. knockd's stop command lives in a sleeping
/// child (knockd.md §1.3), which outlives the daemon and runs the stop
/// command Cmd_Timeout after the knock. Sesame runs every pending stop
/// command before it exits (README "Coming from knockd"). Either way the
/// port ends up closed.
fn sigterm_pending_stop(imp: Impl) {
    let Some(mut h) = Harness::start(imp, "term", SIGTERM_CONF, &[]) else {
        return;
    };
    h.knock(Client::Knock, &["7000", "8000", "9000"]);
    let t0 = Instant::now();
    assert_opens(&h, 1, "knock");
    h.terminate();
    assert!(
        h.daemon_exits(secs(8.0)),
        "the daemon did not exit on SIGTERM{}",
        h.diag()
    );
    assert!(
        h.wait_cmd(&stop_line(CLIENT4), 1, secs(6.0)),
        "no stop command after SIGTERM{}",
        h.diag()
    );
    let stopped = t0.elapsed();
    match imp {
        Impl::Knockd => assert!(
            stopped >= secs(3.5),
            "knockd: stop ran {stopped:?} after the knock, before Cmd_Timeout (4 s){}",
            h.diag()
        ),
        Impl::Sesame => assert!(
            stopped < secs(3.0),
            "Sesame: stop ran {stopped:?} after the knock, not at shutdown{}",
            h.diag()
        ),
    }
    assert!(
        h.closes(false, secs(2.0)),
        "open after the stop{}",
        h.diag()
    );
}

/// `Target`: the door matches knocks addressed to 198.18.0.9 (an address the
/// server does not own, e.g. a CARP VIP) instead of the interface's own
/// addresses.
const TARGET_CONF: &str = "\
[vip]
\tSequence = 7000,8000,9000
\tSeq_Timeout = 5
\tTarget = 198.18.0.9
\tStart_Command = @START4@
";

fn target_directive(imp: Impl) {
    let Some(h) = Harness::start(imp, "target", TARGET_CONF, &[]) else {
        return;
    };
    let vip: std::net::IpAddr = "198.18.0.9".parse().unwrap();
    h.route_to_server(vip);
    h.knock(Client::Knock, &["7000", "8000", "9000"]);
    assert_stays_closed(&h, 0, "a knock on the server's own address");
    h.knock_host(Client::Knock, vip, &[], &["7000", "8000", "9000"]);
    assert_opens(&h, 1, "a knock on the Target address");
}
