//! `sesame`: the client and admin CLI. The binary parses and calls [`run`];
//! the commands live here:
//!
//! - `knock`: `sesame knock` and `sesame sequence`;
//! - `keygen`: `sesame keygen`;
//! - `import`: `sesame import knockd|fwknop`;
//! - `connect`: `sesame proxy`, `exec` and `ssh` (knock, confirm, retry,
//!   keep open);
//! - `enroll`: `sesame invite` and `sesame enroll`;
//! - the control commands (`status`, `grants`, `revoke`, `unban`, `open`,
//!   `reload`) are `crate::control::cli`'s; `demo` is `crate::demo`'s.
//!   They talk to a local sesamed or make namespaces, so they exist on
//!   Linux only; every other command builds for macOS and Windows too.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[cfg(target_os = "linux")]
use crate::control::cli as ctl;

mod connect;
mod enroll;
mod import;
mod keygen;
mod knock;

/// Sesame client: knock on a Sesame (or knockd) server, or run the demo.
#[derive(Parser)]
#[command(version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Knock: `sesame knock HOST PORT[:tcp|udp]...` (knockd's `knock`
    /// syntax) or `sesame knock SERVER DOOR` for a plain, TOTP, SPA or
    /// fwknop door of the client config.
    Knock(knock::KnockArgs),
    /// Knock with a door of the client config until the service answers,
    /// then carry stdin/stdout over the connection: `ProxyCommand sesame
    /// proxy %h %p` in ~/.ssh/config.
    Proxy(connect::ProxyArgs),
    /// Knock until `--port` answers, then run a program: `sesame exec SERVER
    /// --port 5432 -- psql -h db.example`.
    Exec(connect::ExecArgs),
    /// Knock until the ssh port answers, then run ssh: `sesame ssh
    /// alice@SERVER`.
    Ssh(connect::SshArgs),
    /// Print the current sequence of a TOTP door as `port[:proto] ...`, for
    /// any knock client: `knock HOST $(sesame sequence SERVER DOOR)`.
    Sequence(knock::SequenceArgs),
    /// Create key material: a symmetric SPA key, an SPA identity, the
    /// server's SPA key pair or a TOTP secret (files are created 0600).
    Keygen(keygen::KeygenArgs),
    /// On the server: print a one-line `sesame://enroll?...` URI with all a
    /// device needs to knock an SPA door (host, door, port, key).
    Invite(enroll::InviteArgs),
    /// On a device: install a `sesame invite` URI (key file 0600, profile in
    /// the client config), then `sesame knock SERVER DOOR` works.
    Enroll(enroll::EnrollArgs),
    /// Show closed → knock → open → closed in two network namespaces, over
    /// IPv4 and IPv6 (needs root and iproute2).
    #[cfg(target_os = "linux")]
    Demo {
        /// Fleet mode instead: redis-server and three gateways; one knock
        /// opens all three (also needs redis-server).
        #[arg(long)]
        fleet: bool,
    },
    /// Convert another port knocker's config to Sesame TOML (printed to
    /// stdout).
    Import {
        #[command(subcommand)]
        from: ImportFrom,
    },
    /// Show the running sesamed: doors, active grants with the time left,
    /// knocks in progress, counters and uptime (control socket).
    #[cfg(target_os = "linux")]
    Status(ctl::ListArgs),
    /// List the active grants of the running sesamed.
    #[cfg(target_os = "linux")]
    Grants(ctl::ListArgs),
    /// Remove a grant from the kernel now: `sesame revoke ADDR [--door D]`.
    #[cfg(target_os = "linux")]
    Revoke(ctl::RevokeArgs),
    /// Lift a knock ban (a source prefix that used up its failure budget).
    #[cfg(target_os = "linux")]
    Unban(ctl::UnbanArgs),
    /// Manual (emergency) grant, logged as such: `sesame open ADDR --door D
    /// --for 10m`.
    #[cfg(target_os = "linux")]
    Open(ctl::OpenArgs),
    /// Make sesamed re-read its config; an invalid one is refused and the
    /// running one kept.
    #[cfg(target_os = "linux")]
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
        /// An inner network NAT access requests may name (repeatable), as
        /// sesamed's --nat-host.
        #[arg(long, value_name = "CIDR")]
        nat_host: Vec<String>,
    },
}

/// Runs the command `cli` names; the error is the message to print.
pub fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Knock(args) => knock::knock(args),
        Command::Sequence(args) => knock::sequence(args),
        Command::Proxy(args) => connect::proxy(args),
        Command::Exec(args) => connect::exec(args),
        Command::Ssh(args) => connect::ssh(args),
        Command::Keygen(args) => keygen::keygen(args),
        Command::Invite(args) => enroll::invite(args),
        Command::Enroll(args) => enroll::enroll(args),
        #[cfg(target_os = "linux")]
        Command::Demo { fleet } => match fleet {
            false => crate::demo::run(),
            true => crate::demo_fleet::run(),
        }
        .map_err(|e| e.to_string()),
        Command::Import {
            from: ImportFrom::Knockd { file },
        } => import::knockd(&file),
        Command::Import {
            from:
                ImportFrom::Fwknop {
                    access_conf,
                    fwknopd_conf,
                    protect,
                    nat_host,
                },
        } => import::fwknop(&access_conf, fwknopd_conf.as_deref(), &protect, &nat_host),
        #[cfg(target_os = "linux")]
        Command::Status(args) => ctl::status(&args),
        #[cfg(target_os = "linux")]
        Command::Grants(args) => ctl::grants(&args),
        #[cfg(target_os = "linux")]
        Command::Revoke(args) => ctl::revoke(&args),
        #[cfg(target_os = "linux")]
        Command::Unban(args) => ctl::unban(&args),
        #[cfg(target_os = "linux")]
        Command::Open(args) => ctl::open(&args),
        #[cfg(target_os = "linux")]
        Command::Reload(args) => ctl::reload(&args),
    }
}
