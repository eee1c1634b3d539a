//! The driver: one thread, one `poll()` loop over the NFLOG socket, the
//! signal pipes, the control socket and the nf_tables change watch. It moves
//! bytes into the engine and executes what the engine asks; it decides
//! nothing about doors. Timers are the engine's deadlines; nothing runs
//! inside a signal handler.

use std::net::IpAddr;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use sesame_core::engine::{Action, Engine, Now};
use sesame_core::tracker::Observation;
use sesame_core::{packet, Instant, Proto};
use sesame_nflog::{Batching, NflogSocket, Received};
use sesame_nftables::{Firewall, InstallOutcome};
use tracing::{debug, error, info, warn};

use super::build::{self, unix_now};
use super::commands::CommandRunner;
use super::error::{os, DaemonError};
use super::observe::Observer;
use super::signals::{drain, SignalPipes};
use super::source::ConfigSource;
use super::world::{HostWorld, OneTimeFiles};
use super::{checks, load, metrics};
use crate::config::Config;
use crate::control::server::ControlServer;

/// How often the daemon checks that its nftables table still exists.
const TABLE_CHECK_EVERY: Duration = Duration::from_secs(1);

/// How often a flood's summary line is written.
const FLOOD_SUMMARY_EVERY: Duration = Duration::from_secs(5);

/// The running daemon.
pub struct Daemon {
    pub(super) config: Config,
    /// Where the config came from, for reloads.
    pub(super) source: ConfigSource,
    pub(super) engine: Engine,
    pub(super) world: HostWorld,
    nflog: NflogSocket,
    commands: CommandRunner,
    pub(super) origin: std::time::Instant,
    pub(super) observer: Observer,
    pub(super) control: Option<ControlServer>,
    pub(super) metrics_server: Option<metrics::MetricsServer>,
    /// Switches NFLOG batching on during floods.
    load: load::LoadGovernor,
    /// Reused per-read buffers (no allocation per packet).
    scratch_observations: Vec<Observation>,
    scratch_datagrams: Vec<(IpAddr, IpAddr, u16, Vec<u8>)>,
    /// When the table was last checked (see [`Daemon::watch_table`]).
    table_checked: Option<std::time::Instant>,
    /// nf_tables change notifications: deletions in the table by others are
    /// healed at once (the 1 s check stays as a fallback).
    table_watch: Option<sesame_nftables::ChangeWatch>,
    /// Fleet entries that did not verify, logged this minute (a store
    /// that writes forged entries must not flood the log).
    pub(super) fleet_rejections_logged: (std::time::Instant, u32),
}

