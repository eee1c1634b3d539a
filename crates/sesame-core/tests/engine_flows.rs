//! Whole-flow tests of every door type, in memory with a virtual clock: raw
//! packet bytes in, firewall grants out (see [`super::testing::Harness`]).
//! They run as a normal user in milliseconds; the namespace tests of the
//! `sesame` crate prove the adapters.
//!
//! Run them with `cargo test -p sesame-core --test engine_flows`.

use std::net::IpAddr;
use std::time::Duration;

use sesame_core::engine::*;
use sesame_core::fwknop::stanza::{FwknopNat, FwknopStanza, Secret};
use sesame_core::fwknop::{self as fk, AccessPort, EncMode, FwknopKeys, FwknopRequest};
use sesame_core::spa::{self, Credential, Payload, SpaKey, UserPolicy, Verifier};
use sesame_core::totp::{TotpSecret, TotpSpec};
use sesame_core::tracker::{Event, Observation};
use sesame_core::{Door, Forward, Knock, Proto, Service};
use sesame_testkit::engine::{Harness, StoreMode};

const NOW: u64 = 1_800_000_000;
const SSH: Service = Service::tcp(22);

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn server() -> IpAddr {
    ip("192.0.2.1")
}

fn knocks(list: &[&str]) -> Vec<Knock> {
    list.iter().map(|k| k.parse().unwrap()).collect()
}

fn door(name: &str, sequence: &[&str]) -> Door {
    Door {
        seq_timeout: Duration::from_secs(5),
        ..Door::new(name, knocks(sequence), vec![SSH])
    }
}

fn settings() -> Settings {
    sesame_testkit::engine::test_settings()
}

fn engine(doors: Vec<EngineDoor>) -> Engine {
    engine_with(doors, settings())
}

fn engine_with(doors: Vec<EngineDoor>, settings: Settings) -> Engine {
    let seeds = Seeds {
        tracker: [1, 2],
        grants: [3, 4],
        budget: [5, 6],
    };
    Engine::new(doors, settings, seeds).unwrap()
}

fn harness(doors: Vec<EngineDoor>) -> Harness {
    Harness::new(engine(doors), NOW)
}

fn plain(name: &str, sequence: &[&str]) -> EngineDoor {
    EngineDoor {
        door: door(name, sequence),
        kind: DoorKind::Sequence,
        fleet: None,
    }
}

fn opened(h: &Harness) -> usize {
    h.notes
        .iter()
        .filter(|n| matches!(n, Note::Opened { .. }))
        .count()
}

#[test]
fn knock_sequence_opens_for_the_knocker_only_and_the_kernel_closes_it() {
    let mut h = harness(vec![plain("ssh", &["7000", "8000:udp", "9000"])]);
    let (alice, eve) = (ip("198.51.100.7"), ip("203.0.113.9"));
    let ruleset = h.world.firewall.ruleset.clone().unwrap();
    assert_eq!(
        (ruleset.knock_tcp_syn, ruleset.knock_udp),
        (vec![7000, 9000], vec![8000])
    );
    assert!(!h.admits(alice, SSH), "closed before the knock");
    h.knock(alice, server(), &knocks(&["7000", "8000:udp", "9000"]));
    assert!(h.admits(alice, SSH), "open for the knocker");
    assert!(!h.admits(eve, SSH), "and for no one else");
    // A sweep of the same ports in the wrong order opens nothing.
    h.knock(eve, server(), &knocks(&["9000", "8000:udp", "7000"]));
    assert!(!h.admits(eve, SSH));
    h.advance(Duration::from_secs(31));
    assert!(!h.admits(alice, SSH), "closed after open_for");
    assert!(h.notes.iter().any(|n| matches!(
        n,
        Note::Closed {
            why: CloseReason::Expired,
            ..
        }
    )));
    assert_eq!(h.engine.grant_count(), 0);
}

#[test]
fn knock_sequence_works_over_ipv6() {
    let mut h = harness(vec![plain("ssh", &["7000", "8000", "9000"])]);
    let (alice, server6) = (ip("2001:db8::7"), ip("2001:db8::1"));
    h.knock(alice, server6, &knocks(&["7000", "8000", "9000"]));
    assert!(h.admits(alice, SSH));
    assert!(!h.admits(ip("198.51.100.7"), SSH));
}

