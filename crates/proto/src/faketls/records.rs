//! TLS record (de)framing of the data phase (docs/protocol.md §4.8): after the handshake the
//! obfuscated2 stream travels in ApplicationData records both ways.
//!
//! This runs on every read and write of every `ee` connection, so the reader works in place,
//! keeps its state between reads (record boundaries fall anywhere in the stream) and never
//! allocates.

use super::{MAX_RECORD_PAYLOAD, RECORD_HEADER_LEN};

/// Header of an ApplicationData record carrying `len` bytes.
pub fn app_data_header(len: usize) -> [u8; RECORD_HEADER_LEN] {
    debug_assert!(len <= u16::MAX as usize);
    let l = (len as u16).to_be_bytes();
    [0x17, 0x03, 0x03, l[0], l[1]]
}

/// Why a record stream from the client is not acceptable in the data phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("unexpected TLS record type {0:#04x}")]
    UnexpectedType(u8),
    #[error("bad TLS record version")]
    BadVersion,
    #[error("TLS record longer than allowed")]
    TooLong,
}

/// De-frames the client's record stream in place: ApplicationData payloads are kept,
/// ChangeCipherSpec records are skipped, anything else is an error (docs/protocol.md §4.8).
/// Record boundaries are meaningless for the inner stream, so input may be split anywhere.
#[derive(Debug, Default, Clone)]
pub struct RecordReader {
    header: [u8; RECORD_HEADER_LEN],
    header_len: usize,
    /// Payload bytes still to come in the current record.
    remaining: usize,
    /// Whether the current record's payload is kept (AppData) or skipped (CCS).
    keep: bool,
}

impl RecordReader {
    pub fn new() -> Self {
        Self::default()
    }

    /// Strip record headers from `buf[..len]`, moving kept payload bytes to the front of `buf`.
    /// Returns how many payload bytes are now at `buf[..n]`.
    pub fn deframe_in_place(&mut self, buf: &mut [u8], len: usize) -> Result<usize, RecordError> {
        let mut read = 0;
        let mut written = 0;
        while read < len {
            if self.remaining == 0 {
                let take = (RECORD_HEADER_LEN - self.header_len).min(len - read);
                self.header[self.header_len..self.header_len + take].copy_from_slice(&buf[read..read + take]);
                self.header_len += take;
                read += take;
                if self.header_len < RECORD_HEADER_LEN {
                    break;
                }
                self.header_len = 0;
                let h = self.header;
                if h[1] != 0x03 {
                    return Err(RecordError::BadVersion);
                }
                let rec_len = u16::from_be_bytes([h[3], h[4]]) as usize;
                match h[0] {
                    0x17 => self.keep = true,
                    0x14 if rec_len == 1 => self.keep = false,
                    t => return Err(RecordError::UnexpectedType(t)),
                }
                if rec_len > MAX_RECORD_PAYLOAD + 256 {
                    return Err(RecordError::TooLong);
                }
                self.remaining = rec_len;
                continue;
            }
            let take = self.remaining.min(len - read);
            if self.keep {
                buf.copy_within(read..read + take, written);
                written += take;
            }
            read += take;
            self.remaining -= take;
        }
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faketls::CHANGE_CIPHER_SPEC;

    #[test]
    fn record_reader_strips_headers_and_ccs_at_any_split() {
        let mut wire = CHANGE_CIPHER_SPEC.to_vec();
        let mut expected = Vec::new();
        for n in [64usize, 1, 300] {
            let payload: Vec<u8> = (0..n).map(|i| (i * 7 + n) as u8).collect();
            wire.extend_from_slice(&app_data_header(n));
            wire.extend_from_slice(&payload);
            expected.extend_from_slice(&payload);
        }
        for chunk in 1..wire.len() {
            let mut r = RecordReader::new();
            let mut got = Vec::new();
            for part in wire.chunks(chunk) {
                let mut b = part.to_vec();
                let n = r.deframe_in_place(&mut b, part.len()).unwrap();
                got.extend_from_slice(&b[..n]);
            }
            assert_eq!(got, expected, "chunk {chunk}");
        }
        let mut r = RecordReader::new();
        let mut alert = vec![0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x32];
        assert_eq!(r.deframe_in_place(&mut alert, 7), Err(RecordError::UnexpectedType(0x15)));
    }
}
