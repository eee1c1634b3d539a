//! Defensive IPv4/IPv6 + TCP/UDP header parser.
//!
//! The input is a datagram as NFLOG delivers it: starting at the IP header,
//! with no link layer, possibly cut short by the snap length. Every length
//! field is treated as hostile: each offset is checked against the buffer
//! before it is read, and the IPv6 extension-header walk is bounded.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::door::Proto;

/// IP protocol / IPv6 next-header numbers the parser understands.
mod ipproto {
    pub const HOP_BY_HOP: u8 = 0;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const ROUTING: u8 = 43;
    pub const FRAGMENT: u8 = 44;
    pub const AUTH: u8 = 51;
    pub const DEST_OPTS: u8 = 60;
}

/// Most IPv6 extension headers walked before giving up. Real traffic carries
/// at most a handful; a long chain is only useful to an attacker.
pub const MAX_EXTENSION_HEADERS: usize = 8;

const IPV4_MIN_HEADER: usize = 20;
const IPV6_HEADER: usize = 40;
const TCP_MIN_HEADER: usize = 20;
const UDP_HEADER: usize = 8;

/// The fields of a TCP or UDP packet that the knock logic needs.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Packet<'a> {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Transport protocol.
    pub proto: Proto,
    /// Transport source port.
    pub src_port: u16,
    /// Transport destination port.
    pub dst_port: u16,
    /// TCP header byte 13 (CWR..FIN); 0 for UDP.
    pub tcp_flags: u8,
    /// Transport payload (e.g. UDP data); may be cut short by the snap length.
    pub payload: &'a [u8],
}

/// Why a datagram could not be parsed.
#[derive(Copy, Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The buffer ends before a header that must be present.
    #[error("truncated packet: the {what} needs {needed} bytes but only {available} are left")]
    Truncated {
        /// Which header was cut.
        what: &'static str,
        /// Bytes the header needs.
        needed: usize,
        /// Bytes left in the buffer.
        available: usize,
    },
    /// The version nibble is neither 4 nor 6.
    #[error("unsupported IP version {0} (expected 4 or 6)")]
    BadVersion(u8),
    /// A header length field is impossible (too small or inconsistent).
    #[error("bad {what} length {value}")]
    BadHeaderLength {
        /// Which length field.
        what: &'static str,
        /// Its value in bytes.
        value: usize,
    },
    /// A non-first fragment: it carries no transport header.
    #[error("non-first fragment: no transport header to read")]
    Fragment,
    /// The transport (or an IPv6 next header) is not TCP or UDP, or is an
    /// extension header we cannot see through (ESP, no-next-header, ...).
    #[error("unsupported protocol {0} (only TCP and UDP knocks are recognised)")]
    UnsupportedProtocol(u8),
    /// The IPv6 extension-header chain is longer than [`MAX_EXTENSION_HEADERS`].
    #[error("more than {MAX_EXTENSION_HEADERS} IPv6 extension headers")]
    TooManyExtensionHeaders,
}

/// Returns `buf[start..start + len]` or a [`ParseError::Truncated`] naming `what`.
fn take<'a>(
    buf: &'a [u8],
    start: usize,
    len: usize,
    what: &'static str,
) -> Result<&'a [u8], ParseError> {
    buf.get(start..)
        .and_then(|rest| rest.get(..len))
        .ok_or(ParseError::Truncated {
            what,
            needed: len,
            available: buf.len().saturating_sub(start),
        })
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// Parses an IP datagram starting at the IP header.
pub fn parse(datagram: &[u8]) -> Result<Packet<'_>, ParseError> {
    let version = take(datagram, 0, 1, "IP version")?[0] >> 4;
    match version {
        4 => parse_ipv4(datagram),
        6 => parse_ipv6(datagram),
        v => Err(ParseError::BadVersion(v)),
    }
}

