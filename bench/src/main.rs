//! Performance under attack: sesamed vs knockd (knock doors) and vs fwknopd
//! in pcap and UDP-server mode (SPA doors), side by side (issue 7): idle
//! RSS, latency (IPv4, IPv6), floods a–e at the generator's maximum, flood c
//! at a fixed rate for the CPU comparison, 1M distinct spoofed sources, the
//! binary sizes; one table, then the acceptance checks.
//! See bench/README.md. Run as root, through `bench/run`.

mod daemons;
mod pin;
mod table;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use attack_bench::gen::{self, Mode, Port};
use attack_bench::probe;
use attack_bench::spa::{Keys, SPA_PORT};
use daemons::{Kind, Under, PORT, SEQ};
use sesame::testbed::{Side, Testbed, CLIENT2_V4, CLIENT_V6};
use table::Table;

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn env_list(name: &str, default: &str) -> Vec<String> {
    env(name, default.to_string())
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

#[derive(Clone)]
struct Cfg {
    knocks: usize,
    flood_secs: f64,
    legit: usize,
    max_packets: u64,
    threads: usize,
    batch: usize,
    connect_limit: Duration,
    daemons: Vec<String>,
    floods: Vec<Mode>,
    floods_v6: Vec<Mode>,
    fixed_kpps: u64,
    distinct: u64,
    budget: Duration,
    pin: Option<pin::Cpus>,
}

impl Cfg {
    fn from_env() -> Cfg {
        let modes = |name: &str, default: &str| -> Vec<Mode> {
            env_list(name, default)
                .iter()
                .filter_map(|s| Mode::from_letter(s))
                .collect()
        };
        Cfg {
            knocks: env("BENCH_KNOCKS", 100usize).clamp(1, 500),
            flood_secs: env("BENCH_FLOOD_SECS", 10.0f64).clamp(0.5, 60.0),
            legit: env("BENCH_LEGIT_KNOCKS", 20usize).clamp(1, 100),
            max_packets: env("BENCH_FLOOD_MAX_PACKETS", 100_000_000u64),
            threads: env("BENCH_FLOOD_THREADS", 1usize).clamp(1, 8),
            batch: env("BENCH_FLOOD_BATCH", 256usize),
            connect_limit: Duration::from_millis(
                env("BENCH_CONNECT_LIMIT_MS", 3000u64).clamp(100, 10_000),
            ),
            daemons: env_list("BENCH_DAEMONS", &daemons::ALL.join(",")),
            floods: modes("BENCH_FLOODS", "a,b,c,d,e,f"),
            floods_v6: modes("BENCH_FLOODS_V6", "c"),
            fixed_kpps: env("BENCH_FIXED_KPPS", 100u64),
            distinct: env("BENCH_DISTINCT_SOURCES", 1_000_000u64).min(0x00ff_fffe),
            budget: Duration::from_secs(env("BENCH_BUDGET_SECS", 480u64)),
            pin: if env("BENCH_PIN", 1u8) == 1 {
                pin::Cpus::detect()
            } else {
                None
            },
        }
    }

    fn flood_dur(&self) -> Duration {
        Duration::from_secs_f64(self.flood_secs)
    }
}

/// CPU seconds (user + system, including waited-for children such as
/// knockd's and fwknopd's firewall commands) of `pid`.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    // After ')': state is index 0; utime, stime, cutime, cstime are 11..15.
    let ticks: u64 = (11..15)
        .filter_map(|i| f.get(i).and_then(|v| v.parse::<u64>().ok()))
        .sum();
    // SAFETY: sysconf only reads a system constant; no pointers involved.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    ticks as f64 / hz.max(1) as f64
}

