//! `vless-mtproxy doctor [--json]`: the checks an admin runs when "Telegram won't connect".
//!
//! Each check ends `ok`, `warn`, `fail` or `skipped` with one line of detail and, unless ok, one
//! line of advice. Every network step has its own timeout (`--timeout`, default 3 s) and checks
//! run concurrently, so the whole run is bounded; a check whose target needs a route this host
//! does not have (no default route for that address family, or "network unreachable") says
//! `skipped` instead of waiting. Local checks (config, listeners, statistics listener, fail2ban,
//! UFW) need no network.
//!
//! Exit code: 1 when any check failed, else 0.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use mtproxy_core::config::{Config, DcKey, HostPort};
use mtproxy_core::dc::{self, Target};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::status::command_output;
use super::tlsprobe::{self, TlsAnswer};
use super::{client, connectable, endpoint, fetch_report, load_config, EndpointArgs};

#[derive(clap::Args, Debug)]
pub struct DoctorArgs {
    /// Print JSON: {"checks": [{name, status, detail, advice, millis}], "summary": {...}}.
    #[arg(long)]
    pub json: bool,
    /// Check DC ID at HOST:PORT instead of Telegram's address, as `serve --dc-override`. Repeatable.
    #[arg(long = "dc-override", value_name = "ID=HOST:PORT")]
    pub dc_overrides: Vec<String>,
    /// Read the clock from this web server's HTTP `Date` (HOST or HOST:PORT, plain HTTP)
    /// instead of the cover domain on port 80.
    #[arg(long, value_name = "HOST[:PORT]")]
    pub time_server: Option<String>,
    /// Timeout of each network step.
    #[arg(long, default_value = "3s", value_parser = parse_timeout)]
    pub timeout: Duration,
    #[command(flatten)]
    pub endpoint: EndpointArgs,
}

fn parse_timeout(s: &str) -> Result<Duration, String> {
    let d = mtproxy_core::config::parse_duration(s)?;
    if d < Duration::from_millis(100) || d > Duration::from_secs(60) {
        return Err(format!("`{s}`: the timeout must be between 100ms and 60s"));
    }
    Ok(d)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Ok,
    Warn,
    Fail,
    Skipped,
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub status: Level,
    pub detail: String,
    pub advice: Option<String>,
    /// How long the check took (network checks).
    pub millis: Option<u64>,
}

impl Check {
    fn new(name: impl Into<String>, status: Level, detail: impl Into<String>, advice: Option<&str>) -> Check {
        Check { name: name.into(), status, detail: detail.into(), advice: advice.map(str::to_string), millis: None }
    }
    fn ok(name: impl Into<String>, detail: impl Into<String>) -> Check {
        Check::new(name, Level::Ok, detail, None)
    }
    fn timed(mut self, t0: Instant) -> Check {
        self.millis = Some(t0.elapsed().as_millis() as u64);
        self
    }
}

#[derive(Debug, Serialize)]
struct Summary {
    ok: usize,
    warn: usize,
    fail: usize,
    skipped: usize,
}

/// Default routes of this host's network namespace: (IPv4, IPv6), loopback excluded.
pub fn default_routes() -> (bool, bool) {
    let v4 = std::fs::read_to_string("/proc/net/route")
        .map(|t| t.lines().skip(1).any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 2 && f[1] == "00000000" && f[0] != "lo"
        }))
        .unwrap_or(false);
    let v6 = std::fs::read_to_string("/proc/net/ipv6_route")
        .map(|t| t.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() >= 10 && f[0] == "00000000000000000000000000000000" && f[1] == "00" && f[9] != "lo"
        }))
        .unwrap_or(false);
    (v4, v6)
}

struct Net {
    v4: bool,
    v6: bool,
    timeout: Duration,
}

impl Net {
    fn can_reach(&self, ip: IpAddr) -> bool {
        ip.is_loopback() || if ip.to_canonical().is_ipv4() { self.v4 } else { self.v6 }
    }
    fn any(&self) -> bool {
        self.v4 || self.v6
    }
}

fn unreachable_net(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(101) | Some(113)) // ENETUNREACH, EHOSTUNREACH
}

enum Connect {
    Ok(TcpStream, Duration),
    Skipped(String),
    Failed(String),
}

