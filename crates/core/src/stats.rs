//! Counters: server-wide and per user, plain atomics that observers (stats listener, CLI) read.
//!
//! The relay does not touch them per read: a connection counts locally and adds its bytes in
//! batches — when [`FLUSH_BYTES`] have gathered, when [`FLUSH_INTERVAL`] has passed since the
//! last flush (checked at the next read against a coarse clock that a ticker task advances four
//! times a second, so a chunk costs one relaxed load, not a clock read), and at close — so a hot
//! connection costs one pair of atomic adds per batch, not per packet, and a slow one still
//! shows up in `stats --live` within about a second of its next packet.
//!
//! Everything else here changes once per connection or per event (handshake, upstream connect,
//! reload), never per packet: distinct client IPs per user (a small map behind a mutex taken at
//! open and close), upstream connect latency per DC (a fixed-bucket histogram of atomics), the
//! result of the last configuration reload, and the addresses the proxy accepts on. Observers
//! (`stats_listener`, the CLI) read it all through [`crate::stats_listener::Report`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio_util::sync::CancellationToken;

use crate::events::FailReason;

/// A connection adds its local byte counts to the shared ones at least this often.
pub const FLUSH_BYTES: u64 = 256 * 1024;
/// ... and at its first read after this much time since its last flush.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

static CLOCK_ORIGIN: OnceLock<Instant> = OnceLock::new();
static COARSE_MS: AtomicU64 = AtomicU64::new(0);
/// How often the coarse clock advances.
pub const COARSE_TICK: Duration = Duration::from_millis(250);

/// Milliseconds on the coarse clock (constant while no ticker runs).
#[inline]
pub fn coarse_ms() -> u64 {
    COARSE_MS.load(Relaxed)
}

/// Advance the coarse clock every [`COARSE_TICK`] until `stop`. `serve` runs one; several are
/// harmless (the clock only moves forward).
pub async fn run_coarse_clock(stop: CancellationToken) {
    let origin = *CLOCK_ORIGIN.get_or_init(Instant::now);
    let mut tick = tokio::time::interval(COARSE_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {
                COARSE_MS.fetch_max(origin.elapsed().as_millis() as u64, Relaxed);
            }
        }
    }
}

/// At most this many distinct IPs are remembered per user for `unique_ips_seen`; past it the
/// count stops growing (documented as a lower bound), so a scan cannot grow memory unbounded.
pub const MAX_SEEN_IPS: usize = 4096;

/// Upper bounds (seconds) of the upstream connect latency histogram buckets; `+Inf` is implied.
pub const CONNECT_BUCKETS: [f64; 11] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// One user's numbers. Survives config reloads (keyed by user name).
#[derive(Debug, Default)]
pub struct UserStats {
    pub connections_active: AtomicU64,
    pub connections_total: AtomicU64,
    pub bytes_from_client: AtomicU64,
    pub bytes_to_client: AtomicU64,
    /// Unix seconds of the last successful handshake or the last close of a connection.
    pub last_seen: AtomicU64,
    /// Bytes counted against the user's quota. Nothing in this crate writes it: the quota
    /// feature fills it; observers expose it (0 until then).
    pub quota_used_bytes: AtomicU64,
    ips: Mutex<UserIps>,
}

#[derive(Debug, Default)]
struct UserIps {
    /// Open connections per client IP.
    active: HashMap<IpAddr, u32>,
    /// Every IP seen since start, up to [`MAX_SEEN_IPS`].
    seen: HashSet<IpAddr>,
}

impl UserStats {
    /// A connection of this user from `ip` opened.
    pub fn ip_connected(&self, ip: IpAddr) {
        let ip = ip.to_canonical();
        let mut g = self.ips.lock().unwrap_or_else(|e| e.into_inner());
        *g.active.entry(ip).or_insert(0) += 1;
        if g.seen.len() < MAX_SEEN_IPS {
            g.seen.insert(ip);
        }
    }

