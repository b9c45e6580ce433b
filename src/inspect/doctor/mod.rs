//! `vless-mtproxy doctor [--json]`: the checks an admin runs when "Telegram won't connect".
//!
//! Each check ends `ok`, `warn`, `fail` or `skipped` with one line of detail and, unless ok, one
//! line of advice. Every network step has its own timeout (`--timeout`, default 3 s) and checks
//! run concurrently, so the whole run is bounded; a check whose target needs a route this host
//! does not have (no default route for that address family, or "network unreachable") says
//! `skipped` instead of waiting. Local checks (config, listeners, statistics listener, fail2ban,
//! UFW) need no network.
//!
//! With `[upstream]` servers configured, every DC is also tried through each of them
//! (`upstream`), and a direct DC check that fails is only a warning for a DC the proxy reaches
//! through a server.
//!
//! Exit code: 1 when any check failed, else 0.

mod cover;
mod host;
mod net;
mod upstream;

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use mtproxy_core::config;
use mtproxy_core::dc;
use serde::Serialize;

use self::host::{check_fail2ban, check_listeners, check_ufw};
use self::net::{check_clock, check_cover, check_dc, default_routes, Net};
use super::{endpoint, fetch_report, load_config, EndpointArgs};

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
    /// The data folder setup installed into: a cover cache path the container sees
    /// (/var/lib/vless-mtproxy/...) is read from here on the host.
    #[arg(long, default_value = crate::setup::options::DEFAULT_DATA_DIR)]
    pub data_dir: std::path::PathBuf,
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
    pub(crate) fn new(name: impl Into<String>, status: Level, detail: impl Into<String>, advice: Option<&str>) -> Check {
        Check { name: name.into(), status, detail: detail.into(), advice: advice.map(str::to_string), millis: None }
    }
    pub(crate) fn ok(name: impl Into<String>, detail: impl Into<String>) -> Check {
        Check::new(name, Level::Ok, detail, None)
    }
    pub(crate) fn timed(mut self, t0: Instant) -> Check {
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

pub async fn run(config: &Path, args: DoctorArgs) -> anyhow::Result<ExitCode> {
    let (v4, v6) = default_routes();
    let net = Net { v4, v6, timeout: args.timeout };
    let cli_overrides = config::parse_dc_overrides(&args.dc_overrides).map_err(anyhow::Error::msg)?;
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
            checks.push(Check::new(
                "config",
                Level::Fail,
                e.replace('\n', " "),
                Some("fix the line named above; the running proxy keeps its previous configuration until then"),
            ));
            None
        }
    };
    if !net.any() {
        checks.push(Check::new(
            "network",
            Level::Skipped,
            "no default route: checks that need the Internet are skipped",
            Some("run doctor where the host has its normal network"),
        ));
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
                    checks.push(
                        Check::new(
                            "statistics",
                            Level::Warn,
                            format!("{e:#}").lines().next().unwrap_or("").to_string(),
                            Some("`stats` and `status` need it; see [stats] in the configuration"),
                        )
                        .timed(t0),
                    );
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
        let (net, cfg) = (net.clone(), cfg.clone());
        set.spawn(async move {
            let mut c = check_dc(&net, id, targets).await;
            if let (Level::Fail, Some(s)) = (c.status, upstream::routed(&cfg, id)) {
                c.status = Level::Warn;
                c.advice = Some(format!("the proxy reaches this DC through upstream `{}`: see its check", s.name));
            }
            (10 + i, vec![c])
        });
    }
    for (j, server) in cfg.upstream.servers.iter().enumerate() {
        for (i, id) in [1i16, 2, 3, 4, 5].into_iter().enumerate() {
            let (net, cfg, server, overrides) = (net.clone(), cfg.clone(), server.clone(), overrides.clone());
            set.spawn(async move { (100 + j * 10 + i, vec![upstream::check(&net, &cfg, &server, id, &overrides).await]) });
        }
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
    // Local, and last: how fresh the flights the proxy learned from its covers are.
    checks.extend(
        cfg.fake_tls_domains().into_iter().take(3).map(|d| cover::check_learned(&cfg, config, &args.data_dir, d, crate::inspect::tlscert::now_unix() as u64)),
    );
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
