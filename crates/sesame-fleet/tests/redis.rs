//! The adapter against a real `redis-server` (Debian's package) on a
//! private Unix socket, with an ACL user: spends are single use across
//! gateways, entries travel signed and forged ones are rejected, a stopped
//! store answers `Unavailable` at once, a wrong password is refused, and a
//! flood of entries reaches the loop in bounded slices.
//! No root needed.

use std::time::{Duration, Instant};

use sesame_core::fleet::{EntryKind, Outgoing, Signers, SpendAnswer, Targets};
use sesame_core::ports::{FleetSpend, FleetStore, Ticket};
use sesame_core::spa::IdentityKey;
use sesame_fleet::{FleetConfig, FleetEvent, RedisFleet};
use sesame_testkit::redis::{RedisServer, PASSWORD, USER};
use zeroize::Zeroizing;

fn server(tag: &str) -> Option<RedisServer> {
    sesame_testkit::proc::or_skip("redis-server", RedisServer::start(tag))
}

fn key(i: u8) -> IdentityKey {
    IdentityKey::from_seed(&[i; 32])
}

fn gateway(redis: &RedisServer, name: &str, i: u8, password: &str) -> RedisFleet {
    let signers = Signers::new([
        ("gw-a".to_string(), key(1).public()),
        ("gw-b".to_string(), key(2).public()),
    ]);
    RedisFleet::start(FleetConfig {
        url: redis.url(),
        user: Some(USER.into()),
        password: Some(Zeroizing::new(password.into())),
        name: name.into(),
        group: "edge".into(),
        key: key(i),
        signers,
        timeout: Duration::from_millis(200),
        heartbeat: Duration::from_millis(200),
        catch_up: Duration::from_secs(60),
    })
    .unwrap()
}

