//! Property tests for the sans-IO core: the tracker against noise and against
//! a naive reference model, and the packet parser against arbitrary input.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use proptest::prelude::*;
use sesame_core::door::tcp_flag::{ACK, FIN, PSH, RST, SYN};
use sesame_core::packet::{self, testing};
use sesame_core::{
    Door, DoorId, Event, Instant, Knock, Observation, Proto, Service, TcpFlags, Tracker,
};

const SEED: [u64; 2] = [0xdead, 0xbeef];
const SERVER: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1));

fn knocker() -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(203, 0, 113, 77))
}

/// Source `i` of a small pool, half IPv4 and half IPv6, never the knocker.
fn source(i: u8) -> IpAddr {
    if i % 2 == 0 {
        IpAddr::V4(Ipv4Addr::new(198, 51, 100, i))
    } else {
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, u16::from(i)))
    }
}

fn make_door(sequence: Vec<Knock>, seq_timeout_ms: u64, tcp_flags: TcpFlags) -> Door {
    let ssh = Service::tcp(22);
    Door {
        seq_timeout: Duration::from_millis(seq_timeout_ms),
        tcp_flags,
        ..Door::new("d", sequence, vec![ssh])
    }
}

fn proto() -> impl Strategy<Value = Proto> {
    prop_oneof![Just(Proto::Tcp), Just(Proto::Udp)]
}

/// Knocks over a small port range so that random traffic hits them often.
fn knock(ports: std::ops::Range<u16>) -> impl Strategy<Value = Knock> {
    (ports, proto()).prop_map(|(port, proto)| Knock { port, proto })
}

fn flags() -> impl Strategy<Value = u8> {
    prop_oneof![
        Just(SYN),
        Just(SYN | ACK),
        Just(ACK),
        Just(FIN),
        Just(RST | ACK),
        Just(0),
        any::<u8>(),
    ]
}

fn tcp_flag_rule() -> impl Strategy<Value = TcpFlags> {
    prop_oneof![
        Just(TcpFlags::SYN_NOT_ACK),
        Just(TcpFlags { set: 0, clear: 0 }),
        Just(TcpFlags {
            set: FIN | PSH,
            clear: SYN,
        }),
        Just(TcpFlags { set: ACK, clear: 0 }),
    ]
}

proptest! {
    /// Other sources' traffic, and the knocker's own non-knock packets, never
    /// stop the knocker's in-time, in-order sequence from opening its door.
    #[test]
    fn noise_never_prevents_a_valid_knock(
        sequence in prop::collection::vec(knock(1000..1008), 1..=6),
        other_doors in prop::collection::vec(
            prop::collection::vec(knock(1000..1008), 1..=4), 0..=2),
        step in 0u64..800,
        start in 0u64..10_000,
        noise in prop::collection::vec(
            (0u8..40, knock(995..1012), flags(), 0u64..6_000), 0..200),
        knocker_junk in prop::collection::vec((knock(995..1012), 0u64..6_000), 0..20),
    ) {
        const TIMEOUT_MS: u64 = 5_000;
        let len = sequence.len() as u64;
        // All knocks strictly within the timeout.
        let step = step.min((TIMEOUT_MS - 1) / len);
        let mut doors = vec![make_door(sequence.clone(), TIMEOUT_MS, TcpFlags::SYN_NOT_ACK)];
        doors.extend(other_doors.into_iter().map(|s| make_door(s, 1_000, TcpFlags::default())));
        let mut tracker = Tracker::new(doors, 1024, SEED);

        // (time, order, observation, is a knock of the knocker)
        let mut timeline: Vec<(u64, usize, Observation, bool)> = Vec::new();
        for (i, k) in sequence.iter().enumerate() {
            let obs = Observation { src: knocker(), dst: SERVER, proto: k.proto, dst_port: k.port, tcp_flags: SYN };
            timeline.push((start + i as u64 * step, timeline.len(), obs, true));
        }
        for &(src, k, flags, at) in &noise {
            let obs = Observation { src: source(src), dst: SERVER, proto: k.proto, dst_port: k.port, tcp_flags: flags };
            timeline.push((start + at, timeline.len(), obs, false));
        }
        // The knocker's own TCP packets with ACK set are not knocks for a
        // syn,!ack door (e.g. an existing SSH session), whatever the port.
        for &(k, at) in &knocker_junk {
            let obs = Observation { src: knocker(), dst: SERVER, proto: Proto::Tcp, dst_port: k.port, tcp_flags: ACK };
            timeline.push((start + at, timeline.len(), obs, false));
        }
        timeline.sort_by_key(|&(at, order, _, _)| (at, order));

        let mut events = Vec::new();
        let mut opened_at = None;
        for &(at, _, obs, is_knock) in &timeline {
            let now = Instant::from_millis(at);
            tracker.expire(now, &mut events);
            let before = events.len();
            tracker.observe(now, &obs, &mut events);
            if events[before..].contains(&Event::Open { src: knocker(), door: 0 }) {
                prop_assert!(is_knock, "opened by a non-knock packet");
                opened_at.get_or_insert(at);
            }
        }
        prop_assert_eq!(opened_at, Some(start + (len - 1) * step));
        for e in &events {
            if e.src() == knocker() && e.door() == 0 {
                prop_assert!(
                    matches!(e, Event::Stage { .. } | Event::Duplicate { .. } | Event::Open { .. }),
                    "knocker disturbed: {:?}", e
                );
            }
        }
    }
}

