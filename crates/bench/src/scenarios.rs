//! The scenarios (docs/performance.md): each measures one thing against one target (the proxy
//! for a client kind, or the bare relay) and prints one JSON line. The `socks5` scenario runs
//! the proxy with an `[upstream]` SOCKS5 server (Debian's dante, started here as a child) and
//! measures the same throughput and handshake rows through that leg (target `dd+socks5`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use mtproxy_proto::crypto::AesCtr;
use mtproxy_proto::Secret;
use rand::RngCore;
use serde_json::{json, Value};
use tokio::task::JoinSet;

use crate::client::{bulk_wire, Conn, Kind};
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

/// A target: the proxy for a client kind, or the bare relay; and the secret clients use.
pub struct Target {
    pub proc: Proc,
    pub kind: Kind,
    pub secret: Secret,
    /// The `target` field of its rows: the kind's name, or e.g. `dd+socks5`.
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
    let (addr, kind, secret) = (t.proc.addr, t.kind, t.secret);
    let mut set = JoinSet::new();
    let mut out = Vec::with_capacity(n);
    let mut started = 0;
    while out.len() < n {
        while started < n && set.len() < par {
            set.spawn_local(async move { Conn::open(addr, kind, &secret, op).await });
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

/// Where the connections of a handshake run come from.
#[derive(Clone, Copy)]
pub enum Clients {
    /// All from 127.0.0.1: after the first, the proxy tries the address's last secret first.
    OneAddress,
    /// Each from a loopback address of its own (127.1.0.0 upwards): the full secret search.
    NewAddresses,
}

impl Clients {
    fn name(self) -> &'static str {
        match self {
            Clients::OneAddress => "one-address",
            Clients::NewAddresses => "new-address",
        }
    }

    /// The source address of the next connection (`None`: the default, 127.0.0.1).
    fn source(self, next: &std::cell::Cell<u32>) -> Option<std::net::IpAddr> {
        match self {
            Clients::OneAddress => None,
            Clients::NewAddresses => {
                let n = next.get();
                next.set(n + 1);
                Some(std::net::Ipv4Addr::new(127, 1 + (n >> 16) as u8, (n >> 8) as u8, n as u8).into())
            }
        }
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

    /// Start the target for `kind` with `users` configured users (the last one is used).
    pub fn start(&self, kind: Kind, users: usize) -> Res<Target> {
        let addr = free_addr()?;
        let list = secrets(users.max(1));
        let secret = *list.last().unwrap();
        let proc = if matches!(kind, Kind::Direct | Kind::Direct64) {
            let buf = if kind == Kind::Direct64 { 65536 } else { 8192 };
            let args = vec!["bare-relay".to_string(), addr.to_string(), self.dc.to_string(), self.s.workers.to_string(), buf.to_string()];
            procs::start_self(&args, addr, "the bare relay").map_err(|e| e.to_string())?
        } else {
            procs::start_proxy(&self.s.proxy_bin, &self.s.dir, addr, self.dc, self.s.workers, kind, &list).map_err(|e| e.to_string())?
        };
        Ok(Target { proc, kind, secret, label: kind.name(), upstream: None })
    }

    /// The proxy for `kind` with dante as its `[upstream]` SOCKS5 server; `None` when dante is
    /// not installed.
    pub fn start_via_socks5(&self, kind: Kind) -> Res<Option<Target>> {
        let Some(bin) = procs::danted() else { return Ok(None) };
        let dante = procs::start_dante(&bin, &self.s.dir, free_addr()?).map_err(|e| e.to_string())?;
        let extra = format!("[upstream]\n[[upstream.servers]]\nname = \"dante\"\ntype = \"socks5\"\naddress = \"{}\"\n", dante.addr);
        let addr = free_addr()?;
        let list = secrets(1);
        let proc = procs::start_proxy_with(&self.s.proxy_bin, &self.s.dir, addr, self.dc, self.s.workers, kind, &list, &extra).map_err(|e| e.to_string())?;
        Ok(Some(Target { proc, kind, secret: list[0], label: "dd+socks5", upstream: Some(dante) }))
    }

    /// Single-core AES-256-CTR speed of the crypto crate the proxy uses.
    pub fn aes(&mut self) {
        let mut c = AesCtr::new(&[7u8; 32], &[9u8; 16]);
        let mut buf = vec![0u8; 16384];
        let budget = if self.s.smoke { 0.02 } else { 1.0 };
        let t0 = procstat::thread_cpu_secs();
        let w0 = Instant::now();
        let mut bytes = 0u64;
        while procstat::thread_cpu_secs() - t0 < budget {
            for _ in 0..64 {
                c.apply(&mut buf);
            }
            bytes += 64 * buf.len() as u64;
        }
        let cpu = procstat::thread_cpu_secs() - t0;
        let _ = w0;
        self.emit(json!({"scenario": "aes_ctr", "bytes": bytes, "cpu_s": r3(cpu),
            "mb_per_s": r3(bytes as f64 / cpu / 1e6), "cpu_s_per_gb": r3(cpu / (bytes as f64 / 1e9))}));
    }

    /// Bulk transfer in one direction over `conns` connections.
    pub async fn throughput(&mut self, t: &Target, up: bool, conns: usize) -> Res<()> {
        const CH: u64 = 65536;
        let per = ((self.s.bytes / conns as u64) / CH).max(1) * CH;
        let mut cs = open_many(t, conns, 64, None).await?;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let wire: Rc<Vec<u8>> = Rc::new(bulk_wire(CH as usize, t.kind == Kind::Ee));
        let cpu0 = t.cpu();
        let up_cpu0 = t.upstream_cpu();
        let t0 = Instant::now();
        let mut set = JoinSet::new();
        for mut c in cs.drain(..) {
            let wire = wire.clone();
            set.spawn_local(async move {
                if up {
                    c.send(&crate::fakedc::command(b'S', per)).await?;
                    for _ in 0..per / CH {
                        c.send_raw(&wire).await?;
                    }
                    let mut ack = [0u8; 1];
                    c.recv_exact(&mut ack).await?;
                    if ack[0] != b'K' {
                        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "bad ack from the fake DC"));
                    }
                } else {
                    c.send(&crate::fakedc::command(b'D', per)).await?;
                    c.count(per).await?;
                }
                Ok::<_, std::io::Error>(c)
            });
        }
        let limit = Duration::from_secs(if self.s.smoke { 30 } else { 300 });
        let mut done = Vec::new();
        while let Some(r) = tokio::time::timeout(limit, set.join_next()).await.map_err(|_| "throughput: timed out".to_string())? {
            done.push(r.map_err(|e| e.to_string())?.map_err(|e| format!("throughput: {e}"))?);
        }
        let secs = t0.elapsed().as_secs_f64();
        let cpu = t.cpu() - cpu0;
        drop(done);
        let total = per * conns as u64;
        let mut row = json!({"scenario": "throughput", "target": t.label, "dir": if up {"up"} else {"down"},
            "conns": conns, "bytes": total, "secs": r3(secs), "mb_per_s": r3(total as f64 / secs / 1e6),
            "cpu_s": r3(cpu), "cpu_s_per_gb": r3(cpu / (total as f64 / 1e9)), "workers": self.s.workers});
        if let (Some(a), Some(b)) = (up_cpu0, t.upstream_cpu()) {
            // The upstream server's own cost, for comparison (not part of the proxy's).
            row["upstream_cpu_s_per_gb"] = json!(r3((b - a) / (total as f64 / 1e9)));
        }
        self.emit(row);
        Ok(())
    }

    /// Ping-pong of `size`-byte messages on `conns` connections at once.
    pub async fn latency(&mut self, t: &Target, size: usize, conns: usize) -> Res<()> {
        let rounds = if self.s.smoke { 5 } else { 100 };
        let reps = self.reps();
        let mut cs = open_many(t, conns, 64, Some((b'E', 0))).await?;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut all = Vec::with_capacity(rounds * conns * reps);
        let mut per_rep = Vec::new();
        let t0 = Instant::now();
        for _ in 0..reps {
            let cpu0 = t.cpu();
            let mut set = JoinSet::new();
            for mut c in cs.drain(..) {
                set.spawn_local(async move {
                    let mut msg = vec![0u8; size];
                    let mut back = vec![0u8; size];
                    let mut lat = Vec::with_capacity(rounds);
                    for _ in 0..rounds {
                        rand::thread_rng().fill_bytes(&mut msg);
                        let s = Instant::now();
                        c.send(&msg).await?;
                        c.recv_exact(&mut back).await?;
                        lat.push(s.elapsed().as_micros() as u32);
                        if back != msg {
                            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "echo differs"));
                        }
                    }
                    Ok::<_, std::io::Error>((c, lat))
                });
            }
            while let Some(r) = tokio::time::timeout(Duration::from_secs(300), set.join_next()).await.map_err(|_| "latency: timed out".to_string())? {
                let (c, lat) = r.map_err(|e| e.to_string())?.map_err(|e| format!("latency: {e}"))?;
                cs.push(c);
                all.extend(lat);
            }
            per_rep.push((t.cpu() - cpu0) * 1e6 / (rounds * conns) as f64);
        }
        let secs = t0.elapsed().as_secs_f64();
        all.sort_unstable();
        let msgs = all.len();
        self.emit(json!({"scenario": "latency", "target": t.label, "size": size, "conns": conns,
            "round_trips": msgs, "secs": r3(secs), "p50_us": pct(&all, 0.5), "p99_us": pct(&all, 0.99),
            "p999_us": pct(&all, 0.999), "cpu_us_per_round_trip": r3(median(&mut per_rep)),
            "cpu_us_per_round_trip_reps": per_rep.iter().map(|x| r3(*x)).collect::<Vec<_>>()}));
        Ok(())
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

