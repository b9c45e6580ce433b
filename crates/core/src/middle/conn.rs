//! One encrypted RPC connection to a middle-end, shared by many clients (docs/protocol.md §5.3–5.5).
//!
//! ```text
//! connect -> RPC_NONCE (plain, seq -2) -> derive CBC keys -> RPC_HANDSHAKE (CBC, seq -1) -> ready
//! writer task: client payloads from a bounded channel -> frames (seq 0..) -> pad -> CBC -> socket
//! reader task: socket -> CBC -> frames -> RPC_PROXY_ANS / SIMPLE_ACK / CLOSE_EXT to the client
//!              registered under the ext_conn_id; RPC_PING answered with RPC_PONG
//! ```
//! When the connection dies every registered client's channel closes, which ends its session.
//!
//! The TCP stream comes from `upstream` (direct or through an `[upstream]` server). The keys mix
//! in our address as the middle-end sees it: the socket's own address direct, the bound address
//! a SOCKS5 server reports through it. An HTTP CONNECT proxy does not say which address it
//! connects from, so through one the local address is used and the handshake fails unless the
//! proxy runs on this host with the same address (use a SOCKS5 server for middle-proxy mode).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mtproxy_proto::rpc::cbc::{CbcDecrypt, CbcEncrypt};
use mtproxy_proto::rpc::frame::{pad_to_block, FrameError, FrameWriter};
use mtproxy_proto::rpc::input::FrameInput;
use mtproxy_proto::rpc::keys::{derive, KeyInput, Purpose};
use mtproxy_proto::rpc::msg::{self, FromMe, Handshake, HandshakeReply, MsgError, Nonce, PID_PLACEHOLDER, SCHEMA_AES};
use rand::RngCore;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::ClusterStats;

/// Largest clock difference to the middle-end the official proxy accepts (docs/protocol.md §5.4).
const MAX_CLOCK_DIFF: i64 = 30;
/// Payloads queued towards the middle-end per connection.
const OUT_QUEUE: usize = 1024;
/// Events queued towards one client.
pub const CLIENT_QUEUE: usize = 256;
/// How long the reader waits for a slow client before dropping it (so one slow client cannot
/// stall the others on this connection for long).
const CLIENT_SEND_WAIT: Duration = Duration::from_secs(2);
/// Bytes batched into one encrypted write.
const WRITE_BATCH: usize = 256 * 1024;

/// Why a middle-end connection failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("timed out")]
    Timeout,
    #[error("bad framing from the middle-end: {0}")]
    Frame(#[from] FrameError),
    #[error("bad message from the middle-end: {0}")]
    Msg(#[from] MsgError),
    #[error("middle-end answered with a different key selector (proxy secret out of date?)")]
    KeySelect,
    #[error("clock differs from the middle-end's by {0} s (more than {MAX_CLOCK_DIFF} s); fix the system clock")]
    Clock(i64),
    #[error("middle-end refused the handshake (error {0}); the proxy secret or the NAT address (nat_ip) is probably wrong")]
    Refused(i32),
    #[error("middle-end handshake names another peer")]
    PeerMismatch,
    #[error("the connection is closed")]
    Closed,
}

/// What the middle-end sends to one client.
#[derive(Debug)]
pub enum ClientEvent {
    Answer(Vec<u8>),
    QuickAck(u32),
    Close,
}

/// A ready connection.
pub struct MeConn {
    pub addr: SocketAddr,
    /// Our address on this connection (local IP and port).
    pub local: SocketAddr,
    tx: mpsc::Sender<Vec<u8>>,
    clients: Mutex<HashMap<u64, mpsc::Sender<ClientEvent>>>,
    closed: CancellationToken,
    /// The cluster's counters: frames in and out, connections open.
    pub stats: Arc<ClusterStats>,
    /// Set once the connection has left `connections_active`.
    uncounted: AtomicBool,
}

fn unix_now() -> u32 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as u32).unwrap_or(0)
}

/// The next RPC frame from the middle-end: socket reads fed to the shared sans-I/O
/// [`FrameInput`] (plain, then CBC once the keys are set).
async fn next_frame<R: AsyncRead + Unpin>(input: &mut FrameInput, r: &mut R) -> Result<Vec<u8>, ConnError> {
    let mut buf = [0u8; 16384];
    loop {
        if let Some(payload) = input.next_frame()? {
            return Ok(payload);
        }
        match r.read(&mut buf).await? {
            0 => return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into()),
            n => input.push(&buf[..n]),
        }
    }
}

