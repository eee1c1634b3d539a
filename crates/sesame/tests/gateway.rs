//! Gateway mode in three network namespaces: the client, the gateway
//! (sesamed) and an inner host behind it. A knock door opens, for the
//! knocker only and for `open_for`, a DNAT forward (gateway tcp/2222 to the
//! inner host's tcp/22), a routed inner service (the inner host's tcp/23,
//! untranslated) and a local redirect (gateway tcp/2223 to its own
//! tcp/2224), over IPv4 and IPv6. Every check is a real TCP round trip.

mod support;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use sesame::testbed::{Side, Testbed, CLIENT2_V4};
use support::*;

const SEQ: [&str; 3] = ["7000", "8000", "9000"];
const OPEN_FOR_SECS: u64 = 3;

fn config(bed: &Testbed) -> String {
    let (i4, i6) = (
        Testbed::addr(Side::Inner, false),
        Testbed::addr(Side::Inner, true),
    );
    format!(
        "[daemon]\nstate_dir = \"{}\"\n[door.gw]\nsequence = [\"7000\", \"8000\", \"9000\"]\n\
         open_for = \"{OPEN_FOR_SECS}s\"\n\
         forward = [\"tcp/2222 -> {i4}:22\", \"tcp/2222 -> [{i6}]:22\"]\n\
         route = [\"tcp/{i4}:23\", \"tcp/[{i6}]:23\"]\n\
         redirect = [\"tcp/2223 -> 2224\"]\n",
        bed.scratch().join("state").display()
    )
}

/// A TCP round trip from the client namespace (from `from`, or its
/// primary address) to `to` within 300 ms.
fn reaches(bed: &Testbed, from: Option<IpAddr>, to: SocketAddr) -> bool {
    bed.run_in(Side::Client, move || {
        let domain = if to.is_ipv4() {
            socket2::Domain::IPV4
        } else {
            socket2::Domain::IPV6
        };
        let sock = socket2::Socket::new(domain, socket2::Type::STREAM, None).ok()?;
        if let Some(from) = from {
            sock.bind(&SocketAddr::new(from, 0).into()).ok()?;
        }
        sock.connect_timeout(&to.into(), Duration::from_millis(300))
            .ok()?;
        let mut stream: TcpStream = sock.into();
        round_trip(&mut stream).then_some(())
    })
    .ok()
    .flatten()
    .is_some()
}

fn round_trip(stream: &mut TcpStream) -> bool {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let mut b = [0u8; 4];
    stream.write_all(b"ping").is_ok() && stream.read_exact(&mut b).is_ok() && &b == b"ping"
}

/// A connection from the client namespace kept open by the test.
fn open_flow(bed: &Testbed, to: SocketAddr) -> TcpStream {
    bed.run_in(Side::Client, move || {
        TcpStream::connect_timeout(&to, Duration::from_millis(500))
    })
    .unwrap()
    .expect("a connection during the grant")
}

