//! Operations on the running daemon: the control socket's commands, the
//! config reload (SIGHUP or `sesame reload`) and the metrics scrape.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use sesame_core::grants::Grants;
use sesame_core::tracker::{DoorId, Tracker};
use sesame_core::{Door, Service};
use tracing::{error, info, warn};

use super::{auth, random_seed, rules, Daemon};
use crate::config::DoorKind;
use crate::control::server::{ControlServer, Pending};
use crate::control::{BanInfo, CountersInfo, DoorInfo, GrantInfo, Request, Response, StatusInfo};
use crate::one_time::OneTimeFile;

/// The same address, an IPv4-mapped IPv6 form counting as IPv4 (as the
/// kernel sets store it).
fn same_addr(a: IpAddr, b: IpAddr) -> bool {
    let canon = |x: IpAddr| match x {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(x, IpAddr::V4),
        v4 => v4,
    };
    canon(a) == canon(b)
}

fn services_text(services: &[Service]) -> Vec<String> {
    services.iter().map(|s| s.to_string()).collect()
}

impl Daemon {
    /// Answers every waiting control connection.
    pub(super) fn serve_control(&mut self) {
        let Some(control) = self.control.take() else {
            return;
        };
        let pending: Vec<Pending> = control.take();
        self.control = Some(control);
        for p in pending {
            let response = match &p.request {
                Err(e) => Response::error(e.clone()),
                Ok(req) => self.handle_request(req, p.uid),
            };
            ControlServer::respond(p, &response);
        }
    }

    fn handle_request(&mut self, req: &Request, uid: u32) -> Response {
        match req {
            Request::Status => Response {
                ok: true,
                status: Some(self.status()),
                ..Default::default()
            },
            Request::Grants => Response {
                ok: true,
                grants: Some(self.grant_list()),
                ..Default::default()
            },
            Request::Revoke { addr, door } => self.revoke(*addr, door.as_deref(), uid),
            Request::Open { addr, door, secs } => self.manual_open(*addr, door, *secs, uid),
            Request::Unban { prefix } => self.unban(prefix.as_deref(), uid),
            Request::Reload => match self.reload(&format!("control socket (uid {uid})")) {
                Ok(msg) => Response::message(msg),
                Err(e) => Response::error(e),
            },
        }
    }

