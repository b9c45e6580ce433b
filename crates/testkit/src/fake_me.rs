//! A fake Telegram middle-end (ME) and a fake configuration server, for tests of the
//! middle-proxy path. Never a Telegram host: everything listens on loopback.
//!
//! [`FakeMe`] is the server side of docs/protocol.md §5: it answers RPC_NONCE, derives the keys with
//! the same proxy secret (its own address as "server", the proxy's as "client"), checks the
//! RPC_HANDSHAKE and answers it, pings once, then unwraps every RPC_PROXY_REQ and records what
//! a test asserts (ad tag bytes, flags, client and proxy address, the MTProto constructor).
//! Behind it sits fake-DC logic (docs/testing.md "A fake Telegram DC"): `req_pq` / `req_pq_multi` get a `resPQ` listing
//! TDLib's and Telethon's key fingerprints, other unencrypted messages (such as
//! `req_DH_params`) are only recorded, encrypted packets are echoed back. A QUICKACK flag is
//! answered with RPC_SIMPLE_ACK [`QUICK_ACK_TOKEN`] first.
//!
//! [`ConfigServer`] serves the proxy secret and `proxy-multi.conf` over HTTP/1.1 on loopback
//! and can be taken away and brought back on the same port.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use mtproxy_proto::rpc::cbc::{CbcDecrypt, CbcEncrypt};
use mtproxy_proto::rpc::frame::{pad_to_block, FrameWriter};
use mtproxy_proto::rpc::input::FrameInput;
use mtproxy_proto::rpc::keys::{derive, KeyInput, Purpose};
use mtproxy_proto::rpc::msg::{flags, FromMe, Handshake, HandshakeReply, Nonce, ToMe, SCHEMA_AES};
use rand::RngCore;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// The token the fake middle-end acknowledges quick-ACK requests with (docs/protocol.md §5.7 example).
pub const QUICK_ACK_TOKEN: u32 = 0x8aabbccd;
pub const REQ_PQ: u32 = 0x60469778;
pub const REQ_PQ_MULTI: u32 = 0xbe7e8ef1;
pub const REQ_DH_PARAMS: u32 = 0xd712e4be;
pub const RES_PQ: u32 = 0x05162463;
pub const FINGERPRINT_TDLIB: u64 = 0xd09d1d85de64fd85;
pub const FINGERPRINT_TELETHON: u64 = 0x0bc35f3509f7b7a5;
/// pq = 0x17ED48941A08F981 (docs/testing.md), as TL bytes.
const PQ: [u8; 8] = 0x17ED48941A08F981u64.to_be_bytes();
const PING_ID: u64 = 0x1122334455667788;

/// One RPC_PROXY_REQ as the fake middle-end saw it.
#[derive(Debug, Clone)]
pub struct SeenReq {
    pub conn_id: u64,
    pub flags: u32,
    pub ad_tag: Option<[u8; 16]>,
    pub client: SocketAddr,
    pub proxy: SocketAddr,
    /// The MTProto constructor of an unencrypted packet.
    pub constructor: Option<u32>,
    pub len: usize,
}

/// Everything the fake middle-end recorded.
#[derive(Debug, Clone, Default)]
pub struct MeLog {
    pub handshakes: u64,
    pub requests: Vec<SeenReq>,
    /// RPC_CLOSE_CONN received, by ext_conn_id.
    pub closed: Vec<u64>,
    pub pongs: u64,
}

impl MeLog {
    pub fn constructors(&self) -> Vec<u32> {
        self.requests.iter().filter_map(|r| r.constructor).collect()
    }
}

type Writers = Arc<Mutex<HashMap<u64, mpsc::UnboundedSender<Vec<u8>>>>>;

/// A fake middle-end on loopback.
pub struct FakeMe {
    pub addr: SocketAddr,
    log: Arc<Mutex<MeLog>>,
    writers: Writers,
    task: JoinHandle<()>,
}