#[test]
fn one_time_sequences_are_single_use_and_the_door_retires_when_they_run_out() {
    let mut h = harness(vec![EngineDoor {
        door: door("once", &["1001", "1002"]),
        kind: DoorKind::OneTime,
        fleet: None,
    }]);
    h.world
        .one_time
        .next
        .insert("once".into(), [knocks(&["2001", "2002"])].into());
    let alice = ip("198.51.100.7");
    h.knock(alice, server(), &knocks(&["1001", "1002"]));
    assert!(h.admits(alice, SSH));
    let r = h.world.firewall.ruleset.clone().unwrap();
    assert_eq!(
        r.knock_tcp_syn,
        vec![2001, 2002],
        "the next sequence is observed"
    );
    h.advance(Duration::from_secs(31));
    h.knock(alice, server(), &knocks(&["1001", "1002"]));
    assert!(!h.admits(alice, SSH), "a used sequence opens nothing");
    h.knock(alice, server(), &knocks(&["2001", "2002"]));
    assert!(h.admits(alice, SSH), "the next one does");
    assert!(h
        .notes
        .iter()
        .any(|n| matches!(n, Note::OneTimeExhausted { .. })));
    assert!(h
        .world
        .firewall
        .ruleset
        .clone()
        .unwrap()
        .knock_tcp_syn
        .is_empty());
}

#[test]
fn one_time_door_is_disabled_when_its_file_cannot_be_marked() {
    let mut h = harness(vec![EngineDoor {
        door: door("once", &["1001", "1002"]),
        kind: DoorKind::OneTime,
        fleet: None,
    }]);
    h.world.one_time.failing = true;
    let alice = ip("198.51.100.7");
    h.knock(alice, server(), &knocks(&["1001", "1002"]));
    h.advance(Duration::from_secs(31));
    h.knock(alice, server(), &knocks(&["1001", "1002"]));
    assert!(
        !h.admits(alice, SSH),
        "fail closed: the sequence must not stay usable"
    );
    assert!(h
        .notes
        .iter()
        .any(|n| matches!(n, Note::OneTimeFailed { .. })));
}

fn totp_door() -> (EngineDoor, TotpSpec, TotpSecret) {
    sesame_testkit::engine::totp_door(door("vpn", &[]))
}

#[test]
fn totp_sequence_opens_once_and_its_replay_from_elsewhere_is_refused() {
    let (d, spec, secret) = totp_door();
    let mut h = harness(vec![d]);
    let r = h.world.firewall.ruleset.clone().unwrap();
    assert_eq!(r.knock_tcp_syn.len(), 1000, "the whole range is observed");
    let step = NOW / 30;
    let sequence = spec.sequence(&secret, step).unwrap();
    let (carol, eve) = (ip("198.51.100.7"), ip("203.0.113.9"));
    h.knock(carol, server(), &sequence);
    assert!(h.admits(carol, SSH));
    assert!(h.notes.iter().any(|n| matches!(
        n,
        Note::Accepted {
            event: "totp_accepted",
            ..
        }
    )));
    // A captured sequence replayed at once from another address.
    h.knock(eve, server(), &sequence);
    assert!(!h.admits(eve, SSH), "single use, fleet of one");
    // Last step's sequence is still valid for a late clock, but used once.
    let previous = spec.sequence(&secret, step - 1).unwrap();
    h.knock(eve, server(), &previous);
    assert!(
        h.admits(eve, SSH),
        "the previous step's unused sequence still opens"
    );
    h.knock(carol, server(), &previous);
    assert_eq!(opened(&h), 2);
}

#[test]
fn totp_blind_sweep_opens_nothing() {
    let (d, _, _) = totp_door();
    let mut h = harness(vec![d]);
    let eve = ip("203.0.113.9");
    for start in (20000..20400).step_by(4) {
        let guess: Vec<Knock> = (start..start + 4)
            .map(|port| Knock {
                port,
                proto: Proto::Tcp,
            })
            .collect();
        h.knock(eve, server(), &guess);
    }
    assert!(!h.admits(eve, SSH));
    assert_eq!(opened(&h), 0);
}

