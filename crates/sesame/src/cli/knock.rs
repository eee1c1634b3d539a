//! `sesame knock` and `sesame sequence`: knockd's syntax, and the plain,
//! TOTP, SPA, fwknop and one-time doors of a client profile.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Args;
use sesame_core::{Knock, Proto};

use crate::client::profile::{self, ClientConfig, ClientDoor, ServerProfile, SpaDoor, TotpDoor};
use crate::client::{self, Family};
use crate::one_time::OneTimeFile;

#[derive(Args, Clone)]
pub(crate) struct KnockArgs {
    /// Host name or address, or a server name from the client config.
    host: String,
    /// Ports as `port[:tcp|udp]`, or one door name from the client config.
    #[arg(required_unless_present_any = ["one_time", "spa_key"], value_name = "PORT[:PROTO]|DOOR")]
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
    /// Knock over IPv4 and over IPv6 (the server sees two addresses and
    /// opens for each); fails only when neither can be sent.
    #[arg(short = 'b', long = "both", conflicts_with_all = ["ipv4", "ipv6", "one_time"])]
    both: bool,
    /// Print each knock as it is sent.
    #[arg(short, long)]
    verbose: bool,
    /// Print what would be sent (for SPA the packet's fields and bytes) and
    /// send nothing.
    #[arg(short = 'n', long = "dry-run")]
    dry_run: bool,
    /// Client config with server profiles (default
    /// ~/.config/sesame/client.toml).
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Send one SPA packet made with this symmetric key file (`sesame
    /// keygen spa`) to HOST, without a client config.
    #[arg(long, value_name = "FILE", conflicts_with = "one_time")]
    spa_key: Option<PathBuf>,
    /// With --spa-key: the door's spa_port.
    #[arg(
        long,
        value_name = "PORT",
        default_value_t = 62201,
        requires = "spa_key"
    )]
    spa_port: u16,
}

#[derive(Args)]
pub(crate) struct SequenceArgs {
    /// A server name from the client config.
    server: String,
    /// A TOTP door of that server.
    door: String,
    /// Also print the step and the seconds it has left (on stderr).
    #[arg(short, long)]
    verbose: bool,
    /// Client config with server profiles (default
    /// ~/.config/sesame/client.toml).
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
}

