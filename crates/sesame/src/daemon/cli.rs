//! `sesamed`'s command line: `--check-config`, the knockd and fwknop
//! drop-in modes, privileges, the pid file, and the run. The binary calls
//! [`main`].

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;

use super::driver::Daemon;
use super::source::ConfigSource;
use crate::config;
use crate::logging::{self, LogFormat, LogTargets};
use crate::{privilege, service};

/// Sesame port-knocking daemon: watches knocks through NFLOG and opens
/// protected ports per source address with nftables kernel timeouts.
#[derive(Parser)]
#[command(name = "sesamed", version, about, long_about = None)]
struct Args {
    /// Config file.
    #[arg(short, long, value_name = "FILE", default_value = config::DEFAULT_PATH)]
    config: PathBuf,
    /// Run from a knockd config file instead of --config (knockd.conf syntax
    /// and meaning; `sesame import knockd` converts it for good).
    #[arg(long, value_name = "FILE")]
    knockd_config: Option<PathBuf>,
    /// Run from fwknopd's access.conf instead of --config: one fwknop SPA
    /// door with fwknop's meaning (`sesame import fwknop` converts it for
    /// good).
    #[arg(long, value_name = "ACCESS_CONF", conflicts_with = "knockd_config")]
    fwknop_access: Option<PathBuf>,
    /// With --fwknop-access: fwknopd.conf (SPA port, packet age,
    /// interface); fwknopd's defaults when left out.
    #[arg(long, value_name = "FWKNOPD_CONF", requires = "fwknop_access")]
    fwknopd_conf: Option<PathBuf>,
    /// With --fwknop-access: a service to protect beyond the stanzas'
    /// OPEN_PORTS (repeatable), such as tcp/22. A stanza without OPEN_PORTS
    /// may open any protected service the client asks for.
    #[arg(long, value_name = "PROTO/PORT", requires = "fwknop_access")]
    protect: Vec<sesame_core::Service>,
    /// With --fwknop-access: an inner network (or address) NAT access
    /// requests may name (repeatable), such as 10.2.0.0/24; without any,
    /// every NAT host is refused. fwknop has no such list: a client could
    /// name any internal address.
    #[arg(long, value_name = "CIDR", requires = "fwknop_access")]
    nat_host: Vec<String>,
    /// Directory for the persisted replay cache (overrides the config's
    /// `[daemon] state_dir`; default /var/lib/sesame).
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// After setup, run as this user keeping only CAP_NET_ADMIN (overrides
    /// the config's `[daemon] user`; default: stay root).
    #[arg(long, value_name = "NAME")]
    user: Option<String>,
    /// Control socket for `sesame status|grants|revoke|open|reload`
    /// (overrides the config's `[daemon] control_socket`; default
    /// /run/sesame/control.sock).
    #[arg(long, value_name = "PATH")]
    control_socket: Option<PathBuf>,
    /// Serve Prometheus metrics at http://ADDR/metrics (overrides the
    /// config's `[daemon] metrics`; off by default).
    #[arg(long, value_name = "ADDR")]
    metrics: Option<std::net::SocketAddr>,
    /// Only count knocks arriving on this interface (repeatable; overrides
    /// the config's interfaces, like knockd's -i).
    #[arg(short, long, value_name = "IFACE")]
    interface: Vec<String>,
    /// Validate FILE and exit, without touching the firewall. With
    /// --knockd-config or --fwknop-access, FILE may be left out: those files
    /// are checked.
    #[arg(long, value_name = "FILE", conflicts_with = "remove", num_args = 0..=1)]
    check_config: Option<Option<PathBuf>>,
    /// Delete Sesame's nftables table and exit. Protected ports are then no
    /// longer filtered by Sesame.
    #[arg(long)]
    remove: bool,
    /// Log line format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Also log debug events (duplicate knocks, malformed packets).
    #[arg(short, long)]
    verbose: bool,
}

