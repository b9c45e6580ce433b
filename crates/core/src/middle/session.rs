//! One client through the middle-end (docs/protocol.md §3.5, §5.6, §5.7).
//!
//! ```text
//! client --[TLS]--> CTR decrypt -> framing::decode -> packet (quick-ack bit, no padding)
//!        -> MTProto check -> RPC_PROXY_REQ{flags, ext_conn_id, client/proxy address, ad tag}
//!        -> shared ME connection
//! ME -> RPC_PROXY_ANS  -> framing::encode (+0..3 random bytes for dd) -> CTR -> [TLS] -> client
//!    -> RPC_SIMPLE_ACK -> quick ACK (abridged: 4 bytes big-endian; others: little-endian)
//!    -> RPC_CLOSE_EXT  -> close the client
//! ```
//! Flags follow the official proxy (docs/protocol.md §5.6, verified on the wire): MAGIC | EXTMODE2,
//! ABRIDGED or INTERMEDIATE by transport, HAS_AD_TAG, NOT_ENCRYPTED for auth_key_id 0,
//! QUICKACK when asked, DROPPED after a packet was not forwarded. PAD is never sent (the
//! official proxy does not; the middle-end never sees client padding since we strip it).
//! When the client leaves, RPC_CLOSE_CONN tells the middle-end.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use mtproxy_proto::faketls::{self, MAX_RECORD_PAYLOAD};
use mtproxy_proto::framing;
use mtproxy_proto::rpc::msg::{self, flags};
use mtproxy_proto::ProtoTag;
use rand::{Rng, RngCore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::conn::{ClientEvent, MeConn};
use super::Middle;
use crate::config::{IpPreference, MiddleSettings, Timeouts};
use crate::events::ClientAddr;
use crate::handshake::Authenticated;
use crate::relay::Activity;
use crate::stats::{ByteCounter, Stats};
use crate::upstream::Router;

/// Bytes written to the client in one go at most when answers are batched.
const WRITE_BATCH: usize = 256 * 1024;

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

/// The RPC_PROXY_REQ flags for a packet.
pub fn request_flags(tag: ProtoTag, payload: &[u8], quick_ack: bool, has_ad_tag: bool, dropped: bool) -> u32 {
    let mut f = flags::MAGIC | flags::EXTMODE2;
    f |= match tag {
        ProtoTag::Abridged => flags::ABRIDGED,
        ProtoTag::Intermediate | ProtoTag::PaddedIntermediate => flags::INTERMEDIATE,
    };
    if has_ad_tag {
        f |= flags::HAS_AD_TAG;
    }
    if payload.len() >= 8 && payload[..8] == [0; 8] {
        f |= flags::NOT_ENCRYPTED;
    }
    if quick_ack {
        f |= flags::QUICKACK;
    }
    if dropped {
        f |= flags::DROPPED;
    }
    f
}

/// Re-frame one middle-end event in the client's framing (plaintext stream bytes). `None`:
/// nothing to send (an answer that cannot be framed).
pub fn client_bytes(tag: ProtoTag, ev: &ClientEvent, out: &mut Vec<u8>) -> bool {
    match ev {
        ClientEvent::Answer(data) => {
            if data.len() % 4 != 0 {
                return false;
            }
            let mut pad = [0u8; 3];
            let pad_len = if tag == ProtoTag::PaddedIntermediate {
                let mut rng = rand::thread_rng();
                rng.fill_bytes(&mut pad);
                rng.gen_range(0..=3)
            } else {
                0
            };
            framing::encode(tag, data, &pad[..pad_len], out);
            true
        }
        ClientEvent::QuickAck(token) => {
            match tag {
                ProtoTag::Abridged => out.extend_from_slice(&token.to_be_bytes()),
                _ => out.extend_from_slice(&token.to_le_bytes()),
            }
            true
        }
        ClientEvent::Close => false,
    }
}

/// Everything a session needs besides the client socket: the few settings it reads, not the
/// whole snapshot, so what a middle-end session depends on is visible here.
pub struct Context<'a> {
    /// `[middle]`: the NAT address and how to reach and share middle-end connections.
    pub settings: &'a MiddleSettings,
    /// The address family to reach the middle-end with.
    pub dc_ip: IpPreference,
    /// The connect timeout to the middle-end and the client's idle timeout.
    pub timeouts: &'a Timeouts,
    /// The `[upstream]` servers a new middle-end connection goes through.
    pub router: &'a Arc<Router>,
    pub middle: &'a Middle,
    pub stats: &'a Arc<Stats>,
    pub close_all: &'a CancellationToken,
    /// Cancelled when the user's limits (quota, expiry) close their connections.
    pub limit_cut: &'a CancellationToken,
    pub ad_tag: [u8; 16],
}

