//! Fuzz the fake-TLS data phase (docs/protocol.md §4.8): the client's TLS record stream, de-framed in
//! place by `RecordReader` while it arrives in arbitrary TCP pieces.
//!
//! Input layout: byte 0 seeds the split sizes, the rest is the record stream. The stream is fed
//! once whole and once in pieces (sizes 1..=64 from a small PRNG, occasionally larger), and both
//! are compared with a straightforward reference reader written here from the specification:
//! * the kept bytes are exactly the ApplicationData payloads in order (partial records included);
//! * ChangeCipherSpec records (length 1) are skipped; the first bad header gives the same error
//!   kind both ways and as in the reference;
//! * no call returns more bytes than it was given, and bytes past `len` are never touched.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mtproxy_proto::faketls::{RecordError, RecordReader, MAX_RECORD_PAYLOAD, RECORD_HEADER_LEN};

/// The stream read in one pass from a complete buffer: kept bytes, and the error if any.
fn reference(stream: &[u8]) -> (Vec<u8>, Option<RecordError>) {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos + RECORD_HEADER_LEN <= stream.len() {
        let h = &stream[pos..pos + RECORD_HEADER_LEN];
        let len = u16::from_be_bytes([h[3], h[4]]) as usize;
        if h[1] != 0x03 {
            return (out, Some(RecordError::BadVersion));
        }
        let keep = match h[0] {
            0x17 => true,
            0x14 if len == 1 => false,
            t => return (out, Some(RecordError::UnexpectedType(t))),
        };
        if len > MAX_RECORD_PAYLOAD + 256 {
            return (out, Some(RecordError::TooLong));
        }
        let start = pos + RECORD_HEADER_LEN;
        let end = (start + len).min(stream.len());
        if keep {
            out.extend_from_slice(&stream[start..end]);
        }
        pos = start + len;
    }
    (out, None)
}

/// Feed `stream` in pieces; returns the kept bytes and the error that stopped it, if any.
fn feed(stream: &[u8], mut seed: u32, pieces: bool) -> (Vec<u8>, Option<RecordError>) {
    const GUARD: u8 = 0xc5;
    let mut reader = RecordReader::new();
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < stream.len() {
        let n = if pieces {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            let n = if seed % 16 == 0 { seed as usize % 20000 } else { 1 + seed as usize % 64 };
            n.clamp(1, stream.len() - pos)
        } else {
            stream.len()
        };
        let mut buf = stream[pos..pos + n].to_vec();
        buf.extend_from_slice(&[GUARD; 3]);
        match reader.deframe_in_place(&mut buf, n) {
            Ok(kept) => {
                assert!(kept <= n);
                assert_eq!(buf[n..], [GUARD; 3], "bytes past len were written");
                out.extend_from_slice(&buf[..kept]);
            }
            Err(e) => return (out, Some(e)),
        }
        pos += n;
    }
    (out, None)
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, stream)) = data.split_first() else { return };
    let (want, want_err) = reference(stream);
    let (whole, whole_err) = feed(stream, 0, false);
    let (split, split_err) = feed(stream, 0x9e37_79b9 ^ u32::from(seed) << 8 | 1, true);
    assert_eq!(whole_err, want_err);
    assert_eq!(split_err, want_err);
    match want_err {
        None => {
            assert_eq!(whole, want);
            assert_eq!(split, want);
        }
        // The call that hits the bad header reports only the error, so the kept bytes are a
        // prefix of the reference's.
        Some(_) => {
            assert!(want.starts_with(&whole));
            assert!(want.starts_with(&split));
        }
    }
});
