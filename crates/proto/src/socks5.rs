//! SOCKS5 client side (RFC 1928) with username/password authentication (RFC 1929), as pure
//! functions: the proxy uses it to send its DC leg through an upstream such as Xray's `socks`
//! inbound or dante when the server's own route to Telegram is filtered.
//!
//! ```text
//! us -> proxy   greeting         05 NMETHODS METHODS..       (00 no auth, 02 user/password)
//! proxy -> us   method choice    05 METHOD                   (FF: none acceptable)
//! us -> proxy   [RFC 1929]       01 ULEN USER PLEN PASS
//! proxy -> us   [RFC 1929]       01 STATUS                   (00 success)
//! us -> proxy   request          05 01 00 ATYP DST.ADDR DST.PORT     (CONNECT)
//! proxy -> us   reply            05 REP 00 ATYP BND.ADDR BND.PORT    (REP 00 succeeded)
//! ```
//! The DC is always sent as an IP address (ATYP 01 or 04): the proxy resolved it already, and a
//! name would leave the choice of address to the upstream. Every parser takes the bytes read so
//! far and returns `Ok(None)` while more are needed, the value and the bytes it used once they
//! are there, or a [`Socks5Error`] for bytes no SOCKS5 server sends. Nothing here reads a
//! socket; the I/O layer loops on "incomplete".

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

pub const VERSION: u8 = 5;
/// RFC 1928 method: no authentication required.
pub const METHOD_NONE: u8 = 0x00;
/// RFC 1928 method: username/password (RFC 1929).
pub const METHOD_USER_PASS: u8 = 0x02;
/// RFC 1928: no acceptable method.
pub const METHOD_NO_ACCEPTABLE: u8 = 0xff;
/// RFC 1929 sub-negotiation version.
pub const AUTH_VERSION: u8 = 1;
const CMD_CONNECT: u8 = 1;
const ATYP_V4: u8 = 1;
const ATYP_NAME: u8 = 3;
const ATYP_V6: u8 = 4;

/// RFC 1929 credentials (each 1-255 bytes).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({:?}, <redacted>)", self.username)
    }
}

/// The REP field of a reply (RFC 1928 §6), every code named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    Succeeded,
    GeneralFailure,
    NotAllowedByRuleset,
    NetworkUnreachable,
    HostUnreachable,
    ConnectionRefused,
    TtlExpired,
    CommandNotSupported,
    AddressTypeNotSupported,
    /// 0x09-0xFF: unassigned.
    Unassigned(u8),
}

impl Reply {
    pub fn from_code(code: u8) -> Reply {
        match code {
            0 => Reply::Succeeded,
            1 => Reply::GeneralFailure,
            2 => Reply::NotAllowedByRuleset,
            3 => Reply::NetworkUnreachable,
            4 => Reply::HostUnreachable,
            5 => Reply::ConnectionRefused,
            6 => Reply::TtlExpired,
            7 => Reply::CommandNotSupported,
            8 => Reply::AddressTypeNotSupported,
            c => Reply::Unassigned(c),
        }
    }

    pub fn code(self) -> u8 {
        match self {
            Reply::Succeeded => 0,
            Reply::GeneralFailure => 1,
            Reply::NotAllowedByRuleset => 2,
            Reply::NetworkUnreachable => 3,
            Reply::HostUnreachable => 4,
            Reply::ConnectionRefused => 5,
            Reply::TtlExpired => 6,
            Reply::CommandNotSupported => 7,
            Reply::AddressTypeNotSupported => 8,
            Reply::Unassigned(c) => c,
        }
    }

    /// Whether the reply is about the target (the DC) rather than the upstream itself: the
    /// upstream works, the address it was asked for does not answer.
    pub fn is_target_side(self) -> bool {
        matches!(self, Reply::NetworkUnreachable | Reply::HostUnreachable | Reply::ConnectionRefused | Reply::TtlExpired)
    }
}

impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = match self {
            Reply::Succeeded => "succeeded",
            Reply::GeneralFailure => "general SOCKS server failure",
            Reply::NotAllowedByRuleset => "connection not allowed by ruleset",
            Reply::NetworkUnreachable => "network unreachable",
            Reply::HostUnreachable => "host unreachable",
            Reply::ConnectionRefused => "connection refused",
            Reply::TtlExpired => "TTL expired",
            Reply::CommandNotSupported => "command not supported",
            Reply::AddressTypeNotSupported => "address type not supported",
            Reply::Unassigned(_) => "unassigned reply code",
        };
        write!(f, "{text} (0x{:02x})", self.code())
    }
}

/// Bytes a SOCKS5 server does not send, or a refusal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Socks5Error {
    #[error("not a SOCKS5 server: version byte 0x{0:02x} in its answer")]
    BadVersion(u8),
    #[error("the SOCKS5 server accepts none of the offered methods (wants credentials, or other ones)")]
    NoAcceptableMethod,
    #[error("the SOCKS5 server chose method 0x{0:02x}, which was not offered")]
    UnexpectedMethod(u8),
    #[error("bad RFC 1929 sub-negotiation version 0x{0:02x}")]
    BadAuthVersion(u8),
    #[error("the SOCKS5 server refused the username/password (status 0x{0:02x})")]
    AuthRejected(u8),
    #[error("the SOCKS5 server refused the connect: {0}")]
    Refused(Reply),
    #[error("reserved byte 0x{0:02x} in the SOCKS5 reply is not zero")]
    BadReserved(u8),
    #[error("unknown address type 0x{0:02x} in the SOCKS5 reply")]
    BadAddressType(u8),
    #[error("the username and the password must each be 1 to 255 bytes")]
    CredentialsLength,
}

impl Socks5Error {
    /// Whether the failure is the target's (the DC did not answer the upstream), not the
    /// upstream's own.
    pub fn is_target_side(&self) -> bool {
        matches!(self, Socks5Error::Refused(r) if r.is_target_side())
    }
}

/// The greeting: "no auth" only, or "no auth" and "username/password" when credentials are
/// configured (a server that needs none may pick 00).
pub fn greeting(with_credentials: bool) -> Vec<u8> {
    if with_credentials {
        vec![VERSION, 2, METHOD_NONE, METHOD_USER_PASS]
    } else {
        vec![VERSION, 1, METHOD_NONE]
    }
}

/// The server's method choice: `Ok(Some((method, 2)))`.
pub fn parse_method_choice(buf: &[u8], with_credentials: bool) -> Result<Option<(u8, usize)>, Socks5Error> {
    if buf.is_empty() {
        return Ok(None);
    }
    if buf[0] != VERSION {
        return Err(Socks5Error::BadVersion(buf[0]));
    }
    let Some(&method) = buf.get(1) else { return Ok(None) };
    match method {
        METHOD_NONE => Ok(Some((method, 2))),
        METHOD_USER_PASS if with_credentials => Ok(Some((method, 2))),
        METHOD_NO_ACCEPTABLE => Err(Socks5Error::NoAcceptableMethod),
        m => Err(Socks5Error::UnexpectedMethod(m)),
    }
}

/// The RFC 1929 request.
pub fn auth_request(c: &Credentials) -> Result<Vec<u8>, Socks5Error> {
    let (u, p) = (c.username.as_bytes(), c.password.as_bytes());
    if u.is_empty() || u.len() > 255 || p.is_empty() || p.len() > 255 {
        return Err(Socks5Error::CredentialsLength);
    }
    let mut out = Vec::with_capacity(3 + u.len() + p.len());
    out.extend_from_slice(&[AUTH_VERSION, u.len() as u8]);
    out.extend_from_slice(u);
    out.push(p.len() as u8);
    out.extend_from_slice(p);
    Ok(out)
}