/// Waits (bounded) for the first event `want` accepts.
fn wait_for(fleet: &mut RedisFleet, want: impl Fn(&FleetEvent) -> bool) -> FleetEvent {
    let end = Instant::now() + Duration::from_secs(5);
    let mut seen = Vec::new();
    while Instant::now() < end {
        for e in fleet.drain(64) {
            if want(&e) {
                return e;
            }
            seen.push(format!("{e:?}"));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("no such event within 5 s; saw {seen:#?}");
}

/// Whether the loop would wake: the wake-up socket is readable now.
fn wakes(fleet: &RedisFleet) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut fds = [PollFd::new(fleet.wake_fd(), PollFlags::POLLIN)];
    poll(&mut fds, PollTimeout::ZERO).unwrap_or(0) == 1
}

fn spend(fleet: &mut RedisFleet, ticket: u64, token: [u8; 32]) -> SpendAnswer {
    spend_then(fleet, ticket, token, None)
}

fn spend_then(
    fleet: &mut RedisFleet,
    ticket: u64,
    token: [u8; 32],
    publish: Option<Outgoing>,
) -> SpendAnswer {
    match fleet.spend(Ticket(ticket), token, Duration::from_secs(60), publish) {
        FleetSpend::Done(a) => a,
        FleetSpend::Pending => match wait_for(fleet, |e| matches!(e, FleetEvent::Answer { .. })) {
            FleetEvent::Answer { answer, .. } => answer,
            _ => unreachable!(),
        },
    }
}

#[test]
fn spends_are_single_use_across_gateways_and_entries_travel_signed() {
    let Some(redis) = server("adapter") else {
        return;
    };
    let (mut a, mut b) = (
        gateway(&redis, "gw-a", 1, PASSWORD),
        gateway(&redis, "gw-b", 2, PASSWORD),
    );
    assert_eq!(spend(&mut a, 1, [7; 32]), SpendAnswer::Spent);
    assert_eq!(
        spend(&mut b, 2, [7; 32]),
        SpendAnswer::SpentElsewhere { by: "gw-a".into() }
    );
    assert_eq!(spend(&mut b, 3, [8; 32]), SpendAnswer::Spent);
    let grant = |addr: &str| Outgoing {
        kind: EntryKind::Grant,
        door: "ssh".into(),
        addr: addr.parse().unwrap(),
        services: vec!["tcp/22".parse().unwrap()],
        to: Targets::Group,
        lasts: Duration::from_secs(30),
    };
    a.publish(grant("198.51.100.7"));
    let addr_of = |e: FleetEvent| match e {
        FleetEvent::Entry { entry, .. } => {
            assert_eq!(
                (entry.entry().from.as_str(), entry.entry().door.as_str()),
                ("gw-a", "ssh")
            );
            entry.entry().addr.to_string()
        }
        _ => unreachable!(),
    };
    let got = wait_for(&mut b, |e| matches!(e, FleetEvent::Entry { .. }));
    assert_eq!(addr_of(got), "198.51.100.7");
    // A spend that publishes its grant in the same step: only the first.
    let first = spend_then(&mut a, 10, [9; 32], Some(grant("198.51.100.8")));
    assert_eq!(first, SpendAnswer::Spent);
    let again = spend_then(&mut a, 11, [9; 32], Some(grant("198.51.100.9")));
    assert_eq!(again, SpendAnswer::SpentElsewhere { by: "gw-a".into() });
    let got = wait_for(&mut b, |e| matches!(e, FleetEvent::Entry { .. }));
    assert_eq!(addr_of(got), "198.51.100.8");
    // The refused spend published nothing: the next entry is a marker.
    a.publish(grant("198.51.100.10"));
    let got = wait_for(&mut b, |e| matches!(e, FleetEvent::Entry { .. }));
    assert_eq!(addr_of(got), "198.51.100.10");
    // An entry written straight into the stream, signed by nobody trusted.
    let line = "v1 grant from=gw-a door=ssh addr=203.0.113.66 services=tcp/22 to=* made=1 expires=99999999999999";
    let forged = sesame_core::fleet::sign(&key(9), "edge", line);
    let hex: String = forged.iter().map(|b| format!("{b:02x}")).collect();
    redis.cli(&["XADD", "sesame:{edge}:entries", "*", "m", line, "s", &hex]);
    match wait_for(&mut b, |e| matches!(e, FleetEvent::Rejected { .. })) {
        FleetEvent::Rejected { error, .. } => assert_eq!(error.reason(), "bad_signature"),
        _ => unreachable!(),
    }
    // Both gateways' heartbeats are seen.
    let end = Instant::now() + Duration::from_secs(5);
    while b.health().members.iter().any(|(_, at)| at.is_none()) {
        assert!(Instant::now() < end, "heartbeats: {:?}", b.health());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(b.health().up);
}

#[test]
fn a_stopped_store_answers_unavailable_fast_and_a_wrong_password_is_refused() {
    let Some(mut redis) = server("down") else {
        return;
    };
    let mut a = gateway(&redis, "gw-a", 1, PASSWORD);
    assert_eq!(spend(&mut a, 1, [1; 32]), SpendAnswer::Spent);
    redis.stop();
    let started = Instant::now();
    assert!(matches!(
        spend(&mut a, 2, [2; 32]),
        SpendAnswer::Unavailable(_)
    ));
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert!(!a.health().up, "health still says up");
    // Back (empty, as after a crash without persistence): it reconnects.
    redis.restart().unwrap();
    let end = Instant::now() + Duration::from_secs(5);
    let mut ticket = 3;
    loop {
        ticket += 1;
        if spend(&mut a, ticket, [ticket as u8; 32]) == SpendAnswer::Spent {
            break;
        }
        assert!(Instant::now() < end, "no reconnection");
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut wrong = gateway(&redis, "gw-b", 2, "not-the-password");
    match spend(&mut wrong, 1, [3; 32]) {
        SpendAnswer::Unavailable(e) => assert!(
            e.to_lowercase().contains("pass") || e.contains("auth"),
            "{e}"
        ),
        other => panic!("{other:?}"),
    }
}

/// A store that accepts connections and never answers (hung, or a
/// hostile peer on the store's address): spends are answered
/// `Unavailable` within the timeout, and the adapter does not pile up.
#[test]
fn a_store_that_never_answers_is_unavailable_within_the_timeout() {
    let dir = sesame_testkit::proc::ScratchDir::new("hung-store").unwrap();
    let socket = dir.join("hung.sock");
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    // Accepts and holds every connection, silent (bounded: 64 of them).
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in listener.incoming().take(64) {
            held.push(c);
        }
    });
    let signers = Signers::new([("gw-a".to_string(), key(1).public())]);
    let mut a = RedisFleet::start(FleetConfig {
        url: format!("unix://{}", socket.display()),
        user: Some(USER.into()),
        password: Some(Zeroizing::new(PASSWORD.into())),
        name: "gw-a".into(),
        group: "edge".into(),
        key: key(1),
        signers,
        timeout: Duration::from_millis(200),
        heartbeat: Duration::from_millis(200),
        catch_up: Duration::from_secs(60),
    })
    .unwrap();
    for ticket in 0..3 {
        let started = Instant::now();
        match spend(&mut a, ticket, [ticket as u8; 32]) {
            SpendAnswer::Unavailable(_) => {}
            other => panic!("{other:?} from a silent store"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "answered after {:?}",
            started.elapsed()
        );
    }
    assert!(!a.health().up);
}

/// A store full of junk (300 entries, as a compromised gateway or whoever
/// holds Redis could write) reaches the loop 64 events at a time; after a
/// full slice the wake-up stays readable, so the loop reads its packets
/// and then comes back for the rest.
#[test]
fn a_flood_of_entries_reaches_the_loop_in_bounded_slices() {
    let Some(redis) = server("slices") else {
        return;
    };
    let mut b = gateway(&redis, "gw-b", 2, PASSWORD);
    let junk = "for i = 1, 300 do redis.call('XADD', KEYS[1], '*', 'm', 'junk', 's', 'x') end";
    redis.cli(&["EVAL", junk, "1", "sesame:{edge}:entries"]);
    // Let the reader hand over all 300 before the loop takes any.
    let end = Instant::now() + Duration::from_secs(5);
    while !wakes(&b) {
        assert!(Instant::now() < end, "the reader never woke the loop");
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(500));
    let mut rejected = 0;
    let mut slices = 0;
    while rejected < 300 {
        assert!(
            slices < 20,
            "{rejected} of 300 junk entries in {slices} slices"
        );
        let slice = b.drain(64);
        slices += 1;
        assert!(slice.len() <= 64, "a slice of {}", slice.len());
        rejected += slice
            .iter()
            .filter(|e| matches!(e, FleetEvent::Rejected { .. }))
            .count();
        if rejected < 300 {
            assert_eq!(slice.len(), 64, "the reader had handed over everything");
            assert!(
                wakes(&b),
                "a full slice left the loop asleep with {rejected} of 300 taken"
            );
        }
    }
    assert_eq!(slices, 5, "300 events in slices of 64");
}
