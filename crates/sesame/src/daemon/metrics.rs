//! Prometheus/OpenMetrics metrics (`prometheus-client`) and a tiny HTTP/1.1
//! responder for `GET /metrics`, on a non-blocking listener polled by the
//! daemon's loop (no async runtime, no thread).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Labels of the knock counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KnockLabels {
    /// Door name.
    pub door: String,
    /// stage, open, reset, timeout, duplicate, evicted.
    pub result: String,
}

/// Labels of the refusal counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectLabels {
    /// Door name.
    pub door: String,
    /// spa, totp or fwknop.
    pub kind: String,
    /// The refusal's `reason`.
    pub reason: String,
}

/// Labels of the grant event counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GrantLabels {
    /// Door name.
    pub door: String,
    /// open, refresh, close, revoke, manual_open.
    pub event: String,
}

/// Labels of per-door series without another dimension.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DoorLabels {
    /// Door name.
    pub door: String,
}

/// Labels of the build info gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    /// sesamed's version.
    pub version: String,
}

/// The `event` label values of the grant event counters.
pub const GRANT_EVENTS: [&str; 5] = ["open", "refresh", "close", "revoke", "manual_open"];

/// Upper bounds (seconds) of the knock→open latency buckets: 10 µs to
/// 100 ms, around the ~100 µs the loop takes.
const OPEN_LATENCY_BUCKETS: [f64; 12] = [
    1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 1e-1,
];

type OpenLatency = Family<DoorLabels, Histogram, fn() -> Histogram>;
type FleetSpend = Family<Vec<(String, String)>, Histogram, fn() -> Histogram>;

fn open_latency_histogram() -> Histogram {
    Histogram::new(OPEN_LATENCY_BUCKETS)
}

/// The `result` label values of the knock counters, in a fixed order.
pub const KNOCK_RESULTS: [&str; 6] = ["stage", "duplicate", "reset", "timeout", "evicted", "open"];