impl Daemon {
    /// Installs the table, binds the NFLOG group and builds the engine.
    /// `source` is kept to re-read the config on reload. The control socket
    /// and the metrics endpoint are set up here (refused when unsafe).
    pub fn start(config: Config, source: ConfigSource) -> Result<Self, DaemonError> {
        let control = ControlServer::bind(
            &config.daemon.control_socket,
            config.daemon.control_group.as_deref(),
        )?;
        let metrics = Arc::new(metrics::Metrics::default());
        let metrics_server = match config.daemon.metrics {
            Some(addr) => Some(
                metrics::MetricsServer::bind(addr, Arc::clone(&metrics))
                    .map_err(|source| DaemonError::Metrics { addr, source })?,
            ),
            None => None,
        };
        let findings = checks::check(&config).map_err(DaemonError::Config)?;
        for w in &findings.warnings {
            warn!(event = "config_warning", "{w}");
        }
        let mut firewall = Firewall::open(&config.daemon.table)?;
        firewall.set_owned(config.daemon.owned_table);
        // Keys, secrets, one-time files and the replay state are read
        // before the firewall is touched: an unreadable key must not leave
        // a table that drops the protected ports with no daemon to open them.
        let one_time = build::one_time_files(&config)?;
        let engine = build::engine(&config)?;
        let replay = build::replay_store(&config, &engine, unix_now())?;
        let fleet = super::build::fleet_store(&config)?;
        // Bind first so no knock logged right after the rules appear is lost.
        let nflog = NflogSocket::bind(&sesame_nflog::Config {
            group: config.daemon.nflog_group,
            ..Default::default()
        })?;
        // Subscribed before the install, so no deletion after it is missed.
        let table_watch = match sesame_nftables::ChangeWatch::open(&config.daemon.table) {
            Ok(w) => Some(w),
            Err(e) => {
                warn!(event = "table_watch", "cannot subscribe to nftables change notifications ({e}); the table is checked every second instead");
                None
            }
        };
        let outcome = firewall.install(&engine.ruleset())?;
        // An owned table cannot be changed by others: the watch would only
        // wake the loop for sesamed's own grants.
        let table_watch = table_watch.filter(|_| !firewall.owns_table());
        let table = &config.daemon.table;
        if firewall.owns_table() {
            info!(event = "table_owned", table = %table, "the kernel holds table inet {table} as sesamed's own: other programs cannot delete, flush or change it (`nft flush ruleset` leaves it alone), and it stays if sesamed stops");
        } else if config.daemon.owned_table {
            info!(event = "table_owned", table = %table, "this kernel cannot keep table inet {table} as sesamed's own (Linux 6.9 can): when another program deletes or flushes it, sesamed restores it at once");
        }
        match outcome {
            InstallOutcome::Created => {
                info!(event = "table", table = %table, "created nftables table inet {table}")
            }
            InstallOutcome::Updated => {
                info!(event = "table", table = %table, "updated nftables table inet {table} in place; active grants kept")
            }
            InstallOutcome::Recreated => {
                warn!(event = "table", table = %table, "replaced an incompatible nftables table inet {table}; its grants were carried over")
            }
        }
        let ban = config.daemon.ban;
        let mut daemon = Daemon {
            config,
            source,
            engine,
            world: HostWorld {
                firewall,
                replay,
                one_time: OneTimeFiles(one_time),
                fleet,
            },
            nflog,
            commands: CommandRunner::default(),
            origin: std::time::Instant::now(),
            observer: Observer::new(Arc::clone(&metrics), ban),
            control: Some(control),
            metrics_server,
            load: load::LoadGovernor::new(std::time::Instant::now()),
            scratch_observations: Vec::new(),
            scratch_datagrams: Vec::new(),
            table_checked: None,
            table_watch,
            fleet_rejections_logged: (std::time::Instant::now(), 0),
        };
        if outcome != InstallOutcome::Created {
            daemon.adopt_kernel_grants();
        }
        daemon.register_doors();
        // The first TOTP roll.
        let now = daemon.now();
        daemon.engine.handle_timeout(now, &mut daemon.world);
        daemon.apply();
        Ok(daemon)
    }

    /// One reading of both clocks.
    pub(super) fn now(&self) -> Now {
        Now {
            mono: Instant::from_elapsed(self.origin.elapsed()),
            unix: unix_now(),
        }
    }

    pub(super) fn register_doors(&self) {
        for d in self.engine.doors() {
            self.observer.metrics.register_door(&d.door.name);
        }
    }

    /// Runs until SIGTERM or SIGINT, then shuts down cleanly.
    pub fn run(mut self) -> Result<(), DaemonError> {
        let signals = SignalPipes::install()?;
        for d in self.engine.doors() {
            let door = &d.door;
            let opens = if door.services.is_empty() {
                "commands only".to_string()
            } else {
                door.services
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            };
            info!(event = "door", door = %door.name, "door {}: {}; opens {opens} for up to {:?}", door.name, d.describe(), door.open_for);
        }
        let group = self.config.daemon.nflog_group;
        let doors = self.engine.doors().len();
        info!(
            event = "ready",
            nflog_group = group,
            doors,
            "sesamed ready: {doors} door(s), NFLOG group {group}"
        );
        // Privileges are dropped by now: only now do the control and metrics
        // threads start, with no more than the loop has.
        self.start_servers();
        // Packets logged while the NFLOG bind was being acknowledged are held
        // in user space, where poll() cannot see them.
        self.read_packets();
        loop {
            crate::service::notify_watchdog_if_due();
            let timeout = self.poll_timeout();
            let control = self.control.take();
            let mut fds = vec![
                PollFd::new(self.nflog.as_fd(), PollFlags::POLLIN),
                PollFd::new(signals.terminate.as_fd(), PollFlags::POLLIN),
                PollFd::new(signals.hangup.as_fd(), PollFlags::POLLIN),
                PollFd::new(signals.child.as_fd(), PollFlags::POLLIN),
            ];
            let watch_at = fds.len();
            if let Some(w) = &self.table_watch {
                fds.push(PollFd::new(w.as_fd(), PollFlags::POLLIN));
            }
            let control_at = fds.len();
            if let Some(c) = &control {
                fds.push(PollFd::new(c.as_fd(), PollFlags::POLLIN));
            }
            let fleet_at = fds.len();
            if let Some(f) = &self.world.fleet {
                fds.push(PollFd::new(f.wake_fd(), PollFlags::POLLIN));
            }
            let polled = poll(&mut fds, timeout);
            let readable = |fd: &PollFd| {
                fd.revents()
                    .is_some_and(|r| r.intersects(PollFlags::POLLIN | PollFlags::POLLERR))
            };
            let [packets, term, hup, chld] = [0, 1, 2, 3].map(|i| readable(&fds[i]));
            let control_ready = control.is_some() && readable(&fds[control_at]);
            let table_changed = self.table_watch.is_some() && readable(&fds[watch_at]);
            let fleet_ready = self.world.fleet.is_some() && readable(&fds[fleet_at]);
            drop(fds);
            self.control = control;
            match polled {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(os("poll")(e.into())),
            }
            // Before packets: every millisecond the table is missing, the
            // protected ports answer everyone.
            if table_changed {
                self.table_changed();
            }
            if control_ready {
                self.serve_control();
            }
            if fleet_ready {
                self.fleet_events();
            }
            if packets {
                self.read_packets();
            } else if self.load.is_batched() {
                // Flood mode ends on quiet windows, seen even without packets.
                self.govern_load(0);
            }
            self.tick();
            if chld && drain(&signals.child) {
                self.commands.reap();
            }
            if hup && drain(&signals.hangup) {
                // Outside the signal handler: the handler only wrote a byte.
                let _ = self.reload("SIGHUP");
            }
            if term && drain(&signals.terminate) {
                break;
            }
        }
        self.shutdown();
        Ok(())
    }