/// The RFC 1929 status: `Ok(Some(2))` on success.
pub fn parse_auth_reply(buf: &[u8]) -> Result<Option<usize>, Socks5Error> {
    if buf.len() < 2 {
        return Ok(None);
    }
    // RFC 1929 says version 1; some servers answer with 5 here. Both are accepted.
    if buf[0] != AUTH_VERSION && buf[0] != VERSION {
        return Err(Socks5Error::BadAuthVersion(buf[0]));
    }
    match buf[1] {
        0 => Ok(Some(2)),
        s => Err(Socks5Error::AuthRejected(s)),
    }
}

/// The CONNECT request for an IP address.
pub fn connect_request(target: SocketAddr) -> Vec<u8> {
    let mut out = Vec::with_capacity(22);
    out.extend_from_slice(&[VERSION, CMD_CONNECT, 0]);
    match target.ip() {
        IpAddr::V4(a) => {
            out.push(ATYP_V4);
            out.extend_from_slice(&a.octets());
        }
        IpAddr::V6(a) => {
            out.push(ATYP_V6);
            out.extend_from_slice(&a.octets());
        }
    }
    out.extend_from_slice(&target.port().to_be_bytes());
    out
}

/// The address the server bound for the connection (BND.ADDR, BND.PORT).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bound {
    Addr(SocketAddr),
    /// A name (ATYP 03), with its port; servers rarely send one.
    Name(Vec<u8>, u16),
}