fn status_kb(pid: u32, key: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with(key))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Resets the peak RSS (VmHWM) of `pid` (Linux ≥ 4.0).
fn reset_hwm(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

fn rx_packets(bed: &Testbed) -> u64 {
    daemons::ns_exec(
        &bed.server,
        &["cat", "/sys/class/net/sesame0/statistics/rx_packets"],
    )
    .ok()
    .and_then(|s| s.trim().parse().ok())
    .unwrap_or(0)
}

/// sesamed's metrics (name with labels → value), fetched inside the server
/// namespace; bounded by socket timeouts and a 4 MiB read.
fn scrape_at(addr: SocketAddr) -> Option<Vec<(String, f64)>> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.set_write_timeout(Some(Duration::from_secs(1))).ok()?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: bench\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    s.take(4 << 20).read_to_string(&mut text).ok()?;
    Some(
        text.lines()
            .filter(|l| l.starts_with("sesame_"))
            .filter_map(|l| {
                let (k, v) = l.rsplit_once(' ')?;
                Some((k.to_string(), v.parse().ok()?))
            })
            .collect(),
    )
}

fn scrape(u: &Under) -> Option<Vec<(String, f64)>> {
    let addr = u.metrics?;
    u.bed
        .run_in(Side::Server, move || scrape_at(addr))
        .ok()
        .flatten()
}

fn metric(m: &Option<Vec<(String, f64)>>, name: &str) -> Option<f64> {
    let m = m.as_ref()?;
    let v: Vec<f64> = m
        .iter()
        .filter(|(k, _)| k == name || k.starts_with(&format!("{name}{{")))
        .map(|(_, v)| *v)
        .collect();
    (!v.is_empty()).then(|| v.iter().sum())
}

#[derive(Default, Clone)]
struct Lat {
    samples: Vec<Duration>,
    tried: usize,
    /// (index, time) of the openings slower than 1 ms, for BENCH_VERBOSE.
    slow: Vec<(usize, Duration)>,
}

impl Lat {
    fn sorted(&self) -> Vec<Duration> {
        let mut s = self.samples.clone();
        s.sort();
        s
    }
    fn ok(&self) -> String {
        format!("{}/{}", self.samples.len(), self.tried)
    }
}

/// Legitimate door openings from `srcs` (fresh sources), each timed from
/// its last packet to a completed TCP connect; spread evenly over `spread`
/// (during floods), else back to back. Bounded: `srcs.len()` openings of at
/// most `limit` each, plus the spread.
fn legit_run(
    pin: Option<&pin::Cpus>,
    bed: &Testbed,
    legit: &daemons::Legit,
    srcs: Vec<IpAddr>,
    v6: bool,
    limit: Duration,
    spread: Duration,
) -> Result<Lat, String> {
    let dst = Testbed::addr(Side::Server, v6);
    let legit = legit.clone();
    let n = srcs.len();
    let cpu = pin.map(|p| p.generator(0));
    bed.run_in(Side::Client, move || {
        let _ = nix::sys::prctl::set_name(c"bench-legit");
        if let Some(cpu) = cpu {
            pin::this_thread(cpu);
        }
        nix::sys::prctl::set_timerslack(1).ok();
        let mut lat = Lat::default();
        let t0 = Instant::now();
        for (i, src) in srcs.into_iter().enumerate() {
            lat.tried += 1;
            let start = legit.fire(src, dst);
            if let Some(d) = probe::time_to_connect(src, dst, PORT, start, limit) {
                lat.samples.push(d);
                if d > Duration::from_millis(1) {
                    lat.slow.push((i, d));
                }
            }
            let due = t0 + spread.mul_f64((i + 1) as f64 / n as f64);
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
        }
        lat
    })
    .map_err(|e| e.to_string())
}

fn fresh(u: &mut Under, v6: bool, n: usize) -> Result<Vec<IpAddr>, String> {
    (0..n).map(|_| u.sources.next(v6)).collect()
}

/// `n` openings back to back from fresh sources.
fn latency_run(
    pin: Option<&pin::Cpus>,
    u: &mut Under,
    v6: bool,
    n: usize,
    limit: Duration,
) -> Result<Lat, String> {
    let srcs = fresh(u, v6, n)?;
    legit_run(pin, &u.bed, &u.legit, srcs, v6, limit, Duration::ZERO)
}

