//! The server as a library: bind listeners, accept, run each connection through
//! admission -> handshake -> fronting or upstream -> relay (docs/design.md "data path").
//!
//! `serve` runs until `shutdown` is cancelled, then stops accepting and waits for open
//! connections to finish, up to the drain deadline, before closing the rest. Tests run it
//! in-process on port 0.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use mtproxy_proto::obfs2::INIT_LEN;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::admit::{self, Admission};
use crate::config::{Config, DcKey, HostPort};
use crate::cover::CoverBook;
use crate::events::{log_handshake_failure, ClientAddr, FailReason};
use crate::fronting;
use crate::handshake::{handshake, Authenticated, Failure, Guards, HandshakeState, Origin};
use crate::hints::SecretHints;
use crate::middle::{self, Middle};
use crate::relay::{pump, Activity, ClientToDc, DcToClient, LazyCtr, Recrypt};
use crate::replay::ReplayCache;
use crate::snapshot::Snapshot;
use crate::stats::{ActiveGuard, ByteCounter, IpGuard, Stats};
use crate::upstream;

/// State shared by every connection.
pub struct Shared {
    pub snapshot: ArcSwap<Snapshot>,
    pub stats: Arc<Stats>,
    replay: Mutex<ReplayCache>,
    cli_overrides: Vec<(DcKey, Vec<HostPort>)>,
    /// Cancelled to close every open connection (end of the drain period).
    pub close_all: CancellationToken,
    /// Per-user limit state (open connections, IPs, quota usage).
    pub limits: crate::limits::Limits,
    /// The middle-proxy path (used while an ad tag is set).
    pub middle: Arc<Middle>,
    /// The secret each client address used last, tried first on its next handshake.
    pub hints: SecretHints,
    /// The learned cover-site shapes fake-TLS flights are built from (`cover::refresh`).
    pub covers: ArcSwap<CoverBook>,
}

impl Shared {
    pub fn new(config: Config, cli_overrides: Vec<(DcKey, Vec<HostPort>)>) -> Arc<Shared> {
        let stats = Arc::new(Stats::default());
        let replay = ReplayCache::new(config.fake_tls.replay_cache_entries, config.fake_tls.replay_window);
        let middle = Arc::new(Middle::new(&config.middle));
        let snapshot = Snapshot::build(config, None, &stats, &cli_overrides);
        Arc::new(Shared {
            middle,
            snapshot: ArcSwap::from_pointee(snapshot),
            stats,
            replay: Mutex::new(replay),
            cli_overrides,
            close_all: CancellationToken::new(),
            limits: crate::limits::Limits::default(),
            hints: SecretHints::default(),
            covers: ArcSwap::from_pointee(CoverBook::default()),
        })
    }

    /// Put a new configuration in force for new connections; users whose access changed lose
    /// their open connections, all others keep them.
    pub fn reload(&self, config: Config) {
        self.replay.lock().unwrap().set_bounds(config.fake_tls.replay_cache_entries, config.fake_tls.replay_window);
        let prev = self.snapshot.load_full();
        let next = Snapshot::build(config, Some(&prev), &self.stats, &self.cli_overrides);
        self.snapshot.store(Arc::new(next));
        self.stats.reload_succeeded();
    }
}

/// Bind one listening socket. IPv6 sockets are v6-only so `0.0.0.0:P` and `[::]:P` can both
/// be listed.
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

/// A change to the set of listeners of a running [`serve_with_control`]; connections already
/// accepted are never affected (they do not belong to a listener).
pub enum ListenerCommand {
    /// Start accepting on this listener.
    Add(TcpListener),
    /// Stop accepting on (and close) the listener bound to this address.
    Remove(SocketAddr),
}

/// Accept on every listener until `shutdown`, then drain for at most `drain`.
pub async fn serve(listeners: Vec<TcpListener>, shared: Arc<Shared>, shutdown: CancellationToken, drain: Duration) {
    serve_with_control(listeners, shared, shutdown, drain, None).await
}

