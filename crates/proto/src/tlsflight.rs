//! A TLS 1.3 server's first flight, as a prober records it, and the ClientHello used to ask a
//! cover site for it.
//!
//! Cover-site emulation (docs/indistinguishability.md): the proxy learns, per cover domain,
//! what the real site answers to a ClientHello like the ones Telegram clients send, and shapes
//! its own fake-TLS flight (docs/protocol.md §4.7) to match:
//!
//! ```text
//! cover:  16 03 03 LEN ServerHello(cipher, extensions in the cover's order, key_share group)
//!         [14 03 03 00 01 01]                       ChangeCipherSpec, if the cover sends it
//!         17 03 03 L1 ... 17 03 03 Ln ...           EncryptedExtensions .. Finished
//! proxy:  16 03 03 LEN ServerHello(same layout, same length)
//!         14 03 03 00 01 01
//!         17 03 03 (L1 + 5 + ... + Ln) ...          ONE record of the same total length
//! ```
//! Why one record: every client checks the HMAC over exactly ServerHello, ChangeCipherSpec and
//! one ApplicationData record, and feeds any later record into the obfuscated2 stream (TDLib
//! `TlsInit::wait_hello_response`, `TlsReaderByteFlow`). A cover that sends its encrypted
//! handshake as several records is matched in bytes on the wire, not in record count.
//!
//! Everything here is pure: the caller reads the bytes and supplies the randomness.

/// The TLS 1.3 `supported_versions` value.
pub const TLS13: u16 = 0x0304;
/// key_share groups the emulation can produce well-formed shares for.
pub const GROUP_X25519: u16 = 0x001d;
pub const GROUP_X25519_MLKEM768: u16 = 0x11ec;
/// Length of an X25519MLKEM768 server share: ML-KEM-768 ciphertext then the x25519 key.
pub const X25519_MLKEM768_SERVER_SHARE_LEN: u16 = 1088 + 32;
/// The largest ApplicationData record TLS allows (2^14 + 256, RFC 8446 §5.2).
pub const MAX_CIPHERTEXT_RECORD: usize = 16384 + 256;

/// The random of a HelloRetryRequest (RFC 8446 §4.1.3).
pub const HRR_RANDOM: [u8; 32] = [
    0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91, 0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e,
    0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
];

/// One extension of a ServerHello.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HelloExtension {
    /// key_share: the server's share for `group`, `len` bytes (fresh for every connection).
    KeyShare { group: u16, len: u16 },
    /// supported_versions with this version.
    SupportedVersions(u16),
    /// Any other extension, sent as the cover sent it.
    Other { kind: u16, body: Vec<u8> },
}

impl HelloExtension {
    pub fn kind(&self) -> u16 {
        match self {
            HelloExtension::KeyShare { .. } => 0x0033,
            HelloExtension::SupportedVersions(_) => 0x002b,
            HelloExtension::Other { kind, .. } => *kind,
        }
    }
}

/// Everything of a ServerHello but its random, session id and key material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerHelloLayout {
    /// The cipher suite the server picked.
    pub cipher: u16,
    pub compression: u8,
    /// Extensions in the server's order.
    pub extensions: Vec<HelloExtension>,
}

impl ServerHelloLayout {
    /// The layout of docs/protocol.md §4.7 (key_share x25519, then supported_versions), used when no
    /// cover has been learned.
    pub fn generic(cipher: u16) -> Self {
        ServerHelloLayout {
            cipher,
            compression: 0,
            extensions: vec![HelloExtension::KeyShare { group: GROUP_X25519, len: 32 }, HelloExtension::SupportedVersions(TLS13)],
        }
    }

    /// The key_share extension's group and share length.
    pub fn key_share(&self) -> Option<(u16, u16)> {
        self.extensions.iter().find_map(|e| match e {
            HelloExtension::KeyShare { group, len } => Some((*group, *len)),
            _ => None,
        })
    }