/// Serve one authenticated client through the middle-end until it or the middle-end closes.
pub async fn run(stream: TcpStream, peer: SocketAddr, auth: Authenticated, ctx: Context<'_>) {
    let entry = auth.entry.clone();
    let Ok(local) = stream.local_addr() else { return };
    let proxy_ip = match ctx.settings.nat_ip {
        Some(ip) if ip.is_ipv4() == local.is_ipv4() => ip,
        _ => local.ip(),
    };
    let proxy_addr = SocketAddr::new(proxy_ip, local.port());
    let client_addr = SocketAddr::new(peer.ip().to_canonical(), peer.port());
    let conn = match ctx.middle.connection(auth.dc, ctx.settings, ctx.dc_ip, ctx.timeouts.connect, (ctx.router, ctx.stats)).await {
        Ok(c) => c,
        Err(e) => {
            ctx.stats.upstream_connect_failures.fetch_add(1, Relaxed);
            ctx.middle.stats.connect_failures.fetch_add(1, Relaxed);
            tracing::warn!(client = %ClientAddr(peer), user = %entry.user.name, dc = auth.dc, error = %e, "middle-end unavailable");
            return;
        }
    };
    let conn_id = loop {
        let id = rand::thread_rng().next_u64();
        if id != 0 {
            break id;
        }
    };
    let rx = match conn.register(conn_id) {
        Ok(rx) => rx,
        Err(_) => return,
    };
    ctx.middle.stats.sessions_total.fetch_add(1, Relaxed);
    let _active = ActiveSession::new(&ctx.middle.stats.sessions_active);
    tracing::debug!(client = %ClientAddr(peer), user = %entry.user.name, dc = auth.dc, transport = auth.tag.name(), middle_end = %conn.addr, "relaying via middle-end");

    let (cr, cw) = stream.into_split();
    let activity = Activity::new();
    let mut up = ByteCounter::new(&entry.stats.bytes_from_client, &ctx.stats.bytes_from_client);
    let mut down = ByteCounter::new(&entry.stats.bytes_to_client, &ctx.stats.bytes_to_client);
    let tag = auth.tag;
    let to_client = auth.to_client.cipher();
    let tls = auth.tls.is_some();
    let upstream = Upstream { conn: &conn, conn_id, client: client_addr, proxy: proxy_addr, ad_tag: ctx.ad_tag, tag, middle: ctx.middle };
    let outcome = tokio::select! {
        r = upstream.run(cr, auth, &activity, &mut up) => match r { Ok(()) => "client closed", Err(_) => "client error" },
        r = downstream(cw, rx, tag, to_client, tls, &activity, &mut down) => r,
        _ = activity.idle(ctx.timeouts.idle) => "idle timeout",
        _ = entry.revoked.cancelled() => "user revoked",
        _ = ctx.limit_cut.cancelled() => "user limit reached",
        _ = ctx.close_all.cancelled() => "shutdown",
    };
    if conn.unregister(conn_id) {
        conn.try_send(msg::close_conn(conn_id).to_vec());
    }
    tracing::debug!(client = %ClientAddr(peer), user = %entry.user.name, up = up.total(), down = down.total(), outcome, "connection closed");
}

/// Counts a session in `sessions_active` while it lives, whichever way it ends.
struct ActiveSession<'a>(&'a AtomicU64);

impl<'a> ActiveSession<'a> {
    fn new(gauge: &'a AtomicU64) -> Self {
        gauge.fetch_add(1, Relaxed);
        ActiveSession(gauge)
    }
}

impl Drop for ActiveSession<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

struct Upstream<'a> {
    conn: &'a MeConn,
    conn_id: u64,
    client: SocketAddr,
    proxy: SocketAddr,
    ad_tag: [u8; 16],
    tag: ProtoTag,
    middle: &'a Middle,
}

impl Upstream<'_> {
    async fn run(&self, mut r: OwnedReadHalf, auth: Authenticated, activity: &Activity, counter: &mut ByteCounter<'_>) -> io::Result<()> {
        let mut decrypt = auth.client_decrypt;
        let mut tls = auth.tls;
        let mut stream = auth.pending;
        counter.add(stream.len());
        let mut dropped = false;
        let mut buf = vec![0u8; MAX_RECORD_PAYLOAD + 4096];
        loop {
            let mut at = 0;
            while let Some((pkt, used)) = framing::decode(self.tag, &stream[at..]).map_err(invalid)? {
                at += used;
                if !msg::forwardable(&pkt.payload) {
                    self.middle.stats.packets_dropped.fetch_add(1, Relaxed);
                    dropped = true;
                    continue;
                }
                let f = request_flags(self.tag, &pkt.payload, pkt.quick_ack, true, dropped);
                let mut req = Vec::with_capacity(84 + pkt.payload.len());
                msg::encode_proxy_req(f, self.conn_id, self.client, self.proxy, Some(&self.ad_tag), &pkt.payload, &mut req);
                self.conn.send(req).await.map_err(|e| io::Error::new(io::ErrorKind::BrokenPipe, e.to_string()))?;
            }
            stream.drain(..at);
            let n = r.read(&mut buf).await?;
            if n == 0 {
                return Ok(());
            }
            activity.touch();
            let len = match &mut tls {
                Some(rr) => rr.deframe_in_place(&mut buf, n).map_err(invalid)?,
                None => n,
            };
            decrypt.apply(&mut buf[..len]);
            counter.add(len);
            stream.extend_from_slice(&buf[..len]);
        }
    }
}

