//! `sesame`: the Sesame client and admin CLI.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Args, Parser, Subcommand, ValueEnum};
use sesame::client::profile::{self, ClientConfig, ClientDoor, ServerProfile, SpaDoor, TotpDoor};
use sesame::client::{self, Family};
use sesame::control::cli as ctl;
use sesame::keys::{self, KeyKind};
use sesame::knockd;
use sesame::one_time::OneTimeFile;
use sesame_core::spa::{IdentityKey, ServerKey, SpaKey};
use sesame_core::{Knock, Proto};
use zeroize::Zeroizing;

/// Sesame client: knock on a Sesame (or knockd) server, or run the demo.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Knock: `sesame knock HOST PORT[:tcp|udp]...` (knockd's `knock`
    /// syntax) or `sesame knock SERVER DOOR` for a plain, TOTP, SPA or
    /// fwknop door of the client config.
    Knock(KnockArgs),
    /// Print the current sequence of a TOTP door as `port[:proto] ...`, for
    /// any knock client: `knock HOST $(sesame sequence SERVER DOOR)`.
    Sequence(SequenceArgs),
    /// Create key material: a symmetric SPA key, an SPA identity, the
    /// server's SPA key pair or a TOTP secret (files are created 0600).
    Keygen(KeygenArgs),
    /// Show closed → knock → open → closed in two network namespaces, over
    /// IPv4 and IPv6 (needs root and iproute2).
    Demo,
    /// Convert another port knocker's config to Sesame TOML (printed to
    /// stdout).
    Import {
        #[command(subcommand)]
        from: ImportFrom,
    },
    /// Show the running sesamed: doors, active grants with the time left,
    /// knocks in progress, counters and uptime (control socket).
    Status(ctl::ListArgs),
    /// List the active grants of the running sesamed.
    Grants(ctl::ListArgs),
    /// Remove a grant from the kernel now: `sesame revoke ADDR [--door D]`.
    Revoke(ctl::RevokeArgs),
    /// Lift a knock ban (a source prefix that used up its failure budget).
    Unban(ctl::UnbanArgs),
    /// Manual (emergency) grant, logged as such: `sesame open ADDR --door D
    /// --for 10m`.
    Open(ctl::OpenArgs),
    /// Make sesamed re-read its config; an invalid one is refused and the
    /// running one kept.
    Reload(ctl::SocketArg),
}

#[derive(Subcommand)]
enum ImportFrom {
    /// Print the Sesame equivalent of a knockd.conf, with comments on each
    /// mapping: `sesame import knockd /etc/knockd.conf > sesame.toml`.
    Knockd {
        /// The knockd config file.
        file: PathBuf,
    },
    /// Print the Sesame equivalent of an fwknop server configuration (one
    /// fwknop door; the stanzas' keys are copied, so keep the output 0600):
    /// `sesame import fwknop /etc/fwknop/access.conf /etc/fwknop/fwknopd.conf
    /// > sesame.toml`.
    Fwknop {
        /// fwknopd's access.conf (its %include files are read too).
        access_conf: PathBuf,
        /// fwknopd.conf (SPA port, packet age, interface); fwknopd's
        /// defaults when left out.
        fwknopd_conf: Option<PathBuf>,
        /// A service to protect beyond the stanzas' OPEN_PORTS
        /// (repeatable): what a stanza without OPEN_PORTS may open.
        #[arg(long, value_name = "PROTO/PORT")]
        protect: Vec<sesame_core::Service>,
    },
}

