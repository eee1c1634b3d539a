//! `sesame import`: another port knocker's configuration as Sesame TOML.

use std::path::Path;

/// `sesame import knockd FILE`: prints the Sesame TOML.
pub(crate) fn knockd(file: &Path) -> Result<(), String> {
    let cfg = crate::knockd::load(file).map_err(|e| e.to_string())?;
    print!("{}", cfg.to_sesame_toml());
    Ok(())
}

/// `sesame import fwknop ACCESS [FWKNOPD]`: prints the Sesame TOML, once
/// the configuration passes what sesamed would check.
pub(crate) fn fwknop(
    access_conf: &Path,
    fwknopd_conf: Option<&Path>,
    protect: &[sesame_core::Service],
    nat_hosts: &[String],
) -> Result<(), String> {
    let mut cfg = crate::fwknop_conf::load_protecting(access_conf, fwknopd_conf, protect)
        .map_err(|e| e.to_string())?;
    cfg.door.nat.hosts = crate::fwknop_conf::parse_nat_hosts(nat_hosts)?;
    // Refuse here anything sesamed would refuse, before printing secrets.
    cfg.to_config(access_conf).map_err(|e| e.to_string())?;
    print!("{}", cfg.to_sesame_toml());
    Ok(())
}