/// An SPA door on udp/62201 whose user "alice" holds `keys`: each with
/// its retirement time (key rotation).
fn spa_door_with(keys: &[(SpaKey, Option<u64>)], allow_address: bool, roaming: bool) -> EngineDoor {
    let mut verifier = Verifier::new(60, None);
    for (key, retired_after) in keys {
        let policy = UserPolicy {
            services: vec![SSH],
            max_duration: 30,
            allow_address,
            retired_after: *retired_after,
        };
        verifier
            .add_user("alice", Credential::Symmetric(key.clone()), policy)
            .unwrap();
    }
    EngineDoor {
        door: door("spa", &[]),
        kind: DoorKind::Spa(SpaDoor {
            port: 62201,
            verifier,
            roaming,
        }),
        fleet: None,
    }
}

fn spa_door(allow_address: bool) -> (EngineDoor, SpaKey) {
    let key = SpaKey::from_bytes(&[9u8; 32]);
    (
        spa_door_with(&[(key.clone(), None)], allow_address, false),
        key,
    )
}

/// An SPA door whose user "alice" has a new key (`[10; 32]`) and an old one
/// (`[9; 32]`, [`spa_door`]'s) retired at `retired_after`; `roaming` as
/// given.
fn rotating_door(retired_after: u64, roaming: bool) -> (EngineDoor, SpaKey, SpaKey) {
    let (old, new) = (
        SpaKey::from_bytes(&[9u8; 32]),
        SpaKey::from_bytes(&[10u8; 32]),
    );
    let keys = [(new.clone(), None), (old.clone(), Some(retired_after))];
    (spa_door_with(&keys, false, roaming), old, new)
}

#[test]
fn a_rotated_key_works_until_its_grace_period_ends_then_only_the_new_one() {
    let (d, old, new) = rotating_door(NOW + 10, false);
    let mut h = harness(vec![d]);
    let (a, b, c) = (ip("198.51.100.7"), ip("198.51.100.8"), ip("198.51.100.9"));
    send_spa(&mut h, a, &spa_packet(&old, 1, NOW, None));
    send_spa(&mut h, b, &spa_packet(&new, 2, NOW, None));
    assert!(h.admits(a, SSH), "old key refused during the grace period");
    assert!(h.admits(b, SSH), "new key refused");
    h.advance(Duration::from_secs(11));
    let now = NOW + 11;
    send_spa(&mut h, c, &spa_packet(&old, 3, now, None));
    assert!(
        !h.admits(c, SSH),
        "old key still opens after the grace period"
    );
    assert_eq!(h.refusals(), vec!["key_retired"]);
    // Backdating the packet does not help: the server's clock decides.
    send_spa(&mut h, c, &spa_packet(&old, 4, NOW, None));
    assert!(!h.admits(c, SSH));
    send_spa(&mut h, c, &spa_packet(&new, 5, now, None));
    assert!(h.admits(c, SSH), "new key refused after the grace period");
}

#[test]
fn a_roaming_grant_moves_with_its_user_and_stays_put_without_roaming() {
    for roaming in [true, false] {
        let (d, _, key) = rotating_door(NOW + 3600, roaming);
        let mut h = harness(vec![d]);
        let (wifi, lte) = (ip("198.51.100.7"), ip("203.0.113.9"));
        send_spa(&mut h, wifi, &spa_packet(&key, 1, NOW, None));
        assert!(h.admits(wifi, SSH));
        h.advance(Duration::from_secs(2));
        send_spa(&mut h, lte, &spa_packet(&key, 2, NOW + 2, None));
        assert!(h.admits(lte, SSH));
        assert_eq!(
            h.admits(wifi, SSH),
            !roaming,
            "roaming {roaming}: the old address's grant"
        );
        // Moving back and forth never leaves two addresses open.
        send_spa(&mut h, wifi, &spa_packet(&key, 3, NOW + 2, None));
        assert!(h.admits(wifi, SSH));
        assert_eq!(h.admits(lte, SSH), !roaming);
    }
}

fn spa_packet(key: &SpaKey, nonce: u8, timestamp: u64, address: Option<IpAddr>) -> Vec<u8> {
    let payload = Payload {
        timestamp,
        nonce: [nonce; 16],
        services: vec![SSH],
        duration: 0,
        address,
    };
    spa::encode_symmetric(key, &payload, [nonce; 24]).unwrap()
}

