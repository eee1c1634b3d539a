//! `sesame keygen`: key files, private from their creation.

#[cfg(unix)]
use std::os::unix::fs::DirBuilderExt;
#[cfg(target_os = "linux")]
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use sesame_core::spa::{IdentityKey, ServerKey, SpaKey};
use zeroize::Zeroizing;

use crate::keys::{self, KeyKind};

#[derive(Args)]
pub(crate) struct KeygenArgs {
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
    #[cfg(target_os = "linux")]
    #[arg(long, value_name = "USER")]
    owner: Option<String>,
}

#[derive(Copy, Clone, ValueEnum)]
pub(crate) enum KeygenKind {
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
/// `sesame keygen`.
pub(crate) fn keygen(args: KeygenArgs) -> Result<(), String> {
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
        let mut folder = std::fs::DirBuilder::new();
        folder.recursive(true);
        #[cfg(unix)]
        folder.mode(0o700);
        folder
            .create(parent)
            .map_err(|e| format!("cannot create the folder {}: {e}", parent.display()))?;
    }
    #[cfg(target_os = "linux")]
    let owner = args
        .owner
        .as_deref()
        .map(crate::privilege::lookup)
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
    #[cfg(target_os = "linux")]
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
#[cfg(target_os = "linux")]
fn give_to(path: &Path, owner: &crate::privilege::Target) -> Result<(), String> {
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
