//! Counters: server-wide and per user, plain atomics that observers (stats listener, CLI) read.
//!
//! The relay does not touch them per read: a connection counts locally and adds its bytes in
//! batches ([`FLUSH_BYTES`]) and at close, so a hot connection costs one atomic add per
//! batch, not per packet.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::events::FailReason;

/// A connection adds its local byte counts to the shared ones at least this often.
pub const FLUSH_BYTES: u64 = 256 * 1024;

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// One user's numbers. Survives config reloads (keyed by user name).
#[derive(Debug, Default)]
pub struct UserStats {
    pub connections_active: AtomicU64,
    pub connections_total: AtomicU64,
    pub bytes_from_client: AtomicU64,
    pub bytes_to_client: AtomicU64,
    /// Unix seconds of the last successful handshake.
    pub last_seen: AtomicU64,
}

/// Server-wide numbers.
#[derive(Debug)]
pub struct Stats {
    pub started: Instant,
    pub started_unix: u64,
    pub connections_active: AtomicU64,
    pub connections_total: AtomicU64,
    pub connections_refused_limit: AtomicU64,
    pub handshakes_ok: AtomicU64,
    pub handshake_failures: [AtomicU64; FailReason::ALL.len()],
    pub fronted_active: AtomicU64,
    pub fronted_total: AtomicU64,
    pub upstream_connect_failures: AtomicU64,
    pub bytes_from_client: AtomicU64,
    pub bytes_to_client: AtomicU64,
    pub reloads_ok: AtomicU64,
    pub reloads_failed: AtomicU64,
    users: Mutex<HashMap<String, Arc<UserStats>>>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            started: Instant::now(),
            started_unix: unix_now(),
            connections_active: AtomicU64::new(0),
            connections_total: AtomicU64::new(0),
            connections_refused_limit: AtomicU64::new(0),
            handshakes_ok: AtomicU64::new(0),
            handshake_failures: Default::default(),
            fronted_active: AtomicU64::new(0),
            fronted_total: AtomicU64::new(0),
            upstream_connect_failures: AtomicU64::new(0),
            bytes_from_client: AtomicU64::new(0),
            bytes_to_client: AtomicU64::new(0),
            reloads_ok: AtomicU64::new(0),
            reloads_failed: AtomicU64::new(0),
            users: Mutex::new(HashMap::new()),
        }
    }
}

impl Stats {
    /// The counters of a user, created on first use.
    pub fn user(&self, name: &str) -> Arc<UserStats> {
        self.users.lock().unwrap().entry(name.to_string()).or_default().clone()
    }

    /// A copy of the per-user table, for observers.
    pub fn users(&self) -> Vec<(String, Arc<UserStats>)> {
        let mut v: Vec<_> = self.users.lock().unwrap().iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    pub fn handshake_failed(&self, reason: FailReason) {
        self.handshake_failures[reason.index()].fetch_add(1, Relaxed);
    }
}

/// Counts one direction of one connection locally and flushes in batches.
pub struct ByteCounter<'a> {
    local: u64,
    total: u64,
    user: &'a AtomicU64,
    server: &'a AtomicU64,
}

impl<'a> ByteCounter<'a> {
    pub fn new(user: &'a AtomicU64, server: &'a AtomicU64) -> Self {
        ByteCounter { local: 0, total: 0, user, server }
    }

    #[inline]
    pub fn add(&mut self, n: usize) {
        self.local += n as u64;
        self.total += n as u64;
        if self.local >= FLUSH_BYTES {
            self.flush();
        }
    }

    pub fn flush(&mut self) {
        if self.local > 0 {
            self.user.fetch_add(self.local, Relaxed);
            self.server.fetch_add(self.local, Relaxed);
            self.local = 0;
        }
    }

    pub fn total(&self) -> u64 {
        self.total
    }
}

impl Drop for ByteCounter<'_> {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Marks a user's connection active for as long as it lives.
pub struct ActiveGuard {
    user: Arc<UserStats>,
    stats: Arc<Stats>,
}

impl ActiveGuard {
    pub fn new(user: Arc<UserStats>, stats: Arc<Stats>) -> Self {
        user.connections_active.fetch_add(1, Relaxed);
        user.connections_total.fetch_add(1, Relaxed);
        user.last_seen.store(unix_now(), Relaxed);
        stats.handshakes_ok.fetch_add(1, Relaxed);
        ActiveGuard { user, stats }
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.user.connections_active.fetch_sub(1, Relaxed);
        let _ = &self.stats;
    }
}