/// Where the config comes from, with the command-line overrides; kept by
/// the daemon to reload the same way.
fn source(args: &Args, sesame_path: &Path) -> ConfigSource {
    ConfigSource {
        config: sesame_path.to_path_buf(),
        knockd_config: args.knockd_config.clone(),
        fwknop_access: args.fwknop_access.clone(),
        fwknopd_conf: args.fwknopd_conf.clone(),
        protect: args.protect.clone(),
        nat_hosts: args.nat_host.clone(),
        state_dir: args.state_dir.clone(),
        interfaces: args.interface.clone(),
        control_socket: args.control_socket.clone(),
        metrics: args.metrics,
    }
}

/// Loads the Sesame config, or the knockd one when asked to.
fn load(args: &Args, sesame_path: &Path) -> Result<config::Config, String> {
    let mut cfg = source(args, sesame_path).load()?;
    if let Some(user) = &args.user {
        if !config::valid_user_name(user) {
            return Err(format!("--user {user:?}: expected a user name"));
        }
        cfg.daemon.user = Some(user.clone());
    }
    Ok(cfg)
}

/// `--check-config` with a daemon user: reads every file again as that user
/// (the daemon reads them as it on reload, and from the start under the
/// packaged unit), so an unreadable key is found now, not after the table
/// is installed. This process ends right after, so it simply drops to the
/// user itself.
fn check_as(args: &Args, path: &Path, target: &privilege::Target) -> Result<(), String> {
    let me = nix::unistd::geteuid();
    if me == target.uid {
        return Ok(());
    }
    if !me.is_root() {
        eprintln!(
            "sesamed: warning: not root, so the files were not checked as user {} (run --check-config with sudo)",
            target.name
        );
        return Ok(());
    }
    privilege::become_user(target).map_err(|e| e.to_string())?;
    let as_user = |e: String| {
        format!(
            "as user {} (the user sesamed runs as): {e}\n  Fix: make it readable by {}, e.g. for a key: chown {} FILE && chmod 600 FILE",
            target.name, target.name, target.name
        )
    };
    let cfg = load(args, path).map_err(as_user)?;
    super::build::engine(&cfg).map_err(|e| as_user(e.to_string()))?;
    super::build::fleet_store(&cfg).map_err(|e| as_user(e.to_string()))?;
    Ok(())
}

/// Removes the pid file when the daemon exits by any path.
/// The pid file, written through its checked directory (never through a
/// planted symlink) and removed on exit.
struct PidFile(Option<(crate::safe_fs::CheckedDir, String)>);

impl PidFile {
    fn create(path: Option<&Path>) -> Result<Self, String> {
        let Some(path) = path else {
            return Ok(PidFile(None));
        };
        let fail = |e: &dyn std::fmt::Display| format!("pid file {}: {e}", path.display());
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| fail(&"not a file name"))?
            .to_string();
        let parent = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        // Symlinks among root's own directories (/var/run → /run) are fine;
        // the directory itself must be one others cannot write.
        let parent = parent.canonicalize().map_err(|e| fail(&e))?;
        let dir = crate::safe_fs::CheckedDir::open(&parent, false, privilege::trusted_owner)
            .map_err(|e| fail(&e))?;
        dir.write_atomic(&name, format!("{}\n", std::process::id()).as_bytes(), false)
            .map_err(|e| fail(&e))?;
        Ok(PidFile(Some((dir, name))))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        if let Some((dir, name)) = &self.0 {
            let _ = dir.remove(name);
        }
    }
}