fn parse_ipv4(buf: &[u8]) -> Result<Packet<'_>, ParseError> {
    let fixed = take(buf, 0, IPV4_MIN_HEADER, "IPv4 header")?;
    let header_len = usize::from(fixed[0] & 0x0f) * 4;
    if header_len < IPV4_MIN_HEADER {
        return Err(ParseError::BadHeaderLength {
            what: "IPv4 header (IHL)",
            value: header_len,
        });
    }
    take(buf, 0, header_len, "IPv4 header with options")?;
    let total_len = usize::from(be16(fixed, 2));
    if total_len < header_len {
        return Err(ParseError::BadHeaderLength {
            what: "IPv4 total",
            value: total_len,
        });
    }
    // The fragment offset (in 8-byte units) is the low 13 bits; only the first
    // fragment carries the transport header. MF on the first one is fine.
    if be16(fixed, 6) & 0x1fff != 0 {
        return Err(ParseError::Fragment);
    }
    let proto = fixed[9];
    let src = Ipv4Addr::new(fixed[12], fixed[13], fixed[14], fixed[15]);
    let dst = Ipv4Addr::new(fixed[16], fixed[17], fixed[18], fixed[19]);
    // The snap length may cut the datagram short of total_len; trailing
    // link-layer padding may make it longer. Trust the smaller.
    let end = total_len.min(buf.len());
    parse_l4(proto, &buf[header_len..end], src.into(), dst.into())
}

fn parse_ipv6(buf: &[u8]) -> Result<Packet<'_>, ParseError> {
    let fixed = take(buf, 0, IPV6_HEADER, "IPv6 header")?;
    let payload_len = usize::from(be16(fixed, 4));
    let mut next = fixed[6];
    let mut src = [0u8; 16];
    src.copy_from_slice(&fixed[8..24]);
    let mut dst = [0u8; 16];
    dst.copy_from_slice(&fixed[24..40]);
    // A zero payload length with a hop-by-hop header announces a jumbogram
    // (RFC 2675): the real length is in an option; the buffer bounds it anyway.
    let end = if payload_len == 0 && next == ipproto::HOP_BY_HOP {
        buf.len()
    } else {
        (IPV6_HEADER + payload_len).min(buf.len())
    };
    let buf = &buf[..end];
    let mut offset = IPV6_HEADER;
    let mut walked = 0;
    loop {
        let header_len = match next {
            ipproto::TCP | ipproto::UDP => break,
            ipproto::HOP_BY_HOP | ipproto::ROUTING | ipproto::DEST_OPTS => {
                let h = take(buf, offset, 2, "IPv6 extension header")?;
                (usize::from(h[1]) + 1) * 8
            }
            ipproto::FRAGMENT => {
                let h = take(buf, offset, 8, "IPv6 fragment header")?;
                if be16(h, 2) >> 3 != 0 {
                    return Err(ParseError::Fragment);
                }
                8
            }
            ipproto::AUTH => {
                let h = take(buf, offset, 2, "IPv6 authentication header")?;
                (usize::from(h[1]) + 2) * 4
            }
            // ESP hides the transport header; 59 (no next header) has none.
            other => return Err(ParseError::UnsupportedProtocol(other)),
        };
        if walked == MAX_EXTENSION_HEADERS {
            return Err(ParseError::TooManyExtensionHeaders);
        }
        walked += 1;
        let h = take(buf, offset, header_len, "IPv6 extension header")?;
        next = h[0];
        offset += header_len;
    }
    parse_l4(
        next,
        &buf[offset..],
        Ipv6Addr::from(src).into(),
        Ipv6Addr::from(dst).into(),
    )
}

