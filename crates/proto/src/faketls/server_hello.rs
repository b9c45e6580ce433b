//! The proxy's answer to an authenticated ClientHello: the ServerHello, ChangeCipherSpec and
//! ApplicationData flight, signed with the user's secret (docs/protocol.md §4.7).
//!
//! Only the byte layout lives here; what the flight looks like (cipher, extension order, key
//! share, length) is chosen by the caller from the cover site (core's `cover`), and the
//! randomness is the caller's too.

use hmac::Mac;

use super::{app_data_header, HmacSha256, CHANGE_CIPHER_SPEC, RANDOM_LEN, RANDOM_OFFSET, RECORD_HEADER_LEN};
use crate::secret::Secret;
use crate::tlsflight::{HelloExtension, ServerHelloLayout};

/// Everything that varies in our ServerHello flight.
pub struct ServerHelloParams<'a> {
    pub client_random: &'a [u8; 32],
    pub session_id: &'a [u8],
    /// Cipher, compression and extensions in order ([`ServerHelloLayout::generic`], or the one
    /// learned from the cover site); its cipher is replaced by `cipher`.
    pub layout: &'a ServerHelloLayout,
    pub cipher: u16,
    /// The server's key share, as long as the layout's key_share says.
    pub key_share: &'a [u8],
    /// Body of the ApplicationData record imitating the encrypted certificate chain.
    pub app_data: &'a [u8],
}

/// Build the ServerHello / ChangeCipherSpec / ApplicationData flight (docs/protocol.md §4.7) and sign it.
pub fn server_hello(secret: &Secret, p: &ServerHelloParams<'_>) -> Vec<u8> {
    let sid = &p.session_id[..p.session_id.len().min(32)];
    let ext_len = p.layout.extensions_len();
    let hello_body_len = 2 + 32 + 1 + sid.len() + 2 + 1 + 2 + ext_len;
    let mut out = Vec::with_capacity(RECORD_HEADER_LEN + 4 + hello_body_len + 6 + 5 + p.app_data.len());
    out.extend_from_slice(&[0x16, 0x03, 0x03]);
    out.extend_from_slice(&((hello_body_len + 4) as u16).to_be_bytes());
    out.push(0x02);
    out.extend_from_slice(&(hello_body_len as u32).to_be_bytes()[1..]);
    out.extend_from_slice(&[0x03, 0x03]);
    out.extend_from_slice(&[0u8; 32]); // server random, filled below
    out.push(sid.len() as u8);
    out.extend_from_slice(sid);
    out.extend_from_slice(&p.cipher.to_be_bytes());
    out.push(p.layout.compression);
    out.extend_from_slice(&(ext_len as u16).to_be_bytes());
    for e in &p.layout.extensions {
        out.extend_from_slice(&e.kind().to_be_bytes());
        match e {
            HelloExtension::KeyShare { group, len } => {
                let share_len = *len as usize;
                out.extend_from_slice(&((share_len + 4) as u16).to_be_bytes());
                out.extend_from_slice(&group.to_be_bytes());
                out.extend_from_slice(&len.to_be_bytes());
                let take = p.key_share.len().min(share_len);
                out.extend_from_slice(&p.key_share[..take]);
                out.resize(out.len() + share_len - take, 0);
            }
            HelloExtension::SupportedVersions(v) => {
                out.extend_from_slice(&[0x00, 0x02]);
                out.extend_from_slice(&v.to_be_bytes());
            }
            HelloExtension::Other { body, .. } => {
                out.extend_from_slice(&(body.len() as u16).to_be_bytes());
                out.extend_from_slice(body);
            }
        }
    }
    out.extend_from_slice(&CHANGE_CIPHER_SPEC);
    out.extend_from_slice(&app_data_header(p.app_data.len()));
    out.extend_from_slice(p.app_data);
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(p.client_random);
    mac.update(&out);
    let digest = mac.finalize().into_bytes();
    out[RANDOM_OFFSET..RANDOM_OFFSET + RANDOM_LEN].copy_from_slice(&digest);
    out
}
