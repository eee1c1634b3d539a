//! The plaintext payload: what a request asks for.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::door::{Proto, Service};

use super::format::*;

/// What a request asks for: the plaintext of a packet.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Payload {
    /// When the client made the packet (unix seconds).
    pub timestamp: u64,
    /// 16 random bytes: the replay cache's key.
    pub nonce: [u8; 16],
    /// Services to open, at most [`MAX_SERVICES`], no duplicates, no port 0.
    /// Empty asks for every service the user may open.
    pub services: Vec<Service>,
    /// Seconds to keep them open; 0 asks for the user's maximum. The server
    /// caps it at the user's maximum.
    pub duration: u32,
    /// The address to open for, when the client is behind NAT and knows its
    /// public address. `None` (the default) means the packet's observed
    /// source. Servers refuse it unless allowed for the user.
    pub address: Option<IpAddr>,
}

/// Why a decrypted payload is malformed. Only an authenticated sender can
/// produce one of these, so they point at a client bug or version mismatch.
#[derive(Copy, Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MalformedPayload {
    /// Not [`PAYLOAD_LEN`] bytes.
    #[error("payload is {0} bytes, expected 71")]
    Length(usize),
    /// Unknown payload version.
    #[error("unsupported payload version {0}")]
    Version(u8),
    /// Address kind other than 0, 4 or 6.
    #[error("unknown address kind {0}")]
    AddressKind(u8),
    /// Unspecified, multicast or broadcast address.
    #[error("unusable address {0}")]
    Address(IpAddr),
    /// Non-zero bytes where zeros are required.
    #[error("non-zero padding")]
    Padding,
    /// More than [`MAX_SERVICES`] services.
    #[error("{0} services, at most 8 allowed")]
    ServiceCount(u8),
    /// Protocol number other than 6 (TCP) or 17 (UDP).
    #[error("unknown protocol number {0}")]
    Proto(u8),
    /// Port 0.
    #[error("service port 0")]
    Port,
    /// A service named twice.
    #[error("service {0} named twice")]
    DuplicateService(Service),
}

impl Payload {
    /// The payload's 71-byte encoding; see `docs/spa-protocol.md`.
    pub fn encode(&self) -> Result<[u8; PAYLOAD_LEN], EncodeError> {
        if self.services.len() > MAX_SERVICES {
            return Err(EncodeError::TooManyServices(self.services.len()));
        }
        let mut out = [0u8; PAYLOAD_LEN];
        out[0] = PAYLOAD_VERSION;
        out[P_TIMESTAMP..P_NONCE].copy_from_slice(&self.timestamp.to_be_bytes());
        out[P_NONCE..P_DURATION].copy_from_slice(&self.nonce);
        out[P_DURATION..P_ADDR_KIND].copy_from_slice(&self.duration.to_be_bytes());
        match self.address {
            None => {}
            Some(addr) if !usable_address(addr) => return Err(EncodeError::BadAddress(addr)),
            Some(IpAddr::V4(a)) => {
                out[P_ADDR_KIND] = 4;
                out[P_ADDR..P_ADDR + 4].copy_from_slice(&a.octets());
            }
            Some(IpAddr::V6(a)) => {
                out[P_ADDR_KIND] = 6;
                out[P_ADDR..P_COUNT].copy_from_slice(&a.octets());
            }
        }
        out[P_COUNT] = self.services.len() as u8;
        for (i, s) in self.services.iter().enumerate() {
            if s.port == 0 {
                return Err(EncodeError::ZeroPort);
            }
            if self.services[..i].contains(s) {
                return Err(EncodeError::DuplicateService(*s));
            }
            let at = P_SERVICES + 3 * i;
            out[at] = s.proto.number();
            out[at + 1..at + 3].copy_from_slice(&s.port.to_be_bytes());
        }
        Ok(out)
    }

