//! The scenarios (docs/performance.md): each measures one thing against one target (the proxy
//! for a secret kind, or a bare relay) and prints one JSON line. The `socks5` scenario runs
//! the proxy with an `[upstream]` SOCKS5 server (Debian's dante, started here as a child) and
//! measures the same throughput and handshake rows through that leg (target `dd+socks5`).
//!
//! This module holds what every scenario shares (the targets, opening connections, the numbers)
//! and the order they run in; each family of scenarios is a module of its own.

mod handshake;
mod held;
mod socks5;
mod summary;
mod transfer;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use mtproxy_proto::{Secret, SecretKind};
use rand::RngCore;
use serde_json::Value;
use tokio::task::JoinSet;

pub use self::handshake::Clients;
use crate::client::{fake_tls, Conn, RelayBuf, Route};
use crate::procs::{self, Proc};
use crate::procstat;

/// Settings of one run.
pub struct Settings {
    pub smoke: bool,
    pub workers: usize,
    pub bytes: u64,
    pub only: Option<Vec<String>>,
    pub proxy_bin: PathBuf,
    pub dir: PathBuf,
    pub nofile: u64,
}

pub struct Bench {
    pub s: Settings,
    pub dc: SocketAddr,
    pub results: Vec<Value>,
    /// Scenarios that failed (an error, or the stall check).
    pub failures: Vec<String>,
}

type Res<T> = Result<T, String>;

fn free_addr() -> Res<SocketAddr> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("binding a port: {e}"))?;
    l.local_addr().map_err(|e| e.to_string())
}

fn secrets(n: usize) -> Vec<Secret> {
    let mut rng = rand::thread_rng();
    (0..n)
        .map(|_| {
            let mut b = [0u8; 16];
            rng.fill_bytes(&mut b);
            Secret::from_bytes(b)
        })
        .collect()
}

/// A target: the proxy for a secret kind, or a bare relay; and the secret clients use.
pub struct Target {
    pub proc: Proc,
    pub route: Route,
    pub secret: Secret,
    /// The `target` field of its rows: the route's name, or e.g. `dd+socks5`.
    pub label: &'static str,
    /// The upstream server the proxy goes through (dropped, and so stopped, with the target).
    pub upstream: Option<Proc>,
}

impl Target {
    fn cpu(&self) -> f64 {
        procstat::cpu_secs(self.proc.pid()).unwrap_or(f64::NAN)
    }
    /// CPU seconds of the upstream server (all its processes); `None` without one.
    fn upstream_cpu(&self) -> Option<f64> {
        self.upstream.as_ref().map(|u| procstat::tree_cpu_secs(u.pid()).unwrap_or(f64::NAN))
    }
    fn rss(&self) -> u64 {
        procstat::rss_bytes(self.proc.pid()).unwrap_or(0)
    }
}

fn pct(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        0.0
    } else {
        v[v.len() / 2]
    }
}

fn r3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Open `n` connections, at most `par` handshakes at a time.
async fn open_many(t: &Target, n: usize, par: usize, op: Option<(u8, u64)>) -> Res<Vec<Conn>> {
    let (addr, secret) = (t.proc.addr, t.secret);
    let mut set = JoinSet::new();
    let mut out = Vec::with_capacity(n);
    let mut started = 0;
    while out.len() < n {
        while started < n && set.len() < par {
            let route = t.route.clone();
            set.spawn_local(async move { Conn::open(addr, &route, &secret, op).await });
            started += 1;
        }
        match set.join_next().await {
            Some(Ok(Ok(c))) => out.push(c),
            Some(Ok(Err(e))) => return Err(format!("connection {} failed: {e}", out.len())),
            Some(Err(e)) => return Err(format!("task failed: {e}")),
            None => break,
        }
    }
    Ok(out)
}

async fn with_timeout<T>(d: Duration, what: &str, f: impl std::future::Future<Output = std::io::Result<T>>) -> Res<T> {
    match tokio::time::timeout(d, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("{what}: {e}")),
        Err(_) => Err(format!("{what}: nothing for {} s (stalled)", d.as_secs())),
    }
}