/// The protected port must be closed before anything opens it.
fn check_closed(u: &mut Under, v6: bool) -> Result<(), String> {
    let src = u.sources.next(v6)?;
    let dst = Testbed::addr(Side::Server, v6);
    let open = u
        .bed
        .run_in(Side::Client, move || {
            probe::time_to_connect(src, dst, PORT, Instant::now(), Duration::from_millis(300))
        })
        .map_err(|e| e.to_string())?;
    match open {
        Some(_) => Err(format!(
            "{}: TCP {PORT} is reachable from {src} without knocking: the door is not closed",
            u.name
        )),
        None => Ok(()),
    }
}

/// One flood scenario.
struct Plan {
    label: String,
    mode: Mode,
    v6: bool,
    pps: u64,
    max_packets: u64,
    sequential: bool,
    dur: Duration,
    /// The legitimate openings are spread over this (the expected flood
    /// time).
    spread: Duration,
    legit: usize,
    after: usize,
}

#[derive(Default)]
struct FloodRow {
    offered_pps: f64,
    sent: u64,
    errors: u64,
    delivered: u64,
    lat: Lat,
    after: Lat,
    cpu: f64,
    hwm_kb: u64,
    hwm_reset: bool,
    log_lines: u64,
    nflog_seen: Option<f64>,
    overruns: Option<f64>,
    evictions: Option<f64>,
    tracker_peak: Option<f64>,
    tracker_final: Option<usize>,
}

/// How long the daemon gets to drain its backlog after the flood: its CPU
/// in that second belongs to the flood too.
const DRAIN: Duration = Duration::from_secs(1);

/// What is read at the end of the measurement window.
struct Snap {
    cpu: f64,
    hwm_kb: u64,
    lines: u64,
    rx: u64,
    metrics: Option<Vec<(String, f64)>>,
}

fn snap(u: &Under) -> Snap {
    Snap {
        cpu: cpu_secs(u.pid),
        hwm_kb: status_kb(u.pid, "VmHWM:").unwrap_or(0),
        lines: u.out.count(),
        rx: rx_packets(&u.bed),
        metrics: scrape(u),
    }
}

