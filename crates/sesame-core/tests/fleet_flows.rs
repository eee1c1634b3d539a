//! Fleet mode in memory: three gateways, each an engine with a virtual
//! clock, share one in-memory store (the spent set and the signed entry
//! log Redis holds in production). From SPA and TOTP packet bytes to the
//! firewalls of all three, as a normal user, in milliseconds.
//!
//! Run them with `cargo test -p sesame-core --test fleet_flows`.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sesame_core::engine::*;
use sesame_core::fleet::{
    self, DoorFleet, EntryKind, FleetEntry, FleetPolicy, Signers, StoreDown, Targets,
};
use sesame_core::spa::{self, Credential, IdentityKey, Payload, SpaKey, UserPolicy, Verifier};
use sesame_core::{Door, Proto, Service};
use sesame_testkit::engine::{Harness, MemoryFleet, SharedStore};

const NOW: u64 = 1_800_000_000;
const SSH: Service = Service::tcp(22);
const GATEWAYS: [&str; 3] = ["gw-a", "gw-b", "gw-c"];

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn server() -> IpAddr {
    ip("192.0.2.1")
}

fn gateway_key(i: usize) -> IdentityKey {
    IdentityKey::from_seed(&[40 + i as u8; 32])
}

fn spa_door(open_on: Option<Targets>) -> EngineDoor {
    let mut verifier = Verifier::new(60, None);
    let policy = UserPolicy {
        services: vec![SSH],
        max_duration: 30,
        allow_address: false,
        retired_after: None,
    };
    let key = SpaKey::from_bytes(&[9u8; 32]);
    verifier
        .add_user("alice", Credential::Symmetric(key), policy)
        .unwrap();
    EngineDoor {
        door: Door {
            open_for: Duration::from_secs(30),
            ..Door::new("ssh", Vec::new(), vec![SSH])
        },
        kind: DoorKind::Spa(SpaDoor {
            port: 62201,
            verifier,
            roaming: false,
        }),
        fleet: Some(DoorFleet { open_on }),
    }
}

fn totp_door() -> EngineDoor {
    let door = Door::new("vpn", Vec::new(), vec![Service::udp(1194)]);
    let (mut door, _, _) = sesame_testkit::engine::totp_door(door);
    door.fleet = Some(DoorFleet { open_on: None });
    door
}

/// Three gateways on one store, each trusting the three keys.
fn fleet(
    doors: fn() -> Vec<EngineDoor>,
    down: StoreDown,
) -> (Vec<Harness>, Arc<Mutex<SharedStore>>) {
    let store = Arc::new(Mutex::new(SharedStore::default()));
    let signers = Signers::new(
        GATEWAYS
            .iter()
            .enumerate()
            .map(|(i, g)| (g.to_string(), gateway_key(i).public())),
    );
    let harnesses = GATEWAYS
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let settings = Settings {
                fleet: Some(FleetPolicy {
                    name: name.to_string(),
                    group: "edge".into(),
                    on_store_down: down,
                    timeout: Duration::from_millis(50),
                }),
                ..sesame_testkit::engine::test_settings()
            };
            let seeds = Seeds {
                tracker: [1, 2],
                grants: [3, 4],
                budget: [5, 6],
            };
            let engine = Engine::new(doors(), settings, seeds).unwrap();
            let mut h = Harness::new(engine, NOW);
            h.world.fleet = Some(MemoryFleet::new(
                name,
                "edge",
                gateway_key(i),
                signers.clone(),
                Arc::clone(&store),
            ));
            h
        })
        .collect();
    (harnesses, store)
}

fn group_doors() -> Vec<EngineDoor> {
    vec![spa_door(Some(Targets::Group)), totp_door()]
}

fn spa_packet(nonce: u8) -> Vec<u8> {
    let payload = Payload {
        timestamp: NOW,
        nonce: [nonce; 16],
        services: vec![SSH],
        duration: 0,
        address: None,
    };
    spa::encode_symmetric(&SpaKey::from_bytes(&[9u8; 32]), &payload, [nonce; 24]).unwrap()
}

fn deliver(gateways: &mut [Harness]) {
    for g in gateways {
        assert_eq!(g.deliver_fleet(), 0, "an honest entry did not verify");
    }
}

