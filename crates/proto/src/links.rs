//! Proxy links (docs/protocol.md §1.4): `tg://proxy?server=…&port=…&secret=…` and the `https://t.me`
//! form. The secret is written in hex in the form each kind needs (§1.2), the form every client
//! accepts; the server is percent-encoded except for the characters a host name or an IPv6
//! address needs.

use crate::secret::{Secret, SecretKind};

/// Percent-encode a query value, keeping RFC 3986 unreserved characters and `:` (so IPv6
/// addresses stay readable, as mtprotoproxy does).
fn encode_query_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b':') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn query(server: &str, port: u16, secret: &Secret, kind: &SecretKind) -> String {
    format!("server={}&port={}&secret={}", encode_query_value(server.trim_start_matches('[').trim_end_matches(']')), port, secret.client_form(kind))
}

/// `tg://proxy?...`, opened directly by an installed Telegram app.
pub fn tg_link(server: &str, port: u16, secret: &Secret, kind: &SecretKind) -> String {
    format!("tg://proxy?{}", query(server, port, secret, kind))
}

/// `https://t.me/proxy?...`, the form that works from a browser or a chat.
pub fn tme_link(server: &str, port: u16, secret: &Secret, kind: &SecretKind) -> String {
    format!("https://t.me/proxy?{}", query(server, port, secret, kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_for_each_kind() {
        let s = Secret::from_hex("00112233445566778899aabbccddeeff").unwrap();
        assert_eq!(tg_link("203.0.113.7", 443, &s, &SecretKind::Padded), "tg://proxy?server=203.0.113.7&port=443&secret=dd00112233445566778899aabbccddeeff");
        assert_eq!(
            tme_link("proxy.example.org", 8443, &s, &SecretKind::FakeTls { domain: "example.com".into() }),
            "https://t.me/proxy?server=proxy.example.org&port=8443&secret=ee00112233445566778899aabbccddeeff6578616d706c652e636f6d"
        );
        assert_eq!(tg_link("[2001:db8::1]", 443, &s, &SecretKind::Classic), "tg://proxy?server=2001:db8::1&port=443&secret=00112233445566778899aabbccddeeff");
        assert!(tg_link("a b&c", 1, &s, &SecretKind::Classic).contains("server=a%20b%26c&"));
    }
}
