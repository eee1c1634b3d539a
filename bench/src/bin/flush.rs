//! The flush benchmark (issue 14): how long a protected port answers
//! everyone after host tooling runs `nft flush ruleset`, and how long
//! sesamed takes to put its table back.
//!
//! In two namespaces of its own: sesamed (SESAMED, release) protects
//! tcp/2222 in the server namespace, where a listener answers. From the
//! client namespace a probe starts a TCP connect every millisecond; one
//! that completes while no grant exists is exposure. Meanwhile `nft flush
//! ruleset` runs BENCH_FLUSHES times (default 100) in the server namespace,
//! 40 ms apart, and a watcher there polls the table every 100 µs.
//!
//! Two passes: the default, where the kernel holds the table as sesamed's
//! own (Linux 6.9+: the flush leaves it alone), and `owned_table = false`,
//! where sesamed restores what the flush deleted (older kernels).
//! Reports, over the flushes: the longest exposure window (first to last
//! successful probe of one flush, plus the probe interval), how many
//! flushes exposed the port at all, and the restore time (table seen
//! missing → seen back; median, p99, max). Run as root: bench/run runs it.

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sesame::testbed::{Side, Testbed};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

const PORT: u16 = 2222;
const PROBE_EVERY: Duration = Duration::from_millis(1);
const GAP: Duration = Duration::from_millis(40);

