//! The one table: a row per metric, a column per daemon, then a ratio column
//! per peer (`sesame/knockd` uses the `sesamed` column, `sesame/fwknopd-*`
//! the `sesamed-spa` one), followed by notes and the acceptance checks.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::daemons::sesame_for;

struct Cell {
    text: String,
    num: Option<f64>,
}

/// Rows in insertion order.
pub struct Table {
    daemons: Vec<String>,
    rows: Vec<(String, BTreeMap<String, Cell>)>,
    notes: Vec<String>,
}

impl Table {
    /// An empty table with these daemon columns.
    pub fn new(daemons: Vec<String>) -> Table {
        Table {
            daemons,
            rows: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// Sets `metric` for `daemon`: the text shown and the number used for
    /// ratios (`None`: no ratio).
    pub fn put(&mut self, metric: &str, daemon: &str, text: String, num: Option<f64>) {
        let cell = Cell { text, num };
        if let Some(row) = self.rows.iter_mut().find(|(m, _)| m == metric) {
            row.1.insert(daemon.into(), cell);
        } else {
            let mut m = BTreeMap::new();
            m.insert(daemon.to_string(), cell);
            self.rows.push((metric.to_string(), m));
        }
    }

    /// A line printed under the table.
    pub fn note(&mut self, text: String) {
        self.notes.push(text);
    }

    /// The number of `metric` for `daemon`.
    pub fn num(&self, metric: &str, daemon: &str) -> Option<f64> {
        self.cell(metric, daemon)?.num
    }

    /// The text of `metric` for `daemon`.
    pub fn text(&self, metric: &str, daemon: &str) -> Option<&str> {
        self.cell(metric, daemon).map(|c| c.text.as_str())
    }

    fn cell(&self, metric: &str, daemon: &str) -> Option<&Cell> {
        self.rows
            .iter()
            .find(|(m, _)| m == metric)
            .and_then(|(_, v)| v.get(daemon))
    }

    /// Every metric name, in order.
    pub fn metrics(&self) -> impl Iterator<Item = &str> {
        self.rows.iter().map(|(m, _)| m.as_str())
    }

    fn peers(&self) -> Vec<&String> {
        self.daemons
            .iter()
            .filter(|d| sesame_for(d).is_some_and(|s| self.daemons.iter().any(|x| x == s)))
            .collect()
    }

    /// Prints the table and its notes.
    pub fn print(&self) {
        let mw = self
            .rows
            .iter()
            .map(|(m, _)| m.chars().count())
            .max()
            .unwrap_or(6)
            .max(6);
        let widths: Vec<usize> = self
            .daemons
            .iter()
            .map(|d| {
                self.rows
                    .iter()
                    .filter_map(|(_, v)| v.get(d).map(|c| c.text.chars().count()))
                    .chain([d.len()])
                    .max()
                    .unwrap_or(1)
            })
            .collect();
        let peers = self.peers();
        let mut header = format!("{:<mw$}", "metric");
        for (d, w) in self.daemons.iter().zip(&widths) {
            header.push_str(&format!(" | {d:>w$}"));
        }
        for p in &peers {
            header.push_str(&format!(" | {:>8}", format!("sesame/{p}")));
        }
        println!("\n{header}");
        println!("{}", "-".repeat(header.chars().count()));
        for (metric, vals) in &self.rows {
            let mut line = format!("{metric:<mw$}");
            for (d, w) in self.daemons.iter().zip(&widths) {
                let v = vals.get(d).map(|c| c.text.as_str()).unwrap_or("-");
                line.push_str(&format!(" | {v:>w$}"));
            }
            for p in &peers {
                let s = sesame_for(p).and_then(|s| vals.get(s)).and_then(|c| c.num);
                let k = vals.get(*p).and_then(|c| c.num);
                let ratio = match (s, k) {
                    (Some(s), Some(k)) if k != 0.0 => ratio(s / k),
                    _ => "-".into(),
                };
                let w = format!("sesame/{p}").len().max(8);
                line.push_str(&format!(" | {ratio:>w$}"));
            }
            println!("{line}");
        }
        for n in &self.notes {
            println!("note: {n}");
        }
    }
}

fn ratio(r: f64) -> String {
    if r == 0.0 {
        "0".into()
    } else if r >= 100.0 {
        format!("{r:.0}")
    } else if r >= 10.0 {
        format!("{r:.1}")
    } else if r >= 0.01 {
        format!("{r:.3}")
    } else {
        format!("{r:.1e}")
    }
}

fn ok_all(text: Option<&str>) -> Option<bool> {
    let (a, b) = text?.split_whitespace().next()?.split_once('/')?;
    Some(a == b && a.parse::<u32>().ok()? > 0)
}

fn verdict(ok: Option<bool>) -> &'static str {
    match ok {
        Some(true) => "PASS",
        Some(false) => "FAIL",
        None => "n/a ",
    }
}

fn f(v: Option<f64>, digits: usize) -> String {
    v.map(|v| format!("{v:.digits$}"))
        .unwrap_or_else(|| "-".into())
}

/// The acceptance criteria, checked against this run's figures.
pub fn acceptance(t: &Table, daemons: &[String], fixed_kpps: u64, distinct: u64, wall: Duration) {
    let has = |d: &str| daemons.iter().any(|x| x == d);
    println!("\nacceptance (this run):");
    for s in ["sesamed", "sesamed-spa"].into_iter().filter(|s| has(s)) {
        for fam in ["IPv4", "IPv6"] {
            let Some(m) = t
                .metrics()
                .find(|m| {
                    m.starts_with(&format!("latency {fam}"))
                        && m.ends_with("p99 (µs)")
                        && t.num(m, s).is_some()
                })
                .map(str::to_string)
            else {
                continue;
            };
            let p99 = t.num(&m, s);
            println!(
                "  [{}] {s} latency p99 {fam} < 1 ms: {} µs",
                verdict(p99.map(|v| v < 1000.0)),
                f(p99, 0)
            );
        }
    }
    if has("sesamed-pk") {
        let ok = t.text("flood f: legit ok/tried", "sesamed-pk");
        let kpps = t.num("flood f: offered kpps", "sesamed-pk");
        let p99 = t.num("flood f: legit p99 (µs)", "sesamed-pk");
        if ok.is_some() {
            println!(
                "  [{}] sesamed-pk: every genuine user through under a one-source public-key flood (valid key id and mac1): {} at {} kpps, legit p99 {} µs",
                verdict(ok_all(ok)),
                ok.unwrap_or_default(),
                f(kpps, 0),
                f(p99, 0)
            );
        }
        let cpu = t.num("flood e: daemon CPU (s)", "sesamed-pk");
        let seen = t.num("flood e: seen by daemon (NFLOG)", "sesamed-pk");
        let sent = t.num("flood e: delivered pkts (sesame0 rx)", "sesamed-pk");
        if cpu.is_some() {
            println!(
                "  [{}] sesamed-pk: random junk to the SPA port dropped in the kernel: {} of {} packets reached the daemon, daemon CPU {} s",
                verdict(seen.map(|s| s < 100.0)),
                f(seen, 0),
                f(sent, 0),
                f(cpu, 2)
            );
        }
    }
    if has("sesamed") {
        let idle = t.num("latency IPv4 (last knock → connect): p99 (µs)", "sesamed");
        for label in [
            "16 slow /metrics clients",
            "16 slow control clients",
            "syslog reader stopped",
        ] {
            let m = format!("latency IPv4 while {label}: p99 (µs)");
            let Some(p99) = t.num(&m, "sesamed") else {
                continue;
            };
            println!(
                "  [{}] sesamed latency p99 while {label} ≤ 2× idle p99: {} µs vs {} µs idle (ratio {})",
                verdict(idle.map(|i| p99 <= 2.0 * i)),
                f(Some(p99), 0),
                f(idle, 0),
                idle.map_or("-".into(), |i| ratio(p99 / i))
            );
        }
        for l in ["a", "b", "c", "d", "c v6"] {
            let label = format!("flood {l}");
            let Some(ok) = t.text(&format!("{label}: legit ok/tried"), "sesamed") else {
                continue;
            };
            let kpps = t.num(&format!("{label}: offered kpps"), "sesamed");
            let at = match kpps {
                Some(k) if k >= 500.0 => format!("{k:.0} kpps offered (≥ 500 kpps)"),
                Some(k) => format!("{k:.0} kpps offered = the generator's max here, not 500 kpps"),
                None => "-".into(),
            };
            println!(
                "  [{}] sesamed 100% legit under {label}: {ok} at {at}",
                verdict(ok_all(Some(ok)))
            );
        }
        let label = format!("flood c @{fixed_kpps} kpps");
        let cpu_s = t.num(&format!("{label}: daemon CPU (s)"), "sesamed");
        let cpu_k = t.num(&format!("{label}: daemon CPU (s)"), "knockd");
        let off_s = t.num(&format!("{label}: offered kpps"), "sesamed");
        let off_k = t.num(&format!("{label}: offered kpps"), "knockd");
        if fixed_kpps > 0 && cpu_s.is_some() {
            let same = match (off_s, off_k) {
                (Some(a), Some(b)) => (a - b).abs() <= 0.05 * fixed_kpps as f64,
                _ => false,
            };
            println!(
                "  [{}] sesamed CPU ≤ 1/10 of knockd's in {label}: {} s vs {} s (ratio {}), offered {} / {} kpps{}",
                verdict(match (cpu_s, cpu_k) {
                    (Some(s), Some(k)) => Some(s <= k / 10.0),
                    _ => None,
                }),
                f(cpu_s, 2),
                f(cpu_k, 2),
                match (cpu_s, cpu_k) {
                    (Some(s), Some(k)) if k > 0.0 => ratio(s / k),
                    _ => "-".into(),
                },
                f(off_s, 0),
                f(off_k, 0),
                if same { " (same load)" } else { " (NOT the same load)" }
            );
        }
        let label = format!("flood c, {distinct} distinct srcs");
        let hwm = t.num(&format!("{label}: peak RSS (KiB)"), "sesamed");
        if distinct > 0 && hwm.is_some() {
            println!(
                "  [{}] sesamed peak RSS < 64 MiB under {distinct} distinct spoofed sources: {} KiB",
                verdict(hwm.map(|h| h < 65536.0)),
                f(hwm, 0)
            );
            let peak = t.num(&format!("{label}: tracker peak (sampled)"), "sesamed");
            let end = t.num(&format!("{label}: tracker at end (status)"), "sesamed");
            let bound = t.num(
                &format!("{label}: tracker bound (default max_tracked)"),
                "sesamed",
            );
            let worst = match (peak, end) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
            println!(
                "  [{}] tracker within its bound: peak {} / end {} ≤ {}",
                verdict(worst.zip(bound).map(|(w, b)| w <= b)),
                f(peak, 0),
                f(end, 0),
                f(bound, 0)
            );
            let during = t.text(&format!("{label}: legit ok/tried"), "sesamed");
            let after = t.text(&format!("{label}: legit right after, ok/tried"), "sesamed");
            println!(
                "  [{}] legit openings during / right after it: {} / {}",
                verdict(ok_all(during).zip(ok_all(after)).map(|(a, b)| a && b)),
                during.unwrap_or("-"),
                after.unwrap_or("-")
            );
        }
    }
    for s in ["sesamed", "sesamed-spa"].into_iter().filter(|s| has(s)) {
        let idle = t.num("idle RSS (KiB)", s);
        println!(
            "  [{}] {s} idle RSS < 8 MiB: {} KiB",
            verdict(idle.map(|v| v < 8192.0)),
            f(idle, 0)
        );
    }
    let col = daemons
        .iter()
        .find(|d| d.starts_with("sesamed"))
        .map(String::as_str)
        .unwrap_or("sesamed");
    for b in ["sesamed", "sesame (client)"] {
        if let (Some(a), Some(s)) = (
            t.num(&format!("{b} binary, as built (bytes)"), col),
            t.num(&format!("{b} binary, stripped (bytes)"), col),
        ) {
            println!(
                "  [info] {b} release binary: {a:.0} bytes as built, {s:.0} bytes stripped ({:.2} MiB)",
                s / 1048576.0
            );
        }
    }
    println!(
        "  [{}] benchmark part under 10 minutes: {:.0} s (builds not included; bench/run prints the total)",
        verdict(Some(wall < Duration::from_secs(600))),
        wall.as_secs_f64()
    );
}
