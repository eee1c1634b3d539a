//! The admin commands of `sesame` that talk to the control socket:
//! `status`, `grants`, `revoke`, `open`, `reload`.

use std::net::IpAddr;
use std::path::PathBuf;

use super::client::call;
use super::{GrantInfo, Request, Response};
use crate::config::DEFAULT_CONTROL_SOCKET;

/// The socket option shared by every admin command.
#[derive(clap::Args, Debug)]
pub struct SocketArg {
    /// sesamed's control socket.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_CONTROL_SOCKET)]
    pub socket: PathBuf,
}

/// `sesame status` / `sesame grants`.
#[derive(clap::Args, Debug)]
pub struct ListArgs {
    /// Print the daemon's JSON answer.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub socket: SocketArg,
}

/// `sesame revoke ADDR [--door D]`.
#[derive(clap::Args, Debug)]
pub struct RevokeArgs {
    /// The granted address.
    pub addr: IpAddr,
    /// Only this door's grant (default: every grant of ADDR).
    #[arg(long, value_name = "DOOR")]
    pub door: Option<String>,
    /// Also cut ADDR's live connections to what the grants opened (their
    /// conntrack entries); without it established sessions go on.
    #[arg(long)]
    pub kill_flows: bool,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub socket: SocketArg,
}

/// `sesame unban PREFIX|--all`.
#[derive(clap::Args, Debug)]
pub struct UnbanArgs {
    /// The banned address or prefix (`2001:db8::/64`, `192.0.2.7`).
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub prefix: Option<sesame_core::Prefix>,
    /// Lift every ban.
    #[arg(long)]
    pub all: bool,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub socket: SocketArg,
}

/// `sesame open ADDR --door D --for DURATION`.
#[derive(clap::Args, Debug)]
pub struct OpenArgs {
    /// The address to let in.
    pub addr: IpAddr,
    /// The door whose services are opened.
    #[arg(long, value_name = "DOOR")]
    pub door: String,
    /// How long, e.g. 10m, 1h, 90s.
    #[arg(long = "for", value_name = "DURATION")]
    pub duration: humantime::Duration,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub socket: SocketArg,
}

fn send(socket: &SocketArg, request: &Request) -> Result<Response, String> {
    let r = call(&socket.socket, request)?;
    if r.ok {
        Ok(r)
    } else {
        Err(r
            .error
            .unwrap_or_else(|| "sesamed refused the request".into()))
    }
}

fn json(r: &impl serde::Serialize) -> Result<(), String> {
    println!(
        "{}",
        serde_json::to_string_pretty(r).map_err(|e| e.to_string())?
    );
    Ok(())
}

fn left(secs: u64) -> String {
    humantime::format_duration(std::time::Duration::from_secs(secs)).to_string()
}

fn print_grants(grants: &[GrantInfo]) {
    if grants.is_empty() {
        println!("no active grants");
        return;
    }
    let w = grants
        .iter()
        .map(|g| g.addr.to_string().len())
        .max()
        .unwrap_or(7)
        .max(7);
    let dw = grants
        .iter()
        .map(|g| g.door.len())
        .max()
        .unwrap_or(4)
        .max(4);
    println!(
        "{:<w$}  {:<dw$}  {:<12}  SERVICES",
        "ADDRESS", "DOOR", "LEFT"
    );
    for g in grants {
        println!(
            "{:<w$}  {:<dw$}  {:<12}  {}",
            g.addr.to_string(),
            g.door,
            left(g.secs_left),
            g.services.join(",")
        );
    }
}

/// `sesame status`.
pub fn status(args: &ListArgs) -> Result<(), String> {
    let r = send(&args.socket, &Request::Status)?;
    let s = r.status.ok_or("sesamed sent no status")?;
    if args.json {
        return json(&s);
    }
    println!(
        "sesamed {} up {} — config {}",
        s.version,
        left(s.uptime_secs),
        s.config
    );
    println!("doors:");
    for d in &s.doors {
        println!(
            "  {:<16} {:<8} opens {:<20} for {:<8} knocks in progress: {}",
            d.name,
            d.kind,
            if d.services.is_empty() {
                "-".into()
            } else {
                d.services.join(",")
            },
            left(d.open_for_secs),
            d.in_progress
        );
    }
    if !s.bans.is_empty() {
        println!("banned source prefixes ({}):", s.bans.len());
        for b in &s.bans {
            println!("  {:<44} {} left", b.prefix, left(b.secs_left));
        }
    }
    if let Some(f) = &s.fleet {
        let state = match (&f.store_up, &f.last_error) {
            (true, _) => "up".to_string(),
            (false, Some(e)) => format!("DOWN ({e})"),
            (false, None) => "DOWN".to_string(),
        };
        println!(
            "fleet: gateway {} of group {}; store {} {state}; on_store_down = {}",
            f.name, f.group, f.store, f.on_store_down
        );
        for (name, ago) in &f.members {
            let seen = match ago {
                Some(ms) => format!("last heartbeat {:.1}s ago", *ms as f64 / 1000.0),
                None => "never seen".to_string(),
            };
            let me = if name == &f.name {
                " (this gateway)"
            } else {
                ""
            };
            println!("  {name:<16} {seen}{me}");
        }
    }
    println!("grants ({}):", s.grants.len());
    print_grants(&s.grants);
    let c = &s.counters;
    println!(
        "knocks in progress: {}\ncounters: {} packets, {} malformed, {} overruns, {} opened, {} refreshed, {} revoked, {} manual, {} reloads, {} table restores",
        s.in_progress, c.packets, c.malformed, c.overruns, c.opened, c.refreshed, c.revoked, c.manual_opens, c.reloads, c.table_restores
    );
    Ok(())
}

/// `sesame grants`.
pub fn grants(args: &ListArgs) -> Result<(), String> {
    let r = send(&args.socket, &Request::Grants)?;
    let g = r.grants.unwrap_or_default();
    if args.json {
        return json(&g);
    }
    print_grants(&g);
    Ok(())
}

/// `sesame revoke`.
pub fn revoke(args: &RevokeArgs) -> Result<(), String> {
    let r = send(
        &args.socket,
        &Request::Revoke {
            addr: args.addr,
            door: args.door.clone(),
            kill_flows: args.kill_flows,
        },
    )?;
    if let Some(m) = &r.message {
        if args.kill_flows {
            println!("{m}");
        }
    }
    for g in r.grants.unwrap_or_default() {
        println!(
            "revoked {} on door {} ({})",
            g.addr,
            g.door,
            g.services.join(",")
        );
    }
    Ok(())
}

/// `sesame open`.
pub fn open(args: &OpenArgs) -> Result<(), String> {
    let secs = args.duration.as_secs();
    if secs == 0 {
        return Err("--for must be at least 1s".into());
    }
    let r = send(
        &args.socket,
        &Request::Open {
            addr: args.addr,
            door: args.door.clone(),
            secs,
        },
    )?;
    println!("{}", r.message.unwrap_or_default());
    Ok(())
}

/// `sesame unban`.
pub fn unban(args: &UnbanArgs) -> Result<(), String> {
    let r = send(
        &args.socket,
        &Request::Unban {
            prefix: args.prefix.map(|p| p.to_string()),
        },
    )?;
    println!("{}", r.message.unwrap_or_default());
    Ok(())
}

/// `sesame reload`.
pub fn reload(args: &SocketArg) -> Result<(), String> {
    let r = send(args, &Request::Reload)?;
    println!("{}", r.message.unwrap_or_default());
    Ok(())
}
