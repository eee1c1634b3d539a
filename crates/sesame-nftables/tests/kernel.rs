//! Tests against the real kernel. Each test moves its own thread into a fresh
//! network namespace (so nothing leaks into the host and cleanup is automatic
//! when the thread ends), installs the ruleset and checks what the kernel
//! does: set contents, and TCP connects over loopback that pass or fail.
//!
//! They need root and `ip`. Without root they print "skipped" and pass,
//! unless `CI=true`, where they fail.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use sesame_core::Service;
use sesame_nftables::{Firewall, FirewallError, InstallOutcome, Ruleset};
use sesame_testkit::testbed::enter_private_netns;

const TABLE: &str = "sesame_test";

fn service(s: &str) -> Service {
    s.parse().unwrap()
}

fn ruleset(protected: &[Service]) -> Ruleset {
    Ruleset {
        nflog_group: 2799,
        knock_tcp_syn: vec![7000, 7001],
        knock_tcp_any: vec![],
        knock_udp: vec![7002],
        protected: protected.to_vec(),
        ..Ruleset::default()
    }
}

/// An echo server on `addr`, serving until the test thread ends.
fn echo_server(addr: SocketAddr) -> SocketAddr {
    let l = TcpListener::bind(addr).expect("bind echo server");
    let local = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            let mut b = [0u8; 16];
            if let Ok(n) = s.read(&mut b) {
                let _ = s.write_all(&b[..n]);
            }
        }
    });
    local
}

/// Whether a full TCP round trip to `to` succeeds within 400 ms.
fn reachable(to: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&to, Duration::from_millis(400)) else {
        return false;
    };
    s.set_read_timeout(Some(Duration::from_millis(400)))
        .unwrap();
    let mut b = [0u8; 4];
    s.write_all(b"ping").is_ok() && s.read_exact(&mut b).is_ok() && &b == b"ping"
}

#[test]
fn install_creates_then_updates_in_place_keeping_grants() {
    if !enter_private_netns() {
        return;
    }
    let ssh = service("tcp/2222");
    let mut fw = Firewall::open(TABLE).unwrap();
    assert!(!fw.exists().unwrap());
    assert_eq!(
        fw.install(&ruleset(&[ssh])).unwrap(),
        InstallOutcome::Created
    );
    assert!(fw.exists().unwrap());

    let client: IpAddr = "192.0.2.7".parse().unwrap();
    fw.grant(client, &[ssh], Duration::from_secs(60)).unwrap();
    assert_eq!(
        fw.install(&ruleset(&[ssh])).unwrap(),
        InstallOutcome::Updated
    );
    let grants = fw.grants().unwrap();
    assert_eq!(grants.len(), 1, "{grants:?}");
    assert_eq!(grants[0].addr, client);
    assert_eq!(grants[0].service, ssh);
    let left = grants[0].expires_in.expect("grant has an expiry");
    assert!(
        left > Duration::from_secs(50) && left <= Duration::from_secs(60),
        "{left:?}"
    );

    assert!(fw.remove().unwrap());
    assert!(!fw.exists().unwrap());
    assert!(!fw.remove().unwrap(), "second remove reports absence");
}

#[test]
fn gate_drops_protected_service_until_granted_per_address_and_family() {
    if !enter_private_netns() {
        return;
    }
    let v4 = echo_server("127.0.0.1:0".parse().unwrap());
    let v6 = echo_server(SocketAddr::new("::1".parse().unwrap(), v4.port()));
    let open = echo_server("127.0.0.1:0".parse().unwrap());
    assert!(
        reachable(v4) && reachable(v6),
        "servers reachable before install"
    );

    let svc = service(&format!("tcp/{}", v4.port()));
    let mut fw = Firewall::open(TABLE).unwrap();
    fw.install(&ruleset(&[svc])).unwrap();
    assert!(!reachable(v4), "IPv4 protected service must be closed");
    assert!(!reachable(v6), "IPv6 protected service must be closed");
    assert!(reachable(open), "unprotected port stays reachable");

    // A grant for another address opens nothing for us.
    fw.grant(
        "127.0.0.2".parse().unwrap(),
        &[svc],
        Duration::from_secs(30),
    )
    .unwrap();
    assert!(!reachable(v4));

    fw.grant(
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        &[svc],
        Duration::from_secs(30),
    )
    .unwrap();
    assert!(reachable(v4), "granted IPv4 source gets in");
    assert!(!reachable(v6), "an IPv4 grant does not open IPv6");

    fw.grant("::1".parse().unwrap(), &[svc], Duration::from_secs(30))
        .unwrap();
    assert!(reachable(v6), "granted IPv6 source gets in");

    // An established connection survives the revocation.
    let mut live = TcpStream::connect_timeout(&v4, Duration::from_millis(400)).unwrap();
    live.set_read_timeout(Some(Duration::from_millis(400)))
        .unwrap();
    fw.revoke(IpAddr::V4(Ipv4Addr::LOCALHOST), &[svc]).unwrap();
    assert!(!reachable(v4), "revoked source is shut out again");
    let mut b = [0u8; 4];
    live.write_all(b"ping").unwrap();
    live.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"ping", "established session survives the close");

    // Revoking a grant that does not exist is not an error.
    fw.revoke("198.51.100.1".parse().unwrap(), &[svc]).unwrap();
    fw.remove().unwrap();
    assert!(reachable(v4), "removing the table reopens the service");
}