/// One step of a random run: a packet `delay` ms after the previous step, or
/// a timer tick.
#[derive(Clone, Debug)]
enum Op {
    Packet {
        src: u8,
        knock: Knock,
        flags: u8,
        delay: u64,
    },
    Tick {
        delay: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0u8..4, knock(1000..1006), flags(), 0u64..400)
            .prop_map(|(src, knock, flags, delay)| Op::Packet { src, knock, flags, delay }),
        1 => (0u64..1_000).prop_map(|delay| Op::Tick { delay }),
    ]
}

fn doors() -> impl Strategy<Value = Vec<Door>> {
    prop::collection::vec(
        (
            prop::collection::vec(knock(1000..1006), 1..=4),
            100u64..2_000,
            tcp_flag_rule(),
        )
            .prop_map(|(seq, timeout, flags)| make_door(seq, timeout, flags)),
        1..=3,
    )
}

fn is_knock_for(door: &Door, obs: &Observation) -> bool {
    door.sequence.contains(&obs.knock())
        && (obs.proto == Proto::Udp || door.tcp_flags.matches(obs.tcp_flags))
}

/// True when the packets of `src` up to and including `history[end]` contain
/// `door`'s sequence in order, ending with `history[end]`, with the first
/// knock less than `seq_timeout` before the last. Matching backwards and
/// taking the latest candidate each time gives the latest possible start.
fn earned(history: &[(u64, Observation)], end: usize, door: &Door) -> bool {
    let (end_at, last) = history[end];
    let seq = &door.sequence;
    if last.knock() != seq[seq.len() - 1] || !is_knock_for(door, &last) {
        return false;
    }
    let mut pos = end;
    for want in seq[..seq.len() - 1].iter().rev() {
        let found = history[..pos].iter().rposition(|(_, obs)| {
            obs.src == last.src && obs.knock() == *want && is_knock_for(door, obs)
        });
        match found {
            Some(i) => pos = i,
            None => return false,
        }
    }
    let start_at = history[pos].0;
    Duration::from_millis(end_at - start_at) < door.seq_timeout
}

/// A deliberately naive reimplementation of the documented semantics, with
/// no index and no bounded table, to compare the tracker against.
#[derive(Default)]
struct Model {
    /// (src, door) -> (first knock time, knocks matched)
    attempts: HashMap<(IpAddr, DoorId), (u64, usize)>,
}

