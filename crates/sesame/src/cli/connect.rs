//! `sesame proxy`, `sesame exec` and `sesame ssh`: knock with a profile's
//! door, confirm by connecting to the service, knock again with backoff
//! while it does not answer, then carry the connection (proxy) or start the
//! program (exec, ssh). See `sesame_client::reach`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::knock::{config_path, knock_quietly};
use crate::client::profile::{ClientConfig, ClientDoor};
use crate::client::reach::{self, Keep, Rekey, Retry};
use crate::client::{self, Family};

/// What every connecting command shares: which door of which server, and
/// how hard to try.
#[derive(Args)]
pub(crate) struct Reach {
    /// The door to knock (default: the server's only door).
    #[arg(long, value_name = "DOOR")]
    door: Option<String>,
    /// Client config with server profiles (default
    /// ~/.config/sesame/client.toml).
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Knock at most this many times while the port does not answer.
    #[arg(long, value_name = "N", default_value_t = Retry::default().attempts)]
    attempts: u32,
    /// Seconds the port may take to answer after a knock (connects are
    /// tried again within them).
    #[arg(long, value_name = "SECS", default_value_t = 2.0)]
    connect_timeout: f64,
    /// Knock and connect over IPv4 only.
    #[arg(short = '4', long = "ipv4", conflicts_with = "ipv6")]
    ipv4: bool,
    /// Knock and connect over IPv6 only.
    #[arg(short = '6', long = "ipv6")]
    ipv6: bool,
    /// Knock over IPv4 and IPv6 each time (connect over either).
    #[arg(short = 'b', long = "both", conflicts_with_all = ["ipv4", "ipv6"])]
    both: bool,
    /// While the session lives, knock again whenever this host's source
    /// address for the server changes (roaming). With a `roaming = true`
    /// door the grant moves to the new address.
    #[arg(long)]
    follow: bool,
    /// While the session lives, knock again every SECS seconds, so that the
    /// grant is refreshed before it expires (choose less than the door's
    /// open_for).
    #[arg(long, value_name = "SECS")]
    refresh: Option<u64>,
}

/// `sesame proxy`.
#[derive(Args)]
pub(crate) struct ProxyArgs {
    /// A server of the client config: its name, or its `host` as written
    /// there (what ssh passes as `%h`).
    host: String,
    /// The service's TCP port (`%p`).
    port: u16,
    #[command(flatten)]
    reach: Reach,
}

/// `sesame exec`.
#[derive(Args)]
pub(crate) struct ExecArgs {
    /// A server of the client config (name or host).
    server: String,
    /// The service's TCP port, to confirm that the door opened.
    #[arg(long, short = 'p', value_name = "PORT")]
    port: u16,
    #[command(flatten)]
    reach: Reach,
    /// The program and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    command: Vec<String>,
}

/// `sesame ssh`.
#[derive(Args)]
pub(crate) struct SshArgs {
    /// `[user@]host`: the host is a server of the client config (name or
    /// host).
    destination: String,
    /// The ssh port on the server.
    #[arg(long, value_name = "PORT", default_value_t = 22)]
    ssh_port: u16,
    #[command(flatten)]
    reach: Reach,
    /// More arguments for ssh, after `--`.
    #[arg(last = true, value_name = "SSH_ARGS")]
    ssh_args: Vec<String>,
}

/// The server's name in the client config, given its name or its host.
fn server_name(cfg: &ClientConfig, host: &str) -> Result<String, String> {
    if cfg.server.contains_key(host) {
        return Ok(host.to_string());
    }
    let by_host: Vec<&String> = cfg
        .server
        .iter()
        .filter(|(_, s)| s.host.eq_ignore_ascii_case(host))
        .map(|(name, _)| name)
        .collect();
    match by_host.as_slice() {
        [name] => Ok((*name).clone()),
        [] => Err(format!(
            "{host:?} is neither a server name nor a server host in {}",
            cfg.path.display()
        )),
        _ => Err(format!(
            "{host:?} is the host of several servers in {}; give the server's name",
            cfg.path.display()
        )),
    }
}