/// Every metric the daemon exports.
pub struct Metrics {
    registry: Registry,
    knocks: Family<KnockLabels, Counter>,
    rejects: Family<RejectLabels, Counter>,
    grant_events: Family<GrantLabels, Counter>,
    /// Grants currently open.
    pub active_grants: Gauge,
    /// Knock attempts in progress.
    pub tracker_size: Gauge,
    /// Attempts pushed out of the full state table.
    pub tracker_evictions: Counter,
    /// Packets delivered by NFLOG.
    pub nflog_packets: Counter,
    /// Kernel log overruns (messages lost).
    pub nflog_overruns: Counter,
    /// Packets the parser refused.
    pub nflog_malformed: Counter,
    /// 1 while NFLOG batching (flood mode) is on.
    pub nflog_batching: Gauge,
    /// Config reloads by outcome.
    reloads: Family<Vec<(String, String)>, Counter>,
    /// Bans started (a source prefix used up its failure budget).
    pub bans: Counter,
    /// Source prefixes banned now.
    pub banned_prefixes: Gauge,
    /// Knock packets ignored because their source prefix was banned.
    pub banned_knocks: Counter,
    /// Metrics connections closed unserved ([`MAX_SCRAPERS`] busy).
    pub scrapes_refused: Counter,
    /// Log lines dropped because a log sink was full or gone.
    pub log_dropped: Counter,
    /// Control connections closed unserved (too many at once, or too slow).
    pub control_refused: Counter,
    /// Times the table was found deleted from outside and reinstalled.
    pub table_restores: Counter,
    /// Seconds from reading a door's last knock (or SPA packet) to its
    /// grant in the kernel.
    open_latency: OpenLatency,
    /// Fleet mode: seconds from a spend's request to the store's answer,
    /// by result (spent, replay, unavailable).
    fleet_spend: FleetSpend,
    /// Fleet mode: seconds from a grant's making at another gateway to its
    /// arrival here.
    fleet_lag: Histogram,
    /// Fleet mode: entries ignored because they did not verify, by reason.
    fleet_rejected: Family<Vec<(String, String)>, Counter>,
    /// Fleet mode: store errors (unreachable, refused, failed publish).
    fleet_store_errors: Counter,
    /// Fleet mode: 1 while the store answers.
    fleet_store_up: Gauge,
    /// Seconds since start, set at each scrape.
    uptime: Gauge,
    started: std::time::Instant,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut m = Metrics {
            registry: Registry::with_prefix("sesame"),
            knocks: Family::default(),
            rejects: Family::default(),
            grant_events: Family::default(),
            active_grants: Gauge::default(),
            tracker_size: Gauge::default(),
            tracker_evictions: Counter::default(),
            nflog_packets: Counter::default(),
            nflog_overruns: Counter::default(),
            nflog_malformed: Counter::default(),
            nflog_batching: Gauge::default(),
            reloads: Family::default(),
            bans: Counter::default(),
            banned_prefixes: Gauge::default(),
            banned_knocks: Counter::default(),
            scrapes_refused: Counter::default(),
            log_dropped: Counter::default(),
            control_refused: Counter::default(),
            table_restores: Counter::default(),
            open_latency: Family::new_with_constructor(open_latency_histogram),
            fleet_spend: Family::new_with_constructor(open_latency_histogram),
            fleet_lag: open_latency_histogram(),
            fleet_rejected: Family::default(),
            fleet_store_errors: Counter::default(),
            fleet_store_up: Gauge::default(),
            uptime: Gauge::default(),
            started: std::time::Instant::now(),
        };
        let r = &mut m.registry;
        let build: Family<BuildLabels, Gauge> = Family::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION").into(),
            })
            .set(1);
        r.register("build_info", "sesamed's version (value 1)", build);
        r.register(
            "uptime_seconds",
            "Seconds since sesamed started",
            m.uptime.clone(),
        );
        r.register(
            "open_latency_seconds",
            "Time from reading a door's last knock or SPA packet to its grant in the kernel",
            m.open_latency.clone(),
        );
        r.register(
            "knocks",
            "Knock events by door and result",
            m.knocks.clone(),
        );
        r.register(
            "rejects",
            "SPA, TOTP and fwknop refusals by door, kind and reason",
            m.rejects.clone(),
        );
        r.register(
            "grant_events",
            "Grant events by door: open, refresh, close, revoke, manual_open",
            m.grant_events.clone(),
        );
        r.register(
            "active_grants",
            "Grants currently open",
            m.active_grants.clone(),
        );
        r.register(
            "tracker_size",
            "Knock attempts in progress (state table size)",
            m.tracker_size.clone(),
        );
        r.register(
            "tracker_evictions",
            "Knock attempts evicted from the full state table",
            m.tracker_evictions.clone(),
        );
        r.register(
            "nflog_packets",
            "Packets delivered by NFLOG",
            m.nflog_packets.clone(),
        );
        r.register(
            "nflog_overruns",
            "NFLOG receive buffer overruns (log messages dropped by the kernel)",
            m.nflog_overruns.clone(),
        );
        r.register(
            "nflog_malformed",
            "Logged packets the parser refused",
            m.nflog_malformed.clone(),
        );
        r.register(
            "nflog_batching",
            "1 while the knock ports are flooded and NFLOG delivers packets in batches",
            m.nflog_batching.clone(),
        );
        r.register("reloads", "Config reloads by result", m.reloads.clone());
        r.register(
            "bans",
            "Source prefixes banned for using up their knock failure budget",
            m.bans.clone(),
        );
        r.register(
            "banned_prefixes",
            "Source prefixes whose knocks are ignored now",
            m.banned_prefixes.clone(),
        );
        r.register(
            "scrapes_refused",
            "Metrics connections closed unserved because too many were open",
            m.scrapes_refused.clone(),
        );
        r.register(
            "log_dropped",
            "Log lines dropped because a log sink (stderr, file, syslog) was full or gone",
            m.log_dropped.clone(),
        );
        r.register(
            "table_restores",
            "Times Sesame's nftables table was found deleted from outside and reinstalled",
            m.table_restores.clone(),
        );
        r.register(
            "control_refused",
            "Control connections closed unserved (too many at once, or too slow)",
            m.control_refused.clone(),
        );
        r.register(
            "fleet_spend_seconds",
            "Fleet mode: time from a spend's request to the store's answer, by result",
            m.fleet_spend.clone(),
        );
        r.register(
            "fleet_grant_lag_seconds",
            "Fleet mode: time from a grant's making at another gateway to its arrival here",
            m.fleet_lag.clone(),
        );
        r.register(
            "fleet_entries_rejected",
            "Fleet mode: entries ignored because they did not verify, by reason",
            m.fleet_rejected.clone(),
        );
        r.register(
            "fleet_store_errors",
            "Fleet mode: store errors (unreachable, refused, failed publish)",
            m.fleet_store_errors.clone(),
        );
        r.register(
            "fleet_store_up",
            "Fleet mode: 1 while the store answers",
            m.fleet_store_up.clone(),
        );
        r.register(
            "banned_knocks",
            "Knock packets ignored because their source prefix is banned",
            m.banned_knocks.clone(),
        );
        m
    }
}