/// Sends an SPA datagram from `src` to the IPv4 server's SPA port.
fn send_spa(h: &mut Harness, src: IpAddr, packet: &[u8]) {
    h.packet(src, server(), Proto::Udp, 62201, packet);
}

#[test]
fn spa_packet_opens_for_its_sender_and_a_replay_is_refused() {
    let (d, key) = spa_door(false);
    let mut h = harness(vec![d]);
    let (alice, eve) = (ip("198.51.100.7"), ip("2001:db8::66"));
    let packet = spa_packet(&key, 1, NOW, None);
    h.packet(alice, server(), Proto::Udp, 62201, &packet);
    assert!(h.admits(alice, SSH));
    assert_eq!(
        h.world.replay.as_ref().unwrap().recorded.len(),
        1,
        "spent durably before opening"
    );
    h.packet(eve, ip("2001:db8::1"), Proto::Udp, 62201, &packet);
    assert!(!h.admits(eve, SSH));
    assert_eq!(h.refusals(), vec!["replay"]);
    // Garbage and a stale packet are refused with their own reasons.
    let server6 = ip("2001:db8::1");
    h.packet(eve, server6, Proto::Udp, 62201, &[0u8; 100]);
    h.packet(
        eve,
        server6,
        Proto::Udp,
        62201,
        &spa_packet(&key, 2, NOW - 3600, None),
    );
    assert_eq!(h.refusals().len(), 3);
    assert!(!h.admits(eve, SSH));
}

#[test]
fn spa_explicit_address_is_refused_for_this_host() {
    let (d, key) = spa_door(true);
    let mut h = harness(vec![d]);
    h.world.local.push(ip("192.0.2.1"));
    let alice = ip("198.51.100.7");
    send_spa(
        &mut h,
        alice,
        &spa_packet(&key, 1, NOW, Some(ip("192.0.2.1"))),
    );
    assert_eq!(h.refusals(), vec!["address_refused"]);
    send_spa(
        &mut h,
        alice,
        &spa_packet(&key, 3, NOW, Some(ip("198.51.100.99"))),
    );
    assert!(
        h.admits(ip("198.51.100.99"), SSH),
        "a NAT address the user may name"
    );
    assert!(!h.admits(alice, SSH));
}

#[test]
fn credentials_made_before_a_first_start_are_refused() {
    let (d, key) = spa_door(false);
    let mut h = harness(vec![d]);
    h.world.replay.as_mut().unwrap().not_before = Some(NOW);
    h.packet(
        ip("198.51.100.7"),
        server(),
        Proto::Udp,
        62201,
        &spa_packet(&key, 1, NOW - 5, None),
    );
    assert_eq!(h.refusals(), vec!["before_first_start"]);
}

#[test]
fn an_asynchronous_store_holds_the_grant_until_it_answers() {
    let (d, key) = spa_door(false);
    let mut h = harness(vec![d]);
    h.world.replay.as_mut().unwrap().mode = StoreMode::Deferred;
    let alice = ip("198.51.100.7");
    send_spa(&mut h, alice, &spa_packet(&key, 1, NOW, None));
    assert!(!h.admits(alice, SSH), "pending: not open yet");
    assert!(h
        .engine
        .poll_timeout(h.now)
        .is_some_and(|t| t <= h.now.mono + RESERVATION_TIMEOUT));
    h.answer(true);
    assert!(h.admits(alice, SSH), "open once the store said yes");
    // A store that says no, and one that never answers: refused.
    let bob = ip("198.51.100.8");
    send_spa(&mut h, bob, &spa_packet(&key, 2, NOW, None));
    h.answer(false);
    send_spa(&mut h, bob, &spa_packet(&key, 3, NOW, None));
    h.advance(RESERVATION_TIMEOUT + Duration::from_millis(1));
    assert!(!h.admits(bob, SSH));
    assert_eq!(h.refusals(), vec!["replay_state", "replay_store_timeout"]);
}

#[test]
fn a_store_that_cannot_record_keeps_the_door_closed() {
    let (d, key) = spa_door(false);
    let mut h = harness(vec![d]);
    h.world.replay.as_mut().unwrap().mode = StoreMode::Failing;
    let alice = ip("198.51.100.7");
    send_spa(&mut h, alice, &spa_packet(&key, 1, NOW, None));
    assert!(!h.admits(alice, SSH));
    assert_eq!(h.refusals(), vec!["replay_state"]);
}

