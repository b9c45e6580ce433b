//! Test peers for the proxy, in Rust, used by the in-process tests and the benchmark.
//!
//! * [`FakeDc`]: accepts the proxy's obfuscated2 init (no secret, docs/protocol.md §2.7) and echoes
//!   every decrypted byte back re-encrypted, so what a client sends is what it gets back.
//! * [`Client`]: the client side of classic, `dd` and `ee` (fake-TLS, including the ServerHello
//!   check), speaking raw bytes over the obfuscated2 stream.
//!
//! * [`fake_me`]: a fake middle-end (RPC server side, docs/protocol.md §5) with fake-DC logic behind
//!   it, and a fake configuration server, for the middle-proxy path.
//! * [`middle`]: the files pointing the proxy at fake middle-ends, and packets sent through it.
//! * [`proxy`]: the proxy itself, started in-process the way the binary starts it.
//! * [`three_users`]: one user of each kind, as config text, for tests that need all three.
//!
//! The independent-client proof (TDLib, Telethon) lives in `tests/e2e`; these peers exist so
//! that Rust tests and the benchmark need no Python.

pub mod fake_me;
pub mod middle;
pub mod proxy;

/// The secrets of [`three_users`]: one user of each kind.
pub const S_CLASSIC: &str = "00112233445566778899aabbccddeeff";
pub const S_DD: &str = "11112233445566778899aabbccddeeff";
pub const S_EE: &str = "22112233445566778899aabbccddeeff";

/// `[users.classic]`, `[users.dd]` and `[users.ee]` (cover domain `cover.test`) as config text.
pub fn three_users() -> String {
    format!(
        "[users.classic]\nsecret = \"{S_CLASSIC}\"\nkind = \"classic\"\n\
         [users.dd]\nsecret = \"{S_DD}\"\nkind = \"dd\"\n\
         [users.ee]\nsecret = \"{S_EE}\"\nkind = \"ee\"\ndomain = \"cover.test\"\n"
    )
}

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use mtproxy_proto::crypto::AesCtr;
use mtproxy_proto::faketls::{self, RecordReader};
use mtproxy_proto::obfs2::{self, HandshakeFrame, INIT_LEN};
use mtproxy_proto::{ProtoTag, Secret};
use rand::RngCore;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// An echoing fake DC on loopback.
pub struct FakeDc {
    pub addr: SocketAddr,
    /// Connections that completed the init.
    pub connections: Arc<AtomicU64>,
    /// DC id of the last init seen.
    pub last_dc: Arc<AtomicU64>,
}

impl FakeDc {
    pub async fn start() -> io::Result<FakeDc> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let connections = Arc::new(AtomicU64::new(0));
        let last_dc = Arc::new(AtomicU64::new(0));
        let (c, d) = (connections.clone(), last_dc.clone());
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                let (c, d) = (c.clone(), d.clone());
                tokio::spawn(async move {
                    let _ = echo(s, c, d).await;
                });
            }
        });
        Ok(FakeDc { addr, connections, last_dc })
    }
}

async fn echo(mut s: TcpStream, c: Arc<AtomicU64>, d: Arc<AtomicU64>) -> io::Result<()> {
    s.set_nodelay(true)?;
    let mut init = [0u8; INIT_LEN];
    s.read_exact(&mut init).await?;
    let acc = obfs2::accept(&HandshakeFrame(init), None).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad init"))?;
    c.fetch_add(1, Ordering::SeqCst);
    d.store(acc.dc as u16 as u64, Ordering::SeqCst);
    let mut dec = acc.client_to_proxy;
    let mut enc = acc.proxy_to_client.cipher();
    let mut buf = vec![0u8; 65536];
    loop {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        dec.apply(&mut buf[..n]);
        enc.apply(&mut buf[..n]);
        s.write_all(&buf[..n]).await?;
    }
}

/// Which secret form a client uses.
#[derive(Clone, Debug)]
pub enum Mode {
    Classic(ProtoTag),
    Padded,
    FakeTls { domain: String },
}