impl Metrics {
    /// The knock counters of one door, indexed like [`KNOCK_RESULTS`], so the
    /// packet path increments an atomic instead of looking labels up.
    pub fn knock_counters(&self, door: &str) -> [Counter; 6] {
        KNOCK_RESULTS.map(|result| {
            self.knocks
                .get_or_create(&KnockLabels {
                    door: door.into(),
                    result: result.into(),
                })
                .clone()
        })
    }

    /// Makes every per-door series of `door` exist (at zero) before its
    /// first event, so dashboards and alerts see the door from the start.
    pub fn register_door(&self, door: &str) {
        let _ = self.knock_counters(door);
        for event in GRANT_EVENTS {
            let _ = self.grant_events.get_or_create(&GrantLabels {
                door: door.into(),
                event: event.into(),
            });
        }
        let _ = self
            .open_latency
            .get_or_create(&DoorLabels { door: door.into() });
    }

    /// Records one knock→open latency.
    pub fn open_latency(&self, door: &str, took: Duration) {
        self.open_latency
            .get_or_create(&DoorLabels { door: door.into() })
            .observe(took.as_secs_f64());
    }

    /// Counts a refused SPA/TOTP/fwknop request.
    pub fn reject(&self, door: &str, kind: &str, reason: &str) {
        self.rejects
            .get_or_create(&RejectLabels {
                door: door.into(),
                kind: kind.into(),
                reason: reason.into(),
            })
            .inc();
    }

    /// Counts a grant event.
    pub fn grant(&self, door: &str, event: &str) {
        self.grant_events
            .get_or_create(&GrantLabels {
                door: door.into(),
                event: event.into(),
            })
            .inc();
    }

    /// Records a fleet spend's round trip.
    pub fn fleet_spend(&self, took: Duration, result: &str) {
        self.fleet_spend
            .get_or_create(&vec![("result".to_string(), result.to_string())])
            .observe(took.as_secs_f64());
    }

    /// Records a grant's propagation lag.
    pub fn fleet_lag(&self, lag: Duration) {
        self.fleet_lag.observe(lag.as_secs_f64());
    }

    /// Counts an entry that did not verify.
    pub fn fleet_rejected(&self, reason: &str) {
        self.fleet_rejected
            .get_or_create(&vec![("reason".to_string(), reason.to_string())])
            .inc();
    }

    /// Counts a store error.
    pub fn fleet_store_error(&self) {
        self.fleet_store_errors.inc();
    }

    /// Whether the store answers.
    pub fn fleet_up(&self, up: bool) {
        self.fleet_store_up.set(i64::from(up));
    }