    fn unban(&mut self, prefix: Option<&str>, uid: u32) -> Response {
        let which = match prefix.map(str::parse::<sesame_core::Prefix>) {
            None => None,
            Some(Ok(p)) => Some(p),
            Some(Err(e)) => return Response::error(e.to_string()),
        };
        let lifted = self.tracker.unban(which);
        self.metrics
            .banned_prefixes
            .set(self.tracker.budget().banned() as i64);
        for p in &lifted {
            info!(event = "unban", prefix = %p, uid, "ban of {p} lifted by the control socket (uid {uid})");
        }
        match (lifted.len(), prefix) {
            (0, Some(p)) => Response::error(format!("no ban overlaps {p}")),
            (0, None) => Response::message("no bans to lift"),
            (n, _) => Response::message(format!(
                "lifted {n} ban(s): {}",
                lifted
                    .iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }

    fn door_kind(&self, name: &str, id: DoorId) -> &'static str {
        match self.config.kinds.get(name) {
            Some(DoorKind::Spa(_)) => "spa",
            Some(DoorKind::Totp(_)) => "totp",
            Some(DoorKind::Fwknop(_)) => "fwknop",
            None if self.config.one_time.contains_key(name) || self.one_time.contains_key(&id) => {
                "one_time"
            }
            None => "knock",
        }
    }

    fn grant_list(&self) -> Vec<GrantInfo> {
        let now = self.now();
        let mut out: Vec<GrantInfo> = self
            .grants
            .iter()
            .map(|(addr, door, until)| {
                let d = self.door(door);
                let services = self
                    .granted
                    .get(&(addr, door))
                    .map_or_else(|| services_text(&d.services), |s| services_text(s));
                let left = until.saturating_since(now);
                GrantInfo {
                    addr,
                    door: d.name.clone(),
                    services,
                    secs_left: left.as_millis().div_ceil(1000) as u64,
                }
            })
            .collect();
        out.sort_by(|a, b| (&a.door, a.addr).cmp(&(&b.door, b.addr)));
        out
    }

    fn status(&self) -> StatusInfo {
        let per_door = self.tracker.in_progress_by_door();
        let mut in_progress = vec![0usize; self.config.doors.len()];
        for (id, n) in per_door.iter().enumerate() {
            let owner = match self.auth.slot_owner.get(&id) {
                Some(o) => self.auth.totp[o.totp].door,
                None => id,
            };
            if let Some(slot) = in_progress.get_mut(owner) {
                *slot += n;
            }
        }
        let doors = self
            .config
            .doors
            .iter()
            .enumerate()
            .map(|(id, d)| DoorInfo {
                name: d.name.clone(),
                kind: self.door_kind(&d.name, id).to_string(),
                services: services_text(&d.services),
                open_for_secs: d.open_for.as_secs(),
                in_progress: in_progress[id],
            })
            .collect();
        let c = self.counters;
        StatusInfo {
            version: env!("CARGO_PKG_VERSION").to_string(),
            uptime_secs: self.origin.elapsed().as_secs(),
            config: self.source.main_file().display().to_string(),
            doors,
            grants: self.grant_list(),
            in_progress: self.tracker.in_progress(),
            bans: {
                let now = self.now();
                self.tracker
                    .budget()
                    .bans(now)
                    .into_iter()
                    .map(|(prefix, until)| BanInfo {
                        prefix: prefix.to_string(),
                        secs_left: until.saturating_since(now).as_millis().div_ceil(1000) as u64,
                    })
                    .collect()
            },
            counters: CountersInfo {
                packets: c.packets,
                malformed: c.malformed,
                overruns: c.overruns,
                opened: c.opened,
                refreshed: c.refreshed,
                revoked: c.revoked,
                manual_opens: c.manual_opens,
                reloads: c.reloads,
                table_restores: self.table_restores,
            },
        }
    }

    fn door_by_name(&self, name: &str) -> Result<DoorId, String> {
        self.config
            .doors
            .iter()
            .position(|d| d.name == name)
            .ok_or_else(|| {
                format!(
                    "no door named {name:?} (doors: {})",
                    self.config
                        .doors
                        .iter()
                        .map(|d| d.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })
    }

    /// Removes a grant from the kernel and the bookkeeping, runs on_close.
    fn revoke_one(
        &mut self,
        addr: IpAddr,
        door_id: DoorId,
        door: &Door,
        why: &str,
    ) -> Result<(), String> {
        let services = self
            .granted
            .remove(&(addr, door_id))
            .unwrap_or_else(|| door.services.clone());
        if let Err(e) = self.firewall.revoke(addr, &services) {
            error!(event = "revoke_failed", source = %addr, door = %door.name, "could not remove the grant: {e}");
            return Err(format!(
                "removing the grant of {addr} on {}: {e}",
                door.name
            ));
        }
        self.grants.revoke(addr, door_id);
        self.counters.revoked += 1;
        self.metrics.grant(&door.name, "revoke");
        info!(event = "revoke", source = %addr, door = %door.name, "grant revoked ({why}): {}", services_text(&services).join(","));
        if let Some(cmd) = door.on_close.for_addr(addr) {
            self.run_command(cmd, "on_close", addr, door);
        }
        Ok(())
    }

    fn revoke(&mut self, addr: IpAddr, door: Option<&str>, uid: u32) -> Response {
        let only = match door.map(|d| self.door_by_name(d)).transpose() {
            Ok(d) => d,
            Err(e) => return Response::error(e),
        };
        let targets: Vec<(IpAddr, DoorId)> = self
            .grants
            .iter()
            .filter(|&(a, d, _)| a == addr && only.is_none_or(|o| o == d))
            .map(|(a, d, _)| (a, d))
            .collect();
        let mut done = Vec::new();
        for (a, d) in targets {
            let door = self.door(d).clone();
            let info = GrantInfo {
                addr: a,
                door: door.name.clone(),
                services: services_text(self.granted.get(&(a, d)).unwrap_or(&door.services)),
                secs_left: 0,
            };
            if let Err(e) = self.revoke_one(a, d, &door, &format!("by uid {uid}")) {
                return Response::error(e);
            }
            done.push(info);
        }
        // What the kernel holds is what lets the address in, whatever the
        // daemon remembers (a grant from before a restart, an external
        // `nft add element`): remove the rest of it too.
        let wanted: Option<Vec<Service>> = only.map(|d| self.door(d).services.clone());
        let leftover: Vec<Service> = match self.firewall.grants() {
            Ok(all) => all
                .into_iter()
                .filter(|g| same_addr(g.addr, addr))
                .map(|g| g.service)
                .filter(|s| wanted.as_ref().is_none_or(|w| w.contains(s)))
                .collect(),
            Err(e) => {
                return Response::error(format!(
                    "revoked {} tracked grant(s) of {addr}, but could not read the kernel's grants to remove the rest: {e}",
                    done.len()
                ))
            }
        };
        if !leftover.is_empty() {
            if let Err(e) = self.firewall.revoke(addr, &leftover) {
                return Response::error(format!("removing the kernel's grants of {addr}: {e}"));
            }
            info!(event = "revoke", source = %addr, uid, "kernel grant(s) the daemon did not track removed: {}", services_text(&leftover).join(","));
            done.push(GrantInfo {
                addr,
                door: "(kernel)".into(),
                services: services_text(&leftover),
                secs_left: 0,
            });
        }
        if done.is_empty() {
            return Response::error(match door {
                Some(d) => format!(
                    "no active grant for {addr} on door {d}, in the daemon or in the kernel"
                ),
                None => format!("no active grant for {addr}, in the daemon or in the kernel"),
            });
        }
        Response {
            ok: true,
            message: Some(format!("revoked {} grant(s) of {addr}", done.len())),
            grants: Some(done),
            ..Default::default()
        }
    }

    fn manual_open(&mut self, addr: IpAddr, door: &str, secs: u64, uid: u32) -> Response {
        let door_id = match self.door_by_name(door) {
            Ok(d) => d,
            Err(e) => return Response::error(e),
        };
        if secs == 0 || secs > 7 * 24 * 3600 {
            return Response::error("the duration must be between 1 s and 7 days");
        }
        let d = self.door(door_id).clone();
        if d.services.is_empty() {
            return Response::error(format!(
                "door {door} protects no services of its own (commands-only, or fwknop/SPA ports chosen per request): nothing to open"
            ));
        }
        let open_for = Duration::from_secs(secs);
        warn!(event = "manual_open", source = %addr, door = %d.name, uid, "manual grant by uid {uid}: {} for {:?}", services_text(&d.services).join(","), open_for);
        self.counters.manual_opens += 1;
        self.metrics.grant(&d.name, "manual_open");
        self.received_at = std::time::Instant::now();
        let now = self.now();
        self.open_with(now, addr, door_id, &d.services, open_for);
        if self.grants.expires_at(addr, door_id).is_none() {
            return Response::error(format!(
                "could not open door {door} for {addr} (see the daemon log)"
            ));
        }
        Response {
            ok: true,
            message: Some(format!(
                "opened door {door} for {addr} for {}",
                humantime::format_duration(open_for)
            )),
            grants: Some(
                self.grant_list()
                    .into_iter()
                    .filter(|g| g.addr == addr && g.door == d.name)
                    .collect(),
            ),
            ..Default::default()
        }
    }

    /// Re-reads the config and applies it atomically, or keeps the running
    /// one and returns why not.
    pub(super) fn reload(&mut self, why: &str) -> Result<String, String> {
        info!(
            event = "reload",
            "reloading {} ({why})",
            self.source.main_file().display()
        );
        // Close what is due first, so every grant carried over is live.
        self.tick();
        let result = self.try_reload();
        self.metrics.reload(result.is_ok());
        match &result {
            Ok(msg) => {
                self.counters.reloads += 1;
                info!(event = "reloaded", "{msg}");
            }
            Err(e) => error!(
                event = "reload_failed",
                "reload refused, the running config is kept: {e}"
            ),
        }
        result
    }

    fn try_reload(&mut self) -> Result<String, String> {
        let cfg = self.source.load()?;
        let old = &self.config.daemon;
        if cfg.daemon.table != old.table || cfg.daemon.nflog_group != old.nflog_group {
            return Err(
                "[daemon] table and nflog_group cannot change on reload: restart sesamed".into(),
            );
        }
        if cfg.daemon.log_file != old.log_file
            || cfg.daemon.syslog != old.syslog
            || cfg.daemon.pid_file != old.pid_file
        {
            warn!(
                event = "reload",
                "log_file, syslog and pid_file changes take effect at the next restart"
            );
        }
        let findings = super::checks::check(&cfg)?;
        for w in &findings.warnings {
            warn!(event = "config_warning", "{w}");
        }
        let mut auth = auth::load(&cfg).map_err(|e| e.to_string())?;
        let mut one_time = HashMap::new();
        for (id, door) in cfg.doors.iter().enumerate() {
            if let Some(path) = cfg.one_time.get(&door.name) {
                let file =
                    OneTimeFile::open(path).map_err(|e| format!("door {:?}: {e}", door.name))?;
                one_time.insert(id, file);
            }
        }
        let now_unix = auth::unix_now();
        let new_replay = if self.replay.is_none() && !auth.is_empty() {
            let (replay, warning) = auth::PersistentReplay::open(
                &cfg.daemon.state_dir,
                sesame_core::replay::ReplayCache::DEFAULT_CAPACITY,
                auth.widest_window(),
                now_unix,
            )
            .map_err(|e| e.to_string())?;
            if let Some(w) = warning {
                warn!(event = "replay_state", "{w}");
            }
            Some(replay)
        } else {
            None
        };
        let seed = random_seed().map_err(|e| e.to_string())?;
        let mut new_replay = new_replay;
        if let Some(r) = new_replay.as_mut() {
            r.cache.set_owners(auth.owner_count());
        } else if let Some(r) = self.replay.as_mut() {
            r.cache.set_owners(auth.owner_count());
        }
        let mut tracker =
            Tracker::new(auth.tracker_doors(&cfg.doors), cfg.daemon.max_tracked, seed);
        tracker.set_ban_policy(cfg.daemon.ban);
        if let Some(r) = new_replay.as_ref().or(self.replay.as_ref()) {
            for (slot, sequence) in auth.roll(now_unix, &r.cache) {
                tracker.set_sequence(slot, sequence);
            }
        }
        let control = if cfg.daemon.control_socket != old.control_socket
            || cfg.daemon.control_group != old.control_group
        {
            // Free the old path first when it is the same file.
            let same_path = cfg.daemon.control_socket == old.control_socket;
            let previous = if same_path { self.control.take() } else { None };
            drop(previous);
            match ControlServer::bind(
                &cfg.daemon.control_socket,
                cfg.daemon.control_group.as_deref(),
            ) {
                Ok(c) => Some(c),
                Err(e) => {
                    if same_path {
                        self.control =
                            ControlServer::bind(&old.control_socket, old.control_group.as_deref())
                                .ok();
                        self.start_servers();
                    }
                    return Err(e.to_string());
                }
            }
        } else {
            None
        };
        let metrics_server = if cfg.daemon.metrics != old.metrics {
            match cfg.daemon.metrics {
                Some(addr) => Some(Some(
                    super::metrics::MetricsServer::bind(addr, std::sync::Arc::clone(&self.metrics))
                        .map_err(|e| format!("metrics endpoint {addr}: {e}"))?,
                )),
                None => Some(None),
            }
        } else {
            None
        };
        let ruleset = rules::for_config(&cfg, tracker.doors());
        self.firewall.set_owned(cfg.daemon.owned_table);
        self.firewall
            .install(&ruleset)
            .map_err(|e| format!("installing the new ruleset: {e}"))?;
        self.sync_table_watch();

        // Committed: from here on the new config is the running one.
        let old_doors: Vec<Door> = self.tracker.doors().to_vec();
        let old_count = self.config.doors.len();
        let plain =
            |name: &str,
             kinds: &std::collections::BTreeMap<String, DoorKind>,
             one: &std::collections::BTreeMap<String, std::path::PathBuf>| {
                !kinds.contains_key(name) && !one.contains_key(name)
            };
        let mapping: Vec<Option<DoorId>> = (0..old_doors.len())
            .map(|o| {
                if o >= old_count
                    || !plain(
                        &old_doors[o].name,
                        &self.config.kinds,
                        &self.config.one_time,
                    )
                {
                    return None;
                }
                let j = cfg.doors.iter().position(|d| d.name == old_doors[o].name)?;
                (cfg.doors[j] == old_doors[o]
                    && plain(&cfg.doors[j].name, &cfg.kinds, &cfg.one_time))
                .then_some(j)
            })
            .collect();
        let carried = tracker.carry_from(
            &self.tracker,
            |o| mapping.get(o).copied().flatten(),
            &mut self.events,
        );
        let carry_at = self.now();
        tracker.carry_bans_from(&mut self.tracker, carry_at);

        let now = self.now();
        let mut grants = Grants::new(
            cfg.daemon.max_grants,
            random_seed().map_err(|e| e.to_string())?,
        );
        let mut granted = HashMap::new();
        let mut removed = Vec::new();
        let mut kept = 0usize;
        for (src, d, until) in self.grants.iter() {
            let name = &old_doors[d].name;
            match cfg.doors.iter().position(|x| &x.name == name) {
                Some(j) => {
                    grants.open(
                        now,
                        src,
                        j,
                        until.saturating_since(now).max(Duration::from_millis(1)),
                    );
                    if let Some(s) = self.granted.get(&(src, d)) {
                        granted.insert((src, j), s.clone());
                    }
                    kept += 1;
                }
                None => removed.push((src, d)),
            }
        }
        let mut revoked = 0usize;
        for (src, d) in removed {
            let door = old_doors[d].clone();
            if self
                .revoke_one(src, d, &door, "its door was removed by a reload")
                .is_ok()
            {
                revoked += 1;
            }
        }
        let summary = format!(
            "config reloaded: {} door(s) ({}); {kept} grant(s) kept, {revoked} revoked, {carried} knock(s) in progress kept",
            cfg.doors.len(),
            cfg.doors.iter().map(|d| d.name.as_str()).collect::<Vec<_>>().join(", ")
        );
        if cfg.daemon.spa_pk_rate != *self.pk_budget.policy() {
            self.pk_budget = sesame_core::rate::PrefixBudget::new(
                cfg.daemon.spa_pk_rate,
                random_seed().map_err(|e| e.to_string())?,
            );
        }
        self.config = cfg;
        for door in &self.config.doors {
            self.metrics.register_door(&door.name);
        }
        self.tracker = tracker;
        self.knock_counters.clear();
        self.grants = grants;
        self.granted = granted;
        self.auth = auth;
        self.one_time = one_time;
        if new_replay.is_some() {
            self.replay = new_replay;
        }
        self.rolled_at = now_unix;
        if let Some(c) = control {
            self.control = Some(c);
        }
        if let Some(m) = metrics_server {
            self.metrics_server = m;
        }
        self.start_servers();
        self.handle_events(now);
        Ok(summary)
    }

    /// Brings the gauges the metrics thread exports up to date (atomic
    /// stores; called on every turn of the loop).
    pub(super) fn update_gauges(&mut self) {
        self.metrics.active_grants.set(self.grants.len() as i64);
        self.metrics
            .tracker_size
            .set(self.tracker.in_progress() as i64);
        if let Some(c) = &self.control {
            let refused = c.refused();
            if refused > self.counters.control_refused {
                self.metrics
                    .control_refused
                    .inc_by(refused - self.counters.control_refused);
                self.counters.control_refused = refused;
            }
        }
        let dropped = crate::logging::dropped_lines();
        if dropped > self.counters.log_dropped {
            self.metrics
                .log_dropped
                .inc_by(dropped - self.counters.log_dropped);
            self.counters.log_dropped = dropped;
        }
    }
}
