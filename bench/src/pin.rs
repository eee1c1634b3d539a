//! CPU pinning: the daemon under test (and whatever it forks) on one CPU;
//! the generator thread(s) and the legitimate client on the others. On 2
//! cores they otherwise compete: a daemon that saturates a core lowers its
//! own offered load, and a client sharing the daemon's CPU adds
//! scheduling delays of milliseconds to its latency tail. The bench's
//! other threads are not pinned. `BENCH_PIN=0` turns it off; with a single
//! CPU nothing is pinned.

use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
use nix::unistd::Pid;

/// The CPUs this process may use.
#[derive(Clone, Debug)]
pub struct Cpus(Vec<usize>);

impl Cpus {
    /// The process's CPUs; `None` with fewer than two.
    pub fn detect() -> Option<Cpus> {
        let set = sched_getaffinity(Pid::from_raw(0)).ok()?;
        let cpus: Vec<usize> = (0..CpuSet::count())
            .filter(|c| set.is_set(*c).unwrap_or(false))
            .collect();
        (cpus.len() >= 2).then_some(Cpus(cpus))
    }

    /// The daemon's CPU.
    pub fn daemon(&self) -> usize {
        self.0[0]
    }

    /// The CPU of generator thread `t`.
    pub fn generator(&self, t: usize) -> usize {
        self.0[1 + t % (self.0.len() - 1)]
    }

    /// For the log.
    pub fn describe(&self) -> String {
        format!(
            "daemon pinned to CPU {}, generator to CPU(s) {:?}",
            self.daemon(),
            &self.0[1..]
        )
    }
}

fn one(cpu: usize) -> Option<CpuSet> {
    let mut set = CpuSet::new();
    set.set(cpu).ok()?;
    Some(set)
}

/// Pins the calling thread to `cpu` (best effort).
pub fn this_thread(cpu: usize) {
    if let Some(set) = one(cpu) {
        let _ = sched_setaffinity(Pid::from_raw(0), &set);
    }
}

/// Pins every thread of process `pid` to `cpu` (best effort); children it
/// forks later inherit it.
pub fn process(pid: u32, cpu: usize) {
    let Some(set) = one(cpu) else { return };
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
                .take(1024)
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    for tid in tasks {
        let _ = sched_setaffinity(Pid::from_raw(tid), &set);
    }
}
