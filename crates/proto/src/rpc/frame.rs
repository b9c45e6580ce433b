//! RPC transport framing, docs/protocol.md §5.3 ("full" framing with sequence numbers and CRC32).
//!
//! ```text
//! u32le total_len = 12 + len(payload)   i32le seq_no   payload   u32le crc32(total_len||seq_no||payload)
//! ```
//! Sequence numbers count −2 (RPC_NONCE), −1 (RPC_HANDSHAKE), 0, 1, … independently per
//! direction and are checked strictly. A 4-byte word `04 00 00 00` where a length is expected is
//! padding: after encryption is on, every flush is padded with such words to a multiple of 16
//! bytes for AES-CBC ([`pad_to_block`]).

/// The padding word.
pub const PAD_WORD: [u8; 4] = [4, 0, 0, 0];
/// Header (length, seq) and trailer (CRC) bytes around a payload.
pub const OVERHEAD: usize = 12;
/// The largest frame accepted: a maximal client packet (docs/protocol.md §3.1, ~1 MiB) plus the
/// RPC_PROXY_REQ / RPC_PROXY_ANS headers, rounded up generously.
pub const MAX_FRAME: usize = 2 * 1024 * 1024;

/// Why bytes from the peer are not valid RPC framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame length {0} is invalid (must be a multiple of 4, at least 12 and at most {MAX_FRAME})")]
    BadLength(u32),
    #[error("sequence number {got} where {expected} was expected")]
    BadSeq { expected: i32, got: i32 },
    #[error("CRC32 mismatch")]
    BadCrc,
}

/// Append one frame.
pub fn encode(seq: i32, payload: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    let total = (OVERHEAD + payload.len()) as u32;
    out.extend_from_slice(&total.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
}

/// Append padding words until `out[from..]` is a whole number of AES blocks. Frames are always
/// a multiple of 4 bytes, so words fit exactly.
pub fn pad_to_block(out: &mut Vec<u8>, from: usize) {
    debug_assert!((out.len() - from).is_multiple_of(4));
    while !(out.len() - from).is_multiple_of(16) {
        out.extend_from_slice(&PAD_WORD);
    }
}

/// Reads frames of one direction and checks their sequence numbers.
#[derive(Debug, Clone)]
pub struct FrameReader {
    next_seq: i32,
}

impl Default for FrameReader {
    fn default() -> Self {
        FrameReader { next_seq: -2 }
    }
}

impl FrameReader {
    /// A reader expecting `seq` next (−2 at the start of a connection).
    pub fn new(seq: i32) -> Self {
        FrameReader { next_seq: seq }
    }

    /// The sequence number of the next frame.
    pub fn next_seq(&self) -> i32 {
        self.next_seq
    }

    /// Decode the frame at the front of `buf` (after skipping padding words).
    /// `Ok(None)`: more bytes are needed; `Ok(Some((payload, consumed)))`: one frame.
    /// Padding words alone are consumed only together with a following frame, so callers
    /// keep the buffer unchanged on `None`.
    pub fn decode(&mut self, buf: &[u8]) -> Result<Option<(Vec<u8>, usize)>, FrameError> {
        let mut at = 0;
        loop {
            if buf.len() < at + 4 {
                return Ok(None);
            }
            let word: [u8; 4] = buf[at..at + 4].try_into().unwrap();
            if word != PAD_WORD {
                break;
            }
            at += 4;
        }
        let total = u32::from_le_bytes(buf[at..at + 4].try_into().unwrap());
        let len = total as usize;
        if !len.is_multiple_of(4) || !(OVERHEAD + 4..=MAX_FRAME).contains(&len) {
            // The smallest real frame carries a 4-byte message type.
            return Err(FrameError::BadLength(total));
        }
        if buf.len() < at + len {
            return Ok(None);
        }
        let frame = &buf[at..at + len];
        let seq = i32::from_le_bytes(frame[4..8].try_into().unwrap());
        let crc = u32::from_le_bytes(frame[len - 4..].try_into().unwrap());
        if crc32fast::hash(&frame[..len - 4]) != crc {
            return Err(FrameError::BadCrc);
        }
        if seq != self.next_seq {
            return Err(FrameError::BadSeq { expected: self.next_seq, got: seq });
        }
        self.next_seq = self.next_seq.wrapping_add(1);
        Ok(Some((frame[8..len - 4].to_vec(), at + len)))
    }
}

/// Numbers the frames of one sending direction.
#[derive(Debug, Clone)]
pub struct FrameWriter {
    next_seq: i32,
}

impl Default for FrameWriter {
    fn default() -> Self {
        FrameWriter { next_seq: -2 }
    }
}

impl FrameWriter {
    /// Append the next frame carrying `payload`.
    pub fn write(&mut self, payload: &[u8], out: &mut Vec<u8>) {
        encode(self.next_seq, payload, out);
        self.next_seq = self.next_seq.wrapping_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The RPC_NONCE frame of docs/protocol.md §8.4 (CRC and layout from the vectors' independent
    /// Python implementation, checked against the official binary).
    #[test]
    fn nonce_frame_vector() {
        let payload = hex::decode("aa87cb7ac4f9faca01000000ef78195b1831356fc60aebb4e6705c4e01c96a69").unwrap();
        let mut out = Vec::new();
        FrameWriter::default().write(&payload, &mut out);
        assert_eq!(hex::encode(&out), "2c000000feffffffaa87cb7ac4f9faca01000000ef78195b1831356fc60aebb4e6705c4e01c96a69e36670f5");
        let mut r = FrameReader::default();
        assert_eq!(r.decode(&out).unwrap(), Some((payload, out.len())));
        assert_eq!(r.next_seq(), -1);
    }

    #[test]
    fn padding_incomplete_and_errors() {
        let mut out = Vec::new();
        encode(0, &[1, 2, 3, 4, 5, 6, 7, 8], &mut out);
        pad_to_block(&mut out, 0);
        assert_eq!(out.len(), 32);
        assert_eq!(out[20..], [4, 0, 0, 0, 4, 0, 0, 0, 4, 0, 0, 0]);
        // Leading padding is skipped; trailing padding alone is "incomplete".
        let mut with_lead = PAD_WORD.to_vec();
        with_lead.extend_from_slice(&out[..20]);
        let mut r = FrameReader::new(0);
        assert_eq!(r.decode(&with_lead).unwrap(), Some((vec![1, 2, 3, 4, 5, 6, 7, 8], 24)));
        assert_eq!(r.decode(&out[20..]).unwrap(), None);
        for cut in 0..20 {
            assert_eq!(FrameReader::new(0).decode(&out[..cut]).unwrap(), None, "cut {cut}");
        }
        assert_eq!(FrameReader::new(1).decode(&out), Err(FrameError::BadSeq { expected: 1, got: 0 }));
        let mut bad = out.clone();
        bad[9] ^= 1;
        assert_eq!(FrameReader::new(0).decode(&bad), Err(FrameError::BadCrc));
        assert_eq!(FrameReader::new(0).decode(&[13, 0, 0, 0]), Err(FrameError::BadLength(13)));
        assert_eq!(FrameReader::new(0).decode(&[12, 0, 0, 0]), Err(FrameError::BadLength(12)));
        assert_eq!(FrameReader::new(0).decode(&[0, 0, 0, 0x40]), Err(FrameError::BadLength(0x4000_0000)));
    }
}
