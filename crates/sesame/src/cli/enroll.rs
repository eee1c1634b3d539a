//! `sesame invite` (on the server: one URI with everything a device needs
//! to knock an SPA door) and `sesame enroll URI` (on the device: installs
//! it). See `sesame_client::enroll`.

use std::path::PathBuf;

use clap::Args;
use sesame_core::Service;
use zeroize::Zeroizing;

use super::knock::config_path;
use crate::client::enroll::{EnrolledKey, Enrollment};
use crate::keys::{self, KeyKind};

/// `sesame invite`.
#[derive(Args)]
pub(crate) struct InviteArgs {
    /// Host name or address the device knocks.
    #[arg(long)]
    host: String,
    /// The SPA door's name in sesamed's config.
    #[arg(long)]
    door: String,
    /// The server's name in the device's client config (default: the
    /// host's first label).
    #[arg(long, value_name = "NAME")]
    server: Option<String>,
    /// The door's spa_port.
    #[arg(long, default_value_t = 62201)]
    port: u16,
    /// The user's symmetric key file (`sesame keygen spa`), as given to
    /// the door's user.
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with = "identity",
        required_unless_present = "identity"
    )]
    key: Option<PathBuf>,
    /// The user's identity file (`sesame keygen identity`; its .pub is the
    /// door user's identity), for public-key mode.
    #[arg(long, value_name = "FILE", requires = "server_public")]
    identity: Option<PathBuf>,
    /// With --identity: the server's public key file (`sesame keygen
    /// server` wrote it next to the secret one, as .pub).
    #[arg(long, value_name = "FILE")]
    server_public: Option<PathBuf>,
    /// A service to ask for (repeatable; default: all the user may open).
    #[arg(long, value_name = "PROTO/PORT")]
    service: Vec<Service>,
}

/// `sesame enroll`.
#[derive(Args)]
pub(crate) struct EnrollArgs {
    /// The `sesame://enroll?...` URI from `sesame invite`.
    uri: String,
    /// Install under this server name instead of the URI's.
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// Client config to add the door to (default
    /// ~/.config/sesame/client.toml); the key goes into `keys/` next to it.
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
}

/// `sesame invite`: prints the URI.
pub(crate) fn invite(args: InviteArgs) -> Result<(), String> {
    let err = |e: keys::KeyFileError| e.to_string();
    let key = match (&args.key, &args.identity, &args.server_public) {
        (Some(key), _, _) => {
            EnrolledKey::Symmetric(keys::read_secret(key, KeyKind::SpaKey).map_err(err)?)
        }
        (None, Some(identity), Some(server)) => EnrolledKey::Public {
            identity: keys::read_secret(identity, KeyKind::Identity).map_err(err)?,
            server_public: keys::read_public(server, KeyKind::ServerPublic).map_err(err)?,
        },
        _ => return Err("give --key, or --identity with --server-public".into()),
    };
    let server = args.server.clone().unwrap_or_else(|| {
        args.host
            .split('.')
            .next()
            .filter(|l| !l.is_empty() && l.parse::<u8>().is_err())
            .unwrap_or("server")
            .to_string()
    });
    let enrollment = Enrollment {
        server,
        host: args.host,
        door: args.door,
        port: args.port,
        services: args.service,
        key,
    };
    let uri: Zeroizing<String> = enrollment.to_uri();
    // Checked as the device will read it, so a bad name fails here.
    Enrollment::parse(&uri).map_err(|e| e.to_string())?;
    println!("{}", uri.as_str());
    eprintln!("sesame: this URI holds a secret key: hand it over like a password");
    Ok(())
}

/// `sesame enroll`: installs the URI's door and key.
pub(crate) fn enroll(args: EnrollArgs) -> Result<(), String> {
    let mut enrollment = Enrollment::parse(&args.uri).map_err(|e| e.to_string())?;
    if let Some(name) = args.name {
        enrollment.server = name;
        // The new name must be as plain as one from a URI.
        Enrollment::parse(&enrollment.to_uri()).map_err(|e| format!("--name: {e}"))?;
    }
    let config = config_path(&args.config)?;
    let key = enrollment.install(&config).map_err(|e| e.to_string())?;
    println!(
        "enrolled: server {:?} ({}) door {:?}, key {} (0600), profile in {}",
        enrollment.server,
        enrollment.host,
        enrollment.door,
        key.display(),
        config.display()
    );
    println!(
        "knock with: sesame knock {} {}   or: sesame ssh {}",
        enrollment.server, enrollment.door, enrollment.server
    );
    Ok(())
}
