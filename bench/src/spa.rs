//! SPA pieces: for the `sesamed-spa` and `fwknopd-*` rows, one fwknop key
//! pair, one access.conf stanza for both daemons and fresh packets
//! (`sesame_testkit::fwknop`); for the `sesamed-pk` row, Sesame's own
//! public-key SPA.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::Instant;

pub use sesame_testkit::fwknop::{Client, Keys, SPA_PORT};

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
