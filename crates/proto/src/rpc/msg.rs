//! RPC message layouts, docs/protocol.md §5.4 (RPC_NONCE, RPC_HANDSHAKE), §5.6 (RPC_PROXY_REQ) and
//! §5.7 (what the middle-end sends). All integers little-endian. Both directions are encoded
//! and parsed here: the proxy uses one half, the test tree's fake middle-end the other.
//!
//! ```text
//! RPC_NONCE      7acb87aa key_select(4) schema(u32=1) ts(u32) nonce(16)
//! RPC_HANDSHAKE  7682eef5 flags(u32) sender_pid(12) peer_pid(12)
//! RPC_PROXY_REQ  36cef1ee flags(u32) conn_id(i64) client_ip(16) client_port(u32)
//!                proxy_ip(16) proxy_port(u32) [extra_size(u32) extra] packet
//!                extra = db1e26ae 10 ad_tag(16) 00 00 00
//! RPC_PROXY_ANS  4403da0d flags(u32) conn_id(i64) data
//! RPC_SIMPLE_ACK 3bac409b conn_id(i64) confirm(u32)
//! RPC_CLOSE_EXT  5eb634a2 conn_id(i64)     RPC_CLOSE_CONN 1fcf425d conn_id(i64)
//! RPC_PING       5730a2df ping_id(i64)     RPC_PONG       8430eaa7 ping_id(i64)
//! ```

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

pub const RPC_NONCE: u32 = 0x7acb87aa;
pub const RPC_HANDSHAKE: u32 = 0x7682eef5;
pub const RPC_HANDSHAKE_ERROR: u32 = 0x6a27beda;
pub const RPC_PROXY_REQ: u32 = 0x36cef1ee;
pub const RPC_PROXY_ANS: u32 = 0x4403da0d;
pub const RPC_CLOSE_CONN: u32 = 0x1fcf425d;
pub const RPC_CLOSE_EXT: u32 = 0x5eb634a2;
pub const RPC_SIMPLE_ACK: u32 = 0x3bac409b;
pub const RPC_PING: u32 = 0x5730a2df;
pub const RPC_PONG: u32 = 0x8430eaa7;
pub const TL_PROXY_TAG: u32 = 0xdb1e26ae;

/// Crypto schema "AES" in RPC_NONCE.
pub const SCHEMA_AES: u32 = 1;

/// RPC_PROXY_REQ flags (docs/protocol.md §5.6).
pub mod flags {
    pub const NOT_ENCRYPTED: u32 = 0x0000_0002;
    pub const HAS_AD_TAG: u32 = 0x0000_0008;
    pub const MAGIC: u32 = 0x0000_1000;
    pub const EXTMODE2: u32 = 0x0002_0000;
    pub const PAD: u32 = 0x0800_0000;
    pub const DROPPED: u32 = 0x1000_0000;
    pub const INTERMEDIATE: u32 = 0x2000_0000;
    pub const ABRIDGED: u32 = 0x4000_0000;
    pub const QUICKACK: u32 = 0x8000_0000;
}

/// The sender/peer "pid" mtprotoproxy and seriyps send (docs/protocol.md §5.4 step 4).
pub const PID_PLACEHOLDER: [u8; 12] = *b"IPIPPRPDTIME";

/// The 128-byte proxy secret published at getProxySecret (docs/protocol.md §5.1); the last fallback
/// when neither a fetch nor the cache gives one.
pub const BUNDLED_PROXY_SECRET: [u8; 128] = [
    0xc4, 0xf9, 0xfa, 0xca, 0x96, 0x78, 0xe6, 0xbb, 0x48, 0xad, 0x6c, 0x7e, 0x2c, 0xe5, 0xc0, 0xd2, 0x44, 0x30, 0x64, 0x5d, 0x55, 0x4a, 0xdd, 0xeb, 0x55, 0x41,
    0x9e, 0x03, 0x4d, 0xa6, 0x27, 0x21, 0xd0, 0x46, 0xea, 0xab, 0x6e, 0x52, 0xab, 0x14, 0xa9, 0x5a, 0x44, 0x3e, 0xcf, 0xb3, 0x46, 0x3e, 0x79, 0xa0, 0x5a, 0x66,
    0x61, 0x2a, 0xdf, 0x9c, 0xae, 0xda, 0x8b, 0xe9, 0xa8, 0x0d, 0xa6, 0x98, 0x6f, 0xb0, 0xa6, 0xff, 0x38, 0x7a, 0xf8, 0x4d, 0x88, 0xef, 0x3a, 0x64, 0x13, 0x71,
    0x3e, 0x5c, 0x33, 0x77, 0xf6, 0xe1, 0xa3, 0xd4, 0x7d, 0x99, 0xf5, 0xe0, 0xc5, 0x6e, 0xec, 0xe8, 0xf0, 0x5c, 0x54, 0xc4, 0x90, 0xb0, 0x79, 0xe3, 0x1b, 0xef,
    0x82, 0xff, 0x0e, 0xe8, 0xf2, 0xb0, 0xa3, 0x27, 0x56, 0xd2, 0x49, 0xc5, 0xf2, 0x12, 0x69, 0x81, 0x6c, 0xb7, 0x06, 0x1b, 0x26, 0x5d, 0xb2, 0x12,
];

