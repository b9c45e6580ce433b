//! Does a server speak TLS 1.3? Send a ClientHello that offers TLS 1.3 (with an x25519 key
//! share, so a 1.3 server answers with a ServerHello straight away) and 1.2, and read the
//! version the server picks from its ServerHello (`supported_versions`, RFC 8446 §4.2.1).
//!
//! No key exchange is completed and no certificate is checked: the fake-TLS ServerHello a
//! proxy imitates is the 1.3 one (docs/protocol.md §4.7), so what matters is that the cover domain
//! answers 1.3 the way we do. No crypto library is needed for that.
//!
//! The ServerHello's `key_share` (RFC 8446 §4.2.8) says which group the server picked; a
//! HelloRetryRequest names the group it wants instead. Our hello offers only an X25519 share
//! (as Telegram's clients do), so a cover that answers with X25519 straight away is one whose
//! ServerHello looks like the one the proxy sends (`ask_group`, used by `doctor`).
//!
//! Used by `doctor` (the configured cover domains) and by the domain check of
//! `add-fake-tls-domain` / `add-user --fake-tls`.

use rand::RngCore;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// What the server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsAnswer {
    /// ServerHello selecting this version (0x0304 = TLS 1.3, 0x0303 = TLS 1.2).
    Version(u16),
    /// A HelloRetryRequest: the server speaks TLS 1.3 but wants another key share.
    RetryRequest,
    /// A TLS alert (level, description).
    Alert(u8, u8),
    /// Anything else.
    NotTls(String),
}

impl TlsAnswer {
    /// The answer of a server that speaks TLS 1.3 (a HelloRetryRequest is one too).
    pub fn is_tls13(&self) -> bool {
        matches!(self, TlsAnswer::Version(0x0304) | TlsAnswer::RetryRequest)
    }

    /// What the server did, for a message: "chose TLS 1.2", "answered a TLS alert ...".
    pub fn describe(&self) -> String {
        match self {
            TlsAnswer::Version(0x0304) | TlsAnswer::RetryRequest => "answers TLS 1.3".to_string(),
            TlsAnswer::Version(0x0303) => "chose TLS 1.2, not 1.3".to_string(),
            TlsAnswer::Version(v) => format!("chose TLS version {v:#06x}, not 1.3"),
            TlsAnswer::Alert(level, description) => format!("answered a TLS alert (level {level}, description {description})"),
            TlsAnswer::NotTls(m) => m.clone(),
        }
    }
}

/// The named group X25519 (RFC 8446 §4.2.7).
pub const X25519: u16 = 0x001d;

/// A named group's usual name (`X25519`, `secp256r1`, ...), or its number.
pub fn group_name(group: u16) -> String {
    match group {
        0x001d => "X25519".into(),
        0x0017 => "secp256r1".into(),
        0x0018 => "secp384r1".into(),
        0x0019 => "secp521r1".into(),
        0x001e => "X448".into(),
        0x11ec => "X25519MLKEM768".into(),
        g => format!("group {g:#06x}"),
    }
}

/// Send a ClientHello for `sni` on `s` and read until the answer is understood. The caller
/// bounds the time.
pub async fn ask<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S, sni: &str) -> std::io::Result<TlsAnswer> {
    ask_group(s, sni).await.map(|(a, _)| a)
}

/// As [`ask`], with the group of the ServerHello's (or HelloRetryRequest's) `key_share`.
pub async fn ask_group<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S, sni: &str) -> std::io::Result<(TlsAnswer, Option<u16>)> {
    s.write_all(&client_hello(sni)).await?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Ok(parse_with_group(&buf).unwrap_or((TlsAnswer::NotTls("closed before a ServerHello".into()), None)));
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(a) = parse_with_group(&buf) {
            return Ok(a);
        }
    }
}

const HRR_RANDOM: [u8; 32] = [
    0xCF, 0x21, 0xAD, 0x74, 0xE5, 0x9A, 0x61, 0x11, 0xBE, 0x1D, 0x8C, 0x02, 0x1E, 0x65, 0xB8, 0x91, 0xC2, 0xA2, 0x11, 0x16, 0x7A, 0xBB, 0x8C, 0x5E, 0x07, 0x9E,
    0x09, 0xE2, 0xC8, 0xA8, 0x33, 0x9C,
];

