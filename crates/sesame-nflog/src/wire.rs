//! Hand-written encoding and decoding of the few nfnetlink_log messages we use.
//!
//! Constant values are taken from the kernel UAPI headers
//! `include/uapi/linux/netlink.h`, `include/uapi/linux/netfilter/nfnetlink.h`
//! and `include/uapi/linux/netfilter/nfnetlink_log.h`.
//!
//! Everything here is pure (no I/O) so it can be unit-tested with synthetic
//! datagrams. The decoder never panics: every length is checked before use and
//! malformed messages are reported to the caller instead.

// --- include/uapi/linux/netlink.h -------------------------------------------

/// `sizeof(struct nlmsghdr)`.
pub(crate) const NLMSG_HDRLEN: usize = 16;
/// `NLMSG_NOOP`: nothing, ignore.
pub(crate) const NLMSG_NOOP: u16 = 0x1;
/// `NLMSG_ERROR`: error or (with error 0) acknowledgement.
pub(crate) const NLMSG_ERROR: u16 = 0x2;
/// `NLMSG_DONE`: end of a multipart message (sent by NFLOG when qlen > 1).
pub(crate) const NLMSG_DONE: u16 = 0x3;
/// `NLMSG_OVERRUN`: data lost.
pub(crate) const NLMSG_OVERRUN: u16 = 0x4;
/// `NLM_F_REQUEST`.
pub(crate) const NLM_F_REQUEST: u16 = 0x01;
/// `NLM_F_ACK`.
pub(crate) const NLM_F_ACK: u16 = 0x04;
/// `sizeof(struct nlattr)`.
pub(crate) const NLA_HDRLEN: usize = 4;
/// `NLA_F_NESTED`.
pub(crate) const NLA_F_NESTED: u16 = 1 << 15;
/// `NLA_F_NET_BYTEORDER`.
pub(crate) const NLA_F_NET_BYTEORDER: u16 = 1 << 14;
/// `NLA_TYPE_MASK`.
pub(crate) const NLA_TYPE_MASK: u16 = !(NLA_F_NESTED | NLA_F_NET_BYTEORDER);

// --- include/uapi/linux/netfilter/nfnetlink.h -------------------------------

/// `sizeof(struct nfgenmsg)`.
pub(crate) const NFGENMSG_LEN: usize = 4;
/// `NFNETLINK_V0`.
pub(crate) const NFNETLINK_V0: u8 = 0;
/// `NFNL_SUBSYS_ULOG`.
pub(crate) const NFNL_SUBSYS_ULOG: u16 = 4;

// --- include/uapi/linux/netfilter/nfnetlink_log.h ---------------------------

/// `NFULNL_MSG_PACKET`: packet from kernel to userspace.
pub(crate) const NFULNL_MSG_PACKET: u16 = 0;
/// `NFULNL_MSG_CONFIG`: configure a group.
pub(crate) const NFULNL_MSG_CONFIG: u16 = 1;

/// `NFULA_PACKET_HDR`: `struct nfulnl_msg_packet_hdr`.
pub(crate) const NFULA_PACKET_HDR: u16 = 1;
/// `NFULA_IFINDEX_INDEV`: `__be32` ifindex.
pub(crate) const NFULA_IFINDEX_INDEV: u16 = 4;
/// `NFULA_IFINDEX_OUTDEV`: `__be32` ifindex.
pub(crate) const NFULA_IFINDEX_OUTDEV: u16 = 5;
/// `NFULA_PAYLOAD`: the packet, starting at the network header.
pub(crate) const NFULA_PAYLOAD: u16 = 9;
/// `NFULA_PREFIX`: NUL-terminated log prefix.
pub(crate) const NFULA_PREFIX: u16 = 10;

/// `NFULNL_CFG_CMD_BIND`.
pub(crate) const NFULNL_CFG_CMD_BIND: u8 = 1;

/// `NFULA_CFG_CMD`: `struct nfulnl_msg_config_cmd` (one `u8`).
pub(crate) const NFULA_CFG_CMD: u16 = 1;
/// `NFULA_CFG_MODE`: `struct nfulnl_msg_config_mode` (`__be32` range, `u8` mode, pad).
pub(crate) const NFULA_CFG_MODE: u16 = 2;
/// `NFULA_CFG_NLBUFSIZ`: `__be32`.
pub(crate) const NFULA_CFG_NLBUFSIZ: u16 = 3;
/// `NFULA_CFG_TIMEOUT`: `__be32`, centiseconds.
pub(crate) const NFULA_CFG_TIMEOUT: u16 = 4;
/// `NFULA_CFG_QTHRESH`: `__be32`.
pub(crate) const NFULA_CFG_QTHRESH: u16 = 5;