/// A message that does not have the layout its type requires.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MsgError {
    #[error("message too short: {len} bytes where {need} are needed")]
    Short { len: usize, need: usize },
    #[error("unexpected message type {0:#010x}")]
    UnexpectedType(u32),
    #[error("unsupported crypto schema {0} (only 1 = AES)")]
    Schema(u32),
    #[error("RPC_PROXY_REQ extra size {0} does not fit the message")]
    BadExtra(u32),
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

fn need(b: &[u8], n: usize) -> Result<(), MsgError> {
    if b.len() < n {
        Err(MsgError::Short { len: b.len(), need: n })
    } else {
        Ok(())
    }
}

/// The message type (first word) of a payload.
pub fn msg_type(b: &[u8]) -> Result<u32, MsgError> {
    need(b, 4)?;
    Ok(u32_at(b, 0))
}

/// RPC_NONCE, both directions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nonce {
    pub key_select: [u8; 4],
    pub schema: u32,
    pub ts: u32,
    pub nonce: [u8; 16],
}

impl Nonce {
    pub fn encode(&self) -> Vec<u8> {
        let mut o = Vec::with_capacity(32);
        o.extend_from_slice(&RPC_NONCE.to_le_bytes());
        o.extend_from_slice(&self.key_select);
        o.extend_from_slice(&self.schema.to_le_bytes());
        o.extend_from_slice(&self.ts.to_le_bytes());
        o.extend_from_slice(&self.nonce);
        o
    }

    pub fn parse(b: &[u8]) -> Result<Nonce, MsgError> {
        need(b, 32)?;
        if u32_at(b, 0) != RPC_NONCE {
            return Err(MsgError::UnexpectedType(u32_at(b, 0)));
        }
        let schema = u32_at(b, 8);
        if schema != SCHEMA_AES {
            return Err(MsgError::Schema(schema));
        }
        Ok(Nonce { key_select: b[4..8].try_into().unwrap(), schema, ts: u32_at(b, 12), nonce: b[16..32].try_into().unwrap() })
    }
}

/// RPC_HANDSHAKE, both directions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handshake {
    pub flags: u32,
    pub sender_pid: [u8; 12],
    pub peer_pid: [u8; 12],
}

/// What answers our RPC_HANDSHAKE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandshakeReply {
    Ok(Handshake),
    Error { code: i32 },
}

impl Handshake {
    pub fn encode(&self) -> Vec<u8> {
        let mut o = Vec::with_capacity(32);
        o.extend_from_slice(&RPC_HANDSHAKE.to_le_bytes());
        o.extend_from_slice(&self.flags.to_le_bytes());
        o.extend_from_slice(&self.sender_pid);
        o.extend_from_slice(&self.peer_pid);
        o
    }

    pub fn parse(b: &[u8]) -> Result<HandshakeReply, MsgError> {
        match msg_type(b)? {
            RPC_HANDSHAKE => {
                need(b, 32)?;
                Ok(HandshakeReply::Ok(Handshake { flags: u32_at(b, 4), sender_pid: b[8..20].try_into().unwrap(), peer_pid: b[20..32].try_into().unwrap() }))
            }
            RPC_HANDSHAKE_ERROR => {
                need(b, 8)?;
                Ok(HandshakeReply::Error { code: u32_at(b, 4) as i32 })
            }
            t => Err(MsgError::UnexpectedType(t)),
        }
    }
}

fn ip16(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => a.octets(),
    }
}

fn ip_from16(b: &[u8]) -> IpAddr {
    let a = Ipv6Addr::from(<[u8; 16]>::try_from(b).unwrap());
    match a.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(a),
    }
}

