//! The load client: the client side of classic, `dd` and `ee` (fake-TLS, with the ServerHello
//! check), plus the bare relay's (an obfuscated2 init without a secret, which the relay passes
//! to the fake DC unchanged). Built for many connections: one read buffer per connection,
//! bulk bytes sent pre-made instead of encrypted one by one.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::{SystemTime, UNIX_EPOCH};

use mtproxy_proto::crypto::AesCtr;
use mtproxy_proto::faketls::{self, RecordReader, MAX_RECORD_PAYLOAD};
use mtproxy_proto::obfs2::{self, INIT_LEN};
use mtproxy_proto::{ProtoTag, Secret, SecretKind};
use rand::RngCore;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::fakedc::{command, CMD_LEN};

/// What a load connection goes through: the proxy, with a secret of some kind, or a bare relay
/// (the no-secret baseline: the client's obfuscated2 init has no secret, and the relay passes it
/// to the fake DC unchanged).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    Proxy(SecretKind),
    Bare(RelayBuf),
}

/// The bare relay's copy buffer per direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelayBuf {
    /// tokio's default, 8 KB.
    Tokio,
    /// 64 KB, the proxy's read size.
    ProxyRead,
}

impl RelayBuf {
    pub fn bytes(self) -> usize {
        match self {
            RelayBuf::Tokio => 8192,
            RelayBuf::ProxyRead => 65536,
        }
    }
}

impl Route {
    /// The `target` of its result rows.
    pub fn name(&self) -> &'static str {
        match self {
            Route::Proxy(kind) => kind.name(),
            Route::Bare(RelayBuf::Tokio) => "bare",
            Route::Bare(RelayBuf::ProxyRead) => "bare64",
        }
    }

    /// The kind of the secret, through the proxy.
    pub fn secret_kind(&self) -> Option<&SecretKind> {
        match self {
            Route::Proxy(kind) => Some(kind),
            Route::Bare(_) => None,
        }
    }

    /// Whether the stream goes in TLS records (`ee`).
    pub fn is_fake_tls(&self) -> bool {
        matches!(self, Route::Proxy(SecretKind::FakeTls { .. }))
    }
}

/// The SNI every `ee` user of the benchmark is configured with.
pub const DOMAIN: &str = "bench.example.com";

/// The `ee` kind of the benchmark's users.
pub fn fake_tls() -> SecretKind {
    SecretKind::FakeTls { domain: DOMAIN.to_string() }
}

pub struct Conn {
    s: TcpStream,
    enc: AesCtr,
    dec: AesCtr,
    tls: Option<RecordReader>,
    rbuf: Vec<u8>,
    /// Decrypted bytes received beyond what was asked for.
    pending: Vec<u8>,
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

impl Conn {
    /// Connect, complete the handshake and send the fake DC's command.
    pub async fn open(addr: SocketAddr, route: &Route, secret: &Secret, cmd: Option<(u8, u64)>) -> io::Result<Conn> {
        Conn::open_from(None, addr, route, secret, cmd).await
    }

