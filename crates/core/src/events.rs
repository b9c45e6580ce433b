//! What the data path reports: handshake failures with a reason, opens and closes.
//!
//! The failed-handshake log line is a stable, documented interface (docs/logging.md): fail2ban
//! filters match it, so change it only together with them.
//!
//! ```text
//! handshake failed client=203.0.113.9:51234 reason=bad_secret
//! handshake failed client=[2001:db8::7]:40000 reason=replay
//! ```
//! Behind a trusted PROXY-protocol front (HAProxy) `client` is the address from the header.
//! No line ever carries a secret, a key or a user's link.

use std::net::SocketAddr;

/// Why a client did not get through the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailReason {
    /// No configured secret matches (obfuscated2 tag or fake-TLS HMAC).
    BadSecret,
    /// A handshake seen before (anti-replay cache).
    Replay,
    /// The fake-TLS timestamp is outside the allowed window.
    ClockSkew,
    /// The fake-TLS SNI names a domain we do not serve.
    BadSni,
    /// The secret matches but the transport is not allowed for the user's kind.
    BadTransport,
    /// The client did not complete the handshake in time.
    Timeout,
    /// Bytes that cannot become an accepted handshake (fronted at once), a TLS record that is
    /// not a usable ClientHello, or broken records.
    Malformed,
    /// The secret belongs to a disabled user.
    UserDisabled,
    /// The secret is one that a rotation retired (its grace period is over).
    RotatedSecret,
    /// A PROXY protocol header from a source not in `server.trusted_proxies` (or with
    /// `proxy_protocol` off): someone trying to choose the address we log.
    UntrustedProxy,
}

impl FailReason {
    pub const ALL: [FailReason; 10] = [
        FailReason::BadSecret,
        FailReason::Replay,
        FailReason::ClockSkew,
        FailReason::BadSni,
        FailReason::BadTransport,
        FailReason::Timeout,
        FailReason::Malformed,
        FailReason::UserDisabled,
        FailReason::RotatedSecret,
        FailReason::UntrustedProxy,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FailReason::BadSecret => "bad_secret",
            FailReason::Replay => "replay",
            FailReason::ClockSkew => "clock_skew",
            FailReason::BadSni => "bad_sni",
            FailReason::BadTransport => "bad_transport",
            FailReason::Timeout => "timeout",
            FailReason::Malformed => "malformed",
            FailReason::UserDisabled => "user_disabled",
            FailReason::RotatedSecret => "rotated_secret",
            FailReason::UntrustedProxy => "untrusted_proxy",
        }
    }

    pub fn index(self) -> usize {
        FailReason::ALL.iter().position(|r| *r == self).unwrap()
    }
}

/// `IP:PORT` with IPv6 in brackets, as in the log line.
pub struct ClientAddr(pub SocketAddr);

impl std::fmt::Display for ClientAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            SocketAddr::V4(a) => write!(f, "{}:{}", a.ip(), a.port()),
            SocketAddr::V6(a) => match a.ip().to_ipv4_mapped() {
                Some(v4) => write!(f, "{}:{}", v4, a.port()),
                None => write!(f, "[{}]:{}", a.ip(), a.port()),
            },
        }
    }
}

/// Write the one log line of a failed handshake.
pub fn log_handshake_failure(client: SocketAddr, reason: FailReason) {
    tracing::warn!(target: "vless_mtproxy::handshake", "handshake failed client={} reason={}", ClientAddr(client), reason.as_str());
}