async fn connect(net: &Net, addr: SocketAddr) -> Connect {
    if !net.can_reach(addr.ip()) {
        return Connect::Skipped(format!("no route to {} (network unavailable)", addr.ip()));
    }
    let t0 = Instant::now();
    match tokio::time::timeout(net.timeout, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => Connect::Ok(s, t0.elapsed()),
        Ok(Err(e)) if unreachable_net(&e) => Connect::Skipped(format!("{addr}: {e}")),
        Ok(Err(e)) => Connect::Failed(format!("{addr}: {e}")),
        Err(_) => Connect::Failed(format!("{addr}: no answer within {} ms", net.timeout.as_millis())),
    }
}

/// Why a name gave no address.
enum Miss {
    Skipped(String),
    Failed(String),
}

async fn resolve(net: &Net, host: &str, port: u16) -> Result<Vec<SocketAddr>, Miss> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    if !net.any() {
        return Err(Miss::Skipped(format!("cannot resolve {host}: no network")));
    }
    match tokio::time::timeout(net.timeout, tokio::net::lookup_host((host, port))).await {
        Ok(Ok(a)) => Ok(a.collect()),
        Ok(Err(e)) => Err(Miss::Failed(format!("{host} does not resolve: {e}"))),
        Err(_) => Err(Miss::Failed(format!("resolving {host} took longer than {} ms", net.timeout.as_millis()))),
    }
}

async fn check_dc(net: &Net, id: i16, targets: Vec<Target>) -> Check {
    let name = format!("dc {id}");
    let t0 = Instant::now();
    let mut failed = Vec::new();
    let mut skipped = Vec::new();
    for t in targets {
        let addrs = match &t {
            Target::Addr(a) => vec![*a],
            Target::Name(HostPort { host, port }) => match resolve(net, host, *port).await {
                Ok(a) => a,
                Err(Miss::Skipped(m)) => {
                    skipped.push(m);
                    continue;
                }
                Err(Miss::Failed(m)) => {
                    failed.push(m);
                    continue;
                }
            },
        };
        for a in addrs {
            match connect(net, a).await {
                Connect::Ok(_, took) => return Check::ok(name, format!("{a} answered in {} ms", took.as_millis())).timed(t0),
                Connect::Skipped(m) => skipped.push(m),
                Connect::Failed(m) => failed.push(m),
            }
        }
    }
    if failed.is_empty() {
        let why = skipped.first().cloned().unwrap_or_else(|| "no address to try".into());
        return Check::new(name, Level::Skipped, why, Some("run doctor where the host has its normal network to test Telegram DCs")).timed(t0);
    }
    Check::new(
        name,
        Level::Fail,
        format!("unreachable: {}", failed.join("; ")),
        Some("clients of this DC cannot be served: check outbound firewall rules and the provider's routing to Telegram; try `dc_ip = \"prefer-v6\"` if IPv6 works"),
    )
    .timed(t0)
}

fn local_ips() -> BTreeSet<IpAddr> {
    if_addrs::get_if_addrs().map(|v| v.into_iter().map(|i| i.ip().to_canonical()).collect()).unwrap_or_default()
}

async fn check_cover(net: &Net, cfg: &Config, domain: &str) -> Vec<Check> {
    let mut out = Vec::new();
    let t0 = Instant::now();
    let dns_name = format!("cover {domain}: DNS");
    let here_name = format!("cover {domain}: points here");
    match resolve(net, domain, 443).await {
        Ok(addrs) => {
            let ips: BTreeSet<IpAddr> = addrs.iter().map(|a| a.ip().to_canonical()).collect();
            let list = ips.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", ");
            out.push(Check::ok(dns_name, format!("resolves to {list}")).timed(t0));
            let mut mine = local_ips();
            if let Some(h) = &cfg.public_host {
                if let Ok(a) = resolve(net, h, 443).await {
                    mine.extend(a.iter().map(|a| a.ip().to_canonical()));
                }
            }
            if ips.iter().any(|i| mine.contains(i)) {
                out.push(Check::ok(here_name, "the domain resolves to this host, as the SNI suggests"));
            } else {
                out.push(Check::new(
                    here_name,
                    Level::Warn,
                    format!("{domain} resolves to {list}, not to this host"),
                    Some("clients send this SNI to an IP the domain does not use, which DPI can notice; prefer a domain whose A/AAAA record is this server"),
                ));
            }
        }
        Err(Miss::Skipped(m)) => {
            out.push(Check::new(dns_name, Level::Skipped, m.clone(), Some("run doctor with the host's normal network")));
            out.push(Check::new(here_name, Level::Skipped, "needs DNS", None));
        }
        Err(Miss::Failed(m)) => {
            out.push(Check::new(dns_name, Level::Fail, m, Some("use a real, resolvable HTTPS site as the fake-TLS domain")).timed(t0));
            out.push(Check::new(here_name, Level::Skipped, "needs DNS", None));
        }
    }
    out.push(check_tls13(net, cfg, domain).await);
    out
}

