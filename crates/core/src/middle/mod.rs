//! The middle-proxy (ME) path: what clients go through when an ad tag is set, so Telegram
//! shows the proxy's promoted channel (docs/protocol.md §5; docs/design.md "upstream").
//!
//! ```text
//! source   proxy secret + proxy_for lists (fetch / file -> cache -> shipped copy), refreshed
//! pool     per middle-end cluster: a bounded set of encrypted RPC connections (conn)
//! session  per client: framing -> RPC_PROXY_REQ(ad tag, flags) -> ME -> RPC_PROXY_ANS -> framing
//! ```
//! [`Middle`] holds the configuration in force and the pools. A refresh that changes anything
//! starts a new generation: new clients get connections built from it, connections of the old
//! generation serve their clients until those leave. The same happens to a cluster's pool when
//! the NAT address or the pool size is changed in the proxy's own configuration.

pub mod conn;
pub mod dns;
pub mod pool;
pub mod session;
pub mod source;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;

use crate::config::{IpPreference, MiddleSettings};
use pool::{ConnectParams, Pool, PoolError};
use source::MeConfig;

/// The configuration in force, numbered.
#[derive(Debug)]
pub struct State {
    pub config: MeConfig,
    pub generation: u64,
}

/// Counters of the ME path (observers read them: `observe::report` puts them in the `middle`
/// section of `/stats`, `/stats.json` and `/metrics`).
#[derive(Debug, Default)]
pub struct MiddleStats {
    pub refresh_ok: AtomicU64,
    /// Refreshes with at least one piece that could not be fetched or validated.
    pub refresh_failed: AtomicU64,
    /// Unix seconds of the last refresh without a failure; 0: none yet.
    pub last_refresh_ok_at: AtomicU64,
    /// Clients that could get no middle-end connection.
    pub connect_failures: AtomicU64,
    /// Client packets dropped because they do not look like MTProto (docs/protocol.md §3.5).
    pub packets_dropped: AtomicU64,
    pub sessions_total: AtomicU64,
    /// Clients relayed through a middle-end now.
    pub sessions_active: AtomicU64,
}

/// Counters of one middle-end cluster. They belong to the cluster, not to a pool: a pool
/// replaced after a configuration change hands them on, so they only grow.
#[derive(Debug, Default)]
pub struct ClusterStats {
    /// Connections opened (RPC handshake completed).
    pub opened: AtomicU64,
    /// Attempts to open a connection where no address of the cluster answered (one attempt
    /// tries every address).
    pub open_failures: AtomicU64,
    /// Connections open now (those of replaced pools included, until their clients leave).
    pub connections_active: AtomicU64,
    /// RPC messages received from / sent to the middle-ends after the handshake: answers,
    /// quick ACKs, closes and pings in; requests, closes and pongs out.
    pub frames_in: AtomicU64,
    pub frames_out: AtomicU64,
}

/// The ME path's shared state.
pub struct Middle {
    state: ArcSwap<State>,
    pools: Mutex<HashMap<i16, Arc<Pool>>>,
    clusters: Mutex<BTreeMap<i16, Arc<ClusterStats>>>,
    pub stats: MiddleStats,
}

impl Middle {
    /// Start from local copies only (configured files, cache, shipped copy); no network.
    pub fn new(settings: &MiddleSettings) -> Middle {
        let config = source::initial(settings);
        Middle {
            state: ArcSwap::from_pointee(State { config, generation: 1 }),
            pools: Mutex::new(HashMap::new()),
            clusters: Mutex::new(BTreeMap::new()),
            stats: MiddleStats::default(),
        }
    }

    /// The configuration in force.
    pub fn state(&self) -> Arc<State> {
        self.state.load_full()
    }