/// Knocks `host`'s door until `port` answers; returns the connection.
fn open(host: &str, port: u16, r: &Reach) -> Result<std::net::TcpStream, String> {
    let path = config_path(&r.config)?;
    let cfg = ClientConfig::load(&path).map_err(|e| e.to_string())?;
    let server = server_name(&cfg, host)?;
    let profile = &cfg.server[&server];
    let door = match (&r.door, profile.doors.len()) {
        (Some(d), _) => d.clone(),
        (None, 1) => profile.doors.keys().next().cloned().unwrap_or_default(),
        (None, _) => {
            let names: Vec<&str> = profile.doors.keys().map(String::as_str).collect();
            return Err(format!(
                "server {server:?} has {} doors ({}); choose one with --door",
                names.len(),
                names.join(", ")
            ));
        }
    };
    let family = match (r.ipv4, r.ipv6) {
        (true, _) => Family::V4,
        (_, true) => Family::V6,
        _ => profile.family,
    };
    let addr = client::resolve(&profile.host, family).map_err(|e| e.to_string())?;
    if !(0.05..=60.0).contains(&r.connect_timeout) {
        return Err(format!(
            "--connect-timeout {}: expected 0.05 to 60 seconds",
            r.connect_timeout
        ));
    }
    let retry = Retry {
        attempts: r.attempts.max(1),
        connect_timeout: Duration::from_secs_f64(r.connect_timeout),
        ..Retry::default()
    };
    let target = SocketAddr::new(addr, port);
    let both = r.both;
    let (stream, knocks) = reach::knock_and_connect(target, &retry, |_| {
        knock_quietly(&path, &server, &door, family, both)
    })
    .map_err(|e| format!("server {server:?} door {door:?}: {e}"))?;
    if knocks > 1 {
        eprintln!("sesame: {target} answered after {knocks} knocks");
    }
    // An SPA door that asks for a known duration is refreshed at two
    // thirds of it unless --refresh says otherwise; the door's own maximum
    // (duration 0) is unknown here, so then only --refresh refreshes.
    let asked = match profile.doors.get(&door) {
        Some(ClientDoor::Spa(spa)) if spa.duration > 0 => Some(u64::from(spa.duration)),
        _ => None,
    };
    let keep = Keep {
        follow: r.follow,
        refresh: match r.refresh {
            Some(0) => return Err("--refresh 0: give at least 1 second".into()),
            Some(secs) => Some(Duration::from_secs(secs)),
            None => asked.map(|d| Duration::from_secs((d * 2 / 3).max(1))),
        },
    };
    reach::keep_open(
        target,
        keep,
        move || knock_quietly(&path, &server, &door, family, both),
        |why, outcome| {
            let what = match why {
                Rekey::Moved(from, to) => format!("source address {from} -> {to}"),
                Rekey::Refresh => "refresh".to_string(),
            };
            match outcome {
                Ok(()) => eprintln!("sesame: knocked again ({what})"),
                Err(e) => eprintln!("sesame: knocking again ({what}) failed: {e}"),
            }
        },
    );
    Ok(stream)
}

/// `sesame proxy`: stdin/stdout to the service, for ssh's `ProxyCommand`.
pub(crate) fn proxy(args: ProxyArgs) -> Result<(), String> {
    let stream = open(&args.host, args.port, &args.reach)?;
    reach::splice(stream, std::io::stdin(), std::io::stdout().lock())
        .map_err(|e| format!("{}:{}: {e}", args.host, args.port))
}

/// Runs `program args` once the door is open; returns its exit status.
fn run_after(
    host: &str,
    port: u16,
    r: &Reach,
    program: &str,
    args: &[String],
) -> Result<(), String> {
    // The confirming connection is closed at once: the grant is per
    // address, and the program makes its own.
    drop(open(host, port, r)?);
    let status = std::process::Command::new(program)
        .args(args)
        .status()
        .map_err(|e| format!("cannot run {program:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{program} exited with {status}"))
    }
}

/// `sesame exec`.
pub(crate) fn exec(args: ExecArgs) -> Result<(), String> {
    let (program, rest) = args
        .command
        .split_first()
        .ok_or("give the program to run after --")?;
    run_after(&args.server, args.port, &args.reach, program, rest)
}

/// `sesame ssh`.
pub(crate) fn ssh(args: SshArgs) -> Result<(), String> {
    let host = match args.destination.rsplit_once('@') {
        Some((_, host)) => host,
        None => args.destination.as_str(),
    };
    let mut ssh_args = vec![
        "-p".to_string(),
        args.ssh_port.to_string(),
        args.destination.clone(),
    ];
    ssh_args.extend(args.ssh_args.iter().cloned());
    run_after(host, args.ssh_port, &args.reach, "ssh", &ssh_args)
}
