//! The PROXY protocol header in front of the handshake: who the client really is.
//!
//! Behind HAProxy (`send-proxy-v2`) every connection comes from HAProxy's address; the header
//! it sends first carries the client's. We accept a header only from `server.trusted_proxies`
//! when `server.proxy_protocol` is on; from there a header is optional (health checks and local
//! tools may connect directly). A header from any other source is a failed handshake with
//! reason `untrusted_proxy`, logged with the socket's address: nobody else may choose the
//! address that logs, fail2ban, statistics and limits see.
//!
//! Parsing is `mtproxy_proto::proxy_protocol` (pure); this module owns the reads. Bytes read
//! past the header are the start of the MTProto handshake and are handed on in
//! [`HandshakeState::consumed`], so a failed handshake is fronted without the header.

use std::io;
use std::net::SocketAddr;

use mtproxy_proto::proxy_protocol::{self, Parsed, V1_PREFIX, V2_SIGNATURE};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::ProxyProtocol;
use crate::events::{ClientAddr, FailReason};
use crate::handshake::HandshakeState;

/// What to do with a new connection once its first bytes are in.
pub enum Admission {
    /// Run the handshake for `client` (the header's source, or the socket's peer).
    Proceed(SocketAddr, HandshakeState),
    /// The peer closed (or shutdown began) before sending anything: nothing to log.
    Quiet,
    /// A failed handshake: log it with the socket's peer and front `state.consumed`.
    Fail(HandshakeState, FailReason),
}

/// Why [`read_header`] did not produce an address.
#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    #[error("the peer closed the connection")]
    Closed,
    #[error("reading the first bytes: {0}")]
    Io(#[from] io::Error),
    #[error("PROXY header refused: {}", .0.as_str())]
    Rejected(FailReason),
}

/// Read the first bytes of `stream` (until `deadline`, the handshake's) and decide the
/// client's address.
pub async fn admit<S: AsyncRead + Unpin>(
    stream: &mut S,
    peer: SocketAddr,
    settings: &ProxyProtocol,
    deadline: Instant,
    close_all: &CancellationToken,
) -> Admission {
    let mut buf = Vec::new();
    let result = tokio::select! {
        r = tokio::time::timeout_at(deadline, read_header(stream, peer, settings, &mut buf)) => r,
        _ = close_all.cancelled() => return Admission::Quiet,
    };
    let st = |consumed| HandshakeState { consumed, replied: false };
    match result {
        Ok(Ok(client)) => Admission::Proceed(client, st(buf)),
        Ok(Err(HeaderError::Rejected(reason))) => Admission::Fail(st(buf), reason),
        Ok(Err(_)) if buf.is_empty() => Admission::Quiet,
        Ok(Err(_)) => Admission::Fail(st(buf), FailReason::Malformed),
        Err(_) => Admission::Fail(st(buf), FailReason::Timeout),
    }
}