    /// Starts the control and metrics threads (idempotent).
    pub(super) fn start_servers(&mut self) {
        if let Some(Err(e)) = self.control.as_mut().map(|c| c.start()) {
            error!(
                event = "control_error",
                "cannot start the control socket's thread: {e}"
            );
        }
        if let Some(Err(e)) = self.world.fleet.as_mut().map(|f| f.start_threads()) {
            error!(
                event = "fleet_error",
                "cannot start the fleet store's threads: {e}"
            );
        }
        if let Some(Err(e)) = self.metrics_server.as_mut().map(|m| m.start()) {
            error!(
                event = "metrics_error",
                "cannot start the metrics thread: {e}"
            );
        }
    }

    /// Time until the engine's next deadline, capped so a missed wake-up
    /// costs at most a second.
    fn poll_timeout(&self) -> PollTimeout {
        let now = self.now();
        let second = Duration::from_secs(1);
        let next = self
            .engine
            .poll_timeout(now)
            .map_or(second, |d| d.saturating_since(now.mono).min(second));
        let load_check = self.load.next_check().map_or(second, |at| {
            at.saturating_duration_since(std::time::Instant::now())
        });
        let wait = next.min(load_check);
        // Round up so we wake after, not just before, the deadline.
        PollTimeout::from(wait.as_micros().div_ceil(1000) as u16)
    }

    /// Executes what the engine asked for: commands run, notes are logged
    /// and counted. Also where the replay journal is compacted: after the
    /// doors opened, so the rewrite never delays an opening.
    pub(super) fn apply(&mut self) {
        let batched = self.load.is_batched();
        self.observer.now = self.now().mono;
        let mut opened = false;
        while let Some(action) = self.engine.poll_action() {
            match action {
                Action::Note(note) => {
                    opened |= matches!(note, sesame_core::engine::Note::Accepted { .. });
                    self.observer.note(note, batched);
                }
                Action::Run(run) => self.commands.spawn_as(&run.argv, run.why, run.run_as),
            }
        }
        if let (true, Some(replay)) = (opened, self.world.replay.as_mut()) {
            if let Err(e) = replay.compact_if_due() {
                warn!(
                    event = "replay_state",
                    "replay journal compaction failed (retried at the next grant): {e}"
                );
            }
        }
    }

