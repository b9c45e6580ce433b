//! PROXY protocol v1 (text) and v2 (binary) headers, as sent by HAProxy, nginx and load
//! balancers in front of the proxy so that it learns the real client address.
//!
//! Why: when HAProxy routes the fake-TLS SNI on port 443 to us (`send-proxy-v2`), every
//! connection arrives from HAProxy's address. The header restores the client's address for
//! logs, the failed-handshake line (fail2ban), statistics and limits. Only the I/O layer
//! decides whether the sender is trusted; this module only parses.
//!
//! Reference: "The PROXY protocol", versions 1 & 2 (haproxy.org, doc/proxy-protocol.txt).
//!
//! ```text
//! v1:  "PROXY TCP4 198.51.100.22 203.0.113.7 35646 443\r\n"     (at most 107 bytes)
//!      "PROXY TCP6 2001:db8::1 2001:db8::2 35646 443\r\n"
//!      "PROXY UNKNOWN ...\r\n"                                   (use the socket's address)
//!
//! v2:  0                12   13        14        16
//!      +----------------+----+---------+---------+---------------------------+---------+
//!      | \r\n\r\n\0\r\nQUIT\n | ver|cmd | fam|prot | len (BE) | addresses | TLVs ...  |
//!      +----------------+----+---------+---------+---------------------------+---------+
//!      ver = 2; cmd 0 LOCAL (health check: use the socket's address), 1 PROXY
//!      fam 1 INET: src4 dst4 sport dport (12 bytes); 2 INET6: (36 bytes); 0/3: no usable address
//! ```
//! TLVs (ALPN, authority, SSL, ...) are skipped. A v2 header longer than [`MAX_V2_LEN`] is
//! refused, so a peer cannot make us buffer 64 KiB before the handshake.
//!
//! Usage: call [`parse`] on the bytes read so far; on [`Parsed::Incomplete`] read more and call
//! again. [`Parsed::NotProxy`] means the stream does not start with a PROXY signature (the
//! MTProto handshake starts right away).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The v2 signature, 12 bytes.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// The v1 prefix.
pub const V1_PREFIX: &[u8; 6] = b"PROXY ";
/// Longest v1 line, CRLF included (specification section 2.1).
pub const MAX_V1_LEN: usize = 107;
/// Longest v2 header we accept (16-byte fixed part + addresses + TLVs). HAProxy's headers with
/// the usual TLVs stay far below; the specification allows up to 16 + 65535.
pub const MAX_V2_LEN: usize = 16 + 2048;

/// Which version the header was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

/// A parsed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub version: Version,
    /// `Some` when the header names the original TCP connection (v1 TCP4/TCP6, v2 PROXY with
    /// INET/INET6). `None` for v1 UNKNOWN, v2 LOCAL and v2 families without an IP address:
    /// the receiver then uses the socket's own peer address.
    pub addresses: Option<Addresses>,
}

/// The original connection's endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addresses {
    pub source: SocketAddr,
    pub destination: SocketAddr,
}

/// Result of looking at the first bytes of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// The bytes so far are a prefix of a header: read more.
    Incomplete,
    /// The stream does not start with a PROXY protocol signature.
    NotProxy,
    /// A whole header occupying the first `len` bytes.
    Complete { header: Header, len: usize },
}

/// A stream that starts with a PROXY signature but not with a valid header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyHeaderError {
    #[error("PROXY v1 line longer than {MAX_V1_LEN} bytes without CRLF")]
    V1TooLong,
    #[error("PROXY v1 line is malformed: {0}")]
    V1Syntax(&'static str),
    #[error("PROXY v2 version {0} is not 2")]
    V2Version(u8),
    #[error("PROXY v2 command {0} is neither LOCAL (0) nor PROXY (1)")]
    V2Command(u8),
    #[error("PROXY v2 address family/protocol byte {0:#04x} is not defined")]
    V2Family(u8),
    #[error("PROXY v2 address block of {got} bytes is shorter than the {need} its family needs")]
    V2ShortAddresses { got: usize, need: usize },
    #[error("PROXY v2 header of {0} bytes is longer than the {MAX_V2_LEN} accepted")]
    V2TooLong(usize),
}

