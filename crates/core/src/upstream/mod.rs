//! The leg towards Telegram: which way it goes (`pool`: the `[upstream]` servers in force and
//! their health), how a TCP stream to a DC or middle-end address is had through each kind
//! (direct, `socks5`, `http_connect`), and, for direct mode, our own obfuscated2 init on it
//! (docs/protocol.md §2.7, no secret on this leg).
//!
//! ```text
//! client -> proxy --[direct]---------------------------> DC address
//!                 --[socks5 | http CONNECT server]------> DC address   (the DC sees the server)
//! ```
//! For one connection the servers of the plan are tried in order and, through each, every
//! address of the DC, all within the connect timeout per attempt. A failure that is the
//! server's own (unreachable, refuses us, wrong credentials, an answer that is not SOCKS5 /
//! HTTP) takes it out of rotation for `retry_after` and moves on to the next server; a failure
//! the server reports for the DC (host unreachable, connection refused, 502) moves on to the
//! next DC address. Each failure is counted for the server and logged with its name and
//! address, never its credentials.
//!
//! With fast mode the init's key material is chosen so the DC encrypts its answers with the
//! client's key, and DC->client bytes need no AES pass.

pub mod http_connect;
pub mod pool;
pub mod socks5;

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mtproxy_proto::http_connect::HttpConnectError;
use mtproxy_proto::obfs2::{self, HandshakeFrame, KeyIv, INIT_LEN};
use mtproxy_proto::socks5::Socks5Error;
use mtproxy_proto::ProtoTag;
use rand::RngCore;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::config::{Credentials, DcKey, HostPort, IpPreference, UpstreamKind};
use crate::dc::{self, Target};
use crate::stats::Stats;
pub use pool::{Route, Router};

/// A connected DC leg.
pub struct DcLeg {
    pub stream: TcpStream,
    /// The 64 bytes to send first.
    pub init: [u8; INIT_LEN],
    /// The keystream towards the DC (the init is its first 64 bytes).
    pub to_dc: KeyIv,
    /// The DC's keystream towards us; `None` in fast mode (it is the client's).
    pub from_dc: Option<KeyIv>,
    /// The upstream server it went through (`direct` when none is configured for the DC).
    pub via: String,
}

/// Why no DC connection could be made.
#[derive(Debug, thiserror::Error)]
#[error("no address of DC {dc} answered (last: {last})")]
pub struct UpstreamError {
    pub dc: i16,
    pub last: String,
}

/// Why one attempt (one server, one address) gave no stream.
#[derive(Debug, thiserror::Error)]
pub enum LegError {
    #[error("connect: {0}")]
    Direct(io::Error),
    #[error("cannot reach the upstream server: {0}")]
    ProxyUnreachable(io::Error),
    #[error("{0}")]
    Socks5(Socks5Error),
    #[error("HTTP CONNECT: {0}")]
    Http(HttpConnectError),
    #[error("the upstream server closed the connection during its handshake")]
    ProxyClosed,
    #[error("the upstream server sent bytes after its reply")]
    ExtraBytes,
    #[error("I/O with the upstream server: {0}")]
    ProxyIo(#[from] io::Error),
    #[error("timed out")]
    Timeout,
    #[error("cannot resolve {0}: {1}")]
    Resolve(String, String),
}

impl LegError {
    /// Whether the server itself failed (so it leaves rotation), rather than the DC address it
    /// was asked for.
    pub fn server_at_fault(&self) -> bool {
        match self {
            LegError::Direct(_) | LegError::Resolve(..) => false,
            LegError::Socks5(e) => !e.is_target_side(),
            LegError::Http(e) => !e.is_target_side(),
            _ => true,
        }
    }
}

/// A stream to a Telegram address, through whichever way.
pub struct Opened {
    pub stream: TcpStream,
    /// Our address as the far side sees it, when known: the socket's local address direct, the
    /// bound address a SOCKS5 server reports, `None` through HTTP CONNECT.
    pub seen_as: Option<SocketAddr>,
}

/// Read from `stream` until `parse` has a value; the value's bytes must be all there was.
pub(crate) async fn read_reply<T>(stream: &mut TcpStream, max: usize, parse: impl Fn(&[u8]) -> Result<Option<(T, usize)>, LegError>) -> Result<T, LegError> {
    let mut buf = Vec::with_capacity(64);
    let mut chunk = [0u8; 512];
    // Bounded: every round adds at least one byte, and `max` caps the buffer.
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(LegError::ProxyClosed);
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some((v, used)) = parse(&buf)? {
            return if used == buf.len() { Ok(v) } else { Err(LegError::ExtraBytes) };
        }
        if buf.len() > max {
            return Err(LegError::ProxyClosed);
        }
    }
}

async fn resolve(t: &Target) -> Result<SocketAddr, LegError> {
    match t {
        Target::Addr(a) => Ok(*a),
        Target::Name(HostPort { host, port }) => tokio::net::lookup_host((host.as_str(), *port))
            .await
            .map_err(|e| LegError::Resolve(t.to_string(), e.to_string()))?
            .next()
            .ok_or_else(|| LegError::Resolve(t.to_string(), "no address".into())),
    }
}

