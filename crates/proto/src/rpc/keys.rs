//! Key derivation for the RPC channel, docs/protocol.md §5.4 step 3 (official `aes_create_keys`).
//!
//! ```text
//! s = nonce_srv(16) nonce_clt(16) clt_ts(u32le) server_ipv4(rev, 0 for v6) client_port(u16le)
//!     purpose("CLIENT"|"SERVER") client_ipv4(rev, 0 for v6) server_port(u16le) proxy_secret
//!     nonce_srv(16) [client_ipv6(16) server_ipv6(16), IPv6 only] nonce_clt(16)
//! key = MD5(s[1..])[0..12] || SHA1(s)      iv = MD5(s[2..])
//! ```
//! "client" is the proxy (its address as Telegram sees it: the public one behind NAT, with the
//! real local port), "server" the middle-end. `CLIENT` keys protect proxy->ME, `SERVER` keys ME->proxy.

use std::net::{IpAddr, SocketAddr};

use md5::{Digest, Md5};
use sha1::Sha1;

/// Which direction a key protects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// proxy -> middle-end.
    Client,
    /// middle-end -> proxy.
    Server,
}

/// Everything both sides mix into the keys.
#[derive(Clone)]
pub struct KeyInput<'a> {
    pub nonce_srv: [u8; 16],
    pub nonce_clt: [u8; 16],
    /// The timestamp the proxy sent in its RPC_NONCE.
    pub clt_ts: u32,
    /// The middle-end's address.
    pub server: SocketAddr,
    /// The proxy's address as the middle-end sees it (public IP, real local port).
    pub client: SocketAddr,
    pub secret: &'a [u8],
}

/// One direction's AES-256-CBC key and initial IV.
#[derive(Clone, PartialEq, Eq)]
pub struct ChannelKey {
    pub key: [u8; 32],
    pub iv: [u8; 16],
}

impl std::fmt::Debug for ChannelKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChannelKey(..)")
    }
}

fn v4_rev(ip: IpAddr) -> [u8; 4] {
    match ip {
        IpAddr::V4(a) => {
            let mut o = a.octets();
            o.reverse();
            o
        }
        IpAddr::V6(_) => [0; 4],
    }
}

fn v6(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => a.octets(),
    }
}

/// The key string `s` of the docs/protocol.md §5.4 table. The IPv6 layout is used when either address is
/// IPv6 (a TCP connection has one family; a mixed pair only arises from a NAT setting of the
/// other family, which the caller ignores).
pub fn key_string(purpose: Purpose, input: &KeyInput<'_>) -> Vec<u8> {
    let is_v6 = input.server.is_ipv6() || input.client.is_ipv6();
    let mut s = Vec::with_capacity(118 + input.secret.len());
    s.extend_from_slice(&input.nonce_srv);
    s.extend_from_slice(&input.nonce_clt);
    s.extend_from_slice(&input.clt_ts.to_le_bytes());
    s.extend_from_slice(&if is_v6 { [0; 4] } else { v4_rev(input.server.ip()) });
    s.extend_from_slice(&input.client.port().to_le_bytes());
    s.extend_from_slice(match purpose {
        Purpose::Client => b"CLIENT",
        Purpose::Server => b"SERVER",
    });
    s.extend_from_slice(&if is_v6 { [0; 4] } else { v4_rev(input.client.ip()) });
    s.extend_from_slice(&input.server.port().to_le_bytes());
    s.extend_from_slice(input.secret);
    s.extend_from_slice(&input.nonce_srv);
    if is_v6 {
        s.extend_from_slice(&v6(input.client.ip()));
        s.extend_from_slice(&v6(input.server.ip()));
    }
    s.extend_from_slice(&input.nonce_clt);
    s
}

/// Derive one direction's key and IV.
pub fn derive(purpose: Purpose, input: &KeyInput<'_>) -> ChannelKey {
    let s = key_string(purpose, input);
    let md5_1 = Md5::digest(&s[1..]);
    let sha = Sha1::digest(&s);
    let mut key = [0u8; 32];
    key[..12].copy_from_slice(&md5_1[..12]);
    key[12..].copy_from_slice(&sha);
    let iv: [u8; 16] = Md5::digest(&s[2..]).into();
    ChannelKey { key, iv }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::rpc::msg::BUNDLED_PROXY_SECRET;

    fn h<const N: usize>(s: &str) -> [u8; N] {
        hex::decode(s).unwrap().try_into().unwrap()
    }

    /// The docs/protocol.md §8.4 Vector D inputs (IPv4), also used by the handshake vector in `rpc::tests`.
    pub(crate) fn input_v4() -> KeyInput<'static> {
        KeyInput {
            nonce_srv: h("f728d238410c65aad89b0efdfaeedbe2"),
            nonce_clt: h("1831356fc60aebb4e6705c4e01c96a69"),
            clt_ts: 1528396015,
            server: "149.154.162.38:80".parse().unwrap(),
            client: "80.211.29.34:54208".parse().unwrap(),
            secret: &BUNDLED_PROXY_SECRET,
        }
    }

    /// docs/protocol.md §8.4 Vector D (seriyps `middle_key_test`, reproduced by mtprotoproxy).
    #[test]
    fn vector_d_ipv4() {
        let input = input_v4();
        let s = key_string(Purpose::Client, &input);
        let expected_s = concat!(
            "f728d238410c65aad89b0efdfaeedbe21831356fc60aebb4e6705c4e01c96a69ef78195b26a29a95c0d3434c49454e54221dd3505000c4f9faca9678e6bb48ad",
            "6c7e2ce5c0d24430645d554addeb55419e034da62721d046eaab6e52ab14a95a443ecfb3463e79a05a66612adf9caeda8be9a80da6986fb0a6ff387af84d88ef",
            "3a6413713e5c3377f6e1a3d47d99f5e0c56eece8f05c54c490b079e31bef82ff0ee8f2b0a32756d249c5f21269816cb7061b265db212f728d238410c65aad89b",
            "0efdfaeedbe21831356fc60aebb4e6705c4e01c96a69"
        );
        assert_eq!(s.len(), 214);
        assert_eq!(hex::encode(&s), expected_s);
        let c = derive(Purpose::Client, &input);
        assert_eq!(hex::encode(c.key), "a59e7f3129e8bb45261da3e2b7921c43e1e086bfcf98ffa69842a9c4368732bc");
        assert_eq!(hex::encode(c.iv), "216e7dddb779a07482b49cf9346f25b2");
        let s = derive(Purpose::Server, &input);
        assert_eq!(hex::encode(s.key), "5fc7a56a00cb18fb0c133453441c0d8cef56ffcbbf986fb4a7d4201fce64fa51");
        assert_eq!(hex::encode(s.iv), "4b295add3b3f5cf280e08876e8d29fbc");
    }

    /// docs/protocol.md §8.4, IPv6 variant (Vector D6, reproduced by mtprotoproxy).
    #[test]
    fn vector_d_ipv6() {
        let mut input = input_v4();
        input.server = "[2001:b28:f23d:f001::d]:8888".parse().unwrap();
        input.client = "[2001:db8::1]:40000".parse().unwrap();
        assert_eq!(key_string(Purpose::Client, &input).len(), 246);
        let c = derive(Purpose::Client, &input);
        assert_eq!(hex::encode(c.key), "71e1ab9a2e9acaf1134c72f3ed1e91ca7ef8c4f4ff4744f0a0d94dd5dbb95c33");
        assert_eq!(hex::encode(c.iv), "68930fffc878b30303b4e6ded4033e53");
    }
}
