//! The daemon's side of the engine's seams: the nf_tables firewall, the
//! replay file, the one-time sequence files and this host's addresses.

use std::collections::HashMap;
use std::net::IpAddr;

use sesame_core::ports::{Firewall as FirewallSeam, OneTimeStore, PortError, ReplayStore, World};
use sesame_core::Knock;
use sesame_nftables::Firewall;

use super::replay_file::PersistentReplay;
use crate::one_time::OneTimeFile;

/// What the engine reaches on a real host.
pub struct HostWorld {
    /// The nftables table.
    pub firewall: Firewall,
    /// The replay file (when doors need one).
    pub replay: Option<PersistentReplay>,
    /// One-time sequence files, by door name.
    pub one_time: OneTimeFiles,
    /// The fleet's store (fleet mode).
    pub fleet: Option<sesame_fleet::RedisFleet>,
}

/// One-time sequence files, by door name.
#[derive(Default)]
pub struct OneTimeFiles(pub HashMap<String, OneTimeFile>);

impl OneTimeStore for OneTimeFiles {
    fn consume(&mut self, door: &str) -> Result<Option<(Vec<Knock>, usize)>, PortError> {
        let Some(file) = self.0.get_mut(door) else {
            return Ok(None);
        };
        let next = file.consume().map_err(PortError::from_display)?;
        let left = file.remaining();
        if next.is_none() {
            self.0.remove(door);
        }
        Ok(next.map(|n| (n, left)))
    }
}

impl World for HostWorld {
    fn firewall(&mut self) -> &mut dyn FirewallSeam {
        &mut self.firewall
    }

    fn replay(&mut self) -> Option<&mut dyn ReplayStore> {
        self.replay.as_mut().map(|r| r as &mut dyn ReplayStore)
    }

    fn one_time(&mut self) -> &mut dyn OneTimeStore {
        &mut self.one_time
    }

    fn fleet(&mut self) -> Option<&mut dyn sesame_core::ports::FleetStore> {
        self.fleet
            .as_mut()
            .map(|f| f as &mut dyn sesame_core::ports::FleetStore)
    }

    /// This host's own and broadcast addresses, read fresh on each request
    /// (interfaces come and go); unreadable means refused (fail closed).
    fn host_address_refusal(&mut self, addr: IpAddr) -> Option<String> {
        let interfaces = match nix::ifaddrs::getifaddrs() {
            Ok(i) => i,
            Err(e) => {
                return Some(format!(
                    "cannot read this host's addresses to check {addr}: {e}"
                ))
            }
        };
        for ifa in interfaces {
            let as_ip = |a: Option<&nix::sys::socket::SockaddrStorage>| -> Option<IpAddr> {
                let a = a?;
                if let Some(v4) = a.as_sockaddr_in() {
                    return Some(IpAddr::V4(v4.ip()));
                }
                a.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
            };
            if as_ip(ifa.address.as_ref()) == Some(addr) {
                return Some(format!(
                    "{addr} is an address of this host ({}): a grant to it would open the service to the host itself",
                    ifa.interface_name
                ));
            }
            if as_ip(ifa.broadcast.as_ref()) == Some(addr) {
                return Some(format!(
                    "{addr} is the broadcast address of {}",
                    ifa.interface_name
                ));
            }
        }
        None
    }
}