/// The CONNECT reply: `Ok(Some((bound, consumed)))` when REP is 00; every other code is a
/// [`Socks5Error::Refused`] with the code named.
pub fn parse_connect_reply(buf: &[u8]) -> Result<Option<(Bound, usize)>, Socks5Error> {
    if buf.is_empty() {
        return Ok(None);
    }
    if buf[0] != VERSION {
        return Err(Socks5Error::BadVersion(buf[0]));
    }
    let Some(&rep) = buf.get(1) else { return Ok(None) };
    let reply = Reply::from_code(rep);
    // A failure reply may be cut short by the server closing; the code is what matters.
    if reply != Reply::Succeeded {
        return Err(Socks5Error::Refused(reply));
    }
    if buf.len() < 4 {
        return Ok(None);
    }
    if buf[2] != 0 {
        return Err(Socks5Error::BadReserved(buf[2]));
    }
    let (addr_len, name_len_byte) = match buf[3] {
        ATYP_V4 => (4, 0),
        ATYP_V6 => (16, 0),
        ATYP_NAME => match buf.get(4) {
            None => return Ok(None),
            Some(&n) => (n as usize, 1),
        },
        t => return Err(Socks5Error::BadAddressType(t)),
    };
    let start = 4 + name_len_byte;
    let total = start + addr_len + 2;
    if buf.len() < total {
        return Ok(None);
    }
    let a = &buf[start..start + addr_len];
    let port = u16::from_be_bytes([buf[total - 2], buf[total - 1]]);
    let bound = match buf[3] {
        ATYP_V4 => Bound::Addr(SocketAddr::new(IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3])), port)),
        ATYP_V6 => {
            let octets: [u8; 16] = a.try_into().expect("16 bytes checked above");
            Bound::Addr(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(octets)), port))
        }
        _ => Bound::Name(a.to_vec(), port),
    };
    Ok(Some((bound, total)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greeting_and_method_choice() {
        assert_eq!(greeting(false), [5, 1, 0]);
        assert_eq!(greeting(true), [5, 2, 0, 2]);
        assert_eq!(parse_method_choice(&[], false), Ok(None));
        assert_eq!(parse_method_choice(&[5], false), Ok(None));
        assert_eq!(parse_method_choice(&[5, 0], false), Ok(Some((0, 2))));
        assert_eq!(parse_method_choice(&[5, 2], true), Ok(Some((2, 2))));
        assert_eq!(parse_method_choice(&[5, 2], false), Err(Socks5Error::UnexpectedMethod(2)));
        assert_eq!(parse_method_choice(&[5, 0xff], true), Err(Socks5Error::NoAcceptableMethod));
        assert_eq!(parse_method_choice(b"HTTP/1.1 400", false), Err(Socks5Error::BadVersion(b'H')));
    }

    #[test]
    fn rfc1929_request_and_reply() {
        let c = Credentials { username: "bob".into(), password: "pw".into() };
        assert_eq!(auth_request(&c).unwrap(), [1, 3, b'b', b'o', b'b', 2, b'p', b'w']);
        let empty = Credentials { username: "".into(), password: "x".into() };
        assert_eq!(auth_request(&empty), Err(Socks5Error::CredentialsLength));
        let long = Credentials { username: "u".into(), password: "x".repeat(256) };
        assert_eq!(auth_request(&long), Err(Socks5Error::CredentialsLength));
        assert_eq!(parse_auth_reply(&[1]), Ok(None));
        assert_eq!(parse_auth_reply(&[1, 0]), Ok(Some(2)));
        assert_eq!(parse_auth_reply(&[1, 1]), Err(Socks5Error::AuthRejected(1)));
        assert_eq!(parse_auth_reply(&[9, 0]), Err(Socks5Error::BadAuthVersion(9)));
        assert!(!format!("{c:?}").contains("pw"), "Debug never shows the password");
    }

    #[test]
    fn connect_request_sends_the_ip() {
        assert_eq!(connect_request("149.154.167.51:443".parse().unwrap()), [5, 1, 0, 1, 149, 154, 167, 51, 1, 187]);
        let v6 = connect_request("[2001:67c:4e8:f002::a]:443".parse().unwrap());
        assert_eq!(v6.len(), 22);
        assert_eq!(&v6[..4], &[5, 1, 0, 4]);
        assert_eq!(&v6[20..], &[1, 187]);
    }

    #[test]
    fn connect_replies() {
        let ok4 = [5, 0, 0, 1, 127, 0, 0, 2, 0x1f, 0x90];
        for cut in 0..ok4.len() {
            assert_eq!(parse_connect_reply(&ok4[..cut]), Ok(None), "cut at {cut}");
        }
        assert_eq!(parse_connect_reply(&ok4), Ok(Some((Bound::Addr("127.0.0.2:8080".parse().unwrap()), 10))));
        let mut ok6 = vec![5, 0, 0, 4];
        ok6.extend_from_slice(&[0; 15]);
        ok6.extend_from_slice(&[1, 0, 80]);
        assert_eq!(parse_connect_reply(&ok6), Ok(Some((Bound::Addr("[::1]:80".parse().unwrap()), 22))));
        let name = [5, 0, 0, 3, 2, b'h', b'x', 0, 1];
        assert_eq!(parse_connect_reply(&name), Ok(Some((Bound::Name(b"hx".to_vec(), 1), 9))));
        for code in 1..=255u8 {
            let e = parse_connect_reply(&[5, code]).unwrap_err();
            assert_eq!(e, Socks5Error::Refused(Reply::from_code(code)));
            assert_eq!(Reply::from_code(code).code(), code);
        }
        assert!(Socks5Error::Refused(Reply::ConnectionRefused).is_target_side());
        assert!(!Socks5Error::Refused(Reply::NotAllowedByRuleset).is_target_side());
        assert_eq!(parse_connect_reply(&[5, 0, 1, 1]), Err(Socks5Error::BadReserved(1)));
        assert_eq!(parse_connect_reply(&[5, 0, 0, 7]), Err(Socks5Error::BadAddressType(7)));
        assert_eq!(parse_connect_reply(&[4, 0x5a]), Err(Socks5Error::BadVersion(4)));
        assert_eq!(Reply::ConnectionRefused.to_string(), "connection refused (0x05)");
    }
}