/// `NFULNL_COPY_PACKET`.
pub(crate) const NFULNL_COPY_PACKET: u8 = 0x02;

/// `AF_UNSPEC`.
pub(crate) const AF_UNSPEC: u8 = 0;

/// Netlink message type of an NFLOG packet message.
pub(crate) const MSG_TYPE_PACKET: u16 = (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET;
/// Netlink message type of an NFLOG config message.
pub(crate) const MSG_TYPE_CONFIG: u16 = (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_CONFIG;

/// Round `len` up to the 4-byte netlink alignment.
pub(crate) const fn align4(len: usize) -> usize {
    (len + 3) & !3
}

/// One attribute of an outgoing message.
pub(crate) enum CfgAttr {
    /// `NFULA_CFG_CMD`.
    Cmd(u8),
    /// `NFULA_CFG_MODE`.
    Mode { copy_range: u32, copy_mode: u8 },
    /// `NFULA_CFG_QTHRESH`.
    Qthresh(u32),
    /// `NFULA_CFG_TIMEOUT`.
    Timeout(u32),
    /// `NFULA_CFG_NLBUFSIZ`.
    NlBufSiz(u32),
}

fn put_attr(out: &mut Vec<u8>, kind: u16, data: &[u8]) {
    let len = NLA_HDRLEN + data.len();
    // Attribute payloads we build are at most 6 bytes; the cast cannot truncate.
    out.extend_from_slice(&(len as u16).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(data);
    out.resize(align4(out.len()), 0);
}

/// Encode an `NFULNL_MSG_CONFIG` request for `group` (with `NLM_F_ACK`).
pub(crate) fn encode_config(seq: u32, group: u16, attrs: &[CfgAttr]) -> Vec<u8> {
    encode_config_flags(seq, group, attrs, true)
}

/// Encode an `NFULNL_MSG_CONFIG` request; without `ack` the kernel answers
/// only if the request fails.
pub(crate) fn encode_config_flags(seq: u32, group: u16, attrs: &[CfgAttr], ack: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    let flags = if ack {
        NLM_F_REQUEST | NLM_F_ACK
    } else {
        NLM_F_REQUEST
    };
    // nlmsghdr, length patched below.
    out.extend_from_slice(&0u32.to_ne_bytes());
    out.extend_from_slice(&MSG_TYPE_CONFIG.to_ne_bytes());
    out.extend_from_slice(&flags.to_ne_bytes());
    out.extend_from_slice(&seq.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes()); // port id: filled in by the kernel
                                                // nfgenmsg: family, version, res_id (the group, network byte order).
    out.push(AF_UNSPEC);
    out.push(NFNETLINK_V0);
    out.extend_from_slice(&group.to_be_bytes());
    for attr in attrs {
        match *attr {
            CfgAttr::Cmd(cmd) => put_attr(&mut out, NFULA_CFG_CMD, &[cmd]),
            CfgAttr::Mode {
                copy_range,
                copy_mode,
            } => {
                let r = copy_range.to_be_bytes();
                put_attr(
                    &mut out,
                    NFULA_CFG_MODE,
                    &[r[0], r[1], r[2], r[3], copy_mode, 0],
                );
            }
            CfgAttr::Qthresh(v) => put_attr(&mut out, NFULA_CFG_QTHRESH, &v.to_be_bytes()),
            CfgAttr::Timeout(v) => put_attr(&mut out, NFULA_CFG_TIMEOUT, &v.to_be_bytes()),
            CfgAttr::NlBufSiz(v) => put_attr(&mut out, NFULA_CFG_NLBUFSIZ, &v.to_be_bytes()),
        }
    }
    let len = out.len() as u32;
    out[..4].copy_from_slice(&len.to_ne_bytes());
    out
}

/// One packet logged by the kernel. Borrows from the socket's receive buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoggedPacket<'a> {
    /// Protocol family from `nfgenmsg`: 2 = `AF_INET`, 10 = `AF_INET6`.
    pub family: u8,
    /// Link-layer protocol (ethertype, host byte order), e.g. 0x0800 or 0x86dd.
    pub hw_protocol: u16,
    /// Netfilter hook (`NF_INET_LOCAL_IN` = 1, `NF_INET_PRE_ROUTING` = 0, ...).
    pub hook: u8,
    /// Index of the input interface, if any.
    pub indev: Option<u32>,
    /// Index of the output interface, if any.
    pub outdev: Option<u32>,
    /// The rule's log prefix without the trailing NUL, if it has one.
    pub prefix: Option<&'a [u8]>,
    /// The packet, starting at the IP header, cut to the copy range. Empty if
    /// the kernel sent no payload.
    pub payload: &'a [u8],
}

/// A decoded `NFULNL_MSG_PACKET` message, borrowing from the datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RawPacket<'a> {
    /// The NFLOG group it was logged to.
    pub group: u16,
    /// The packet.
    pub packet: LoggedPacket<'a>,
}

/// One netlink message found in a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Message<'a> {
    /// A well-formed NFLOG packet.
    Packet(RawPacket<'a>),
    /// `NLMSG_ERROR`: `errno` is 0 for an acknowledgement, else a positive errno.
    Ack { seq: u32, errno: i32 },
    /// `NLMSG_OVERRUN` from the kernel.
    Overrun,
    /// A message that is valid netlink but not interesting (DONE, NOOP, other types).
    Ignored,
    /// A message whose contents could not be decoded; it is skipped.
    Malformed,
}

fn read_u16_ne(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn read_u32_ne(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn read_be32_exact(b: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(b.try_into().ok()?))
}

/// Iterate over the netlink messages of one datagram.
///
/// A message whose header is inconsistent with the datagram (length too small
/// or running past the end) yields one [`Message::Malformed`] and ends the
/// iteration, because the next message boundary cannot be known.
pub(crate) fn messages(datagram: &[u8]) -> Messages<'_> {
    Messages { rest: datagram }
}

/// Iterator returned by [`messages`].
pub(crate) struct Messages<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Messages<'a> {
    type Item = Message<'a>;

    fn next(&mut self) -> Option<Message<'a>> {
        if self.rest.is_empty() {
            return None;
        }
        let buf = self.rest;
        let (Some(len), Some(kind)) = (read_u32_ne(buf, 0), read_u16_ne(buf, 4)) else {
            self.rest = &[];
            return Some(Message::Malformed);
        };
        let len = len as usize;
        if len < NLMSG_HDRLEN || len > buf.len() {
            self.rest = &[];
            return Some(Message::Malformed);
        }
        // The last message of a datagram may lack trailing padding.
        let next = align4(len).min(buf.len());
        self.rest = &buf[next..];
        let body = &buf[NLMSG_HDRLEN..len];
        Some(match kind {
            NLMSG_NOOP | NLMSG_DONE => Message::Ignored,
            NLMSG_OVERRUN => Message::Overrun,
            NLMSG_ERROR => decode_error(body),
            MSG_TYPE_PACKET => decode_packet(body).map_or(Message::Malformed, Message::Packet),
            _ => Message::Ignored,
        })
    }
}

