//! The proxy's side of a client's first flight: reassemble a ClientHello from however many
//! handshake records it came in, read the few fields the proxy uses, and check its HMAC
//! against the secrets (docs/protocol.md §4.1, §4.2).
//!
//! Every byte here comes from anyone who connects, before any authentication, so everything
//! is bounds-checked and errors are typed (the `client_hello` fuzz target runs this module).

use hmac::Mac;
use subtle::ConstantTimeEq;

use super::{HmacSha256, MAX_RECORD_PAYLOAD, RANDOM_LEN, RANDOM_OFFSET, RECORD_HEADER_LEN};
use crate::secret::Secret;

/// The largest handshake message we are willing to reassemble.
pub const MAX_HELLO_LEN: usize = 32768;
/// At most this many handshake records may carry one ClientHello.
pub const MAX_HELLO_RECORDS: usize = 16;

/// Why bytes that start like TLS are not a usable ClientHello.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HelloError {
    #[error("not a TLS handshake record")]
    NotHandshake,
    #[error("record length out of range")]
    BadRecordLength,
    #[error("handshake message is not a ClientHello")]
    NotClientHello,
    #[error("ClientHello longer than we accept")]
    TooLong,
    #[error("ClientHello split over too many records")]
    TooManyRecords,
    #[error("record carries more than the ClientHello")]
    TrailingData,
    #[error("ClientHello body is truncated or inconsistent")]
    Truncated,
}

/// Result of looking at the first bytes of a connection.
#[derive(Debug, PartialEq, Eq)]
pub enum HelloRead {
    /// More bytes are needed.
    Incomplete,
    /// A whole ClientHello: `consumed` wire bytes, and the canonical single-record form.
    Complete { consumed: usize, canonical: Vec<u8> },
}

/// True when the first bytes look like a TLS ClientHello record (`16 03 01`), the classifier of
/// the data path: anything else is tried as obfuscated2.
pub fn looks_like_tls(first: &[u8]) -> bool {
    first.len() >= 3 && first[0] == 0x16 && first[1] == 0x03 && first[2] == 0x01
}

/// Read a ClientHello from the start of `buf` (docs/protocol.md §4.1): one record or several handshake
/// records that together carry one ClientHello message.
pub fn read_client_hello(buf: &[u8]) -> Result<HelloRead, HelloError> {
    let mut pos = 0;
    let mut message: Vec<u8> = Vec::new();
    let mut records = 0;
    let mut single_record_end = None;
    loop {
        if buf.len() < pos + RECORD_HEADER_LEN {
            return Ok(HelloRead::Incomplete);
        }
        let h = &buf[pos..pos + RECORD_HEADER_LEN];
        if h[0] != 0x16 || h[1] != 0x03 || h[2] > 0x04 || (records == 0 && h[2] != 0x01) {
            return Err(HelloError::NotHandshake);
        }
        let len = u16::from_be_bytes([h[3], h[4]]) as usize;
        if len == 0 || len > MAX_RECORD_PAYLOAD {
            return Err(HelloError::BadRecordLength);
        }
        records += 1;
        if records > MAX_HELLO_RECORDS {
            return Err(HelloError::TooManyRecords);
        }
        let start = pos + RECORD_HEADER_LEN;
        if buf.len() < start + len {
            return Ok(HelloRead::Incomplete);
        }
        if records == 1 {
            single_record_end = Some(start + len);
        }
        message.extend_from_slice(&buf[start..start + len]);
        pos = start + len;
        if message.len() >= 4 {
            if message[0] != 0x01 {
                return Err(HelloError::NotClientHello);
            }
            let body = u32::from_be_bytes([0, message[1], message[2], message[3]]) as usize;
            let total = body + 4;
            if total > MAX_HELLO_LEN {
                return Err(HelloError::TooLong);
            }
            if message.len() > total {
                return Err(HelloError::TrailingData);
            }
            if message.len() == total {
                let canonical = if records == 1 {
                    buf[..single_record_end.unwrap()].to_vec()
                } else {
                    let mut c = Vec::with_capacity(RECORD_HEADER_LEN + total);
                    c.extend_from_slice(&[0x16, 0x03, 0x01]);
                    c.extend_from_slice(&(total as u16).to_be_bytes());
                    c.extend_from_slice(&message);
                    c
                };
                if canonical.len() < RANDOM_OFFSET + RANDOM_LEN + 1 {
                    return Err(HelloError::Truncated);
                }
                return Ok(HelloRead::Complete { consumed: pos, canonical });
            }
        }
    }
}

/// The fields of a ClientHello the proxy uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelloFields {
    pub random: [u8; 32],
    pub session_id: Vec<u8>,
    /// First cipher suite that is not a GREASE value, if any.
    pub first_cipher: Option<u16>,
    /// The server name from the SNI extension, when present.
    pub sni: Option<String>,
    /// Whether ALPN offers HTTP/2 (picks the cover shape learned for such hellos).
    pub offers_h2: bool,
}

fn is_grease(v: u16) -> bool {
    (v & 0x0f0f) == 0x0a0a && (v >> 8) == (v & 0xff)
}

