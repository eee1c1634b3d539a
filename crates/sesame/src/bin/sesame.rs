//! `sesame`: the Sesame client and admin CLI.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use sesame::client::{self, profile, Family};
use sesame::knockd;
use sesame::one_time::OneTimeFile;
use sesame_core::{Knock, Proto};

/// Sesame client: knock on a Sesame (or knockd) server, or run the demo.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Send a knock sequence: `sesame knock HOST PORT[:tcp|udp]...` (knockd's
    /// `knock` syntax) or `sesame knock SERVER DOOR` from the client config.
    Knock(KnockArgs),
    /// Show closed → knock → open → closed in two network namespaces, over
    /// IPv4 and IPv6 (needs root and iproute2).
    Demo,
    /// Convert another port knocker's config to Sesame TOML (printed to
    /// stdout).
    Import {
        #[command(subcommand)]
        from: ImportFrom,
    },
}

#[derive(Subcommand)]
enum ImportFrom {
    /// Print the Sesame equivalent of a knockd.conf, with comments on each
    /// mapping: `sesame import knockd /etc/knockd.conf > sesame.toml`.
    Knockd {
        /// The knockd config file.
        file: PathBuf,
    },
}

#[derive(Args)]
struct KnockArgs {
    /// Host name or address, or a server name from the client config.
    host: String,
    /// Ports as `port[:tcp|udp]`, or one door name from the client config.
    #[arg(required_unless_present = "one_time", value_name = "PORT[:PROTO]|DOOR")]
    ports: Vec<String>,
    /// Knock the first unused sequence of a knockd one-time sequences file,
    /// then mark it used ('#' over the line's first character) once every
    /// packet has been sent.
    #[arg(
        long = "one-time",
        value_name = "FILE",
        conflicts_with_all = ["ports", "udp", "config"]
    )]
    one_time: Option<PathBuf>,
    /// Send every knock over UDP (ports without an explicit protocol).
    #[arg(short, long)]
    udp: bool,
    /// Milliseconds to wait between knocks.
    #[arg(short, long, value_name = "MS")]
    delay: Option<u64>,
    /// Knock over IPv4 only.
    #[arg(short = '4', long = "ipv4", conflicts_with = "ipv6")]
    ipv4: bool,
    /// Knock over IPv6 only.
    #[arg(short = '6', long = "ipv6")]
    ipv6: bool,
    /// Print each knock as it is sent.
    #[arg(short, long)]
    verbose: bool,
    /// Client config with server profiles (default
    /// ~/.config/sesame/client.toml).
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
}

fn knock(args: KnockArgs) -> Result<(), String> {
    let mut family = if args.ipv4 {
        Family::V4
    } else if args.ipv6 {
        Family::V6
    } else {
        Family::Any
    };
    let mut host = args.host.clone();
    let mut delay = args.delay;
    if let Some(path) = &args.one_time {
        return knock_one_time(&args, path, family);
    }
    let looks_like_ports = args.ports.iter().all(|p| {
        p.split(':')
            .next()
            .is_some_and(|n| n.parse::<u32>().is_ok())
    });
    let knocks: Vec<Knock> = if looks_like_ports {
        args.ports
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let mut k: Knock = p
                    .parse()
                    .map_err(|e| format!("knock {} {p:?}: {e}", i + 1))?;
                if args.udp && !p.contains(':') {
                    k.proto = Proto::Udp;
                }
                Ok(k)
            })
            .collect::<Result<_, String>>()?
    } else {
        let [door] = args.ports.as_slice() else {
            return Err(format!(
                "{:?} is not a port; give PORT[:tcp|udp] values or one door name from the client config",
                args.ports.iter().find(|p| p.parse::<Knock>().is_err()).unwrap_or(&args.ports[0])
            ));
        };
        let path = args
            .config
            .clone()
            .or_else(profile::default_path)
            .ok_or("no client config: pass --config FILE")?;
        let cfg = profile::ClientConfig::load(&path).map_err(|e| e.to_string())?;
        let (server, knocks) = cfg
            .sequence(&path, &args.host, door)
            .ok_or_else(|| {
                format!(
                    "{}: no server {:?} (known: {})",
                    path.display(),
                    args.host,
                    cfg.server.keys().cloned().collect::<Vec<_>>().join(", ")
                )
            })?
            .map_err(|e| e.to_string())?;
        host = server.host.clone();
        delay = delay.or(server.delay_ms);
        if family == Family::Any {
            family = match server.family.as_deref() {
                None => Family::Any,
                Some("ipv4") => Family::V4,
                Some("ipv6") => Family::V6,
                Some(other) => {
                    return Err(format!(
                        "{}: server {:?} family {other:?}: expected \"ipv4\" or \"ipv6\"",
                        path.display(),
                        args.host
                    ))
                }
            };
        }
        knocks
    };
    let addr = client::resolve(&host, family).map_err(|e| e.to_string())?;
    let delay = Duration::from_millis(delay.unwrap_or(0));
    client::knock_sequence(addr, &knocks, delay, |k| {
        if args.verbose {
            println!("hitting {} {addr}:{}", k.proto, k.port);
        }
    })
    .map_err(|e| e.to_string())
}

/// `sesame knock --one-time FILE HOST`: knocks the file's first unused
/// sequence and marks it used only after every packet went out.
fn knock_one_time(args: &KnockArgs, path: &Path, family: Family) -> Result<(), String> {
    let mut file = OneTimeFile::open(path).map_err(|e| e.to_string())?;
    let knocks = file
        .current()
        .ok_or_else(|| {
            format!(
                "{}: no unused sequence left (every line starts with '#')",
                path.display()
            )
        })?
        .to_vec();
    let line = file.current_line().unwrap_or(0);
    let addr = client::resolve(&args.host, family).map_err(|e| e.to_string())?;
    let delay = Duration::from_millis(args.delay.unwrap_or(0));
    client::knock_sequence(addr, &knocks, delay, |k| {
        if args.verbose {
            println!("hitting {} {addr}:{}", k.proto, k.port);
        }
    })
    .map_err(|e| e.to_string())?;
    file.consume().map_err(|e| e.to_string())?;
    if args.verbose {
        println!(
            "marked {}:{line} used; {} unused sequence(s) left",
            path.display(),
            file.remaining()
        );
    }
    Ok(())
}

fn import_knockd(file: &Path) -> Result<(), String> {
    let cfg = knockd::load(file).map_err(|e| e.to_string())?;
    print!("{}", cfg.to_sesame_toml());
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Knock(args) => knock(args),
        Command::Demo => sesame::demo::run().map_err(|e| e.to_string()),
        Command::Import {
            from: ImportFrom::Knockd { file },
        } => import_knockd(&file),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sesame: {e}");
            ExitCode::FAILURE
        }
    }
}