#[derive(Args)]
struct KnockArgs {
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
struct SequenceArgs {
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

#[derive(Args)]
struct KeygenArgs {
    /// What to create.
    kind: KeygenKind,
    /// The (secret) key file to create; identity and server also write
    /// OUT.pub.
    out: PathBuf,
    /// Replace existing files.
    #[arg(long)]
    force: bool,
    /// Give the secret file to this user (run as root on the server:
    /// `--owner sesame`, the service user, which must read it).
    #[arg(long, value_name = "USER")]
    owner: Option<String>,
}

#[derive(Copy, Clone, ValueEnum)]
enum KeygenKind {
    /// A symmetric SPA key, shared by the client and the server.
    Spa,
    /// An Ed25519 identity for public-key SPA (the server gets OUT.pub).
    Identity,
    /// The server's X25519 key pair for public-key SPA (clients get
    /// OUT.pub).
    Server,
    /// A TOTP secret, shared by the client and the server.
    Totp,
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

fn config_path(given: &Option<PathBuf>) -> Result<PathBuf, String> {
    given
        .clone()
        .or_else(profile::default_path)
        .ok_or_else(|| "no client config: pass --config FILE".to_string())
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

fn knock(args: KnockArgs) -> Result<(), String> {
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
    door: &sesame::client::fwknop::FwknopDoor,
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
fn sequence(args: SequenceArgs) -> Result<(), String> {
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

/// `OUT.pub`: the file name with `.pub` appended.
fn pub_path(out: &Path) -> PathBuf {
    let mut name = out.as_os_str().to_owned();
    name.push(".pub");
    PathBuf::from(name)
}

fn random_key() -> Result<Zeroizing<[u8; 32]>, String> {
    let mut bytes = Zeroizing::new([0u8; 32]);
    getrandom::fill(bytes.as_mut()).map_err(|e| format!("cannot get random bytes: {e}"))?;
    Ok(bytes)
}

/// The absolute form of `path`, for config snippets.
fn absolute(path: &Path) -> String {
    std::path::absolute(path)
        .unwrap_or_else(|_| path.to_path_buf())
        .display()
        .to_string()
}

/// `sesame keygen KIND OUT`.
fn keygen(args: KeygenArgs) -> Result<(), String> {
    let out = &args.out;
    let public_out = pub_path(out);
    let with_pub = matches!(args.kind, KeygenKind::Identity | KeygenKind::Server);
    // Check both files before writing either.
    if !args.force {
        let existing = [out.clone(), public_out.clone()]
            .into_iter()
            .take(if with_pub { 2 } else { 1 })
            .find(|p| p.symlink_metadata().is_ok());
        if let Some(p) = existing {
            return Err(keys::KeyFileError::Exists {
                file: p.display().to_string(),
            }
            .to_string());
        }
    }
    // Missing folders are made private (0700): they hold secrets.
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(|e| format!("cannot create the folder {}: {e}", parent.display()))?;
    }
    let owner = args
        .owner
        .as_deref()
        .map(sesame::privilege::lookup)
        .transpose()
        .map_err(|e| e.to_string())?;
    let user = std::env::var("USER")
        .ok()
        .filter(|u| {
            !u.is_empty()
                && u.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        })
        .unwrap_or_else(|| "alice".into());
    let err = |e: keys::KeyFileError| e.to_string();
    let bytes = random_key()?;
    let file = absolute(out);
    match args.kind {
        KeygenKind::Spa => {
            keys::write_secret(out, KeyKind::SpaKey, &bytes, args.force).map_err(err)?;
            let key = SpaKey::from_bytes(&bytes);
            println!(
                "wrote symmetric SPA key {file} (mode 0600), key id {}",
                key.key_id()
            );
            println!();
            println!("On the server: copy the file there over a secure channel, owned by the");
            println!("service user, which must read it (the packaged unit runs as sesame):");
            println!(
                "    sudo install -D -m 600 -o sesame -g sesame {file} /etc/sesame/keys/{user}.key"
            );
            println!("and give the user this key in the SPA door of sesamed's config:");
            println!();
            println!("    [door.ssh.users.{user}]");
            println!("    key = \"/etc/sesame/keys/{user}.key\"");
            println!();
            println!("In your client config (~/.config/sesame/client.toml):");
            println!();
            println!("    [server.myserver.spa.ssh]");
            println!("    port = 62201                   # the door's spa_port");
            println!("    key = \"{file}\"");
        }
        KeygenKind::Identity => {
            let identity = IdentityKey::from_seed(&bytes);
            let public = identity.public();
            keys::write_secret(out, KeyKind::Identity, &identity.to_seed(), args.force)
                .map_err(err)?;
            keys::write_public(
                &public_out,
                KeyKind::IdentityPublic,
                &public.to_bytes(),
                args.force,
            )
            .map_err(err)?;
            let line = keys::encode_line(KeyKind::IdentityPublic, &public.to_bytes());
            println!("wrote SPA identity {file} (mode 0600, keep it private)");
            println!(
                "and its public key {} (key id {})",
                absolute(&public_out),
                public.key_id()
            );
            println!();
            println!(
                "On the server, give the user this public key in the SPA door of sesamed's config:"
            );
            println!();
            println!("    [door.ssh.users.{user}]");
            println!("    identity = \"{}\"", line.trim_end());
            println!();
            println!("In your client config (~/.config/sesame/client.toml), with the server's public key:");
            println!();
            println!("    [server.myserver.spa.ssh]");
            println!("    port = 62201                   # the door's spa_port");
            println!("    identity = \"{file}\"");
            println!("    server_public = \"sesame-server-pub-v1:...\"");
        }
        KeygenKind::Server => {
            let server = ServerKey::from_bytes(&bytes);
            let public = server.public();
            keys::write_secret(out, KeyKind::Server, &server.to_bytes(), args.force)
                .map_err(err)?;
            keys::write_public(
                &public_out,
                KeyKind::ServerPublic,
                &public.to_bytes(),
                args.force,
            )
            .map_err(err)?;
            let line = keys::encode_line(KeyKind::ServerPublic, &public.to_bytes());
            println!(
                "wrote SPA server key {file} (mode 0600; keep it on the server, owned by root)"
            );
            println!("and its public key {}", absolute(&public_out));
            println!();
            println!("In sesamed's config:");
            println!();
            println!("    server_key = \"{file}\"");
            println!();
            println!("Clients put the public key in their client config:");
            println!();
            println!("    server_public = \"{}\"", line.trim_end());
        }
        KeygenKind::Totp => {
            keys::write_secret(out, KeyKind::Totp, &bytes, args.force).map_err(err)?;
            println!("wrote TOTP secret {file} (mode 0600)");
            println!();
            println!("On the server: copy the file there over a secure channel, owned by the");
            println!("service user, which must read it (the packaged unit runs as sesame):");
            println!("    sudo install -D -m 600 -o sesame -g sesame {file} /etc/sesame/keys/{user}.totp");
            println!("and give the user this secret in the TOTP door of sesamed's config:");
            println!();
            println!("    [door.vpn.users.{user}]");
            println!("    totp_secret = \"/etc/sesame/keys/{user}.totp\"");
            println!();
            println!(
                "In your client config (~/.config/sesame/client.toml), with the door's settings:"
            );
            println!();
            println!("    [server.myserver.totp.vpn]");
            println!("    secret = \"{file}\"");
            println!("    ports = \"20000-29999\"          # the door's totp_ports");
            println!("    length = 4                     # the door's totp_length");
        }
    }
    if let Some(owner) = &owner {
        give_to(out, owner)?;
        println!();
        println!(
            "{file} now belongs to {} (uid {}), mode 0600",
            owner.name, owner.uid
        );
    }
    Ok(())
}

/// Hands a freshly written secret file to `owner`, by descriptor and never
/// through a symlink.
fn give_to(path: &Path, owner: &sesame::privilege::Target) -> Result<(), String> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    std::os::unix::fs::fchown(&file, Some(owner.uid.as_raw()), Some(owner.gid.as_raw())).map_err(
        |e| {
            format!(
                "cannot give {} to {}: {e} (run as root, or leave --owner out)",
                path.display(),
                owner.name
            )
        },
    )
}

fn import_knockd(file: &Path) -> Result<(), String> {
    let cfg = knockd::load(file).map_err(|e| e.to_string())?;
    print!("{}", cfg.to_sesame_toml());
    Ok(())
}

fn import_fwknop(
    access_conf: &Path,
    fwknopd_conf: Option<&Path>,
    protect: &[sesame_core::Service],
) -> Result<(), String> {
    let cfg = sesame::fwknop_conf::load_protecting(access_conf, fwknopd_conf, protect)
        .map_err(|e| e.to_string())?;
    // Refuse here anything sesamed would refuse, before printing secrets.
    cfg.to_config(access_conf).map_err(|e| e.to_string())?;
    print!("{}", cfg.to_sesame_toml());
    Ok(())
}

fn main() -> ExitCode {
    if let Some(code) =
        sesame::docs::from_env("sesame", <Cli as clap::CommandFactory>::command, "1")
    {
        return code;
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Knock(args) => knock(args),
        Command::Sequence(args) => sequence(args),
        Command::Keygen(args) => keygen(args),
        Command::Demo => sesame::demo::run().map_err(|e| e.to_string()),
        Command::Import {
            from: ImportFrom::Knockd { file },
        } => import_knockd(&file),
        Command::Import {
            from:
                ImportFrom::Fwknop {
                    access_conf,
                    fwknopd_conf,
                    protect,
                },
        } => import_fwknop(&access_conf, fwknopd_conf.as_deref(), &protect),
        Command::Status(args) => ctl::status(&args),
        Command::Grants(args) => ctl::grants(&args),
        Command::Revoke(args) => ctl::revoke(&args),
        Command::Unban(args) => ctl::unban(&args),
        Command::Open(args) => ctl::open(&args),
        Command::Reload(args) => ctl::reload(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sesame: {e}");
            ExitCode::FAILURE
        }
    }
}