/// A bounds-checked reader over a byte slice.
struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], HelloError> {
        let end = self.pos.checked_add(n).ok_or(HelloError::Truncated)?;
        let s = self.data.get(self.pos..end).ok_or(HelloError::Truncated)?;
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, HelloError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, HelloError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
}

/// Parse the fields we need from a canonical hello record (as returned by [`read_client_hello`]).
pub fn parse_hello_fields(canonical: &[u8]) -> Result<HelloFields, HelloError> {
    let mut c = Cursor { data: canonical, pos: 0 };
    c.take(RECORD_HEADER_LEN + 4)?; // record header + handshake header
    c.take(2)?; // legacy version
    let random: [u8; 32] = c.take(32)?.try_into().unwrap();
    let sid_len = c.u8()? as usize;
    if sid_len > 32 {
        return Err(HelloError::Truncated);
    }
    let session_id = c.take(sid_len)?.to_vec();
    let suites_len = c.u16()? as usize;
    let suites = c.take(suites_len)?;
    let first_cipher = suites.chunks_exact(2).map(|p| u16::from_be_bytes([p[0], p[1]])).find(|v| !is_grease(*v));
    let comp_len = c.u8()? as usize;
    c.take(comp_len)?;
    let mut sni = None;
    let mut offers_h2 = false;
    if c.pos < canonical.len() {
        let ext_len = c.u16()? as usize;
        let mut e = Cursor { data: c.take(ext_len)?, pos: 0 };
        while e.pos < e.data.len() {
            let typ = e.u16()?;
            let len = e.u16()? as usize;
            let body = e.take(len)?;
            if typ == 0x0010 {
                offers_h2 |= alpn_offers_h2(body);
            }
            if typ == 0x0000 && sni.is_none() {
                let mut s = Cursor { data: body, pos: 0 };
                let list_len = s.u16()? as usize;
                let mut list = Cursor { data: s.take(list_len)?, pos: 0 };
                while list.pos < list.data.len() {
                    let name_type = list.u8()?;
                    let name_len = list.u16()? as usize;
                    let name = list.take(name_len)?;
                    if name_type == 0 {
                        sni = Some(String::from_utf8_lossy(name).into_owned());
                        break;
                    }
                }
            }
        }
    }
    Ok(HelloFields { random, session_id, first_cipher, sni, offers_h2 })
}

/// True when an ALPN extension body (RFC 7301) lists `h2`.
fn alpn_offers_h2(body: &[u8]) -> bool {
    let mut list = match body.get(2..) {
        Some(l) => l,
        None => return false,
    };
    while let Some((&len, rest)) = list.split_first() {
        let Some(name) = rest.get(..len as usize) else { return false };
        if name == b"h2" {
            return true;
        }
        list = &rest[len as usize..];
    }
    false
}

/// The HMAC check of a ClientHello against many secrets, zeroing the random once.
pub struct HelloAuth {
    zeroed: Vec<u8>,
    received_random: [u8; 32],
}

impl HelloAuth {
    pub fn new(canonical: &[u8]) -> Self {
        let mut zeroed = canonical.to_vec();
        let mut received_random = [0u8; 32];
        received_random.copy_from_slice(&zeroed[RANDOM_OFFSET..RANDOM_OFFSET + RANDOM_LEN]);
        zeroed[RANDOM_OFFSET..RANDOM_OFFSET + RANDOM_LEN].fill(0);
        HelloAuth { zeroed, received_random }
    }

    /// The client's random as received (the replay-cache key is its first 16 bytes).
    pub fn client_random(&self) -> &[u8; 32] {
        &self.received_random
    }

    /// `Some(timestamp)` when the hello was signed with `secret` (docs/protocol.md §4.2). The 28-byte
    /// comparison is constant-time.
    pub fn check(&self, secret: &Secret) -> Option<u32> {
        let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("any key length");
        mac.update(&self.zeroed);
        let digest = mac.finalize().into_bytes();
        let mut x = [0u8; 32];
        for i in 0..32 {
            x[i] = digest[i] ^ self.received_random[i];
        }
        if bool::from(x[..28].ct_eq(&[0u8; 28])) {
            Some(u32::from_le_bytes(x[28..32].try_into().unwrap()))
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_hellos_are_errors() {
        assert_eq!(read_client_hello(&[0x16, 0x03, 0x01, 0x00, 0x00]), Err(HelloError::BadRecordLength));
        assert_eq!(read_client_hello(&[0x16, 0x03, 0x01, 0x00, 0x04, 0x02, 0, 0, 0]), Err(HelloError::NotClientHello));
        assert_eq!(read_client_hello(&[0x17, 0x03, 0x01, 0x00, 0x04]), Err(HelloError::NotHandshake));
        // Record with more than the message.
        assert_eq!(read_client_hello(&[0x16, 0x03, 0x01, 0x00, 0x06, 0x01, 0, 0, 1, 0xaa, 0xbb]), Err(HelloError::TrailingData));
        assert!(parse_hello_fields(&[0x16, 0x03, 0x01, 0x00, 0x06, 0x01, 0, 0, 2, 3, 3]).is_err());
    }
}
