//! Fuzz the middle-proxy RPC parsers the proxy runs on bytes from a middle-end (docs/protocol.md
//! §5.3, §5.7) and the fake middle-end runs on bytes from the proxy (§5.4, §5.6): the frame
//! reader (length, sequence number, CRC32, padding words), then every message parser on each
//! frame payload, and the `proxy-multi.conf` parser on the input as text.
//!
//! Invariants checked beyond "no panic":
//! * a decoded frame never claims more bytes than the input, and its payload is exactly
//!   `total_len - 12` bytes at the right place;
//! * decoding is prefix-stable: any strict prefix of a decodable buffer is "incomplete" or the
//!   same error, never a different frame;
//! * frames re-encoded with their sequence number decode back to the same payload;
//! * a parsed message re-encodes (where the codec has an encoder) to bytes that parse to the
//!   same value;
//! * a parsed proxy-multi.conf renders to text that parses to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mtproxy_proto::rpc::conf;
use mtproxy_proto::rpc::frame::{encode, FrameReader, OVERHEAD};
use mtproxy_proto::rpc::msg::{FromMe, Handshake, Nonce, ProxyReq, ToMe};

fuzz_target!(|data: &[u8]| {
    // Frames, starting at each sequence number a connection goes through.
    for start in [-2i32, -1, 0] {
        let mut reader = FrameReader::new(start);
        let mut at = 0;
        let mut frames = 0;
        while at < data.len() && frames < 64 {
            let before = reader.clone();
            match reader.decode(&data[at..]) {
                Ok(Some((payload, used))) => {
                    assert!(used <= data.len() - at);
                    assert!(used >= payload.len() + OVERHEAD);
                    let seq = before.next_seq();
                    let mut again = Vec::new();
                    encode(seq, &payload, &mut again);
                    assert_eq!(&data[at + used - again.len()..at + used], &again[..], "frame bytes re-encode identically");
                    for cut in [0, used / 2, used - 1] {
                        let mut r = before.clone();
                        assert_eq!(r.decode(&data[at..at + cut]), Ok(None), "a strict prefix of a frame is incomplete");
                    }
                    messages(&payload);
                    at += used;
                    frames += 1;
                }
                Ok(None) | Err(_) => break,
            }
        }
    }
    messages(data);
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(c) = conf::parse(text) {
            assert_eq!(conf::parse(&c.to_text()).as_ref(), Ok(&c));
        }
    }
});

fn messages(payload: &[u8]) {
    if let Ok(m) = FromMe::parse(payload) {
        if !matches!(m, FromMe::Other(_)) {
            assert_eq!(FromMe::parse(&m.encode()).unwrap(), m);
        }
    }
    if let Ok(ToMe::ProxyReq(r)) = ToMe::parse(payload) {
        assert_eq!(ProxyReq::parse(payload).unwrap(), r);
        let _ = r.ad_tag();
    }
    if let Ok(n) = Nonce::parse(payload) {
        assert_eq!(Nonce::parse(&n.encode()).unwrap(), n);
    }
    let _ = Handshake::parse(payload);
    let _ = mtproxy_proto::rpc::msg::forwardable(payload);
}