    /// [`Conn::open`] from the source address `from` (another loopback address looks like
    /// another client to the proxy).
    pub async fn open_from(from: Option<IpAddr>, addr: SocketAddr, route: &Route, secret: &Secret, cmd: Option<(u8, u64)>) -> io::Result<Conn> {
        let mut s = match from {
            None => TcpStream::connect(addr).await?,
            Some(ip) => {
                let socket = if ip.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
                socket.bind(SocketAddr::new(ip, 0))?;
                socket.connect(addr).await?
            }
        };
        s.set_nodelay(true)?;
        let mut tls = None;
        if let Some(SecretKind::FakeTls { domain }) = route.secret_kind() {
            let mut hello = mtproxy_testkit::client_hello(Some(domain), 517);
            let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as u32).unwrap_or(0);
            faketls::sign_client_hello(&mut hello, secret, now);
            let random: [u8; 32] = hello[11..43].try_into().unwrap();
            s.write_all(&hello).await?;
            let mut buf = Vec::with_capacity(8192);
            let flight = loop {
                if s.read_buf(&mut buf).await? == 0 {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "no ServerHello"));
                }
                if buf.len() >= 3 && buf[..3] != [0x16, 0x03, 0x03] {
                    return Err(invalid("answer is not a ServerHello"));
                }
                if let Some(n) = faketls::verify_server_hello(secret, &random, &buf) {
                    break n;
                }
                if buf.len() > 20000 {
                    return Err(invalid("ServerHello does not verify"));
                }
            };
            if buf.len() != flight {
                return Err(invalid("bytes after the ServerHello flight"));
            }
            tls = Some(RecordReader::new());
        }
        let tag = match route.secret_kind() {
            None | Some(SecretKind::Classic) => ProtoTag::Intermediate,
            Some(SecretKind::Padded | SecretKind::FakeTls { .. }) => ProtoTag::PaddedIntermediate,
        };
        let mut random = [0u8; INIT_LEN];
        loop {
            rand::thread_rng().fill_bytes(&mut random);
            if obfs2::is_valid_init_prefix(&random) {
                break;
            }
        }
        let init = obfs2::initiate(random, tag, 2, route.secret_kind().map(|_| secret));
        let mut c = Conn { s, enc: init.encrypt, dec: init.decrypt, tls, rbuf: Vec::new(), pending: Vec::new() };
        let mut cmd = cmd.map(|(op, n)| command(op, n));
        let cmd_len = if cmd.is_some() { CMD_LEN } else { 0 };
        let mut first = Vec::with_capacity(INIT_LEN + CMD_LEN + 16);
        if c.tls.is_some() {
            first.extend_from_slice(&faketls::CHANGE_CIPHER_SPEC);
            first.extend_from_slice(&faketls::app_data_header(INIT_LEN + cmd_len));
        }
        first.extend_from_slice(&init.wire);
        if let Some(cmd) = &mut cmd {
            c.enc.apply(cmd);
            first.extend_from_slice(cmd);
        }
        c.s.write_all(&first).await?;
        Ok(c)
    }

    /// Encrypt and send stream bytes (framed in records for `ee`).
    pub async fn send(&mut self, data: &[u8]) -> io::Result<()> {
        let mut out = Vec::with_capacity(data.len() + 5 * (data.len() / MAX_RECORD_PAYLOAD + 1));
        match self.tls {
            Some(_) => {
                for chunk in data.chunks(MAX_RECORD_PAYLOAD) {
                    out.extend_from_slice(&faketls::app_data_header(chunk.len()));
                    let at = out.len();
                    out.extend_from_slice(chunk);
                    self.enc.apply(&mut out[at..]);
                }
            }
            None => {
                out.extend_from_slice(data);
                self.enc.apply(&mut out);
            }
        }
        self.s.write_all(&out).await
    }

    /// Send pre-made bytes as they are (bulk: already random, already framed for `ee`). The
    /// keystream is not advanced, so nothing meaningful may be sent after.
    pub async fn send_raw(&mut self, wire: &[u8]) -> io::Result<()> {
        self.s.write_all(wire).await
    }

    /// Read once from the socket; returns stream bytes now in `self.rbuf[..n]` (de-framed).
    async fn read_some(&mut self) -> io::Result<usize> {
        if self.rbuf.len() < 65536 {
            self.rbuf.resize(65536, 0);
        }
        let got = self.s.read(&mut self.rbuf).await?;
        if got == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed"));
        }
        match &mut self.tls {
            Some(r) => r.deframe_in_place(&mut self.rbuf, got).map_err(|e| invalid(&e.to_string())),
            None => Ok(got),
        }
    }

    /// Receive exactly `out.len()` stream bytes, decrypted.
    pub async fn recv_exact(&mut self, out: &mut [u8]) -> io::Result<()> {
        let mut have = 0;
        let take = self.pending.len().min(out.len());
        out[..take].copy_from_slice(&self.pending[..take]);
        self.pending.drain(..take);
        have += take;
        while have < out.len() {
            let n = self.read_some().await?;
            self.dec.apply(&mut self.rbuf[..n]);
            let take = n.min(out.len() - have);
            out[have..have + take].copy_from_slice(&self.rbuf[..take]);
            self.pending.extend_from_slice(&self.rbuf[take..n]);
            have += take;
        }
        Ok(())
    }

    /// Receive and count `n` stream bytes without decrypting them (bulk download).
    pub async fn count(&mut self, n: u64) -> io::Result<()> {
        let mut have = 0u64;
        while have < n {
            have += self.read_some().await? as u64;
        }
        if have != n {
            return Err(invalid("more bytes than the fake DC was asked to send"));
        }
        Ok(())
    }

    /// Drop the read buffer (idle connections hold none).
    pub fn shrink(&mut self) {
        self.rbuf = Vec::new();
        self.pending = Vec::new();
    }
}

/// `len` random bytes as they go on the wire: framed in full records for `ee`.
pub fn bulk_wire(len: usize, tls: bool) -> Vec<u8> {
    let mut data = vec![0u8; len];
    rand::thread_rng().fill_bytes(&mut data);
    if !tls {
        return data;
    }
    let mut out = Vec::with_capacity(len + 5 * (len / MAX_RECORD_PAYLOAD + 1));
    for chunk in data.chunks(MAX_RECORD_PAYLOAD) {
        out.extend_from_slice(&faketls::app_data_header(chunk.len()));
        out.extend_from_slice(chunk);
    }
    out
}
