//! A knock plan: what to send to open one door of a client profile, made
//! first and sent after. Apps (through the C ABI) and tests can make the
//! plan without sending it, or send it with their own sockets.
//!
//! The randomness a packet needs (SPA nonces, fwknop random values) comes
//! from the OS in [`Plan::for_door`]; [`Plan::spa_with`] takes it from the
//! caller, so that a packet can be compared byte for byte across builds.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use sesame_core::spa::{Payload, NONCE_LEN};
use sesame_core::Knock;

use crate::knock::{self, Family, KnockError};
use crate::profile::{ClientConfig, ClientDoor, ProfileError, SpaDoor};

/// What to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Knocks to send in order (a plain door, or a TOTP door's current
    /// sequence), `delay` apart.
    Sequence {
        /// The server.
        addr: IpAddr,
        /// The knocks.
        knocks: Vec<Knock>,
        /// Pause between two knocks.
        delay: Duration,
    },
    /// One UDP datagram (an SPA or fwknop door).
    Datagram {
        /// Where it goes.
        dest: SocketAddr,
        /// The packet.
        bytes: Vec<u8>,
    },
}

/// Why a plan could not be made or sent. Each message names the server,
/// the door or the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The profile or a door of it is unusable.
    #[error(transparent)]
    Profile(#[from] ProfileError),
    /// The door's key could not be used or the packet made.
    #[error("door {door:?}: {message}")]
    Door {
        /// The door.
        door: String,
        /// What went wrong.
        message: String,
    },
    /// Resolving or sending failed.
    #[error(transparent)]
    Knock(#[from] KnockError),
    /// Sending a datagram failed.
    #[error("packet to {dest}: {source}")]
    Send {
        /// Where it was going.
        dest: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
}

impl Plan {
    /// The plan for `door` of `server` in `config` at `unix_secs`, with
    /// fresh randomness; `family` overrides the server's (`Any` keeps it).
    pub fn for_door(
        config: &ClientConfig,
        server: &str,
        door: &str,
        family: Family,
        unix_secs: u64,
    ) -> Result<Plan, PlanError> {
        let (profile, client_door) = config.door(server, door)?;
        let family = if family == Family::Any {
            profile.family
        } else {
            family
        };
        let addr = knock::resolve(&profile.host, family)?;
        let door_error = |message: String| PlanError::Door {
            door: door.to_string(),
            message,
        };
        let delay = Duration::from_millis(profile.delay_ms.unwrap_or(0));
        Ok(match client_door {
            ClientDoor::Plain(knocks) => Plan::Sequence {
                addr,
                knocks: knocks.clone(),
                delay,
            },
            ClientDoor::Totp(totp) => {
                let secret = totp.load_secret().map_err(|e| door_error(e.to_string()))?;
                let current = totp
                    .current(&secret, unix_secs)
                    .map_err(|e| door_error(e.to_string()))?;
                Plan::Sequence {
                    addr,
                    knocks: current.knocks,
                    delay,
                }
            }
            ClientDoor::Spa(spa) => {
                let mut nonce = [0u8; NONCE_LEN];
                let mut payload_nonce = [0u8; 16];
                getrandom::fill(&mut nonce).map_err(|e| door_error(e.to_string()))?;
                getrandom::fill(&mut payload_nonce).map_err(|e| door_error(e.to_string()))?;
                let key = spa.load_key().map_err(|e| door_error(e.to_string()))?;
                let payload = spa.payload(unix_secs, payload_nonce);
                // The ephemeral X25519 secret of public-key mode is drawn
                // by `encode`.
                let bytes = key
                    .encode(&payload)
                    .map_err(|e| door_error(e.to_string()))?;
                Plan::Datagram {
                    dest: SocketAddr::new(addr, spa.port),
                    bytes,
                }
            }
            ClientDoor::Fwknop(fw) => {
                let keys = fw
                    .load_keys(&config.path)
                    .map_err(|e| door_error(e.to_string()))?;
                let packet = fw
                    .packet(&keys, unix_secs)
                    .map_err(|e| door_error(e.to_string()))?;
                Plan::Datagram {
                    dest: SocketAddr::new(addr, fw.port),
                    bytes: packet.text.into_bytes(),
                }
            }
        })
    }

    /// The SPA packet of a symmetric-mode `door` with the given timestamp
    /// and randomness: the same bytes on every platform (tests, and
    /// comparing a build against another).
    pub fn spa_with(
        door: &SpaDoor,
        unix_secs: u64,
        payload_nonce: [u8; 16],
        nonce: [u8; NONCE_LEN],
    ) -> Result<Vec<u8>, PlanError> {
        let door_error = |message: String| PlanError::Door {
            door: format!("(SPA on port {})", door.port),
            message,
        };
        let key = door.load_key().map_err(|e| door_error(e.to_string()))?;
        // Public-key mode also needs an ephemeral secret, which must never
        // be chosen by a caller.
        if key.mode() != sesame_core::spa::Mode::Symmetric {
            return Err(door_error(
                "reproducible packets are for symmetric-mode doors only".into(),
            ));
        }
        let payload: Payload = door.payload(unix_secs, payload_nonce);
        key.encode_with(&payload, nonce, &[0u8; 32])
            .map_err(|e| door_error(e.to_string()))
    }

    /// Sends the plan from ordinary (unprivileged) sockets.
    pub fn send(&self) -> Result<(), PlanError> {
        match self {
            Plan::Sequence {
                addr,
                knocks,
                delay,
            } => Ok(knock::knock_sequence(*addr, knocks, *delay, |_| {})?),
            Plan::Datagram { dest, bytes } => {
                let bind: SocketAddr = match dest {
                    SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
                    SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
                };
                let send_error = |source| PlanError::Send {
                    dest: *dest,
                    source,
                };
                let sent = UdpSocket::bind(bind)
                    .and_then(|s| s.send_to(bytes, dest))
                    .map_err(send_error)?;
                if sent != bytes.len() {
                    return Err(send_error(std::io::Error::other(format!(
                        "only {sent} of {} bytes sent",
                        bytes.len()
                    ))));
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn plans_name_the_door_and_spa_packets_are_reproducible() {
        let cfg = ClientConfig::parse(
            Path::new("client.toml"),
            "[server.s]\nhost = \"192.0.2.1\"\ndoor.plain = [\"7000\", \"8000:udp\"]\n\
             [server.s.spa.ssh]\nport = 62201\nkey = \"/nonexistent/key\"\n",
        )
        .unwrap();
        let plan = Plan::for_door(&cfg, "s", "plain", Family::Any, 0).unwrap();
        let Plan::Sequence { addr, knocks, .. } = plan else {
            panic!("{plan:?}");
        };
        assert_eq!(addr, IpAddr::from([192, 0, 2, 1]));
        assert_eq!(knocks.len(), 2);
        let err = Plan::for_door(&cfg, "s", "ssh", Family::Any, 0)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("door \"ssh\"") && err.contains("/nonexistent/key"),
            "{err}"
        );
        let err = Plan::for_door(&cfg, "s", "nope", Family::Any, 0)
            .unwrap_err()
            .to_string();
        assert!(err.contains("nope"), "{err}");
    }
}