fn fwknop_door() -> EngineDoor {
    fwknop_door_with(FwknopNat::default())
}

fn fwknop_door_with(nat: FwknopNat) -> EngineDoor {
    let key = Secret(b"fwknop-key".to_vec());
    let stanza = FwknopStanza {
        line: 3,
        source: vec![(ip("198.51.100.0"), 24)],
        open_ports: vec![SSH],
        access_timeout: Duration::from_secs(30),
        ..FwknopStanza::new(key, Some(Secret(b"fwknop-hmac".to_vec())))
    };
    EngineDoor {
        door: door("fwknop", &[]),
        kind: DoorKind::Fwknop(FwknopDoor {
            port: 62201,
            max_age: 120,
            stanzas: vec![LoadedStanza {
                keys: fwknop_keys(),
                stanza,
                run_as: None,
            }],
            nat,
        }),
        fleet: None,
    }
}

fn fwknop_keys() -> FwknopKeys {
    FwknopKeys::new(
        b"fwknop-key",
        EncMode::Cbc,
        Some((b"fwknop-hmac", fk::DigestType::Sha256)),
    )
    .unwrap()
}

fn fwknop_packet(random: u64, ports: &[&str]) -> Vec<u8> {
    let access = ports
        .iter()
        .map(|p| AccessPort::Service(p.parse().unwrap()))
        .collect();
    let req = FwknopRequest::access("alice", NOW, None, access);
    fk::encode(&req, &fwknop_keys(), random, [random as u8; 8])
        .unwrap()
        .into_bytes()
}

#[test]
fn fwknop_stanza_policy_decides_and_replays_are_refused() {
    let mut h = harness(vec![fwknop_door()]);
    let (alice, outsider) = (ip("198.51.100.7"), ip("203.0.113.9"));
    let packet = fwknop_packet(1, &["tcp/22"]);
    h.packet(outsider, server(), Proto::Udp, 62201, &packet);
    assert!(!h.admits(outsider, SSH), "SOURCE does not match");
    h.packet(alice, server(), Proto::Udp, 62201, &packet);
    assert!(h.admits(alice, SSH));
    h.packet(alice, server(), Proto::Udp, 62201, &packet);
    h.packet(
        alice,
        server(),
        Proto::Udp,
        62201,
        &fwknop_packet(2, &["tcp/80"]),
    );
    assert_eq!(
        h.refusals(),
        vec!["no_stanza", "replay", "port_not_allowed"]
    );
}

#[test]
fn max_grants_evicts_in_the_kernel_too() {
    let limited = Settings {
        max_grants: 2,
        ..settings()
    };
    let mut h = Harness::new(
        engine_with(vec![plain("ssh", &["7000", "8000"])], limited),
        NOW,
    );
    let addrs: Vec<IpAddr> = (1..=3).map(|i| ip(&format!("198.51.100.{i}"))).collect();
    for a in &addrs {
        h.knock(*a, server(), &knocks(&["7000", "8000"]));
    }
    assert!(
        !h.admits(addrs[0], SSH),
        "the oldest-closing grant went, in the kernel too"
    );
    assert!(h.admits(addrs[1], SSH) && h.admits(addrs[2], SSH));
    assert!(h
        .notes
        .iter()
        .any(|n| matches!(n, Note::GrantEvicted { .. })));
}

#[test]
fn a_failing_firewall_leaves_no_grant_in_the_books() {
    let mut h = harness(vec![plain("ssh", &["7000", "8000"])]);
    h.world.firewall.failing = true;
    let alice = ip("198.51.100.7");
    h.knock(alice, server(), &knocks(&["7000", "8000"]));
    assert_eq!(h.engine.grant_count(), 0);
    assert!(h.notes.iter().any(|n| matches!(n, Note::OpenFailed { .. })));
}

#[test]
fn a_lost_table_is_restored_with_every_grant() {
    let mut h = harness(vec![plain("ssh", &["7000", "8000"])]);
    let alice = ip("198.51.100.7");
    h.knock(alice, server(), &knocks(&["7000", "8000"]));
    h.world.firewall.grants.clear();
    h.world.firewall.ruleset = None;
    let now = h.now;
    assert_eq!(h.engine.restore(now, &mut h.world), Ok(1));
    assert!(h.admits(alice, SSH));
    assert!(h.world.firewall.ruleset.is_some());
}

