//! Knocks: `sesame knock HOST PORT...`.
//!
//! Compatible with knockd's `knock HOST PORT[:tcp|udp]...` syntax and options,
//! and runs unprivileged: a TCP knock is a non-blocking connect attempt (one
//! SYN, closed at once), a UDP knock is a one-byte datagram.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

use sesame_core::{Knock, Proto};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// Which address family to knock over.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum Family {
    /// Whatever the resolver returns first.
    #[default]
    Any,
    /// IPv4 only (`-4`).
    V4,
    /// IPv6 only (`-6`).
    V6,
}

/// Why a knock could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum KnockError {
    /// Name resolution failed.
    #[error("cannot resolve {host:?}: {source}")]
    Resolve {
        /// Host as given.
        host: String,
        /// Resolver error.
        source: std::io::Error,
    },
    /// Resolution gave no address of the requested family.
    #[error("{host:?} has no {family} address")]
    NoAddress {
        /// Host as given.
        host: String,
        /// "IPv4" or "IPv6".
        family: &'static str,
    },
    /// A socket operation failed.
    #[error("knock {knock} to {addr}: {source}")]
    Send {
        /// The knock being sent.
        knock: Knock,
        /// Destination address.
        addr: IpAddr,
        /// OS error.
        source: std::io::Error,
    },
}

/// Resolves `host` once (knockd resolves it again for every port).
pub fn resolve(host: &str, family: Family) -> Result<IpAddr, KnockError> {
    if let Ok(ip) = host.trim_matches(['[', ']']).parse::<IpAddr>() {
        return match (family, ip) {
            (Family::V4, IpAddr::V6(_)) => Err(KnockError::NoAddress {
                host: host.into(),
                family: "IPv4",
            }),
            (Family::V6, IpAddr::V4(_)) => Err(KnockError::NoAddress {
                host: host.into(),
                family: "IPv6",
            }),
            _ => Ok(ip),
        };
    }
    let addrs = (host, 0u16)
        .to_socket_addrs()
        .map_err(|source| KnockError::Resolve {
            host: host.into(),
            source,
        })?;
    let mut addrs = addrs.map(|a| a.ip());
    let found = match family {
        Family::Any => addrs.next(),
        Family::V4 => addrs.find(IpAddr::is_ipv4),
        Family::V6 => addrs.find(IpAddr::is_ipv6),
    };
    found.ok_or(KnockError::NoAddress {
        host: host.into(),
        family: if family == Family::V6 { "IPv6" } else { "IPv4" },
    })
}

/// Sends one knock packet to `addr`.
pub fn send_knock(addr: IpAddr, knock: Knock) -> Result<(), KnockError> {
    let err = |source| KnockError::Send {
        knock,
        addr,
        source,
    };
    let target = SockAddr::from(SocketAddr::new(addr, knock.port));
    let domain = Domain::for_address(SocketAddr::new(addr, knock.port));
    match knock.proto {
        Proto::Tcp => {
            let socket = Socket::new(domain, Type::STREAM, Some(Protocol::TCP)).map_err(err)?;
            socket.set_nonblocking(true).map_err(err)?;
            match socket.connect(&target) {
                Ok(()) => {}
                Err(e) if crate::os::connect_in_progress(&e) => {}
                // A knock port is expected to be closed: a refusal still means
                // the SYN went out.
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
                Err(e) => return Err(err(e)),
            }
            // Dropping the socket in SYN_SENT sends nothing more: exactly one SYN.
        }
        Proto::Udp => {
            let socket = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP)).map_err(err)?;
            socket.send_to(&[0u8], &target).map_err(err)?;
        }
    }
    Ok(())
}

/// Sends a whole sequence, sleeping `delay` between hits. `on_sent` is called
/// after each packet (for `-v`).
pub fn knock_sequence(
    addr: IpAddr,
    knocks: &[Knock],
    delay: Duration,
    mut on_sent: impl FnMut(&Knock),
) -> Result<(), KnockError> {
    for (i, knock) in knocks.iter().enumerate() {
        if i > 0 && !delay.is_zero() {
            std::thread::sleep(delay);
        }
        send_knock(addr, *knock)?;
        on_sent(knock);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;

    #[test]
    fn literal_addresses_respect_family() {
        assert_eq!(
            resolve("127.0.0.1", Family::Any).unwrap(),
            "127.0.0.1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            resolve("[::1]", Family::V6).unwrap(),
            "::1".parse::<IpAddr>().unwrap()
        );
        assert!(matches!(
            resolve("::1", Family::V4),
            Err(KnockError::NoAddress { .. })
        ));
        assert!(matches!(
            resolve("127.0.0.1", Family::V6),
            Err(KnockError::NoAddress { .. })
        ));
    }

    #[test]
    fn udp_knock_reaches_a_local_socket() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let port = rx.local_addr().unwrap().port();
        send_knock(
            "127.0.0.1".parse().unwrap(),
            Knock {
                port,
                proto: Proto::Udp,
            },
        )
        .unwrap();
        let mut buf = [0u8; 8];
        let (n, _) = rx.recv_from(&mut buf).unwrap();
        assert_eq!(n, 1);
    }

    #[test]
    fn tcp_knock_sends_a_syn_to_a_listener() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        send_knock(
            "127.0.0.1".parse().unwrap(),
            Knock {
                port,
                proto: Proto::Tcp,
            },
        )
        .unwrap();
        // The SYN completed a handshake in the kernel's accept queue.
        listener.set_nonblocking(true).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        loop {
            match listener.accept() {
                Ok(_) => break,
                Err(_) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                Err(e) => panic!("no connection arrived: {e}"),
            }
        }
    }
}