/// [`serve`], with listeners added and removed while running (`set-port` on reload).
pub async fn serve_with_control(
    listeners: Vec<TcpListener>,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    drain: Duration,
    mut control: Option<tokio::sync::mpsc::UnboundedReceiver<ListenerCommand>>,
) {
    let tracker = tokio_util::task::TaskTracker::new();
    tokio::spawn(crate::stats::run_coarse_clock(shutdown.clone()));
    let spawn_accept = |listener: TcpListener| -> (Option<SocketAddr>, CancellationToken) {
        let stop = shutdown.child_token();
        let addr = listener.local_addr().ok();
        let (shared, stop2, t2) = (shared.clone(), stop.clone(), tracker.clone());
        tracker.spawn(async move {
            let local = listener.local_addr().ok();
            if let Some(a) = local {
                shared.stats.listener_started(a);
            }
            loop {
                let accepted = tokio::select! {
                    _ = stop2.cancelled() => break,
                    a = listener.accept() => a,
                };
                match accepted {
                    Ok((stream, peer)) => {
                        let shared = shared.clone();
                        t2.spawn(async move { handle(stream, peer, shared).await });
                    }
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
            if let Some(a) = local {
                shared.stats.listener_stopped(a);
            }
        });
        (addr, stop)
    };
    let mut running: Vec<(Option<SocketAddr>, CancellationToken)> = listeners.into_iter().map(&spawn_accept).collect();
    loop {
        let cmd = tokio::select! {
            _ = shutdown.cancelled() => break,
            c = async { match control.as_mut() { Some(rx) => rx.recv().await, None => std::future::pending().await } } => c,
        };
        match cmd {
            Some(ListenerCommand::Add(l)) => running.push(spawn_accept(l)),
            Some(ListenerCommand::Remove(addr)) => running.retain(|(a, stop)| {
                let gone = *a == Some(addr);
                if gone {
                    stop.cancel();
                }
                !gone
            }),
            None => control = None,
        }
    }
    tracker.close();
    let active = shared.stats.connections_active.load(Relaxed);
    if active > 0 {
        tracing::info!(active, "draining connections");
    }
    if tokio::time::timeout(drain, tracker.wait()).await.is_err() {
        tracing::info!("drain deadline reached; closing remaining connections");
        shared.close_all.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(2), tracker.wait()).await;
    }
}

struct ConnGuard(Arc<Stats>);

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.0.connections_active.fetch_sub(1, Relaxed);
    }
}

/// One client connection, start to end.
///
/// Two phases with separate state: [`open`] (PROXY header, handshake, limits, upstream connect;
/// boxed, so its locals are freed when it ends) and [`Relay::run`], which is all an idle
/// connection's task keeps (idle memory, docs/performance.md).
pub fn handle(stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>) -> impl std::future::Future<Output = ()> + Send + 'static {
    let open = Box::pin(open(stream, peer, shared));
    async move {
        let Some(relay) = open.await else { return };
        relay.run().await;
    }
}