#[test]
fn reload_keeps_grants_of_kept_doors_and_revokes_the_others() {
    let mut web = plain("web", &["7100", "8100"]);
    web.door.services.push(Service::tcp(443));
    let mut h = harness(vec![plain("ssh", &["7000", "8000"]), web]);
    let alice = ip("198.51.100.7");
    h.knock(alice, server(), &knocks(&["7000", "8000"]));
    h.knock(alice, server(), &knocks(&["7100", "8100"]));
    let mut next = engine(vec![plain("ssh", &["7000", "8000"])]);
    let now = h.now;
    let carried = next.take_over(&mut h.engine, now, &mut h.world);
    assert_eq!((carried.kept, carried.revoked), (1, 1));
    h.engine = next;
    assert!(
        h.admits(alice, SSH),
        "ssh's grant kept: web's revoke leaves what ssh still holds"
    );
    assert!(
        !h.admits(alice, Service::tcp(443)),
        "web's own service revoked"
    );
    assert_eq!(h.engine.grant_count(), 1);
}

#[test]
fn on_open_and_on_close_commands_are_rendered_per_service() {
    let mut d = plain("ssh", &["7000", "8000"]);
    d.door.on_open = sesame_core::Commands::both(Some(sesame_core::CommandTemplate::argv([
        "/bin/log", "%IP%",
    ])));
    d.door.on_close = sesame_core::Commands::both(Some(sesame_core::CommandTemplate::argv([
        "/bin/close",
        "%IP%",
    ])));
    let mut h = harness(vec![d]);
    let alice = ip("198.51.100.7");
    h.knock(alice, server(), &knocks(&["7000", "8000"]));
    h.advance(Duration::from_secs(31));
    let argv: Vec<Vec<String>> = h.runs.iter().map(|r| r.argv.clone()).collect();
    assert_eq!(
        argv,
        vec![
            vec!["/bin/log".to_string(), "198.51.100.7".into()],
            vec!["/bin/close".to_string(), "198.51.100.7".into()]
        ]
    );
}

#[test]
fn a_reload_keeps_requests_waiting_for_the_store_and_refuses_those_of_removed_doors() {
    let (d, key) = spa_door(false);
    let mut h = harness(vec![d]);
    h.world.replay.as_mut().unwrap().mode = StoreMode::Deferred;
    let alice = ip("198.51.100.7");
    send_spa(&mut h, alice, &spa_packet(&key, 1, NOW, None));
    let (same, _) = spa_door(false);
    let mut next = engine(vec![same]);
    let now = h.now;
    next.take_over(&mut h.engine, now, &mut h.world);
    h.engine = next;
    h.answer(true);
    assert!(h.admits(alice, SSH), "the answer reaches the new engine");
    // The door goes away while a request waits: refused, and said so.
    let bob = ip("198.51.100.8");
    send_spa(&mut h, bob, &spa_packet(&key, 2, NOW, None));
    let mut without = engine(vec![plain("ssh", &["7000", "8000"])]);
    let now = h.now;
    without.take_over(&mut h.engine, now, &mut h.world);
    h.engine = without;
    h.tick();
    h.answer(true);
    assert!(!h.admits(bob, SSH));
    assert_eq!(h.refusals(), vec!["door_removed"]);
}

#[test]
fn a_silent_store_cannot_make_requests_pile_up() {
    let (d, key) = spa_door(false);
    let mut h = harness(vec![d]);
    let store = h.world.replay.as_mut().unwrap();
    store.mode = StoreMode::Deferred;
    // Room in the spent set for every request, so only the cap refuses.
    store.cache = sesame_core::ReplayCache::new(4 * MAX_PENDING);
    for i in 0..=MAX_PENDING as u64 {
        let src = IpAddr::from([10, (i >> 16) as u8, (i >> 8) as u8, i as u8]);
        let mut payload_nonce = [0u8; 16];
        payload_nonce[..8].copy_from_slice(&i.to_be_bytes());
        let payload = Payload {
            timestamp: NOW,
            nonce: payload_nonce,
            services: vec![SSH],
            duration: 0,
            address: None,
        };
        let mut aead_nonce = [0u8; 24];
        aead_nonce[..8].copy_from_slice(&i.to_be_bytes());
        let packet = spa::encode_symmetric(&key, &payload, aead_nonce).unwrap();
        send_spa(&mut h, src, &packet);
    }
    let refusals = h.refusals();
    assert_eq!(
        refusals.len(),
        1,
        "only the one past the cap: {:?}",
        &refusals[..refusals.len().min(3)]
    );
    assert_eq!(refusals[0], "replay_store_busy");
}