/// True when `buf` starts with (a prefix of) a PROXY v1 or v2 signature. Cheap: used to
/// recognise a header sent by a source that is not trusted.
pub fn starts_like_proxy(buf: &[u8]) -> bool {
    let n = buf.len().min(V2_SIGNATURE.len());
    let m = buf.len().min(V1_PREFIX.len());
    n > 0 && (buf[..n] == V2_SIGNATURE[..n] || buf[..m] == V1_PREFIX[..m])
}

/// Parse a header at the start of `buf`.
pub fn parse(buf: &[u8]) -> Result<Parsed, ProxyHeaderError> {
    if buf.is_empty() {
        return Ok(Parsed::Incomplete);
    }
    let n = buf.len().min(V2_SIGNATURE.len());
    if buf[..n] == V2_SIGNATURE[..n] {
        return if n < V2_SIGNATURE.len() { Ok(Parsed::Incomplete) } else { parse_v2(buf) };
    }
    let m = buf.len().min(V1_PREFIX.len());
    if buf[..m] == V1_PREFIX[..m] {
        return if m < V1_PREFIX.len() { Ok(Parsed::Incomplete) } else { parse_v1(buf) };
    }
    Ok(Parsed::NotProxy)
}

fn parse_v1(buf: &[u8]) -> Result<Parsed, ProxyHeaderError> {
    let window = &buf[..buf.len().min(MAX_V1_LEN)];
    let Some(cr) = window.windows(2).position(|w| w == b"\r\n") else {
        if buf.len() >= MAX_V1_LEN {
            return Err(ProxyHeaderError::V1TooLong);
        }
        // A bare LF or a non-printable byte can never become a valid line: fail early.
        if window.iter().any(|b| *b == b'\n' || (*b != b'\r' && !(0x20..0x7f).contains(b))) {
            return Err(ProxyHeaderError::V1Syntax("contains a byte that is not printable ASCII"));
        }
        return Ok(Parsed::Incomplete);
    };
    let len = cr + 2;
    let line = std::str::from_utf8(&buf[V1_PREFIX.len()..cr]).map_err(|_| ProxyHeaderError::V1Syntax("not ASCII"))?;
    if !line.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(ProxyHeaderError::V1Syntax("contains a byte that is not printable ASCII"));
    }
    let mut parts = line.split(' ');
    let proto = parts.next().unwrap_or("");
    if proto == "UNKNOWN" {
        return Ok(Parsed::Complete { header: Header { version: Version::V1, addresses: None }, len });
    }
    let v6 = match proto {
        "TCP4" => false,
        "TCP6" => true,
        _ => return Err(ProxyHeaderError::V1Syntax("protocol is not TCP4, TCP6 or UNKNOWN")),
    };
    let fields: Vec<&str> = parts.collect();
    if fields.len() != 4 {
        return Err(ProxyHeaderError::V1Syntax("expected source, destination, source port, destination port"));
    }
    let ip = |s: &str| -> Result<IpAddr, ProxyHeaderError> {
        if v6 {
            s.parse::<Ipv6Addr>().map(IpAddr::V6).map_err(|_| ProxyHeaderError::V1Syntax("address is not IPv6"))
        } else {
            s.parse::<Ipv4Addr>().map(IpAddr::V4).map_err(|_| ProxyHeaderError::V1Syntax("address is not IPv4"))
        }
    };
    let port = |s: &str| -> Result<u16, ProxyHeaderError> {
        let ok = !s.is_empty() && s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
        if !ok {
            return Err(ProxyHeaderError::V1Syntax("port is not a decimal number without leading zeros"));
        }
        s.parse::<u16>().map_err(|_| ProxyHeaderError::V1Syntax("port is above 65535"))
    };
    let source = SocketAddr::new(ip(fields[0])?, port(fields[2])?);
    let destination = SocketAddr::new(ip(fields[1])?, port(fields[3])?);
    Ok(Parsed::Complete { header: Header { version: Version::V1, addresses: Some(Addresses { source, destination }) }, len })
}