/// Complete the handshake with the middle-end at `addr` on `opened` within `timeout`; the
/// connection counts itself and its frames in `stats`.
pub async fn connect(
    opened: crate::upstream::Opened,
    addr: SocketAddr,
    secret: &[u8],
    nat_ip: Option<IpAddr>,
    timeout: Duration,
    stats: Arc<ClusterStats>,
) -> Result<Arc<MeConn>, ConnError> {
    let (stream, reader, writer, enc, local) =
        tokio::time::timeout(timeout, handshake(opened, addr, secret, nat_ip)).await.map_err(|_| ConnError::Timeout)??;
    let (tx, rx) = mpsc::channel(OUT_QUEUE);
    let conn =
        Arc::new(MeConn { addr, local, tx, clients: Mutex::new(HashMap::new()), closed: CancellationToken::new(), stats, uncounted: AtomicBool::new(false) });
    conn.stats.connections_active.fetch_add(1, Relaxed);
    let (rh, wh) = stream.into_split();
    let c = conn.clone();
    tokio::spawn(async move {
        let r = tokio::select! {
            r = read_loop(rh, reader, &c) => r,
            _ = c.closed.cancelled() => Ok(()),
        };
        if let Err(e) = r {
            tracing::info!(middle_end = %c.addr, error = %e, "middle-end connection lost");
        }
        c.shutdown();
    });
    let c = conn.clone();
    tokio::spawn(async move {
        let r = tokio::select! {
            r = write_loop(wh, rx, writer, enc, &c) => r,
            _ = c.closed.cancelled() => Ok(()),
        };
        if let Err(e) = r {
            tracing::info!(middle_end = %c.addr, error = %e, "middle-end connection lost (write)");
        }
        c.shutdown();
    });
    Ok(conn)
}

type Ready = (TcpStream, FrameInput, FrameWriter, CbcEncrypt, SocketAddr);

async fn handshake(opened: crate::upstream::Opened, addr: SocketAddr, secret: &[u8], nat_ip: Option<IpAddr>) -> Result<Ready, ConnError> {
    let mut stream = opened.stream;
    let local = match opened.seen_as {
        Some(a) => a,
        None => stream.local_addr()?,
    };
    // The address Telegram sees: the NAT address when one of this family is set.
    let seen_ip = match nat_ip {
        Some(ip) if ip.is_ipv4() == local.is_ipv4() => ip,
        _ => local.ip(),
    };
    let mut nonce_clt = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut nonce_clt);
    let ts = unix_now();
    let key_select: [u8; 4] = secret[..4].try_into().unwrap();
    let mut writer = FrameWriter::default();
    let mut out = Vec::new();
    writer.write(&Nonce { key_select, schema: SCHEMA_AES, ts, nonce: nonce_clt }.encode(), &mut out);
    stream.write_all(&out).await?;

    let mut reader = FrameInput::default();
    let theirs = Nonce::parse(&next_frame(&mut reader, &mut stream).await?)?;
    if theirs.key_select != key_select {
        return Err(ConnError::KeySelect);
    }
    let diff = theirs.ts as i64 - ts as i64;
    if diff.abs() > MAX_CLOCK_DIFF {
        return Err(ConnError::Clock(diff));
    }
    let input = KeyInput { nonce_srv: theirs.nonce, nonce_clt, clt_ts: ts, server: addr, client: SocketAddr::new(seen_ip, local.port()), secret };
    let mut enc = CbcEncrypt::new(&derive(Purpose::Client, &input));
    reader.decrypt_with(CbcDecrypt::new(&derive(Purpose::Server, &input)));

    let mut out = Vec::new();
    writer.write(&Handshake { flags: 0, sender_pid: PID_PLACEHOLDER, peer_pid: PID_PLACEHOLDER }.encode(), &mut out);
    pad_to_block(&mut out, 0);
    enc.encrypt(&mut out);
    stream.write_all(&out).await?;
    match Handshake::parse(&next_frame(&mut reader, &mut stream).await?)? {
        HandshakeReply::Ok(h) if h.peer_pid == PID_PLACEHOLDER => {}
        HandshakeReply::Ok(_) => return Err(ConnError::PeerMismatch),
        HandshakeReply::Error { code } => return Err(ConnError::Refused(code)),
    }
    Ok((stream, reader, writer, enc, local))
}