    /// Drains the NFLOG socket (bounded per wake-up so timers stay on time).
    fn read_packets(&mut self) {
        let mut read = 0u64;
        for _ in 0..256 {
            let mut observations = std::mem::take(&mut self.scratch_observations);
            let mut datagrams = std::mem::take(&mut self.scratch_datagrams);
            observations.clear();
            datagrams.clear();
            let mut malformed = 0u64;
            self.observer.received_at = std::time::Instant::now();
            let engine = &self.engine;
            let result = self.nflog.recv(|pkt| match packet::parse(pkt.payload) {
                Ok(p) if p.proto == Proto::Udp && engine.wants_datagram(p.dst_port) => {
                    datagrams.push((p.src, p.dst, p.dst_port, p.payload.to_vec()));
                }
                Ok(p) => observations.push(Observation::from(&p)),
                Err(e) => {
                    malformed += 1;
                    debug!(event = "malformed", "ignored a logged packet: {e}");
                }
            });
            let metrics = &self.observer.metrics;
            metrics.nflog_malformed.inc_by(malformed);
            let packets = (observations.len() + datagrams.len()) as u64;
            metrics.nflog_packets.inc_by(packets);
            let counters = &mut self.observer.counters;
            counters.malformed += malformed;
            counters.packets += packets;
            read += packets;
            let now = self.now();
            self.engine.observe(now, &observations, &mut self.world);
            for (src, dst, port, bytes) in &datagrams {
                self.engine
                    .datagram(now, *src, *dst, *port, bytes, &mut self.world);
            }
            self.apply();
            self.scratch_observations = observations;
            self.scratch_datagrams = datagrams;
            match result {
                Ok(Received::Packets(_)) => {}
                Ok(Received::WouldBlock) => break,
                Ok(Received::Overrun) => {
                    self.observer.counters.overruns += 1;
                    self.observer.metrics.nflog_overruns.inc();
                    warn!(
                        event = "overrun",
                        "the kernel dropped knock log messages (receive buffer full)"
                    );
                }
                Err(e) => {
                    error!(event = "nflog_error", "reading NFLOG failed: {e}");
                    break;
                }
            }
        }
        self.govern_load(read);
    }

    /// Feeds the load governor and applies its decision to the NFLOG socket.
    fn govern_load(&mut self, packets: u64) {
        for e in self.nflog.take_config_errors() {
            warn!(
                event = "nflog_error",
                "the kernel refused an NFLOG batching change: {e}"
            );
        }
        let wall = std::time::Instant::now();
        let switch = self.load.record(wall, packets);
        let flood = &mut self.observer.flood;
        let due = flood
            .summarized
            .is_none_or(|t| wall.saturating_duration_since(t) >= FLOOD_SUMMARY_EVERY);
        if (due || switch == Some(load::Switch::ToImmediate))
            && (flood.first_knocks > 0 || flood.evictions > 0)
        {
            let (first_knocks, evictions) = (flood.first_knocks, flood.evictions);
            *flood = Default::default();
            let tracked = self.engine.tracker().in_progress();
            warn!(event = "flood_summary", first_knocks, evictions, tracked, "flood: {first_knocks} first knock(s) and {evictions} eviction(s) of first-knock attempts not logged one by one; {tracked} attempt(s) tracked");
            self.observer.flood.summarized = Some(wall);
        } else if due {
            flood.summarized = Some(wall);
        }
        let Some(switch) = switch else {
            return;
        };
        let batching = match switch {
            load::Switch::ToBatched { rate } => {
                warn!(event = "flood", rate, "knock ports receive {rate} packets/s: NFLOG batching on (up to {} packets per read, ≤{} ms added delay)", Batching::FLOOD.queue_threshold, Batching::FLOOD.flush_timeout_cs * 10);
                Batching::FLOOD
            }
            load::Switch::ToImmediate => {
                info!(
                    event = "flood_over",
                    "knock traffic is quiet again: NFLOG batching off"
                );
                Batching::IMMEDIATE
            }
        };
        self.observer
            .metrics
            .nflog_batching
            .set(i64::from(self.load.is_batched()));
        // A first knock per flood packet: counted, not noted one by one.
        self.engine.tally_first_knocks(self.load.is_batched());
        if let Err(e) = self.nflog.set_batching(batching) {
            warn!(event = "nflog_error", "cannot change NFLOG batching: {e}");
        }
    }

    /// Fires due timers, checks the table, brings the gauges up to date.
    pub(super) fn tick(&mut self) {
        self.watch_table();
        let now = self.now();
        self.engine.handle_timeout(now, &mut self.world);
        self.apply();
        let budget = self.engine.tracker().budget();
        let (banned, ignored) = (budget.banned(), budget.ignored());
        let o = &mut self.observer;
        o.metrics.banned_prefixes.set(banned as i64);
        o.metrics
            .banned_knocks
            .inc_by(ignored.saturating_sub(o.counters.banned_knocks));
        o.counters.banned_knocks = ignored;
        self.update_gauges();
    }