fn parse_v2(buf: &[u8]) -> Result<Parsed, ProxyHeaderError> {
    if buf.len() < 16 {
        // Check what we can early, so garbage after the signature fails before more reads.
        if buf.len() > 12 {
            check_ver_cmd(buf[12])?;
        }
        if buf.len() > 13 {
            check_family(buf[13])?;
        }
        return Ok(Parsed::Incomplete);
    }
    let command = check_ver_cmd(buf[12])?;
    let family = check_family(buf[13])?;
    let body_len = u16::from_be_bytes([buf[14], buf[15]]) as usize;
    let len = 16 + body_len;
    if len > MAX_V2_LEN {
        return Err(ProxyHeaderError::V2TooLong(len));
    }
    let need = match family >> 4 {
        1 => 12,
        2 => 36,
        3 => 216,
        _ => 0,
    };
    // LOCAL may carry any (or no) address block; PROXY must carry its family's.
    if command == 1 && body_len < need {
        return Err(ProxyHeaderError::V2ShortAddresses { got: body_len, need });
    }
    if buf.len() < len {
        return Ok(Parsed::Incomplete);
    }
    let body = &buf[16..len];
    let addresses = if command == 0 {
        None
    } else {
        match family >> 4 {
            1 => {
                let src = Ipv4Addr::from(<[u8; 4]>::try_from(&body[0..4]).unwrap());
                let dst = Ipv4Addr::from(<[u8; 4]>::try_from(&body[4..8]).unwrap());
                Some(Addresses {
                    source: SocketAddr::new(src.into(), u16::from_be_bytes([body[8], body[9]])),
                    destination: SocketAddr::new(dst.into(), u16::from_be_bytes([body[10], body[11]])),
                })
            }
            2 => {
                let src = Ipv6Addr::from(<[u8; 16]>::try_from(&body[0..16]).unwrap());
                let dst = Ipv6Addr::from(<[u8; 16]>::try_from(&body[16..32]).unwrap());
                Some(Addresses {
                    source: SocketAddr::new(src.into(), u16::from_be_bytes([body[32], body[33]])),
                    destination: SocketAddr::new(dst.into(), u16::from_be_bytes([body[34], body[35]])),
                })
            }
            // UNSPEC and UNIX: no IP address to report.
            _ => None,
        }
    };
    Ok(Parsed::Complete { header: Header { version: Version::V2, addresses }, len })
}

/// Returns the command (0 LOCAL, 1 PROXY).
fn check_ver_cmd(b: u8) -> Result<u8, ProxyHeaderError> {
    if b >> 4 != 2 {
        return Err(ProxyHeaderError::V2Version(b >> 4));
    }
    match b & 0x0f {
        c @ (0 | 1) => Ok(c),
        c => Err(ProxyHeaderError::V2Command(c)),
    }
}

/// Address family (high nibble 0-3) and transport (low nibble 0-2).
fn check_family(b: u8) -> Result<u8, ProxyHeaderError> {
    if b >> 4 > 3 || b & 0x0f > 2 {
        return Err(ProxyHeaderError::V2Family(b));
    }
    Ok(b)
}