/// One flood with legitimate openings through it. The daemon's CPU, peak
/// RSS, log lines and the delivered packets are taken over the same window
/// for every daemon: from the flood's start to [`DRAIN`] after its end
/// (whatever the legitimate client is still waiting for).
fn flood_run(u: &mut Under, plan: &Plan, cfg: &Cfg) -> Result<FloodRow, String> {
    let srcs = fresh(u, plan.v6, plan.legit)?;
    let after_srcs = fresh(u, plan.v6, plan.after)?;
    let hwm_reset = reset_hwm(u.pid);
    let s0 = snap(u);
    let stop = Arc::new(AtomicBool::new(false));
    let threads = cfg.threads as u64;
    let mut gens = Vec::new();
    for t in 0..threads {
        let share = plan.max_packets / threads;
        let spec = gen::Spec {
            mode: plan.mode,
            dst: Testbed::addr(Side::Server, plan.v6),
            knocks: SEQ
                .iter()
                .map(|k| Port {
                    port: k.port,
                    udp: k.proto == sesame_core::Proto::Udp,
                })
                .collect(),
            avoid: vec![7000, 8000, 9000, PORT, SPA_PORT],
            spa_port: SPA_PORT,
            pk_template: u.pk.as_ref().map(|c| (c.packet(), c.mac1_key())),
            sweep_src: if plan.v6 {
                CLIENT_V6.into()
            } else {
                CLIENT2_V4.into()
            },
            max_packets: share,
            duration: plan.dur,
            batch: cfg.batch,
            seed: 0x5eed_0000 + t * 7919 + plan.mode.letter().as_bytes()[0] as u64,
            pps: plan.pps / threads,
            sequential_from: plan.sequential.then_some(t * share),
        };
        let stop = stop.clone();
        let cpu = cfg.pin.as_ref().map(|p| p.generator(t as usize));
        gens.push(
            u.bed
                .spawn_in(Side::Client, move || {
                    let _ = nix::sys::prctl::set_name(c"bench-gen");
                    if let Some(cpu) = cpu {
                        pin::this_thread(cpu);
                    }
                    gen::flood(&spec, &stop)
                })
                .map_err(|e| e.to_string())?,
        );
    }
    // sesamed: sample the tracker size every 250 ms (bounded count).
    let sampler = match u.metrics {
        Some(addr) => {
            let stop = stop.clone();
            let polls = (plan.dur.as_millis() / 250 + 40) as usize;
            Some(
                u.bed
                    .spawn_in(Side::Server, move || {
                        let _ = nix::sys::prctl::set_name(c"bench-sampler");
                        let mut peak: Option<f64> = None;
                        for _ in 0..polls {
                            if stop.load(Ordering::Relaxed) {
                                break;
                            }
                            let m = scrape_at(addr);
                            if let Some(v) = metric(&m, "sesame_tracker_size") {
                                peak = Some(peak.map_or(v, |p: f64| p.max(v)));
                            }
                            std::thread::sleep(Duration::from_millis(250));
                        }
                        peak
                    })
                    .map_err(|e| e.to_string())?,
            )
        }
        None => None,
    };
    let u_ref: &Under = u;
    // The legitimate client's openings: under the flood, then after it.
    let run_legit = |srcs: Vec<IpAddr>, spread: Duration| {
        let (bed, legit) = (&u_ref.bed, &u_ref.legit);
        legit_run(
            cfg.pin.as_ref(),
            bed,
            legit,
            srcs,
            plan.v6,
            cfg.connect_limit,
            spread,
        )
    };
    let (lat, rep, gen_err, s1) = std::thread::scope(|scope| {
        // The window's end: the generators are done, then DRAIN.
        let window = scope.spawn(|| {
            let mut rep = gen::Report::default();
            let mut gen_err = None;
            for g in gens {
                match g.join() {
                    Ok(Ok(r)) => rep.merge(&r),
                    Ok(Err(e)) => gen_err = Some(format!("generator failed: {e}")),
                    Err(_) => gen_err = Some("generator panicked".into()),
                }
            }
            stop.store(true, Ordering::Relaxed);
            std::thread::sleep(DRAIN);
            (rep, gen_err, snap(u_ref))
        });
        // Let the flood ramp up, then open the door through it.
        std::thread::sleep(Duration::from_millis(100));
        let spread = plan
            .spread
            .saturating_sub(Duration::from_millis(100) + cfg.connect_limit.min(plan.spread / 4));
        let lat = run_legit(srcs, spread);
        match window.join() {
            Ok((rep, e, s1)) => (lat, rep, e, Some(s1)),
            Err(_) => (
                lat,
                gen::Report::default(),
                Some("window thread panicked".into()),
                None,
            ),
        }
    });
    let tracker_peak = sampler.and_then(|s| s.join().ok().flatten());
    let lat = lat?;
    if let Some(e) = gen_err {
        return Err(e);
    }
    let s1 = s1.ok_or("no measurement")?;
    let after = run_legit(after_srcs, Duration::ZERO)?;
    let delta = |name: &str| Some(metric(&s1.metrics, name)? - metric(&s0.metrics, name)?);
    let tracker_final = u.control.as_ref().and_then(|c| {
        sesame::control::client::call(c, &sesame::control::Request::Status)
            .ok()?
            .status
            .map(|s| s.in_progress)
    });
    Ok(FloodRow {
        offered_pps: rep.pps(),
        sent: rep.sent,
        errors: rep.errors,
        delivered: s1.rx.saturating_sub(s0.rx),
        lat,
        after,
        cpu: s1.cpu - s0.cpu,
        hwm_kb: s1.hwm_kb,
        hwm_reset,
        log_lines: s1.lines.saturating_sub(s0.lines),
        nflog_seen: delta("sesame_nflog_packets_total"),
        overruns: delta("sesame_nflog_overruns_total"),
        evictions: delta("sesame_tracker_evictions_total"),
        tracker_peak,
        tracker_final,
    })
}

fn us(d: Option<Duration>) -> (String, Option<f64>) {
    match d {
        Some(d) => {
            let v = d.as_secs_f64() * 1e6;
            (format!("{v:.0}"), Some(v))
        }
        None => ("-".into(), None),
    }
}