/// Decode the body of an `NLMSG_ERROR` (`struct nlmsgerr`).
fn decode_error(body: &[u8]) -> Message<'_> {
    // int error; struct nlmsghdr msg; (seq is at offset 8 of the inner header)
    let (Some(err), Some(seq)) = (read_u32_ne(body, 0), read_u32_ne(body, 4 + 8)) else {
        return Message::Malformed;
    };
    let err = err as i32;
    Message::Ack {
        seq,
        errno: err.checked_neg().unwrap_or(i32::MAX),
    }
}

/// Decode the body (after `nlmsghdr`) of an `NFULNL_MSG_PACKET`.
fn decode_packet(body: &[u8]) -> Option<RawPacket<'_>> {
    let nfgen = body.get(..NFGENMSG_LEN)?;
    let family = nfgen[0];
    let group = u16::from_be_bytes([nfgen[2], nfgen[3]]);
    let mut attrs = &body[NFGENMSG_LEN..];

    let mut hdr: Option<(u16, u8)> = None;
    let mut pkt = LoggedPacket {
        family,
        hw_protocol: 0,
        hook: 0,
        indev: None,
        outdev: None,
        prefix: None,
        payload: &[],
    };
    while !attrs.is_empty() {
        let len = usize::from(read_u16_ne(attrs, 0)?);
        let kind = read_u16_ne(attrs, 2)? & NLA_TYPE_MASK;
        if len < NLA_HDRLEN || len > attrs.len() {
            return None;
        }
        let data = &attrs[NLA_HDRLEN..len];
        attrs = &attrs[align4(len).min(attrs.len())..];
        match kind {
            NFULA_PACKET_HDR => {
                // struct nfulnl_msg_packet_hdr { __be16 hw_protocol; u8 hook; u8 _pad; }
                let h = data.get(..3)?;
                hdr = Some((u16::from_be_bytes([h[0], h[1]]), h[2]));
            }
            NFULA_IFINDEX_INDEV => pkt.indev = Some(read_be32_exact(data)?),
            NFULA_IFINDEX_OUTDEV => pkt.outdev = Some(read_be32_exact(data)?),
            NFULA_PAYLOAD => pkt.payload = data,
            NFULA_PREFIX => {
                // The kernel sends strlen(prefix) + 1 bytes; strip the NUL.
                let end = data.iter().position(|&b| b == 0).unwrap_or(data.len());
                pkt.prefix = Some(&data[..end]);
            }
            _ => {}
        }
    }
    let (hw_protocol, hook) = hdr?;
    pkt.hw_protocol = hw_protocol;
    pkt.hook = hook;
    Some(RawPacket { group, packet: pkt })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builder for synthetic kernel datagrams.
    fn nlmsg(kind: u16, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&((NLMSG_HDRLEN + body.len()) as u32).to_ne_bytes());
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(&0u16.to_ne_bytes());
        out.extend_from_slice(&0u32.to_ne_bytes());
        out.extend_from_slice(&0u32.to_ne_bytes());
        out.extend_from_slice(body);
        out.resize(align4(out.len()), 0);
        out
    }

    fn packet_body(family: u8, group: u16, attrs: &[(u16, &[u8])]) -> Vec<u8> {
        let mut body = vec![family, 0];
        body.extend_from_slice(&group.to_be_bytes());
        for (kind, data) in attrs {
            put_attr(&mut body, *kind, data);
        }
        body
    }

    const IPV4: &[u8] = &[0x45, 0, 0, 28, 0, 0, 0x40, 0, 64, 17, 0, 0, 127, 0, 0, 1];

    fn sample_packet() -> Vec<u8> {
        nlmsg(
            MSG_TYPE_PACKET,
            &packet_body(
                2,
                2700,
                &[
                    (NFULA_PACKET_HDR, &[0x08, 0x00, 1, 0]),
                    (NFULA_PREFIX, b"knock\0"),
                    (
                        NFULA_IFINDEX_INDEV | NLA_F_NET_BYTEORDER,
                        &1u32.to_be_bytes(),
                    ),
                    (NFULA_PAYLOAD, IPV4),
                ],
            ),
        )
    }

    #[test]
    fn config_message_layout() {
        let msg = encode_config(7, 2700, &[CfgAttr::Cmd(NFULNL_CFG_CMD_BIND)]);
        // 16 nlmsghdr + 4 nfgenmsg + 8 (attr 5 bytes padded).
        assert_eq!(msg.len(), 28);
        assert_eq!(u32::from_ne_bytes(msg[0..4].try_into().unwrap()), 28);
        assert_eq!(u16::from_ne_bytes(msg[4..6].try_into().unwrap()), 0x0401);
        assert_eq!(u16::from_ne_bytes(msg[6..8].try_into().unwrap()), 0x0005);
        assert_eq!(u32::from_ne_bytes(msg[8..12].try_into().unwrap()), 7);
        assert_eq!(&msg[16..20], &[0, 0, 0x0a, 0x8c]); // 2700 = 0x0a8c, big endian
        assert_eq!(u16::from_ne_bytes(msg[20..22].try_into().unwrap()), 5);
        assert_eq!(u16::from_ne_bytes(msg[22..24].try_into().unwrap()), 1);
        assert_eq!(&msg[24..28], &[1, 0, 0, 0]);

        let msg = encode_config(
            8,
            1,
            &[
                CfgAttr::Mode {
                    copy_range: 512,
                    copy_mode: NFULNL_COPY_PACKET,
                },
                CfgAttr::Qthresh(1),
                CfgAttr::Timeout(1),
            ],
        );
        // 20 + 12 (mode: 4 + 6 padded) + 8 + 8.
        assert_eq!(msg.len(), 48);
        assert_eq!(u16::from_ne_bytes(msg[20..22].try_into().unwrap()), 10);
        assert_eq!(&msg[24..30], &[0, 0, 2, 0, NFULNL_COPY_PACKET, 0]);
        assert_eq!(u16::from_ne_bytes(msg[34..36].try_into().unwrap()), 5);
        assert_eq!(&msg[36..40], &[0, 0, 0, 1]);
    }

    #[test]
    fn decodes_packet() {
        let dgram = sample_packet();
        let msgs: Vec<_> = messages(&dgram).collect();
        assert_eq!(msgs.len(), 1);
        let Message::Packet(p) = msgs[0] else {
            panic!("not a packet: {msgs:?}")
        };
        assert_eq!(p.packet.family, 2);
        assert_eq!(p.group, 2700);
        assert_eq!(p.packet.hw_protocol, 0x0800);
        assert_eq!(p.packet.hook, 1);
        assert_eq!(p.packet.indev, Some(1));
        assert_eq!(p.packet.outdev, None);
        assert_eq!(p.packet.prefix, Some(&b"knock"[..]));
        assert_eq!(p.packet.payload, IPV4);
    }

    #[test]
    fn multipart_with_done_and_ack() {
        let mut dgram = sample_packet();
        dgram.extend(sample_packet());
        dgram.extend(nlmsg(NLMSG_DONE, &[0, 0, 0, 0]));
        let mut err = (-16i32).to_ne_bytes().to_vec();
        err.extend_from_slice(&[0; 8]);
        err.extend_from_slice(&42u32.to_ne_bytes());
        err.extend_from_slice(&[0; 4]);
        dgram.extend(nlmsg(NLMSG_ERROR, &err));
        let msgs: Vec<_> = messages(&dgram).collect();
        assert_eq!(msgs.len(), 4);
        assert!(matches!(msgs[0], Message::Packet(_)));
        assert!(matches!(msgs[1], Message::Packet(_)));
        assert_eq!(msgs[2], Message::Ignored);
        assert_eq!(msgs[3], Message::Ack { seq: 42, errno: 16 });
    }

    #[test]
    fn missing_packet_hdr_is_malformed() {
        let dgram = nlmsg(
            MSG_TYPE_PACKET,
            &packet_body(2, 1, &[(NFULA_PAYLOAD, IPV4)]),
        );
        assert_eq!(messages(&dgram).collect::<Vec<_>>(), [Message::Malformed]);
    }

    #[test]
    fn bad_attribute_skips_only_that_message() {
        let mut bad = packet_body(2, 1, &[(NFULA_PACKET_HDR, &[0x08, 0, 1, 0])]);
        // Attribute claiming 200 bytes.
        bad.extend_from_slice(&200u16.to_ne_bytes());
        bad.extend_from_slice(&NFULA_PAYLOAD.to_ne_bytes());
        let mut dgram = nlmsg(MSG_TYPE_PACKET, &bad);
        dgram.extend(sample_packet());
        let msgs: Vec<_> = messages(&dgram).collect();
        assert_eq!(msgs.len(), 2);
        assert_eq!(msgs[0], Message::Malformed);
        assert!(matches!(msgs[1], Message::Packet(_)));
    }

    #[test]
    fn wrong_ifindex_size_is_malformed() {
        let dgram = nlmsg(
            MSG_TYPE_PACKET,
            &packet_body(
                2,
                1,
                &[
                    (NFULA_PACKET_HDR, &[0x08, 0, 1, 0]),
                    (NFULA_IFINDEX_INDEV, &[1, 2]),
                ],
            ),
        );
        assert_eq!(messages(&dgram).collect::<Vec<_>>(), [Message::Malformed]);
    }

    #[test]
    fn every_truncation_and_corruption_is_handled_without_panic() {
        let mut dgram = sample_packet();
        dgram.extend(sample_packet());
        for cut in 0..dgram.len() {
            let n = messages(&dgram[..cut]).count();
            assert!(n <= 2);
        }
        for i in 0..dgram.len() {
            for v in [0u8, 1, 3, 0x7f, 0x80, 0xff] {
                let mut d = dgram.clone();
                d[i] = v;
                assert!(messages(&d).count() <= 3);
            }
        }
    }

    #[test]
    fn bogus_nlmsg_len_stops_iteration() {
        let mut dgram = sample_packet();
        dgram[0..4].copy_from_slice(&3u32.to_ne_bytes());
        dgram.extend(sample_packet());
        assert_eq!(messages(&dgram).collect::<Vec<_>>(), [Message::Malformed]);
    }
}