    /// connect -> handshake -> first echo -> close, `par` at a time.
    pub async fn handshakes(&mut self, kind: Kind, users: usize, clients: Clients) -> Res<()> {
        let t = self.start(kind, users)?;
        self.handshakes_on(&t, users, clients).await
    }

    /// [`Bench::handshakes`] against a target already started with `users` users.
    pub async fn handshakes_on(&mut self, t: &Target, users: usize, clients: Clients) -> Res<()> {
        let kind = t.kind;
        let count: usize = if self.s.smoke {
            10
        } else if users >= 1000 {
            600
        } else {
            3000
        };
        let par = 8;
        // Warm-up (runtime threads, allocator).
        drop(open_many(t, 8, 8, Some((b'E', 0))).await?);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (addr, secret) = (t.proc.addr, t.secret);
        let reps = self.reps();
        let per = count / par / reps;
        let next_source = std::rc::Rc::new(std::cell::Cell::new(0u32));
        let mut per_rep = Vec::new();
        let t0 = Instant::now();
        for _ in 0..reps {
            let cpu0 = t.cpu();
            let mut set = JoinSet::new();
            for _ in 0..par {
                let next_source = next_source.clone();
                set.spawn_local(async move {
                    for _ in 0..per {
                        let from = clients.source(&next_source);
                        let mut c = Conn::open_from(from, addr, kind, &secret, Some((b'E', 0))).await?;
                        let msg = [0x5au8; 16];
                        let mut back = [0u8; 16];
                        c.send(&msg).await?;
                        c.recv_exact(&mut back).await?;
                        if back != msg {
                            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "echo differs"));
                        }
                    }
                    Ok::<_, std::io::Error>(())
                });
            }
            while let Some(r) = tokio::time::timeout(Duration::from_secs(600), set.join_next()).await.map_err(|_| "handshakes: timed out".to_string())? {
                r.map_err(|e| e.to_string())?.map_err(|e| format!("handshakes: {e}"))?;
            }
            // Let the proxy finish closing the last connections before reading its CPU.
            tokio::time::sleep(Duration::from_millis(100)).await;
            per_rep.push((t.cpu() - cpu0) * 1000.0 / (per * par) as f64);
        }
        let secs = t0.elapsed().as_secs_f64();
        let n = per * par * reps;
        let m = median(&mut per_rep);
        self.emit(json!({"scenario": "handshake", "target": t.label, "users": users, "clients": clients.name(), "count": n,
            "secs": r3(secs), "per_s": r3(n as f64 / secs),
            "cpu_s_per_1000": r3(m), "cpu_us_each": r3(m * 1000.0),
            "cpu_s_per_1000_reps": per_rep.iter().map(|x| r3(*x)).collect::<Vec<_>>()}));
        Ok(())
    }

    /// `conns` connections held open after one message each: resident memory per connection.
    pub async fn idle(&mut self, kind: Kind, conns: usize) -> Res<()> {
        let t = self.start(kind, 1)?;
        drop(open_many(&t, 16, 16, Some((b'E', 0))).await?);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let rss0 = t.rss();
        let t0 = Instant::now();
        let mut cs = open_many(&t, conns, 64, Some((b'E', 0))).await?;
        let msg = [0x42u8; 32];
        let mut back = [0u8; 32];
        for c in cs.iter_mut() {
            with_timeout(Duration::from_secs(10), "idle echo", async {
                c.send(&msg).await?;
                c.recv_exact(&mut back).await
            })
            .await?;
            if back != msg {
                return Err("idle: echo differs".into());
            }
            c.shrink();
        }
        let secs = t0.elapsed().as_secs_f64();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let rss1 = t.rss();
        drop(cs);
        self.emit(json!({"scenario": "idle", "target": kind.name(), "conns": conns, "secs_to_open": r3(secs),
            "rss_before": rss0, "rss_after": rss1,
            "rss_bytes_per_conn": (rss1 as i64 - rss0 as i64) / conns as i64}));
        Ok(())
    }

    /// Bursts of awkward sizes, then silence: every byte must arrive without more input.
    pub async fn stall(&mut self, kind: Kind) -> Res<()> {
        let t = self.start(kind, 1)?;
        let sizes: &[usize] = &[1, 63, 1000, 16383, 16385, 100_003, 1_048_583];
        let wait = Duration::from_secs(5);
        let mut failed = Vec::new();
        let (addr, secret) = (t.proc.addr, t.secret);
        for &n in sizes {
            let mut data = vec![0u8; n];
            rand::thread_rng().fill_bytes(&mut data);
            // client -> DC: the DC acknowledges once it has all n bytes.
            let up = with_timeout(wait, &format!("up {n}"), async {
                let mut c = Conn::open(addr, kind, &secret, Some((b'S', n as u64))).await?;
                c.send(&data).await?;
                let mut ack = [0u8; 1];
                c.recv_exact(&mut ack).await?;
                Ok(ack[0] == b'K')
            })
            .await;
            if up != Ok(true) {
                failed.push(format!("up {n}: {up:?}"));
            }
            // DC -> client: the DC sends n bytes and goes quiet.
            let down = with_timeout(wait, &format!("down {n}"), async {
                let mut c = Conn::open(addr, kind, &secret, Some((b'D', n as u64))).await?;
                c.count(n as u64).await
            })
            .await;
            if let Err(e) = down {
                failed.push(e);
            }
            // Both ways: an echoed burst comes back whole and unchanged.
            let echo = with_timeout(wait, &format!("echo {n}"), async {
                let mut c = Conn::open(addr, kind, &secret, Some((b'E', 0))).await?;
                c.send(&data).await?;
                let mut back = vec![0u8; n];
                c.recv_exact(&mut back).await?;
                Ok(back == data)
            })
            .await;
            if echo != Ok(true) {
                failed.push(format!("echo {n}: {echo:?}"));
            }
        }
        let ok = failed.is_empty();
        if !ok {
            self.failures.push(format!("stall {}: {}", kind.name(), failed.join("; ")));
        }
        self.emit(json!({"scenario": "stall", "target": kind.name(), "sizes": sizes, "ok": ok, "failures": failed}));
        Ok(())
    }

    /// Throughput both ways (16 connections) and handshakes (one user) through a SOCKS5
    /// upstream (dante); a `socks5` row says whether it ran.
    pub async fn socks5(&mut self) -> Res<()> {
        let Some(t) = self.start_via_socks5(Kind::Dd)? else {
            self.emit(json!({"scenario": "socks5", "ran": false, "why": "danted (Debian package dante-server) is not installed"}));
            return Ok(());
        };
        for up in [true, false] {
            self.throughput(&t, up, 16).await?;
        }
        self.handshakes_on(&t, 1, Clients::OneAddress).await?;
        self.emit(json!({"scenario": "socks5", "ran": true, "target": t.label, "upstream": "dante"}));
        Ok(())
    }

    /// Ratios against the floor and the targets of docs/performance.md, from this run's rows.
    pub fn summary(&mut self) {
        let find = |f: &dyn Fn(&Value) -> bool| self.results.iter().find(|v| f(v)).cloned();
        let num = |v: &Option<Value>, k: &str| v.as_ref().and_then(|v| v[k].as_f64());
        let aes = num(&find(&|v| v["scenario"] == "aes_ctr"), "cpu_s_per_gb");
        let mut rows = Vec::new();
        for dir in ["up", "down"] {
            for conns in [1, 16, 256] {
                let row = |target: &str| find(&|v| v["scenario"] == "throughput" && v["target"] == target && v["dir"] == dir && v["conns"] == conns);
                // The floor uses the cheaper of the two bare relays.
                let bare = match (num(&row("bare"), "cpu_s_per_gb"), num(&row("bare64"), "cpu_s_per_gb")) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                let (Some(bare), Some(aes)) = (bare, aes) else { continue };
                let floor = bare + 2.0 * aes;
                for k in ["classic", "dd", "ee"] {
                    if let Some(x) = num(&row(k), "cpu_s_per_gb") {
                        rows.push(json!({"what": "cpu_per_gb", "target": k, "dir": dir, "conns": conns,
                            "floor": r3(floor), "value": x, "ratio": r3(x / floor), "goal": 1.2}));
                    }
                }
            }
        }
        for size in [64, 1024] {
            let row = |target: &str| find(&|v| v["scenario"] == "latency" && v["target"] == target && v["size"] == size);
            if let Some(bare) = num(&row("bare"), "cpu_us_per_round_trip") {
                for k in ["classic", "dd", "ee"] {
                    if let Some(x) = num(&row(k), "cpu_us_per_round_trip") {
                        rows.push(json!({"what": "cpu_per_message", "target": k, "size": size, "bare": bare,
                            "value": x, "ratio": r3(x / bare), "goal": 1.2}));
                    }
                }
            }
        }
        // The goals are for clients the proxy has not seen (the full secret search); returning
        // addresses are cheaper (hints.rs) and reported in their own rows.
        let hs_from = |target: &str, users: u64, clients: &str| {
            num(&find(&|v| v["scenario"] == "handshake" && v["target"] == target && v["users"] == users && v["clients"] == clients), "cpu_s_per_1000")
        };
        let hs = |target: &str, users: u64| if users == 1 { hs_from(target, 1, "one-address") } else { hs_from(target, users, "new-address") };
        if let Some(bare) = hs("bare", 1) {
            for k in ["classic", "dd"] {
                if let Some(x) = hs(k, 1) {
                    rows.push(json!({"what": "handshake_cpu_s_per_1000", "target": k, "users": 1, "bare": bare,
                        "value": x, "ratio": r3(x / bare), "goal": 1.3}));
                }
            }
        }
        if let Some(x) = hs("ee", 1) {
            rows.push(json!({"what": "handshake_cpu_s_per_1000", "target": "ee", "users": 1, "value": x, "goal_max": 0.25}));
        }
        if let Some(x) = hs("ee", 1000) {
            rows.push(json!({"what": "handshake_cpu_ms_each", "target": "ee", "users": 1000, "clients": "new-address", "value": r3(x), "goal_max": 1.0}));
        }
        let most = self.results.iter().filter(|v| v["scenario"] == "idle").filter_map(|v| v["conns"].as_u64()).max();
        for v in self.results.iter().filter(|v| v["scenario"] == "idle" && v["conns"].as_u64() == most) {
            rows.push(json!({"what": "idle_rss_bytes_per_conn", "target": v["target"], "conns": v["conns"],
                "value": v["rss_bytes_per_conn"], "goal_max": 4096}));
        }
        // The upstream leg's cost: the proxy's CPU through dante against the same proxy direct.
        for dir in ["up", "down"] {
            let row = |target: &str| find(&|v| v["scenario"] == "throughput" && v["target"] == target && v["dir"] == dir && v["conns"] == 16);
            if let (Some(via), Some(direct)) = (num(&row("dd+socks5"), "cpu_s_per_gb"), num(&row("dd"), "cpu_s_per_gb")) {
                rows.push(json!({"what": "socks5_cpu_per_gb", "target": "dd+socks5", "dir": dir, "conns": 16,
                    "direct": direct, "value": via, "ratio": r3(via / direct),
                    "upstream_cpu_s_per_gb": row("dd+socks5").map(|v| v["upstream_cpu_s_per_gb"].clone())}));
            }
        }
        if let (Some(via), Some(direct)) = (hs_from("dd+socks5", 1, "one-address"), hs_from("dd", 1, "one-address")) {
            rows.push(json!({"what": "socks5_handshake_cpu_s_per_1000", "target": "dd+socks5", "users": 1,
                "direct": direct, "value": via, "ratio": r3(via / direct)}));
        }
        let stall_ok = self.results.iter().filter(|v| v["scenario"] == "stall").all(|v| v["ok"] == true);
        self.emit(json!({"scenario": "summary", "stall_ok": stall_ok, "rows": rows}));
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
    let kinds = [Kind::Direct, Kind::Classic, Kind::Dd, Kind::Ee];
    if b.wants("aes") {
        b.aes();
    }
    if b.wants("stall") {
        for k in kinds {
            step!(b.stall(k).await);
        }
    }
    if b.wants("throughput") {
        for k in [Kind::Direct, Kind::Direct64, Kind::Classic, Kind::Dd, Kind::Ee] {
            let t = match b.start(k, 1) {
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
        for k in kinds {
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
        step!(b.handshakes(Kind::Direct, 1, Clients::OneAddress).await);
        for k in [Kind::Classic, Kind::Dd, Kind::Ee] {
            for users in [1, 100, 1000] {
                step!(b.handshakes(k, users, Clients::OneAddress).await);
            }
            // Every connection from an address the proxy has not seen: no secret hint.
            for users in [100, 1000] {
                step!(b.handshakes(k, users, Clients::NewAddresses).await);
            }
        }
    }
    if b.wants("idle") {
        let max = ((b.s.nofile.saturating_sub(200)) / 2).min(9900) as usize;
        let counts: Vec<usize> = if b.s.smoke { vec![20] } else { vec![1000, max] };
        for k in [Kind::Direct, Kind::Classic, Kind::Ee] {
            for &c in &counts {
                step!(b.idle(k, c).await);
            }
        }
    }
    if b.wants("socks5") {
        step!(b.socks5().await);
    }
    b.summary();
}
