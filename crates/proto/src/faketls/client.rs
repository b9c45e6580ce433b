//! The client's side of fake-TLS: sign a ClientHello, build one, and check the ServerHello
//! flight as TDLib does.
//!
//! The proxy itself never runs this on a client's connection; it is here, next to what it
//! mirrors, so the test clients, the load benchmark and the cover prober (`tlsflight`) speak
//! exactly the protocol the proxy checks, and a change to one side shows in the other's tests.

use hmac::Mac;
use subtle::ConstantTimeEq;

use super::{HmacSha256, CHANGE_CIPHER_SPEC, RANDOM_LEN, RANDOM_OFFSET, RECORD_HEADER_LEN};
use crate::secret::Secret;

/// Sign a hello as a client does: fill in the random for `timestamp` (docs/protocol.md §4.2).
/// Used by test clients and the benchmark.
pub fn sign_client_hello(hello: &mut [u8], secret: &Secret, timestamp: u32) {
    hello[RANDOM_OFFSET..RANDOM_OFFSET + RANDOM_LEN].fill(0);
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(hello);
    let digest = mac.finalize().into_bytes();
    let mut random = [0u8; 32];
    random.copy_from_slice(&digest);
    for (r, t) in random[28..].iter_mut().zip(timestamp.to_le_bytes()) {
        *r ^= t;
    }
    hello[RANDOM_OFFSET..RANDOM_OFFSET + RANDOM_LEN].copy_from_slice(&random);
}

/// A minimal TLS 1.3-style ClientHello record of about `size` bytes (SNI when given,
/// supported_versions, a padding extension to reach the size) with a zero random, ready for
/// [`sign_client_hello`]. What test clients and the benchmark send; real clients' hellos differ
/// in everything but the fields the proxy reads.
pub fn build_client_hello(sni: Option<&str>, session_id: &[u8; 32], size: usize) -> Vec<u8> {
    let mut body = vec![0x03, 0x03];
    body.extend_from_slice(&[0u8; 32]);
    body.push(32);
    body.extend_from_slice(session_id);
    body.extend_from_slice(&[0x00, 0x06, 0x3a, 0x3a, 0x13, 0x01, 0x13, 0x02]);
    body.extend_from_slice(&[0x01, 0x00]);
    let mut ext = Vec::new();
    if let Some(name) = sni {
        let n = name.as_bytes();
        ext.extend_from_slice(&[0x00, 0x00]);
        ext.extend_from_slice(&((n.len() + 5) as u16).to_be_bytes());
        ext.extend_from_slice(&((n.len() + 3) as u16).to_be_bytes());
        ext.push(0);
        ext.extend_from_slice(&(n.len() as u16).to_be_bytes());
        ext.extend_from_slice(n);
    }
    ext.extend_from_slice(&[0x00, 0x2b, 0x00, 0x03, 0x02, 0x03, 0x04]);
    let fixed = RECORD_HEADER_LEN + 4 + body.len() + 2 + ext.len() + 4;
    let pad = size.saturating_sub(fixed);
    ext.extend_from_slice(&[0x00, 0x15]);
    ext.extend_from_slice(&(pad as u16).to_be_bytes());
    ext.resize(ext.len() + pad, 0);
    body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    body.extend_from_slice(&ext);
    client_hello_record(&body)
}

/// A ClientHello handshake message around `body` (from legacy_version on), in one TLS 1.0
/// handshake record, as every client's first flight is framed (docs/protocol.md §4.1).
pub fn client_hello_record(body: &[u8]) -> Vec<u8> {
    let mut rec = vec![0x16, 0x03, 0x01];
    rec.extend_from_slice(&((body.len() + 4) as u16).to_be_bytes());
    rec.push(0x01);
    rec.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    rec.extend_from_slice(body);
    rec
}

/// Check a ServerHello flight as a client does (TDLib `TlsInit::wait_hello_response`): framing,
/// then the HMAC over the whole flight. Returns the flight's length when valid.
pub fn verify_server_hello(secret: &Secret, client_random: &[u8; 32], buf: &[u8]) -> Option<usize> {
    if buf.len() < 5 || buf[..3] != [0x16, 0x03, 0x03] {
        return None;
    }
    let l1 = u16::from_be_bytes([buf[3], buf[4]]) as usize;
    let ccs = 5 + l1;
    let app = ccs + CHANGE_CIPHER_SPEC.len();
    if buf.len() < app + 5 || buf[ccs..app] != CHANGE_CIPHER_SPEC || buf[app..app + 3] != [0x17, 0x03, 0x03] {
        return None;
    }
    let total = app + 5 + u16::from_be_bytes([buf[app + 3], buf[app + 4]]) as usize;
    if buf.len() < total || total < RANDOM_OFFSET + RANDOM_LEN {
        return None;
    }
    let mut zeroed = buf[..total].to_vec();
    zeroed[RANDOM_OFFSET..RANDOM_OFFSET + RANDOM_LEN].fill(0);
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(client_random);
    mac.update(&zeroed);
    let digest = mac.finalize().into_bytes();
    bool::from(digest[..].ct_eq(&buf[RANDOM_OFFSET..RANDOM_OFFSET + RANDOM_LEN])).then_some(total)
}