/// Under a flood the driver has the engine tally first knocks: one note per
/// door and batch instead of one per spoofed packet, with the same counts,
/// and a real knocker still gets in.
#[test]
fn a_flood_of_first_knocks_is_tallied_and_the_real_knock_still_opens() {
    let mut h = harness(vec![plain("ssh", &["7000", "8000:udp", "9000"])]);
    h.engine.tally_first_knocks(true);
    let flood: Vec<Observation> = (0..200u8)
        .map(|i| first_knock_from(IpAddr::from([203, 0, 113, i])))
        .collect();
    h.observe(&flood);
    let noted = |h: &Harness| {
        h.notes
            .iter()
            .filter(|n| matches!(n, Note::Knock { .. }))
            .count()
    };
    let tallies: Vec<(u64, u64)> = h
        .notes
        .iter()
        .filter_map(|n| match n {
            Note::FirstKnocks {
                stages, evictions, ..
            } => Some((*stages, *evictions)),
            _ => None,
        })
        .collect();
    assert_eq!(noted(&h), 0, "no note per first knock while tallying");
    assert_eq!(tallies, [(200, 0)]);
    let alice = ip("198.51.100.7");
    h.knock(alice, server(), &knocks(&["7000", "8000:udp", "9000"]));
    assert!(
        h.admits(alice, SSH),
        "the real knock opens during the flood"
    );
    // Later stages are still noted one by one.
    assert_eq!(noted(&h), 2, "stage 2 and the opening");
    h.engine.tally_first_knocks(false);
    h.knock(ip("198.51.100.8"), server(), &knocks(&["7000"]));
    assert!(h.notes.iter().any(|n| matches!(
        n,
        Note::Knock {
            event: Event::Stage { matched: 1, .. },
            ..
        }
    )));
}

fn first_knock_from(src: IpAddr) -> Observation {
    Observation {
        src,
        dst: server(),
        proto: Proto::Tcp,
        dst_port: 7000,
        tcp_flags: sesame_core::door::tcp_flag::SYN,
    }
}

#[test]
fn a_gateway_door_forwards_for_the_knocker_only_within_its_family_and_revoke_closes_it() {
    let forwards: Vec<Forward> = [
        "tcp/2222 -> 10.2.0.2:22",
        "tcp/2222 -> [2001:db8:2::2]:22",
        "tcp/10.2.0.3:443",
        "tcp/2223 -> 22",
    ]
    .iter()
    .map(|f| f.parse().unwrap())
    .collect();
    let gateway = EngineDoor {
        door: Door {
            forwards: forwards.clone(),
            ..Door::new("gw", knocks(&["7000", "8000", "9000"]), vec![])
        },
        kind: DoorKind::Sequence,
        fleet: None,
    };
    let mut h = harness(vec![gateway]);
    // The ruleset closes the public ports and knows the inner services.
    let ruleset = h.world.firewall.ruleset.clone().unwrap();
    assert!(ruleset.protected.contains(&Service::tcp(2222)));
    assert!(ruleset.protected.contains(&Service::tcp(2223)));
    assert_eq!(ruleset.forwards.len(), 4);
    let (alice, bob) = (ip("198.51.100.7"), ip("198.51.100.8"));
    h.knock(alice, server(), &knocks(&["7000", "8000", "9000"]));
    let fw = &h.world.firewall;
    assert!(fw.forwards(alice, forwards[0]), "IPv4 DNAT");
    assert!(
        !fw.forwards(alice, forwards[1]),
        "an IPv6 forward for an IPv4 knocker"
    );
    assert!(fw.forwards(alice, forwards[2]), "route");
    assert!(fw.forwards(alice, forwards[3]), "redirect");
    assert!(
        h.admits(alice, Service::tcp(22)),
        "a redirect's local port is granted"
    );
    assert!(!fw.forwards(bob, forwards[0]), "only for the knocker");
    // The kernel closes it with the grant.
    h.advance(Duration::from_secs(31));
    assert!(!h.world.firewall.forwards(alice, forwards[0]));
    // Revoke closes it at once.
    h.knock(alice, server(), &knocks(&["7000", "8000", "9000"]));
    assert!(h.world.firewall.forwards(alice, forwards[0]));
    h.engine.revoke(alice, None, "test", &mut h.world).unwrap();
    assert!(!h.world.firewall.forwards(alice, forwards[0]));
    assert!(!h.admits(alice, Service::tcp(22)));
}

