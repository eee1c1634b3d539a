//! Operations on the running daemon: the control socket's commands, the
//! config reload (SIGHUP or `sesame reload`) and the metrics scrape.

use std::net::IpAddr;
use std::time::Duration;

use sesame_core::engine::GrantView;
use sesame_core::Service;
use tracing::{error, info, warn};

use super::{build, Daemon};
use crate::control::server::{ControlServer, Pending};
use crate::control::{BanInfo, CountersInfo, DoorInfo, GrantInfo, Request, Response, StatusInfo};

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
            let (response, cut) = match &p.request {
                Err(e) => (Response::error(e.clone()), None),
                Ok(req) => self.handle_request(req, p.uid),
            };
            match cut {
                None => ControlServer::respond(p, &response),
                Some(cut) => cut.run_then_respond(p, response),
            }
        }
    }

    /// The response, and live flows to cut before it is sent (off the
    /// loop: see [`FlowCut`]).
    fn handle_request(&mut self, req: &Request, uid: u32) -> (Response, Option<FlowCut>) {
        let response = match req {
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
            Request::Revoke {
                addr,
                door,
                kill_flows,
            } => return self.revoke(*addr, door.as_deref(), *kill_flows, uid),
            Request::Open { addr, door, secs } => self.manual_open(*addr, door, *secs, uid),
            Request::Unban { prefix } => self.unban(prefix.as_deref(), uid),
            Request::Reload => match self.reload(&format!("control socket (uid {uid})")) {
                Ok(msg) => Response::message(msg),
                Err(e) => Response::error(e),
            },
        };
        (response, None)
    }

    fn unban(&mut self, prefix: Option<&str>, uid: u32) -> Response {
        let which = match prefix.map(str::parse::<sesame_core::Prefix>) {
            None => None,
            Some(Ok(p)) => Some(p),
            Some(Err(e)) => return Response::error(e.to_string()),
        };
        let lifted = self.engine.unban(which);
        self.observer
            .metrics
            .banned_prefixes
            .set(self.engine.tracker().budget().banned() as i64);
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

    fn grant_info(&self, g: &GrantView, with_time_left: bool) -> GrantInfo {
        let left = g.until.saturating_since(self.now().mono);
        GrantInfo {
            addr: g.addr,
            door: self.engine.doors()[g.door].door.name.clone(),
            services: services_text(&g.services),
            secs_left: if with_time_left {
                left.as_millis().div_ceil(1000) as u64
            } else {
                0
            },
        }
    }

    fn grant_list(&self) -> Vec<GrantInfo> {
        let mut out: Vec<GrantInfo> = self
            .engine
            .grants()
            .iter()
            .map(|g| self.grant_info(g, true))
            .collect();
        out.sort_by(|a, b| (&a.door, a.addr).cmp(&(&b.door, b.addr)));
        out
    }

    fn status(&self) -> StatusInfo {
        let in_progress = self.engine.in_progress_by_door();
        let doors = self
            .engine
            .doors()
            .iter()
            .zip(in_progress)
            .map(|(d, in_progress)| DoorInfo {
                name: d.door.name.clone(),
                kind: d.kind.name().to_string(),
                services: services_text(&d.door.services),
                open_for_secs: d.door.open_for.as_secs(),
                in_progress,
            })
            .collect();
        let c = self.observer.counters;
        let now = self.now().mono;
        let tracker = self.engine.tracker();
        StatusInfo {
            version: env!("CARGO_PKG_VERSION").to_string(),
            uptime_secs: self.origin.elapsed().as_secs(),
            config: self.source.main_file().display().to_string(),
            doors,
            grants: self.grant_list(),
            in_progress: tracker.in_progress(),
            bans: tracker
                .budget()
                .bans(now)
                .into_iter()
                .map(|(prefix, until)| BanInfo {
                    prefix: prefix.to_string(),
                    secs_left: until.saturating_since(now).as_millis().div_ceil(1000) as u64,
                })
                .collect(),
            counters: CountersInfo {
                packets: c.packets,
                malformed: c.malformed,
                overruns: c.overruns,
                opened: c.opened,
                refreshed: c.refreshed,
                revoked: c.revoked,
                manual_opens: c.manual_opens,
                reloads: c.reloads,
                table_restores: c.table_restores,
            },
            fleet: self.fleet_info(),
        }
    }

    fn fleet_info(&self) -> Option<crate::control::FleetInfo> {
        let (f, store) = (self.config.fleet.as_ref()?, self.world.fleet.as_ref()?);
        let health = store.health();
        let now_ms = sesame_fleet::unix_ms();
        Some(crate::control::FleetInfo {
            name: f.name.clone(),
            group: f.group.clone(),
            store: f.redis.clone(),
            store_up: health.up,
            last_error: health.last_error,
            on_store_down: match f.on_store_down {
                sesame_core::fleet::StoreDown::Deny => "deny".into(),
                sesame_core::fleet::StoreDown::Local => "local".into(),
            },
            members: health
                .members
                .into_iter()
                .map(|(name, at)| (name, at.map(|t| now_ms.saturating_sub(t))))
                .collect(),
        })
    }

    fn revoke(
        &mut self,
        addr: IpAddr,
        door: Option<&str>,
        kill_flows: bool,
        uid: u32,
    ) -> (Response, Option<FlowCut>) {
        let error = |e: String| (Response::error(e), None);
        let only = match door.map(|d| self.engine.door_id(d)).transpose() {
            Ok(d) => d,
            Err(e) => return error(e),
        };
        let revoked = self
            .engine
            .revoke(addr, only, &format!("by uid {uid}"), &mut self.world);
        self.apply();
        let revoked = match revoked {
            Ok(gs) => gs,
            Err(e) => return error(e),
        };
        let mut done: Vec<GrantInfo> = revoked.iter().map(|g| self.grant_info(g, false)).collect();
        // What the cut flows reached: the grants' services and forwards.
        let mut services: Vec<Service> = revoked.iter().flat_map(|g| g.services.clone()).collect();
        let mut forwards: Vec<sesame_core::Forward> =
            revoked.iter().flat_map(|g| g.forwards.clone()).collect();
        // What the kernel holds is what lets the address in, whatever the
        // daemon remembers (a grant from before a restart, an external
        // `nft add element`): remove the rest of it too.
        let wanted: Option<Vec<Service>> =
            only.map(|d| self.engine.doors()[d].door.services.clone());
        let leftover: Vec<Service> = match self.world.firewall.grants() {
            Ok(all) => all
                .into_iter()
                .filter(|g| same_addr(g.addr, addr))
                .map(|g| g.service)
                .filter(|s| wanted.as_ref().is_none_or(|w| w.contains(s)))
                .collect(),
            Err(e) => {
                return error(format!(
                    "revoked {} tracked grant(s) of {addr}, but could not read the kernel's grants to remove the rest: {e}",
                    done.len()
                ))
            }
        };
        if !leftover.is_empty() {
            if let Err(e) = self.world.firewall.revoke(addr, &leftover) {
                return error(format!("removing the kernel's grants of {addr}: {e}"));
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
            return error(match door {
                Some(d) => format!(
                    "no active grant for {addr} on door {d}, in the daemon or in the kernel"
                ),
                None => format!("no active grant for {addr}, in the daemon or in the kernel"),
            });
        }
        let message = format!("revoked {} grant(s) of {addr}", done.len());
        let response = Response {
            ok: true,
            message: Some(message.clone()),
            grants: Some(done),
            ..Default::default()
        };
        if !kill_flows {
            return (response, None);
        }
        services.extend(leftover.iter().copied());
        services.sort_unstable();
        services.dedup();
        forwards.sort_unstable();
        forwards.dedup();
        // The block is one transaction on the table's own socket; the
        // conntrack deletions (a dump of the whole table) go to a thread.
        if let Err(e) = self
            .world
            .firewall
            .block_cut_flows(addr, &services, &forwards)
        {
            return error(format!(
                "{message}, but blocking its live flows failed: {e}"
            ));
        }
        let cut = FlowCut {
            table: self.world.firewall.table().to_string(),
            addr,
            services,
            forwards,
            uid,
        };
        (response, Some(cut))
    }

    fn manual_open(&mut self, addr: IpAddr, door: &str, secs: u64, uid: u32) -> Response {
        let door_id = match self.engine.door_id(door) {
            Ok(d) => d,
            Err(e) => return Response::error(e),
        };
        if secs == 0 || secs > 7 * 24 * 3600 {
            return Response::error("the duration must be between 1 s and 7 days");
        }
        let d = self.engine.doors()[door_id].door.clone();
        if d.services.is_empty() {
            return Response::error(format!(
                "door {door} protects no services of its own (commands-only, or fwknop/SPA ports chosen per request): nothing to open"
            ));
        }
        let open_for = Duration::from_secs(secs);
        warn!(event = "manual_open", source = %addr, door = %d.name, uid, "manual grant by uid {uid}: {} for {:?}", services_text(&d.services).join(","), open_for);
        self.observer.counters.manual_opens += 1;
        self.observer.metrics.grant(&d.name, "manual_open");
        self.observer.received_at = std::time::Instant::now();
        let now = self.now();
        let opened = self
            .engine
            .manual_open(now, addr, door_id, open_for, &mut self.world);
        self.apply();
        if !opened {
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
        self.observer.metrics.reload(result.is_ok());
        match &result {
            Ok(msg) => {
                self.observer.counters.reloads += 1;
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
        let one_time = build::one_time_files(&cfg).map_err(|e| e.to_string())?;
        let mut engine = build::engine(&cfg).map_err(|e| e.to_string())?;
        // A changed [fleet] gets a new adapter (keys and password read
        // again); an unchanged one keeps its connections.
        let new_fleet = if cfg.fleet != self.config.fleet {
            Some(super::build::fleet_store(&cfg).map_err(|e| e.to_string())?)
        } else {
            None
        };
        let new_replay = match self.world.replay {
            None => {
                build::replay_store(&cfg, &engine, super::unix_now()).map_err(|e| e.to_string())?
            }
            Some(_) => None,
        };
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
                    super::metrics::MetricsServer::bind(
                        addr,
                        std::sync::Arc::clone(&self.observer.metrics),
                    )
                    .map_err(|e| format!("metrics endpoint {addr}: {e}"))?,
                )),
                None => Some(None),
            }
        } else {
            None
        };
        self.world.firewall.set_owned(cfg.daemon.owned_table);
        self.world
            .firewall
            .install(&engine.ruleset())
            .map_err(|e| format!("installing the new ruleset: {e}"))?;
        self.sync_table_watch();

        // Committed: from here on the new config is the running one.
        self.apply();
        if new_replay.is_some() {
            self.world.replay = new_replay;
        }
        if let Some(r) = self.world.replay.as_mut() {
            r.cache.set_owners(engine.credential_owners());
        }
        self.world.one_time = super::world::OneTimeFiles(one_time);
        if let Some(fleet) = new_fleet {
            self.world.fleet = fleet;
        }
        let now = self.now();
        let carried = engine.take_over(&mut self.engine, now, &mut self.world);
        self.engine = engine;
        self.engine.handle_timeout(now, &mut self.world);
        self.observer.doors_changed(cfg.daemon.ban);
        self.apply();
        let summary = format!(
            "config reloaded: {} door(s) ({}); {} grant(s) kept, {} revoked, {} knock(s) in progress kept",
            cfg.doors.len(),
            cfg.doors.iter().map(|d| d.name.as_str()).collect::<Vec<_>>().join(", "),
            carried.kept,
            carried.revoked,
            carried.knocks
        );
        self.config = cfg;
        self.register_doors();
        if let Some(c) = control {
            self.control = Some(c);
        }
        if let Some(m) = metrics_server {
            self.metrics_server = m;
        }
        self.start_servers();
        Ok(summary)
    }

    /// Brings the gauges the metrics thread exports up to date (atomic
    /// stores; called on every turn of the loop).
    pub(super) fn update_gauges(&mut self) {
        let o = &mut self.observer;
        o.metrics
            .active_grants
            .set(self.engine.grant_count() as i64);
        o.metrics
            .tracker_size
            .set(self.engine.tracker().in_progress() as i64);
        if let Some(c) = &self.control {
            let refused = c.refused();
            if refused > o.counters.control_refused {
                o.metrics
                    .control_refused
                    .inc_by(refused - o.counters.control_refused);
                o.counters.control_refused = refused;
            }
        }
        let dropped = crate::logging::dropped_lines();
        if dropped > o.counters.log_dropped {
            o.metrics
                .log_dropped
                .inc_by(dropped - o.counters.log_dropped);
            o.counters.log_dropped = dropped;
        }
    }
}