/// `sesamed`'s `main`: parses the command line, checks or runs.
pub fn main() -> ExitCode {
    if let Some(code) =
        crate::docs::from_env("sesamed", <Args as clap::CommandFactory>::command, "8")
    {
        return code;
    }
    let args = Args::parse();
    if let Some(file) = &args.check_config {
        let other = args.knockd_config.as_ref().or(args.fwknop_access.as_ref());
        let path = match (file, other) {
            (Some(file), _) => file,
            (None, Some(other)) => other,
            (None, None) => {
                eprintln!(
                    "sesamed: --check-config needs FILE (unless --knockd-config or --fwknop-access is given)"
                );
                return ExitCode::FAILURE;
            }
        };
        // Key files are part of the config: read them too (nothing else).
        let checked = load(&args, path).and_then(|cfg| {
            let target = match &cfg.daemon.user {
                Some(user) => {
                    let t = privilege::lookup(user).map_err(|e| e.to_string())?;
                    privilege::trust_daemon_user(t.uid.as_raw());
                    Some(t)
                }
                None => None,
            };
            super::build::engine(&cfg).map_err(|e| e.to_string())?;
            // The fleet's keys and password (nothing is sent to the store).
            super::build::fleet_store(&cfg).map_err(|e| e.to_string())?;
            let findings = super::checks::check(&cfg)?;
            if let Some(t) = &target {
                check_as(&args, path, t)?;
            }
            Ok((cfg, findings))
        });
        return match checked {
            Ok((cfg, findings)) => {
                for w in &findings.warnings {
                    eprintln!("sesamed: warning: {w}");
                }
                println!(
                    "{}: OK, {} door(s): {}",
                    path.display(),
                    cfg.doors.len(),
                    cfg.doors
                        .iter()
                        .map(|d| d.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("sesamed: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if args.remove {
        logging::init(args.log_format, args.verbose);
        let table = match config::load(&args.config) {
            Ok(cfg) => cfg.daemon.table,
            Err(_) => sesame_nftables::DEFAULT_TABLE.to_string(),
        };
        return match sesame_nftables::Firewall::open(&table).and_then(|mut fw| fw.remove()) {
            Ok(true) => {
                println!("removed nftables table inet {table}");
                ExitCode::SUCCESS
            }
            Ok(false) => {
                println!("nftables table inet {table} does not exist; nothing to remove");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("sesamed: cannot remove table inet {table}: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let cfg = match load(&args, &args.config) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("sesamed: {e}");
            return ExitCode::FAILURE;
        }
    };
    let targets = LogTargets {
        file: cfg.daemon.log_file.clone(),
        syslog: cfg.daemon.syslog,
        syslog_socket: cfg.daemon.syslog_socket.clone(),
        audit_log: cfg.daemon.audit_log.clone(),
        journald: logging::journald_wanted(),
    };
    if let Err(e) = logging::init_with(args.log_format, args.verbose, &targets) {
        eprintln!("sesamed: {e}");
        return ExitCode::FAILURE;
    }
    let _pid_file = match PidFile::create(cfg.daemon.pid_file.as_deref()) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("sesamed: {e}");
            return ExitCode::FAILURE;
        }
    };
    let fatal = |e: &dyn std::fmt::Display| {
        tracing::error!(event = "fatal", "{e}");
        eprintln!("sesamed: {e}");
        ExitCode::FAILURE
    };
    // Looked up before touching the firewall: a typo fails fast.
    let target = match cfg
        .daemon
        .user
        .as_deref()
        .map(privilege::lookup)
        .transpose()
    {
        Ok(t) => t,
        Err(e) => return fatal(&e),
    };
    if let Some(t) = &target {
        privilege::trust_daemon_user(t.uid.as_raw());
    }
    let state_dir = cfg.daemon.state_dir.clone();
    let daemon = match Daemon::start(cfg, source(&args, &args.config)) {
        Ok(d) => d,
        Err(e) => return fatal(&e),
    };
    // Table installed, NFLOG bound, files open: drop to the user.
    if let Some(t) = &target {
        if let Err(e) = privilege::hand_over(&state_dir, t).and_then(|()| privilege::drop_to(t)) {
            return fatal(&e);
        }
        tracing::info!(
            event = "privileges",
            user = %t.name,
            "running as user {} (uid {}), keeping only CAP_NET_ADMIN",
            t.name,
            t.uid
        );
    }
    if target.is_none() {
        // Started unprivileged with CAP_NET_ADMIN (the systemd unit): keep
        // nothing else, and nothing for child commands.
        if let Err(e) = privilege::restrict_in_place() {
            return fatal(&e);
        }
    }
    service::notify_ready();
    let result = daemon.run();
    service::notify_stopping();
    let code = match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fatal(&e),
    };
    logging::flush();
    code
}