impl Drop for FakeMe {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// An unencrypted `resPQ` answering `nonce` (docs/testing.md).
pub fn res_pq(nonce: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&RES_PQ.to_le_bytes());
    body.extend_from_slice(nonce);
    let mut server_nonce = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut server_nonce);
    body.extend_from_slice(&server_nonce);
    body.push(8);
    body.extend_from_slice(&PQ);
    body.extend_from_slice(&[0, 0, 0]);
    body.extend_from_slice(&0x1cb5c415u32.to_le_bytes());
    body.extend_from_slice(&2u32.to_le_bytes());
    body.extend_from_slice(&FINGERPRINT_TDLIB.to_le_bytes());
    body.extend_from_slice(&FINGERPRINT_TELETHON.to_le_bytes());
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let msg_id = (now.as_secs() << 32) | ((now.subsec_nanos() as u64) & !3) | 1;
    let mut m = vec![0u8; 8];
    m.extend_from_slice(&msg_id.to_le_bytes());
    m.extend_from_slice(&(body.len() as u32).to_le_bytes());
    m.extend_from_slice(&body);
    m
}

impl FakeMe {
    /// Listen on 127.0.0.1 (any port) with `secret` as the proxy secret.
    pub async fn start(secret: Vec<u8>) -> io::Result<FakeMe> {
        Self::start_on(TcpListener::bind("127.0.0.1:0").await?, secret, None)
    }

    /// Serve on `listener`; `events` receives one line per event (for the `fake-me` binary).
    pub fn start_on(listener: TcpListener, secret: Vec<u8>, events: Option<mpsc::UnboundedSender<String>>) -> io::Result<FakeMe> {
        Self::start_full(listener, secret, events, None)
    }

    /// As if the proxy were behind NAT: the fake middle-end derives its keys with `public_ip`
    /// as the proxy's address instead of the connection's source address (what Telegram would
    /// see), so only a proxy configured with that `nat_ip` completes the handshake.
    pub fn start_behind_nat(listener: TcpListener, secret: Vec<u8>, public_ip: std::net::IpAddr) -> io::Result<FakeMe> {
        Self::start_full(listener, secret, None, Some(public_ip))
    }

    fn start_full(
        listener: TcpListener,
        secret: Vec<u8>,
        events: Option<mpsc::UnboundedSender<String>>,
        public_ip: Option<std::net::IpAddr>,
    ) -> io::Result<FakeMe> {
        let addr = listener.local_addr()?;
        let log = Arc::new(Mutex::new(MeLog::default()));
        let writers: Writers = Arc::new(Mutex::new(HashMap::new()));
        let (l2, w2) = (log.clone(), writers.clone());
        let secret = Arc::new(secret);
        let task = tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                let (l, w, sec, ev) = (l2.clone(), w2.clone(), secret.clone(), events.clone());
                tokio::spawn(async move {
                    if let Err(e) = serve_conn(s, &sec, &l, &w, ev.as_ref(), public_ip).await {
                        if let Some(ev) = &ev {
                            let _ = ev.send(format!("{{\"event\":\"conn_end\",\"error\":\"{e}\"}}"));
                        }
                    }
                });
            }
        });
        Ok(FakeMe { addr, log, writers, task })
    }

    /// A copy of what was recorded so far.
    pub fn log(&self) -> MeLog {
        self.log.lock().unwrap().clone()
    }

    /// Send RPC_CLOSE_EXT for a client; false if no connection carries it.
    pub fn close_client(&self, conn_id: u64) -> bool {
        match self.writers.lock().unwrap().get(&conn_id) {
            Some(w) => w.send(FromMe::CloseExt { conn_id }.encode()).is_ok(),
            None => false,
        }
    }

    /// Stop accepting (open connections stay).
    pub fn stop_accepting(&self) {
        self.task.abort();
    }
}

/// The next frame from the proxy, through the same sans-I/O [`FrameInput`] the proxy reads with.
async fn read_frame<R: AsyncRead + Unpin>(input: &mut FrameInput, r: &mut R) -> io::Result<Vec<u8>> {
    let mut buf = [0u8; 16384];
    loop {
        if let Some(p) = input.next_frame().map_err(|e| bad(&e.to_string()))? {
            return Ok(p);
        }
        let n = r.read(&mut buf).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        input.push(&buf[..n]);
    }
}

fn bad(m: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, m.to_string())
}