impl Model {
    fn observe(&mut self, doors: &[Door], now: u64, obs: &Observation) -> Vec<Event> {
        let mut out = Vec::new();
        for (id, door) in doors.iter().enumerate() {
            if !is_knock_for(door, obs) {
                continue;
            }
            let src = obs.src;
            let got = obs.knock();
            let seq = &door.sequence;
            let timeout = door.seq_timeout.as_millis() as u64;
            if let Some(&(start, matched)) = self.attempts.get(&(src, id)) {
                if now >= start + timeout {
                    self.attempts.remove(&(src, id));
                    out.push(Event::Timeout {
                        src,
                        door: id,
                        matched,
                    });
                }
            }
            let mut restart = true;
            if let Some(&(start, matched)) = self.attempts.get(&(src, id)) {
                restart = false;
                if seq[matched] == got {
                    if matched + 1 == seq.len() {
                        self.attempts.remove(&(src, id));
                        out.push(Event::Open { src, door: id });
                    } else {
                        self.attempts.insert((src, id), (start, matched + 1));
                        out.push(Event::Stage {
                            src,
                            door: id,
                            matched: matched + 1,
                            of: seq.len(),
                        });
                    }
                } else if seq[matched - 1] == got {
                    out.push(Event::Duplicate {
                        src,
                        door: id,
                        matched,
                    });
                } else {
                    self.attempts.remove(&(src, id));
                    out.push(Event::Reset {
                        src,
                        door: id,
                        matched_before: matched,
                        got,
                    });
                    restart = true;
                }
            }
            if restart && seq[0] == got {
                if seq.len() == 1 {
                    out.push(Event::Open { src, door: id });
                } else {
                    self.attempts.insert((src, id), (now, 1));
                    out.push(Event::Stage {
                        src,
                        door: id,
                        matched: 1,
                        of: seq.len(),
                    });
                }
            }
        }
        out
    }

    fn expire(&mut self, doors: &[Door], now: u64) -> Vec<Event> {
        let mut out = Vec::new();
        self.attempts.retain(|&(src, door), &mut (start, matched)| {
            let alive = now < start + doors[door].seq_timeout.as_millis() as u64;
            if !alive {
                out.push(Event::Timeout { src, door, matched });
            }
            alive
        });
        out
    }
}

fn sorted(mut events: Vec<Event>) -> Vec<Event> {
    events.sort_by_key(|e| format!("{e:?}"));
    events
}

proptest! {
    /// Every Open for (src, door) is preceded, from that src, by the door's
    /// exact sequence in order within seq_timeout — whatever the table size.
    /// With a table big enough to never evict, the tracker's events also
    /// match the naive reference model exactly.
    #[test]
    fn open_only_when_earned(
        doors in doors(),
        ops in prop::collection::vec(op(), 0..300),
        small_table in any::<bool>(),
    ) {
        let capacity = if small_table { 3 } else { 10_000 };
        let mut tracker = Tracker::new(doors.clone(), capacity, SEED);
        let mut model = Model::default();
        let mut history: Vec<(u64, Observation)> = Vec::new();
        let mut now = 0u64;
        for op in &ops {
            let mut events = Vec::new();
            match *op {
                Op::Packet { src, knock, flags, delay } => {
                    now += delay;
                    let obs = Observation {
                        src: source(src),
                        dst: SERVER,
                        proto: knock.proto,
                        dst_port: knock.port,
                        tcp_flags: if knock.proto == Proto::Udp { 0 } else { flags },
                    };
                    history.push((now, obs));
                    tracker.observe(Instant::from_millis(now), &obs, &mut events);
                    let expected = model.observe(&doors, now, &obs);
                    for e in &events {
                        if let Event::Open { src, door } = *e {
                            prop_assert_eq!(src, obs.src);
                            prop_assert!(
                                earned(&history, history.len() - 1, &doors[door]),
                                "unearned open of door {} by {}", door, src
                            );
                        }
                    }
                    if !small_table {
                        prop_assert_eq!(&events, &expected);
                    }
                }
                Op::Tick { delay } => {
                    now += delay;
                    tracker.expire(Instant::from_millis(now), &mut events);
                    let expected = model.expire(&doors, now);
                    if !small_table {
                        prop_assert_eq!(sorted(events.clone()), sorted(expected));
                    }
                    let only_timeouts = events.iter().all(|e| matches!(e, Event::Timeout { .. }));
                    prop_assert!(only_timeouts, "expire emitted {:?}", events);
                    if let Some(next) = tracker.next_deadline() {
                        prop_assert!(next > Instant::from_millis(now));
                    }
                }
            }
            prop_assert!(tracker.in_progress() <= capacity);
            if !small_table {
                prop_assert_eq!(tracker.in_progress(), model.attempts.len());
            }
        }
    }
}