fn put_lat(t: &mut Table, prefix: &str, name: &str, lat: &Lat) {
    t.put(&format!("{prefix} ok/tried"), name, lat.ok(), None);
    let s = lat.sorted();
    for (label, p) in [("median", 0.5), ("p99", 0.99), ("max", 1.0)] {
        let (text, num) = us(probe::percentile(&s, p));
        t.put(&format!("{prefix} {label} (µs)"), name, text, num);
    }
}

fn put_flood(t: &mut Table, plan: &Plan, name: &str, r: &FloodRow) {
    let l = &plan.label;
    let kpps = r.offered_pps / 1e3;
    t.put(
        &format!("{l}: offered kpps"),
        name,
        format!("{kpps:.0}"),
        Some(kpps),
    );
    t.put(
        &format!("{l}: delivered pkts (sesame0 rx)"),
        name,
        r.delivered.to_string(),
        Some(r.delivered as f64),
    );
    if let Some(n) = r.nflog_seen {
        t.put(
            &format!("{l}: seen by daemon (NFLOG)"),
            name,
            format!("{n:.0}"),
            Some(n),
        );
    }
    if let Some(n) = r.overruns.filter(|n| *n > 0.0) {
        t.put(
            &format!("{l}: NFLOG overruns"),
            name,
            format!("{n:.0}"),
            Some(n),
        );
    }
    put_lat(t, &format!("{l}: legit"), name, &r.lat);
    if plan.after > 0 {
        t.put(
            &format!("{l}: legit right after, ok/tried"),
            name,
            r.after.ok(),
            None,
        );
    }
    t.put(
        &format!("{l}: daemon CPU (s)"),
        name,
        format!("{:.2}", r.cpu),
        Some(r.cpu),
    );
    t.put(
        &format!("{l}: peak RSS (KiB)"),
        name,
        format!("{}{}", r.hwm_kb, if r.hwm_reset { "" } else { "*" }),
        Some(r.hwm_kb as f64),
    );
    t.put(
        &format!("{l}: log lines"),
        name,
        r.log_lines.to_string(),
        Some(r.log_lines as f64),
    );
    if plan.sequential {
        let bound = sesame::config::DEFAULT_MAX_TRACKED as f64;
        if let Some(p) = r.tracker_peak {
            t.put(
                &format!("{l}: tracker peak (sampled)"),
                name,
                format!("{p:.0}"),
                Some(p),
            );
        }
        if let Some(f) = r.tracker_final {
            t.put(
                &format!("{l}: tracker at end (status)"),
                name,
                f.to_string(),
                Some(f as f64),
            );
        }
        t.put(
            &format!("{l}: tracker bound (default max_tracked)"),
            name,
            format!("{bound:.0}"),
            Some(bound),
        );
        if let Some(e) = r.evictions {
            t.put(
                &format!("{l}: tracker evictions"),
                name,
                format!("{e:.0}"),
                Some(e),
            );
        }
    }
}

/// Stripped size of a copy of `bin` (the original is left alone).
fn stripped_size(bin: &Path) -> Option<u64> {
    let copy = std::env::temp_dir().join(format!(
        "attack-bench-strip-{}-{}",
        std::process::id(),
        bin.file_name()?.to_string_lossy()
    ));
    std::fs::copy(bin, &copy).ok()?;
    let ok = std::process::Command::new("strip")
        .arg(&copy)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    let size = std::fs::metadata(&copy).ok().map(|m| m.len());
    let _ = std::fs::remove_file(&copy);
    if ok {
        size
    } else {
        None
    }
}