/// Everything up to the relay. `None`: the connection was refused, failed, fronted or served
/// through the middle-end, and is over.
async fn open(mut stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>) -> Option<Relay> {
    let snap = shared.snapshot.load_full();
    let stats = shared.stats.clone();
    let active = stats.connections_active.fetch_add(1, Relaxed) + 1;
    let conn = ConnGuard(stats.clone());
    if active as usize > snap.config.limits.max_connections {
        stats.connections_refused_limit.fetch_add(1, Relaxed);
        tracing::warn!(client = %ClientAddr(peer), "connection limit reached; refusing");
        return None;
    }
    stats.connections_total.fetch_add(1, Relaxed);

    // One deadline for the PROXY header and the handshake together.
    let deadline = tokio::time::Instant::now() + snap.config.timeouts.handshake;
    // A trusted front's PROXY header names the real client: from here on `peer` is that address.
    let (peer, mut st) = match Box::pin(admit::admit(&mut stream, peer, &snap.config.proxy_protocol, deadline, &shared.close_all)).await {
        Admission::Proceed(client, st) => (client, st),
        Admission::Quiet => return count_closed_early(&stats),
        Admission::Fail(st, reason) => return fail(stream, peer, st, reason, &snap, &stats).await,
    };
    let covers = shared.covers.load();
    let result = tokio::select! {
        // Boxed: the handshake's state is freed when it ends.
        r = tokio::time::timeout_at(deadline, Box::pin(handshake(&mut stream, &mut st, &snap, Guards { replay: &shared.replay, covers: &covers }, Origin { ip: peer.ip(), hints: &shared.hints }))) => r,
        _ = shared.close_all.cancelled() => return count_closed_early(&stats),
    };
    let auth = match result {
        Ok(Ok(auth)) => auth,
        Ok(Err(Failure::Io(e))) if st.consumed.is_empty() => {
            tracing::debug!(client = %ClientAddr(peer), error = %e, "closed before sending anything");
            return count_closed_early(&stats);
        }
        Ok(Err(failure)) => {
            let reason = match failure {
                Failure::Rejected(r) => r,
                Failure::Io(_) => FailReason::Malformed,
            };
            return Box::pin(fail(stream, peer, st, reason, &snap, &stats)).await;
        }
        Err(_) => return Box::pin(fail(stream, peer, st, FailReason::Timeout, &snap, &stats)).await,
    };
    // Nothing of the handshake is kept for the relay: `st`'s buffer is freed here.
    drop(st);
    let entry = auth.entry.clone();
    let lease = match shared.limits.admit(&entry.user, &entry.stats, peer.ip(), std::time::SystemTime::now()) {
        Ok(lease) => lease,
        Err(reason) => {
            crate::limits::log_refusal(peer, &entry.user.name, reason);
            return None;
        }
    };
    let active = ActiveGuard::new(entry.stats.clone(), stats.clone());
    let ip = IpGuard::new(entry.stats.clone(), peer.ip());
    let _ = stream.set_nodelay(true);
    let cfg = &snap.config;
    // Mode per connection, from the snapshot it started with: ad tag -> middle-end, else direct.
    if let Some(ad_tag) = cfg.ad_tag {
        let ctx = middle::session::Context { snap: &snap, middle: &shared.middle, stats: &stats, close_all: &shared.close_all, limit_cut: &lease.cut, ad_tag };
        Box::pin(middle::session::run(stream, peer, auth, ctx)).await;
        return None;
    }
    // The expanded client cipher is not kept either: the relay works from the compact key (relay.rs).
    let Authenticated { tag, dc, client_decrypt, from_client, to_client, tls, pending, .. } = auth;
    drop(client_decrypt);
    let connect_started = std::time::Instant::now();
    let req = upstream::DcRequest {
        dc,
        tag,
        to_client: &to_client,
        fast_mode: cfg.fast_mode,
        overrides: &snap.dc_overrides,
        pref: cfg.dc_ip,
        timeout: cfg.timeouts.connect,
    };
    let leg = match Box::pin(upstream::connect(req, &snap.router, &stats)).await {
        Ok(leg) => {
            stats.upstream_connected(dc, connect_started.elapsed());
            leg
        }
        Err(e) => {
            stats.upstream_failed(dc);
            tracing::warn!(client = %ClientAddr(peer), user = %entry.user.name, error = %e, "upstream connect failed");
            return None;
        }
    };
    tracing::debug!(client = %ClientAddr(peer), user = %entry.user.name, dc, via = %leg.via, transport = tag.name(), tls = tls.is_some(), "relaying");

    let mut dc_stream = leg.stream;
    // Ciphers as key + position (relay.rs): expanded only while bytes move.
    let mut pending = pending;
    let mut to_dc = LazyCtr::new(&leg.to_dc, INIT_LEN as u64);
    to_dc.apply_once(&mut pending);
    let from_client = LazyCtr::new(&from_client, (INIT_LEN + pending.len()) as u64);
    let c2d = ClientToDc { tls, recrypt: Recrypt::new(from_client, to_dc) };
    let mut first = Vec::with_capacity(INIT_LEN + pending.len());
    first.extend_from_slice(&leg.init);
    first.extend_from_slice(&pending);
    let pending_len = pending.len();
    drop(pending);
    if dc_stream.write_all(&first).await.is_err() {
        return None;
    }
    drop(first);
    let d2c = DcToClient { tls: c2d.tls.is_some(), recrypt: leg.from_dc.map(|d| Recrypt::new(LazyCtr::new(&d, 0), LazyCtr::new(&to_client, 0))) };
    let (cr, cw) = stream.into_split();
    let (dr, dw) = dc_stream.into_split();
    Some(Relay { dw, dr, cw, cr, c2d, d2c, pending_len, peer, idle: cfg.timeouts.idle, _ip: ip, _active: active, lease, entry, shared, _conn: conn })
}