/// Encode a v2 PROXY header for `addresses` (used by tests and tools that sit in front of a
/// server, never by the proxy itself).
pub fn encode_v2(addresses: &Addresses, tlvs: &[u8]) -> Vec<u8> {
    let mut out = V2_SIGNATURE.to_vec();
    out.push(0x21);
    let mut body = Vec::new();
    match (addresses.source, addresses.destination) {
        (SocketAddr::V4(s), SocketAddr::V4(d)) => {
            out.push(0x11);
            body.extend_from_slice(&s.ip().octets());
            body.extend_from_slice(&d.ip().octets());
            body.extend_from_slice(&s.port().to_be_bytes());
            body.extend_from_slice(&d.port().to_be_bytes());
        }
        (s, d) => {
            out.push(0x21);
            let v6 = |a: SocketAddr| match a.ip() {
                IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                IpAddr::V6(v6) => v6,
            };
            body.extend_from_slice(&v6(s).octets());
            body.extend_from_slice(&v6(d).octets());
            body.extend_from_slice(&s.port().to_be_bytes());
            body.extend_from_slice(&d.port().to_be_bytes());
        }
    }
    body.extend_from_slice(tlvs);
    out.extend_from_slice(&(body.len() as u16).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn complete(buf: &[u8]) -> (Header, usize) {
        match parse(buf) {
            Ok(Parsed::Complete { header, len }) => (header, len),
            other => panic!("expected a complete header, got {other:?}"),
        }
    }

    #[test]
    fn v1_tcp4() {
        let line = b"PROXY TCP4 198.51.100.22 203.0.113.7 35646 443\r\nREST";
        let (h, len) = complete(line);
        assert_eq!(len, line.len() - 4);
        assert_eq!(h.version, Version::V1);
        let a = h.addresses.unwrap();
        assert_eq!(a.source, sa("198.51.100.22:35646"));
        assert_eq!(a.destination, sa("203.0.113.7:443"));
    }

    #[test]
    fn v1_tcp6_and_unknown() {
        let (h, _) = complete(b"PROXY TCP6 2001:db8::1 2001:db8::2 65535 0\r\n");
        assert_eq!(h.addresses.unwrap().source, sa("[2001:db8::1]:65535"));
        assert_eq!(h.addresses.unwrap().destination, sa("[2001:db8::2]:0"));
        let (h, len) = complete(b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\nx");
        assert_eq!(h.addresses, None);
        assert_eq!(len, 35);
        let (h, len) = complete(b"PROXY UNKNOWN\r\n");
        assert_eq!((h.addresses, len), (None, 15));
    }

    #[test]
    fn v1_incomplete_then_complete() {
        let line = b"PROXY TCP4 10.0.0.1 10.0.0.2 1000 443\r\n";
        for cut in 0..line.len() {
            assert_eq!(parse(&line[..cut]), Ok(Parsed::Incomplete), "cut at {cut}");
        }
        complete(line);
    }

    #[test]
    fn v1_invalid() {
        let bad: &[&[u8]] = &[
            b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
            b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n",
            b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
            b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n",
            b"PROXY TCP4 1.2.3.4\n",
            b"PROXY \xff",
        ];
        for b in bad {
            assert!(parse(b).is_err(), "{:?} accepted", String::from_utf8_lossy(b));
        }
        let long = [b"PROXY UNKNOWN ".as_slice(), &[b'a'; 200]].concat();
        assert_eq!(parse(&long), Err(ProxyHeaderError::V1TooLong));
        // Exactly 107 bytes with the CRLF at the end is still fine.
        let mut max = b"PROXY UNKNOWN ".to_vec();
        max.resize(MAX_V1_LEN - 2, b'a');
        max.extend_from_slice(b"\r\n");
        assert_eq!(complete(&max).1, MAX_V1_LEN);
    }

    #[test]
    fn v2_ipv4_with_tlvs() {
        let a = Addresses { source: sa("192.0.2.10:40000"), destination: sa("192.0.2.1:443") };
        // PP2_TYPE_ALPN "h2" and a NOOP TLV are skipped.
        let tlvs = [0x01, 0x00, 0x02, b'h', b'2', 0x04, 0x00, 0x00];
        let mut buf = encode_v2(&a, &tlvs);
        let hlen = buf.len();
        buf.extend_from_slice(b"\x16\x03\x01");
        let (h, len) = complete(&buf);
        assert_eq!(len, hlen);
        assert_eq!(h.version, Version::V2);
        assert_eq!(h.addresses, Some(a));
        for cut in 0..hlen {
            assert_eq!(parse(&buf[..cut]), Ok(Parsed::Incomplete), "cut at {cut}");
        }
    }

    #[test]
    fn v2_ipv6() {
        let a = Addresses { source: sa("[2001:db8::7]:40000"), destination: sa("[2001:db8::1]:443") };
        let (h, len) = complete(&encode_v2(&a, &[]));
        assert_eq!(len, 16 + 36);
        assert_eq!(h.addresses, Some(a));
    }

    #[test]
    fn v2_local_unspec_unix() {
        // LOCAL with no address block (HAProxy health checks).
        let mut local = V2_SIGNATURE.to_vec();
        local.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
        assert_eq!(complete(&local), (Header { version: Version::V2, addresses: None }, 16));
        // LOCAL may still carry an address block: ignored.
        let a = Addresses { source: sa("1.2.3.4:1"), destination: sa("5.6.7.8:2") };
        let mut l2 = encode_v2(&a, &[]);
        l2[12] = 0x20;
        assert_eq!(complete(&l2).0.addresses, None);
        // PROXY with UNSPEC family: no address.
        let mut unspec = V2_SIGNATURE.to_vec();
        unspec.extend_from_slice(&[0x21, 0x00, 0x00, 0x00]);
        assert_eq!(complete(&unspec).0.addresses, None);
        // PROXY over UNIX sockets: 216 bytes of paths, no IP address.
        let mut unix = V2_SIGNATURE.to_vec();
        unix.extend_from_slice(&[0x21, 0x31, 0x00, 216]);
        unix.extend_from_slice(&[0u8; 216]);
        assert_eq!(complete(&unix).0.addresses, None);
    }

    #[test]
    fn v2_invalid() {
        let hdr = |b12: u8, b13: u8, len: u16| {
            let mut v = V2_SIGNATURE.to_vec();
            v.extend_from_slice(&[b12, b13]);
            v.extend_from_slice(&len.to_be_bytes());
            v.extend_from_slice(&vec![0u8; len as usize]);
            v
        };
        assert_eq!(parse(&hdr(0x11, 0x11, 12)), Err(ProxyHeaderError::V2Version(1)));
        assert_eq!(parse(&hdr(0x22, 0x11, 12)), Err(ProxyHeaderError::V2Command(2)));
        assert_eq!(parse(&hdr(0x21, 0x41, 12)), Err(ProxyHeaderError::V2Family(0x41)));
        assert_eq!(parse(&hdr(0x21, 0x13, 12)), Err(ProxyHeaderError::V2Family(0x13)));
        assert_eq!(parse(&hdr(0x21, 0x11, 11)), Err(ProxyHeaderError::V2ShortAddresses { got: 11, need: 12 }));
        assert_eq!(parse(&hdr(0x21, 0x21, 12)), Err(ProxyHeaderError::V2ShortAddresses { got: 12, need: 36 }));
        // The length cap is checked from the fixed part alone, before the body arrives.
        let mut big = V2_SIGNATURE.to_vec();
        big.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
        assert_eq!(parse(&big), Err(ProxyHeaderError::V2TooLong(16 + 65535)));
        // Bad version byte is noticed as soon as it arrives.
        let mut early = V2_SIGNATURE.to_vec();
        early.push(0x31);
        assert_eq!(parse(&early), Err(ProxyHeaderError::V2Version(3)));
    }

    #[test]
    fn not_proxy() {
        assert_eq!(parse(b"\x16\x03\x01\x02\x00"), Ok(Parsed::NotProxy));
        assert_eq!(parse(b"GET / HTTP/1.1\r\n"), Ok(Parsed::NotProxy));
        assert_eq!(parse(b"PROXZ"), Ok(Parsed::NotProxy));
        assert_eq!(parse(b"\r\n\r\n\0\r\nQUIX"), Ok(Parsed::NotProxy));
        assert_eq!(parse(b""), Ok(Parsed::Incomplete));
        assert!(starts_like_proxy(b"PRO"));
        assert!(starts_like_proxy(b"\r\n\r"));
        assert!(!starts_like_proxy(b"\x16\x03"));
        assert!(!starts_like_proxy(b""));
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    fn any_addr() -> impl Strategy<Value = SocketAddr> {
        prop_oneof![
            (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, p)| SocketAddr::new(Ipv4Addr::from(ip).into(), p)),
            (any::<[u8; 16]>(), any::<u16>()).prop_map(|(ip, p)| SocketAddr::new(Ipv6Addr::from(ip).into(), p)),
        ]
    }

    proptest! {
        /// Any input: no panic, and a complete header never claims more bytes than given.
        #[test]
        fn never_panics(buf in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(Parsed::Complete { len, .. }) = parse(&buf) {
                prop_assert!(len <= buf.len());
            }
        }

        /// Inputs that start with a signature exercise the deep paths.
        #[test]
        fn never_panics_after_signature(v1 in any::<bool>(), rest in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut buf = if v1 { V1_PREFIX.to_vec() } else { V2_SIGNATURE.to_vec() };
            buf.extend_from_slice(&rest);
            if let Ok(Parsed::Complete { len, .. }) = parse(&buf) {
                prop_assert!(len <= buf.len());
            }
        }

        /// v2 round trip (v4 pairs as INET, anything else as INET6), with TLVs and trailing data.
        #[test]
        fn v2_round_trip(src in any_addr(), dst in any_addr(), tlvs in proptest::collection::vec(any::<u8>(), 0..64), tail in proptest::collection::vec(any::<u8>(), 0..64)) {
            let a = Addresses { source: src, destination: dst };
            let mut buf = encode_v2(&a, &tlvs);
            let hlen = buf.len();
            buf.extend_from_slice(&tail);
            let Ok(Parsed::Complete { header, len }) = parse(&buf) else { panic!("not complete") };
            prop_assert_eq!(len, hlen);
            let got = header.addresses.unwrap();
            let canon = |x: SocketAddr| SocketAddr::new(x.ip().to_canonical(), x.port());
            if src.is_ipv4() && dst.is_ipv4() {
                prop_assert_eq!(got, a);
            } else {
                prop_assert_eq!(canon(got.source), canon(src));
                prop_assert_eq!(canon(got.destination), canon(dst));
            }
            // Every strict prefix is incomplete.
            for cut in [0, 1, 11, 12, 15, hlen - 1] {
                if cut < hlen {
                    prop_assert_eq!(parse(&buf[..cut]), Ok(Parsed::Incomplete));
                }
            }
        }

        /// v1 round trip.
        #[test]
        fn v1_round_trip(s4 in any::<[u8; 4]>(), d4 in any::<[u8; 4]>(), s6 in any::<[u8; 16]>(), d6 in any::<[u8; 16]>(), sp in any::<u16>(), dp in any::<u16>(), v6 in any::<bool>()) {
            let (src, dst): (IpAddr, IpAddr) = if v6 { (Ipv6Addr::from(s6).into(), Ipv6Addr::from(d6).into()) } else { (Ipv4Addr::from(s4).into(), Ipv4Addr::from(d4).into()) };
            let line = format!("PROXY {} {} {} {} {}\r\n", if v6 { "TCP6" } else { "TCP4" }, src, dst, sp, dp);
            let Ok(Parsed::Complete { header, len }) = parse(line.as_bytes()) else { panic!("not complete: {line}") };
            prop_assert_eq!(len, line.len());
            prop_assert_eq!(header.addresses, Some(Addresses { source: SocketAddr::new(src, sp), destination: SocketAddr::new(dst, dp) }));
        }
    }
}
