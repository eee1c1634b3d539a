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
    /// Only count knocks arriving on this interface (repeatable; overrides
    /// the config's interfaces, like knockd's -i).
    #[arg(short, long, value_name = "IFACE")]
    interface: Vec<String>,
    /// Validate FILE and exit, without touching the firewall.
    #[arg(long, value_name = "FILE", conflicts_with = "remove")]
    check_config: Option<PathBuf>,
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
    let mut cfg = match &args.knockd_config {
        Some(path) => sesame::knockd::load(path)
            .and_then(|k| k.to_config(path))
            .map_err(|e| e.to_string())?,
        None => config::load(sesame_path).map_err(|e| e.to_string())?,
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
    if let Some(path) = &args.check_config {
        let checked = if args.knockd_config.is_some() {
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