async fn read_loop(mut r: tokio::net::tcp::OwnedReadHalf, mut reader: FrameInput, conn: &MeConn) -> Result<(), ConnError> {
    loop {
        let payload = next_frame(&mut reader, &mut r).await?;
        conn.stats.frames_in.fetch_add(1, Relaxed);
        let (conn_id, event) = match FromMe::parse(&payload)? {
            FromMe::ProxyAns { conn_id, data, .. } => (conn_id, ClientEvent::Answer(data)),
            FromMe::SimpleAck { conn_id, confirm } => (conn_id, ClientEvent::QuickAck(confirm)),
            FromMe::CloseExt { conn_id } => (conn_id, ClientEvent::Close),
            FromMe::Ping { ping_id } => {
                let _ = conn.tx.send(msg::pong(ping_id).to_vec()).await;
                continue;
            }
            FromMe::Other(t) => {
                tracing::debug!(middle_end = %conn.addr, message_type = format_args!("{t:#010x}"), "ignoring middle-end message");
                continue;
            }
        };
        let is_close = matches!(event, ClientEvent::Close);
        let sender = {
            let mut clients = conn.clients.lock().unwrap();
            if is_close {
                clients.remove(&conn_id)
            } else {
                clients.get(&conn_id).cloned()
            }
        };
        // Tell the middle-end to forget a client we no longer have (docs/protocol.md §5.7), or one too
        // slow to take its answers.
        let forget = match sender {
            Some(s) => {
                let slow = tokio::time::timeout(CLIENT_SEND_WAIT, s.send(event)).await.is_err();
                if slow {
                    tracing::debug!(middle_end = %conn.addr, "client too slow; dropping it");
                    conn.unregister(conn_id);
                }
                slow
            }
            None => !is_close,
        };
        if forget {
            let _ = conn.tx.send(msg::close_conn(conn_id).to_vec()).await;
        }
    }
}

async fn write_loop(
    mut w: tokio::net::tcp::OwnedWriteHalf,
    mut rx: mpsc::Receiver<Vec<u8>>,
    mut writer: FrameWriter,
    mut enc: CbcEncrypt,
    conn: &MeConn,
) -> Result<(), ConnError> {
    let mut out = Vec::new();
    while let Some(first) = rx.recv().await {
        out.clear();
        writer.write(&first, &mut out);
        let mut n = 1;
        while out.len() < WRITE_BATCH {
            match rx.try_recv() {
                Ok(p) => {
                    writer.write(&p, &mut out);
                    n += 1;
                }
                Err(_) => break,
            }
        }
        pad_to_block(&mut out, 0);
        enc.encrypt(&mut out);
        w.write_all(&out).await?;
        conn.stats.frames_out.fetch_add(n, Relaxed);
    }
    Ok(())
}

impl MeConn {
    /// Whether the connection still works.
    pub fn is_alive(&self) -> bool {
        !self.closed.is_cancelled()
    }

    /// Clients currently multiplexed here.
    pub fn client_count(&self) -> usize {
        self.clients.lock().unwrap().len()
    }

    /// Route answers for `conn_id` to the returned receiver.
    pub fn register(&self, conn_id: u64) -> Result<mpsc::Receiver<ClientEvent>, ConnError> {
        if !self.is_alive() {
            return Err(ConnError::Closed);
        }
        let (tx, rx) = mpsc::channel(CLIENT_QUEUE);
        self.clients.lock().unwrap().insert(conn_id, tx);
        Ok(rx)
    }

    /// Forget `conn_id`; true if it was registered.
    pub fn unregister(&self, conn_id: u64) -> bool {
        self.clients.lock().unwrap().remove(&conn_id).is_some()
    }

    /// Queue one message payload (waits while the queue is full: backpressure on the client).
    pub async fn send(&self, payload: Vec<u8>) -> Result<(), ConnError> {
        tokio::select! {
            r = self.tx.send(payload) => r.map_err(|_| ConnError::Closed),
            _ = self.closed.cancelled() => Err(ConnError::Closed),
        }
    }

    /// Queue without waiting (used on close paths).
    pub fn try_send(&self, payload: Vec<u8>) {
        let _ = self.tx.try_send(payload);
    }

    /// Close the connection and end every client on it.
    pub fn shutdown(&self) {
        self.closed.cancel();
        self.clients.lock().unwrap().clear();
        if !self.uncounted.swap(true, Relaxed) {
            self.stats.connections_active.fetch_sub(1, Relaxed);
        }
    }
}