    /// A connection of this user from `ip` closed.
    pub fn ip_disconnected(&self, ip: IpAddr) {
        let ip = ip.to_canonical();
        let mut g = self.ips.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = g.active.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                g.active.remove(&ip);
            }
        }
    }

    /// (distinct IPs with an open connection now, distinct IPs seen since start).
    pub fn unique_ips(&self) -> (u64, u64) {
        let g = self.ips.lock().unwrap_or_else(|e| e.into_inner());
        (g.active.len() as u64, g.seen.len() as u64)
    }
}

/// Upstream (DC) connects for one DC: successes with their latency, and failures.
#[derive(Debug, Default)]
pub struct DcStats {
    pub connects_ok: AtomicU64,
    pub connect_failures: AtomicU64,
    /// Non-cumulative counts per bucket of [`CONNECT_BUCKETS`], the last one for `+Inf`.
    pub latency_buckets: [AtomicU64; CONNECT_BUCKETS.len() + 1],
    pub latency_sum_micros: AtomicU64,
}

/// One `[[upstream.servers]]` entry's numbers and health, keyed by its name (they survive
/// reloads, as user counters do).
#[derive(Debug, Default)]
pub struct UpstreamStats {
    /// Connections made through this server.
    pub connects_ok: AtomicU64,
    /// Attempts through this server that gave no connection (any side's fault).
    pub connect_failures: AtomicU64,
    /// Failures that were the server's own (unreachable, refused us, bad credentials, garbage):
    /// each puts it out of rotation for `retry_after`.
    pub marked_down: AtomicU64,
    /// Milliseconds on [`Stats::clock_ms`] until which the server is skipped; 0: up.
    pub down_until_ms: AtomicU64,
    pub latency_sum_micros: AtomicU64,
    /// The type and address, as the configuration in force has them (for observers).
    pub describe: Mutex<String>,
}

impl UpstreamStats {
    /// Whether the server is in rotation at `now_ms`.
    pub fn is_up(&self, now_ms: u64) -> bool {
        self.down_until_ms.load(Relaxed) <= now_ms
    }

    pub fn connected(&self, elapsed: Duration) {
        self.connects_ok.fetch_add(1, Relaxed);
        self.down_until_ms.store(0, Relaxed);
        self.latency_sum_micros.fetch_add(elapsed.as_micros().min(u64::MAX as u128) as u64, Relaxed);
    }

    /// A failed attempt; `until_ms` takes the server out of rotation until then.
    pub fn failed(&self, until_ms: Option<u64>) {
        self.connect_failures.fetch_add(1, Relaxed);
        if let Some(t) = until_ms {
            self.marked_down.fetch_add(1, Relaxed);
            self.down_until_ms.store(t.max(1), Relaxed);
        }
    }
}

/// The outcome of the last configuration reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadRecord {
    pub at_unix: u64,
    pub ok: bool,
    /// Why the file was refused (file, line, fix); never holds a secret.
    pub error: Option<String>,
}

/// The DC a client's id is counted under: `|id|` for the DCs of the built-in table (media
/// ids count with their DC), 0 ("other") for any other id, so labels stay few.
pub fn dc_label(id: i16) -> i16 {
    let a = id.saturating_abs();
    match a {
        1..=5 | 203 | 10001..=10003 => a,
        _ => 0,
    }
}

