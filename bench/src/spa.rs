//! fwknop SPA pieces shared by the `sesamed-spa` and `fwknopd-*` rows: one
//! key pair, one access.conf stanza for both daemons, and fresh packets made
//! by `sesame`'s fwknop encoder (the method of
//! `crates/sesame/benches/fwknop_latency.rs`: 16-digit random value, fresh
//! salt, timestamp = now, asking for the packet's source, `0.0.0.0`).

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::Instant;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use sesame::client::fwknop::{AllowIp, FwknopDoor, KeySource};
use sesame_core::fwknop::{AccessPort, DigestType, EncMode, FwknopKeys};
use zeroize::Zeroizing;

/// fwknop's default SPA port.
pub const SPA_PORT: u16 = 62201;

/// An fwknop key pair as `fwknop --key-gen` makes it: a 32-byte Rijndael key
/// and a 64-byte HMAC key, both base64.
#[derive(Clone, Debug)]
pub struct Keys {
    /// `KEY_BASE64`.
    pub key: String,
    /// `HMAC_KEY_BASE64`.
    pub hmac: String,
}

fn random_base64(len: usize) -> String {
    let mut bytes = vec![0u8; len];
    getrandom::fill(&mut bytes).expect("getrandom");
    STANDARD.encode(bytes)
}

impl Keys {
    /// Fresh random keys.
    pub fn generate() -> Keys {
        Keys {
            key: random_base64(32),
            hmac: random_base64(64),
        }
    }

    /// The access.conf stanza both daemons read (HMAC-SHA256, CBC: fwknop's
    /// defaults).
    pub fn stanza(&self, open_ports: &str, timeout: u32) -> String {
        format!(
            "SOURCE ANY\nOPEN_PORTS {open_ports}\nKEY_BASE64 {}\nHMAC_KEY_BASE64 {}\nFW_ACCESS_TIMEOUT {timeout}\n",
            self.key, self.hmac
        )
    }
}

/// A client for one door: makes and sends fresh packets.
#[derive(Clone)]
pub struct Client {
    door: FwknopDoor,
    keys: FwknopKeys,
}

impl Client {
    /// The client for `keys`, asking for `tcp/PORT` on [`SPA_PORT`].
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
        self.door
            .packet(&self.keys, now)
            .expect("fwknop packet")
            .text
            .into_bytes()
    }

    /// Makes a fresh packet and sends it from `src` to `dst`:SPA_PORT;
    /// returns the instant right after the kernel took it (the packet is
    /// made before the clock starts).
    pub fn send(&self, src: IpAddr, dst: IpAddr) -> Instant {
        let packet = self.packet();
        let socket = UdpSocket::bind(SocketAddr::new(src, 0)).expect("bind SPA source");
        let _ = socket.send_to(&packet, SocketAddr::new(dst, SPA_PORT));
        Instant::now()
    }
}

/// Sesame's own public-key SPA (version 2) for the `sesamed-pk` row: a
/// user identity and a server key, fresh packets per opening, and the
/// flood template (`f`): a genuine packet whose ciphertext the generator
/// changes, with `mac1` made anew, as someone who knows the server's public
/// key would send (each costs an X25519 unless the daemon's per-source
/// budget stops it).
#[derive(Clone)]
pub struct PkClient {
    identity: sesame_core::spa::IdentityKey,
    server: sesame_core::spa::ServerPublic,
    port: u16,
    counter: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl PkClient {
    /// Fresh keys; `server_key_file` gets the server's secret key, and the
    /// returned string is the user's inline `identity = "..."`.
    pub fn generate(
        server_key_file: &std::path::Path,
        port: u16,
    ) -> Result<(PkClient, String), String> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| e.to_string())?;
        let identity = sesame_core::spa::IdentityKey::from_seed(&seed);
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|e| e.to_string())?;
        let server = sesame_core::spa::ServerKey::from_bytes(&secret);
        sesame::keys::write_secret(
            server_key_file,
            sesame::keys::KeyKind::Server,
            &secret,
            true,
        )
        .map_err(|e| e.to_string())?;
        let inline = sesame::keys::encode_line(
            sesame::keys::KeyKind::IdentityPublic,
            &identity.public().to_bytes(),
        )
        .trim()
        .to_string();
        Ok((
            PkClient {
                identity,
                server: server.public(),
                port,
                counter: Default::default(),
            },
            inline,
        ))
    }

    /// A fresh genuine packet.
    pub fn packet(&self) -> Vec<u8> {
        let n = self
            .counter
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut nonce = [0u8; 16];
        getrandom::fill(&mut nonce).expect("getrandom");
        let mut eph = [0u8; 32];
        getrandom::fill(&mut eph).expect("getrandom");
        let mut n24 = [0u8; 24];
        n24[..8].copy_from_slice(&n.to_be_bytes());
        let payload = sesame_core::spa::Payload {
            timestamp: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            nonce,
            services: vec![],
            duration: 0,
            address: None,
        };
        sesame_core::spa::encode_public(&self.identity, &self.server, &payload, &eph, n24)
            .expect("encodable")
    }

    /// Sends a fresh packet from `src` to `dst`; the instant after sending.
    pub fn send(&self, src: IpAddr, dst: IpAddr) -> Instant {
        let packet = self.packet();
        let sock = UdpSocket::bind(SocketAddr::new(src, 0)).expect("bind legit source");
        sock.send_to(&packet, SocketAddr::new(dst, self.port))
            .expect("send SPA");
        Instant::now()
    }

    /// The `mac1` key of this server.
    pub fn mac1_key(&self) -> [u8; 32] {
        sesame_core::spa::mac1_key(&self.server.0)
    }
}