    /// Length of the extensions block's content.
    pub fn extensions_len(&self) -> usize {
        self.extensions
            .iter()
            .map(|e| {
                4 + match e {
                    HelloExtension::KeyShare { len, .. } => 4 + *len as usize,
                    HelloExtension::SupportedVersions(_) => 2,
                    HelloExtension::Other { body, .. } => body.len(),
                }
            })
            .sum()
    }

    /// The JA3S string of a ServerHello with this layout: `771,CIPHER,EXT-EXT-...` (decimal).
    pub fn ja3s(&self) -> String {
        let exts: Vec<String> = self.extensions.iter().map(|e| e.kind().to_string()).collect();
        format!("771,{},{}", self.cipher, exts.join("-"))
    }
}

/// A server's answer to one ClientHello, up to where it waits for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flight {
    pub layout: ServerHelloLayout,
    /// Length of the session id the server echoed.
    pub session_id_len: u8,
    /// Whether a ChangeCipherSpec record followed the ServerHello.
    pub change_cipher_spec: bool,
    /// Payload lengths of the ApplicationData records that followed, in order.
    pub encrypted: Vec<usize>,
}

impl Flight {
    /// Length of the one ApplicationData record that stands for all of [`Flight::encrypted`]:
    /// the same bytes on the wire (their payloads and the headers between them).
    pub fn collapsed_len(&self) -> usize {
        collapsed_len(&self.encrypted)
    }
}

/// One record's payload length standing for `records` on the wire.
pub fn collapsed_len(records: &[usize]) -> usize {
    let total: usize = records.iter().map(|l| l + 5).sum();
    total.saturating_sub(5).min(MAX_CIPHERTEXT_RECORD)
}

/// Why an answer is not a usable TLS 1.3 flight.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlightError {
    #[error("the answer ended before a whole ServerHello")]
    Incomplete,
    #[error("the server answered a TLS alert (level {level}, description {description})")]
    Alert { level: u8, description: u8 },
    #[error("the server answered a HelloRetryRequest (it wants a key share this ClientHello does not offer)")]
    HelloRetryRequest,
    #[error("the server chose TLS version {0:#06x}, not TLS 1.3")]
    NotTls13(u16),
    #[error("the answer is not a TLS ServerHello")]
    NotServerHello,
    #[error("the ServerHello is malformed")]
    Malformed,
}

fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

/// Parse a server's first flight (everything it sent before it waited for the client).
/// A record cut off at the end is ignored.
pub fn parse_flight(buf: &[u8]) -> Result<Flight, FlightError> {
    if buf.len() < 5 {
        return Err(FlightError::Incomplete);
    }
    if buf[0] == 0x15 && buf.len() >= 7 {
        return Err(FlightError::Alert { level: buf[5], description: buf[6] });
    }
    if buf[0] != 0x16 || buf[1] != 0x03 {
        return Err(FlightError::NotServerHello);
    }
    let len = be16(&buf[3..5]) as usize;
    let record = buf.get(5..5 + len).ok_or(FlightError::Incomplete)?;
    let (layout, session_id_len) = parse_server_hello(record)?;
    let mut flight = Flight { layout, session_id_len, change_cipher_spec: false, encrypted: Vec::new() };
    let mut pos = 5 + len;
    while pos + 5 <= buf.len() {
        let (kind, len) = (buf[pos], be16(&buf[pos + 3..pos + 5]) as usize);
        if pos + 5 + len > buf.len() {
            break;
        }
        match kind {
            0x14 if flight.encrypted.is_empty() && !flight.change_cipher_spec => flight.change_cipher_spec = true,
            0x17 => flight.encrypted.push(len),
            _ => break,
        }
        pos += 5 + len;
    }
    Ok(flight)
}

fn m(r: Option<&[u8]>) -> Result<&[u8], FlightError> {
    r.ok_or(FlightError::Malformed)
}

