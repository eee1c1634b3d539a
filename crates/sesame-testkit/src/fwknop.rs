//! fwknop pieces shared by the compatibility tests and the benchmarks: a
//! key pair as `fwknop --key-gen` makes it, its access.conf stanza, and a
//! client that makes fresh packets with Sesame's fwknop encoder (16-digit
//! random value, fresh salt, timestamp = now, asking for the packet's
//! source, `0.0.0.0`).

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::Instant;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use sesame_client::fwknop::{AllowIp, FwknopDoor, KeySource};
use sesame_core::fwknop::{AccessPort, DigestType, EncMode, FwknopKeys};
use zeroize::Zeroizing;

/// fwknop's default SPA port.
pub const SPA_PORT: u16 = 62201;

/// `len` random bytes in standard base64 (with padding), as fwknop's
/// `--key-gen` writes keys.
pub fn random_key_base64(len: usize) -> String {
    let mut bytes = vec![0u8; len];
    getrandom::fill(&mut bytes).expect("getrandom");
    STANDARD.encode(bytes)
}

/// An fwknop key pair as `fwknop --key-gen` makes it: a 32-byte Rijndael key
/// and a 64-byte HMAC key, both base64.
#[derive(Clone, Debug)]
pub struct Keys {
    /// `KEY_BASE64`.
    pub key: String,
    /// `HMAC_KEY_BASE64`.
    pub hmac: String,
}

impl Keys {
    /// Fresh random keys.
    pub fn generate() -> Keys {
        Keys {
            key: random_key_base64(32),
            hmac: random_key_base64(64),
        }
    }

    /// An access.conf stanza for these keys (HMAC-SHA256, CBC: fwknop's
    /// defaults).
    pub fn stanza(&self, source: &str, open_ports: &str, timeout: u32) -> String {
        format!(
            "SOURCE {source}\nOPEN_PORTS {open_ports}\nKEY_BASE64 {}\nHMAC_KEY_BASE64 {}\nFW_ACCESS_TIMEOUT {timeout}\n",
            self.key, self.hmac
        )
    }
}

/// A client of one fwknop door: makes and sends fresh packets asking for
/// `tcp/PORT` for the packet's source.
#[derive(Clone)]
pub struct Client {
    door: FwknopDoor,
    keys: FwknopKeys,
}

impl Client {
    /// The client for `keys`, asking for `tcp/port` on [`SPA_PORT`].
    pub fn new(keys: &Keys, port: u16) -> Client {
        let door = FwknopDoor {
            port: SPA_PORT,
            access: vec![AccessPort::Service(
                format!("tcp/{port}").parse().expect("service"),
            )],
            allow_ip: AllowIp::Source,
            key: KeySource::Base64(Zeroizing::new(keys.key.clone())),
            hmac: Some((
                KeySource::Base64(Zeroizing::new(keys.hmac.clone())),
                DigestType::Sha256,
            )),
            mode: EncMode::Cbc,
            digest: DigestType::Sha256,
            client_timeout: None,
            username: Some("bench".into()),
            nat_access: None,
        };
        let enc = STANDARD.decode(&keys.key).expect("key");
        let hmac = STANDARD.decode(&keys.hmac).expect("hmac key");
        let keys = FwknopKeys::new(&enc, EncMode::Cbc, Some((&hmac, DigestType::Sha256)))
            .expect("fwknop keys");
        Client { door, keys }
    }

    /// A fresh packet (new random value and salt, timestamp = now).
    pub fn packet(&self) -> Vec<u8> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        self.packet_at(now)
    }

    /// A fresh packet stamped `unix_secs`.
    pub fn packet_at(&self, unix_secs: u64) -> Vec<u8> {
        self.door
            .packet(&self.keys, unix_secs)
            .expect("fwknop packet")
            .text
            .into_bytes()
    }

    /// The keys, as a server decodes with them.
    pub fn keys(&self) -> &FwknopKeys {
        &self.keys
    }

    /// Makes a fresh packet and sends it from `src` to `dst`:[`SPA_PORT`];
    /// returns the instant right after the kernel took it (the packet is
    /// made before the clock starts).
    pub fn send(&self, src: IpAddr, dst: IpAddr) -> Instant {
        let packet = self.packet();
        let socket = UdpSocket::bind(SocketAddr::new(src, 0)).expect("bind SPA source");
        let _ = socket.send_to(&packet, SocketAddr::new(dst, SPA_PORT));
        Instant::now()
    }
}
