//! `sesamed`: the Sesame port-knocking daemon.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use sesame::config;
use sesame::daemon::Daemon;
use sesame::logging::{self, LogFormat, LogTargets};

/// Sesame port-knocking daemon: watches knocks through NFLOG and opens
/// protected ports per source address with nftables kernel timeouts.
#[derive(Parser)]
#[command(version, about, long_about = None)]
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
    /// Directory for the persisted replay cache (overrides the config's
    /// `[daemon] state_dir`; default /var/lib/sesame).
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
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

/// Loads the Sesame config, or the knockd one when asked to.
fn load(args: &Args, sesame_path: &Path) -> Result<config::Config, String> {
    let mut cfg = match (&args.knockd_config, &args.fwknop_access) {
        (Some(path), _) => sesame::knockd::load(path)
            .and_then(|k| k.to_config(path))
            .map_err(|e| e.to_string())?,
        (None, Some(access)) => sesame::fwknop_conf::load(access, args.fwknopd_conf.as_deref())
            .and_then(|f| f.to_config(access))
            .map_err(|e| e.to_string())?,
        (None, None) => config::load(sesame_path).map_err(|e| e.to_string())?,
    };
    if !args.interface.is_empty() {
        for name in &args.interface {
            if !config::valid_interface_name(name) {
                return Err(format!(
                    "--interface {name:?}: expected an interface name of 1 to 15 characters"
                ));
            }
        }
        cfg.daemon.interfaces = args.interface.clone();
    }
    if let Some(dir) = &args.state_dir {
        cfg.daemon.state_dir = dir.clone();
    }
    Ok(cfg)
}

/// Removes the pid file when the daemon exits by any path.
struct PidFile(Option<PathBuf>);

impl PidFile {
    fn create(path: Option<&Path>) -> Result<Self, String> {
        let Some(path) = path else {
            return Ok(PidFile(None));
        };
        std::fs::write(path, format!("{}\n", std::process::id()))
            .map_err(|e| format!("pid file {}: {e}", path.display()))?;
        Ok(PidFile(Some(path.to_path_buf())))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        if let Some(path) = &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn main() -> ExitCode {
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
        let checked = if other.is_some() {
            load(&args, path)
        } else {
            config::load(path).map_err(|e| e.to_string())
        };
        // Key files are part of the config: read them too (nothing else).
        let checked = checked.and_then(|cfg| {
            sesame::daemon::auth::load(&cfg)
                .map(|_| cfg)
                .map_err(|e| e.to_string())
        });
        return match checked {
            Ok(cfg) => {
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
    match Daemon::start(cfg).and_then(Daemon::run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(event = "fatal", "{e}");
            eprintln!("sesamed: {e}");
            ExitCode::FAILURE
        }
    }
}