/// Server-wide numbers.
#[derive(Debug)]
pub struct Stats {
    pub started: Instant,
    pub started_unix: u64,
    pub connections_active: AtomicU64,
    pub connections_total: AtomicU64,
    pub connections_refused_limit: AtomicU64,
    /// Closed before the handshake ended without a verdict: the peer sent nothing (port scans,
    /// load-balancer checks, clients that gave up) or shutdown began. With `handshakes_ok`,
    /// the failures and the user-limit refusals it accounts for every accepted connection.
    pub connections_closed_early: AtomicU64,
    pub handshakes_ok: AtomicU64,
    pub handshake_failures: [AtomicU64; FailReason::ALL.len()],
    pub fronted_active: AtomicU64,
    pub fronted_total: AtomicU64,
    pub upstream_connect_failures: AtomicU64,
    pub bytes_from_client: AtomicU64,
    pub bytes_to_client: AtomicU64,
    pub reloads_ok: AtomicU64,
    pub reloads_failed: AtomicU64,
    /// Unix seconds when the configuration in force was loaded.
    pub config_loaded_at: AtomicU64,
    users: Mutex<HashMap<String, Arc<UserStats>>>,
    dcs: Mutex<BTreeMap<i16, Arc<DcStats>>>,
    upstreams: Mutex<Vec<(String, Arc<UpstreamStats>)>>,
    last_reload: Mutex<Option<ReloadRecord>>,
    listening: Mutex<Vec<SocketAddr>>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            started: Instant::now(),
            started_unix: unix_now(),
            connections_active: AtomicU64::new(0),
            connections_total: AtomicU64::new(0),
            connections_refused_limit: AtomicU64::new(0),
            connections_closed_early: AtomicU64::new(0),
            handshakes_ok: AtomicU64::new(0),
            handshake_failures: Default::default(),
            fronted_active: AtomicU64::new(0),
            fronted_total: AtomicU64::new(0),
            upstream_connect_failures: AtomicU64::new(0),
            bytes_from_client: AtomicU64::new(0),
            bytes_to_client: AtomicU64::new(0),
            reloads_ok: AtomicU64::new(0),
            reloads_failed: AtomicU64::new(0),
            config_loaded_at: AtomicU64::new(unix_now()),
            users: Mutex::new(HashMap::new()),
            dcs: Mutex::new(BTreeMap::new()),
            upstreams: Mutex::new(Vec::new()),
            last_reload: Mutex::new(None),
            listening: Mutex::new(Vec::new()),
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

    fn dc(&self, id: i16) -> Arc<DcStats> {
        self.dcs.lock().unwrap_or_else(|e| e.into_inner()).entry(dc_label(id)).or_default().clone()
    }

    /// A connection to the DC for client id `dc` succeeded after `elapsed`.
    pub fn upstream_connected(&self, dc: i16, elapsed: Duration) {
        let d = self.dc(dc);
        d.connects_ok.fetch_add(1, Relaxed);
        let secs = elapsed.as_secs_f64();
        let i = CONNECT_BUCKETS.iter().position(|b| secs <= *b).unwrap_or(CONNECT_BUCKETS.len());
        d.latency_buckets[i].fetch_add(1, Relaxed);
        d.latency_sum_micros.fetch_add(elapsed.as_micros().min(u64::MAX as u128) as u64, Relaxed);
    }

    /// No address of the DC for client id `dc` answered.
    pub fn upstream_failed(&self, dc: i16) {
        self.upstream_connect_failures.fetch_add(1, Relaxed);
        self.dc(dc).connect_failures.fetch_add(1, Relaxed);
    }

    /// Per-DC upstream numbers, by DC label.
    pub fn dcs(&self) -> Vec<(i16, Arc<DcStats>)> {
        self.dcs.lock().unwrap_or_else(|e| e.into_inner()).iter().map(|(k, v)| (*k, v.clone())).collect()
    }