fn parse_l4(proto: u8, l4: &[u8], src: IpAddr, dst: IpAddr) -> Result<Packet<'_>, ParseError> {
    match proto {
        ipproto::TCP => {
            let h = take(l4, 0, TCP_MIN_HEADER, "TCP header")?;
            let data_offset = usize::from(h[12] >> 4) * 4;
            if data_offset < TCP_MIN_HEADER {
                return Err(ParseError::BadHeaderLength {
                    what: "TCP header (data offset)",
                    value: data_offset,
                });
            }
            take(l4, 0, data_offset, "TCP header with options")?;
            Ok(Packet {
                src,
                dst,
                proto: Proto::Tcp,
                src_port: be16(h, 0),
                dst_port: be16(h, 2),
                tcp_flags: h[13],
                payload: &l4[data_offset..],
            })
        }
        ipproto::UDP => {
            let h = take(l4, 0, UDP_HEADER, "UDP header")?;
            let udp_len = usize::from(be16(h, 4));
            if udp_len < UDP_HEADER {
                return Err(ParseError::BadHeaderLength {
                    what: "UDP",
                    value: udp_len,
                });
            }
            Ok(Packet {
                src,
                dst,
                proto: Proto::Udp,
                src_port: be16(h, 0),
                dst_port: be16(h, 2),
                tcp_flags: 0,
                payload: &l4[UDP_HEADER..udp_len.min(l4.len())],
            })
        }
        other => Err(ParseError::UnsupportedProtocol(other)),
    }
}

/// Packet builders for tests (here and in adapter crates). Checksums are left
/// zero: the parser does not verify them (the kernel already did).
#[doc(hidden)]
pub mod testing {
    use std::net::{Ipv4Addr, Ipv6Addr};

    /// IP protocol number of TCP.
    pub const TCP: u8 = 6;
    /// IP protocol number of UDP.
    pub const UDP: u8 = 17;

    /// A TCP header without options, followed by `payload`.
    pub fn tcp(src_port: u16, dst_port: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::with_capacity(20 + payload.len());
        v.extend_from_slice(&src_port.to_be_bytes());
        v.extend_from_slice(&dst_port.to_be_bytes());
        v.extend_from_slice(&1u32.to_be_bytes()); // seq
        v.extend_from_slice(&0u32.to_be_bytes()); // ack
        v.push(5 << 4); // data offset 5 words
        v.push(flags);
        v.extend_from_slice(&64240u16.to_be_bytes()); // window
        v.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
        v.extend_from_slice(payload);
        v
    }

    /// A UDP header followed by `payload`.
    pub fn udp(src_port: u16, dst_port: u16, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::with_capacity(8 + payload.len());
        v.extend_from_slice(&src_port.to_be_bytes());
        v.extend_from_slice(&dst_port.to_be_bytes());
        v.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        v.extend_from_slice(&[0, 0]);
        v.extend_from_slice(payload);
        v
    }