/// Live flows to cut for `revoke --kill-flows`, once their grants are gone
/// and the flows blocked: a ctnetlink dump of the whole conntrack table
/// and one delete per flow, on a thread of its own with its own netlink
/// socket, so that the packet loop never waits for it. The control
/// connection gets its answer when it is done.
pub(super) struct FlowCut {
    table: String,
    addr: IpAddr,
    services: Vec<Service>,
    forwards: Vec<sesame_core::Forward>,
    uid: u32,
}

impl FlowCut {
    /// Cuts the flows on a new thread, then answers `pending` with
    /// `response` and the count (or the error).
    pub(super) fn run_then_respond(self, pending: Pending, mut response: Response) {
        let spawned = std::thread::Builder::new()
            .name("kill-flows".into())
            .spawn(move || {
                let FlowCut {
                    table,
                    addr,
                    services,
                    forwards,
                    uid,
                } = self;
                let cut = sesame_nftables::Firewall::open(&table)
                    .and_then(|mut fw| fw.delete_flows(addr, &services, &forwards));
                let said = response.message.take().unwrap_or_default();
                match cut {
                    Ok(n) => {
                        info!(event = "flows_killed", source = %addr, uid, flows = n, "{n} live flow(s) of {addr} cut by uid {uid}");
                        response.message = Some(format!("{said}; cut {n} live flow(s)"));
                    }
                    Err(e) => {
                        warn!(event = "flows_kill_failed", source = %addr, uid, "cutting the live flows of {addr} failed: {e}");
                        response = Response::error(format!(
                            "{said}, but cutting its live flows failed: {e}"
                        ));
                    }
                }
                ControlServer::respond(pending, &response);
            });
        if let Err(e) = spawned {
            error!(
                event = "flows_kill_failed",
                "cannot start the thread that cuts live flows: {e}"
            );
        }
    }
}
