//! Shared by the SPA fuzz targets: a fixed user table and a structured
//! request builder.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::OnceLock;

use sesame_core::replay::ReplayCache;
use sesame_core::spa::{
    encode_public, encode_symmetric, Credential, IdentityKey, Payload, ServerKey, SpaError, SpaKey,
    UserPolicy, Verifier,
};
use sesame_core::{Proto, Service};

pub const NOW: u64 = 1_750_000_000;

pub struct Fixture {
    pub verifier: Verifier,
    sym: SpaKey,
    identity: IdentityKey,
    server: ServerKey,
}

pub fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let sym = SpaKey::from_bytes(&[0x11; 32]);
        let identity = IdentityKey::from_seed(&[0x22; 32]);
        let server = ServerKey::from_bytes(&[0x33; 32]);
        let mut verifier = Verifier::new(60, Some(server.clone()));
        let policy = UserPolicy {
            services: vec![
                Service::tcp(22),
                Service::udp(51820),
            ],
            max_duration: 600,
            allow_address: false,
            retired_after: None,
        };
        verifier
            .add_user("sym", Credential::Symmetric(sym.clone()), policy.clone())
            .unwrap();
        let mut open = policy;
        open.allow_address = true;
        verifier
            .add_user("pub", Credential::Public(identity.public()), open)
            .unwrap();
        Fixture {
            verifier,
            sym,
            identity,
            server,
        }
    })
}

impl Fixture {
    /// The server's public key.
    #[allow(dead_code)]
    pub fn server_public(&self) -> sesame_core::spa::ServerPublic {
        self.server.public()
    }

    /// The public-key user's identity key.
    #[allow(dead_code)]
    pub fn identity_key(&self) -> IdentityKey {
        self.identity.clone()
    }
}

/// Reads fixed-size fields off the front of the input, zero-padded.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        let n = N.min(self.0.len());
        out[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        out
    }
    fn byte(&mut self) -> u8 {
        self.take::<1>()[0]
    }
}

/// Encodes the request described by `data` (symmetric or public-key mode)
/// and checks how the verifier treats it and a one-byte corruption of it.
pub fn request(f: &Fixture, data: &[u8], public: bool) {
    let mut r = Reader(data);
    let flags = r.byte();
    let delta = i64::from(i16::from_be_bytes(r.take()));
    let nonce = r.take::<16>();
    let duration = u32::from_be_bytes(r.take());
    let count = usize::from(r.byte() % 9);
    let mut services = Vec::new();
    for _ in 0..count {
        let b = r.take::<3>();
        let proto = if b[0] & 1 == 0 {
            Proto::Tcp
        } else {
            Proto::Udp
        };
        let port = u16::from_be_bytes([b[1], b[2]]).max(1);
        let s = Service { proto, port };
        if !services.contains(&s) {
            services.push(s);
        }
    }
    let address = match flags & 0x06 {
        0x02 => Some(IpAddr::V4(Ipv4Addr::from(r.take::<4>()))),
        0x04 => Some(IpAddr::V6(Ipv6Addr::from(r.take::<16>()))),
        _ => None,
    };
    let payload = Payload {
        timestamp: NOW.wrapping_add_signed(delta),
        nonce,
        services,
        duration,
        address,
    };
    let nonce24 = r.take::<24>();
    let encoded = if public {
        let eph = r.take::<32>();
        encode_public(&f.identity, &f.server.public(), &payload, &eph, nonce24)
    } else {
        encode_symmetric(&f.sym, &payload, nonce24)
    };
    let Ok(packet) = encoded else {
        return; // e.g. an unusable explicit address
    };
    let mut cache = ReplayCache::new(4);
    match f.verifier.verify_and_record(&packet, NOW, &mut cache) {
        Ok(ok) => {
            assert_eq!(ok.payload, payload);
            assert!(ok.duration.as_secs() <= 600);
            assert!(matches!(
                f.verifier.verify_and_record(&packet, NOW, &mut cache),
                Err(SpaError::Replay { .. })
            ));
        }
        Err(e) => assert!(
            matches!(
                e.reason(),
                "stale" | "future" | "service_not_allowed" | "address_not_allowed"
            ),
            "valid request refused: {e}"
        ),
    }
    let flip = r.take::<2>();
    let at = usize::from(u16::from_be_bytes(flip)) % packet.len();
    let mut bad = packet;
    bad[at] ^= r.byte().max(1);
    assert!(
        f.verifier.verify(&bad, NOW).is_err(),
        "flipped byte {at} still verifies"
    );
}
