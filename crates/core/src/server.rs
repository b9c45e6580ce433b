//! The server as a library: bind listeners, accept, cap the connections open at once, and run
//! each connection through the stages of the data path (docs/design.md "data path"), each in
//! its own module: `admit` (PROXY header) -> `handshake` (failure: `fronting`) -> `limits` ->
//! `route` (direct | middle-end) -> upstream connect (`route::connect_dc`) -> `relay::direct`.
//! [`open`] is that list, top to bottom; [`Shared`] owns the state and hands each stage the
//! parts it uses, so a stage's signature says what it reads.
//!
//! `serve` runs until `shutdown` is cancelled, then stops accepting and waits for open
//! connections to finish, up to the drain deadline, before closing the rest. It is run by
//! [`crate::service::Server`], the one entry point of the binary and the in-process tests.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::admit::{self, Admission};
use crate::config::{Config, DcKey, HostPort};
use crate::cover::CoverBook;
use crate::events::ClientAddr;
use crate::fronting;
use crate::handshake::{self, Ended, Guards, Origin, ThreadRandom, When};
use crate::hints::SecretHints;
use crate::limits;
use crate::middle::{self, Middle};
use crate::relay::{self, ClientSide, Keep, Relay};
use crate::replay::ReplayCache;
use crate::route::{self, Route, Target};
use crate::snapshot::Snapshot;
use crate::stats::Stats;

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

/// A change to the set of listeners of a running [`serve`]; connections already accepted are
/// never affected (they do not belong to a listener).
pub enum ListenerCommand {
    /// Start accepting on this listener.
    Add(TcpListener),
    /// Stop accepting on (and close) the listener bound to this address.
    Remove(SocketAddr),
}

/// Accept on every listener until `shutdown`, with listeners added and removed through
/// `control` while running (`set-port` on reload), then drain for at most `drain`.
pub async fn serve(
    listeners: Vec<TcpListener>,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    drain: Duration,
    control: tokio::sync::mpsc::UnboundedReceiver<ListenerCommand>,
) {
    let mut control = Some(control);
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

/// A connection's place under the connection cap (`limits.max_connections`): counted open
/// until dropped, the last thing a connection releases.
pub struct ConnGuard(Arc<Stats>);

impl ConnGuard {
    /// Count a new connection open; with the number now open.
    fn open(stats: &Arc<Stats>) -> (ConnGuard, u64) {
        let active = stats.connections_active.fetch_add(1, Relaxed) + 1;
        (ConnGuard(stats.clone()), active)
    }

    pub(crate) fn stats(&self) -> &Arc<Stats> {
        &self.0
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.0.connections_active.fetch_sub(1, Relaxed);
    }
}

/// One client connection, start to end.
///
/// Two phases with separate state: [`open`] (the stages up to the relay; boxed, so its locals
/// are freed when it ends) and [`Relay::run`], which is all an idle connection's task keeps
/// (idle memory, docs/performance.md).
pub fn handle(stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>) -> impl std::future::Future<Output = ()> + Send + 'static {
    let open = Box::pin(open(stream, peer, shared));
    async move {
        let Some(relay) = open.await else { return };
        relay.run().await;
    }
}

/// Everything up to the relay, stage by stage (docs/design.md "data path"); each stage is
/// handed the parts of [`Shared`] it uses. `None`: the connection was refused, failed, fronted
/// or served through the middle-end, and is over.
///
/// The stages that wait on the network are boxed: their state is freed when they end, and only
/// the one running takes memory.
async fn open(mut stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>) -> Option<Relay> {
    let snap = shared.snapshot.load_full();
    let cfg = &snap.config;
    let stats = &shared.stats;
    // Connection cap.
    let (conn, active) = ConnGuard::open(stats);
    if active as usize > cfg.limits.max_connections {
        stats.connections_refused_limit.fetch_add(1, Relaxed);
        tracing::warn!(client = %ClientAddr(peer), "connection limit reached; refusing");
        return None;
    }
    stats.connections_total.fetch_add(1, Relaxed);
    // One deadline for the PROXY header and the handshake together.
    let deadline = tokio::time::Instant::now() + cfg.timeouts.handshake;

    // Admit: a trusted front's PROXY header names the real client; from here on `peer` is that address.
    let (peer, mut st) = match Box::pin(admit::admit(&mut stream, peer, &cfg.proxy_protocol, deadline, &shared.close_all)).await {
        Admission::Proceed(client, st) => (client, st),
        Admission::Quiet => return count_closed_early(stats),
        Admission::Fail(st, reason) => {
            fronting::after_failure(stream, peer, st, reason, cfg, stats).await;
            return None;
        }
    };

    // Handshake.
    let now = SystemTime::now();
    let covers = shared.covers.load();
    let guards = Guards { replay: &shared.replay, covers: &covers };
    let origin = Origin { peer, hints: &shared.hints };
    let when = When { now, deadline, close_all: &shared.close_all };
    let auth = match Box::pin(handshake::run(&mut stream, &mut st, &snap, guards, origin, when, &mut ThreadRandom)).await {
        Ok(auth) => auth,
        Err(Ended::Quiet) => return count_closed_early(stats),
        Err(Ended::Failed(reason)) => {
            Box::pin(fronting::after_failure(stream, peer, st, reason, cfg, stats)).await;
            return None;
        }
    };
    // Nothing of the handshake is kept for the relay: `st`'s buffer is freed here.
    drop(st);
    drop(covers);

    // Limits.
    let entry = auth.entry.clone();
    let slot = limits::take_slot(&shared.limits, &entry, stats, peer, SystemTime::now())?;
    let _ = stream.set_nodelay(true);

    // Route.
    if let Route::Middle { ad_tag } = route::choose(cfg) {
        let ctx = middle::session::Context {
            settings: &cfg.middle,
            dc_ip: cfg.dc_ip,
            timeouts: &cfg.timeouts,
            router: &snap.router,
            middle: &shared.middle,
            stats,
            close_all: &shared.close_all,
            limit_cut: &slot.lease.cut,
            ad_tag,
        };
        Box::pin(middle::session::run(stream, peer, auth, ctx)).await;
        return None;
    }

    // Upstream connect (direct).
    let (dc, tag, tls) = (auth.dc, auth.tag, auth.tls.is_some());
    let client = ClientSide::from(auth);
    let target = Target { dc, tag, to_client: &client.to_client, tls };
    let leg = Box::pin(route::connect_dc(target, &snap, stats, peer, &entry.user.name)).await?;

    // Relay.
    let keep = Keep { peer, idle: cfg.timeouts.idle, slot, entry, close_all: shared.close_all.clone(), conn };
    relay::direct::start(stream, leg, client, keep).await
}

fn count_closed_early(stats: &Stats) -> Option<Relay> {
    stats.connections_closed_early.fetch_add(1, Relaxed);
    None
}