    /// Checks, at most once a second, that the kernel still holds Sesame's
    /// table. Host tooling (`nft flush ruleset` from nftables.service,
    /// firewalld, a hand-run flush) deletes it, and then every protected
    /// port answers everyone: it is reinstalled at once, with every grant
    /// the engine holds, and said loudly.
    fn watch_table(&mut self) {
        let wall = std::time::Instant::now();
        if self
            .table_checked
            .is_some_and(|t| wall.saturating_duration_since(t) < TABLE_CHECK_EVERY)
        {
            return;
        }
        self.table_checked = Some(wall);
        match self.world.firewall.exists() {
            Ok(true) => {}
            Ok(false) => self.restore_table("table deleted (seen by the periodic check)"),
            Err(e) => warn!(
                event = "table_check_failed",
                "cannot check the nftables table: {e}"
            ),
        }
    }

    /// A restart found the table with live grants (kernel timeouts kept them
    /// while no daemon ran): the engine tracks them again, so `status` lists
    /// them and a flushed table is restored with them.
    fn adopt_kernel_grants(&mut self) {
        let found = match self.world.firewall.grants() {
            Ok(g) => g,
            Err(e) => {
                warn!(
                    event = "adopt_failed",
                    "cannot list the grants left in the kernel: {e}"
                );
                return;
            }
        };
        let found: Vec<_> = found
            .into_iter()
            .filter_map(|g| Some((g.addr, g.service, g.expires_in?)))
            .collect();
        let now = self.now();
        let adopted = self.engine.adopt(now, &found);
        if adopted > 0 {
            info!(
                event = "adopted",
                grants = adopted,
                "took over {adopted} grant(s) left in the kernel by the previous run"
            );
        }
    }

    /// Keeps the change watch only while the table is a plain one (after a
    /// reload changed `owned_table`): an owned table cannot be changed by
    /// others.
    pub(super) fn sync_table_watch(&mut self) {
        if self.world.firewall.owns_table() {
            self.table_watch = None;
        } else if self.table_watch.is_none() {
            match sesame_nftables::ChangeWatch::open(&self.config.daemon.table) {
                Ok(w) => self.table_watch = Some(w),
                Err(e) => warn!(event = "table_watch", "cannot subscribe to nftables change notifications ({e}); the table is checked every second instead"),
            }
        }
    }

    /// Notifications arrived: re-installs the table if anyone else deleted
    /// any part of it.
    fn table_changed(&mut self) {
        let own = [self.world.firewall.port_id()];
        let Some(watch) = self.table_watch.as_mut() else {
            return;
        };
        let found = watch.drain(&own);
        if found.is_empty() {
            return;
        }
        let mut what: Vec<&str> = found.iter().map(|t| t.what).collect();
        what.dedup();
        let by = found.iter().find_map(|t| t.by.clone());
        let cause = format!(
            "{} deleted by {}",
            what.join(", "),
            by.as_deref().unwrap_or("another program")
        );
        self.restore_table(&cause);
    }

    fn restore_table(&mut self, cause: &str) {
        let table = self.config.daemon.table.clone();
        let now = self.now();
        match self.engine.restore(now, &mut self.world) {
            Err(e) => {
                error!(event = "table_restore_failed", table = %table, "the nftables table inet {table} was deleted from outside and cannot be reinstalled: {e}; protected ports are OPEN until it is");
            }
            Ok(restored) => {
                self.observer.metrics.table_restores.inc();
                self.observer.counters.table_restores += 1;
                error!(event = "table_restored", table = %table, grants = restored, cause = %cause, "nftables table inet {table} changed from outside ({cause}; e.g. `nft flush ruleset` by nftables.service): reinstalled with {restored} active grant(s). Keep host tooling from flushing it (see README)");
            }
        }
    }

    /// Clean shutdown: the table and its drop rules stay (fail closed);
    /// kernel grants keep their own timeouts; pending close commands run now
    /// because no one would run them later.
    fn shutdown(&mut self) {
        info!(
            event = "shutdown",
            "shutting down; protected ports stay closed"
        );
        self.engine.shutdown();
        self.apply();
        self.commands.wait_all(Duration::from_secs(5));
        let c = self.observer.counters;
        info!(
            event = "stopped",
            "stopped: {} packets, {} malformed, {} overruns, {} opened, {} refreshed",
            c.packets,
            c.malformed,
            c.overruns,
            c.opened,
            c.refreshed
        );
    }
}