/// One probe: a non-blocking connect given `PROBE_EVERY` to complete.
fn probe(dest: SocketAddr) -> bool {
    let Ok(sock) = Socket::new(Domain::for_address(dest), Type::STREAM, Some(Protocol::TCP)) else {
        return false;
    };
    if sock.set_nonblocking(true).is_err() {
        return false;
    }
    match sock.connect(&SockAddr::from(dest)) {
        Ok(()) => return true,
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(_) => return false,
    }
    let fd = std::os::fd::AsFd::as_fd(&sock);
    let mut fds = [nix::poll::PollFd::new(fd, nix::poll::PollFlags::POLLOUT)];
    let ready = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(1u16)).unwrap_or(0);
    ready > 0 && matches!(sock.take_error(), Ok(None))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn run(mode: &str, daemon_extra: &str) -> Result<(), String> {
    let flushes: usize = std::env::var("BENCH_FLUSHES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let sesamed = std::env::var("SESAMED").map_err(|_| "set SESAMED to the sesamed binary")?;
    let mut bed = Testbed::create("atkflush").map_err(|e| e.to_string())?;
    let server = Testbed::addr(Side::Server, false);
    let dest = SocketAddr::new(server, PORT);
    bed.spawn_in(Side::Server, || {
        let listener = std::net::TcpListener::bind(("0.0.0.0", PORT)).expect("listen");
        for conn in listener.incoming() {
            drop(conn);
        }
    })
    .map_err(|e| e.to_string())?;
    let dir = std::env::temp_dir().join(format!("sesame-atkflush-{}-0-attack", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let config = dir.join("sesame.toml");
    std::fs::write(
        &config,
        format!(
            "[daemon]\nban_after = 0\n{daemon_extra}[door.bench]\nsequence = [\"41001\", \"41002\", \"41003\", \"41004\"]\nprotect = [\"tcp/{PORT}\"]\n"
        ),
    )
    .map_err(|e| e.to_string())?;
    let mut cmd = bed.command(Side::Server, &sesamed);
    cmd.arg("--config")
        .arg(&config)
        .arg("--control-socket")
        .arg(dir.join("control.sock"))
        .stdin(Stdio::null())
        .stderr(Stdio::piped());
    let index = bed.spawn(cmd).map_err(|e| e.to_string())?;
    let stderr = bed.child(index).stderr.take().ok_or("no stderr")?;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("sesamed ready") {
                let _ = ready_tx.send(());
            }
        }
    });
    ready_rx
        .recv_timeout(Duration::from_secs(10))
        .map_err(|_| "sesamed did not become ready")?;
    let probe_client = |bed: &Testbed| {
        bed.run_in(Side::Client, move || probe(dest))
            .unwrap_or(true)
    };
    if probe_client(&bed) {
        return Err("the protected port answers before any flush".into());
    }

    let stop = Arc::new(AtomicBool::new(false));
    let origin = Instant::now();
    // Probe: send times (since origin) of the connects that completed.
    let successes = Arc::new(Mutex::new(Vec::<Duration>::new()));
    let probes = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let prober = {
        let (stop, successes, probes) = (stop.clone(), successes.clone(), probes.clone());
        bed.spawn_in(Side::Client, move || {
            let mut next = Instant::now();
            // Bounded: at most 10 minutes of probing.
            for _ in 0..600_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let sent = origin.elapsed();
                probes.fetch_add(1, Ordering::Relaxed);
                if probe(dest) {
                    successes.lock().unwrap().push(sent);
                }
                next += PROBE_EVERY;
                if let Some(wait) = next.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
        })
        .map_err(|e| e.to_string())?
    };
    // Watcher: (missing since, back at) per disappearance of the table.
    let outages = Arc::new(Mutex::new(Vec::<(Duration, Duration)>::new()));
    let watcher = {
        let (stop, outages) = (stop.clone(), outages.clone());
        bed.spawn_in(Side::Server, move || {
            let mut fw = sesame_nftables::Firewall::open("sesame").expect("netlink");
            let mut missing_since = None;
            for _ in 0..6_000_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let now = origin.elapsed();
                match (fw.exists(), missing_since) {
                    (Ok(false), None) => missing_since = Some(now),
                    (Ok(true), Some(since)) => {
                        outages.lock().unwrap().push((since, now));
                        missing_since = None;
                    }
                    _ => {}
                }
                std::thread::sleep(Duration::from_micros(100));
            }
        })
        .map_err(|e| e.to_string())?
    };
    // The flushes; each one's start, for grouping the probes.
    let mut starts = Vec::with_capacity(flushes);
    let mut nft_took = Vec::with_capacity(flushes);
    for _ in 0..flushes {
        let t = origin.elapsed();
        starts.push(t);
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                bed.name(Side::Server),
                "nft",
                "flush",
                "ruleset",
            ])
            .output()
            .map_err(|e| format!("nft: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "nft flush ruleset: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        nft_took.push(origin.elapsed() - t);
        std::thread::sleep(GAP);
    }
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    let _ = prober.join();
    let _ = watcher.join();
    let still_open = probe_client(&bed);

    let successes = successes.lock().unwrap().clone();
    let outages = outages.lock().unwrap().clone();
    let mut windows = Vec::new();
    for (i, start) in starts.iter().enumerate() {
        let end = starts.get(i + 1).copied().unwrap_or(Duration::MAX);
        let hits: Vec<&Duration> = successes
            .iter()
            .filter(|t| **t >= *start && **t < end)
            .collect();
        let window = match (hits.first(), hits.last()) {
            (Some(first), Some(last)) => **last - **first + PROBE_EVERY,
            _ => Duration::ZERO,
        };
        windows.push(window);
    }
    let exposed = windows.iter().filter(|w| !w.is_zero()).count();
    let mut restore: Vec<Duration> = outages.iter().map(|(a, b)| *b - *a).collect();
    restore.sort();
    nft_took.sort();
    windows.sort();
    println!("Flush benchmark, {mode}: `nft flush ruleset` x{flushes}, a TCP probe every {} ms (sesamed {sesamed})", PROBE_EVERY.as_millis());
    println!(
        "  probes sent                      {}",
        probes.load(Ordering::Relaxed)
    );
    println!("  probes that got in without grant {}", successes.len());
    println!("  flushes that exposed the port    {exposed} of {flushes}");
    println!(
        "  longest exposure window          {}  (goal < 5 ms)",
        ms(*windows.last().unwrap_or(&Duration::ZERO))
    );
    println!(
        "  exposure window p50 / p99        {} / {}",
        ms(percentile(&windows, 0.5)),
        ms(percentile(&windows, 0.99))
    );
    println!("  table outages seen (100 µs poll) {}", restore.len());
    println!(
        "  restore time p50 / p99 / max     {} / {} / {}",
        ms(percentile(&restore, 0.5)),
        ms(percentile(&restore, 0.99)),
        ms(*restore.last().unwrap_or(&Duration::ZERO))
    );
    println!(
        "  nft flush ruleset itself (p50)   {}  (baseline: the flush command's own run time)",
        ms(percentile(&nft_took, 0.5))
    );
    println!(
        "  port closed after the run        {}",
        if still_open { "NO" } else { "yes" }
    );
    let _ = std::fs::remove_dir_all(&dir);
    let _: IpAddr = server;
    if still_open {
        return Err("the protected port answers after the run".into());
    }
    Ok(())
}

fn main() {
    // The default (the kernel holds the table as sesamed's own, Linux
    // 6.9+), then the restore path older kernels rely on, as the baseline.
    for (mode, extra) in [
        ("owned table (default)", ""),
        (
            "owned_table = false (restore on notification)",
            "owned_table = false\n",
        ),
    ] {
        if let Err(e) = run(mode, extra) {
            eprintln!("flush bench ({mode}): {e}");
            std::process::exit(1);
        }
        println!();
    }
}
