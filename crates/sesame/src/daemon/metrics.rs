//! Prometheus/OpenMetrics metrics (`prometheus-client`) and a tiny HTTP/1.1
//! responder for `GET /metrics`, on a non-blocking listener polled by the
//! daemon's loop (no async runtime, no thread).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, BorrowedFd};
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
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
        };
        let r = &mut m.registry;
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
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// The metrics endpoint's listener.
pub struct MetricsServer {
    listener: TcpListener,
}

impl MetricsServer {
    /// Binds `addr` (non-blocking).
    pub fn bind(addr: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        Ok(MetricsServer { listener })
    }

    /// The bound address.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// For poll().
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.listener.as_fd()
    }

    /// Serves every waiting connection (bounded per call) with `body()`.
    pub fn serve(&self, body: impl Fn() -> String) {
        for _ in 0..16 {
            let Ok((stream, _)) = self.listener.accept() else {
                return;
            };
            let _ = answer(stream, &body);
        }
    }
}

fn answer(mut stream: TcpStream, body: &impl Fn() -> String) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_millis(300)))?;
    stream.set_write_timeout(Some(Duration::from_millis(500)))?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 8192 {
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
        let server = MetricsServer::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = server.local_addr().unwrap();
        let client = std::thread::spawn(move || {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap();
            out
        });
        let end = std::time::Instant::now() + Duration::from_secs(5);
        while !client.is_finished() && std::time::Instant::now() < end {
            server.serve(|| "x 1\n# EOF\n".into());
            std::thread::sleep(Duration::from_millis(5));
        }
        let out = client.join().unwrap();
        assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
        assert!(out.ends_with("\r\n\r\nx 1\n# EOF\n"));
    }
}