fn unix_now() -> Result<u64, String> {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .map_err(|_| "the system clock is before 1970".to_string())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// knockd's `port[:proto]` syntax: TCP is the default and left out.
fn knock_syntax(knocks: &[Knock]) -> String {
    knocks
        .iter()
        .map(|k| match k.proto {
            Proto::Tcp => k.port.to_string(),
            Proto::Udp => format!("{}:udp", k.port),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

pub(crate) fn config_path(given: &Option<PathBuf>) -> Result<PathBuf, String> {
    given
        .clone()
        .or_else(profile::default_path)
        .ok_or_else(|| "no client config: pass --config FILE".to_string())
}

/// `--both`: the knock over IPv4, then over IPv6. A family that cannot be
/// reached (no IPv6 route, no A record) is reported, not fatal, while the
/// other one works.
fn knock_both(args: KnockArgs) -> Result<(), String> {
    let mut failed = Vec::new();
    for (ipv4, ipv6, name) in [(true, false, "IPv4"), (false, true, "IPv6")] {
        let one = KnockArgs {
            ipv4,
            ipv6,
            both: false,
            ..args.clone()
        };
        if let Err(e) = knock(one) {
            failed.push(format!("{name}: {e}"));
        }
    }
    match failed.len() {
        0 => Ok(()),
        1 => {
            eprintln!("sesame: knocked over one family only; {}", failed[0]);
            Ok(())
        }
        _ => Err(failed.join("; ")),
    }
}

fn family_of(args: &KnockArgs) -> Family {
    if args.ipv4 {
        Family::V4
    } else if args.ipv6 {
        Family::V6
    } else {
        Family::Any
    }
}

/// Knocks `door` of `server` from the client config at `config`, printing
/// nothing (stdout may be a proxied connection).
pub(crate) fn knock_quietly(
    config: &Path,
    server: &str,
    door: &str,
    family: Family,
    both: bool,
) -> Result<(), String> {
    knock(KnockArgs {
        host: server.to_string(),
        ports: vec![door.to_string()],
        one_time: None,
        udp: false,
        delay: None,
        ipv4: family == Family::V4,
        ipv6: family == Family::V6,
        both,
        verbose: false,
        dry_run: false,
        config: Some(config.to_path_buf()),
        spa_key: None,
        spa_port: 62201,
    })
}

/// `sesame knock`.
pub(crate) fn knock(args: KnockArgs) -> Result<(), String> {
    if args.both {
        return knock_both(args);
    }
    let family = family_of(&args);
    if let Some(path) = &args.one_time {
        return knock_one_time(&args, path, family);
    }
    if let Some(key) = &args.spa_key {
        if let Some(extra) = args.ports.first() {
            return Err(format!(
                "{extra:?}: with --spa-key give only HOST (the port is --spa-port)"
            ));
        }
        let door = SpaDoor {
            port: args.spa_port,
            credential: profile::SpaCredential::Symmetric { key: key.clone() },
            services: Vec::new(),
            duration: 0,
            address: None,
        };
        let addr = client::resolve(&args.host, family).map_err(|e| e.to_string())?;
        return knock_spa(&args, &args.host, addr, "(--spa-key)", &door);
    }
    let looks_like_ports = args.ports.iter().all(|p| {
        p.split(':')
            .next()
            .is_some_and(|n| n.parse::<u32>().is_ok())
    });
    if looks_like_ports {
        let knocks = args
            .ports
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
            .collect::<Result<Vec<_>, String>>()?;
        let addr = client::resolve(&args.host, family).map_err(|e| e.to_string())?;
        return send_sequence(&args, addr, &knocks, args.delay);
    }
    let [door_name] = args.ports.as_slice() else {
        return Err(format!(
            "{:?} is not a port; give PORT[:tcp|udp] values or one door name from the client config",
            args.ports.iter().find(|p| p.parse::<Knock>().is_err()).unwrap_or(&args.ports[0])
        ));
    };
    let path = config_path(&args.config)?;
    let cfg = ClientConfig::load(&path).map_err(|e| e.to_string())?;
    let (server, door) = cfg.door(&args.host, door_name).map_err(|e| e.to_string())?;
    let family = if family == Family::Any {
        server.family
    } else {
        family
    };
    let addr = client::resolve(&server.host, family).map_err(|e| e.to_string())?;
    let delay = args.delay.or(server.delay_ms);
    match door {
        ClientDoor::Plain(knocks) => send_sequence(&args, addr, knocks, delay),
        ClientDoor::Totp(totp) => knock_totp(&args, addr, door_name, totp, delay),
        ClientDoor::Spa(spa) => knock_spa(&args, &server.host, addr, door_name, spa),
        ClientDoor::Fwknop(door) => knock_fwknop(&args, &path, server, addr, door_name, door),
    }
}

/// An fwknop door: one UDP datagram in the fwknop client's format.
fn knock_fwknop(
    args: &KnockArgs,
    config: &Path,
    server: &ServerProfile,
    addr: IpAddr,
    name: &str,
    door: &crate::client::fwknop::FwknopDoor,
) -> Result<(), String> {
    let keys = door.load_keys(config).map_err(|e| e.to_string())?;
    let packet = door.packet(&keys, unix_now()?).map_err(|e| e.to_string())?;
    let dest = SocketAddr::new(addr, door.port);
    if args.dry_run {
        println!("dry run: nothing sent");
        let label = format!("{name} (fwknop) on {}", server.host);
        print!("{}", packet.describe(&label, &keys, dest));
        return Ok(());
    }
    let sent = packet
        .send(dest)
        .map_err(|e| format!("fwknop SPA packet to {dest}: {e}"))?;
    if args.verbose {
        println!("sent {sent}-byte fwknop SPA packet to {dest}");
    }
    Ok(())
}

/// Sends (or with --dry-run prints) a sequence of knocks.
fn send_sequence(
    args: &KnockArgs,
    addr: IpAddr,
    knocks: &[Knock],
    delay: Option<u64>,
) -> Result<(), String> {
    if args.dry_run {
        println!("dry run: nothing sent");
        println!("destination: {addr}");
        println!("sequence:    {}", knock_syntax(knocks));
        return Ok(());
    }
    let delay = Duration::from_millis(delay.unwrap_or(0));
    client::knock_sequence(addr, knocks, delay, |k| {
        if args.verbose {
            println!("hitting {} {addr}:{}", k.proto, k.port);
        }
    })
    .map_err(|e| e.to_string())
}

/// A TOTP door: the current step's sequence, knocked like a plain one.
fn knock_totp(
    args: &KnockArgs,
    addr: IpAddr,
    name: &str,
    door: &TotpDoor,
    delay: Option<u64>,
) -> Result<(), String> {
    let secret = door.load_secret().map_err(|e| e.to_string())?;
    let now = unix_now()?;
    let current = door
        .current(&secret, now)
        .map_err(|e| format!("door {name:?}: {e}"))?;
    if args.dry_run || args.verbose {
        println!(
            "door {name:?} (TOTP): step {}, {} s left, {} knocks over {}",
            current.step,
            current.seconds_left,
            current.knocks.len(),
            door.spec.proto
        );
    }
    send_sequence(args, addr, &current.knocks, delay)
}

/// An SPA door: one UDP datagram from an unprivileged socket.
fn knock_spa(
    args: &KnockArgs,
    host: &str,
    addr: IpAddr,
    name: &str,
    door: &SpaDoor,
) -> Result<(), String> {
    let key = door.load_key().map_err(|e| e.to_string())?;
    let payload = door.fresh_payload(unix_now()?).map_err(|e| e.to_string())?;
    let packet = key.encode(&payload).map_err(|e| e.to_string())?;
    let dest = SocketAddr::new(addr, door.port);
    if args.dry_run {
        let services = if payload.services.is_empty() {
            "(none named: all the user may open)".to_string()
        } else {
            payload
                .services
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" ")
        };
        let duration = if payload.duration == 0 {
            "0 (the door's maximum)".to_string()
        } else {
            format!("{} s", payload.duration)
        };
        let address = payload.address.map_or_else(
            || "(none: the packet's source address)".to_string(),
            |a| a.to_string(),
        );
        println!("dry run: nothing sent");
        println!("door:        {name} (SPA) on {host}");
        println!("mode:        {}", key.mode());
        println!("key id:      {}", key.key_id());
        println!("destination: {dest} (udp)");
        println!("timestamp:   {}", payload.timestamp);
        println!("nonce:       {}", hex(&payload.nonce));
        println!("services:    {services}");
        println!("duration:    {duration}");
        println!("address:     {address}");
        println!("packet:      {} bytes", packet.len());
        println!("hex:         {}", hex(&packet));
        return Ok(());
    }
    let bind: SocketAddr = match addr {
        IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        IpAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let sent = UdpSocket::bind(bind)
        .and_then(|socket| socket.send_to(&packet, dest))
        .map_err(|e| format!("SPA packet to {dest}: {e}"))?;
    if sent != packet.len() {
        return Err(format!(
            "SPA packet to {dest}: only {sent} of {} bytes sent",
            packet.len()
        ));
    }
    if args.verbose {
        println!(
            "sent {sent}-byte SPA packet ({} mode, key id {}) to {dest}",
            key.mode(),
            key.key_id()
        );
    }
    Ok(())
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
    send_sequence(args, addr, &knocks, args.delay)?;
    if args.dry_run {
        println!("(would mark {}:{line} used)", path.display());
        return Ok(());
    }
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

/// `sesame sequence SERVER DOOR`.
/// `sesame sequence`.
pub(crate) fn sequence(args: SequenceArgs) -> Result<(), String> {
    let path = config_path(&args.config)?;
    let cfg = ClientConfig::load(&path).map_err(|e| e.to_string())?;
    let (_, door) = cfg
        .door(&args.server, &args.door)
        .map_err(|e| e.to_string())?;
    match door {
        ClientDoor::Totp(totp) => {
            let secret = totp.load_secret().map_err(|e| e.to_string())?;
            let now = unix_now()?;
            let current = totp
                .current(&secret, now)
                .map_err(|e| format!("door {:?}: {e}", args.door))?;
            println!("{}", knock_syntax(&current.knocks));
            if args.verbose {
                eprintln!(
                    "step {} (period {} s), {} s left",
                    current.step, totp.spec.period, current.seconds_left
                );
            }
            Ok(())
        }
        ClientDoor::Plain(knocks) => {
            println!("{}", knock_syntax(knocks));
            Ok(())
        }
        ClientDoor::Spa(_) | ClientDoor::Fwknop(_) => Err(format!(
            "{}: door {:?} of server {:?} is an {} door: it has no sequence; use `sesame knock {} {}`",
            path.display(),
            args.door,
            args.server,
            door.type_name(),
            args.server,
            args.door
        )),
    }
}