#[test]
fn one_knock_opens_the_group_for_the_knocker_only_and_it_closes_everywhere() {
    let (mut gw, _) = fleet(group_doors, StoreDown::Deny);
    let (alice, eve) = (ip("198.51.100.7"), ip("203.0.113.9"));
    gw[0].packet(alice, server(), Proto::Udp, 62201, &spa_packet(1));
    deliver(&mut gw);
    for (i, g) in gw.iter().enumerate() {
        assert!(g.admits(alice, SSH), "{} closed for alice", GATEWAYS[i]);
        assert!(!g.admits(eve, SSH), "{} open for eve", GATEWAYS[i]);
    }
    // B and C were told: their notes say who from.
    assert!(gw[1].notes.iter().any(|n| matches!(
        n,
        Note::FleetEntry { from, outcome: "applied", .. } if from == "gw-a"
    )));
    // The same packet replayed at B from eve's address: spent in the fleet.
    gw[1].packet(eve, server(), Proto::Udp, 62201, &spa_packet(1));
    assert!(!gw[1].admits(eve, SSH));
    assert_eq!(gw[1].refusals(), vec!["fleet_replay"]);
    // Every gateway closes on time (30 s), none before.
    for g in gw.iter_mut() {
        g.advance(Duration::from_secs(29));
        assert!(g.admits(alice, SSH), "closed early");
        g.advance(Duration::from_secs(2));
        assert!(!g.admits(alice, SSH), "still open after open_for");
    }
}

#[test]
fn a_totp_sequence_used_at_one_gateway_is_refused_at_another() {
    let (mut gw, _) = fleet(group_doors, StoreDown::Deny);
    let (_, spec, secret) = sesame_testkit::engine::totp_door(Door::new("vpn", vec![], vec![]));
    let sequence = spec.sequence(&secret, NOW / 30).unwrap();
    let (carol, eve) = (ip("198.51.100.7"), ip("203.0.113.9"));
    let vpn = Service::udp(1194);
    gw[0].knock(carol, server(), &sequence);
    assert!(gw[0].admits(carol, vpn));
    gw[1].knock(eve, server(), &sequence);
    assert!(!gw[1].admits(eve, vpn));
    assert_eq!(gw[1].refusals(), vec!["fleet_replay"]);
    // Not a group door: nothing travels.
    deliver(&mut gw);
    assert!(!gw[2].admits(carol, vpn));
}

#[test]
fn with_the_store_down_deny_refuses_and_local_is_single_use_here_only() {
    let alice = ip("198.51.100.7");
    let (mut gw, store) = fleet(group_doors, StoreDown::Deny);
    store.lock().unwrap().down = true;
    gw[0].packet(alice, server(), Proto::Udp, 62201, &spa_packet(1));
    assert!(!gw[0].admits(alice, SSH), "opened with the store down");
    assert_eq!(gw[0].refusals(), vec!["fleet_store_down"]);

    let (mut gw, store) = fleet(group_doors, StoreDown::Local);
    store.lock().unwrap().down = true;
    gw[0].packet(alice, server(), Proto::Udp, 62201, &spa_packet(2));
    assert!(gw[0].admits(alice, SSH), "local fallback refused");
    assert!(gw[0]
        .notes
        .iter()
        .any(|n| matches!(n, Note::FleetLocalOnly { .. })));
    // Still single use on this gateway.
    let eve = ip("203.0.113.9");
    gw[0].packet(eve, server(), Proto::Udp, 62201, &spa_packet(2));
    assert!(!gw[0].admits(eve, SSH));
    assert_eq!(gw[0].refusals(), vec!["replay"]);
    // The store is back: nothing was published while it was down.
    store.lock().unwrap().down = false;
    deliver(&mut gw);
    assert!(!gw[1].admits(alice, SSH));
}

#[test]
fn forged_stale_and_foreign_entries_are_ignored_and_revokes_travel() {
    let (mut gw, store) = fleet(group_doors, StoreDown::Deny);
    let (alice, mallory) = (ip("198.51.100.7"), ip("203.0.113.66"));
    let forged = FleetEntry {
        kind: EntryKind::Grant,
        from: "gw-a".into(),
        door: "ssh".into(),
        addr: mallory,
        services: vec![SSH],
        to: Targets::Group,
        made_ms: NOW * 1000,
        expires_ms: NOW * 1000 + 30_000,
    }
    .encode();
    let outsider = IdentityKey::from_seed(&[99; 32]);
    {
        let mut s = store.lock().unwrap();
        // Signed by a key no gateway trusts, and not signed at all.
        s.entries
            .push((forged.clone(), fleet::sign(&outsider, "edge", &forged)));
        s.entries.push((forged.clone(), [0u8; 64]));
        // Signed by gw-a for another group.
        s.entries.push((
            forged.clone(),
            fleet::sign(&gateway_key(0), "core", &forged),
        ));
    }
    for g in &mut gw {
        assert_eq!(g.deliver_fleet(), 3);
        assert!(!g.admits(mallory, SSH), "a forged entry opened a door");
    }
    // An entry that already expired is skipped.
    let stale = forged.replace(
        &format!("expires={}", NOW * 1000 + 30_000),
        &format!("expires={}", NOW * 1000 - 1),
    );
    let sig = fleet::sign(&gateway_key(0), "edge", &stale);
    store.lock().unwrap().entries.push((stale, sig));
    deliver(&mut gw);
    assert!(!gw[1].admits(mallory, SSH));
    assert!(gw[1].notes.iter().any(|n| matches!(
        n,
        Note::FleetEntry {
            outcome: "expired",
            ..
        }
    )));
    // A revoke at A closes B and C too; the old grant entry, delivered
    // again afterwards, does not reopen.
    gw[0].packet(alice, server(), Proto::Udp, 62201, &spa_packet(3));
    deliver(&mut gw);
    assert!(gw[2].admits(alice, SSH));
    let grant = store.lock().unwrap().entries.last().unwrap().clone();
    let a = &mut gw[0];
    a.engine
        .revoke(alice, None, "admin", &mut a.world)
        .expect("revoke");
    deliver(&mut gw);
    for g in &gw {
        assert!(!g.admits(alice, SSH), "the revoke did not travel");
    }
    store.lock().unwrap().entries.push(grant);
    deliver(&mut gw);
    assert!(!gw[2].admits(alice, SSH), "a replayed grant undid a revoke");
}