fn ext(out: &mut Vec<u8>, kind: u16, body: &[u8]) {
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&(body.len() as u16).to_be_bytes());
    out.extend_from_slice(body);
}

/// A ClientHello record for `sni`.
pub fn client_hello(sni: &str) -> Vec<u8> {
    let mut rng = rand::thread_rng();
    let mut body = vec![0x03, 0x03];
    let mut random = [0u8; 32];
    rng.fill_bytes(&mut random);
    body.extend_from_slice(&random);
    let mut sid = [0u8; 32];
    rng.fill_bytes(&mut sid);
    body.push(32);
    body.extend_from_slice(&sid);
    let suites: [u16; 7] = [0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030];
    body.extend_from_slice(&((suites.len() * 2) as u16).to_be_bytes());
    for s in suites {
        body.extend_from_slice(&s.to_be_bytes());
    }
    body.extend_from_slice(&[0x01, 0x00]);
    let mut exts = Vec::new();
    let name = sni.as_bytes();
    let mut sn = Vec::new();
    sn.extend_from_slice(&((name.len() + 3) as u16).to_be_bytes());
    sn.push(0);
    sn.extend_from_slice(&(name.len() as u16).to_be_bytes());
    sn.extend_from_slice(name);
    ext(&mut exts, 0x0000, &sn);
    ext(&mut exts, 0x000a, &[0x00, 0x04, 0x00, 0x1d, 0x00, 0x17]);
    ext(&mut exts, 0x000b, &[0x01, 0x00]);
    let sigs: [u16; 9] = [0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601, 0x0807];
    let mut sa = ((sigs.len() * 2) as u16).to_be_bytes().to_vec();
    for s in sigs {
        sa.extend_from_slice(&s.to_be_bytes());
    }
    ext(&mut exts, 0x000d, &sa);
    ext(&mut exts, 0x002b, &[0x04, 0x03, 0x04, 0x03, 0x03]);
    ext(&mut exts, 0x002d, &[0x01, 0x01]);
    let mut key = [0u8; 32];
    rng.fill_bytes(&mut key);
    let mut ks = vec![0x00, 0x24, 0x00, 0x1d, 0x00, 0x20];
    ks.extend_from_slice(&key);
    ext(&mut exts, 0x0033, &ks);
    body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
    body.extend_from_slice(&exts);
    let mut hs = vec![0x01];
    hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend_from_slice(&body);
    let mut rec = vec![0x16, 0x03, 0x01];
    rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    rec.extend_from_slice(&hs);
    rec
}

/// Parse what came back; `None` while more bytes are needed.
#[cfg(test)]
pub fn parse_answer(buf: &[u8]) -> Option<TlsAnswer> {
    parse_with_group(buf).map(|(a, _)| a)
}

