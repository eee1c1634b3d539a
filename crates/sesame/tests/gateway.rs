//! Gateway mode in three network namespaces: the client, the gateway
//! (sesamed) and an inner host behind it. A knock door opens, for the
//! knocker only and for `open_for`, a DNAT forward (gateway tcp/2222 to the
//! inner host's tcp/22), a routed inner service (the inner host's tcp/23,
//! untranslated) and a local redirect (gateway tcp/2223 to its own
//! tcp/2224), over IPv4 and IPv6. Every check is a real TCP round trip.
//! Debian's real `fwknop` client asks for forwards with `-N` and
//! `--nat-local` from `sesamed --fwknop-access`.

mod fwknop_support;
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

/// A gateway test bed, or `None` where it cannot be built (never under
/// `CI=true`, where that fails the test).
fn gateway_bed(tag: &str) -> Option<Testbed> {
    sesame_testkit::proc::or_skip("the gateway test bed", Testbed::create_gateway(tag))
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
    let Some(mut bed) = gateway_bed("gw") else {
        return;
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
    let Some(mut bed) = gateway_bed("gwmasq") else {
        return;
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

#[test]
fn the_real_fwknop_client_opens_nat_forwards_only_to_allowed_inner_hosts() {
    let Some(progs) = fwknop_support::programs(&["fwknop"]) else {
        return;
    };
    let Some(mut bed) = gateway_bed("gwfwk") else {
        return;
    };
    let dir = bed.scratch();
    let _inner = Service::start_on(&bed, Side::Inner, 22).expect("inner :22");
    let _local = Service::start_on(&bed, Side::Server, 2224).expect("gateway :2224");
    // The access.conf and fwknopd.conf lines that make fwknopd forward.
    let keys = fwknop_support::Keys::generate();
    let access = dir.join("access.conf");
    std::fs::write(&access, keys.stanza("ANY", "tcp/2222, tcp/2224", 30)).unwrap();
    let fwknopd = dir.join("fwknopd.conf");
    std::fs::write(
        &fwknopd,
        "ENABLE_IPT_FORWARDING Y;\nENABLE_IPT_LOCAL_NAT Y;\n",
    )
    .unwrap();
    for f in [&access, &fwknopd] {
        std::fs::set_permissions(f, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    }
    let daemon = fwknop_support::start_sesamed(
        &mut bed,
        &bin("sesamed"),
        &dir.join("var-lib"),
        &[
            "--fwknop-access",
            access.to_str().unwrap(),
            "--fwknopd-conf",
            fwknopd.to_str().unwrap(),
            "--nat-host",
            "10.2.0.0/24",
        ],
        true,
    );
    let gateway = Testbed::addr(Side::Server, false);
    let client = Testbed::addr(Side::Client, false).to_string();
    let fwknop = |extra: &[&str]| {
        let mut args = vec!["-a", &client, "-D"];
        let server = gateway.to_string();
        args.push(&server);
        args.extend([
            "--use-hmac",
            "--key-base64-rijndael",
            &keys.key,
            "--key-base64-hmac",
            &keys.hmac,
        ]);
        args.extend(extra);
        fwknop_support::fwknop_client(&bed, &progs[0], &dir, &args);
    };
    let forwarded = SocketAddr::new(gateway, 2222);
    assert!(
        !reaches(&bed, None, forwarded),
        "forwarded before any packet"
    );
    // A NAT host outside the allow-list: refused, with its own reason.
    fwknop(&["-A", "tcp/2222", "-N", "10.3.0.9:22"]);
    daemon.log.expect(
        &["fwknop_refused", "nat_host_not_allowed"],
        Duration::from_secs(3),
        "a NAT host outside the allow-list",
    );
    assert!(!reaches(&bed, None, forwarded));
    // fwknop -N: gateway tcp/2222 to the inner host's ssh.
    let inner = Testbed::addr(Side::Inner, false);
    fwknop(&["-A", "tcp/2222", "-N", &format!("{inner}:22")]);
    let end = Instant::now() + Duration::from_secs(3);
    while !reaches(&bed, None, forwarded) {
        assert!(
            Instant::now() < end,
            "fwknop -N did not open the forward:\n{}",
            daemon.log.dump()
        );
    }
    assert!(
        !reaches(&bed, None, SocketAddr::new(gateway, 2224)),
        "a NAT request also opened a local port"
    );
    // Sesame's own client asks for the same forward from a profile
    // (`nat_access`), here for the client's second address.
    let second: IpAddr = CLIENT2_V4.into();
    assert!(!reaches(&bed, Some(second), forwarded));
    let profile = dir.join("client.toml");
    std::fs::write(
        &profile,
        format!(
            "[server.gw]\nhost = \"{gateway}\"\n[server.gw.fwknop.inner]\naccess = [\"tcp/2222\"]\n\
             allow_ip = \"{second}\"\nnat_access = \"{inner}:22\"\nkey_base64 = \"{}\"\n\
             hmac_key_base64 = \"{}\"\n",
            keys.key, keys.hmac
        ),
    )
    .unwrap();
    // Inline keys: the profile must be private.
    std::fs::set_permissions(
        &profile,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let out = bed
        .command(Side::Client, bin("sesame").to_str().unwrap())
        .args([
            "knock",
            "gw",
            "inner",
            "--config",
            profile.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_success(&out, "sesame knock (fwknop NAT profile)");
    let end = Instant::now() + Duration::from_secs(3);
    while !reaches(&bed, Some(second), forwarded) {
        assert!(
            Instant::now() < end,
            "sesame knock with nat_access did not open the forward:\n{}",
            daemon.log.dump()
        );
    }
    // fwknop --nat-local: gateway tcp/55000 to its own tcp/2224.
    let redirected = SocketAddr::new(gateway, 55000);
    assert!(!reaches(&bed, None, redirected));
    fwknop(&["-A", "tcp/2224", "--nat-local", "--nat-port", "55000"]);
    let end = Instant::now() + Duration::from_secs(3);
    while !reaches(&bed, None, redirected) {
        assert!(
            Instant::now() < end,
            "fwknop --nat-local did not open the redirect:\n{}",
            daemon.log.dump()
        );
    }
}