    /// Fetch every piece now. Pieces that fail keep their copy; a change is applied for new
    /// clients and cached. Returns whether anything changed, or the first error.
    pub async fn refresh(&self, settings: &MiddleSettings) -> Result<bool, source::SourceError> {
        let current = self.state.load_full();
        let (next, errors) = source::refresh(settings, &current.config).await;
        let changed = next != current.config;
        if changed {
            if let Err(e) = source::save_cache(&settings.cache_dir, &next) {
                tracing::warn!(dir = %settings.cache_dir.display(), error = %e, "cannot write the middle-proxy cache");
            }
            let clusters = next.v4.clusters.len() + next.v6.as_ref().map_or(0, |c| c.clusters.len());
            self.state.store(Arc::new(State { config: next, generation: current.generation + 1 }));
            tracing::info!(clusters, "middle-proxy configuration updated");
        }
        if let Some(first) = errors.into_iter().next() {
            self.stats.refresh_failed.fetch_add(1, Relaxed);
            tracing::warn!(error = %first, "middle-proxy configuration refresh failed; keeping the copy in force");
            return Err(first);
        }
        self.stats.refresh_ok.fetch_add(1, Relaxed);
        self.stats.last_refresh_ok_at.store(crate::stats::unix_now(), Relaxed);
        Ok(changed)
    }

    /// Refresh periodically until `shutdown`. `settings` is asked each round and returns `None`
    /// while no ad tag is set (then nothing is fetched: no call to Telegram unless asked for).
    pub async fn refresh_loop(self: Arc<Self>, settings: impl Fn() -> Option<MiddleSettings>, shutdown: CancellationToken) {
        loop {
            let wait = match settings() {
                None => Duration::from_secs(5),
                Some(s) => match self.refresh(&s).await {
                    Ok(_) => s.refresh_interval,
                    // Retry sooner after a failure, but not in a tight loop.
                    Err(_) => s.refresh_interval.min(Duration::from_secs(60)),
                },
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// The ordered middle-end addresses and the cluster id for a client's DC id (reference
    /// §7.2: the signed id, else the file's default cluster).
    pub fn targets(&self, dc: i16, pref: IpPreference) -> (i16, Vec<SocketAddr>) {
        let st = self.state.load();
        let c = &st.config;
        let cluster = c.v4.cluster_of(dc).or_else(|| c.v6.as_ref().and_then(|v| v.cluster_of(dc))).unwrap_or(dc);
        let v4: Vec<SocketAddr> = c.v4.targets(cluster).map(|a| a.to_vec()).unwrap_or_default();
        let v6: Vec<SocketAddr> = c.v6.as_ref().and_then(|v| v.targets(cluster)).map(|a| a.to_vec()).unwrap_or_default();
        let addrs = match pref {
            IpPreference::PreferV4 => [v4, v6].concat(),
            IpPreference::PreferV6 => [v6, v4].concat(),
            IpPreference::OnlyV4 => v4,
            IpPreference::OnlyV6 => v6,
        };
        (cluster, addrs)
    }

    /// A middle-end connection for a client of DC `dc`.
    pub async fn connection(
        &self,
        dc: i16,
        settings: &MiddleSettings,
        pref: IpPreference,
        timeout: Duration,
        via: (&Arc<crate::upstream::Router>, &Arc<crate::stats::Stats>),
    ) -> Result<Arc<conn::MeConn>, PoolError> {
        let st = self.state.load_full();
        let (cluster, addrs) = self.targets(dc, pref);
        let pool = {
            let mut pools = self.pools.lock().unwrap();
            let stale = pools.get(&cluster).filter(|p| !p.built_from(st.generation, &addrs, settings.nat_ip, settings.connections_per_dc, via.0)).cloned();
            if let Some(old) = stale {
                old.retire();
                pools.remove(&cluster);
            }
            pools
                .entry(cluster)
                .or_insert_with(|| {
                    let stats = self.clusters.lock().unwrap().entry(cluster).or_default().clone();
                    let params = ConnectParams {
                        secret: Arc::new(st.config.secret.clone()),
                        nat_ip: settings.nat_ip,
                        timeout,
                        stats,
                        router: via.0.clone(),
                        server_stats: via.1.clone(),
                    };
                    Arc::new(Pool::new(cluster, st.generation, addrs, settings.connections_per_dc, params))
                })
                .clone()
        };
        pool.get().await
    }

    /// Counters of every cluster a client has asked for since start, by cluster id.
    pub fn cluster_stats(&self) -> Vec<(i16, Arc<ClusterStats>)> {
        self.clusters.lock().unwrap().iter().map(|(id, s)| (*id, s.clone())).collect()
    }

    /// The pools in use (for tests and observers).
    pub fn pools(&self) -> Vec<Arc<Pool>> {
        self.pools.lock().unwrap().values().cloned().collect()
    }
}