impl Bench {
    pub fn wants(&self, name: &str) -> bool {
        self.s.only.as_ref().is_none_or(|o| o.iter().any(|x| x == name))
    }

    pub fn emit(&mut self, v: Value) {
        println!("{v}");
        use std::io::Write;
        let _ = std::io::stdout().flush();
        self.results.push(v);
    }

    /// Start the target for `route` with `users` configured users (the last one is used).
    pub fn start(&self, route: &Route, users: usize) -> Res<Target> {
        let addr = free_addr()?;
        let list = secrets(users.max(1));
        let secret = *list.last().unwrap();
        let proc = match route {
            Route::Bare(buf) => {
                let args = vec!["bare-relay".to_string(), addr.to_string(), self.dc.to_string(), self.s.workers.to_string(), buf.bytes().to_string()];
                procs::start_self(&args, addr, "the bare relay").map_err(|e| e.to_string())?
            }
            Route::Proxy(kind) => procs::start_proxy(&self.s.proxy_bin, &self.s.dir, addr, self.dc, self.s.workers, kind, &list).map_err(|e| e.to_string())?,
        };
        Ok(Target { proc, route: route.clone(), secret, label: route.name(), upstream: None })
    }

    /// Repetitions of the CPU-per-unit measurements (the median is reported: on a shared
    /// machine one repetition can be slowed by neighbours).
    fn reps(&self) -> usize {
        if self.s.smoke {
            1
        } else {
            3
        }
    }
}

/// Run everything `b.s.only` selects.
pub async fn run_all(b: &mut Bench) {
    macro_rules! step {
        ($e:expr) => {
            if let Err(e) = $e {
                eprintln!("bench: {e}");
                b.failures.push(e);
            }
        };
    }
    let routes = [Route::Bare(RelayBuf::Tokio), Route::Proxy(SecretKind::Classic), Route::Proxy(SecretKind::Padded), Route::Proxy(fake_tls())];
    if b.wants("aes") {
        b.aes();
    }
    if b.wants("stall") {
        for k in &routes {
            step!(b.stall(k).await);
        }
    }
    if b.wants("throughput") {
        for k in [
            Route::Bare(RelayBuf::Tokio),
            Route::Bare(RelayBuf::ProxyRead),
            Route::Proxy(SecretKind::Classic),
            Route::Proxy(SecretKind::Padded),
            Route::Proxy(fake_tls()),
        ] {
            let t = match b.start(&k, 1) {
                Ok(t) => t,
                Err(e) => {
                    step!(Err::<(), _>(e));
                    continue;
                }
            };
            for up in [true, false] {
                for conns in [1, 16, 256] {
                    step!(b.throughput(&t, up, conns).await);
                }
            }
        }
    }
    if b.wants("latency") {
        for k in &routes {
            let t = match b.start(k, 1) {
                Ok(t) => t,
                Err(e) => {
                    step!(Err::<(), _>(e));
                    continue;
                }
            };
            for size in [64, 1024] {
                step!(b.latency(&t, size, if b.s.smoke { 10 } else { 100 }).await);
            }
        }
    }
    if b.wants("handshake") {
        step!(b.handshakes(&Route::Bare(RelayBuf::Tokio), 1, Clients::OneAddress).await);
        for k in [Route::Proxy(SecretKind::Classic), Route::Proxy(SecretKind::Padded), Route::Proxy(fake_tls())] {
            for users in [1, 100, 1000] {
                step!(b.handshakes(&k, users, Clients::OneAddress).await);
            }
            // Every connection from an address the proxy has not seen: no secret hint.
            for users in [100, 1000] {
                step!(b.handshakes(&k, users, Clients::NewAddresses).await);
            }
        }
    }
    if b.wants("idle") {
        let max = ((b.s.nofile.saturating_sub(200)) / 2).min(9900) as usize;
        let counts: Vec<usize> = if b.s.smoke { vec![20] } else { vec![1000, max] };
        for k in [Route::Bare(RelayBuf::Tokio), Route::Proxy(SecretKind::Classic), Route::Proxy(fake_tls())] {
            for &c in &counts {
                step!(b.idle(&k, c).await);
            }
        }
    }
    if b.wants("socks5") {
        step!(b.socks5().await);
    }
    b.summary();
}
