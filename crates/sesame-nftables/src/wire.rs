//! Netlink wire format: `nlmsghdr` + `nfgenmsg` + `nlattr` TLVs, encoding and
//! decoding. Everything is 4-byte aligned; headers are in host byte order,
//! nf_tables attribute payloads are (almost all) big endian.

use crate::sys::*;

/// Rounds `len` up to the netlink alignment (4 bytes).
pub(crate) const fn align4(len: usize) -> usize {
    (len + 3) & !3
}

/// Appends netlink messages and attributes to a byte buffer.
#[derive(Debug, Default)]
pub(crate) struct Writer {
    buf: Vec<u8>,
    /// Set when an attribute did not fit its 16-bit length: the bytes are
    /// unusable, and the caller must refuse them rather than send them.
    overflow: bool,
}

impl Writer {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    pub(crate) fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    /// True when some attribute was longer than 64 KiB (see `overflow`).
    pub(crate) fn overflowed(&self) -> bool {
        self.overflow
    }

    fn pad(&mut self) {
        let n = align4(self.buf.len());
        self.buf.resize(n, 0);
    }

    /// Writes one netlink message: `nlmsghdr`, `nfgenmsg`, then whatever
    /// `body` writes. The length field is patched afterwards.
    pub(crate) fn message(
        &mut self,
        ty: u16,
        flags: u16,
        seq: u32,
        family: u8,
        res_id: u16,
        body: impl FnOnce(&mut Writer),
    ) {
        self.pad();
        let start = self.buf.len();
        self.buf.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_len, patched
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(&flags.to_ne_bytes());
        self.buf.extend_from_slice(&seq.to_ne_bytes());
        self.buf.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_pid: kernel
        self.buf.push(family);
        self.buf.push(NFNETLINK_V0);
        self.buf.extend_from_slice(&res_id.to_be_bytes());
        body(self);
        self.pad();
        let len = (self.buf.len() - start) as u32;
        self.buf[start..start + 4].copy_from_slice(&len.to_ne_bytes());
    }

    /// Writes an attribute with a raw payload.
    pub(crate) fn put(&mut self, ty: u16, data: &[u8]) {
        let len = NLA_HDRLEN + data.len();
        let len16 = u16::try_from(len).unwrap_or_else(|_| {
            self.overflow = true;
            u16::MAX
        });
        self.buf.extend_from_slice(&len16.to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(data);
        self.pad();
    }

    /// Writes a NUL-terminated string attribute.
    pub(crate) fn put_str(&mut self, ty: u16, s: &str) {
        let mut data = Vec::with_capacity(s.len() + 1);
        data.extend_from_slice(s.as_bytes());
        data.push(0);
        self.put(ty, &data);
    }

    pub(crate) fn put_be16(&mut self, ty: u16, v: u16) {
        self.put(ty, &v.to_be_bytes());
    }

    pub(crate) fn put_be32(&mut self, ty: u16, v: u32) {
        self.put(ty, &v.to_be_bytes());
    }

    pub(crate) fn put_be64(&mut self, ty: u16, v: u64) {
        self.put(ty, &v.to_be_bytes());
    }

    /// Writes a nested attribute (`NLA_F_NESTED` set) whose content `body`
    /// writes.
    pub(crate) fn nest(&mut self, ty: u16, body: impl FnOnce(&mut Writer)) {
        self.pad();
        let start = self.buf.len();
        self.buf.extend_from_slice(&0u16.to_ne_bytes()); // nla_len, patched
        self.buf
            .extend_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
        body(self);
        let len = self.buf.len() - start;
        let len16 = u16::try_from(len).unwrap_or_else(|_| {
            self.overflow = true;
            u16::MAX
        });
        self.buf[start..start + 2].copy_from_slice(&len16.to_ne_bytes());
        self.pad();
    }
}

/// One decoded netlink message header with its payload.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Msg<'a> {
    pub ty: u16,
    pub flags: u16,
    pub seq: u32,
    /// The sender's port id; in an nf_tables notification, the socket whose
    /// transaction made the change (0: the kernel itself).
    pub pid: u32,
    /// Everything after the 16-byte `nlmsghdr`.
    pub payload: &'a [u8],
}