async fn connect_proxy(address: &HostPort) -> Result<TcpStream, LegError> {
    TcpStream::connect((address.host.as_str(), address.port)).await.map_err(LegError::ProxyUnreachable)
}

/// One attempt: a stream to `target` the way `kind` says, within `timeout`.
pub async fn open(kind: &UpstreamKind, target: &Target, timeout: Duration) -> Result<Opened, LegError> {
    let fut = async {
        let opened = match kind {
            UpstreamKind::Direct => {
                let stream = match target {
                    Target::Addr(a) => TcpStream::connect(a).await,
                    Target::Name(HostPort { host, port }) => TcpStream::connect((host.as_str(), *port)).await,
                }
                .map_err(LegError::Direct)?;
                let seen_as = stream.local_addr().ok();
                Opened { stream, seen_as }
            }
            UpstreamKind::Socks5 { address, credentials } => {
                let to = resolve(target).await?;
                let mut stream = connect_proxy(address).await?;
                let seen_as = socks5::handshake(&mut stream, to, credentials.as_ref()).await?;
                Opened { stream, seen_as }
            }
            UpstreamKind::Http { address, credentials } => {
                let to = resolve(target).await?;
                let mut stream = connect_proxy(address).await?;
                http_connect::handshake(&mut stream, to, credentials.as_ref()).await?;
                Opened { stream, seen_as: None }
            }
        };
        let _ = opened.stream.set_nodelay(true);
        Ok(opened)
    };
    tokio::time::timeout(timeout, fut).await.map_err(|_| LegError::Timeout)?
}

/// A stream to one of `targets` (the addresses of DC or cluster `dc`, in order) through the
/// routes the router plans for `dc`; also the name of the route that worked.
pub async fn open_planned(router: &Router, stats: &Stats, dc: i16, targets: &[Target], timeout: Duration) -> Result<(Opened, String), UpstreamError> {
    let mut last = String::from("no address");
    let plan = router.plan(dc, stats.clock_ms(), &mut rand::thread_rng());
    for route in plan {
        'targets: for target in targets {
            let started = Instant::now();
            match open(&route.kind, target, timeout).await {
                Ok(o) => {
                    if let Some(s) = &route.stats {
                        s.connected(started.elapsed());
                    }
                    return Ok((o, route.name.clone()));
                }
                Err(e) => {
                    let down = e.server_at_fault() && route.stats.is_some();
                    if let Some(s) = &route.stats {
                        s.failed(down.then(|| stats.clock_ms() + router.retry_after.as_millis() as u64));
                    }
                    let via = route.kind.address().map(|a| format!(" via {} {a}", route.kind.type_name())).unwrap_or_default();
                    last = format!("{target}{via}: {e}");
                    if down {
                        tracing::warn!(upstream = %route.name, kind = route.kind.type_name(), proxy = %route.kind.address().map(|a| a.to_string()).unwrap_or_default(), dc, %target, error = %e, retry_after = ?router.retry_after, "upstream server failed; skipping it for a while and trying the next");
                        break 'targets;
                    }
                    tracing::info!(upstream = %route.name, dc, %target, error = %e, "DC address failed through this upstream");
                }
            }
        }
    }
    Err(UpstreamError { dc, last })
}

/// The DC connect parameters a connection takes from its snapshot.
pub struct DcRequest<'a> {
    pub dc: i16,
    pub tag: ProtoTag,
    pub to_client: &'a KeyIv,
    pub fast_mode: bool,
    pub overrides: &'a [(DcKey, Vec<HostPort>)],
    pub pref: IpPreference,
    pub timeout: Duration,
}

/// Connect to the DC for `req.dc` through the planned upstream and prepare the init.
pub async fn connect(req: DcRequest<'_>, router: &Router, stats: &Stats) -> Result<DcLeg, UpstreamError> {
    let targets = dc::targets(req.dc, req.overrides, req.pref);
    let (opened, via) = open_planned(router, stats, req.dc, &targets, req.timeout).await?;
    let (init, to_dc, from_dc) = make_init(req.dc, req.tag, req.to_client, req.fast_mode);
    Ok(DcLeg { stream: opened.stream, init, to_dc, from_dc, via })
}

/// The init and the keys of both directions. Keys rather than ciphers: the relay keeps them
/// compact between bursts (`relay`).
fn make_init(dc_id: i16, tag: ProtoTag, to_client: &KeyIv, fast_mode: bool) -> ([u8; INIT_LEN], KeyIv, Option<KeyIv>) {
    let mut rng = rand::thread_rng();
    loop {
        let mut random = [0u8; INIT_LEN];
        rng.fill_bytes(&mut random);
        if fast_mode {
            random[8..56].copy_from_slice(&obfs2::fast_mode_material(to_client));
        }
        if !obfs2::is_valid_init_prefix(&random) {
            continue;
        }
        let init = obfs2::initiate(random, tag, dc_id, None);
        // Without a secret the keys are the init's plaintext bytes 8..56 (docs/protocol.md §2.2).
        let keys = obfs2::derive_keys(&HandshakeFrame(init.wire), None);
        let from_dc = if fast_mode { None } else { Some(keys.responder_to_initiator) };
        return (init.wire, keys.initiator_to_responder, from_dc);
    }
}