/// Read until the stream's start is known to be a header or not; on success the header is
/// removed from `buf` and what follows it stays.
pub async fn read_header<S: AsyncRead + Unpin>(
    stream: &mut S,
    peer: SocketAddr,
    settings: &ProxyProtocol,
    buf: &mut Vec<u8>,
) -> Result<SocketAddr, HeaderError> {
    let trusted = settings.trusts(peer.ip());
    loop {
        if !buf.is_empty() {
            if !trusted {
                if !proxy_protocol::starts_like_proxy(buf) {
                    return Ok(peer);
                }
                if buf.starts_with(V1_PREFIX) || buf.starts_with(&V2_SIGNATURE) {
                    return Err(HeaderError::Rejected(FailReason::UntrustedProxy));
                }
            } else {
                match proxy_protocol::parse(buf) {
                    Ok(Parsed::NotProxy) => return Ok(peer),
                    Ok(Parsed::Incomplete) => {}
                    Ok(Parsed::Complete { header, len }) => {
                        buf.drain(..len);
                        let client = header.addresses.map(|a| SocketAddr::new(a.source.ip().to_canonical(), a.source.port())).unwrap_or(peer);
                        tracing::debug!(front = %ClientAddr(peer), client = %ClientAddr(client), "PROXY header accepted");
                        return Ok(client);
                    }
                    Err(e) => {
                        tracing::debug!(front = %ClientAddr(peer), error = %e, "PROXY header refused");
                        return Err(HeaderError::Rejected(FailReason::Malformed));
                    }
                }
            }
        }
        buf.reserve(4096);
        if stream.read_buf(buf).await? == 0 {
            return Err(if buf.is_empty() { HeaderError::Closed } else { HeaderError::Io(io::ErrorKind::UnexpectedEof.into()) });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Cidr;
    use mtproxy_proto::proxy_protocol::{encode_v2, Addresses};
    use std::time::Duration;

    fn settings(enabled: bool) -> ProxyProtocol {
        ProxyProtocol { enabled, trusted: vec![Cidr::parse("127.0.0.0/8").unwrap()] }
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// Feeds `bytes` one byte per read, exercising every incomplete path, then closes.
    fn reader(bytes: &[u8]) -> tokio::io::DuplexStream {
        use tokio::io::AsyncWriteExt;
        let (mut w, r) = tokio::io::duplex(1);
        let data = bytes.to_vec();
        tokio::spawn(async move {
            for b in data {
                if w.write_all(&[b]).await.is_err() {
                    return;
                }
            }
        });
        r
    }

    async fn run(bytes: &[u8], peer: &str, enabled: bool) -> (Result<SocketAddr, HeaderError>, Vec<u8>) {
        let mut buf = Vec::new();
        let r = read_header(&mut reader(bytes), sa(peer), &settings(enabled), &mut buf).await;
        (r, buf)
    }

    #[tokio::test]
    async fn trusted_v2_sets_the_client_and_keeps_the_rest() {
        let a = Addresses { source: sa("203.0.113.9:51234"), destination: sa("192.0.2.1:443") };
        let mut bytes = encode_v2(&a, &[0x04, 0x00, 0x01, 0x00]);
        bytes.extend_from_slice(b"\x16\x03\x01hello");
        let (r, rest) = run(&bytes, "127.0.0.1:40000", true).await;
        assert_eq!(r.unwrap(), sa("203.0.113.9:51234"));
        // One byte per read: the header ends exactly at a read boundary.
        assert!(rest.is_empty(), "{rest:?}");
        // All in one read: the bytes after the header stay for the handshake.
        use tokio::io::AsyncWriteExt;
        let (mut w, mut r) = tokio::io::duplex(4096);
        w.write_all(&bytes).await.unwrap();
        let mut buf = Vec::new();
        let client = read_header(&mut r, sa("127.0.0.1:40000"), &settings(true), &mut buf).await.unwrap();
        assert_eq!(client, sa("203.0.113.9:51234"));
        assert_eq!(buf, b"\x16\x03\x01hello");
    }

    #[tokio::test]
    async fn trusted_v1_and_no_header() {
        let (r, _) = run(b"PROXY TCP6 2001:db8::7 2001:db8::1 40000 443\r\nX", "127.0.0.1:1", true).await;
        assert_eq!(r.unwrap(), sa("[2001:db8::7]:40000"));
        let (r, rest) = run(b"\xef\xef\xef\xef", "127.0.0.1:1", true).await;
        assert_eq!(r.unwrap(), sa("127.0.0.1:1"));
        assert_eq!(rest, b"\xef");
        let (r, _) = run(b"PROXY UNKNOWN\r\n", "127.0.0.1:7", true).await;
        assert_eq!(r.unwrap(), sa("127.0.0.1:7"));
    }

    #[tokio::test]
    async fn untrusted_or_disabled_header_is_refused() {
        let a = Addresses { source: sa("198.51.100.1:1"), destination: sa("192.0.2.1:443") };
        for (peer, enabled) in [("192.0.2.50:1000", true), ("127.0.0.1:1000", false)] {
            let (r, rest) = run(&encode_v2(&a, &[]), peer, enabled).await;
            assert!(matches!(r, Err(HeaderError::Rejected(FailReason::UntrustedProxy))), "{r:?}");
            assert_eq!(rest, V2_SIGNATURE);
            let (r, _) = run(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n", peer, enabled).await;
            assert!(matches!(r, Err(HeaderError::Rejected(FailReason::UntrustedProxy))), "{r:?}");
        }
        // Not a header: untouched, whoever sends it.
        let (r, _) = run(b"\x16\x03\x01\x02\x00", "192.0.2.50:1000", true).await;
        assert_eq!(r.unwrap(), sa("192.0.2.50:1000"));
    }

    #[tokio::test]
    async fn broken_trusted_header_is_malformed_and_eof_is_reported() {
        let (r, _) = run(b"PROXY TCP4 1.2.3.4 nope 1 2\r\n", "127.0.0.1:1", true).await;
        assert!(matches!(r, Err(HeaderError::Rejected(FailReason::Malformed))), "{r:?}");
        let (r, _) = run(b"", "127.0.0.1:1", true).await;
        assert!(matches!(r, Err(HeaderError::Closed)), "{r:?}");
        let (r, _) = run(b"PROXY TCP4", "127.0.0.1:1", true).await;
        assert!(matches!(r, Err(HeaderError::Io(_))), "{r:?}");
    }

    #[tokio::test]
    async fn admit_maps_outcomes() {
        let never = CancellationToken::new();
        // Silent peer: timeout.
        let (w, mut r) = tokio::io::duplex(64);
        let a = admit(&mut r, sa("192.0.2.1:5"), &settings(true), Instant::now() + Duration::from_millis(100), &never).await;
        assert!(matches!(a, Admission::Fail(_, FailReason::Timeout)));
        drop(w);
        // Closed without a byte: nothing to log.
        let (w, mut r) = tokio::io::duplex(64);
        drop(w);
        let a = admit(&mut r, sa("192.0.2.1:5"), &settings(true), Instant::now() + Duration::from_secs(5), &never).await;
        assert!(matches!(a, Admission::Quiet));
        // Half a header then EOF from a trusted front: malformed, bytes kept for fronting.
        let a = admit(&mut reader(b"PROXY TCP4 1.2"), sa("127.0.0.1:5"), &settings(true), Instant::now() + Duration::from_secs(5), &never).await;
        match a {
            Admission::Fail(st, FailReason::Malformed) => assert_eq!(st.consumed, b"PROXY TCP4 1.2"),
            _ => panic!("expected a malformed failure"),
        }
        // Untrusted header: the failure carries the header bytes for fronting.
        let a = admit(&mut reader(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n"), sa("192.0.2.1:5"), &settings(true), Instant::now() + Duration::from_secs(5), &never)
            .await;
        assert!(matches!(a, Admission::Fail(_, FailReason::UntrustedProxy)));
    }
}