async fn serve_conn(
    mut s: TcpStream,
    secret: &[u8],
    log: &Mutex<MeLog>,
    writers: &Writers,
    events: Option<&mpsc::UnboundedSender<String>>,
    public_ip: Option<std::net::IpAddr>,
) -> io::Result<()> {
    s.set_nodelay(true)?;
    let local = s.local_addr()?;
    let seen = s.peer_addr()?;
    let peer = SocketAddr::new(public_ip.unwrap_or(seen.ip()), seen.port());
    let mut reader = FrameInput::default();
    let theirs = Nonce::parse(&read_frame(&mut reader, &mut s).await?).map_err(|e| bad(&e.to_string()))?;
    if theirs.key_select[..] != secret[..4] {
        return Err(bad("key_select does not match our proxy secret"));
    }
    let mut nonce_srv = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut nonce_srv);
    let mut writer = FrameWriter::default();
    let mut out = Vec::new();
    writer.write(&Nonce { key_select: theirs.key_select, schema: SCHEMA_AES, ts: unix_now() as u32, nonce: nonce_srv }.encode(), &mut out);
    s.write_all(&out).await?;
    let input = KeyInput { nonce_srv, nonce_clt: theirs.nonce, clt_ts: theirs.ts, server: local, client: peer, secret };
    reader.decrypt_with(CbcDecrypt::new(&derive(Purpose::Client, &input)));
    let mut enc = CbcEncrypt::new(&derive(Purpose::Server, &input));
    let hs = match Handshake::parse(&read_frame(&mut reader, &mut s).await?) {
        Ok(HandshakeReply::Ok(h)) => h,
        _ => return Err(bad("expected RPC_HANDSHAKE")),
    };
    let mut out = Vec::new();
    writer.write(&Handshake { flags: 0, sender_pid: *b"FAKEMIDDLEND", peer_pid: hs.sender_pid }.encode(), &mut out);
    writer.write(&FromMe::Ping { ping_id: PING_ID }.encode(), &mut out);
    pad_to_block(&mut out, 0);
    enc.encrypt(&mut out);
    s.write_all(&out).await?;
    log.lock().unwrap().handshakes += 1;
    if let Some(ev) = events {
        let _ = ev.send(format!("{{\"event\":\"handshake\",\"peer\":\"{peer}\"}}"));
    }

    let (mut rh, mut wh) = s.into_split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let write_task = tokio::spawn(async move {
        let mut out = Vec::new();
        while let Some(p) = rx.recv().await {
            out.clear();
            writer.write(&p, &mut out);
            while let Ok(more) = rx.try_recv() {
                writer.write(&more, &mut out);
            }
            pad_to_block(&mut out, 0);
            enc.encrypt(&mut out);
            if wh.write_all(&out).await.is_err() {
                return;
            }
        }
    });
    let mut mine: Vec<u64> = Vec::new();
    let result = loop {
        let payload = match read_frame(&mut reader, &mut rh).await {
            Ok(p) => p,
            Err(e) => break Err(e),
        };
        match ToMe::parse(&payload) {
            Ok(ToMe::ProxyReq(req)) => {
                if !mine.contains(&req.conn_id) {
                    mine.push(req.conn_id);
                    writers.lock().unwrap().insert(req.conn_id, tx.clone());
                }
                let plain = req.data.len() >= 8 && req.data[..8] == [0; 8];
                let constructor = (plain && req.data.len() >= 24).then(|| u32::from_le_bytes(req.data[20..24].try_into().unwrap()));
                let seen = SeenReq {
                    conn_id: req.conn_id,
                    flags: req.flags,
                    ad_tag: req.ad_tag(),
                    client: req.client,
                    proxy: req.proxy,
                    constructor,
                    len: req.data.len(),
                };
                if let Some(ev) = events {
                    let _ = ev.send(format!(
                        "{{\"event\":\"proxy_req\",\"conn_id\":{},\"flags\":{},\"ad_tag\":\"{}\",\"client\":\"{}\",\"proxy\":\"{}\",\"constructor\":{},\"len\":{}}}",
                        seen.conn_id,
                        seen.flags,
                        seen.ad_tag.map(hex_str).unwrap_or_default(),
                        seen.client,
                        seen.proxy,
                        seen.constructor.map(|c| c.to_string()).unwrap_or_else(|| "null".into()),
                        seen.len
                    ));
                }
                log.lock().unwrap().requests.push(seen);
                if req.flags & flags::QUICKACK != 0 {
                    let _ = tx.send(FromMe::SimpleAck { conn_id: req.conn_id, confirm: QUICK_ACK_TOKEN }.encode());
                }
                let answer = match constructor {
                    Some(REQ_PQ | REQ_PQ_MULTI) if req.data.len() >= 40 => Some(res_pq(&req.data[24..40])),
                    Some(_) => None,
                    None if !plain => Some(req.data.clone()),
                    None => None,
                };
                if let Some(data) = answer {
                    let _ = tx.send(FromMe::ProxyAns { flags: 0, conn_id: req.conn_id, data }.encode());
                }
            }
            Ok(ToMe::CloseConn { conn_id }) => {
                writers.lock().unwrap().remove(&conn_id);
                log.lock().unwrap().closed.push(conn_id);
                if let Some(ev) = events {
                    let _ = ev.send(format!("{{\"event\":\"close_conn\",\"conn_id\":{conn_id}}}"));
                }
            }
            Ok(ToMe::Pong { ping_id }) if ping_id == PING_ID => log.lock().unwrap().pongs += 1,
            Ok(_) => {}
            Err(e) => break Err(bad(&e.to_string())),
        }
    };
    write_task.abort();
    let mut w = writers.lock().unwrap();
    for id in mine {
        w.remove(&id);
    }
    result
}

