//! Fake-TLS (`ee` secrets): ClientHello reading and authentication, the ServerHello flight,
//! and TLS record (de)framing of the data phase (docs/protocol.md §4).
//!
//! ```text
//! client                                   proxy
//!   16 03 01 LL LL 01 ... random(32) ...  ->   HMAC-SHA256(S, hello with random zeroed)
//!                                              XOR random = 28 zero bytes || u32le(timestamp)
//!   <- 16 03 03 00 7a 02 ... server random ... | 14 03 03 00 01 01 | 17 03 03 NN <N random bytes>
//!   14 03 03 00 01 01 | 17 03 03 len <obfuscated2 stream> ...  <->  17 03 03 len <stream> ...
//! ```
//! Hellos of any real size are accepted, also when split over several handshake records; the
//! HMAC is then computed over the canonical single-record form the client signed (§4.2).

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::secret::Secret;
use crate::tlsflight::{HelloExtension, ServerHelloLayout};

type HmacSha256 = Hmac<Sha256>;

/// TLS record header length.
pub const RECORD_HEADER_LEN: usize = 5;
/// The largest record payload we send: the TLS plaintext limit, 2^14 bytes.
pub const MAX_RECORD_PAYLOAD: usize = 16384;
/// The largest handshake message we are willing to reassemble.
pub const MAX_HELLO_LEN: usize = 32768;
/// At most this many handshake records may carry one ClientHello.
pub const MAX_HELLO_RECORDS: usize = 16;
/// Offset and length of the random field in a (canonical) hello record.
const RANDOM_OFFSET: usize = 11;
const RANDOM_LEN: usize = 32;