#[test]
fn grants_open_only_on_the_gateways_named() {
    fn doors() -> Vec<EngineDoor> {
        vec![spa_door(Some(Targets::Members(vec![
            "gw-a".into(),
            "gw-c".into(),
        ])))]
    }
    let (mut gw, _) = fleet(doors, StoreDown::Deny);
    let alice = ip("198.51.100.7");
    gw[0].packet(alice, server(), Proto::Udp, 62201, &spa_packet(1));
    deliver(&mut gw);
    assert!(gw[0].admits(alice, SSH));
    assert!(!gw[1].admits(alice, SSH), "opened on a gateway not named");
    assert!(gw[2].admits(alice, SSH));
    // A grant B makes does not travel: B is not in the door's list.
    let bob = ip("198.51.100.8");
    gw[1].packet(bob, server(), Proto::Udp, 62201, &spa_packet(2));
    deliver(&mut gw);
    assert!(gw[1].admits(bob, SSH));
    assert!(!gw[0].admits(bob, SSH) && !gw[2].admits(bob, SSH));
}

#[test]
fn a_hung_store_times_out_into_the_store_down_policy_and_a_late_answer_is_ignored() {
    let alice = ip("198.51.100.7");
    for (down, opens) in [(StoreDown::Deny, false), (StoreDown::Local, true)] {
        let (mut gw, store) = fleet(group_doors, down);
        store.lock().unwrap().hung = true;
        gw[0].packet(alice, server(), Proto::Udp, 62201, &spa_packet(1));
        assert!(
            !gw[0].admits(alice, SSH),
            "opened before the store answered"
        );
        // The fleet timeout is 50 ms.
        gw[0].advance(Duration::from_millis(60));
        assert_eq!(gw[0].admits(alice, SSH), opens, "{down:?}");
        if !opens {
            assert_eq!(gw[0].refusals(), vec!["fleet_store_down"]);
        }
        // The store answers at last: nothing changes.
        let ticket = gw[0].world.fleet.as_mut().unwrap().unanswered.remove(0);
        let h = &mut gw[0];
        h.engine
            .fleet_answered(h.now, ticket, fleet::SpendAnswer::Spent, &mut h.world);
        assert_eq!(
            h.admits(alice, SSH),
            opens,
            "a late answer changed {down:?}"
        );
    }
}

/// Revokes from another gateway (roaming users, admins) are remembered
/// only while a grant made before them could still arrive: the memory is
/// capped under a burst, and old revokes are forgotten after the door's
/// `open_for` and a minute.
#[test]
fn remembered_revokes_stay_bounded() {
    let (mut gw, store) = fleet(group_doors, StoreDown::Deny);
    let revokes = |gw: &Harness, first: u16, n: u16| {
        let made_ms = gw.now.unix * 1000;
        let mut s = store.lock().unwrap();
        for i in first..first + n {
            let line = FleetEntry {
                kind: EntryKind::Revoke,
                from: "gw-a".into(),
                door: "ssh".into(),
                addr: IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, i]),
                services: vec![SSH],
                to: Targets::Group,
                made_ms,
                expires_ms: made_ms + 30_000,
            }
            .encode();
            let sig = fleet::sign(&gateway_key(0), "edge", &line);
            s.entries.push((line, sig));
        }
    };
    revokes(&gw[1], 0, 1500);
    assert_eq!(gw[1].deliver_fleet(), 0);
    assert_eq!(gw[1].engine.fleet_revokes_held(), 1024, "capped");
    // open_for (30 s) and the minute's margin later, they are forgotten.
    gw[1].advance(Duration::from_secs(91));
    revokes(&gw[1], 2000, 10);
    assert_eq!(gw[1].deliver_fleet(), 0);
    assert_eq!(gw[1].engine.fleet_revokes_held(), 10);
}