    /// The counters of the upstream server `name`, created on first use.
    pub fn upstream(&self, name: &str) -> Arc<UpstreamStats> {
        let mut g = self.upstreams.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, s)) = g.iter().find(|(n, _)| n == name) {
            return s.clone();
        }
        let s = Arc::new(UpstreamStats::default());
        g.push((name.to_string(), s.clone()));
        s
    }

    /// Every upstream server's counters, in the order they were first configured.
    pub fn upstreams(&self) -> Vec<(String, Arc<UpstreamStats>)> {
        self.upstreams.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Milliseconds since start on a monotonic clock: the time base of upstream health.
    pub fn clock_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// A new configuration was put in force.
    pub fn reload_succeeded(&self) {
        let now = unix_now();
        self.reloads_ok.fetch_add(1, Relaxed);
        self.config_loaded_at.store(now, Relaxed);
        *self.last_reload.lock().unwrap_or_else(|e| e.into_inner()) = Some(ReloadRecord { at_unix: now, ok: true, error: None });
    }

    /// A changed file was refused; `error` says why (it must not hold a secret).
    pub fn reload_failed(&self, error: &str) {
        self.reloads_failed.fetch_add(1, Relaxed);
        *self.last_reload.lock().unwrap_or_else(|e| e.into_inner()) = Some(ReloadRecord { at_unix: unix_now(), ok: false, error: Some(error.to_string()) });
    }

    /// The last reload's outcome, if there was one.
    pub fn last_reload(&self) -> Option<ReloadRecord> {
        self.last_reload.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// A client listener started accepting on `addr`.
    pub fn listener_started(&self, addr: SocketAddr) {
        self.listening.lock().unwrap_or_else(|e| e.into_inner()).push(addr);
    }

    /// A client listener stopped accepting.
    pub fn listener_stopped(&self, addr: SocketAddr) {
        let mut g = self.listening.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = g.iter().position(|a| *a == addr) {
            g.remove(i);
        }
    }

    /// The addresses the proxy accepts clients on now.
    pub fn listening(&self) -> Vec<SocketAddr> {
        self.listening.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Counts one direction of one connection locally and flushes in batches.
pub struct ByteCounter<'a> {
    local: u64,
    total: u64,
    last_flush_ms: u64,
    user: &'a AtomicU64,
    server: &'a AtomicU64,
}

impl<'a> ByteCounter<'a> {
    pub fn new(user: &'a AtomicU64, server: &'a AtomicU64) -> Self {
        ByteCounter { local: 0, total: 0, last_flush_ms: coarse_ms(), user, server }
    }

    #[inline]
    pub fn add(&mut self, n: usize) {
        self.local += n as u64;
        self.total += n as u64;
        if self.local >= FLUSH_BYTES || coarse_ms().wrapping_sub(self.last_flush_ms) >= FLUSH_INTERVAL.as_millis() as u64 {
            self.flush();
        }
    }

    pub fn flush(&mut self) {
        if self.local > 0 {
            self.user.fetch_add(self.local, Relaxed);
            self.server.fetch_add(self.local, Relaxed);
            self.local = 0;
        }
        self.last_flush_ms = coarse_ms();
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
        self.user.last_seen.store(unix_now(), Relaxed);
        let _ = &self.stats;
    }
}

/// Counts a user's connection from one client IP for as long as it lives.
pub struct IpGuard {
    user: Arc<UserStats>,
    ip: IpAddr,
}

impl IpGuard {
    pub fn new(user: Arc<UserStats>, ip: IpAddr) -> Self {
        user.ip_connected(ip);
        IpGuard { user, ip }
    }
}

impl Drop for IpGuard {
    fn drop(&mut self) {
        self.user.ip_disconnected(self.ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_ips_active_and_seen() {
        let u = Arc::new(UserStats::default());
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let a6: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        let b: IpAddr = "2001:db8::1".parse().unwrap();
        let g1 = IpGuard::new(u.clone(), a);
        let g2 = IpGuard::new(u.clone(), a6);
        let g3 = IpGuard::new(u.clone(), b);
        assert_eq!(u.unique_ips(), (2, 2), "a v4-mapped address is the same client as its v4 form");
        drop(g1);
        assert_eq!(u.unique_ips(), (2, 2));
        drop(g2);
        assert_eq!(u.unique_ips(), (1, 2));
        drop(g3);
        assert_eq!(u.unique_ips(), (0, 2));
    }

    #[test]
    fn seen_ips_are_bounded() {
        let u = UserStats::default();
        for i in 0..(MAX_SEEN_IPS as u32 + 100) {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            u.ip_connected(ip);
            u.ip_disconnected(ip);
        }
        assert_eq!(u.unique_ips(), (0, MAX_SEEN_IPS as u64));
    }

    #[test]
    fn latency_histogram_and_labels() {
        let s = Stats::default();
        s.upstream_connected(2, Duration::from_millis(3));
        s.upstream_connected(-2, Duration::from_millis(30));
        s.upstream_connected(2, Duration::from_secs(60));
        s.upstream_failed(4);
        s.upstream_failed(777);
        let dcs = s.dcs();
        let labels: Vec<i16> = dcs.iter().map(|(k, _)| *k).collect();
        assert_eq!(labels, vec![0, 2, 4]);
        let d2 = &dcs[1].1;
        assert_eq!(d2.connects_ok.load(Relaxed), 3);
        assert_eq!(d2.latency_buckets[0].load(Relaxed), 1); // <= 5 ms
        assert_eq!(d2.latency_buckets[3].load(Relaxed), 1); // <= 50 ms
        assert_eq!(d2.latency_buckets[CONNECT_BUCKETS.len()].load(Relaxed), 1); // +Inf
        assert_eq!(d2.latency_sum_micros.load(Relaxed), 3_000 + 30_000 + 60_000_000);
        assert_eq!(s.upstream_connect_failures.load(Relaxed), 2);
        assert_eq!(dc_label(10002), 10002);
        assert_eq!(dc_label(i16::MIN), 0);
    }

    #[tokio::test]
    async fn byte_counter_flushes_by_size_time_and_drop() {
        let stop = CancellationToken::new();
        tokio::spawn(run_coarse_clock(stop.clone()));
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (u, s) = (AtomicU64::new(0), AtomicU64::new(0));
        let mut c = ByteCounter::new(&u, &s);
        c.add(100);
        assert_eq!(u.load(Relaxed), 0, "small amounts wait for a batch");
        c.add(FLUSH_BYTES as usize);
        assert_eq!((u.load(Relaxed), s.load(Relaxed)), (FLUSH_BYTES + 100, FLUSH_BYTES + 100));
        c.add(7);
        tokio::time::sleep(FLUSH_INTERVAL + COARSE_TICK * 2).await;
        c.add(1);
        assert_eq!(u.load(Relaxed), FLUSH_BYTES + 108, "flushed by time at the next read");
        c.add(5);
        drop(c);
        assert_eq!(u.load(Relaxed), FLUSH_BYTES + 113, "flushed at close");
        stop.cancel();
    }

    /// The counting cost per relayed chunk: a few nanoseconds (no clock read, no atomic between
    /// batches) next to a read syscall and an AES pass over up to 16 KiB (microseconds). Printed with `--nocapture`; the bound
    /// is loose enough for debug builds on a loaded machine.
    #[test]
    fn byte_counter_cost_per_chunk() {
        let (u, s) = (AtomicU64::new(0), AtomicU64::new(0));
        let mut c = ByteCounter::new(&u, &s);
        let n = 2_000_000u64;
        let t0 = Instant::now();
        for i in 0..n {
            c.add(std::hint::black_box((i & 0x3fff) as usize));
        }
        let per = t0.elapsed().as_nanos() as f64 / n as f64;
        drop(c);
        println!("ByteCounter::add: {per:.1} ns per chunk");
        assert!(per < 1000.0, "{per} ns per chunk");
        assert_eq!(u.load(Relaxed), (0..n).map(|i| i & 0x3fff).sum::<u64>());
    }

    #[test]
    fn reload_outcomes() {
        let s = Stats::default();
        assert_eq!(s.last_reload(), None);
        s.reload_failed("t.toml:3: bad");
        let r = s.last_reload().unwrap();
        assert!(!r.ok && r.error.as_deref() == Some("t.toml:3: bad"));
        s.reload_succeeded();
        assert!(s.last_reload().unwrap().ok);
        assert_eq!((s.reloads_ok.load(Relaxed), s.reloads_failed.load(Relaxed)), (1, 1));
    }
}