#[test]
fn grants_expire_in_the_kernel_and_refresh_extends_them() {
    if !enter_private_netns() {
        return;
    }
    let srv = echo_server("127.0.0.1:0".parse().unwrap());
    let svc = service(&format!("tcp/{}", srv.port()));
    let mut fw = Firewall::open(TABLE).unwrap();
    fw.install(&ruleset(&[svc])).unwrap();
    let me = IpAddr::V4(Ipv4Addr::LOCALHOST);

    fw.grant(me, &[svc], Duration::from_millis(1500)).unwrap();
    assert!(reachable(srv));
    // Refresh to a long timeout: the element must carry the new one.
    fw.grant(me, &[svc], Duration::from_secs(120)).unwrap();
    let left = fw.grants().unwrap()[0].expires_in.unwrap();
    assert!(
        left > Duration::from_secs(100),
        "refresh extends the grant: {left:?}"
    );
    // Refresh back to a short one and wait for the kernel to expire it.
    fw.grant(me, &[svc], Duration::from_millis(800)).unwrap();
    let start = Instant::now();
    while !fw.grants().unwrap().is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "grant never expired"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        start.elapsed() >= Duration::from_millis(500),
        "expired too early"
    );
    assert!(!reachable(srv), "expired grant no longer opens the service");
}

#[test]
fn knock_ports_are_dropped_and_config_change_is_applied_in_place() {
    if !enter_private_netns() {
        return;
    }
    let knock = echo_server("127.0.0.1:0".parse().unwrap());
    let mut rules = ruleset(&[]);
    rules.knock_tcp_syn = vec![knock.port()];
    let mut fw = Firewall::open(TABLE).unwrap();
    fw.install(&rules).unwrap();
    assert!(!reachable(knock), "a knock port never answers");
    rules.knock_tcp_syn = vec![knock.port() + 1];
    assert_eq!(fw.install(&rules).unwrap(), InstallOutcome::Updated);
    assert!(
        reachable(knock),
        "port removed from the config is no longer a knock port"
    );
    fw.remove().unwrap();
}

#[test]
fn errors_name_the_problem() {
    let e = Firewall::open("bad name").unwrap_err();
    assert!(matches!(e, FirewallError::BadTableName { .. }));
    assert!(e.to_string().contains("\"bad name\""), "{e}");
}

#[test]
fn interface_filter_limits_which_knocks_are_observed() {
    if !enter_private_netns() {
        return;
    }
    let knock = echo_server("127.0.0.1:0".parse().unwrap());
    let mut rules = ruleset(&[]);
    rules.knock_tcp_syn = vec![knock.port()];
    rules.interfaces = vec!["sesame-none0".into()];
    let mut fw = Firewall::open(TABLE).unwrap();
    fw.install(&rules).unwrap();
    assert!(
        reachable(knock),
        "packets on an interface outside the list are not knocks"
    );
    rules.interfaces = vec!["sesame-none0".into(), "lo".into()];
    fw.install(&rules).unwrap();
    assert!(
        !reachable(knock),
        "packets on a listed interface are knocks"
    );
    fw.remove().unwrap();
}

/// `nft list ruleset` in this thread's namespace.
fn nft_list() -> String {
    let out = std::process::Command::new("nft")
        .args(["list", "ruleset"])
        .output()
        .expect("run nft");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_gateway_ruleset_installs_and_forwards_come_and_go_with_their_timeouts() {
    if !enter_private_netns() {
        return;
    }
    let forwards: Vec<sesame_core::Forward> = [
        "tcp/2222 -> 10.2.0.2:22",
        "tcp/2222 -> [2001:db8:2::2]:22",
        "udp/10.2.0.3:53",
        "tcp/2223 -> 22",
    ]
    .iter()
    .map(|f| f.parse().unwrap())
    .collect();
    let rules = Ruleset {
        forwards: forwards.clone(),
        ..ruleset(&[service("tcp/2222"), service("tcp/2223")])
    };
    let mut fw = Firewall::open(TABLE).unwrap();
    fw.install(&rules).expect("install a gateway ruleset");
    // In place again (a reload).
    assert_eq!(fw.install(&rules).unwrap(), InstallOutcome::Updated);
    let listed = nft_list();
    for needle in [
        "chain prenat",
        "type nat hook prerouting priority dstnat",
        "chain forward_gate",
        "ct status dnat",
        "10.2.0.2 . tcp . 22",
        "2001:db8:2::2 . tcp . 22",
    ] {
        assert!(listed.contains(needle), "{needle:?} missing:\n{listed}");
    }
    let client: IpAddr = "192.0.2.7".parse().unwrap();
    fw.forward(client, &forwards, Duration::from_secs(2))
        .expect("forward");
    // A refresh in place.
    fw.forward(client, &forwards, Duration::from_secs(2))
        .expect("refresh");
    let listed = nft_list();
    if std::env::var_os("SHOW_RULESET").is_some() {
        eprintln!("{listed}");
    }
    for needle in [
        "192.0.2.7 . tcp . 2222 timeout 2s",
        ": 10.2.0.2 . 22",
        "192.0.2.7 . tcp . 10.2.0.2 . 22 timeout 2s",
        "192.0.2.7 . udp . 10.2.0.3 . 53 timeout 2s",
        "192.0.2.7 . tcp . 2223 timeout 2s",
    ] {
        assert!(listed.contains(needle), "{needle:?} missing:\n{listed}");
    }
    let six: IpAddr = "2001:db8::7".parse().unwrap();
    fw.forward(six, &forwards, Duration::from_secs(60)).unwrap();
    assert!(nft_list().contains(": 2001:db8:2::2 . 22"));
    fw.unforward(six, &forwards).unwrap();
    assert!(!nft_list().contains("2001:db8::7"));
    // The kernel closes the IPv4 ones on time.
    std::thread::sleep(Duration::from_millis(2300));
    assert!(!nft_list().contains("192.0.2.7"), "{}", nft_list());
}