/// An fwknop NAT message of `msg_type` for `tcp/22`, NAT field `nat`.
fn fwknop_nat_packet(random: u64, msg_type: fk::MsgType, nat: (&str, u16)) -> Vec<u8> {
    let access = vec![AccessPort::Service(SSH)];
    let mut req = FwknopRequest::access("alice", NOW, None, access);
    req.msg_type = msg_type;
    req.nat_access = Some((nat.0.to_string(), nat.1));
    fk::encode(&req, &fwknop_keys(), random, [random as u8; 8])
        .unwrap()
        .into_bytes()
}

#[test]
fn fwknop_nat_requests_forward_only_where_enabled_and_only_to_allowed_hosts() {
    let alice = ip("198.51.100.7");
    let inner = "10.2.0.2:22".parse().unwrap();
    let send = |h: &mut Harness, random: u64, t: fk::MsgType, nat: (&str, u16)| {
        h.packet(
            alice,
            server(),
            Proto::Udp,
            62201,
            &fwknop_nat_packet(random, t, nat),
        );
    };
    // NAT disabled (fwknopd's default): refused with its own reason.
    let mut h = harness(vec![fwknop_door()]);
    send(&mut h, 1, fk::MsgType::NatAccess, ("10.2.0.2", 22));
    send(&mut h, 2, fk::MsgType::LocalNatAccess, ("192.0.2.1", 22));
    assert_eq!(h.refusals(), vec!["nat_disabled", "nat_disabled"]);
    // Enabled, with an allow-list.
    let nat = FwknopNat {
        forwarding: true,
        local: true,
        hosts: vec![(ip("10.2.0.0"), 24)],
    };
    let mut h = harness(vec![fwknop_door_with(nat)]);
    assert!(h.world.firewall.ruleset.as_ref().unwrap().gateway);
    send(&mut h, 3, fk::MsgType::NatAccess, ("10.9.0.2", 22));
    send(&mut h, 4, fk::MsgType::NatAccess, ("inner.example", 22));
    assert_eq!(
        h.refusals(),
        vec!["nat_host_not_allowed", "nat_host_not_allowed"]
    );
    send(&mut h, 5, fk::MsgType::NatAccess, ("10.2.0.2", 22));
    let dnat = Forward::Dnat {
        proto: Proto::Tcp,
        public_port: 22,
        inner,
        masquerade: false,
    };
    assert!(
        h.world.firewall.forwards(alice, dnat),
        "NAT access forwarded"
    );
    assert!(
        !h.admits(alice, SSH),
        "a NAT request opens the forward, not the local port"
    );
    // The forward closes with the grant.
    h.advance(Duration::from_secs(31));
    assert!(!h.world.firewall.forwards(alice, dnat));
    // Local NAT: the requested port is redirected to the NAT port here.
    send(&mut h, 6, fk::MsgType::LocalNatAccess, ("192.0.2.1", 22));
    let redirect = Forward::Redirect {
        proto: Proto::Tcp,
        public_port: 22,
        local_port: 22,
    };
    assert!(h.world.firewall.forwards(alice, redirect));
    assert!(h.admits(alice, SSH), "the local NAT port is granted");
    // The grant lists the forward its request asked for (what revoke
    // --kill-flows cuts).
    let listed = h.engine.grants();
    assert_eq!(listed[0].forwards, vec![redirect]);
    let revoked = h.engine.revoke(alice, None, "test", &mut h.world).unwrap();
    assert_eq!(revoked[0].forwards, vec![redirect]);
    assert!(!h.world.firewall.forwards(alice, redirect));
}