/// One RPC_PROXY_REQ: a client packet with who sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyReq {
    pub flags: u32,
    pub conn_id: u64,
    pub client: SocketAddr,
    pub proxy: SocketAddr,
    /// The extra TL block as sent (present when `flags & 0xC`).
    pub extra: Option<Vec<u8>>,
    pub data: Vec<u8>,
}

/// The ad tag in its extra TL form: TL_PROXY_TAG + TL string of 16 bytes (24 bytes).
pub fn ad_tag_extra(tag: &[u8; 16]) -> [u8; 24] {
    let mut e = [0u8; 24];
    e[..4].copy_from_slice(&TL_PROXY_TAG.to_le_bytes());
    e[4] = 16;
    e[5..21].copy_from_slice(tag);
    e
}

/// Append an RPC_PROXY_REQ. `ad_tag` adds the extra block; the caller sets `HAS_AD_TAG` in
/// `flags` with it (kept separate so the flag word is exactly what the caller chose).
#[allow(clippy::too_many_arguments)]
pub fn encode_proxy_req(flags: u32, conn_id: u64, client: SocketAddr, proxy: SocketAddr, ad_tag: Option<&[u8; 16]>, data: &[u8], out: &mut Vec<u8>) {
    out.reserve(84 + data.len());
    out.extend_from_slice(&RPC_PROXY_REQ.to_le_bytes());
    out.extend_from_slice(&flags.to_le_bytes());
    out.extend_from_slice(&conn_id.to_le_bytes());
    out.extend_from_slice(&ip16(client.ip()));
    out.extend_from_slice(&(client.port() as u32).to_le_bytes());
    out.extend_from_slice(&ip16(proxy.ip()));
    out.extend_from_slice(&(proxy.port() as u32).to_le_bytes());
    if let Some(tag) = ad_tag {
        out.extend_from_slice(&24u32.to_le_bytes());
        out.extend_from_slice(&ad_tag_extra(tag));
    }
    out.extend_from_slice(data);
}

impl ProxyReq {
    /// Parse (middle-end side).
    pub fn parse(b: &[u8]) -> Result<ProxyReq, MsgError> {
        need(b, 56)?;
        if u32_at(b, 0) != RPC_PROXY_REQ {
            return Err(MsgError::UnexpectedType(u32_at(b, 0)));
        }
        let flags = u32_at(b, 4);
        let port = |at| u32_at(b, at) as u16;
        let client = SocketAddr::new(ip_from16(&b[16..32]), port(32));
        let proxy = SocketAddr::new(ip_from16(&b[36..52]), port(52));
        let (extra, rest) = if flags & 0xC != 0 {
            need(b, 60)?;
            let size = u32_at(b, 56);
            let end = 60usize.checked_add(size as usize).filter(|e| *e <= b.len() && size.is_multiple_of(4)).ok_or(MsgError::BadExtra(size))?;
            (Some(b[60..end].to_vec()), end)
        } else {
            (None, 56)
        };
        Ok(ProxyReq { flags, conn_id: u64_at(b, 8), client, proxy, extra, data: b[rest..].to_vec() })
    }

    /// The ad tag carried in the extra block, if it holds a TL_PROXY_TAG with 16 bytes.
    pub fn ad_tag(&self) -> Option<[u8; 16]> {
        let e = self.extra.as_deref()?;
        if e.len() >= 21 && u32_at(e, 0) == TL_PROXY_TAG && e[4] == 16 {
            Some(e[5..21].try_into().unwrap())
        } else {
            None
        }
    }
}

/// A message from the middle-end (docs/protocol.md §5.7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FromMe {
    ProxyAns {
        flags: u32,
        conn_id: u64,
        data: Vec<u8>,
    },
    SimpleAck {
        conn_id: u64,
        confirm: u32,
    },
    CloseExt {
        conn_id: u64,
    },
    Ping {
        ping_id: u64,
    },
    /// A type the proxy does not act on.
    Other(u32),
}