fn binary_sizes(t: &mut Table, col: &str) {
    let Ok(sesamed) = daemons::sesamed_path() else {
        return;
    };
    let client = sesamed.with_file_name("sesame");
    for (label, bin) in [("sesamed", &sesamed), ("sesame (client)", &client)] {
        if let Ok(m) = std::fs::metadata(bin) {
            t.put(
                &format!("{label} binary, as built (bytes)"),
                col,
                m.len().to_string(),
                Some(m.len() as f64),
            );
        }
        match stripped_size(bin) {
            Some(s) => t.put(
                &format!("{label} binary, stripped (bytes)"),
                col,
                s.to_string(),
                Some(s as f64),
            ),
            None => t.note(format!("could not strip a copy of {}", bin.display())),
        }
    }
}

/// Everything measured for one daemon.
fn bench_daemon(
    name: &str,
    cfg: &Cfg,
    keys: &Keys,
    t: &mut Table,
    started: Instant,
) -> Result<(), String> {
    let kind = daemons::kind(name).ok_or_else(|| format!("unknown daemon {name}"))?;
    // The floods that apply to this kind of daemon.
    let applies = |m: &Mode| match kind {
        Kind::Knock => *m != Mode::SpaUdp && *m != Mode::PkFlood,
        Kind::Spa => *m == Mode::SpaUdp,
        Kind::Pk => *m == Mode::SpaUdp || *m == Mode::PkFlood,
    };
    let floods: Vec<Mode> = cfg.floods.iter().copied().filter(applies).collect();
    let floods_v6: Vec<Mode> = cfg.floods_v6.iter().copied().filter(applies).collect();
    let fixed = kind == Kind::Knock && cfg.fixed_kpps > 0;
    let distinct = name == "sesamed" && cfg.distinct > 0;
    let during = floods.len() + usize::from(fixed) + usize::from(distinct);
    let slow_rows = if name == "sesamed" { 3 * cfg.knocks } else { 0 };
    let n4 = 1 + cfg.knocks + cfg.legit * during + if distinct { 5 } else { 0 } + slow_rows;
    let n6 = 1 + cfg.knocks + cfg.legit * floods_v6.len();
    eprintln!("== {name}: setting up");
    let mut u = daemons::setup(name, n4, n6, keys)?;
    if let Some(p) = &cfg.pin {
        pin::process(u.pid, p.daemon());
    }
    if let Some(kb) = status_kb(u.pid, "VmRSS:") {
        t.put("idle RSS (KiB)", name, kb.to_string(), Some(kb as f64));
    }
    check_closed(&mut u, false)?;
    check_closed(&mut u, true)?;
    for v6 in [false, true] {
        let fam = if v6 { "IPv6" } else { "IPv4" };
        let what = if kind == Kind::Knock {
            "last knock"
        } else {
            "SPA packet"
        };
        let prefix = format!("latency {fam} ({what} → connect):");
        if v6 && name.starts_with("fwknopd") {
            // fwknopd 2.6 handles IPv4 only (pcap: IPv4 frames; UDP server:
            // an AF_INET socket): a short probe shows it, then "-".
            let probe = latency_run(cfg.pin.as_ref(), &mut u, true, 3, Duration::from_secs(1))?;
            if probe.samples.is_empty() {
                eprintln!("== {name}: IPv6 SPA not supported (0/3 probes opened the door)");
                t.put(
                    &format!("{prefix} ok/tried"),
                    name,
                    "0/3 (v4 only)".into(),
                    None,
                );
                continue;
            }
        }
        eprintln!("== {name}: latency {fam}, {} openings", cfg.knocks);
        let lat = latency_run(cfg.pin.as_ref(), &mut u, v6, cfg.knocks, cfg.connect_limit)?;
        if std::env::var("BENCH_VERBOSE").is_ok() && !lat.slow.is_empty() {
            eprintln!("   openings over 1 ms (index, time): {:?}", lat.slow);
        }
        put_lat(t, &prefix, name, &lat);
    }
    if name == "sesamed" {
        slow_peer_runs(cfg, &mut u, t, name)?;
    }
    let lines = u.out.count();
    t.put(
        "log lines after latency runs",
        name,
        lines.to_string(),
        Some(lines as f64),
    );

    let dur = cfg.flood_dur();
    // At the generator's maximum, spread over the flood time.
    let flood = |label: String, mode: Mode, v6: bool| Plan {
        label,
        mode,
        v6,
        pps: 0,
        max_packets: cfg.max_packets,
        sequential: false,
        dur,
        spread: dur,
        legit: cfg.legit,
        after: 0,
    };
    let mut plans: Vec<Plan> = Vec::new();
    for (v6, list) in [(false, &floods), (true, &floods_v6)] {
        for m in list.iter() {
            let v = if v6 { " v6" } else { "" };
            plans.push(flood(format!("flood {}{v}", m.letter()), *m, v6));
        }
    }
    if fixed {
        plans.push(Plan {
            pps: cfg.fixed_kpps * 1000,
            ..flood(
                format!("flood c @{} kpps", cfg.fixed_kpps),
                Mode::SpoofFirst,
                false,
            )
        });
    }
    if distinct {
        // Paced so the distinct sources are spread over the flood time.
        plans.push(Plan {
            pps: (cfg.distinct as f64 / cfg.flood_secs) as u64,
            max_packets: cfg.distinct,
            sequential: true,
            dur: dur + Duration::from_secs(5),
            after: 5,
            ..flood(
                format!("flood c, {} distinct srcs", cfg.distinct),
                Mode::SpoofFirst,
                false,
            )
        });
    }
    for plan in &plans {
        if started.elapsed() > cfg.budget {
            t.note(format!(
                "{name}: {} skipped: over the time budget (BENCH_BUDGET_SECS={})",
                plan.label,
                cfg.budget.as_secs()
            ));
            continue;
        }
        eprintln!(
            "== {name}: {} ({}) for {:.0} s{}",
            plan.label,
            plan.mode.describe(),
            plan.dur.as_secs_f64(),
            if plan.pps > 0 {
                format!(", paced at {} kpps", plan.pps / 1000)
            } else {
                ", as fast as the generator goes".into()
            }
        );
        let r = flood_run(&mut u, plan, cfg)?;
        eprintln!(
            "   offered {:.0} kpps ({} sent, {} send errors), delivered {}, legit {}{}, cpu {:.2} s, peak RSS {} KiB, log lines {}",
            r.offered_pps / 1e3,
            r.sent,
            r.errors,
            r.delivered,
            r.lat.ok(),
            if plan.after > 0 { format!(" + after {}", r.after.ok()) } else { String::new() },
            r.cpu,
            r.hwm_kb,
            r.log_lines
        );
        if plan.pps > 0 && r.offered_pps < 0.95 * plan.pps as f64 {
            t.note(format!(
                "{name}: {}: the generator reached only {:.0} of {} kpps",
                plan.label,
                r.offered_pps / 1e3,
                plan.pps / 1000
            ));
        }
        put_flood(t, plan, name, &r);
    }
    if std::env::var("BENCH_VERBOSE").is_ok() {
        eprintln!("-- last lines of {}:\n{}", u.name, u.out.tail());
    }
    if let Ok(Some(st)) = u.bed.child(u.index).try_wait() {
        return Err(format!(
            "{name} exited during the run ({st}):\n{}",
            u.out.tail()
        ));
    }
    Ok(())
}