    /// An IPv4 header (no options, DF set) carrying `l4`.
    pub fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, l4: &[u8]) -> Vec<u8> {
        let mut v = Vec::with_capacity(20 + l4.len());
        v.push(0x45);
        v.push(0);
        v.extend_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
        v.extend_from_slice(&[0x12, 0x34, 0x40, 0x00]); // id, DF, offset 0
        v.push(64);
        v.push(proto);
        v.extend_from_slice(&[0, 0]);
        v.extend_from_slice(&src.octets());
        v.extend_from_slice(&dst.octets());
        v.extend_from_slice(l4);
        v
    }

    /// An IPv6 extension header for [`ipv6`].
    #[derive(Copy, Clone, Debug)]
    pub enum Ext {
        /// Hop-by-hop options, `units` extra 8-byte units of padding.
        HopByHop(u8),
        /// Routing header, `units` extra 8-byte units.
        Routing(u8),
        /// Destination options, `units` extra 8-byte units.
        DestOpts(u8),
        /// Fragment header with the given offset (8-byte units) and MF bit.
        Fragment {
            /// Fragment offset in 8-byte units.
            offset: u16,
            /// More-fragments flag.
            more: bool,
        },
        /// Authentication header, `words` 4-byte words after the first 8 bytes.
        Auth(u8),
    }

    impl Ext {
        fn number(self) -> u8 {
            match self {
                Ext::HopByHop(_) => 0,
                Ext::Routing(_) => 43,
                Ext::DestOpts(_) => 60,
                Ext::Fragment { .. } => 44,
                Ext::Auth(_) => 51,
            }
        }

        fn encode(self, next: u8, out: &mut Vec<u8>) {
            match self {
                Ext::HopByHop(n) | Ext::Routing(n) | Ext::DestOpts(n) => {
                    out.extend_from_slice(&[next, n]);
                    // PadN option filling the rest of the header.
                    let total = (usize::from(n) + 1) * 8;
                    out.extend_from_slice(&[1, (total - 4) as u8]);
                    out.resize(out.len() + total - 4, 0);
                }
                Ext::Fragment { offset, more } => {
                    out.extend_from_slice(&[next, 0]);
                    out.extend_from_slice(&((offset << 3) | u16::from(more)).to_be_bytes());
                    out.extend_from_slice(&0xdead_beefu32.to_be_bytes());
                }
                Ext::Auth(words) => {
                    out.extend_from_slice(&[next, words, 0, 0]);
                    let total = (usize::from(words) + 2) * 4;
                    out.resize(out.len() + total - 4, 0);
                }
            }
        }
    }

    /// An IPv6 header, then `exts` in order, then `l4` of protocol `proto`.
    pub fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, exts: &[Ext], proto: u8, l4: &[u8]) -> Vec<u8> {
        let mut body = Vec::new();
        for (i, ext) in exts.iter().enumerate() {
            let next = exts.get(i + 1).map_or(proto, |e| e.number());
            ext.encode(next, &mut body);
        }
        body.extend_from_slice(l4);
        let mut v = Vec::with_capacity(40 + body.len());
        v.extend_from_slice(&[0x60, 0, 0, 0]);
        v.extend_from_slice(&(body.len() as u16).to_be_bytes());
        v.push(exts.first().map_or(proto, |e| e.number()));
        v.push(64);
        v.extend_from_slice(&src.octets());
        v.extend_from_slice(&dst.octets());
        v.extend_from_slice(&body);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;
    use crate::door::tcp_flag::{ACK, SYN};

    const A4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    const B4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
    const A6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
    const B6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);

    #[test]
    fn ipv4_tcp() {
        let bytes = ipv4(A4, B4, TCP, &tcp(40000, 7000, SYN, b"hi"));
        let p = parse(&bytes).unwrap();
        assert_eq!(
            p,
            Packet {
                src: A4.into(),
                dst: B4.into(),
                proto: Proto::Tcp,
                src_port: 40000,
                dst_port: 7000,
                tcp_flags: SYN,
                payload: b"hi",
            }
        );
    }

    #[test]
    fn ipv4_udp_payload_bounded_by_udp_and_ip_lengths() {
        let mut bytes = ipv4(A4, B4, UDP, &udp(5353, 8000, b"knock"));
        // Ethernet-style trailing padding beyond total_length must not leak in.
        bytes.extend_from_slice(&[0xee; 6]);
        let p = parse(&bytes).unwrap();
        assert_eq!(p.proto, Proto::Udp);
        assert_eq!((p.src_port, p.dst_port, p.tcp_flags), (5353, 8000, 0));
        assert_eq!(p.payload, b"knock");
    }

    #[test]
    fn ipv4_snaplen_cut_payload_is_accepted() {
        let bytes = ipv4(A4, B4, UDP, &udp(1, 2, &[7; 100]));
        let p = parse(&bytes[..20 + 8 + 10]).unwrap();
        assert_eq!(p.payload, &[7; 10]);
    }

    #[test]
    fn ipv4_with_options() {
        let mut bytes = ipv4(A4, B4, TCP, &tcp(1, 22, SYN | ACK, &[]));
        // IHL 6: insert one 4-byte option word (NOPs) and fix the lengths.
        bytes[0] = 0x46;
        bytes.splice(20..20, [1, 1, 1, 1]);
        let total = bytes.len() as u16;
        bytes[2..4].copy_from_slice(&total.to_be_bytes());
        let p = parse(&bytes).unwrap();
        assert_eq!((p.dst_port, p.tcp_flags), (22, SYN | ACK));
    }

    #[test]
    fn ipv6_tcp_and_udp() {
        let bytes = ipv6(A6, B6, &[], TCP, &tcp(3, 4, SYN, &[]));
        let p = parse(&bytes).unwrap();
        assert_eq!((p.src, p.dst), (A6.into(), B6.into()));
        assert_eq!((p.proto, p.dst_port, p.tcp_flags), (Proto::Tcp, 4, SYN));
        let bytes = ipv6(A6, B6, &[], UDP, &udp(3, 9, b"x"));
        let p = parse(&bytes).unwrap();
        assert_eq!((p.proto, p.dst_port, p.payload), (Proto::Udp, 9, &b"x"[..]));
    }

    fn v6_with_all_extensions() -> Vec<u8> {
        ipv6(
            A6,
            B6,
            &[
                Ext::HopByHop(0),
                Ext::DestOpts(2),
                Ext::Routing(1),
                Ext::Fragment {
                    offset: 0,
                    more: true,
                },
                Ext::Auth(4),
                Ext::DestOpts(0),
            ],
            TCP,
            &tcp(5000, 7001, SYN, b"abc"),
        )
    }

    #[test]
    fn ipv6_walks_extension_headers() {
        let bytes = v6_with_all_extensions();
        let p = parse(&bytes).unwrap();
        assert_eq!((p.src_port, p.dst_port, p.tcp_flags), (5000, 7001, SYN));
        assert_eq!(p.payload, b"abc");
    }

    #[test]
    fn every_truncation_errors_without_panicking() {
        let packets = [
            ipv4(A4, B4, TCP, &tcp(1, 2, SYN, &[])),
            ipv4(A4, B4, UDP, &udp(1, 2, &[])),
            ipv6(A6, B6, &[], UDP, &udp(1, 2, &[])),
            v6_with_all_extensions(),
        ];
        for full in &packets {
            // Without payload every byte is needed; with it, headers are.
            let needed = full.len() - parse(full).unwrap().payload.len();
            for cut in 0..needed {
                let err = parse(&full[..cut]).unwrap_err();
                if cut > 0 {
                    assert!(
                        matches!(err, ParseError::Truncated { .. }),
                        "cut at {cut}: {err:?}"
                    );
                }
            }
            assert!(parse(&full[..needed]).is_ok());
        }
        assert!(matches!(
            parse(&[]),
            Err(ParseError::Truncated {
                what: "IP version",
                ..
            })
        ));
    }

    #[test]
    fn declared_lengths_shorter_than_the_buffer_are_honoured() {
        // total_length claims only the IP header: the TCP header is "missing".
        let mut bytes = ipv4(A4, B4, TCP, &tcp(1, 2, SYN, &[]));
        bytes[2..4].copy_from_slice(&20u16.to_be_bytes());
        assert!(matches!(
            parse(&bytes),
            Err(ParseError::Truncated {
                what: "TCP header",
                ..
            })
        ));
        // Same for IPv6 payload_length.
        let mut bytes = ipv6(A6, B6, &[], UDP, &udp(1, 2, &[]));
        bytes[4..6].copy_from_slice(&4u16.to_be_bytes());
        assert!(matches!(parse(&bytes), Err(ParseError::Truncated { .. })));
    }

    #[test]
    fn bad_versions_and_lengths() {
        let good = ipv4(A4, B4, TCP, &tcp(1, 2, SYN, &[]));
        let mut b = good.clone();
        b[0] = 0x55;
        assert_eq!(parse(&b), Err(ParseError::BadVersion(5)));
        for ihl in 0..5u8 {
            b = good.clone();
            b[0] = 0x40 | ihl;
            assert!(
                matches!(parse(&b), Err(ParseError::BadHeaderLength { .. })),
                "IHL {ihl}"
            );
        }
        // IHL 15 (60 bytes) but only 40 bytes in the buffer.
        b = good.clone();
        b[0] = 0x4f;
        assert!(matches!(parse(&b), Err(ParseError::Truncated { .. })));
        // total_length smaller than the header.
        b = good.clone();
        b[2..4].copy_from_slice(&19u16.to_be_bytes());
        assert!(matches!(
            parse(&b),
            Err(ParseError::BadHeaderLength { value: 19, .. })
        ));
        // TCP data offset below 5 words, or beyond the buffer.
        b = good.clone();
        b[20 + 12] = 4 << 4;
        assert!(matches!(
            parse(&b),
            Err(ParseError::BadHeaderLength { value: 16, .. })
        ));
        b[20 + 12] = 6 << 4;
        assert!(matches!(parse(&b), Err(ParseError::Truncated { .. })));
        // UDP length below its own header.
        let mut u = ipv4(A4, B4, UDP, &udp(1, 2, b"abc"));
        u[20 + 4..20 + 6].copy_from_slice(&7u16.to_be_bytes());
        assert!(matches!(
            parse(&u),
            Err(ParseError::BadHeaderLength { value: 7, .. })
        ));
    }

    #[test]
    fn fragments() {
        let good = ipv4(A4, B4, UDP, &udp(1, 2, &[]));
        let mut b = good.clone();
        b[6..8].copy_from_slice(&0x2000u16.to_be_bytes()); // MF, offset 0: first fragment
        assert!(parse(&b).is_ok());
        b[6..8].copy_from_slice(&0x0001u16.to_be_bytes()); // offset 8 bytes
        assert_eq!(parse(&b), Err(ParseError::Fragment));
        b[6..8].copy_from_slice(&0x5fffu16.to_be_bytes()); // DF+max offset
        assert_eq!(parse(&b), Err(ParseError::Fragment));

        let frag = |offset| {
            ipv6(
                A6,
                B6,
                &[Ext::Fragment {
                    offset,
                    more: false,
                }],
                UDP,
                &udp(1, 2, &[]),
            )
        };
        assert!(parse(&frag(0)).is_ok());
        assert_eq!(parse(&frag(1)), Err(ParseError::Fragment));
    }

    #[test]
    fn unsupported_protocols() {
        assert_eq!(
            parse(&ipv4(A4, B4, 1, &[8, 0, 0, 0, 0, 0, 0, 0])),
            Err(ParseError::UnsupportedProtocol(1))
        );
        for next in [50u8, 59, 58, 132] {
            assert_eq!(
                parse(&ipv6(A6, B6, &[], next, &[0; 16])),
                Err(ParseError::UnsupportedProtocol(next))
            );
        }
        // Behind an extension header too.
        assert_eq!(
            parse(&ipv6(A6, B6, &[Ext::HopByHop(0)], 50, &[0; 16])),
            Err(ParseError::UnsupportedProtocol(50))
        );
    }

    #[test]
    fn extension_header_chain_is_bounded() {
        let l4 = udp(1, 2, &[]);
        let at_limit = vec![Ext::DestOpts(0); MAX_EXTENSION_HEADERS];
        assert!(parse(&ipv6(A6, B6, &at_limit, UDP, &l4)).is_ok());
        let over = vec![Ext::DestOpts(0); MAX_EXTENSION_HEADERS + 1];
        assert_eq!(
            parse(&ipv6(A6, B6, &over, UDP, &l4)),
            Err(ParseError::TooManyExtensionHeaders)
        );
        // A long chain in a huge buffer is still cut off early.
        let many = vec![Ext::HopByHop(0); 1000];
        assert_eq!(
            parse(&ipv6(A6, B6, &many, UDP, &l4)),
            Err(ParseError::TooManyExtensionHeaders)
        );
    }

    #[test]
    fn extension_header_length_beyond_buffer() {
        let mut b = ipv6(A6, B6, &[Ext::HopByHop(0)], UDP, &udp(1, 2, &[]));
        b[41] = 200; // hdr ext len: (200+1)*8 bytes
        assert!(matches!(
            parse(&b),
            Err(ParseError::Truncated {
                what: "IPv6 extension header",
                ..
            })
        ));
    }

    #[test]
    fn errors_have_readable_messages() {
        let e = parse(&[0x45, 0]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "truncated packet: the IPv4 header needs 20 bytes but only 2 are left"
        );
        assert_eq!(
            ParseError::Fragment.to_string(),
            "non-first fragment: no transport header to read"
        );
    }
}