/// The three forwarded services for `v6`: DNAT, routed, redirected.
fn targets(v6: bool) -> [(SocketAddr, &'static str); 3] {
    let gateway = Testbed::addr(Side::Server, v6);
    let inner = Testbed::addr(Side::Inner, v6);
    [
        (
            SocketAddr::new(gateway, 2222),
            "DNAT gateway:2222 -> inner:22",
        ),
        (SocketAddr::new(inner, 23), "route to inner:23"),
        (
            SocketAddr::new(gateway, 2223),
            "redirect gateway:2223 -> :2224",
        ),
    ]
}

/// Waits (bounded) until every one of `targets(v6)` is reachable (`open`)
/// or none is.
fn assert_all_within(bed: &Testbed, v6: bool, open: bool, limit: Duration) {
    let end = Instant::now() + limit;
    for (to, what) in targets(v6) {
        loop {
            if reaches(bed, None, to) == open {
                break;
            }
            let state = if open { "closed" } else { "open" };
            assert!(
                Instant::now() < end,
                "{what} still {state} after {limit:?} (v6 {v6})"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[test]
fn forwards_open_for_the_knocker_only_and_close_on_time_over_ipv4_and_ipv6() {
    let mut bed = match Testbed::create_gateway("gw") {
        Ok(bed) => bed,
        Err(e) if !sesame_testkit::proc::ci() => {
            eprintln!("skipped: {e}");
            return;
        }
        Err(e) => panic!("CI=true but the gateway test bed failed: {e}"),
    };
    let _inner22 = Service::start_on(&bed, Side::Inner, 22).expect("inner :22");
    let _inner23 = Service::start_on(&bed, Side::Inner, 23).expect("inner :23");
    let _local = Service::start_on(&bed, Side::Server, 2224).expect("gateway :2224");
    let config = config(&bed);
    let daemon = start_daemon(&mut bed, &config, &[]);
    for v6 in [false, true] {
        let inner22 = SocketAddr::new(Testbed::addr(Side::Inner, v6), 22);
        let gateway = Testbed::addr(Side::Server, v6);
        // Before the knock: nothing forwarded, the inner services closed.
        for (to, what) in targets(v6) {
            assert!(!reaches(&bed, None, to), "{what} open before the knock");
        }
        assert!(!reaches(&bed, None, inner22), "inner:22 reachable directly");
        knock(&bed, gateway, &SEQ);
        daemon.log.expect(
            &["door opened", &Testbed::addr(Side::Client, v6).to_string()],
            Duration::from_secs(2),
            "the knock",
        );
        for (to, what) in targets(v6) {
            assert!(
                reaches(&bed, None, to),
                "{what} closed after the knock (v6 {v6})"
            );
        }
        // The DNAT grant does not open the routed path to the same service.
        assert!(
            !reaches(&bed, None, inner22),
            "inner:22 reachable directly during the grant"
        );
        if !v6 {
            // Another address of the client's own network: nothing.
            for (to, what) in targets(false) {
                assert!(
                    !reaches(&bed, Some(CLIENT2_V4.into()), to),
                    "{what} open for another address"
                );
            }
        }
        // A flow opened during the grant outlives it; new ones are refused.
        let mut live = open_flow(&bed, SocketAddr::new(gateway, 2222));
        assert!(round_trip(&mut live));
        assert_all_within(&bed, v6, false, Duration::from_secs(OPEN_FOR_SECS + 2));
        assert!(
            round_trip(&mut live),
            "the live flow died at expiry (v6 {v6})"
        );
        // revoke --kill-flows cuts live flows of every kind at once.
        knock(&bed, gateway, &SEQ);
        assert_all_within(&bed, v6, true, Duration::from_secs(2));
        let mut flows: Vec<(TcpStream, &str)> = targets(v6)
            .into_iter()
            .map(|(to, what)| (open_flow(&bed, to), what))
            .collect();
        for (flow, what) in &mut flows {
            assert!(round_trip(flow), "{what}: no live flow");
        }
        let client = Testbed::addr(Side::Client, v6).to_string();
        let socket = daemon.socket.to_str().unwrap();
        let out = std::process::Command::new(bin("sesame"))
            .args(["revoke", &client, "--kill-flows", "--socket", socket])
            .output()
            .unwrap();
        assert_success(&out, "sesame revoke --kill-flows");
        let said = String::from_utf8_lossy(&out.stdout);
        // The three live flows, and the closed probes' leftovers.
        let cut: usize = said
            .split("cut ")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        assert!(cut >= 3, "{said}");
        for (flow, what) in &mut flows {
            assert!(
                !round_trip(flow),
                "{what}: the live flow survived --kill-flows (v6 {v6})"
            );
        }
        for (to, what) in targets(v6) {
            assert!(
                !reaches(&bed, None, to),
                "{what} open after the revoke (v6 {v6})"
            );
        }
        // A new knock opens again, the block of the cut flows
        // notwithstanding.
        knock(&bed, gateway, &SEQ);
        assert_all_within(&bed, v6, true, Duration::from_secs(2));
        let _ = std::process::Command::new(bin("sesame"))
            .args(["revoke", &client, "--socket", socket])
            .output();
    }
    // kill -9: the kernel still closes the forwards on time.
    let v4 = Testbed::addr(Side::Server, false);
    knock(&bed, v4, &SEQ);
    let started = Instant::now();
    assert_all_within(&bed, false, true, Duration::from_secs(2));
    stop_daemon(&mut bed, &daemon, nix::sys::signal::Signal::SIGKILL);
    assert_all_within(&bed, false, false, Duration::from_secs(OPEN_FOR_SECS + 2));
    assert!(started.elapsed() >= Duration::from_millis(OPEN_FOR_SECS * 1000 - 500));
}

#[test]
fn masquerade_serves_an_inner_host_that_does_not_route_back() {
    let mut bed = match Testbed::create_gateway("gwmasq") {
        Ok(bed) => bed,
        Err(e) if !sesame_testkit::proc::ci() => {
            eprintln!("skipped: {e}");
            return;
        }
        Err(e) => panic!("CI=true but the gateway test bed failed: {e}"),
    };
    // The inner host knows only its own link: answers to the client can
    // only reach it through the gateway's own address.
    for family in ["-4", "-6"] {
        let out = bed
            .command(Side::Inner, "ip")
            .args([family, "route", "del", "default"])
            .output()
            .unwrap();
        assert_success(&out, "ip route del default");
    }
    let _inner22 = Service::start_on(&bed, Side::Inner, 22).expect("inner :22");
    let _inner23 = Service::start_on(&bed, Side::Inner, 23).expect("inner :23");
    let (i4, i6) = (
        Testbed::addr(Side::Inner, false),
        Testbed::addr(Side::Inner, true),
    );
    let config = format!(
        "[daemon]\nstate_dir = \"{}\"\n\
         [door.masq]\nsequence = [\"7100\", \"8100\", \"9100\"]\n\
         forward = [\"tcp/2226 -> {i4}:22 masquerade\", \"tcp/2226 -> [{i6}]:22 masquerade\"]\n\
         [door.plain]\nsequence = [\"7200\", \"8200\", \"9200\"]\n\
         forward = [\"tcp/2227 -> {i4}:23\", \"tcp/2227 -> [{i6}]:23\"]\n",
        bed.scratch().join("state").display()
    );
    let _daemon = start_daemon(&mut bed, &config, &[]);
    for v6 in [false, true] {
        let gateway = Testbed::addr(Side::Server, v6);
        knock(&bed, gateway, &["7100", "8100", "9100"]);
        knock(&bed, gateway, &["7200", "8200", "9200"]);
        let end = Instant::now() + Duration::from_secs(2);
        while !reaches(&bed, None, SocketAddr::new(gateway, 2226)) {
            assert!(Instant::now() < end, "masqueraded forward closed (v6 {v6})");
        }
        assert!(
            !reaches(&bed, None, SocketAddr::new(gateway, 2227)),
            "an unmasqueraded forward to a host without a route back answered (v6 {v6})"
        );
    }
}