/// An MTProxy client over one TCP connection, exchanging raw stream bytes.
pub struct Client {
    stream: TcpStream,
    encrypt: AesCtr,
    decrypt: AesCtr,
    tls: Option<RecordReader>,
    pending: Vec<u8>,
}

fn unix_now() -> u32 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as u32
}

/// A minimal ClientHello carrying `sni`, padded to `size` bytes, with a random session id and
/// a zero random (sign it with `faketls::sign_client_hello`).
pub fn client_hello(sni: Option<&str>, size: usize) -> Vec<u8> {
    let mut sid = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut sid);
    faketls::build_client_hello(sni, &sid, size)
}

impl Client {
    /// Connect and complete the handshake; `dc` is the DC id written in the init.
    pub async fn connect(addr: SocketAddr, secret: &Secret, mode: &Mode, dc: i16) -> io::Result<Client> {
        let mut stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let tag = match mode {
            Mode::Classic(t) => *t,
            _ => ProtoTag::PaddedIntermediate,
        };
        let mut tls = None;
        if let Mode::FakeTls { domain } = mode {
            let mut hello = client_hello(Some(domain), 1800);
            faketls::sign_client_hello(&mut hello, secret, unix_now());
            let random: [u8; 32] = hello[11..43].try_into().unwrap();
            stream.write_all(&hello).await?;
            let mut buf = Vec::new();
            let flight_len = loop {
                if stream.read_buf(&mut buf).await? == 0 {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "no ServerHello"));
                }
                if buf.len() >= 3 && buf[..3] != [0x16, 0x03, 0x03] {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, "answer is not a ServerHello"));
                }
                if let Some(n) = faketls::verify_server_hello(secret, &random, &buf) {
                    break n;
                }
                if buf.len() > 20000 {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, "bad ServerHello"));
                }
            };
            if buf.len() != flight_len {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "bytes after the ServerHello flight"));
            }
            stream.write_all(&faketls::CHANGE_CIPHER_SPEC).await?;
            tls = Some(RecordReader::new());
        }
        let mut random = [0u8; INIT_LEN];
        loop {
            rand::thread_rng().fill_bytes(&mut random);
            if obfs2::is_valid_init_prefix(&random) {
                break;
            }
        }
        let init = obfs2::initiate(random, tag, dc, Some(secret));
        let mut c = Client { stream, encrypt: init.encrypt, decrypt: init.decrypt, tls, pending: Vec::new() };
        c.write_raw(&init.wire).await?;
        Ok(c)
    }

    async fn write_raw(&mut self, data: &[u8]) -> io::Result<()> {
        if self.tls.is_some() {
            let mut out = Vec::with_capacity(data.len() + 5 * (data.len() / 2878 + 1));
            for chunk in data.chunks(2878) {
                out.extend_from_slice(&faketls::app_data_header(chunk.len()));
                out.extend_from_slice(chunk);
            }
            self.stream.write_all(&out).await
        } else {
            self.stream.write_all(data).await
        }
    }

    /// Send stream bytes (encrypted here).
    pub async fn send(&mut self, data: &[u8]) -> io::Result<()> {
        let mut d = data.to_vec();
        self.encrypt.apply(&mut d);
        self.write_raw(&d).await
    }

    /// Receive exactly `n` stream bytes (decrypted).
    pub async fn recv(&mut self, n: usize) -> io::Result<Vec<u8>> {
        let mut buf = vec![0u8; 65536];
        while self.pending.len() < n {
            let got = self.stream.read(&mut buf).await?;
            if got == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "proxy closed"));
            }
            let len = match &mut self.tls {
                Some(r) => r.deframe_in_place(&mut buf, got).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?,
                None => got,
            };
            self.decrypt.apply(&mut buf[..len]);
            self.pending.extend_from_slice(&buf[..len]);
        }
        let rest = self.pending.split_off(n);
        Ok(std::mem::replace(&mut self.pending, rest))
    }

    /// The raw socket (to test closes and half-closes).
    pub fn stream(&mut self) -> &mut TcpStream {
        &mut self.stream
    }
}