async fn check_tls13(net: &Net, cfg: &Config, domain: &str) -> Check {
    let name = format!("cover {domain}: TLS 1.3");
    let t0 = Instant::now();
    let target = cfg.fronting.mask_host.clone().filter(|_| cfg.fronting.enabled).unwrap_or(HostPort { host: domain.to_string(), port: 443 });
    let addrs = match resolve(net, &target.host, target.port).await {
        Ok(a) => a,
        Err(Miss::Skipped(m)) => return Check::new(name, Level::Skipped, m, None).timed(t0),
        Err(Miss::Failed(m)) => return Check::new(name, Level::Fail, m, Some("set [fronting] mask_host to a reachable HTTPS server")).timed(t0),
    };
    let mut last = String::from("no address");
    for a in addrs {
        let mut s = match connect(net, a).await {
            Connect::Ok(s, _) => s,
            Connect::Skipped(m) => return Check::new(name, Level::Skipped, m, None).timed(t0),
            Connect::Failed(m) => {
                last = m;
                continue;
            }
        };
        let answer = async {
            s.write_all(&tlsprobe::client_hello(domain)).await?;
            let mut buf = Vec::new();
            let mut chunk = [0u8; 8192];
            loop {
                let n = s.read(&mut chunk).await?;
                if n == 0 {
                    return Ok::<_, std::io::Error>(tlsprobe::parse_answer(&buf).unwrap_or(TlsAnswer::NotTls("closed before a ServerHello".into())));
                }
                buf.extend_from_slice(&chunk[..n]);
                if let Some(a) = tlsprobe::parse_answer(&buf) {
                    return Ok(a);
                }
            }
        };
        let advice = Some("fake-TLS answers like a TLS 1.3 server: pick a cover domain (or mask_host) that speaks TLS 1.3, or probers can tell us apart");
        return match tokio::time::timeout(net.timeout, answer).await {
            Ok(Ok(TlsAnswer::Version(0x0304))) | Ok(Ok(TlsAnswer::RetryRequest)) => Check::ok(name, format!("{target} ({a}) answers TLS 1.3")).timed(t0),
            Ok(Ok(TlsAnswer::Version(v))) => Check::new(name, Level::Fail, format!("{target} chose TLS version {v:#06x}, not 1.3"), advice).timed(t0),
            Ok(Ok(TlsAnswer::Alert(l, d))) => Check::new(name, Level::Fail, format!("{target} answered a TLS alert (level {l}, description {d})"), advice).timed(t0),
            Ok(Ok(TlsAnswer::NotTls(m))) => Check::new(name, Level::Fail, format!("{target}: {m}"), advice).timed(t0),
            Ok(Err(e)) => Check::new(name, Level::Fail, format!("{target}: {e}"), advice).timed(t0),
            Err(_) => Check::new(name, Level::Fail, format!("{target} sent no ServerHello within {} ms", net.timeout.as_millis()), advice).timed(t0),
        };
    }
    Check::new(name, Level::Fail, format!("cannot connect: {last}"), Some("the mask host must be reachable for fronting to work")).timed(t0)
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp as i64 + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// Parse an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) into Unix seconds.
pub fn parse_http_date(s: &str) -> Option<i64> {
    let f: Vec<&str> = s.split_whitespace().collect();
    if f.len() != 6 || f[5] != "GMT" {
        return None;
    }
    let day: u32 = f[1].parse().ok()?;
    let month = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"].iter().position(|m| *m == f[2])? as u32 + 1;
    let year: i64 = f[3].parse().ok()?;
    let t: Vec<u32> = f[4].split(':').map(|x| x.parse().ok()).collect::<Option<Vec<_>>>()?;
    if t.len() != 3 || t[0] > 23 || t[1] > 59 || t[2] > 60 || !(1..=31).contains(&day) {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86400 + (t[0] * 3600 + t[1] * 60 + t[2]) as i64)
}

async fn check_clock(net: &Net, cfg: &Config, server: Option<&str>) -> Check {
    let name = "clock";
    let t0 = Instant::now();
    let target = match server {
        Some(s) => HostPort::parse(s).unwrap_or(HostPort { host: s.to_string(), port: 80 }),
        None => match cfg.fake_tls_domains().first() {
            Some(d) => HostPort { host: d.to_string(), port: 80 },
            None => return Check::new(name, Level::Skipped, "no fake-TLS domain to read the time from", Some("pass --time-server HOST[:PORT] (a plain HTTP server you trust)")),
        },
    };
    let addr = match resolve(net, &target.host, target.port).await {
        Ok(a) if !a.is_empty() => a[0],
        Ok(_) => return Check::new(name, Level::Fail, format!("{target} has no address"), None).timed(t0),
        Err(Miss::Skipped(m)) => return Check::new(name, Level::Skipped, m, None).timed(t0),
        Err(_) => return Check::new(name, Level::Warn, format!("cannot resolve {}", target.host), Some("pass --time-server HOST[:PORT]")).timed(t0),
    };
    if !net.can_reach(addr.ip()) {
        return Check::new(name, Level::Skipped, format!("no route to {} (network unavailable)", addr.ip()), None).timed(t0);
    }
    let before = std::time::SystemTime::now();
    let resp = client::request(addr, &target.host, "HEAD", "/", &[], net.timeout).await;
    let after = std::time::SystemTime::now();
    let local_mid = {
        let a = before.duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs_f64();
        let b = after.duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs_f64();
        (a + b) / 2.0
    };
    let resp = match resp {
        Ok(r) => r,
        Err(client::HttpError::Connect { source, .. }) if unreachable_net(&source) => return Check::new(name, Level::Skipped, format!("{target}: {source}"), None).timed(t0),
        Err(e) => return Check::new(name, Level::Warn, format!("no HTTP answer from {target}: {e}"), Some("pass --time-server HOST[:PORT] (a plain HTTP server you trust)")).timed(t0),
    };
    let Some(remote) = resp.header("date").and_then(parse_http_date) else {
        return Check::new(name, Level::Warn, format!("{target} sent no usable Date header"), Some("pass --time-server HOST[:PORT]")).timed(t0);
    };
    // The Date has one-second resolution: it can lag by up to a second.
    let offset = remote as f64 + 0.5 - local_mid;
    let skew = cfg.fake_tls.max_clock_skew.as_secs_f64();
    let detail = format!("local clock is {:+.1} s from {target}'s", -offset);
    let advice = "turn on time synchronisation (`timedatectl set-ntp true`, chrony): fake-TLS clients are refused when clocks differ by more than max_clock_skew";
    let c = if offset.abs() <= 10.0 {
        Check::ok(name, detail)
    } else if offset.abs() <= skew / 2.0 {
        Check::new(name, Level::Warn, detail, Some(advice))
    } else {
        Check::new(name, Level::Fail, detail, Some(advice))
    };
    c.timed(t0)
}

fn which(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
}

async fn check_fail2ban() -> Check {
    let name = "fail2ban";
    if !which("fail2ban-client") {
        return Check::new(name, Level::Warn, "fail2ban is not installed", Some("install fail2ban and the vless-mtproxy jail so probers and secret guessers get banned"));
    }
    match command_output("fail2ban-client", &["ping"]).await {
        Some((true, out)) if out.contains("pong") => {}
        _ => return Check::new(name, Level::Warn, "fail2ban is installed but its server does not answer", Some("start it: `systemctl enable --now fail2ban`")),
    }
    let jails = command_output("fail2ban-client", &["status"]).await.map(|(_, o)| o).unwrap_or_default();
    let list = jails.lines().find(|l| l.contains("Jail list")).and_then(|l| l.split_once(':')).map(|(_, v)| v.trim().to_string()).unwrap_or_default();
    if list.split(',').any(|j| j.trim().contains("mtproxy")) {
        Check::ok(name, format!("running; jails: {list}"))
    } else {
        Check::new(name, Level::Warn, format!("running, but no vless-mtproxy jail (jails: {})", if list.is_empty() { "none" } else { &list }), Some("add the jail that matches `handshake failed client=... reason=...` (docs/logging.md)"))
    }
}

async fn check_ufw(cfg: &Config) -> Check {
    let name = "ufw";
    if !which("ufw") {
        return Check::new(name, Level::Warn, "UFW is not installed", Some("make sure a firewall allows the proxy port and little else"));
    }
    let Some((_, out)) = command_output("ufw", &["status"]).await else {
        return Check::new(name, Level::Warn, "`ufw status` did not answer", Some("run doctor as root"));
    };
    if out.contains("Status: inactive") {
        return Check::new(name, Level::Warn, "UFW is inactive", Some("enable it with the proxy port allowed: `ufw allow PORT/tcp && ufw enable`"));
    }
    if !out.contains("Status: active") {
        return Check::new(name, Level::Warn, format!("cannot read UFW state: {}", out.lines().next().unwrap_or("")), Some("run doctor as root"));
    }
    let ports: BTreeSet<u16> = cfg.listen.iter().map(|a| a.port()).chain(std::iter::once(cfg.link_port())).collect();
    let missing: Vec<u16> = ports.iter().copied().filter(|p| !out.lines().any(|l| l.split_whitespace().next().is_some_and(|r| r == p.to_string() || r.starts_with(&format!("{p}/"))) && l.contains("ALLOW"))).collect();
    if missing.is_empty() {
        Check::ok(name, "active; the proxy port is allowed")
    } else {
        Check::new(name, Level::Fail, format!("active, but port {missing:?} is not allowed"), Some("clients cannot connect: `ufw allow PORT/tcp`"))
    }
}

async fn check_listeners(net: &Net, cfg: &Config, reported: Option<&[String]>) -> Vec<Check> {
    let mut out = Vec::new();
    for a in &cfg.listen {
        let name = format!("listen {a}");
        let t0 = Instant::now();
        let target = connectable(*a);
        match tokio::time::timeout(net.timeout, TcpStream::connect(target)).await {
            Ok(Ok(_)) => match reported {
                Some(list) if !list.iter().any(|l| l == &a.to_string()) => out.push(Check::new(
                    name,
                    Level::Warn,
                    "something accepts on this address, but the running proxy does not report it as its own",
                    Some("another program may hold the port: `ss -ltnp`"),
                )),
                _ => out.push(Check::ok(name, "accepting connections").timed(t0)),
            },
            Ok(Err(e)) => out.push(Check::new(name, Level::Fail, format!("nothing accepts: {e}"), Some("start the proxy (`vless-mtproxy status` shows how it runs) and read its log")).timed(t0)),
            Err(_) => out.push(Check::new(name, Level::Fail, "connect timed out", Some("a firewall may drop local connections; check `ss -ltn`")).timed(t0)),
        }
    }
    out
}

fn parse_overrides(items: &[String]) -> anyhow::Result<Vec<(DcKey, Vec<HostPort>)>> {
    let mut out: Vec<(DcKey, Vec<HostPort>)> = Vec::new();
    for item in items {
        let (id, addr) = item.split_once('=').ok_or_else(|| anyhow::anyhow!("--dc-override `{item}`: write ID=HOST:PORT, e.g. 2=127.0.0.1:4443"))?;
        let key = DcKey::parse(id).map_err(anyhow::Error::msg)?;
        let hp = HostPort::parse(addr).map_err(anyhow::Error::msg)?;
        match out.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => v.push(hp),
            None => out.push((key, vec![hp])),
        }
    }
    Ok(out)
}