/// As [`parse_answer`], with the `key_share` group of a ServerHello or HelloRetryRequest.
pub fn parse_with_group(buf: &[u8]) -> Option<(TlsAnswer, Option<u16>)> {
    let no_group = |a: TlsAnswer| Some((a, None));
    if buf.len() < 5 {
        return None;
    }
    match buf[0] {
        0x15 => {
            if buf.len() < 7 {
                return None;
            }
            return no_group(TlsAnswer::Alert(buf[5], buf[6]));
        }
        0x16 => {}
        _ => return no_group(TlsAnswer::NotTls(format!("the answer starts with {:02x?}, not a TLS record", &buf[..5.min(buf.len())]))),
    }
    // Gather handshake bytes across records until the first message is complete.
    let mut hs = Vec::new();
    let mut rest = buf;
    while rest.len() >= 5 && rest[0] == 0x16 {
        let len = u16::from_be_bytes([rest[3], rest[4]]) as usize;
        if rest.len() < 5 + len {
            hs.extend_from_slice(&rest[5..]);
            break;
        }
        hs.extend_from_slice(&rest[5..5 + len]);
        rest = &rest[5 + len..];
    }
    if hs.len() < 4 {
        return None;
    }
    if hs[0] != 0x02 {
        return no_group(TlsAnswer::NotTls(format!("first handshake message is type {}, not ServerHello", hs[0])));
    }
    let mlen = u32::from_be_bytes([0, hs[1], hs[2], hs[3]]) as usize;
    if hs.len() < 4 + mlen {
        return if buf.len() > 64 * 1024 { no_group(TlsAnswer::NotTls("ServerHello too long".into())) } else { None };
    }
    let m = &hs[4..4 + mlen];
    let bad = || no_group(TlsAnswer::NotTls("malformed ServerHello".into()));
    if m.len() < 35 {
        return bad();
    }
    let legacy = u16::from_be_bytes([m[0], m[1]]);
    let is_hrr = m[2..34] == HRR_RANDOM;
    let sid_len = m[34] as usize;
    let mut p = 35 + sid_len + 3;
    if m.len() < p {
        return bad();
    }
    if m.len() < p + 2 {
        return no_group(TlsAnswer::Version(legacy));
    }
    let ext_len = u16::from_be_bytes([m[p], m[p + 1]]) as usize;
    p += 2;
    let end = (p + ext_len).min(m.len());
    let mut version = legacy;
    let mut group = None;
    while p + 4 <= end {
        let kind = u16::from_be_bytes([m[p], m[p + 1]]);
        let len = u16::from_be_bytes([m[p + 2], m[p + 3]]) as usize;
        if kind == 0x002b && len == 2 && p + 6 <= end {
            version = u16::from_be_bytes([m[p + 4], m[p + 5]]);
        }
        // key_share: a ServerHello carries group + key, a HelloRetryRequest the group alone.
        if kind == 0x0033 && len >= 2 && p + 6 <= end {
            group = Some(u16::from_be_bytes([m[p + 4], m[p + 5]]));
        }
        p += 4 + len;
    }
    if is_hrr && version == 0x0304 {
        return Some((TlsAnswer::RetryRequest, group));
    }
    Some((TlsAnswer::Version(version), group))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_hello(version_ext: Option<u16>, random: [u8; 32]) -> Vec<u8> {
        let mut m = vec![0x03, 0x03];
        m.extend_from_slice(&random);
        m.push(0);
        m.extend_from_slice(&[0x13, 0x01, 0x00]);
        let mut exts = Vec::new();
        if let Some(v) = version_ext {
            ext(&mut exts, 0x002b, &v.to_be_bytes());
        }
        ext(&mut exts, 0x0033, &[0x00, 0x1d, 0x00, 0x00]);
        m.extend_from_slice(&(exts.len() as u16).to_be_bytes());
        m.extend_from_slice(&exts);
        let mut hs = vec![0x02];
        hs.extend_from_slice(&(m.len() as u32).to_be_bytes()[1..]);
        hs.extend_from_slice(&m);
        let mut rec = vec![0x16, 0x03, 0x03];
        rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
        rec.extend_from_slice(&hs);
        rec
    }

    #[test]
    fn reads_versions_alerts_and_partial_input() {
        let h13 = server_hello(Some(0x0304), [7; 32]);
        assert_eq!(parse_answer(&h13), Some(TlsAnswer::Version(0x0304)));
        assert_eq!(parse_with_group(&h13), Some((TlsAnswer::Version(0x0304), Some(X25519))));
        assert_eq!(group_name(X25519), "X25519");
        assert_eq!(group_name(0x0017), "secp256r1");
        assert_eq!(parse_answer(&h13[..20]), None, "incomplete: wait for more");
        assert_eq!(parse_answer(&server_hello(None, [7; 32])), Some(TlsAnswer::Version(0x0303)));
        assert_eq!(parse_answer(&server_hello(Some(0x0304), HRR_RANDOM)), Some(TlsAnswer::RetryRequest));
        assert_eq!(parse_answer(&[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28]), Some(TlsAnswer::Alert(2, 40)));
        assert!(matches!(parse_answer(b"HTTP/1.1 400 Bad Request\r\n"), Some(TlsAnswer::NotTls(_))));
        // Our own hello parses as a TLS record carrying a ClientHello with the SNI.
        let ch = client_hello("cover.test");
        assert_eq!(&ch[..3], &[0x16, 0x03, 0x01]);
        assert_eq!(u16::from_be_bytes([ch[3], ch[4]]) as usize, ch.len() - 5);
        assert!(ch.windows(10).any(|w| w == b"cover.test"));
    }
}
