//! The server as a library: bind listeners, accept, run each connection through
//! admission -> handshake -> fronting or upstream -> relay (design.md "data path").
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
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, DcKey, HostPort};
use crate::events::{log_handshake_failure, ClientAddr, FailReason};
use crate::fronting;
use crate::handshake::{handshake, Failure, HandshakeState};
use crate::relay::{pump, Activity, ClientToDc, DcToClient};
use crate::replay::ReplayCache;
use crate::snapshot::Snapshot;
use crate::stats::{ActiveGuard, ByteCounter, Stats};
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
}

impl Shared {
    pub fn new(config: Config, cli_overrides: Vec<(DcKey, Vec<HostPort>)>) -> Arc<Shared> {
        let stats = Arc::new(Stats::default());
        let replay = ReplayCache::new(config.fake_tls.replay_cache_entries, config.fake_tls.replay_window);
        let snapshot = Snapshot::build(config, None, &stats, &cli_overrides);
        Arc::new(Shared {
            snapshot: ArcSwap::from_pointee(snapshot),
            stats,
            replay: Mutex::new(replay),
            cli_overrides,
            close_all: CancellationToken::new(),
            limits: crate::limits::Limits::default(),
        })
    }

    /// Put a new configuration in force for new connections; users whose access changed lose
    /// their open connections, all others keep them.
    pub fn reload(&self, config: Config) {
        self.replay.lock().unwrap().set_bounds(config.fake_tls.replay_cache_entries, config.fake_tls.replay_window);
        let prev = self.snapshot.load_full();
        let next = Snapshot::build(config, Some(&prev), &self.stats, &self.cli_overrides);
        self.snapshot.store(Arc::new(next));
        self.stats.reloads_ok.fetch_add(1, Relaxed);
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
    let spawn_accept = |listener: TcpListener| -> (Option<SocketAddr>, CancellationToken) {
        let stop = shutdown.child_token();
        let addr = listener.local_addr().ok();
        let (shared, stop2, t2) = (shared.clone(), stop.clone(), tracker.clone());
        tracker.spawn(async move {
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
pub async fn handle(mut stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    let snap = shared.snapshot.load_full();
    let stats = shared.stats.clone();
    let active = stats.connections_active.fetch_add(1, Relaxed) + 1;
    let _conn = ConnGuard(stats.clone());
    if active as usize > snap.config.limits.max_connections {
        stats.connections_refused_limit.fetch_add(1, Relaxed);
        tracing::warn!(client = %ClientAddr(peer), "connection limit reached; refusing");
        return;
    }
    stats.connections_total.fetch_add(1, Relaxed);

    let mut st = HandshakeState::default();
    let timeout = snap.config.timeouts.handshake;
    let result = tokio::select! {
        r = tokio::time::timeout(timeout, handshake(&mut stream, &mut st, &snap, &shared.replay)) => r,
        _ = shared.close_all.cancelled() => return,
    };
    let auth = match result {
        Ok(Ok(auth)) => auth,
        Ok(Err(Failure::Io(e))) if st.consumed.is_empty() => {
            tracing::debug!(client = %ClientAddr(peer), error = %e, "closed before sending anything");
            return;
        }
        Ok(Err(failure)) => {
            let reason = match failure {
                Failure::Rejected(r) => r,
                Failure::Io(_) => FailReason::Malformed,
            };
            return fail(stream, peer, st, reason, &snap, &stats).await;
        }
        Err(_) => return fail(stream, peer, st, FailReason::Timeout, &snap, &stats).await,
    };

    let entry = auth.entry.clone();
    let lease = match shared.limits.admit(&entry.user, &entry.stats, peer.ip(), std::time::SystemTime::now()) {
        Ok(lease) => lease,
        Err(reason) => return crate::limits::log_refusal(peer, &entry.user.name, reason),
    };
    let _active = ActiveGuard::new(entry.stats.clone(), stats.clone());
    let _ = stream.set_nodelay(true);
    let cfg = &snap.config;
    let leg = match upstream::connect(auth.dc, auth.tag, &auth.to_client, cfg.fast_mode, &snap.dc_overrides, cfg.dc_ip, cfg.timeouts.connect).await {
        Ok(leg) => leg,
        Err(e) => {
            stats.upstream_connect_failures.fetch_add(1, Relaxed);
            tracing::warn!(client = %ClientAddr(peer), user = %entry.user.name, error = %e, "upstream connect failed");
            return;
        }
    };
    tracing::debug!(client = %ClientAddr(peer), user = %entry.user.name, dc = auth.dc, transport = auth.tag.name(), tls = auth.tls.is_some(), "relaying");

    let mut dc_stream = leg.stream;
    let mut c2d = ClientToDc { tls: auth.tls, client_decrypt: auth.client_decrypt, dc_encrypt: leg.encrypt };
    let mut first = Vec::with_capacity(leg.init.len() + auth.pending.len());
    first.extend_from_slice(&leg.init);
    let mut pending = auth.pending;
    c2d.dc_encrypt.apply(&mut pending);
    first.extend_from_slice(&pending);
    if dc_stream.write_all(&first).await.is_err() {
        return;
    }
    drop(first);
    let d2c = DcToClient { tls: c2d.tls.is_some(), recrypt: leg.decrypt.map(|d| (d, auth.to_client.cipher())) };

    let (cr, mut cw) = stream.into_split();
    let (dr, mut dw) = dc_stream.into_split();
    let activity = Activity::new();
    let user_stats = &entry.stats;
    let mut up = ByteCounter::new(&user_stats.bytes_from_client, &stats.bytes_from_client);
    let mut down = ByteCounter::new(&user_stats.bytes_to_client, &stats.bytes_to_client);
    up.add(pending.len());
    let outcome = tokio::select! {
        r = async { tokio::try_join!(
            pump(&cr, &mut dw, c2d, &activity, &mut up, None),
            pump(&dr, &mut cw, d2c, &activity, &mut down, None),
        ) } => match r { Ok(_) => "closed", Err(_) => "error" },
        _ = activity.idle(cfg.timeouts.idle) => "idle timeout",
        _ = entry.revoked.cancelled() => "user revoked",
        _ = lease.cut.cancelled() => "user limit reached",
        _ = shared.close_all.cancelled() => "shutdown",
    };
    tracing::debug!(client = %ClientAddr(peer), user = %entry.user.name, up = up.total(), down = down.total(), outcome, "connection closed");
}

async fn fail(stream: TcpStream, peer: SocketAddr, st: HandshakeState, reason: FailReason, snap: &Snapshot, stats: &Arc<Stats>) {
    log_handshake_failure(peer, reason);
    stats.handshake_failed(reason);
    if st.replied {
        return;
    }
    fronting::front(stream, st.consumed, &snap.config, stats.clone(), snap.config.timeouts.handshake).await;
}