    /// Counts a reload.
    pub fn reload(&self, ok: bool) {
        self.reloads
            .get_or_create(&vec![(
                "result".to_string(),
                if ok { "ok" } else { "error" }.to_string(),
            )])
            .inc();
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        self.uptime
            .set(i64::try_from(self.started.elapsed().as_secs()).unwrap_or(i64::MAX));
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// Most scrapes served at once; more connections are closed at once.
pub const MAX_SCRAPERS: usize = 16;

/// How long one scrape may take, from accept to the last byte written: a
/// client that drips its request is cut off, and it only ever holds its own
/// thread, never the packet loop.
pub const SCRAPE_DEADLINE: Duration = Duration::from_secs(3);

/// The metrics endpoint: a thread of its own accepts connections and serves
/// each on a short-lived thread (at most [`MAX_SCRAPERS`] at once), reading
/// the counters the packet loop updates atomically. Nothing here can make
/// the packet loop wait. Dropping it stops the threads' accepting.
pub struct MetricsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    /// Bound but not yet serving (see [`MetricsServer::start`]).
    idle: Option<(TcpListener, Arc<Metrics>)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl MetricsServer {
    /// Binds `addr` for serving `metrics` once started.
    pub fn bind(addr: SocketAddr, metrics: Arc<Metrics>) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        Ok(MetricsServer {
            addr,
            stop: Arc::new(AtomicBool::new(false)),
            idle: Some((listener, metrics)),
            thread: None,
        })
    }

    /// Starts serving. Called once the daemon has dropped its privileges,
    /// so that no thread keeps more than the loop has.
    pub fn start(&mut self) -> std::io::Result<()> {
        let Some((listener, metrics)) = self.idle.take() else {
            return Ok(());
        };
        let flag = Arc::clone(&self.stop);
        self.thread = Some(
            std::thread::Builder::new()
                .name("sesame-metrics".into())
                .spawn(move || accept_loop(&listener, &metrics, &flag))?,
        );
        Ok(())
    }

    /// The bound address.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        Some(self.addr)
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            // The accept loop wakes at least every 100 ms.
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, metrics: &Arc<Metrics>, stop: &AtomicBool) {
    let active = Arc::new(AtomicUsize::new(0));
    while !stop.load(Ordering::Relaxed) {
        let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
        if poll(&mut fds, PollTimeout::from(100u16)).unwrap_or(0) == 0 {
            continue;
        }
        while let Ok((stream, _)) = listener.accept() {
            if active.load(Ordering::Relaxed) >= MAX_SCRAPERS {
                metrics.scrapes_refused.inc();
                continue; // closed by drop
            }
            active.fetch_add(1, Ordering::Relaxed);
            let (m, count) = (Arc::clone(metrics), Arc::clone(&active));
            let spawned = std::thread::Builder::new()
                .name("sesame-scrape".into())
                .spawn(move || {
                    let _ = answer(stream, &|| m.encode());
                    count.fetch_sub(1, Ordering::Relaxed);
                });
            if spawned.is_err() {
                active.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

fn answer(mut stream: TcpStream, body: &impl Fn() -> String) -> std::io::Result<()> {
    let deadline = std::time::Instant::now() + SCRAPE_DEADLINE;
    let left = || {
        deadline
            .saturating_duration_since(std::time::Instant::now())
            .max(Duration::from_millis(1))
    };
    stream.set_nonblocking(false)?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 8192 {
        if std::time::Instant::now() >= deadline {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        stream.set_read_timeout(Some(left()))?;
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&buf);
    let first = head.lines().next().unwrap_or_default();
    let mut parts = first.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, ctype, text) = match (method, target.split('?').next().unwrap_or("")) {
        ("GET", "/metrics") => (
            "200 OK",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            body(),
        ),
        ("GET", _) => (
            "404 Not Found",
            "text/plain",
            "not found: try /metrics\n".into(),
        ),
        _ => ("405 Method Not Allowed", "text/plain", "GET only\n".into()),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    );
    stream.set_write_timeout(Some(left()))?;
    stream.write_all(response.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_appear_in_the_exposition() {
        let m = Metrics::default();
        let ssh = m.knock_counters("ssh");
        ssh[0].inc(); // stage
        ssh[0].inc();
        ssh[5].inc(); // open
        m.reject("spa", "spa", "bad_tag");
        m.active_grants.set(1);
        let text = m.encode();
        assert!(
            text.contains(r#"sesame_knocks_total{door="ssh",result="stage"} 2"#),
            "{text}"
        );
        assert!(text.contains(r#"sesame_knocks_total{door="ssh",result="open"} 1"#));
        assert!(text.contains(r#"sesame_rejects_total{door="spa",kind="spa",reason="bad_tag"} 1"#));
        assert!(text.contains("sesame_active_grants 1"));
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn serves_get_metrics_over_http() {
        let m = Arc::new(Metrics::default());
        m.active_grants.set(3);
        let mut server =
            MetricsServer::bind("127.0.0.1:0".parse().unwrap(), Arc::clone(&m)).unwrap();
        server.start().unwrap();
        let addr = server.local_addr().unwrap();
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
        assert!(out.contains("sesame_active_grants 3"), "{out}");
        assert!(out.ends_with("# EOF\n"));
    }

    #[test]
    fn slow_scrapers_are_cut_off_and_do_not_block_others() {
        let m = Arc::new(Metrics::default());
        let mut server =
            MetricsServer::bind("127.0.0.1:0".parse().unwrap(), Arc::clone(&m)).unwrap();
        server.start().unwrap();
        let addr = server.local_addr().unwrap();
        // Slow clients that never finish their request hold every slot.
        let slow: Vec<TcpStream> = (0..MAX_SCRAPERS)
            .map(|_| {
                let mut s = TcpStream::connect(addr).unwrap();
                s.write_all(b"GET /met").unwrap();
                s
            })
            .collect();
        std::thread::sleep(Duration::from_millis(300));
        // One more is refused at once, not queued behind them.
        let mut extra = TcpStream::connect(addr).unwrap();
        extra
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let mut buf = Vec::new();
        let started = std::time::Instant::now();
        let _ = extra.read_to_end(&mut buf);
        assert!(started.elapsed() < Duration::from_secs(2));
        // After the deadline the slow ones are gone and scrapes work again.
        std::thread::sleep(SCRAPE_DEADLINE + Duration::from_millis(300));
        drop(slow);
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        assert!(out.starts_with("HTTP/1.1 200 OK"), "{out}");
        assert!(m.encode().contains("sesame_scrapes_refused_total 1"));
    }
}