/// A malformed netlink datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Malformed(pub &'static str);

fn ne_u16(b: &[u8]) -> u16 {
    u16::from_ne_bytes([b[0], b[1]])
}

fn ne_u32(b: &[u8]) -> u32 {
    u32::from_ne_bytes([b[0], b[1], b[2], b[3]])
}

/// Splits a received datagram into netlink messages.
pub(crate) fn messages(mut buf: &[u8]) -> Result<Vec<Msg<'_>>, Malformed> {
    let mut out = Vec::new();
    while buf.len() >= NLMSG_HDRLEN {
        let len = ne_u32(&buf[0..4]) as usize;
        if len < NLMSG_HDRLEN || len > buf.len() {
            return Err(Malformed("bad nlmsg_len"));
        }
        out.push(Msg {
            ty: ne_u16(&buf[4..6]),
            flags: ne_u16(&buf[6..8]),
            seq: ne_u32(&buf[8..12]),
            pid: ne_u32(&buf[12..16]),
            payload: &buf[NLMSG_HDRLEN..len],
        });
        buf = &buf[align4(len).min(buf.len())..];
    }
    Ok(out)
}

/// Iterates over the attributes in `buf` as `(type, payload)`, with the
/// `NLA_F_NESTED`/`NLA_F_NET_BYTEORDER` bits stripped from the type.
pub(crate) fn attrs(mut buf: &[u8]) -> impl Iterator<Item = Result<(u16, &[u8]), Malformed>> {
    std::iter::from_fn(move || {
        if buf.len() < NLA_HDRLEN {
            return None;
        }
        let len = ne_u16(&buf[0..2]) as usize;
        let ty = ne_u16(&buf[2..4]) & NLA_TYPE_MASK;
        if len < NLA_HDRLEN || len > buf.len() {
            buf = &[];
            return Some(Err(Malformed("bad nla_len")));
        }
        let payload = &buf[NLA_HDRLEN..len];
        buf = &buf[align4(len).min(buf.len())..];
        Some(Ok((ty, payload)))
    })
}

/// Finds the first attribute of type `ty`.
pub(crate) fn find_attr(buf: &[u8], ty: u16) -> Result<Option<&[u8]>, Malformed> {
    for a in attrs(buf) {
        let (t, p) = a?;
        if t == ty {
            return Ok(Some(p));
        }
    }
    Ok(None)
}

/// Reads a big-endian u64 attribute payload.
pub(crate) fn be64(p: &[u8]) -> Result<u64, Malformed> {
    let b: [u8; 8] = p.try_into().map_err(|_| Malformed("u64 attribute size"))?;
    Ok(u64::from_be_bytes(b))
}

/// A decoded `NLMSG_ERROR` message: `error` is 0 for an ACK, else a negative
/// errno; `ext_msg` is the kernel's extended-ack text, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ErrMsg {
    pub error: i32,
    pub ext_msg: Option<String>,
}