async fn downstream(
    mut w: OwnedWriteHalf,
    mut rx: mpsc::Receiver<ClientEvent>,
    tag: ProtoTag,
    mut encrypt: mtproxy_proto::crypto::AesCtr,
    tls: bool,
    activity: &Activity,
    counter: &mut ByteCounter<'_>,
) -> &'static str {
    let mut plain = Vec::new();
    let mut wire = Vec::new();
    loop {
        let Some(first) = rx.recv().await else { return "middle-end connection lost" };
        plain.clear();
        let mut closing = matches!(first, ClientEvent::Close);
        client_bytes(tag, &first, &mut plain);
        while !closing && plain.len() < WRITE_BATCH {
            match rx.try_recv() {
                Ok(ev) => {
                    closing = matches!(ev, ClientEvent::Close);
                    client_bytes(tag, &ev, &mut plain);
                }
                Err(_) => break,
            }
        }
        if !plain.is_empty() {
            activity.touch();
            counter.add(plain.len());
            encrypt.apply(&mut plain);
            let out: &[u8] = if tls {
                wire.clear();
                for chunk in plain.chunks(MAX_RECORD_PAYLOAD) {
                    wire.extend_from_slice(&faketls::app_data_header(chunk.len()));
                    wire.extend_from_slice(chunk);
                }
                &wire
            } else {
                &plain
            };
            if w.write_all(out).await.is_err() {
                return "client error";
            }
        }
        if closing {
            let _ = w.shutdown().await;
            return "closed by middle-end";
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_match_the_official_wire_values() {
        // docs/protocol.md §5.6: the flag words the official binary sends.
        let plain = [0u8; 40];
        let enc = [1u8; 56];
        assert_eq!(request_flags(ProtoTag::PaddedIntermediate, &plain, false, true, false), 0x2002100a);
        assert_eq!(request_flags(ProtoTag::Intermediate, &enc, true, true, false), 0xa0021008);
        assert_eq!(request_flags(ProtoTag::Abridged, &plain, false, true, false), 0x4002100a);
        assert_eq!(request_flags(ProtoTag::PaddedIntermediate, &enc, false, false, false), 0x20021000);
        assert_eq!(request_flags(ProtoTag::PaddedIntermediate, &plain, false, false, false), 0x20021002);
        assert_eq!(request_flags(ProtoTag::Abridged, &enc, false, true, true) & flags::DROPPED, flags::DROPPED);
    }

    #[test]
    fn answers_and_acks_in_each_framing() {
        // docs/protocol.md §5.7: SIMPLE_ACK 0x8aabbccd -> cd bc ab 8a (dd/ee), 8a ab bc cd (ef).
        let mut out = Vec::new();
        client_bytes(ProtoTag::Abridged, &ClientEvent::QuickAck(0x8aabbccd), &mut out);
        assert_eq!(out, [0x8a, 0xab, 0xbc, 0xcd]);
        out.clear();
        client_bytes(ProtoTag::PaddedIntermediate, &ClientEvent::QuickAck(0x8aabbccd), &mut out);
        assert_eq!(out, [0xcd, 0xbc, 0xab, 0x8a]);
        let data: Vec<u8> = (0..40).collect();
        for tag in [ProtoTag::Abridged, ProtoTag::Intermediate, ProtoTag::PaddedIntermediate] {
            out.clear();
            assert!(client_bytes(tag, &ClientEvent::Answer(data.clone()), &mut out));
            let (pkt, used) = framing::decode(tag, &out).unwrap().unwrap();
            assert_eq!((pkt.payload, used), (data.clone(), out.len()));
            if tag == ProtoTag::PaddedIntermediate {
                assert!((44..=47).contains(&out.len()));
            }
        }
        out.clear();
        assert!(!client_bytes(ProtoTag::Abridged, &ClientEvent::Answer(vec![1, 2, 3]), &mut out));
        assert!(out.is_empty());
    }
}