/// Parse a ServerHello handshake message (a handshake record's payload).
fn parse_server_hello(msg: &[u8]) -> Result<(ServerHelloLayout, u8), FlightError> {
    if msg.first() != Some(&0x02) {
        return Err(FlightError::NotServerHello);
    }
    let body = m(msg.get(4..))?;
    let random = m(body.get(2..34))?;
    if random == HRR_RANDOM {
        return Err(FlightError::HelloRetryRequest);
    }
    let sid_len = *m(body.get(34..35))?.first().unwrap();
    let mut p = 35 + sid_len as usize;
    let cipher = be16(m(body.get(p..p + 2))?);
    let compression = m(body.get(p + 2..p + 3))?[0];
    p += 3;
    let mut extensions = Vec::new();
    // TLS 1.3 is only ever chosen through supported_versions (RFC 8446 §4.1.3); the legacy
    // field says 1.2 then, and is what is reported when the extension is missing.
    let legacy = be16(&body[..2]);
    let mut version = None;
    if let Some(lenb) = body.get(p..p + 2) {
        let ext_end = p + 2 + be16(lenb) as usize;
        let mut e = m(body.get(p + 2..ext_end))?;
        while !e.is_empty() {
            let head = m(e.get(..4))?;
            let (kind, len) = (be16(&head[..2]), be16(&head[2..4]) as usize);
            let data = m(e.get(4..4 + len))?;
            extensions.push(match kind {
                0x0033 if len >= 4 => HelloExtension::KeyShare { group: be16(&data[..2]), len: be16(&data[2..4]) },
                0x002b if len == 2 => {
                    version = Some(be16(data));
                    HelloExtension::SupportedVersions(be16(data))
                }
                _ => HelloExtension::Other { kind, body: data.to_vec() },
            });
            e = &e[4 + len..];
        }
    }
    match version {
        Some(TLS13) => {}
        Some(v) => return Err(FlightError::NotTls13(v)),
        None => return Err(FlightError::NotTls13(legacy)),
    }
    Ok((ServerHelloLayout { cipher, compression, extensions }, sid_len))
}

/// Which kind of Telegram client a learning ClientHello stands for. The answer of a site
/// depends on what the hello offers (ALPN decides EncryptedExtensions, the cipher order the
/// suite of a site that follows the client's preference), so each is learned apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProbeHello {
    /// TDLib's default template (Android, desktop, TDLib apps): AES-128 first, ALPN h2 and http/1.1.
    Default,
    /// TDLib's Apple template: AES-256 first, ALPN http/1.1 only.
    Apple,
}

impl ProbeHello {
    pub const ALL: [ProbeHello; 2] = [ProbeHello::Default, ProbeHello::Apple];

    pub fn name(self) -> &'static str {
        match self {
            ProbeHello::Default => "default",
            ProbeHello::Apple => "apple",
        }
    }

    /// The TLS 1.3 suites this hello offers, in its order.
    pub fn tls13_ciphers(self) -> [u16; 3] {
        match self {
            ProbeHello::Default => [0x1301, 0x1302, 0x1303],
            ProbeHello::Apple => [0x1302, 0x1301, 0x1303],
        }
    }

    /// The variant a client's hello is closest to: by whether it offers HTTP/2 in ALPN.
    pub fn closest(offers_h2: bool) -> ProbeHello {
        if offers_h2 {
            ProbeHello::Default
        } else {
            ProbeHello::Apple
        }
    }
}

fn push_ext(out: &mut Vec<u8>, kind: u16, body: &[u8]) {
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&(body.len() as u16).to_be_bytes());
    out.extend_from_slice(body);
}

fn with_len16(body: &[u8]) -> Vec<u8> {
    let mut v = (body.len() as u16).to_be_bytes().to_vec();
    v.extend_from_slice(body);
    v
}