/// The dummy ChangeCipherSpec record both sides send once.
pub const CHANGE_CIPHER_SPEC: [u8; 6] = [0x14, 0x03, 0x03, 0x00, 0x01, 0x01];

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

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s.split_whitespace().collect::<String>()).unwrap()
    }

    pub(crate) fn vector_c_zeroed_hello() -> Vec<u8> {
        let mut v = h("1603010200010001fc0303000000000000000000000000000000000000000000000000000000000000000020a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3
b4b5b6b7b8b9babbbcbdbebf00220a0a130113021303c02bc02fc02cc030cca9cca8c013c014009c009d002f0035000a010001912a2a000000000010000e0000
0b6578616d706c652e636f6d00170000ff01000100000a000a00084a4a001d00170018000b00020100002300000010000e000c02683208687474702f312e3100
0500050100000000000d00140012040308040401050308050501080606010201001200000033002b00294a4a000100001d0020d1113d0b4f3e212592c15e04c5
faa219054065b05658b8a7e9c22499252003e0002d00020101002b000b0a6a6a0304030303020301001b00030200023a3a000100001500cd");
        v.resize(517, 0);
        v
    }

    fn secret() -> Secret {
        Secret::from_hex("00112233445566778899aabbccddeeff").unwrap()
    }

    #[test]
    fn vector_c_client_hello_signs_and_verifies() {
        let mut hello = vector_c_zeroed_hello();
        sign_client_hello(&mut hello, &secret(), 1_700_000_000);
        assert_eq!(hello[11..43].to_vec(), h("a934d5ec78bc3fddbf0e2e14d27e06607f748580cbc551965399331ebb661bab"));
        let HelloRead::Complete { consumed, canonical } = read_client_hello(&hello).unwrap() else { panic!("complete hello expected") };
        assert_eq!(consumed, 517);
        assert_eq!(canonical, hello);
        assert_eq!(HelloAuth::new(&canonical).check(&secret()), Some(1_700_000_000));
        let other = Secret::from_hex("00112233445566778899aabbccddeefe").unwrap();
        assert_eq!(HelloAuth::new(&canonical).check(&other), None);
        let f = parse_hello_fields(&canonical).unwrap();
        assert_eq!(f.sni.as_deref(), Some("example.com"));
        assert_eq!(f.first_cipher, Some(0x1301));
        assert_eq!(f.session_id, h("a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf"));
    }

    #[test]
    fn vector_c_server_hello_flight() {
        let client_random: [u8; 32] = h("a934d5ec78bc3fddbf0e2e14d27e06607f748580cbc551965399331ebb661bab").try_into().unwrap();
        let sha = |s: &str| -> [u8; 32] {
            use sha2::Digest;
            sha2::Sha256::digest(s.as_bytes()).into()
        };
        let mut app = sha("appdata0").to_vec();
        app.extend_from_slice(&sha("appdata1"));
        let sid = h("a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf");
        let flight = server_hello(
            &secret(),
            &ServerHelloParams {
                client_random: &client_random,
                session_id: &sid,
                layout: &ServerHelloLayout::generic(0x1301),
                cipher: 0x1301,
                key_share: &sha("server x25519"),
                app_data: &app,
            },
        );
        let expected = h("160303007a020000760303394d7d037cbf3ff4cacec5c6f6048b82c97044bd37c181158d63641dfbbc863120a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3
b4b5b6b7b8b9babbbcbdbebf130100002e00330024001d002041906d290d146223410a694aea54c58babf388ef889965833476cd352dd83a2a002b0002030414
030300010117030300409fc62a6aeaccfc4ebbe039fc7865c74c8e8b30c7bdcfb25e9d658413ce5cd529feb9ebf757dd3cbb334640398cd502c449f013b25379
913c742d76e4b960b085");
        assert_eq!(flight, expected);
        assert_eq!(verify_server_hello(&secret(), &client_random, &flight), Some(flight.len()));
        let mut bad = flight.clone();
        bad[200] ^= 1;
        assert_eq!(verify_server_hello(&secret(), &client_random, &bad), None);
    }

    #[test]
    fn fragmented_hello_uses_canonical_form() {
        let mut hello = vector_c_zeroed_hello();
        sign_client_hello(&mut hello, &secret(), 1_700_000_000);
        // Split the 512-byte handshake message into records of 100, 300 and 112 bytes.
        let msg = &hello[5..];
        let mut wire = Vec::new();
        for part in [&msg[..100], &msg[100..400], &msg[400..]] {
            wire.extend_from_slice(&[0x16, 0x03, 0x01]);
            wire.extend_from_slice(&(part.len() as u16).to_be_bytes());
            wire.extend_from_slice(part);
        }
        wire.extend_from_slice(&CHANGE_CIPHER_SPEC);
        for cut in 0..wire.len() - 6 {
            assert_eq!(read_client_hello(&wire[..cut]).unwrap(), HelloRead::Incomplete, "cut {cut}");
        }
        let HelloRead::Complete { consumed, canonical } = read_client_hello(&wire).unwrap() else { panic!() };
        assert_eq!(consumed, wire.len() - 6);
        assert_eq!(canonical, hello);
    }

    #[test]
    fn malformed_hellos_are_errors() {
        assert_eq!(read_client_hello(&[0x16, 0x03, 0x01, 0x00, 0x00]), Err(HelloError::BadRecordLength));
        assert_eq!(read_client_hello(&[0x16, 0x03, 0x01, 0x00, 0x04, 0x02, 0, 0, 0]), Err(HelloError::NotClientHello));
        assert_eq!(read_client_hello(&[0x17, 0x03, 0x01, 0x00, 0x04]), Err(HelloError::NotHandshake));
        // Record with more than the message.
        assert_eq!(read_client_hello(&[0x16, 0x03, 0x01, 0x00, 0x06, 0x01, 0, 0, 1, 0xaa, 0xbb]), Err(HelloError::TrailingData));
        assert!(parse_hello_fields(&[0x16, 0x03, 0x01, 0x00, 0x06, 0x01, 0, 0, 2, 3, 3]).is_err());
    }

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
