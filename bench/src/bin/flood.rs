//! Standalone flood: `flood MODE SECONDS [MAX_PACKETS] [v6] [NNNkpps] [seq]`
//! (`NNNkpps`: paced rate; `seq`: sequential distinct sources) builds a fresh
//! testbed, sends one bounded flood from the client namespace to the server
//! address (nothing listens), and prints the offered and delivered rates.
//! MODE is a, b, c, d or e (see bench/README.md). Run as root.

use std::sync::atomic::AtomicBool;
use std::time::Duration;

use attack_bench::gen::{self, Mode, Port};
use sesame::testbed::{Side, Testbed, CLIENT2_V4, CLIENT_V6};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args
        .get(1)
        .and_then(|m| Mode::from_letter(m))
        .unwrap_or_else(|| {
            eprintln!("usage: flood a|b|c|d|e SECONDS [MAX_PACKETS] [v6] [NNNkpps] [seq]");
            std::process::exit(2)
        });
    let secs: f64 = args
        .get(2)
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(2.0)
        .min(60.0);
    let max: u64 = args
        .get(3)
        .and_then(|s| s.parse().ok())
        .unwrap_or(50_000_000);
    let v6 = args.iter().any(|a| a == "v6");
    let bed = Testbed::create("flood").expect("testbed (run as root)");
    for key in [
        "net.ipv4.conf.all.rp_filter",
        "net.ipv4.conf.sesame0.rp_filter",
    ] {
        let _ = std::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                &bed.server,
                "sysctl",
                "-qw",
                &format!("{key}=0"),
            ])
            .status();
    }
    gen::pin_neighbours(&bed).expect("neighbour entries");
    let rx = |bed: &Testbed| -> u64 {
        let out = std::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                &bed.server,
                "cat",
                "/sys/class/net/sesame0/statistics/rx_packets",
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0)
    };
    let rx0 = rx(&bed);
    let spec = gen::Spec {
        mode,
        dst: Testbed::addr(Side::Server, v6),
        knocks: vec![
            Port {
                port: 7000,
                udp: false,
            },
            Port {
                port: 8000,
                udp: true,
            },
            Port {
                port: 9000,
                udp: false,
            },
        ],
        avoid: vec![7000, 8000, 9000, 2222],
        spa_port: 62201,
        pk_template: None,
        sweep_src: if v6 {
            CLIENT_V6.into()
        } else {
            CLIENT2_V4.into()
        },
        max_packets: max,
        duration: Duration::from_secs_f64(secs),
        batch: 256,
        seed: 0,
        pps: args
            .iter()
            .find_map(|a| a.strip_suffix("kpps")?.parse::<u64>().ok())
            .unwrap_or(0)
            * 1000,
        sequential_from: args.iter().any(|a| a == "seq").then_some(0),
    };
    let rep = bed
        .run_in(Side::Client, move || {
            gen::flood(&spec, &AtomicBool::new(false))
        })
        .unwrap()
        .expect("flood");
    std::thread::sleep(Duration::from_millis(300));
    let delivered = rx(&bed) - rx0;
    println!(
        "mode {} ({}) {}: sent {} in {:.2} s = {:.0} kpps offered, {} errors; sesame0 rx {} ({:.0} kpps)",
        mode.letter(),
        mode.describe(),
        if v6 { "IPv6" } else { "IPv4" },
        rep.sent,
        rep.elapsed.as_secs_f64(),
        rep.pps() / 1e3,
        rep.errors,
        delivered,
        delivered as f64 / rep.elapsed.as_secs_f64() / 1e3
    );
}