/// Decodes the payload of an `NLMSG_ERROR` message (`struct nlmsgerr` plus
/// optional extended-ack TLVs).
pub(crate) fn parse_error(msg: &Msg<'_>) -> Result<ErrMsg, Malformed> {
    let p = msg.payload;
    if p.len() < 4 + NLMSG_HDRLEN {
        return Err(Malformed("short nlmsgerr"));
    }
    let error = i32::from_ne_bytes([p[0], p[1], p[2], p[3]]);
    let mut ext_msg = None;
    if msg.flags & NLM_F_ACK_TLVS != 0 {
        // The echoed request is either just its header (capped, or an ACK)
        // or the whole request.
        let echoed = if msg.flags & NLM_F_CAPPED != 0 {
            NLMSG_HDRLEN
        } else {
            align4(ne_u32(&p[4..8]) as usize).max(NLMSG_HDRLEN)
        };
        if let Some(tlvs) = p.get(4 + echoed..) {
            if let Ok(Some(s)) = find_attr(tlvs, NLMSGERR_ATTR_MSG) {
                let s = s.split(|&b| b == 0).next().unwrap_or_default();
                let s = String::from_utf8_lossy(s).trim().to_string();
                if !s.is_empty() {
                    ext_msg = Some(s);
                }
            }
        }
    }
    Ok(ErrMsg { error, ext_msg })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_is_padded_and_length_excludes_padding() {
        let mut w = Writer::new();
        w.put(7, &[1, 2, 3]);
        assert_eq!(w.into_bytes(), vec![7, 0, 7, 0, 1, 2, 3, 0]);
    }

    #[test]
    fn string_attribute_is_nul_terminated() {
        let mut w = Writer::new();
        w.put_str(1, "abc");
        assert_eq!(w.into_bytes(), vec![8, 0, 1, 0, b'a', b'b', b'c', 0]);
    }

    #[test]
    fn nested_attribute_sets_flag_and_covers_children() {
        let mut w = Writer::new();
        w.nest(2, |w| w.put_be32(1, 0x0102_0304));
        let b = w.into_bytes();
        assert_eq!(b.len(), 12);
        assert_eq!(u16::from_ne_bytes([b[0], b[1]]), 12);
        assert_eq!(u16::from_ne_bytes([b[2], b[3]]), 2 | NLA_F_NESTED);
        assert_eq!(&b[8..12], &[1, 2, 3, 4]);
    }

    #[test]
    fn message_roundtrip() {
        let mut w = Writer::new();
        w.message(
            0x0a09,
            NLM_F_REQUEST | NLM_F_ACK,
            42,
            NFPROTO_INET,
            0,
            |w| {
                w.put_str(1, "t");
                w.nest(3, |w| w.put_be16(1, 5));
            },
        );
        w.message(NFNL_MSG_BATCH_END, NLM_F_REQUEST, 43, 0, 10, |_| {});
        let bytes = w.into_bytes();
        let msgs = messages(&bytes).unwrap();
        assert_eq!(msgs.len(), 2);
        assert_eq!(msgs[0].ty, 0x0a09);
        assert_eq!(msgs[0].seq, 42);
        assert_eq!(msgs[0].flags, NLM_F_REQUEST | NLM_F_ACK);
        // nfgenmsg: family, version, res_id (big endian)
        assert_eq!(&msgs[0].payload[..4], &[NFPROTO_INET, 0, 0, 0]);
        assert_eq!(&msgs[1].payload[..4], &[0, 0, 0, 10]);
        let a: Vec<_> = attrs(&msgs[0].payload[4..]).map(Result::unwrap).collect();
        assert_eq!(a.len(), 2);
        assert_eq!(a[0], (1, &b"t\0"[..]));
        assert_eq!(a[1].0, 3);
        assert_eq!(find_attr(a[1].1, 1).unwrap(), Some(&[0u8, 5][..]));
    }

    #[test]
    fn truncated_input_is_rejected() {
        let bytes = [40u8, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0];
        assert!(messages(&bytes).is_err());
        let bad_attr = [9u8, 0, 1, 0, 1, 2];
        assert!(attrs(&bad_attr).next().unwrap().is_err());
    }

    #[test]
    fn error_message_with_extack() {
        // nlmsgerr { error = -17, msg = <capped header> } + NLMSGERR_ATTR_MSG
        let mut w = Writer::new();
        w.put_str(NLMSGERR_ATTR_MSG, "set exists");
        let tlv = w.into_bytes();
        let mut p = Vec::new();
        p.extend_from_slice(&(-17i32).to_ne_bytes());
        p.extend_from_slice(&[0u8; NLMSG_HDRLEN]);
        p.extend_from_slice(&tlv);
        let m = Msg {
            ty: NLMSG_ERROR,
            flags: NLM_F_CAPPED | NLM_F_ACK_TLVS,
            seq: 1,
            pid: 0,
            payload: &p,
        };
        let e = parse_error(&m).unwrap();
        assert_eq!(e.error, -17);
        assert_eq!(e.ext_msg.as_deref(), Some("set exists"));
    }
}
