//! A tiny HTTP/1.1 GET client for the proxy's own statistics listener and for reading a web
//! server's `Date` header (`doctor`). One request per connection (`Connection: close`), every
//! step bounded by a timeout, responses capped at [`MAX_RESPONSE`] bytes.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest response read (the stats JSON of thousands of users fits).
pub const MAX_RESPONSE: usize = 32 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("cannot connect to {addr}: {source}")]
    Connect { addr: String, source: std::io::Error },
    #[error("{addr} did not answer within {secs} s")]
    Timeout { addr: String, secs: u64 },
    #[error("{addr}: {source}")]
    Io { addr: String, source: std::io::Error },
    #[error("{addr} sent a malformed HTTP response")]
    Malformed { addr: String },
    #[error("{addr}: TLS handshake failed: {message}")]
    Tls { addr: String, message: String },
    #[error("{addr} answered more than {MAX_RESPONSE} bytes")]
    TooLarge { addr: String },
}

trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Stream for T {}

/// A parsed response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// `method path` to `addr` (with `Host: host`), extra header lines already formatted.
pub async fn request(
    addr: SocketAddr,
    host: &str,
    method: &str,
    path: &str,
    extra_headers: &[(String, String)],
    timeout: Duration,
) -> Result<Response, HttpError> {
    request_over(addr, None, host, method, path, extra_headers, timeout).await
}

/// [`request`], over TLS when `tls` is given (the statistics listener with `[stats] tls_cert`).
pub async fn request_over(
    addr: SocketAddr,
    tls: Option<&tokio_rustls::TlsConnector>,
    host: &str,
    method: &str,
    path: &str,
    extra_headers: &[(String, String)],
    timeout: Duration,
) -> Result<Response, HttpError> {
    let name = addr.to_string();
    let work = async {
        let tcp = TcpStream::connect(addr).await.map_err(|source| HttpError::Connect { addr: name.clone(), source })?;
        let mut s: Box<dyn Stream> = match tls {
            None => Box::new(tcp),
            Some(c) => {
                let server = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
                let t = c.connect(server, tcp).await.map_err(|e| HttpError::Tls { addr: name.clone(), message: e.to_string() })?;
                Box::new(t)
            }
        };
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: vless-mtproxy/{}\r\nConnection: close\r\n", env!("CARGO_PKG_VERSION"));
        for (k, v) in extra_headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).await.map_err(|source| HttpError::Io { addr: name.clone(), source })?;
        let mut buf = Vec::new();
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            let n = match s.read(&mut chunk).await {
                Ok(n) => n,
                // A TLS peer that closes without close_notify: the response is complete anyway
                // (Connection: close; the length is checked by the parser).
                Err(e) if tls.is_some() && e.kind() == std::io::ErrorKind::UnexpectedEof => 0,
                Err(source) => return Err(HttpError::Io { addr: name.clone(), source }),
            };
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            if buf.len() > MAX_RESPONSE {
                return Err(HttpError::TooLarge { addr: name.clone() });
            }
            // A HEAD answer has no body: stop at the end of the headers.
            if method == "HEAD" && buf.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
        parse(&buf, method == "HEAD").ok_or_else(|| HttpError::Malformed { addr: name.clone() })
    };
    tokio::time::timeout(timeout, work).await.map_err(|_| HttpError::Timeout { addr: addr.to_string(), secs: timeout.as_secs().max(1) })?
}

fn parse(buf: &[u8], head_only: bool) -> Option<Response> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&buf[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let mut parts = status_line.splitn(3, ' ');
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let status: u16 = parts.next()?.parse().ok()?;
    let headers: Vec<(String, String)> = lines.filter_map(|l| l.split_once(':').map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))).collect();
    let mut body = if head_only { Vec::new() } else { buf[end + 4..].to_vec() };
    let chunked = headers.iter().any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.to_ascii_lowercase().contains("chunked"));
    if chunked && !head_only {
        body = dechunk(&body)?;
    } else if let Some(len) = headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("content-length")).and_then(|(_, v)| v.parse::<usize>().ok()) {
        if !head_only {
            body.truncate(len);
        }
    }
    Some(Response { status, headers, body })
}

fn dechunk(mut b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let nl = b.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&b[..nl]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        b = &b[nl + 2..];
        if size == 0 {
            return Some(out);
        }
        if b.len() < size + 2 {
            return None;
        }
        out.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_chunked() {
        let r = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nDate: x\r\n\r\nhiEXTRA", false).unwrap();
        assert_eq!((r.status, r.body.as_slice(), r.header("date")), (200, &b"hi"[..], Some("x")));
        let r = parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n", false).unwrap();
        assert_eq!(r.body, b"abcde");
        assert!(parse(b"SSH-2.0-OpenSSH\r\n\r\n", false).is_none());
        let r = parse(b"HTTP/1.1 301 Moved\r\nDate: y\r\n\r\n", true).unwrap();
        assert_eq!(r.status, 301);
    }
}