/// Builds a valid packet of one of the supported shapes.
fn valid_packet() -> impl Strategy<Value = Vec<u8>> {
    let v4 = any::<[u8; 4]>().prop_map(Ipv4Addr::from);
    let v6 = any::<[u8; 16]>().prop_map(Ipv6Addr::from);
    let l4 = (
        any::<bool>(),
        any::<u16>(),
        any::<u16>(),
        any::<u8>(),
        prop::collection::vec(any::<u8>(), 0..32),
    )
        .prop_map(|(is_tcp, sp, dp, fl, payload)| {
            if is_tcp {
                (testing::TCP, testing::tcp(sp, dp, fl, &payload))
            } else {
                (testing::UDP, testing::udp(sp, dp, &payload))
            }
        });
    let ext = prop_oneof![
        (0u8..3).prop_map(testing::Ext::HopByHop),
        (0u8..3).prop_map(testing::Ext::Routing),
        (0u8..3).prop_map(testing::Ext::DestOpts),
        (0u16..2, any::<bool>()).prop_map(|(offset, more)| testing::Ext::Fragment { offset, more }),
        (0u8..4).prop_map(testing::Ext::Auth),
    ];
    prop_oneof![
        (v4.clone(), v4, l4.clone()).prop_map(|(s, d, (p, l4))| testing::ipv4(s, d, p, &l4)),
        (v6.clone(), v6, prop::collection::vec(ext, 0..10), l4)
            .prop_map(|(s, d, exts, (p, l4))| testing::ipv6(s, d, &exts, p, &l4)),
    ]
}

proptest! {
    /// Arbitrary bytes never panic the parser.
    #[test]
    fn parse_never_panics_on_noise(
        first in prop_oneof![Just(0x45u8), Just(0x4f), Just(0x60), any::<u8>()],
        rest in prop::collection::vec(any::<u8>(), 0..200),
    ) {
        let mut bytes = vec![first];
        bytes.extend_from_slice(&rest);
        let _ = packet::parse(&bytes);
        let _ = packet::parse(&rest);
    }

    /// Corrupted and truncated valid packets never panic the parser, and a
    /// successful parse's payload lies inside the input.
    #[test]
    fn parse_never_panics_on_mutated_packets(
        packet in valid_packet(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = packet;
        for (at, value) in edits {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        let cut = cut.index(bytes.len() + 1);
        let bytes = &bytes[..cut];
        if let Ok(p) = packet::parse(bytes) {
            let range = bytes.as_ptr_range();
            let payload = p.payload.as_ptr_range();
            prop_assert!(range.start <= payload.start && payload.end <= range.end);
        }
    }

    /// What the builders put in, the parser gets out.
    #[test]
    fn parse_round_trips_built_packets(
        src in any::<[u8; 16]>(),
        dst in any::<[u8; 16]>(),
        v6 in any::<bool>(),
        is_tcp in any::<bool>(),
        sport in any::<u16>(),
        dport in any::<u16>(),
        fl in any::<u8>(),
        payload in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let (proto_num, l4) = if is_tcp {
            (testing::TCP, testing::tcp(sport, dport, fl, &payload))
        } else {
            (testing::UDP, testing::udp(sport, dport, &payload))
        };
        let (bytes, s, d): (Vec<u8>, IpAddr, IpAddr) = if v6 {
            let (s, d) = (Ipv6Addr::from(src), Ipv6Addr::from(dst));
            (testing::ipv6(s, d, &[], proto_num, &l4), s.into(), d.into())
        } else {
            let s = Ipv4Addr::new(src[0], src[1], src[2], src[3]);
            let d = Ipv4Addr::new(dst[0], dst[1], dst[2], dst[3]);
            (testing::ipv4(s, d, proto_num, &l4), s.into(), d.into())
        };
        let p = packet::parse(&bytes).unwrap();
        prop_assert_eq!((p.src, p.dst, p.src_port, p.dst_port), (s, d, sport, dport));
        prop_assert_eq!(p.proto, if is_tcp { Proto::Tcp } else { Proto::Udp });
        prop_assert_eq!(p.tcp_flags, if is_tcp { fl } else { 0 });
        prop_assert_eq!(p.payload, &payload[..]);
    }
}
