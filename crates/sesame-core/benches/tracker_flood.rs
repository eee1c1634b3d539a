//! Cost of one spoofed first knock in the tracker (the work sesamed does per
//! packet of flood (c), minus the NFLOG read and logging), with the table
//! full and evicting, at several table sizes.
//!
//! `cargo bench -p sesame-core --bench tracker_flood`. Each case runs 7
//! timed rounds of 2 M packets from distinct sources; the median is printed.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant as WallClock};

use sesame_core::{Door, Event, Instant, Observation, Proto, Service, Tracker};

const ROUNDS: usize = 7;
const PACKETS: u32 = 2_000_000;

fn door() -> Door {
    let sequence = ["7000", "8000:udp", "9000"]
        .iter()
        .map(|k| k.parse().expect("knock"))
        .collect();
    let ssh = Service::tcp(22);
    Door {
        seq_timeout: Duration::from_secs(5),
        ..Door::new("bench", sequence, vec![ssh])
    }
}

fn first_knock(src: u32) -> Observation {
    Observation {
        src: IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | (src & 0x00ff_ffff))),
        dst: IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1)),
        proto: Proto::Tcp,
        dst_port: 7000,
        tcp_flags: 0x02,
    }
}

fn main() {
    println!("tracker: spoofed first knocks from distinct sources, table full (median of {ROUNDS} rounds of {PACKETS})");
    for capacity in [10_000usize, 100_000, 1_000_000] {
        let mut tracker = Tracker::new(vec![door()], capacity, [7, 11]);
        let mut events: Vec<Event> = Vec::with_capacity(4);
        let mut src = 0u32;
        // Fill the table first: the timed rounds all evict.
        for _ in 0..capacity {
            tracker.observe(Instant::ZERO, &first_knock(src), &mut events);
            events.clear();
            src = src.wrapping_add(0x9e37_79b9);
        }
        let mut per_packet = Vec::new();
        for round in 0..ROUNDS {
            // 1 ms of simulated time per round: nothing expires (5 s timeout).
            let now = Instant::from_millis(round as u64);
            let start = WallClock::now();
            for _ in 0..PACKETS {
                tracker.observe(now, &first_knock(src), &mut events);
                black_box(&events);
                events.clear();
                src = src.wrapping_add(0x9e37_79b9);
            }
            per_packet.push(start.elapsed().as_nanos() as f64 / f64::from(PACKETS));
        }
        per_packet.sort_by(f64::total_cmp);
        assert!(tracker.in_progress() <= capacity, "table bound");
        println!(
            "  capacity {capacity:>9}: median {:>6.0} ns/packet ({:.2} M packets/s), range {:.0}–{:.0} ns",
            per_packet[ROUNDS / 2],
            1e3 / per_packet[ROUNDS / 2],
            per_packet[0],
            per_packet[ROUNDS - 1]
        );
    }
}
