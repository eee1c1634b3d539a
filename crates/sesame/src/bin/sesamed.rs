//! `sesamed`: the Sesame port-knocking daemon.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use sesame::config;
use sesame::daemon::Daemon;
use sesame::logging::{self, LogFormat};

/// Sesame port-knocking daemon: watches knocks through NFLOG and opens
/// protected ports per source address with nftables kernel timeouts.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Args {
    /// Config file.
    #[arg(short, long, value_name = "FILE", default_value = config::DEFAULT_PATH)]
    config: PathBuf,
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

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(path) = &args.check_config {
        return match config::load(path) {
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
    logging::init(args.log_format, args.verbose);
    if args.remove {
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
    let cfg = match config::load(&args.config) {
        Ok(cfg) => cfg,
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
