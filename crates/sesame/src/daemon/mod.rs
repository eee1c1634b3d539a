//! `sesamed`: wires the sans-IO core to its adapters.
//!
//! One thread, one `poll()` loop over the NFLOG socket and three signal pipes.
//! Timers (knock timeouts, grant closes) are deadlines computed by the core;
//! nothing runs inside a signal handler.

pub mod auth;
pub mod checks;
pub mod commands;
pub mod load;
pub mod metrics;
mod ops;
pub mod rules;
pub mod source;

use std::collections::HashMap;
use std::net::IpAddr;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use sesame_core::grants::{GrantOutcome, Grants};
use sesame_core::tracker::{DoorId, Event, Observation, Tracker};
use sesame_core::{packet, Door, Instant, Proto};
use sesame_nflog::{Batching, NflogSocket, Received};
use sesame_nftables::{Firewall, InstallOutcome};
use tracing::{debug, error, info, warn};

use sesame_core::fwknop::{self, FwknopError, FwknopMessage, MsgType};

use crate::config::{Config, DoorKind};
use crate::control::server::ControlServer;
use crate::fwknop_conf::FwknopStanza;
use crate::one_time::{OneTimeError, OneTimeFile};
use commands::CommandRunner;
use source::ConfigSource;

/// Why the daemon could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The config cannot run on this host (see [`checks::check`]).
    #[error("{0}")]
    Config(String),
    /// Installing or talking to the nftables table failed.
    #[error("firewall: {0}")]
    Firewall(#[from] sesame_nftables::FirewallError),
    /// Binding or reading the NFLOG group failed.
    #[error("packet observation: {0}")]
    Nflog(#[from] sesame_nflog::NflogError),
    /// SPA/TOTP keys or the replay state could not be used.
    #[error(transparent)]
    Auth(#[from] auth::AuthError),
    /// A one-time sequences file could not be used.
    #[error("door {door:?}: {source}")]
    OneTime {
        /// The door.
        door: String,
        /// Cause.
        source: OneTimeError,
    },
    /// The pid file could not be written.
    #[error("pid file {path}: {source}")]
    PidFile {
        /// The file.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The control socket could not be set up.
    #[error(transparent)]
    Control(#[from] crate::control::server::ControlError),
    /// The metrics endpoint could not be bound.
    #[error("metrics endpoint {addr}: {source}")]
    Metrics {
        /// The address.
        addr: std::net::SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
    /// Signal setup, poll or randomness failed.
    #[error("{what}: {source}")]
    Os {
        /// What was being done.
        what: &'static str,
        /// Cause.
        source: std::io::Error,
    },
}

fn os(what: &'static str) -> impl FnOnce(std::io::Error) -> DaemonError {
    move |source| DaemonError::Os { what, source }
}

/// Self-pipes the signal handlers write to; the loop polls the read ends.
struct SignalPipes {
    terminate: UnixStream,
    hangup: UnixStream,
    child: UnixStream,
}

impl SignalPipes {
    fn install() -> Result<Self, DaemonError> {
        use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGTERM};
        use signal_hook::low_level::pipe;
        let pair = || UnixStream::pair().map_err(os("signal pipe"));
        let (terminate, term_w) = pair()?;
        let (hangup, hup_w) = pair()?;
        let (child, chld_w) = pair()?;
        for s in [&terminate, &hangup, &child] {
            s.set_nonblocking(true).map_err(os("signal pipe"))?;
        }
        let reg = |sig, w: &UnixStream| -> Result<(), DaemonError> {
            let w = w.try_clone().map_err(os("signal pipe"))?;
            pipe::register(sig, w)
                .map(drop)
                .map_err(os("signal handler"))
        };
        reg(SIGTERM, &term_w)?;
        reg(SIGINT, &term_w)?;
        reg(SIGHUP, &hup_w)?;
        reg(SIGCHLD, &chld_w)?;
        Ok(SignalPipes {
            terminate,
            hangup,
            child,
        })
    }
}

/// Empties a non-blocking signal pipe; true if anything was pending.
fn drain(mut s: &UnixStream) -> bool {
    use std::io::Read;
    let mut buf = [0u8; 64];
    let mut got = false;
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        got = true;
    }
    got
}

/// Per-run counters (shown by `sesame status`).
#[derive(Debug, Default, Clone, Copy)]
pub struct Counters {
    /// Grants revoked (control socket, or their door removed by a reload).
    pub revoked: u64,
    /// Manual grants (`sesame open`).
    pub manual_opens: u64,
    /// Successful reloads.
    pub reloads: u64,
    /// Packets delivered by NFLOG.
    pub packets: u64,
    /// Packets the parser refused.
    pub malformed: u64,
    /// Times the kernel reported lost log messages (ENOBUFS).
    pub overruns: u64,
    /// Doors opened (new grants).
    pub opened: u64,
    /// Grants refreshed by a repeated knock.
    pub refreshed: u64,
    /// Knocks ignored from banned prefixes, as last exported.
    pub banned_knocks: u64,
    /// Control connections refused, as last exported.
    pub control_refused: u64,
    /// Log lines dropped, as last exported.
    pub log_dropped: u64,
}

/// First knocks and evictions counted instead of logged during a flood.
#[derive(Debug, Default)]
struct FloodQuiet {
    first_knocks: u64,
    evictions: u64,
    /// When the last summary was written.
    summarized: Option<std::time::Instant>,
}

/// How often the daemon checks that its nftables table still exists.
const TABLE_CHECK_EVERY: Duration = Duration::from_secs(1);

/// How often a flood's summary line is written.
const FLOOD_SUMMARY_EVERY: Duration = Duration::from_secs(5);

/// The running daemon.
pub struct Daemon {
    config: Config,
    tracker: Tracker,
    grants: Grants,
    firewall: Firewall,
    nflog: NflogSocket,
    commands: CommandRunner,
    origin: std::time::Instant,
    events: Vec<Event>,
    closed: Vec<(IpAddr, DoorId)>,
    counters: Counters,
    /// When the packets being handled were read, for the `open_us` figure
    /// (knock packet read → grant committed in the kernel).
    received_at: std::time::Instant,
    /// Doors fed by a one-time sequences file.
    one_time: HashMap<DoorId, OneTimeFile>,
    /// SPA verifiers and TOTP slots.
    auth: auth::AuthDoors,
    /// The replay cache (only when SPA or TOTP doors exist).
    replay: Option<auth::PersistentReplay>,
    /// Unix second of the last TOTP roll.
    rolled_at: u64,
    /// Where the config came from, for reloads.
    source: ConfigSource,
    /// Services actually granted per (source, door) (SPA and fwknop may
    /// grant a subset), for revocations.
    granted: HashMap<(IpAddr, DoorId), Vec<sesame_core::Service>>,
    /// Grants found in the kernel at start (left by the previous run, which
    /// already ran their on_close): tracked so a flushed table gets them
    /// back, closed without running on_close again.
    adopted: std::collections::HashSet<(IpAddr, DoorId)>,
    /// The control socket.
    control: Option<ControlServer>,
    /// Metrics, and their endpoint when enabled.
    metrics: std::sync::Arc<metrics::Metrics>,
    metrics_server: Option<metrics::MetricsServer>,
    /// Switches NFLOG batching on during floods.
    load: load::LoadGovernor,
    /// Reused per-datagram buffers (no allocation per packet).
    scratch_observations: Vec<Observation>,
    scratch_datagrams: Vec<(IpAddr, IpAddr, u16, Vec<u8>)>,
    /// Lines not written one by one in flood mode, for the next summary.
    flood_quiet: FloodQuiet,
    /// Public-key SPA verifications per source prefix.
    pk_budget: sesame_core::rate::PrefixBudget,
    /// When the table was last checked (see [`Daemon::watch_table`]).
    table_checked: Option<std::time::Instant>,
    /// nf_tables change notifications: deletions in the table by others are
    /// healed at once (the 1 s check stays as a fallback).
    table_watch: Option<sesame_nftables::ChangeWatch>,
    /// Times the table was restored (for `status`).
    table_restores: u64,
    /// Per-door knock counters (see [`Daemon::knock_counter`]).
    knock_counters: Vec<[prometheus_client::metrics::counter::Counter; 6]>,
}

fn random_seed() -> Result<[u64; 2], DaemonError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| DaemonError::Os {
        what: "random seed",
        source: std::io::Error::other(e.to_string()),
    })?;
    let (a, b) = bytes.split_at(8);
    Ok([
        u64::from_ne_bytes(a.try_into().expect("8 bytes")),
        u64::from_ne_bytes(b.try_into().expect("8 bytes")),
    ])
}

impl Daemon {
    /// Installs the table, binds the NFLOG group and builds the core state.
    /// `source` is kept to re-read the config on reload. The control socket
    /// and the metrics endpoint are set up here (refused when unsafe).
    pub fn start(config: Config, source: ConfigSource) -> Result<Self, DaemonError> {
        let control = ControlServer::bind(
            &config.daemon.control_socket,
            config.daemon.control_group.as_deref(),
        )?;
        let metrics = std::sync::Arc::new(metrics::Metrics::default());
        let metrics_server = match config.daemon.metrics {
            Some(addr) => Some(
                metrics::MetricsServer::bind(addr, std::sync::Arc::clone(&metrics))
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
        let ruleset = rules::for_config(&config, &config.doors);
        let mut one_time = HashMap::new();
        for (id, door) in config.doors.iter().enumerate() {
            if let Some(path) = config.one_time.get(&door.name) {
                let file = OneTimeFile::open(path).map_err(|e| DaemonError::OneTime {
                    door: door.name.clone(),
                    source: e,
                })?;
                one_time.insert(id, file);
            }
        }
        // Keys, secrets and the replay state are read before the firewall is
        // touched: an unreadable key must not leave a table that drops the
        // protected ports with no daemon to open them.
        let mut auth = auth::load(&config)?;
        let now_unix = auth::unix_now();
        let replay = if auth.is_empty() {
            None
        } else {
            let (replay, warning) = auth::PersistentReplay::open(
                &config.daemon.state_dir,
                sesame_core::replay::ReplayCache::DEFAULT_CAPACITY,
                auth.widest_window(),
                now_unix,
            )?;
            if let Some(w) = warning {
                warn!(event = "replay_state", "{w}");
            }
            let mut replay = replay;
            replay.cache.set_owners(auth.owner_count());
            Some(replay)
        };
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
        let outcome = firewall.install(&ruleset)?;
        // An owned table cannot be changed by others: the watch would only
        // wake the loop for sesamed's own grants.
        let table_watch = table_watch.filter(|_| !firewall.owns_table());
        if firewall.owns_table() {
            info!(event = "table_owned", table = %config.daemon.table, "the kernel holds table inet {} as sesamed's own: other programs cannot delete, flush or change it (`nft flush ruleset` leaves it alone), and it stays if sesamed stops", config.daemon.table);
        } else if config.daemon.owned_table {
            info!(event = "table_owned", table = %config.daemon.table, "this kernel cannot keep table inet {} as sesamed's own (Linux 6.9 can): when another program deletes or flushes it, sesamed restores it at once", config.daemon.table);
        }
        match outcome {
            InstallOutcome::Created => {
                info!(event = "table", table = %config.daemon.table, "created nftables table inet {}", config.daemon.table)
            }
            InstallOutcome::Updated => {
                info!(event = "table", table = %config.daemon.table, "updated nftables table inet {} in place; active grants kept", config.daemon.table)
            }
            InstallOutcome::Recreated => {
                warn!(event = "table", table = %config.daemon.table, "replaced an incompatible nftables table inet {}; its grants were carried over", config.daemon.table)
            }
        }
        let mut tracker = Tracker::new(
            auth.tracker_doors(&config.doors),
            config.daemon.max_tracked,
            random_seed()?,
        );
        tracker.set_ban_policy(config.daemon.ban);
        if let Some(r) = &replay {
            for (slot, sequence) in auth.roll(now_unix, &r.cache) {
                tracker.set_sequence(slot, sequence);
            }
        }
        let grants = Grants::new(config.daemon.max_grants, random_seed()?);
        let config_pk_rate = config.daemon.spa_pk_rate;
        let mut daemon = Daemon {
            config,
            tracker,
            grants,
            firewall,
            nflog,
            commands: CommandRunner::default(),
            origin: std::time::Instant::now(),
            events: Vec::new(),
            closed: Vec::new(),
            counters: Counters::default(),
            received_at: std::time::Instant::now(),
            one_time,
            auth,
            replay,
            rolled_at: now_unix,
            source,
            granted: HashMap::new(),
            adopted: std::collections::HashSet::new(),
            control: Some(control),
            metrics,
            metrics_server,
            load: load::LoadGovernor::new(std::time::Instant::now()),
            scratch_observations: Vec::new(),
            scratch_datagrams: Vec::new(),
            knock_counters: Vec::new(),
            flood_quiet: FloodQuiet::default(),
            table_checked: None,
            table_watch,
            table_restores: 0,
            pk_budget: sesame_core::rate::PrefixBudget::new(config_pk_rate, random_seed()?),
        };
        if outcome != InstallOutcome::Created {
            daemon.adopt_kernel_grants();
        }
        for door in &daemon.config.doors {
            daemon.metrics.register_door(&door.name);
        }
        Ok(daemon)
    }

    fn now(&self) -> Instant {
        Instant::from_elapsed(self.origin.elapsed())
    }

    /// Runs until SIGTERM or SIGINT, then shuts down cleanly.
    pub fn run(mut self) -> Result<(), DaemonError> {
        let signals = SignalPipes::install()?;
        for door in &self.config.doors {
            let opens = if door.services.is_empty() {
                "commands only".to_string()
            } else {
                door.services
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            };
            let how = match self.config.kinds.get(&door.name) {
                None => format!(
                    "sequence {} within {:?}",
                    door.sequence
                        .iter()
                        .map(|k| k.to_string())
                        .collect::<Vec<_>>()
                        .join(","),
                    door.seq_timeout
                ),
                Some(DoorKind::Spa(spa)) => format!(
                    "SPA on udp/{} ({} user(s), window ±{:?})",
                    spa.port,
                    spa.users.len(),
                    spa.window
                ),
                Some(DoorKind::Totp(t)) => format!(
                    "TOTP sequences of {} {} knock(s) in {}-{} every {:?} ({} user(s))",
                    t.length,
                    t.proto,
                    t.ports.start(),
                    t.ports.end(),
                    t.period,
                    t.users.len()
                ),
                Some(DoorKind::Fwknop(f)) => format!(
                    "fwknop SPA on udp/{} ({} stanza(s), max age ±{:?})",
                    f.port,
                    f.stanzas.len(),
                    f.max_age
                ),
            };
            info!(event = "door", door = %door.name, "door {}: {how}; opens {opens} for up to {:?}", door.name, door.open_for);
        }
        info!(
            event = "ready",
            nflog_group = self.config.daemon.nflog_group,
            doors = self.config.doors.len(),
            "sesamed ready: {} door(s), NFLOG group {}",
            self.config.doors.len(),
            self.config.daemon.nflog_group
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
            let polled = poll(&mut fds, timeout);
            let readable = |fd: &PollFd| {
                fd.revents()
                    .is_some_and(|r| r.intersects(PollFlags::POLLIN | PollFlags::POLLERR))
            };
            let (packets, term, hup, chld) = (
                readable(&fds[0]),
                readable(&fds[1]),
                readable(&fds[2]),
                readable(&fds[3]),
            );
            let control_ready = control.is_some() && readable(&fds[control_at]);
            let table_changed = self.table_watch.is_some() && readable(&fds[watch_at]);
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
    fn start_servers(&mut self) {
        if let Some(c) = self.control.as_mut() {
            if let Err(e) = c.start() {
                error!(
                    event = "control_error",
                    "cannot start the control socket's thread: {e}"
                );
            }
        }
        if let Some(m) = self.metrics_server.as_mut() {
            if let Err(e) = m.start() {
                error!(
                    event = "metrics_error",
                    "cannot start the metrics thread: {e}"
                );
            }
        }
    }

    /// Time until the next core deadline, capped so a missed wake-up costs at
    /// most a second.
    fn poll_timeout(&self) -> PollTimeout {
        let now = self.now();
        let next = [self.tracker.next_deadline(), self.grants.next_deadline()]
            .into_iter()
            .flatten()
            .min();
        let roll = self
            .auth
            .next_roll_in(auth::unix_now())
            .unwrap_or(Duration::from_secs(1));
        let load_check = self.load.next_check().map_or(Duration::from_secs(1), |at| {
            at.saturating_duration_since(std::time::Instant::now())
        });
        let wait = next
            .map_or(Duration::from_secs(1), |d| {
                d.saturating_since(now).min(Duration::from_secs(1))
            })
            .min(roll)
            .min(load_check);
        // Round up so we wake after, not just before, the deadline.
        let ms = wait.as_micros().div_ceil(1000) as u16;
        PollTimeout::from(ms)
    }

    /// Drains the NFLOG socket (bounded per wake-up so timers stay on time).
    fn read_packets(&mut self) {
        let mut read = 0u64;
        for _ in 0..256 {
            let mut observations = std::mem::take(&mut self.scratch_observations);
            let mut spa_packets = std::mem::take(&mut self.scratch_datagrams);
            observations.clear();
            spa_packets.clear();
            let mut malformed = 0u64;
            self.received_at = std::time::Instant::now();
            let (spa_ports, fwknop_ports) = (&self.auth.spa, &self.auth.fwknop);
            let result = self.nflog.recv(|pkt| match packet::parse(pkt.payload) {
                Ok(p)
                    if p.proto == Proto::Udp
                        && (spa_ports.contains_key(&p.dst_port)
                            || fwknop_ports.contains_key(&p.dst_port)) =>
                {
                    spa_packets.push((p.src, p.dst, p.dst_port, p.payload.to_vec()));
                }
                Ok(p) => observations.push(Observation::from(&p)),
                Err(e) => {
                    malformed += 1;
                    debug!(event = "malformed", "ignored a logged packet: {e}");
                }
            });
            self.counters.malformed += malformed;
            self.metrics.nflog_malformed.inc_by(malformed);
            let packets = (observations.len() + spa_packets.len()) as u64;
            read += packets;
            self.metrics.nflog_packets.inc_by(packets);
            let now = self.now();
            for obs in &observations {
                self.counters.packets += 1;
                self.tracker.observe(now, obs, &mut self.events);
            }
            self.handle_events(now);
            for (src, dst, port, datagram) in &spa_packets {
                self.counters.packets += 1;
                if self.auth.fwknop.contains_key(port) {
                    self.fwknop_packet(now, *src, *dst, *port, datagram);
                } else {
                    self.spa_packet(now, *src, *port, datagram);
                }
            }
            self.scratch_observations = observations;
            self.scratch_datagrams = spa_packets;
            match result {
                Ok(Received::Packets(_)) => {}
                Ok(Received::WouldBlock) => break,
                Ok(Received::Overrun) => {
                    self.counters.overruns += 1;
                    self.metrics.nflog_overruns.inc();
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
        let due = self
            .flood_quiet
            .summarized
            .is_none_or(|t| wall.saturating_duration_since(t) >= FLOOD_SUMMARY_EVERY);
        if (due || switch == Some(load::Switch::ToImmediate))
            && (self.flood_quiet.first_knocks > 0 || self.flood_quiet.evictions > 0)
        {
            let FloodQuiet {
                first_knocks,
                evictions,
                ..
            } = std::mem::take(&mut self.flood_quiet);
            warn!(
                event = "flood_summary",
                first_knocks,
                evictions,
                tracked = self.tracker.in_progress(),
                "flood: {first_knocks} first knock(s) and {evictions} eviction(s) of first-knock attempts not logged one by one; {} attempt(s) tracked",
                self.tracker.in_progress()
            );
            self.flood_quiet.summarized = Some(wall);
        } else if due {
            self.flood_quiet.summarized = Some(wall);
        }
        let Some(switch) = switch else {
            return;
        };
        let batching = match switch {
            load::Switch::ToBatched { rate } => {
                warn!(
                    event = "flood",
                    rate,
                    "knock ports receive {rate} packets/s: NFLOG batching on (up to {} packets per read, ≤{} ms added delay)",
                    Batching::FLOOD.queue_threshold,
                    Batching::FLOOD.flush_timeout_cs * 10
                );
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
        self.metrics
            .nflog_batching
            .set(i64::from(self.load.is_batched()));
        if let Err(e) = self.nflog.set_batching(batching) {
            warn!(event = "nflog_error", "cannot change NFLOG batching: {e}");
        }
    }

    /// Fires due timers: knock timeouts and grant closes.
    fn tick(&mut self) {
        self.roll_totp();
        self.watch_table();
        let now = self.now();
        self.tracker.expire(now, &mut self.events);
        self.handle_events(now);
        for prefix in self.tracker.expire_bans(now) {
            info!(event = "ban_ended", prefix = %prefix, "ban of {prefix} ended: its knocks count again");
        }
        let budget = self.tracker.budget();
        self.metrics.banned_prefixes.set(budget.banned() as i64);
        let ignored = budget.ignored();
        if ignored > self.counters.banned_knocks {
            self.metrics
                .banned_knocks
                .inc_by(ignored - self.counters.banned_knocks);
        }
        self.counters.banned_knocks = ignored;
        self.update_gauges();
        self.grants.expire(now, &mut self.closed);
        let closed = std::mem::take(&mut self.closed);
        for (src, door) in &closed {
            self.on_close(*src, *door, "expired");
        }
        self.closed = closed;
        self.closed.clear();
    }

    /// Checks, at most once a second, that the kernel still holds Sesame's
    /// table. Host tooling (`nft flush ruleset` from nftables.service on
    /// start, reload and stop; firewalld; a hand-run flush) deletes it, and
    /// then every protected port answers everyone. It is reinstalled at once,
    /// with every grant the daemon still holds, and said loudly.
    fn watch_table(&mut self) {
        let wall = std::time::Instant::now();
        if self
            .table_checked
            .is_some_and(|t| wall.saturating_duration_since(t) < TABLE_CHECK_EVERY)
        {
            return;
        }
        self.table_checked = Some(wall);
        match self.firewall.exists() {
            Ok(true) => {}
            Ok(false) => self.restore_table("table deleted (seen by the periodic check)"),
            Err(e) => warn!(
                event = "table_check_failed",
                "cannot check the nftables table: {e}"
            ),
        }
    }

    /// A restart found the table with live grants (kernel timeouts kept them
    /// while no daemon ran): they are tracked again, so `status` lists them
    /// and a flushed table is restored with them.
    fn adopt_kernel_grants(&mut self) {
        let found = match self.firewall.grants() {
            Ok(g) => g,
            Err(e) => {
                warn!(
                    event = "adopt_failed",
                    "cannot list the grants left in the kernel: {e}"
                );
                return;
            }
        };
        let now = self.now();
        let mut adopted = 0usize;
        for g in found {
            let Some(left) = g.expires_in else { continue };
            let Some(door) = self
                .config
                .doors
                .iter()
                .position(|d| d.services.contains(&g.service))
            else {
                continue;
            };
            self.grants.open(now, g.addr, door, left);
            let services = self.granted.entry((g.addr, door)).or_default();
            if !services.contains(&g.service) {
                services.push(g.service);
            }
            self.adopted.insert((g.addr, door));
            adopted += 1;
        }
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
    /// others, and the watch would only wake the loop for sesamed's own
    /// grants.
    pub(super) fn sync_table_watch(&mut self) {
        if self.firewall.owns_table() {
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
        let own = [self.firewall.port_id()];
        let Some(watch) = self.table_watch.as_mut() else {
            return;
        };
        let found = watch.drain(&own);
        if found.is_empty() {
            return;
        }
        let mut what: Vec<&str> = found.iter().map(|t| t.what).collect();
        what.dedup();
        let by: Vec<String> = found.iter().filter_map(|t| t.by.clone()).collect();
        let cause = format!(
            "{} deleted by {}",
            what.join(", "),
            by.first().map_or("another program", String::as_str)
        );
        self.restore_table(&cause);
    }

    fn restore_table(&mut self, cause: &str) {
        let ruleset = rules::for_config(&self.config, self.tracker.doors());
        if let Err(e) = self.firewall.install(&ruleset) {
            error!(event = "table_restore_failed", table = %self.config.daemon.table, "the nftables table inet {} was deleted from outside and cannot be reinstalled: {e}; protected ports are OPEN until it is", self.config.daemon.table);
            return;
        }
        let now = self.now();
        let mut restored = 0usize;
        let grants: Vec<(IpAddr, DoorId, Instant)> = self.grants.iter().collect();
        for (src, door, until) in grants {
            let services = self
                .granted
                .get(&(src, door))
                .cloned()
                .unwrap_or_else(|| self.door(door).services.clone());
            let left = until.saturating_since(now).max(Duration::from_millis(1));
            if !services.is_empty() && self.firewall.grant(src, &services, left).is_ok() {
                restored += 1;
            }
        }
        self.metrics.table_restores.inc();
        self.table_restores += 1;
        error!(event = "table_restored", table = %self.config.daemon.table, grants = restored, cause = %cause, "nftables table inet {} changed from outside ({cause}; e.g. `nft flush ruleset` by nftables.service): reinstalled with {restored} active grant(s). Keep host tooling from flushing it (see README)", self.config.daemon.table);
    }

    /// Loads the TOTP sequences of a new time step into their slots. The
    /// kernel observes each TOTP door's whole port range, so no rule changes.
    fn roll_totp(&mut self) {
        let now_unix = auth::unix_now();
        if self.auth.totp.is_empty() || now_unix == self.rolled_at {
            return;
        }
        self.rolled_at = now_unix;
        let Some(replay) = &self.replay else { return };
        for (slot, sequence) in self.auth.roll(now_unix, &replay.cache) {
            self.tracker.set_sequence(slot, sequence);
        }
    }

    /// Verifies one SPA datagram and opens its door for the requester.
    fn spa_packet(&mut self, now: Instant, src: IpAddr, port: u16, datagram: &[u8]) {
        let Some(spa) = self.auth.spa.get(&port) else {
            return;
        };
        let door_id = spa.door;
        let name = self.config.doors[door_id].name.clone();
        let Some(replay) = self.replay.as_mut() else {
            return;
        };
        let now_unix = auth::unix_now();
        // Cheap checks first (length, magic, version, mac1, key id); a
        // public-key verification then spends the source prefix's budget,
        // so one prefix's flood cannot take the others' share.
        match spa.verifier.precheck(datagram) {
            Err(e) => {
                debug!(event = "spa_refused", source = %src, door = %name, reason = e.reason(), "SPA packet refused: {e}");
                self.metrics.reject(&name, "spa", e.reason());
                return;
            }
            Ok(sesame_core::spa::Cost::PublicKey) if !self.pk_budget.allow(now, src) => {
                debug!(event = "spa_refused", source = %src, door = %name, reason = "rate_limited", "public-key SPA packet refused: this source's budget of verifications is spent");
                self.metrics.reject(&name, "spa", "rate_limited");
                return;
            }
            Ok(_) => {}
        }
        match spa
            .verifier
            .verify_and_record(datagram, now_unix, &mut replay.cache)
        {
            Ok(v) => {
                if replay.before_first_start(v.payload.timestamp) {
                    info!(event = "spa_refused", source = %src, door = %name, user = %v.user, reason = "before_first_start", "SPA packet refused: made at {} (unix), before this daemon's first start with an empty state directory at {}; a lost state directory must not let captured packets be replayed", v.payload.timestamp, replay.not_before().unwrap_or(0));
                    self.metrics.reject(&name, "spa", "before_first_start");
                    return;
                }
                if let Err(e) = replay.record(v.replay_key, v.replay_expires) {
                    // Fail closed: an accept that cannot be remembered across
                    // a restart is not honoured.
                    error!(event = "spa_refused", source = %src, door = %name, reason = "replay_state", "{e}");
                    self.metrics.reject(&name, "spa", "replay_state");
                    return;
                }
                let target = v.payload.address.unwrap_or(src);
                if let Some(explicit) = v.payload.address {
                    if let Err(why) = explicit_target_allowed(explicit) {
                        info!(event = "spa_refused", source = %src, door = %name, user = %v.user, reason = "address_refused", "SPA request refused: {why}");
                        self.metrics.reject(&name, "spa", "address_refused");
                        return;
                    }
                }
                info!(event = "spa_accepted", source = %src, door = %name, user = %v.user, mode = %v.mode, "SPA request from user {} accepted", v.user);
                self.open_with(now, target, door_id, &v.services, v.duration);
                self.compact_replay();
            }
            Err(e) => {
                info!(event = "spa_refused", source = %src, door = %name, reason = e.reason(), "SPA packet refused: {e}");
                self.metrics.reject(&name, "spa", e.reason());
            }
        }
    }

    /// Handles one fwknop SPA packet with fwknopd's meaning: the first
    /// stanza whose SOURCE matches and whose keys authenticate the packet
    /// decides; then replay, username, message type, address and ports are
    /// checked against it. Refusals are logged with a distinct `reason`.
    fn fwknop_packet(
        &mut self,
        now: Instant,
        src: IpAddr,
        dst: IpAddr,
        port: u16,
        datagram: &[u8],
    ) {
        let Some(door) = self.auth.fwknop.get(&port) else {
            return;
        };
        let door_id = door.door;
        let name = self.config.doors[door_id].name.clone();
        let now_unix = auth::unix_now();
        let metrics = &self.metrics;
        let refuse = |reason: &str, detail: String| {
            metrics.reject(&name, "fwknop", reason);
            info!(event = "fwknop_refused", source = %src, door = %name, reason, "fwknop SPA packet refused: {detail}");
        };
        let mut last_error: Option<FwknopError> = None;
        // A stanza that authenticates the packet but refuses it on policy
        // (username, source address, ports, commands) does not end the
        // search: the next matching stanza may accept it, as in fwknopd
        // (fwknop's "dual usage access key" setups rely on it).
        let mut policy_refusal: Option<(&'static str, String)> = None;
        let mut found = None;
        for (stanza, keys) in &door.stanzas {
            if !fwknop_source_matches(stanza, src) {
                continue;
            }
            // DESTINATION: the addresses the SPA packet must be sent to.
            if !in_networks(&stanza.destination, dst) {
                continue;
            }
            if stanza.access_expire.is_some_and(|t| now_unix >= t) {
                continue;
            }
            match fwknop::decode(datagram, keys, now_unix, door.max_age) {
                Ok(msg) => {
                    let action = if msg.msg_type == MsgType::Command {
                        fwknop_command(stanza, &msg).map(FwknopAction::Command)
                    } else {
                        fwknop_grant(stanza, &msg, src).map(FwknopAction::Grant)
                    };
                    match action {
                        Ok(action) => {
                            found = Some((stanza.clone(), msg, action));
                            break;
                        }
                        Err((reason, detail)) => {
                            policy_refusal = Some((
                                reason,
                                format!("{detail} (stanza at line {})", stanza.line),
                            ));
                        }
                    }
                }
                // Another stanza may hold the right keys.
                Err(e) if !packet_level(&e) => last_error = Some(e),
                Err(e) => {
                    refuse(e.reason(), e.to_string());
                    return;
                }
            }
        }
        let Some((stanza, msg, action)) = found else {
            match (policy_refusal, last_error) {
                (Some((reason, detail)), _) => refuse(reason, detail),
                (None, Some(e)) => refuse(e.reason(), e.to_string()),
                (None, None) => refuse(
                    "no_stanza",
                    format!("no access.conf stanza matches source {src}"),
                ),
            }
            return;
        };
        let max_age = door.max_age;
        let Some(replay) = self.replay.as_mut() else {
            return;
        };
        if replay.before_first_start(msg.timestamp) {
            refuse(
                "before_first_start",
                format!(
                    "made at {} (unix), before this daemon's first start with an empty state directory at {}",
                    msg.timestamp,
                    replay.not_before().unwrap_or(0)
                ),
            );
            return;
        }
        let (replay_key, replay_expiry) = (
            auth::fwknop_key(&name, stanza.line, &msg),
            msg.replay_expiry(max_age),
        );
        if let Err(e) = replay
            .cache
            .check_and_insert(replay_key, replay_expiry, now_unix)
        {
            let reason = match e {
                sesame_core::replay::ReplayError::Replayed => "replay",
                _ => "replay_unverifiable",
            };
            refuse(reason, format!("{e} (user {:?})", msg.username));
            return;
        }
        if let Err(e) = replay.record(replay_key, replay_expiry) {
            refuse("replay_state", e.to_string());
            return;
        }
        match action {
            FwknopAction::Command(argv) => {
                info!(event = "fwknop_command", source = %src, door = %name, user = %msg.username, stanza_line = stanza.line, "fwknop command message accepted (ENABLE_CMD_EXEC)");
                let ids = self
                    .auth
                    .fwknop
                    .get(&port)
                    .and_then(|d| d.run_as.get(&stanza.line).copied());
                self.commands.spawn_as(
                    &argv,
                    format!("fwknop command door={name} source={src}"),
                    ids,
                );
                return;
            }
            FwknopAction::Grant((target, services, open_for)) => {
                info!(
                    event = "fwknop_accepted",
                    source = %src,
                    door = %name,
                    user = %msg.username,
                    stanza_line = stanza.line,
                    "fwknop SPA request {} accepted",
                    msg.message_string()
                );
                self.open_with(now, target, door_id, &services, open_for);
            }
        }
        self.compact_replay();
    }

    /// A TOTP slot's sequence was knocked: refuse it if it was used before
    /// (from any source), else record it, retire the slot and open the door.
    fn totp_open(&mut self, now: Instant, src: IpAddr, slot: DoorId, owner: auth::SlotOwner) {
        let door_id = self.auth.totp[owner.totp].door;
        let name = self.config.doors[door_id].name.clone();
        let Some((key, expires, step, user)) = self.auth.slot_credential(owner) else {
            return;
        };
        // Single use: whatever happens next, this slot is done.
        self.tracker.set_sequence(slot, Vec::new());
        let Some(replay) = self.replay.as_mut() else {
            return;
        };
        let step_start = step.saturating_mul(self.auth.totp[owner.totp].spec.period);
        if replay.before_first_start(step_start) {
            info!(event = "totp_refused", source = %src, door = %name, user = %user, step, reason = "before_first_start", "TOTP sequence refused: its step began before this daemon's first start with an empty state directory; use the next step's sequence");
            self.metrics.reject(&name, "totp", "before_first_start");
            return;
        }
        if let Err(e) = replay
            .cache
            .check_and_insert(key, expires, auth::unix_now())
        {
            info!(event = "totp_refused", source = %src, door = %name, user = %user, step, "TOTP sequence refused: {e}");
            self.metrics.reject(&name, "totp", "replay");
            return;
        }
        if let Err(e) = replay.record(key, expires) {
            error!(event = "totp_refused", source = %src, door = %name, user = %user, reason = "replay_state", "{e}");
            self.metrics.reject(&name, "totp", "replay_state");
            return;
        }
        info!(event = "totp_accepted", source = %src, door = %name, user = %user, step, "TOTP sequence of user {user} for step {step} accepted");
        let door = self.door(door_id).clone();
        self.open_with(now, src, door_id, &door.services, door.open_for);
        self.compact_replay();
    }

    /// Folds the replay journal into the image once it has grown; called
    /// after a door was opened, so the rewrite never delays an opening. A
    /// failure only leaves the journal longer: every record is still in it.
    fn compact_replay(&mut self) {
        let Some(replay) = self.replay.as_mut() else {
            return;
        };
        if let Err(e) = replay.compact_if_due() {
            warn!(
                event = "replay_state",
                "replay journal compaction failed (retried at the next grant): {e}"
            );
        }
    }

    fn door(&self, id: DoorId) -> &Door {
        &self.tracker.doors()[id]
    }

    fn handle_events(&mut self, now: Instant) {
        let events = std::mem::take(&mut self.events);
        for event in &events {
            if let Event::Banned {
                src,
                door,
                prefix,
                until,
            } = *event
            {
                self.metrics.bans.inc();
                let ban_for = until.saturating_since(now);
                warn!(event = "banned", source = %src, door = %self.door(door).name, prefix = %prefix, "{prefix} used up its knock failure budget ({} failures within {:?}): its knocks are ignored for {ban_for:?} (lift with `sesame unban {prefix}`)", self.config.daemon.ban.max_failures, self.config.daemon.ban.window);
                continue;
            }
            // Indexes into metrics::KNOCK_RESULTS.
            let result = match event {
                Event::Stage { .. } => 0,
                Event::Duplicate { .. } => 1,
                Event::Reset { .. } => 2,
                Event::Timeout { .. } => 3,
                Event::Evicted { .. } => 4,
                Event::Open { .. } => 5,
                Event::Banned { .. } => continue,
            };

            if matches!(event, Event::Evicted { .. }) {
                self.metrics.tracker_evictions.inc();
            }
            self.knock_counter(event.door(), result).inc();
            // In flood mode, first knocks and evictions arrive once per flood
            // packet: count them instead of formatting a line each (a
            // summary is logged every few seconds, see `govern_load`).
            if self.load.is_batched() {
                match *event {
                    Event::Stage { matched: 1, .. } => {
                        self.flood_quiet.first_knocks += 1;
                        continue;
                    }
                    Event::Evicted { matched: 1, .. } => {
                        self.flood_quiet.evictions += 1;
                        continue;
                    }
                    _ => {}
                }
            }
            match *event {
                Event::Stage {
                    src,
                    door,
                    matched,
                    of,
                } => {
                    info!(event = "stage", source = %src, door = %self.door(door).name, "knock {matched}/{of}")
                }
                Event::Duplicate { src, door, matched } => {
                    debug!(event = "duplicate", source = %src, door = %self.door(door).name, "repeat of knock {matched} ignored")
                }
                Event::Reset {
                    src,
                    door,
                    matched_before,
                    got,
                } => {
                    info!(event = "reset", source = %src, door = %self.door(door).name, "wrong knock {got} after {matched_before} correct: sequence reset")
                }
                Event::Timeout { src, door, matched } => {
                    info!(event = "timeout", source = %src, door = %self.door(door).name, "sequence timed out after {matched} knock(s)")
                }
                Event::Evicted { src, door, matched } => {
                    warn!(event = "evicted", source = %src, door = %self.door(door).name, "knock state table full: dropped the oldest attempt ({matched} knock(s))")
                }
                Event::Banned { .. } => {}
                Event::Open { src, door } if self.auth.slot_owner.contains_key(&door) => {
                    let owner = self.auth.slot_owner[&door];
                    self.totp_open(now, src, door, owner);
                }
                Event::Open { src, door } => {
                    self.open(now, src, door);
                    if self.one_time.contains_key(&door) {
                        self.next_one_time_sequence(door);
                    }
                }
            }
        }
        self.events = events;
        self.events.clear();
    }

    /// The knock counter of `door` for result `index` (see
    /// `metrics::KNOCK_RESULTS`), cached per door id: the tracker's doors
    /// only change on reload, which clears the cache.
    fn knock_counter(
        &mut self,
        door: DoorId,
        index: usize,
    ) -> &prometheus_client::metrics::counter::Counter {
        // The tracker's doors: the config's, then one slot per TOTP user.
        let doors = self.tracker.doors().len();
        if self.knock_counters.len() != doors {
            self.knock_counters = (0..doors)
                .map(|id| self.metrics.knock_counters(&self.door(id).name))
                .collect();
        }
        &self.knock_counters[door][index]
    }

    fn open(&mut self, now: Instant, src: IpAddr, door_id: DoorId) {
        let door = self.door(door_id).clone();
        self.open_with(now, src, door_id, &door.services, door.open_for);
    }

    /// Opens `services` of a door for `src` for `open_for`.
    fn open_with(
        &mut self,
        now: Instant,
        src: IpAddr,
        door_id: DoorId,
        services: &[sesame_core::Service],
        open_for: Duration,
    ) {
        let mut door = self.door(door_id).clone();
        door.services = services.to_vec();
        door.open_for = open_for;
        if !door.services.is_empty() {
            if let Err(e) = self.firewall.grant(src, &door.services, door.open_for) {
                error!(event = "open_failed", source = %src, door = %door.name, "could not add the grant: {e}");
                return;
            }
        }
        let services = door
            .services
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join(",");
        let entry = self.granted.entry((src, door_id)).or_default();
        for s in &door.services {
            if !entry.contains(s) {
                entry.push(*s);
            }
        }
        match self.grants.open(now, src, door_id, door.open_for) {
            GrantOutcome::New => {
                self.counters.opened += 1;
                self.metrics.grant(&door.name, "open");
                let took = self.received_at.elapsed();
                self.metrics.open_latency(&door.name, took);
                let open_us = took.as_micros() as u64;
                if services.is_empty() {
                    info!(event = "open", source = %src, door = %door.name, open_us, "door opened (commands only; closes in {:?})", door.open_for);
                } else {
                    info!(event = "open", source = %src, door = %door.name, open_us, "door opened: {services} for {:?}", door.open_for);
                }
                if let Some(cmd) = door.on_open.for_addr(src) {
                    self.run_command(cmd, "on_open", src, &door);
                }
            }
            GrantOutcome::Refreshed => {
                self.counters.refreshed += 1;
                self.metrics.grant(&door.name, "refresh");
                info!(event = "refresh", source = %src, door = %door.name, "door already open: grant extended to {:?}", door.open_for);
            }
        }
        self.close_evicted_grants();
    }

    /// Grants pushed out by `max_grants` are closed now, in the kernel too:
    /// the books and the kernel must agree, or `revoke` would say "no active
    /// grant" while the address still connects. A service another live grant
    /// of the same address still covers stays open.
    fn close_evicted_grants(&mut self) {
        for (src, door_id) in self.grants.drain_evicted() {
            let door = self.door(door_id).clone();
            let services = self
                .granted
                .remove(&(src, door_id))
                .unwrap_or_else(|| door.services.clone());
            // One lookup per door, not a scan of every grant: a flood of
            // openings at max_grants evicts once per opening.
            let still: Vec<sesame_core::Service> = (0..self.tracker.doors().len())
                .filter_map(|d| self.granted.get(&(src, d)))
                .flatten()
                .copied()
                .collect();
            let remove: Vec<sesame_core::Service> = services
                .into_iter()
                .filter(|s| !still.contains(s))
                .collect();
            if !remove.is_empty() {
                if let Err(e) = self.firewall.revoke(src, &remove) {
                    error!(event = "revoke_failed", source = %src, door = %door.name, "could not remove an evicted grant from the kernel (it closes at its timeout): {e}");
                }
            }
            warn!(event = "grant_evicted", source = %src, door = %door.name, "max_grants ({}) reached: the oldest-closing grant was closed to make room", self.grants.capacity());
            self.on_close(src, door_id, "evicted: max_grants reached");
        }
    }

    /// A one-time sequence was used: mark it in its file and switch the door
    /// to the next one, or retire the door when the file runs out. The kernel
    /// ruleset is updated in place so the new ports are observed.
    fn next_one_time_sequence(&mut self, door_id: DoorId) {
        let Some(file) = self.one_time.get_mut(&door_id) else {
            return;
        };
        let name = self.tracker.doors()[door_id].name.clone();
        let next = match file.consume() {
            Ok(next) => next,
            Err(e) => {
                // Fail closed: a sequence that cannot be marked used must not
                // stay usable.
                error!(event = "one_time_failed", door = %name, "cannot mark the used one-time sequence: {e}; door disabled");
                None
            }
        };
        match &next {
            Some(seq) => info!(
                event = "one_time",
                door = %name,
                remaining = file.remaining(),
                "one-time sequence used; next sequence has {} knock(s), {} left",
                seq.len(),
                file.remaining()
            ),
            None => {
                warn!(event = "one_time_exhausted", door = %name, "no one-time sequence left: door removed")
            }
        }
        if next.is_none() {
            self.one_time.remove(&door_id);
        }
        self.tracker.set_sequence(door_id, next.unwrap_or_default());
        let ruleset = rules::for_config(&self.config, self.tracker.doors());
        if let Err(e) = self.firewall.install(&ruleset) {
            error!(event = "ruleset_failed", door = %name, "could not update the knock ports: {e}");
        }
    }

    fn on_close(&mut self, src: IpAddr, door_id: DoorId, why: &str) {
        self.granted.remove(&(src, door_id));
        let adopted = self.adopted.remove(&(src, door_id));
        let door = self.door(door_id).clone();
        self.metrics.grant(&door.name, "close");
        info!(event = "close", source = %src, door = %door.name, "door closed ({why})");
        if adopted {
            return;
        }
        if let Some(cmd) = door.on_close.for_addr(src) {
            self.run_command(cmd, "on_close", src, &door);
        }
    }

    fn run_command(
        &mut self,
        cmd: &sesame_core::CommandTemplate,
        which: &str,
        src: IpAddr,
        door: &Door,
    ) {
        if door.services.is_empty() {
            let argv = cmd.render(src, &door.name, None);
            self.commands
                .spawn(&argv, format!("{which} door={} source={src}", door.name));
        } else {
            for service in &door.services {
                let argv = cmd.render(src, &door.name, Some(*service));
                self.commands.spawn(
                    &argv,
                    format!("{which} door={} source={src} service={service}", door.name),
                );
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
        let pending = self.grants.drain();
        for (src, door) in pending {
            let has_close = self.door(door).on_close.for_addr(src).is_some();
            if has_close {
                self.on_close(src, door, "daemon shutdown");
            }
        }
        self.commands.wait_all(Duration::from_secs(5));
        let c = self.counters;
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

/// Refusals that do not depend on a stanza's keys (the packet itself is
/// unacceptable), so no other stanza is tried.
fn packet_level(e: &FwknopError) -> bool {
    matches!(
        e,
        FwknopError::TooShort { .. }
            | FwknopError::Oversized { .. }
            | FwknopError::BadBase64 { .. }
            | FwknopError::SaltedPrefix
            | FwknopError::GpgUnsupported { .. }
    )
}

/// Whether `src` is in the stanza's SOURCE list (empty = ANY).
fn fwknop_source_matches(stanza: &FwknopStanza, src: IpAddr) -> bool {
    in_networks(&stanza.source, src)
}

/// Whether `addr` is in one of `networks` (empty: `ANY`).
fn in_networks(networks: &[(IpAddr, u8)], addr: IpAddr) -> bool {
    let src = match addr {
        IpAddr::V6(a) => a.to_ipv4_mapped().map_or(IpAddr::V6(a), IpAddr::V4),
        v4 => v4,
    };
    networks.is_empty()
        || networks.iter().any(|(net, prefix)| match (net, src) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let bits = u32::from(*prefix).min(32);
                let mask = if bits == 0 {
                    0
                } else {
                    u32::MAX << (32 - bits)
                };
                u32::from(*n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let bits = u32::from(*prefix).min(128);
                let mask = if bits == 0 {
                    0
                } else {
                    u128::MAX << (128 - bits)
                };
                u128::from(*n) & mask == u128::from(a) & mask
            }
            _ => false,
        })
}

/// What an accepted fwknop packet makes the daemon do.
enum FwknopAction {
    /// Run this argv (a command message).
    Command(Vec<String>),
    /// Open these services for this address, for this long.
    Grant((IpAddr, Vec<sesame_core::Service>, Duration)),
}

/// The argv of an authenticated fwknop command message, only when the
/// stanza has `ENABLE_CMD_EXEC`. Like Debian's fwknopd, the command is split
/// at blanks and run without a shell (`echo x > FILE` prints `x > FILE`).
fn fwknop_command(
    stanza: &FwknopStanza,
    msg: &FwknopMessage,
) -> Result<Vec<String>, (&'static str, String)> {
    if let Some(user) = &stanza.require_username {
        if &msg.username != user {
            return Err((
                "username",
                format!("username {:?} is not the required {user:?}", msg.username),
            ));
        }
    }
    if !stanza.enable_cmd_exec {
        return Err((
            "command_disabled",
            "command messages need ENABLE_CMD_EXEC in the stanza".into(),
        ));
    }
    match &msg.command {
        Some(c) if !c.trim().is_empty() => Ok(c.split_whitespace().map(String::from).collect()),
        _ => Err(("malformed", "empty command".into())),
    }
}

/// What an authenticated fwknop request may open, with fwknopd's policy:
/// (address, services, lifetime), or (reason, detail) when refused.
#[allow(clippy::type_complexity)]
/// An address an authenticated request names explicitly (SPA's NAT
/// address, fwknop's allow IP) may be granted unless it is one no grant
/// should go to: loopback, link-local and the like (see
/// [`sesame_core::spa::usable_address`]), this host's own addresses, or an
/// interface's broadcast address. When the host's addresses cannot be read
/// the request is refused (fail closed).
pub fn explicit_target_allowed(addr: IpAddr) -> Result<(), String> {
    let addr = match addr {
        IpAddr::V6(a) => a.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 => v4,
    };
    if !sesame_core::spa::usable_address(addr) {
        return Err(format!(
            "{addr} cannot be granted (unspecified, multicast, broadcast, loopback or link-local)"
        ));
    }
    let interfaces = nix::ifaddrs::getifaddrs()
        .map_err(|e| format!("cannot read this host's addresses to check {addr}: {e}"))?;
    for ifa in interfaces {
        let as_ip = |a: Option<&nix::sys::socket::SockaddrStorage>| -> Option<IpAddr> {
            let a = a?;
            if let Some(v4) = a.as_sockaddr_in() {
                return Some(IpAddr::V4(v4.ip()));
            }
            a.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
        };
        if as_ip(ifa.address.as_ref()) == Some(addr) {
            return Err(format!(
                "{addr} is an address of this host ({}): a grant to it would open the service to the host itself",
                ifa.interface_name
            ));
        }
        if as_ip(ifa.broadcast.as_ref()) == Some(addr) {
            return Err(format!(
                "{addr} is the broadcast address of {}",
                ifa.interface_name
            ));
        }
    }
    Ok(())
}

fn fwknop_grant(
    stanza: &FwknopStanza,
    msg: &FwknopMessage,
    src: IpAddr,
) -> Result<(IpAddr, Vec<sesame_core::Service>, Duration), (&'static str, String)> {
    if let Some(user) = &stanza.require_username {
        if &msg.username != user {
            return Err((
                "username",
                format!("username {:?} is not the required {user:?}", msg.username),
            ));
        }
    }
    match msg.msg_type {
        MsgType::Access | MsgType::ClientTimeoutAccess => {}
        MsgType::Command => {
            return Err((
                "command_disabled",
                "command messages need ENABLE_CMD_EXEC in the stanza".into(),
            ))
        }
        other => {
            return Err((
                "nat_unsupported",
                format!(
                "{other:?}: NAT access is not supported by sesamed (it opens local services only)"
            ),
            ))
        }
    }
    let target = match msg.access_ip {
        None if stanza.require_source_address => return Err((
            "source_address_required",
            "REQUIRE_SOURCE_ADDRESS is set and the request asks for the packet source (0.0.0.0)"
                .into(),
        )),
        None => src,
        Some(ip) => {
            explicit_target_allowed(ip).map_err(|why| ("address_refused", why))?;
            ip
        }
    };
    let mut services = Vec::new();
    for port in &msg.access {
        let Some(service) = port.service() else {
            return Err((
                "unsupported_proto",
                format!("{port} cannot be granted (TCP and UDP only)"),
            ));
        };
        if stanza.restrict_ports.contains(&service) {
            return Err(("restricted_port", format!("{service} is in RESTRICT_PORTS")));
        }
        if !stanza.open_ports.is_empty() && !stanza.open_ports.contains(&service) {
            return Err((
                "port_not_allowed",
                format!("{service} is not in OPEN_PORTS"),
            ));
        }
        if !services.contains(&service) {
            services.push(service);
        }
    }
    if services.is_empty() {
        return Err(("no_ports", "the request names no port".into()));
    }
    let open_for = match msg.client_timeout {
        Some(t) if t > 0 => Duration::from_secs(u64::from(t)).min(stanza.effective_max_timeout()),
        _ => stanza.access_timeout,
    };
    Ok((target, services, open_for))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fwknop_conf::{Secret, DEFAULT_ACCESS_TIMEOUT};
    use sesame_core::fwknop::{AccessPort, DigestType};
    use sesame_core::Service;

    fn stanza() -> FwknopStanza {
        FwknopStanza {
            line: 1,
            source: vec![
                ("10.0.0.0".parse().unwrap(), 8),
                ("fd00::".parse().unwrap(), 8),
            ],
            open_ports: vec!["tcp/22".parse().unwrap(), "udp/53".parse().unwrap()],
            restrict_ports: vec!["udp/53".parse().unwrap()],
            key: Secret(b"k".to_vec()),
            hmac_key: None,
            hmac_digest: "SHA256".into(),
            encryption_mode: "CBC".into(),
            access_timeout: DEFAULT_ACCESS_TIMEOUT,
            max_timeout: Some(Duration::from_secs(60)),
            require_username: Some("alice".into()),
            require_source_address: false,
            enable_cmd_exec: false,
            cmd_exec_user: None,
            cmd_exec_group: None,
            destination: Vec::new(),
            access_expire: None,
        }
    }

    fn message(msg_type: MsgType, ports: &[&str]) -> FwknopMessage {
        FwknopMessage {
            random: "1234567890123456".into(),
            username: "alice".into(),
            timestamp: 0,
            version: "3.0.0".into(),
            msg_type,
            access_ip: None,
            access: ports
                .iter()
                .map(|p| AccessPort::Service(p.parse::<Service>().unwrap()))
                .collect(),
            command: None,
            nat_access: None,
            server_auth: None,
            client_timeout: None,
            digest_type: DigestType::Sha256,
            digest: vec![0; 32],
        }
    }

    #[test]
    fn fwknop_sources_match_v4_and_v6_networks() {
        let s = stanza();
        assert!(fwknop_source_matches(&s, "10.1.2.3".parse().unwrap()));
        assert!(fwknop_source_matches(
            &s,
            "::ffff:10.1.2.3".parse().unwrap()
        ));
        assert!(fwknop_source_matches(&s, "fd12::1".parse().unwrap()));
        assert!(!fwknop_source_matches(&s, "11.0.0.1".parse().unwrap()));
        assert!(!fwknop_source_matches(&s, "2001:db8::1".parse().unwrap()));
        let any = FwknopStanza {
            source: vec![],
            ..stanza()
        };
        assert!(fwknop_source_matches(&any, "2001:db8::1".parse().unwrap()));
    }

    #[test]
    fn fwknop_policy_follows_access_conf() {
        let s = stanza();
        let src: IpAddr = "10.0.0.9".parse().unwrap();
        let ok = fwknop_grant(&s, &message(MsgType::Access, &["tcp/22"]), src).unwrap();
        assert_eq!(
            ok,
            (src, vec!["tcp/22".parse().unwrap()], DEFAULT_ACCESS_TIMEOUT)
        );

        let reason = |m: &FwknopMessage, st: &FwknopStanza| fwknop_grant(st, m, src).unwrap_err().0;
        assert_eq!(
            reason(&message(MsgType::Access, &["udp/53"]), &s),
            "restricted_port"
        );
        assert_eq!(
            reason(&message(MsgType::Access, &["tcp/80"]), &s),
            "port_not_allowed"
        );
        assert_eq!(
            reason(&message(MsgType::Command, &[]), &s),
            "command_disabled"
        );
        assert_eq!(
            reason(&message(MsgType::NatAccess, &["tcp/22"]), &s),
            "nat_unsupported"
        );
        let mut bob = message(MsgType::Access, &["tcp/22"]);
        bob.username = "bob".into();
        assert_eq!(reason(&bob, &s), "username");
        let strict = FwknopStanza {
            require_source_address: true,
            ..stanza()
        };
        assert_eq!(
            reason(&message(MsgType::Access, &["tcp/22"]), &strict),
            "source_address_required"
        );

        // A client timeout is honoured up to MAX_FW_TIMEOUT; an explicit
        // address is granted instead of the source.
        let mut m = message(MsgType::ClientTimeoutAccess, &["tcp/22"]);
        m.client_timeout = Some(600);
        m.access_ip = Some("10.0.0.77".parse().unwrap());
        let (target, _, open_for) = fwknop_grant(&s, &m, src).unwrap();
        assert_eq!(target, "10.0.0.77".parse::<IpAddr>().unwrap());
        assert_eq!(open_for, Duration::from_secs(60));
    }
}