/// What an authenticated, connected client keeps while its bytes are relayed: this (and the
/// futures of [`Relay::run`]) is the whole state of an idle connection, so nothing here may be
/// big. Fields drop in declaration order, as the locals of the single `handle` before it did:
/// the DC socket, the client socket, then the per-user and connection guards.
struct Relay {
    dw: OwnedWriteHalf,
    dr: OwnedReadHalf,
    cw: OwnedWriteHalf,
    cr: OwnedReadHalf,
    c2d: ClientToDc,
    d2c: DcToClient,
    /// Client bytes relayed with the DC init (counted as uploaded).
    pending_len: usize,
    peer: SocketAddr,
    idle: Duration,
    _ip: IpGuard,
    _active: ActiveGuard,
    lease: crate::limits::Lease,
    entry: Arc<crate::snapshot::UserEntry>,
    shared: Arc<Shared>,
    _conn: ConnGuard,
}

impl Relay {
    /// Both directions until either ends, the idle timeout, revocation, a limit cut or shutdown.
    /// (A plain fn returning an `async move` block: as an `async fn` it keeps `self` twice,
    /// 1,992 bytes instead of 1,488 for the whole task.)
    #[allow(clippy::manual_async_fn)] // deliberate, see above
    fn run(mut self) -> impl std::future::Future<Output = ()> + Send {
        async move {
            // Through one reference, so the block owns all of `self` (an `async move` block
            // captures only the fields it names, and the guards must live to the end).
            let this = &mut self;
            let activity = Activity::new();
            let user_stats = &this.entry.stats;
            let stats = &this.shared.stats;
            let mut up = ByteCounter::new(&user_stats.bytes_from_client, &stats.bytes_from_client);
            let mut down = ByteCounter::new(&user_stats.bytes_to_client, &stats.bytes_to_client);
            up.add(this.pending_len);
            // The pumps borrow each direction's state: one copy of it in this task.
            let outcome = tokio::select! {
                r = async { tokio::try_join!(
                    pump(&this.cr, &mut this.dw, &mut this.c2d, &activity, &mut up, None),
                    pump(&this.dr, &mut this.cw, &mut this.d2c, &activity, &mut down, None),
                ) } => match r { Ok(_) => "closed", Err(_) => "error" },
                _ = activity.idle(this.idle) => "idle timeout",
                _ = this.entry.revoked.cancelled() => "user revoked",
                _ = this.lease.cut.cancelled() => "user limit reached",
                _ = this.shared.close_all.cancelled() => "shutdown",
            };
            tracing::debug!(client = %ClientAddr(this.peer), user = %this.entry.user.name, up = up.total(), down = down.total(), outcome, "connection closed");
        }
    }
}

fn count_closed_early(stats: &Stats) -> Option<Relay> {
    stats.connections_closed_early.fetch_add(1, Relaxed);
    None
}

async fn fail(stream: TcpStream, peer: SocketAddr, st: HandshakeState, reason: FailReason, snap: &Snapshot, stats: &Arc<Stats>) -> Option<Relay> {
    log_handshake_failure(peer, reason);
    stats.handshake_failed(reason);
    if !st.replied {
        fronting::front(stream, st.consumed, &snap.config, stats.clone(), snap.config.timeouts.handshake).await;
    }
    None
}