pub async fn run(config: &Path, args: DoctorArgs) -> anyhow::Result<ExitCode> {
    let (v4, v6) = default_routes();
    let net = Net { v4, v6, timeout: args.timeout };
    let cli_overrides = parse_overrides(&args.dc_overrides)?;
    let mut checks = Vec::new();
    let cfg = match load_config(config) {
        Ok(c) => {
            let enabled = c.users.iter().filter(|u| u.enabled).count();
            checks.push(Check::ok("config", format!("{}: valid, {} users ({enabled} enabled)", config.display(), c.users.len())));
            checks.push(if enabled > 0 {
                Check::ok("users", format!("{enabled} enabled"))
            } else {
                Check::new("users", Level::Warn, "no enabled user: nobody can connect", Some("add one: `vless-mtproxy add-user NAME`"))
            });
            Some(c)
        }
        Err(e) => {
            checks.push(Check::new("config", Level::Fail, e.replace('\n', " "), Some("fix the line named above; the running proxy keeps its previous configuration until then")));
            None
        }
    };
    if !net.any() {
        checks.push(Check::new("network", Level::Skipped, "no default route: checks that need the Internet are skipped", Some("run doctor where the host has its normal network")));
    } else {
        checks.push(Check::ok("network", format!("default route: IPv4 {}, IPv6 {}", if v4 { "yes" } else { "no" }, if v6 { "yes" } else { "no" })));
    }

    let Some(cfg) = cfg else {
        return finish(checks, args.json);
    };

    // The statistics listener (and what it says about listeners).
    let reported = match endpoint(Some(&cfg), &args.endpoint) {
        Ok(ep) => {
            let t0 = Instant::now();
            match fetch_report(&ep, net.timeout).await {
                Ok(r) => {
                    checks.push(Check::ok("statistics", format!("http://{}/stats answers (uptime {} s)", ep.addr, r.uptime_seconds)).timed(t0));
                    Some(r.listen)
                }
                Err(e) => {
                    checks.push(Check::new("statistics", Level::Warn, format!("{e:#}").lines().next().unwrap_or("").to_string(), Some("`stats` and `status` need it; see [stats] in the configuration")).timed(t0));
                    None
                }
            }
        }
        Err(e) => {
            checks.push(Check::new("statistics", Level::Warn, e.to_string(), Some("`stats` and `status` need it")));
            None
        }
    };
    checks.extend(check_listeners(&net, &cfg, reported.as_deref()).await);

    // Network checks, concurrently.
    let mut overrides = cli_overrides.clone();
    for (k, v) in &cfg.dc_overrides {
        if !overrides.iter().any(|(ck, _)| ck == k) {
            overrides.push((*k, v.clone()));
        }
    }
    let net = std::sync::Arc::new(net);
    let cfg = std::sync::Arc::new(cfg);
    let mut set = tokio::task::JoinSet::new();
    for (i, id) in [1i16, 2, 3, 4, 5].into_iter().enumerate() {
        let targets = dc::targets(id, &overrides, cfg.dc_ip);
        let net = net.clone();
        set.spawn(async move { (10 + i, vec![check_dc(&net, id, targets).await]) });
    }
    for (i, d) in cfg.fake_tls_domains().into_iter().take(3).enumerate() {
        let (net, cfg, d) = (net.clone(), cfg.clone(), d.to_string());
        set.spawn(async move { (20 + i, check_cover(&net, &cfg, &d).await) });
    }
    {
        let (net, cfg, ts) = (net.clone(), cfg.clone(), args.time_server.clone());
        set.spawn(async move { (30, vec![check_clock(&net, &cfg, ts.as_deref()).await]) });
    }
    set.spawn(async { (40, vec![check_fail2ban().await]) });
    {
        let cfg = cfg.clone();
        set.spawn(async move { (41, vec![check_ufw(&cfg).await]) });
    }
    // Each check is bounded by its own timeouts; this is the backstop.
    let mut results = Vec::new();
    let deadline = tokio::time::Instant::now() + net.timeout * 8 + Duration::from_secs(5);
    loop {
        match tokio::time::timeout_at(deadline, set.join_next()).await {
            Ok(Some(Ok(r))) => results.push(r),
            Ok(Some(Err(_))) => {}
            Ok(None) => break,
            Err(_) => {
                set.abort_all();
                checks.push(Check::new("doctor", Level::Warn, "some checks did not finish in time and were stopped", None));
                break;
            }
        }
    }
    results.sort_by_key(|(k, _)| *k);
    checks.extend(results.into_iter().flat_map(|(_, c)| c));
    finish(checks, args.json)
}

fn finish(checks: Vec<Check>, json: bool) -> anyhow::Result<ExitCode> {
    let count = |l: Level| checks.iter().filter(|c| c.status == l).count();
    let summary = Summary { ok: count(Level::Ok), warn: count(Level::Warn), fail: count(Level::Fail), skipped: count(Level::Skipped) };
    if json {
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "checks": checks, "summary": summary }))?);
    } else {
        let width = checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
        for c in &checks {
            let tag = match c.status {
                Level::Ok => "ok  ",
                Level::Warn => "WARN",
                Level::Fail => "FAIL",
                Level::Skipped => "skip",
            };
            println!("{tag}  {:<width$}  {}", c.name, c.detail);
            if let Some(a) = &c.advice {
                if matches!(c.status, Level::Warn | Level::Fail) {
                    println!("      {:<width$}  -> {a}", "");
                }
            }
        }
        println!("\n{} ok, {} warn, {} fail, {} skipped", summary.ok, summary.warn, summary.fail, summary.skipped);
    }
    Ok(if summary.fail > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates() {
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"), Some(784111777));
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 PST"), None);
        assert_eq!(parse_http_date("garbage"), None);
    }
}