/// A ClientHello record shaped like TDLib's for `domain` (docs/protocol.md §4.1: GREASE, a Chrome-like
/// cipher list, X25519MLKEM768 and x25519 key shares, ECH GREASE, extensions in random order),
/// with a random `random` (it is not signed: this hello asks a real site, not a proxy).
/// `fill` supplies randomness. `x25519_share` is the client's x25519 public key.
pub fn probe_client_hello(domain: &str, kind: ProbeHello, x25519_share: &[u8; 32], fill: &mut dyn FnMut(&mut [u8])) -> Vec<u8> {
    let mut rnd = |n: usize| {
        let mut v = vec![0u8; n];
        fill(&mut v);
        v
    };
    // GREASE values as TDLib draws them: 0x?a?a, neighbours distinct.
    let mut grease = rnd(7);
    for g in grease.iter_mut() {
        *g = (*g & 0xf0) | 0x0a;
    }
    for i in 1..grease.len() {
        if grease[i] == grease[i - 1] {
            grease[i] ^= 0x10;
        }
    }
    let g = |i: usize| [grease[i], grease[i]];

    let mut suites = g(0).to_vec();
    for c in kind.tls13_ciphers() {
        suites.extend_from_slice(&c.to_be_bytes());
    }
    suites.extend_from_slice(&[
        0xc0, 0x2b, 0xc0, 0x2f, 0xc0, 0x2c, 0xc0, 0x30, 0xcc, 0xa9, 0xcc, 0xa8, 0xc0, 0x13, 0xc0, 0x14, 0x00, 0x9c, 0x00, 0x9d, 0x00, 0x2f, 0x00, 0x35,
    ]);

    let name = &domain.as_bytes()[..domain.len().min(253)];
    let mut sni = vec![0x00];
    sni.extend_from_slice(&with_len16(name));
    let alpn: &[u8] = match kind {
        ProbeHello::Default => b"\x02h2\x08http/1.1",
        ProbeHello::Apple => b"\x08http/1.1",
    };
    // ML-KEM-768 encapsulation key: 384 pairs of 12-bit coefficients below q = 3329, then rho.
    let mut mlkem = Vec::with_capacity(1184);
    for chunk in rnd(384 * 4).chunks_exact(4) {
        let a = u16::from_le_bytes([chunk[0], chunk[1]]) % 3329;
        let b = u16::from_le_bytes([chunk[2], chunk[3]]) % 3329;
        mlkem.extend_from_slice(&[(a & 0xff) as u8, ((a >> 8) | ((b & 0x0f) << 4)) as u8, (b >> 4) as u8]);
    }
    mlkem.extend_from_slice(&rnd(32));
    let mut shares = g(4).to_vec();
    shares.extend_from_slice(&[0x00, 0x01, 0x00]);
    shares.extend_from_slice(&GROUP_X25519_MLKEM768.to_be_bytes());
    shares.extend_from_slice(&((mlkem.len() + 32) as u16).to_be_bytes());
    shares.extend_from_slice(&mlkem);
    shares.extend_from_slice(x25519_share);
    shares.extend_from_slice(&GROUP_X25519.to_be_bytes());
    shares.extend_from_slice(&[0x00, 0x20]);
    shares.extend_from_slice(x25519_share);
    let mut groups = g(4).to_vec();
    groups.extend_from_slice(&[0x11, 0xec, 0x00, 0x1d, 0x00, 0x17, 0x00, 0x18]);
    let mut versions = vec![0x06];
    versions.extend_from_slice(&g(6));
    versions.extend_from_slice(&[0x03, 0x04, 0x03, 0x03]);
    let mut ech = vec![0x00, 0x00, 0x01, 0x00, 0x01];
    ech.extend_from_slice(&rnd(1));
    ech.extend_from_slice(&[0x00, 0x20]);
    ech.extend_from_slice(&rnd(32));
    let ech_len = 144 + 32 * (rnd(1)[0] as usize % 4);
    ech.extend_from_slice(&with_len16(&rnd(ech_len)));

    let mut parts: Vec<Vec<u8>> = Vec::new();
    let mut part = |kind: u16, body: &[u8]| {
        let mut v = Vec::new();
        push_ext(&mut v, kind, body);
        parts.push(v);
    };
    part(0x0000, &with_len16(&sni));
    part(0x0005, &[0x01, 0x00, 0x00, 0x00, 0x00]);
    part(0x000a, &with_len16(&groups));
    part(0x000b, &[0x01, 0x00]);
    part(0x000d, &with_len16(&[0x04, 0x03, 0x08, 0x04, 0x04, 0x01, 0x05, 0x03, 0x08, 0x05, 0x05, 0x01, 0x08, 0x06, 0x06, 0x01]));
    part(0x0010, &with_len16(alpn));
    part(0x0012, &[]);
    part(0x0017, &[]);
    part(0x001b, &[0x02, 0x00, 0x02]);
    part(0x0023, &[]);
    part(0x002b, &versions);
    part(0x002d, &[0x01, 0x01]);
    part(0x0033, &with_len16(&shares));
    part(0x44cd, &[0x00, 0x03, 0x02, 0x68, 0x32]);
    part(0xfe0d, &ech);
    part(0xff01, &[0x00]);
    // Fisher-Yates with the caller's randomness, as TDLib permutes its extensions.
    let order = rnd(parts.len() * 2);
    for i in (1..parts.len()).rev() {
        let j = u16::from_le_bytes([order[2 * i], order[2 * i + 1]]) as usize % (i + 1);
        parts.swap(i, j);
    }
    let mut exts = Vec::new();
    push_ext(&mut exts, u16::from_be_bytes(g(2)), &[]);
    for p in &parts {
        exts.extend_from_slice(p);
    }
    push_ext(&mut exts, u16::from_be_bytes(g(3)), &[0x00]);

    let mut body = vec![0x03, 0x03];
    body.extend_from_slice(&rnd(32));
    body.push(32);
    body.extend_from_slice(&rnd(32));
    body.extend_from_slice(&with_len16(&suites));
    body.extend_from_slice(&[0x01, 0x00]);
    body.extend_from_slice(&with_len16(&exts));
    crate::faketls::client_hello_record(&body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faketls::{parse_hello_fields, read_client_hello, HelloRead};

    fn counter_fill() -> impl FnMut(&mut [u8]) {
        let mut x: u32 = 0x1234_5678;
        move |buf: &mut [u8]| {
            for b in buf {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                *b = x as u8;
            }
        }
    }

    /// What `openssl s_server` (OpenSSL 3.0) answered a TDLib-shaped hello on this machine:
    /// ServerHello with supported_versions before key_share, CCS, four encrypted records.
    fn openssl_like_flight() -> Vec<u8> {
        let mut sh = vec![0x02, 0, 0, 0];
        let mut body = vec![0x03, 0x03];
        body.extend_from_slice(&[0x42; 32]);
        body.push(32);
        body.extend_from_slice(&[0x24; 32]);
        body.extend_from_slice(&[0x13, 0x01, 0x00]);
        let mut ext = vec![0x00, 0x2b, 0x00, 0x02, 0x03, 0x04, 0x00, 0x33, 0x00, 0x24, 0x00, 0x1d, 0x00, 0x20];
        ext.extend_from_slice(&[0x55; 32]);
        body.extend_from_slice(&with_len16(&ext));
        sh[3] = body.len() as u8;
        sh.extend_from_slice(&body);
        let mut out = vec![0x16, 0x03, 0x03];
        out.extend_from_slice(&(sh.len() as u16).to_be_bytes());
        out.extend_from_slice(&sh);
        out.extend_from_slice(&[0x14, 0x03, 0x03, 0x00, 0x01, 0x01]);
        for n in [23usize, 813, 281, 53] {
            out.extend_from_slice(&[0x17, 0x03, 0x03]);
            out.extend_from_slice(&(n as u16).to_be_bytes());
            out.extend(std::iter::repeat_n(0xaa, n));
        }
        out
    }

    #[test]
    fn an_openssl_flight_is_read_as_layout_ccs_and_records() {
        let wire = openssl_like_flight();
        let f = parse_flight(&wire).unwrap();
        assert_eq!(f.layout.cipher, 0x1301);
        assert_eq!(f.layout.extensions, vec![HelloExtension::SupportedVersions(TLS13), HelloExtension::KeyShare { group: GROUP_X25519, len: 32 }]);
        assert_eq!(f.layout.ja3s(), "771,4865,43-51");
        assert_eq!(f.layout.extensions_len(), 46);
        assert!(f.change_cipher_spec);
        assert_eq!(f.encrypted, vec![23, 813, 281, 53]);
        assert_eq!(f.collapsed_len(), 23 + 813 + 281 + 53 + 15);
        assert_eq!(f.session_id_len, 32);
        // A record cut off at the end (still arriving) is left out.
        assert_eq!(parse_flight(&wire[..wire.len() - 10]).unwrap().encrypted, vec![23, 813, 281]);
    }

    #[test]
    fn refusals_are_named() {
        assert_eq!(parse_flight(&[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28]), Err(FlightError::Alert { level: 2, description: 40 }));
        assert_eq!(parse_flight(b"HTTP/1.1 400 Bad Request\r\n"), Err(FlightError::NotServerHello));
        let mut wire = openssl_like_flight();
        wire[11..43].copy_from_slice(&HRR_RANDOM);
        assert_eq!(parse_flight(&wire), Err(FlightError::HelloRetryRequest));
        let mut tls12 = openssl_like_flight();
        tls12[85..87].copy_from_slice(&[0x03, 0x03]);
        assert_eq!(parse_flight(&tls12), Err(FlightError::NotTls13(0x0303)));
        assert_eq!(parse_flight(&openssl_like_flight()[..60]), Err(FlightError::Incomplete));
        // 1.3 is chosen only through supported_versions, never through the legacy field (fuzz).
        let mut legacy13 = openssl_like_flight();
        legacy13[9..11].copy_from_slice(&[0x03, 0x04]);
        legacy13[81..87].copy_from_slice(&[0x00, 0x2c, 0x00, 0x02, 0x03, 0x04]);
        assert_eq!(parse_flight(&legacy13), Err(FlightError::NotTls13(0x0304)));
    }

    #[test]
    fn collapsed_length_never_exceeds_the_tls_record_limit() {
        assert_eq!(collapsed_len(&[16384, 16384]), MAX_CIPHERTEXT_RECORD);
        assert_eq!(collapsed_len(&[]), 0);
        assert_eq!(collapsed_len(&[100]), 100);
    }

    #[test]
    fn probe_hellos_parse_as_the_proxy_reads_client_hellos() {
        let mut fill = counter_fill();
        for kind in ProbeHello::ALL {
            let hello = probe_client_hello("cover.example", kind, &[9; 32], &mut fill);
            let HelloRead::Complete { consumed, canonical } = read_client_hello(&hello).unwrap() else { panic!("whole hello") };
            assert_eq!(consumed, hello.len());
            let f = parse_hello_fields(&canonical).unwrap();
            assert_eq!(f.sni.as_deref(), Some("cover.example"));
            assert_eq!(f.first_cipher, Some(kind.tls13_ciphers()[0]));
            assert_eq!(f.offers_h2, kind == ProbeHello::Default);
            assert_eq!(ProbeHello::closest(f.offers_h2), kind);
            assert!(hello.len() > 1700, "{} bytes: the ML-KEM share makes it as large as TDLib's", hello.len());
        }
    }
}