    /// Parses a 71-byte payload, strictly: every reserved byte must be zero,
    /// so each payload has exactly one encoding.
    pub fn decode(bytes: &[u8]) -> Result<Payload, MalformedPayload> {
        let b: &[u8; PAYLOAD_LEN] = bytes
            .try_into()
            .map_err(|_| MalformedPayload::Length(bytes.len()))?;
        if b[0] != PAYLOAD_VERSION {
            return Err(MalformedPayload::Version(b[0]));
        }
        let timestamp = u64::from_be_bytes(b[P_TIMESTAMP..P_NONCE].try_into().expect("8"));
        let nonce: [u8; 16] = b[P_NONCE..P_DURATION].try_into().expect("16");
        let duration = u32::from_be_bytes(b[P_DURATION..P_ADDR_KIND].try_into().expect("4"));
        let addr = &b[P_ADDR..P_COUNT];
        let address = match b[P_ADDR_KIND] {
            0 => {
                if addr.iter().any(|&x| x != 0) {
                    return Err(MalformedPayload::Padding);
                }
                None
            }
            4 => {
                if addr[4..].iter().any(|&x| x != 0) {
                    return Err(MalformedPayload::Padding);
                }
                let o: [u8; 4] = addr[..4].try_into().expect("4");
                Some(IpAddr::V4(Ipv4Addr::from(o)))
            }
            6 => {
                let o: [u8; 16] = addr.try_into().expect("16");
                Some(IpAddr::V6(Ipv6Addr::from(o)))
            }
            k => return Err(MalformedPayload::AddressKind(k)),
        };
        if let Some(a) = address {
            if !usable_address(a) {
                return Err(MalformedPayload::Address(a));
            }
        }
        let count = b[P_COUNT];
        if usize::from(count) > MAX_SERVICES {
            return Err(MalformedPayload::ServiceCount(count));
        }
        let mut services = Vec::with_capacity(usize::from(count));
        for (i, slot) in b[P_SERVICES..].chunks_exact(3).enumerate() {
            if i >= usize::from(count) {
                if slot != [0, 0, 0] {
                    return Err(MalformedPayload::Padding);
                }
                continue;
            }
            let proto = match slot[0] {
                6 => Proto::Tcp,
                17 => Proto::Udp,
                n => return Err(MalformedPayload::Proto(n)),
            };
            let port = u16::from_be_bytes([slot[1], slot[2]]);
            if port == 0 {
                return Err(MalformedPayload::Port);
            }
            let service = Service { proto, port };
            if services.contains(&service) {
                return Err(MalformedPayload::DuplicateService(service));
            }
            services.push(service);
        }
        Ok(Payload {
            timestamp,
            nonce,
            services,
            duration,
            address,
        })
    }
}

/// False for addresses no grant should ever go to, wherever the server
/// runs: unspecified, multicast, broadcast, loopback and link-local (an
/// IPv4-mapped IPv6 address is judged as IPv4). The host's own addresses
/// are the daemon's to refuse: only it knows them.
pub fn usable_address(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(a) => {
            !(a.is_unspecified()
                || a.is_multicast()
                || a.is_broadcast()
                || a.is_loopback()
                || a.is_link_local()
                || a.octets()[0] == 0)
        }
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => usable_address(IpAddr::V4(v4)),
            None => {
                !(a.is_unspecified()
                    || a.is_multicast()
                    || a.is_loopback()
                    || a.is_unicast_link_local())
            }
        },
    }
}

/// Why a packet could not be made.
#[derive(Copy, Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// More than [`MAX_SERVICES`] services.
    #[error("{0} services requested; one packet carries at most 8")]
    TooManyServices(usize),
    /// A service with port 0.
    #[error("service port 0")]
    ZeroPort,
    /// A service listed twice.
    #[error("service {0} listed twice")]
    DuplicateService(Service),
    /// An explicit address no grant may go to (see [`usable_address`]).
    #[error(
        "{0} cannot be granted access (unspecified, multicast, broadcast, loopback or link-local)"
    )]
    BadAddress(IpAddr),
    /// The server public key is a small-order point (no shared secret).
    #[error("the server public key is invalid (small-order point)")]
    WeakServerKey,
}
