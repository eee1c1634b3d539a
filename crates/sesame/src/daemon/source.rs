//! Where the daemon's config comes from, kept so a reload (SIGHUP or
//! `sesame reload`) reads the same files with the same command-line
//! overrides as the start did.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::config::{self, Config};

/// The config files and the command-line overrides sesamed was started with.
#[derive(Clone, Debug, Default)]
pub struct ConfigSource {
    /// Sesame TOML config (used unless `knockd_config` or `fwknop_access`).
    pub config: PathBuf,
    /// Run from a knockd.conf instead.
    pub knockd_config: Option<PathBuf>,
    /// Run from fwknopd's access.conf instead.
    pub fwknop_access: Option<PathBuf>,
    /// With `fwknop_access`: fwknopd.conf.
    pub fwknopd_conf: Option<PathBuf>,
    /// With `fwknop_access`: services to protect beyond the stanzas'
    /// `OPEN_PORTS` (`--protect`).
    pub protect: Vec<sesame_core::Service>,
    /// With `fwknop_access`: the inner networks NAT requests may name
    /// (`--nat-host`).
    pub nat_hosts: Vec<String>,
    /// `--state-dir`.
    pub state_dir: Option<PathBuf>,
    /// `--interface` (repeatable).
    pub interfaces: Vec<String>,
    /// `--control-socket`.
    pub control_socket: Option<PathBuf>,
    /// `--metrics`.
    pub metrics: Option<SocketAddr>,
}

impl ConfigSource {
    /// The file a human should look at.
    pub fn main_file(&self) -> &PathBuf {
        self.knockd_config
            .as_ref()
            .or(self.fwknop_access.as_ref())
            .unwrap_or(&self.config)
    }

    /// Reads and validates the config, then applies the overrides. Errors
    /// name the file and line.
    pub fn load(&self) -> Result<Config, String> {
        let mut cfg = match (&self.knockd_config, &self.fwknop_access) {
            (Some(path), _) => crate::knockd::load(path)
                .and_then(|k| k.to_config(path))
                .map_err(|e| e.to_string())?,
            (None, Some(access)) => {
                let mut f = crate::fwknop_conf::load_protecting(
                    access,
                    self.fwknopd_conf.as_deref(),
                    &self.protect,
                )
                .map_err(|e| e.to_string())?;
                f.door.nat.hosts = crate::fwknop_conf::parse_nat_hosts(&self.nat_hosts)?;
                f.to_config(access).map_err(|e| e.to_string())?
            }
            (None, None) => config::load(&self.config).map_err(|e| e.to_string())?,
        };
        if !self.interfaces.is_empty() {
            for name in &self.interfaces {
                if !config::valid_interface_name(name) {
                    return Err(format!(
                        "--interface {name:?}: expected an interface name of 1 to 15 characters"
                    ));
                }
            }
            cfg.daemon.interfaces = self.interfaces.clone();
        }
        if let Some(dir) = &self.state_dir {
            cfg.daemon.state_dir = dir.clone();
        }
        if let Some(path) = &self.control_socket {
            cfg.daemon.control_socket = path.clone();
        }
        if let Some(addr) = self.metrics {
            cfg.daemon.metrics = Some(addr);
        }
        Ok(cfg)
    }
}
