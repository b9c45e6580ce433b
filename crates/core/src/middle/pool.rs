//! Connections to one middle-end cluster, shared by its clients (docs/protocol.md §5.5).
//!
//! A pool holds at most `size` connections. A client takes a new connection while the pool
//! has fewer than `size`, otherwise the live one with the fewest clients. Opening a connection
//! tries every address of the cluster, starting one further each time so load spreads;
//! when all fail the pool backs off (1 s doubling to 60 s) and, until then, new clients use the
//! live connections that remain or are refused at once instead of waiting.
//!
//! Each address is reached the way the `[upstream]` router in force at the pool's creation
//! plans for the cluster id (a changed `[upstream]` section builds new pools, so new
//! connections use the new set).

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::conn::{self, MeConn};
use super::ClusterStats;

const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(60);

/// No connection could be had.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("no address of middle-end cluster {cluster} answered (last: {last})")]
    Unreachable { cluster: i16, last: String },
    #[error("middle-end cluster {cluster} failed recently; next attempt in {wait_ms} ms")]
    BackingOff { cluster: i16, wait_ms: u64 },
    #[error("middle-end cluster {0} has no address")]
    NoAddress(i16),
}

struct Backoff {
    until: Option<Instant>,
    delay: Duration,
}

/// What a pool needs to open connections.
#[derive(Clone)]
pub struct ConnectParams {
    pub secret: Arc<Vec<u8>>,
    pub nat_ip: Option<IpAddr>,
    pub timeout: Duration,
    /// The cluster's counters (shared with the pools that replace this one).
    pub stats: Arc<ClusterStats>,
    /// How middle-end addresses are reached, and the server-wide counters it reports into.
    pub router: Arc<crate::upstream::Router>,
    pub server_stats: Arc<crate::stats::Stats>,
}

pub struct Pool {
    pub cluster: i16,
    /// The configuration generation this pool was built from.
    pub generation: u64,
    pub addrs: Vec<SocketAddr>,
    size: usize,
    params: ConnectParams,
    conns: Mutex<Vec<Arc<MeConn>>>,
    opening: tokio::sync::Mutex<()>,
    backoff: Mutex<Backoff>,
    next_addr: AtomicUsize,
}

impl Pool {
    pub fn new(cluster: i16, generation: u64, addrs: Vec<SocketAddr>, size: usize, params: ConnectParams) -> Pool {
        Pool {
            cluster,
            generation,
            addrs,
            size: size.max(1),
            params,
            conns: Mutex::new(Vec::new()),
            opening: tokio::sync::Mutex::new(()),
            backoff: Mutex::new(Backoff { until: None, delay: BACKOFF_MIN }),
            next_addr: AtomicUsize::new(0),
        }
    }

    fn live(&self) -> Vec<Arc<MeConn>> {
        let mut conns = self.conns.lock().unwrap();
        conns.retain(|c| c.is_alive());
        conns.clone()
    }

    fn least_loaded(live: &[Arc<MeConn>]) -> Option<Arc<MeConn>> {
        live.iter().min_by_key(|c| c.client_count()).cloned()
    }

    /// A connection for one more client.
    pub async fn get(&self) -> Result<Arc<MeConn>, PoolError> {
        let live = self.live();
        if live.len() >= self.size {
            return Ok(Self::least_loaded(&live).unwrap());
        }
        let _guard = self.opening.lock().await;
        let live = self.live();
        if live.len() >= self.size {
            return Ok(Self::least_loaded(&live).unwrap());
        }
        let wait = self.backoff.lock().unwrap().until.map(|u| u.saturating_duration_since(Instant::now())).filter(|d| !d.is_zero());
        if let Some(wait) = wait {
            return Self::least_loaded(&live).ok_or(PoolError::BackingOff { cluster: self.cluster, wait_ms: wait.as_millis() as u64 });
        }
        match self.open().await {
            Ok(c) => {
                *self.backoff.lock().unwrap() = Backoff { until: None, delay: BACKOFF_MIN };
                self.conns.lock().unwrap().push(c.clone());
                self.params.stats.opened.fetch_add(1, Relaxed);
                Ok(c)
            }
            Err(e) => {
                self.params.stats.open_failures.fetch_add(1, Relaxed);
                let mut b = self.backoff.lock().unwrap();
                b.until = Some(Instant::now() + b.delay);
                b.delay = (b.delay * 2).min(BACKOFF_MAX);
                drop(b);
                tracing::warn!(cluster = self.cluster, error = %e, "cannot reach the middle-end");
                Self::least_loaded(&live).ok_or(e)
            }
        }
    }

    async fn open(&self) -> Result<Arc<MeConn>, PoolError> {
        if self.addrs.is_empty() {
            return Err(PoolError::NoAddress(self.cluster));
        }
        let start = self.next_addr.fetch_add(1, Relaxed);
        let mut last = String::new();
        for i in 0..self.addrs.len() {
            let addr = self.addrs[(start + i) % self.addrs.len()];
            let p = &self.params;
            let opened = crate::upstream::open_planned(&p.router, &p.server_stats, self.cluster, &[crate::dc::Target::Addr(addr)], p.timeout).await;
            let result = match opened {
                Ok((o, via)) => conn::connect(o, addr, &p.secret, p.nat_ip, p.timeout, p.stats.clone()).await.map(|c| (c, via)).map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match result {
                Ok((c, via)) => {
                    tracing::info!(cluster = self.cluster, middle_end = %addr, via = %via, "middle-end connection ready");
                    return Ok(c);
                }
                Err(e) => {
                    tracing::debug!(cluster = self.cluster, middle_end = %addr, error = %e, "middle-end address failed");
                    last = format!("{addr}: {e}");
                }
            }
        }
        Err(PoolError::Unreachable { cluster: self.cluster, last })
    }

    /// Whether this pool was built from exactly these inputs (else a new one replaces it).
    pub fn built_from(&self, generation: u64, addrs: &[SocketAddr], nat_ip: Option<IpAddr>, size: usize, router: &crate::upstream::Router) -> bool {
        self.generation == generation
            && self.addrs == addrs
            && self.params.nat_ip == nat_ip
            && self.size == size.max(1)
            && self.params.router.settings() == router.settings()
    }

    /// Connections in the pool (live ones).
    pub fn connections(&self) -> Vec<Arc<MeConn>> {
        self.live()
    }

    /// Stop using this pool: each connection closes once its last client is gone.
    pub fn retire(&self) {
        for c in self.live() {
            tokio::spawn(async move {
                while c.is_alive() && c.client_count() > 0 {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                c.shutdown();
            });
        }
    }
}
