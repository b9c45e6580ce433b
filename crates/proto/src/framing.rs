//! MTProto transport framings inside the obfuscated2 stream (docs/protocol.md §3): abridged,
//! intermediate and padded intermediate.
//!
//! ```text
//! abridged      [n|qa] payload              n = len/4 < 0x7f
//!               [0x7f|qa] [n: 3 bytes LE] payload
//! intermediate  [u32le len | qa<<31] payload
//! padded        [u32le total | qa<<31] payload padding(0..15)   payload = body[..total & !3]
//! ```
//! Direct mode never parses framing (bytes are re-encrypted as a stream); the codec serves the
//! middle-proxy path, the test clients and the benchmark, and is fuzzed like every parser of
//! client bytes.

use crate::obfs2::ProtoTag;

/// The largest packet we accept (official `MAX_POST_SIZE`, docs/protocol.md §3.1).
pub const MAX_PACKET: usize = 262144 * 4 - 4096;

/// One decoded client packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub payload: Vec<u8>,
    /// The client asked for a quick ACK.
    pub quick_ack: bool,
}

/// Why a byte stream is not valid framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    #[error("packet length {0} exceeds the maximum")]
    TooLong(usize),
    #[error("packet length {0} is not a multiple of 4")]
    Unaligned(usize),
    #[error("overlong abridged header for a short packet")]
    OverlongHeader,
}

/// Decode one packet from the front of `buf`. `Ok(None)` means more bytes are needed;
/// `Ok(Some((packet, consumed)))` a whole packet.
pub fn decode(tag: ProtoTag, buf: &[u8]) -> Result<Option<(Packet, usize)>, FramingError> {
    let (header, len, quick_ack, payload_len) = match tag {
        ProtoTag::Abridged => {
            let Some(&first) = buf.first() else { return Ok(None) };
            let qa = first & 0x80 != 0;
            let n = first & 0x7f;
            if n < 0x7f {
                (1, n as usize * 4, qa, n as usize * 4)
            } else {
                if buf.len() < 4 {
                    return Ok(None);
                }
                let words = u32::from_le_bytes([buf[1], buf[2], buf[3], 0]) as usize;
                if words < 0x7f {
                    return Err(FramingError::OverlongHeader);
                }
                (4, words * 4, qa, words * 4)
            }
        }
        ProtoTag::Intermediate | ProtoTag::PaddedIntermediate => {
            if buf.len() < 4 {
                return Ok(None);
            }
            let raw = u32::from_le_bytes(buf[..4].try_into().unwrap());
            let len = (raw & 0x7fff_ffff) as usize;
            let payload_len = if tag == ProtoTag::Intermediate {
                if !len.is_multiple_of(4) {
                    return Err(FramingError::Unaligned(len));
                }
                len
            } else {
                len & !3
            };
            (4, len, raw & 0x8000_0000 != 0, payload_len)
        }
    };
    if len > MAX_PACKET {
        return Err(FramingError::TooLong(len));
    }
    if buf.len() < header + len {
        return Ok(None);
    }
    let payload = buf[header..header + payload_len].to_vec();
    Ok(Some((Packet { payload, quick_ack }, header + len)))
}

/// Encode a server->client packet. `padding` is appended only for padded intermediate (callers
/// pass 0..15 random bytes there, and nothing for the other framings).
pub fn encode(tag: ProtoTag, payload: &[u8], padding: &[u8], out: &mut Vec<u8>) {
    debug_assert!(payload.len().is_multiple_of(4));
    match tag {
        ProtoTag::Abridged => {
            let words = payload.len() / 4;
            if words < 0x7f {
                out.push(words as u8);
            } else {
                out.push(0x7f);
                out.extend_from_slice(&(words as u32).to_le_bytes()[..3]);
            }
            out.extend_from_slice(payload);
        }
        ProtoTag::Intermediate => {
            out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            out.extend_from_slice(payload);
        }
        ProtoTag::PaddedIntermediate => {
            out.extend_from_slice(&((payload.len() + padding.len()) as u32).to_le_bytes());
            out.extend_from_slice(payload);
            out.extend_from_slice(padding);
        }
    }
}

/// Encode a client->server packet (with the quick-ACK request bit), as a client does.
pub fn encode_client(tag: ProtoTag, payload: &[u8], padding: &[u8], quick_ack: bool, out: &mut Vec<u8>) {
    let start = out.len();
    encode(tag, payload, padding, out);
    if quick_ack {
        match tag {
            ProtoTag::Abridged => out[start] |= 0x80,
            _ => out[start + 3] |= 0x80,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_examples() {
        // docs/protocol.md §8.6.
        let p40: Vec<u8> = (0..40).collect();
        let p1000: Vec<u8> = (0..1000).map(|i| i as u8).collect();
        let mut out = Vec::new();
        encode_client(ProtoTag::Abridged, &p40, &[], false, &mut out);
        assert_eq!(out[0], 0x0a);
        out.clear();
        encode_client(ProtoTag::Abridged, &p40, &[], true, &mut out);
        assert_eq!(out[0], 0x8a);
        out.clear();
        encode_client(ProtoTag::Abridged, &p1000, &[], true, &mut out);
        assert_eq!(out[..4], [0xff, 0xfa, 0x00, 0x00]);
        out.clear();
        encode_client(ProtoTag::Intermediate, &p40, &[], true, &mut out);
        assert_eq!(out[..4], [0x28, 0x00, 0x00, 0x80]);
        out.clear();
        encode(ProtoTag::PaddedIntermediate, &p40, &[0xaa, 0xbb, 0xcc], &mut out);
        assert_eq!(out[..4], [0x2b, 0, 0, 0]);
        let (pkt, used) = decode(ProtoTag::PaddedIntermediate, &out).unwrap().unwrap();
        assert_eq!((pkt.payload, used), (p40, 47));
    }

    #[test]
    fn errors_and_incomplete() {
        assert_eq!(decode(ProtoTag::Abridged, &[]), Ok(None));
        assert_eq!(decode(ProtoTag::Abridged, &[0x7f, 0x01, 0x00, 0x00]), Err(FramingError::OverlongHeader));
        assert_eq!(decode(ProtoTag::Intermediate, &[0x05, 0, 0, 0]), Err(FramingError::Unaligned(5)));
        assert_eq!(decode(ProtoTag::Intermediate, &[0xfc, 0xff, 0xff, 0x7f]), Err(FramingError::TooLong(0x7fff_fffc)));
        assert_eq!(decode(ProtoTag::Intermediate, &[0x08, 0, 0, 0, 1, 2]), Ok(None));
    }
}