fn hex_str(b: [u8; 16]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The documents a [`ConfigServer`] serves, by path.
pub type Routes = Arc<Mutex<HashMap<String, Vec<u8>>>>;

/// A tiny HTTP/1.1 server on loopback serving fixed documents (GET only, `Connection: close`).
pub struct ConfigServer {
    pub addr: SocketAddr,
    pub routes: Routes,
    task: Mutex<Option<JoinHandle<()>>>,
    /// Requests answered.
    pub hits: Arc<std::sync::atomic::AtomicU64>,
}

impl Drop for ConfigServer {
    fn drop(&mut self) {
        if let Some(t) = self.task.lock().unwrap().take() {
            t.abort();
        }
    }
}

impl ConfigServer {
    pub async fn start(routes: HashMap<String, Vec<u8>>) -> io::Result<ConfigServer> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let s = ConfigServer { addr, routes: Arc::new(Mutex::new(routes)), task: Mutex::new(None), hits: Default::default() };
        s.spawn(listener);
        Ok(s)
    }

    fn spawn(&self, listener: TcpListener) {
        let routes = self.routes.clone();
        let hits = self.hits.clone();
        let t = tokio::spawn(async move {
            while let Ok((mut c, _)) = listener.accept().await {
                let routes = routes.clone();
                let hits = hits.clone();
                tokio::spawn(async move {
                    let mut req = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 16384 {
                        match c.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => req.extend_from_slice(&buf[..n]),
                        }
                    }
                    let line = String::from_utf8_lossy(&req).lines().next().unwrap_or("").to_string();
                    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
                    let body = routes.lock().unwrap().get(&path).cloned();
                    hits.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let resp = match body {
                        Some(b) => {
                            let mut r = format!(
                                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
                                b.len()
                            )
                            .into_bytes();
                            r.extend_from_slice(&b);
                            r
                        }
                        None => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(),
                    };
                    let _ = c.write_all(&resp).await;
                    let _ = c.shutdown().await;
                });
            }
        });
        *self.task.lock().unwrap() = Some(t);
    }

    /// The URL of `path` on this server.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Replace a document.
    pub fn set(&self, path: &str, body: impl Into<Vec<u8>>) {
        self.routes.lock().unwrap().insert(path.to_string(), body.into());
    }

    /// Go away: the port refuses connections until [`ConfigServer::resume`].
    pub async fn pause(&self) {
        if let Some(t) = self.task.lock().unwrap().take() {
            t.abort();
        }
        // Let the aborted task drop its listener.
        tokio::task::yield_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    /// Come back on the same port.
    pub async fn resume(&self) -> io::Result<()> {
        let listener = TcpListener::bind(self.addr).await?;
        self.spawn(listener);
        Ok(())
    }
}