impl FromMe {
    pub fn parse(b: &[u8]) -> Result<FromMe, MsgError> {
        Ok(match msg_type(b)? {
            RPC_PROXY_ANS => {
                need(b, 16)?;
                FromMe::ProxyAns { flags: u32_at(b, 4), conn_id: u64_at(b, 8), data: b[16..].to_vec() }
            }
            RPC_SIMPLE_ACK => {
                need(b, 16)?;
                FromMe::SimpleAck { conn_id: u64_at(b, 4), confirm: u32_at(b, 12) }
            }
            RPC_CLOSE_EXT => {
                need(b, 12)?;
                FromMe::CloseExt { conn_id: u64_at(b, 4) }
            }
            RPC_PING => {
                need(b, 12)?;
                FromMe::Ping { ping_id: u64_at(b, 4) }
            }
            t => FromMe::Other(t),
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut o = Vec::new();
        match self {
            FromMe::ProxyAns { flags, conn_id, data } => {
                o.extend_from_slice(&RPC_PROXY_ANS.to_le_bytes());
                o.extend_from_slice(&flags.to_le_bytes());
                o.extend_from_slice(&conn_id.to_le_bytes());
                o.extend_from_slice(data);
            }
            FromMe::SimpleAck { conn_id, confirm } => {
                o.extend_from_slice(&RPC_SIMPLE_ACK.to_le_bytes());
                o.extend_from_slice(&conn_id.to_le_bytes());
                o.extend_from_slice(&confirm.to_le_bytes());
            }
            FromMe::CloseExt { conn_id } => {
                o.extend_from_slice(&RPC_CLOSE_EXT.to_le_bytes());
                o.extend_from_slice(&conn_id.to_le_bytes());
            }
            FromMe::Ping { ping_id } => {
                o.extend_from_slice(&RPC_PING.to_le_bytes());
                o.extend_from_slice(&ping_id.to_le_bytes());
            }
            FromMe::Other(t) => o.extend_from_slice(&t.to_le_bytes()),
        }
        o
    }
}

/// A message to the middle-end other than the handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToMe {
    ProxyReq(ProxyReq),
    CloseConn { conn_id: u64 },
    Pong { ping_id: u64 },
    Other(u32),
}

impl ToMe {
    pub fn parse(b: &[u8]) -> Result<ToMe, MsgError> {
        Ok(match msg_type(b)? {
            RPC_PROXY_REQ => ToMe::ProxyReq(ProxyReq::parse(b)?),
            RPC_CLOSE_CONN => {
                need(b, 12)?;
                ToMe::CloseConn { conn_id: u64_at(b, 4) }
            }
            RPC_PONG => {
                need(b, 12)?;
                ToMe::Pong { ping_id: u64_at(b, 4) }
            }
            t => ToMe::Other(t),
        })
    }
}

/// RPC_CLOSE_CONN: the proxy's client went away (or an answer came for an unknown one).
pub fn close_conn(conn_id: u64) -> [u8; 12] {
    let mut o = [0u8; 12];
    o[..4].copy_from_slice(&RPC_CLOSE_CONN.to_le_bytes());
    o[4..].copy_from_slice(&conn_id.to_le_bytes());
    o
}

/// RPC_PONG answering an RPC_PING.
pub fn pong(ping_id: u64) -> [u8; 12] {
    let mut o = [0u8; 12];
    o[..4].copy_from_slice(&RPC_PONG.to_le_bytes());
    o[4..].copy_from_slice(&ping_id.to_le_bytes());
    o
}

/// MTProto function ids an unencrypted client packet may carry (docs/protocol.md §3.5).
const PLAIN_FUNCTIONS: [u32; 4] = [0x60469778, 0xbe7e8ef1, 0xd712e4be, 0xf5045f1f];

/// Whether a client packet looks like MTProto and is forwarded (the official proxy's check,
/// docs/protocol.md §3.5): length a multiple of 4, and either an encrypted packet of at least 56
/// bytes, or an unencrypted one with a plausible inner length and a key-exchange function.
pub fn forwardable(packet: &[u8]) -> bool {
    let len = packet.len();
    if !len.is_multiple_of(4) || len < 8 {
        return false;
    }
    if packet[..8] != [0; 8] {
        return len >= 56;
    }
    if len < 24 {
        return false;
    }
    let inner = u32_at(packet, 16) as usize;
    inner >= 20 && inner <= len - 20 && PLAIN_FUNCTIONS.contains(&u32_at(packet, 20))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/protocol.md §8.5 Vector E (= seriyps/mtproto_proxy `encode_test` sample 1).
    #[test]
    fn vector_e_proxy_req() {
        let data = hex::decode("0000000000000000000000003d02185b140000007897466099c58eeef58b55d0a0f144596a0776a7").unwrap();
        let tag: [u8; 16] = hex::decode("dcbe8f1493fa4cd9ab300891c0b5b326").unwrap().try_into().unwrap();
        let f = flags::ABRIDGED | flags::EXTMODE2 | flags::MAGIC | flags::HAS_AD_TAG | flags::NOT_ENCRYPTED;
        assert_eq!(f, 0x4002100a);
        let client: SocketAddr = "109.238.131.159:1128".parse().unwrap();
        let proxy: SocketAddr = "80.211.29.34:53634".parse().unwrap();
        let mut out = Vec::new();
        encode_proxy_req(f, 1, client, proxy, Some(&tag), &data, &mut out);
        let expected = concat!(
            "eef1ce360a100240010000000000000000000000000000000000ffff6dee839f",
            "6804000000000000000000000000ffff50d31d2282d1000018000000ae261edb",
            "10dcbe8f1493fa4cd9ab300891c0b5b326000000000000000000000000000000",
            "3d02185b140000007897466099c58eeef58b55d0a0f144596a0776a7"
        );
        assert_eq!(hex::encode(&out), expected);
        let parsed = ProxyReq::parse(&out).unwrap();
        assert_eq!((parsed.flags, parsed.conn_id, parsed.client, parsed.proxy), (f, 1, client, proxy));
        assert_eq!(parsed.ad_tag(), Some(tag));
        assert_eq!(parsed.data, data);
        assert!(forwardable(&data));
    }

    #[test]
    fn ipv6_addresses_round_trip() {
        let client: SocketAddr = "[2001:db8::5]:443".parse().unwrap();
        let proxy: SocketAddr = "[2001:db8::1]:8443".parse().unwrap();
        let mut out = Vec::new();
        encode_proxy_req(flags::MAGIC, 7, client, proxy, None, &[0; 56], &mut out);
        assert_eq!(&out[16..32], &"2001:db8::5".parse::<Ipv6Addr>().unwrap().octets());
        let p = ProxyReq::parse(&out).unwrap();
        assert_eq!((p.client, p.proxy, p.extra, p.data.len()), (client, proxy, None, 56));
    }

    #[test]
    fn server_messages() {
        for m in [
            FromMe::ProxyAns { flags: 8, conn_id: 0x0102030405060708, data: vec![1, 2, 3, 4] },
            FromMe::SimpleAck { conn_id: 9, confirm: 0x8aabbccd },
            FromMe::CloseExt { conn_id: 10 },
            FromMe::Ping { ping_id: 11 },
        ] {
            assert_eq!(FromMe::parse(&m.encode()).unwrap(), m);
        }
        // Wire form of the simple ack from the docs/protocol.md §5.7 example.
        let ack = FromMe::SimpleAck { conn_id: 1, confirm: 0x8aabbccd }.encode();
        assert_eq!(hex::encode(&ack), "9b40ac3b0100000000000000cdbcab8a");
        assert_eq!(FromMe::parse(&[0x0d, 0xda, 0x03, 0x44, 0]), Err(MsgError::Short { len: 5, need: 16 }));
        assert_eq!(ToMe::parse(&close_conn(5)).unwrap(), ToMe::CloseConn { conn_id: 5 });
        assert_eq!(ToMe::parse(&pong(6)).unwrap(), ToMe::Pong { ping_id: 6 });
    }

    #[test]
    fn nonce_and_handshake() {
        let n = Nonce { key_select: [0xc4, 0xf9, 0xfa, 0xca], schema: 1, ts: 1528396015, nonce: [7; 16] };
        assert_eq!(Nonce::parse(&n.encode()).unwrap(), n);
        let mut bad = n.encode();
        bad[8] = 2;
        assert_eq!(Nonce::parse(&bad), Err(MsgError::Schema(2)));
        let h = Handshake { flags: 0, sender_pid: PID_PLACEHOLDER, peer_pid: PID_PLACEHOLDER };
        assert_eq!(Handshake::parse(&h.encode()).unwrap(), HandshakeReply::Ok(h));
        let err = [0xda, 0xbe, 0x27, 0x6a, 0xff, 0xff, 0xff, 0xff];
        assert_eq!(Handshake::parse(&err).unwrap(), HandshakeReply::Error { code: -1 });
    }

    #[test]
    fn forwardable_filter() {
        assert!(!forwardable(&[0; 40][..39]));
        assert!(forwardable(&[1; 56]));
        assert!(!forwardable(&[1; 52]));
        // auth_key_id 0 with an unknown function id is dropped.
        let mut p = hex::decode("0000000000000000000000003d02185b14000000deadbeef99c58eeef58b55d0a0f144596a0776a7").unwrap();
        assert!(!forwardable(&p));
        p[20..24].copy_from_slice(&0xd712e4beu32.to_le_bytes());
        assert!(forwardable(&p));
    }
}