/// Peers that never finish: what each slow-peer row holds open.
#[derive(Copy, Clone, Debug)]
enum SlowPeer {
    Metrics,
    Control,
    Syslog,
}

/// The slow-peer rows (issue 13, items 3-4): IPv4 openings back to back,
/// as in the idle row, while 16 clients drip one byte every 250 ms into
/// `/metrics` (reconnecting when cut off), while 16 do the same on the
/// control socket, and while the syslog reader has stopped reading.
fn slow_peer_runs(cfg: &Cfg, u: &mut Under, t: &mut Table, name: &str) -> Result<(), String> {
    for (label, peer) in [
        ("16 slow /metrics clients", SlowPeer::Metrics),
        ("16 slow control clients", SlowPeer::Control),
        ("syslog reader stopped", SlowPeer::Syslog),
    ] {
        let stop = Arc::new(AtomicBool::new(false));
        let mut drippers = Vec::new();
        match peer {
            SlowPeer::Syslog => {
                if let Some(s) = &u.syslog {
                    s.pause(true);
                }
            }
            SlowPeer::Metrics | SlowPeer::Control => {
                let metrics = u.metrics.ok_or("no metrics endpoint")?;
                let control = u.control.clone().ok_or("no control socket")?;
                for _ in 0..16 {
                    let (stop, control) = (Arc::clone(&stop), control.clone());
                    let h = u
                        .bed
                        .spawn_in(Side::Server, move || {
                            let end = Instant::now() + Duration::from_secs(120);
                            while !stop.load(Ordering::Relaxed) && Instant::now() < end {
                                let conn: Option<Box<dyn Write>> = match peer {
                                    SlowPeer::Metrics => TcpStream::connect(metrics)
                                        .ok()
                                        .map(|c| Box::new(c) as Box<dyn Write>),
                                    _ => std::os::unix::net::UnixStream::connect(&control)
                                        .ok()
                                        .map(|c| Box::new(c) as Box<dyn Write>),
                                };
                                let Some(mut conn) = conn else {
                                    std::thread::sleep(Duration::from_millis(50));
                                    continue;
                                };
                                while !stop.load(Ordering::Relaxed)
                                    && Instant::now() < end
                                    && conn.write_all(b"G").is_ok()
                                {
                                    std::thread::sleep(Duration::from_millis(250));
                                }
                            }
                        })
                        .map_err(|e| e.to_string())?;
                    drippers.push(h);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(500));
        eprintln!(
            "== {name}: latency IPv4 while {label}, {} openings",
            cfg.knocks
        );
        let lat = latency_run(cfg.pin.as_ref(), u, false, cfg.knocks, cfg.connect_limit);
        stop.store(true, Ordering::Relaxed);
        for h in drippers {
            let _ = h.join();
        }
        if let Some(s) = &u.syslog {
            s.pause(false);
        }
        put_lat(t, &format!("latency IPv4 while {label}:"), name, &lat?);
    }
    Ok(())
}

fn main() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("the attack benchmark needs root (network namespaces, raw sockets)");
        std::process::exit(2);
    }
    let cfg = Cfg::from_env();
    let started = Instant::now();
    eprintln!(
        "attack bench: daemons {:?}; {} openings per family; floods {:?} (+ v6 {:?}) × {} s, {} legit openings each; \
         fixed rate {} kpps; {} distinct sources; {} generator thread(s); {}; budget {} s",
        cfg.daemons,
        cfg.knocks,
        cfg.floods.iter().map(|m| m.letter()).collect::<Vec<_>>(),
        cfg.floods_v6.iter().map(|m| m.letter()).collect::<Vec<_>>(),
        cfg.flood_secs,
        cfg.legit,
        cfg.fixed_kpps,
        cfg.distinct,
        cfg.threads,
        match &cfg.pin {
            Some(p) => p.describe(),
            None => "no CPU pinning".into(),
        },
        cfg.budget.as_secs()
    );
    let keys = Keys::generate();
    let mut t = Table::new(cfg.daemons.clone());
    if let Some(col) = cfg.daemons.iter().find(|d| d.starts_with("sesamed")) {
        binary_sizes(&mut t, col);
    }
    for name in cfg.daemons.clone() {
        // A panic inside unwinds through `Under` (killing the daemon and
        // deleting the namespaces) and is reported; the next daemon runs.
        let r = std::panic::catch_unwind(AssertUnwindSafe(|| {
            bench_daemon(&name, &cfg, &keys, &mut t, started)
        }));
        let failure = match r {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e),
            Err(p) => Some(
                p.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "panic".into()),
            ),
        };
        if let Some(e) = failure {
            eprintln!("== {name}: FAILED: {e}");
            t.note(format!(
                "{name}: FAILED: {}",
                e.lines().next().unwrap_or("")
            ));
        }
    }
    t.print();
    table::acceptance(
        &t,
        &cfg.daemons,
        cfg.fixed_kpps,
        cfg.distinct,
        started.elapsed(),
    );
    println!(
        "\nbench wall time: {:.0} s",
        started.elapsed().as_secs_f64()
    );
}
