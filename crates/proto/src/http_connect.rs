//! HTTP CONNECT client side (RFC 9110 §9.3.6), as pure functions: the other way to send the DC
//! leg through an upstream proxy (tinyproxy, squid, a corporate proxy).
//!
//! ```text
//! us -> proxy   CONNECT 149.154.167.51:443 HTTP/1.1\r\n
//!               Host: 149.154.167.51:443\r\n
//!               [Proxy-Authorization: Basic base64(user:password)\r\n]
//!               \r\n
//! proxy -> us   HTTP/1.1 200 Connection established\r\n  (any 2xx)
//!               headers..\r\n
//!               \r\n
//!               then the tunnel's bytes
//! ```
//! The DC goes as an IP literal (brackets for IPv6). [`parse_response`] takes the bytes read
//! so far and returns `Ok(None)` until the header block has ended; a response head longer than
//! [`MAX_RESPONSE_HEAD`] is refused, so a proxy that streams garbage cannot grow our buffer.

use std::net::SocketAddr;

/// The longest response head (status line and headers) accepted.
pub const MAX_RESPONSE_HEAD: usize = 8192;

/// A response that does not open a tunnel.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpConnectError {
    #[error("not an HTTP response: the status line is missing or malformed")]
    BadStatusLine,
    #[error("the proxy answered {code} {reason}")]
    Status { code: u16, reason: String },
    #[error("the response head is longer than {MAX_RESPONSE_HEAD} bytes")]
    TooLong,
}

impl HttpConnectError {
    /// 502 Bad Gateway / 504 Gateway Timeout: the proxy works, the DC did not answer it.
    pub fn is_target_side(&self) -> bool {
        matches!(self, HttpConnectError::Status { code: 502 | 504, .. })
    }
}

/// The request for `target`, with basic authentication when `auth` is given.
pub fn connect_request(target: SocketAddr, auth: Option<(&str, &str)>) -> Vec<u8> {
    let mut out = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some((user, password)) = auth {
        out.push_str("Proxy-Authorization: ");
        out.push_str(&basic_credentials(user, password));
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    out.into_bytes()
}

/// The value of a `Proxy-Authorization` header for basic authentication.
pub fn basic_credentials(user: &str, password: &str) -> String {
    format!("Basic {}", base64(format!("{user}:{password}").as_bytes()))
}

/// `Ok(Some((status, head_len)))` once a 2xx head has ended; bytes after `head_len` belong to
/// the tunnel.
pub fn parse_response(buf: &[u8]) -> Result<Option<(u16, usize)>, HttpConnectError> {
    // A prefix that cannot begin "HTTP/" fails at once, not after 8 KiB.
    let n = buf.len().min(5);
    if buf[..n] != b"HTTP/"[..n] {
        return Err(HttpConnectError::BadStatusLine);
    }
    let Some(end) = find(buf, b"\r\n\r\n").map(|i| i + 4) else {
        if buf.len() > MAX_RESPONSE_HEAD {
            return Err(HttpConnectError::TooLong);
        }
        return Ok(None);
    };
    if end > MAX_RESPONSE_HEAD {
        return Err(HttpConnectError::TooLong);
    }
    let line_end = find(buf, b"\r\n").unwrap_or(end);
    let line = std::str::from_utf8(&buf[..line_end]).map_err(|_| HttpConnectError::BadStatusLine)?;
    let mut parts = line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    let code = parts.next().unwrap_or("");
    let reason = parts.next().unwrap_or("").trim();
    if !(version == "HTTP/1.1" || version == "HTTP/1.0") || code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(HttpConnectError::BadStatusLine);
    }
    let code: u16 = code.parse().map_err(|_| HttpConnectError::BadStatusLine)?;
    if !(200..300).contains(&code) {
        // The reason phrase is the proxy's text: keep it short and printable for the log.
        let reason: String = reason.chars().filter(|c| !c.is_control()).take(80).collect();
        return Err(HttpConnectError::Status { code, reason });
    }
    Ok(Some((code, end)))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Standard base64 with padding (RFC 4648 §4), for the basic credentials.
fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_vectors() {
        for (i, o) in [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg=="), ("Aladdin:open sesame", "QWxhZGRpbjpvcGVuIHNlc2FtZQ==")]
        {
            assert_eq!(base64(i.as_bytes()), o);
        }
    }

    #[test]
    fn request_forms() {
        let r = connect_request("149.154.167.51:443".parse().unwrap(), None);
        assert_eq!(r, b"CONNECT 149.154.167.51:443 HTTP/1.1\r\nHost: 149.154.167.51:443\r\n\r\n");
        let r = String::from_utf8(connect_request("[::1]:443".parse().unwrap(), Some(("Aladdin", "open sesame")))).unwrap();
        assert!(r.starts_with("CONNECT [::1]:443 HTTP/1.1\r\n"));
        assert!(r.contains("Proxy-Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==\r\n"));
    }

    #[test]
    fn responses() {
        let ok = b"HTTP/1.1 200 Connection established\r\nProxy-agent: tinyproxy/1.11.1\r\n\r\n";
        for cut in 0..ok.len() {
            assert_eq!(parse_response(&ok[..cut]), Ok(None), "cut at {cut}");
        }
        assert_eq!(parse_response(ok), Ok(Some((200, ok.len()))));
        let mut more = ok.to_vec();
        more.extend_from_slice(b"tunnel");
        assert_eq!(parse_response(&more), Ok(Some((200, ok.len()))));
        assert_eq!(parse_response(b"HTTP/1.0 200 OK\r\n\r\n"), Ok(Some((200, 19))));
        assert_eq!(
            parse_response(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n"),
            Err(HttpConnectError::Status { code: 407, reason: "Proxy Authentication Required".into() })
        );
        let bad_gw = parse_response(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").unwrap_err();
        assert!(bad_gw.is_target_side());
        assert_eq!(parse_response(b"\x05\x00"), Err(HttpConnectError::BadStatusLine));
        assert_eq!(parse_response(b"HTTP/2 200\r\n\r\n"), Err(HttpConnectError::BadStatusLine));
        assert_eq!(parse_response(b"HTTP/1.1 2000 x\r\n\r\n"), Err(HttpConnectError::BadStatusLine));
        let mut long = b"HTTP/1.1 200 OK\r\n".to_vec();
        long.resize(MAX_RESPONSE_HEAD + 1, b'a');
        assert_eq!(parse_response(&long), Err(HttpConnectError::TooLong));
    }
}
