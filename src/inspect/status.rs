//! `vless-mtproxy status [--json]`: is the proxy running, under what (systemd unit
//! `vless-mtproxy`, container `vless_mtproxy` in Docker or Podman, or a plain process), and the
//! essentials from its statistics listener. The JSON form is a stable interface (docs/stats.md,
//! "status JSON") that host scripts embed. Exit code: 0 running, 3 not running (as LSB status).

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use serde::Serialize;

use mtproxy_core::stats_listener::report::MiddleReport;

use super::{endpoint, fetch_report, human_duration, load_config, EndpointArgs};

#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// Print JSON (fields in docs/stats.md).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub endpoint: EndpointArgs,
}

pub const UNIT: &str = "vless-mtproxy";
pub const CONTAINER: &str = "vless_mtproxy";
const CMD_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, Serialize)]
pub struct Service {
    pub running: bool,
    /// "systemd", "container", "process", "unknown" (stats answer, manager not found), "none".
    pub manager: String,
    pub detail: String,
    pub pid: Option<u32>,
}

#[derive(Debug, Serialize)]
pub struct LastReloadOut {
    pub at: u64,
    pub ok: bool,
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Status {
    pub service: Service,
    /// Version of this CLI.
    pub version: String,
    /// Version the running proxy reports (null when it cannot be reached).
    pub proxy_version: Option<String>,
    pub config_path: String,
    pub config_valid: bool,
    pub config_error: Option<String>,
    /// Addresses the running proxy accepts on (from the proxy), else from the configuration.
    pub listen: Vec<String>,
    /// The port put in links.
    pub port: Option<u16>,
    pub users_enabled: Option<usize>,
    pub users_disabled: Option<usize>,
    pub active_connections: Option<u64>,
    pub uptime_seconds: Option<u64>,
    /// "direct" or "middle-proxy".
    pub mode: Option<String>,
    /// The middle-proxy counters (the `middle` section of `/stats.json`); null in direct mode
    /// or when the proxy cannot be reached.
    pub middle: Option<MiddleReport>,
    pub last_reload: Option<LastReloadOut>,
    pub stats_endpoint: String,
    pub stats_reachable: bool,
    pub stats_error: Option<String>,
}

/// Run a command with a deadline; stdout when it ran (whatever its exit code), None otherwise.
pub async fn command_output(program: &str, args: &[&str]) -> Option<(bool, String)> {
    let mut c = tokio::process::Command::new(program);
    c.args(args).stdin(std::process::Stdio::null()).kill_on_drop(true);
    let out = tokio::time::timeout(CMD_TIMEOUT, c.output()).await.ok()?.ok()?;
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    Some((out.status.success(), text))
}

async fn systemd() -> Option<Service> {
    let (_, state) = command_output("systemctl", &["is-active", UNIT]).await?;
    let state = state.lines().next().unwrap_or("").trim().to_string();
    if state != "active" && state != "activating" && state != "reloading" {
        return None;
    }
    let pid =
        command_output("systemctl", &["show", "-p", "MainPID", "--value", UNIT]).await.and_then(|(_, t)| t.trim().parse::<u32>().ok()).filter(|p| *p != 0);
    Some(Service { running: true, manager: "systemd".into(), detail: format!("unit {UNIT}.service is {state}"), pid })
}

async fn container() -> Option<Service> {
    for engine in ["docker", "podman"] {
        let filter = format!("name=^{CONTAINER}$");
        let Some((true, out)) = command_output(engine, &["ps", "--filter", &filter, "--format", "{{.Status}}"]).await else {
            continue;
        };
        let st = out.lines().next().unwrap_or("").trim().to_string();
        if st.starts_with("Up") {
            return Some(Service { running: true, manager: "container".into(), detail: format!("{engine} container {CONTAINER}: {st}"), pid: None });
        }
    }
    None
}

fn cmdline(pid: u32) -> Option<Vec<String>> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(raw.split(|b| *b == 0).filter(|a| !a.is_empty()).map(|a| String::from_utf8_lossy(a).into_owned()).collect())
}

fn is_serve(args: &[String]) -> bool {
    let Some(argv0) = args.first() else { return false };
    argv0.rsplit('/').next() == Some("vless-mtproxy") && args.iter().skip(1).any(|a| a == "serve")
}

fn process_service(pid: u32, args: &[String]) -> Service {
    Service { running: true, manager: "process".into(), detail: format!("process {pid}: {}", args.join(" ")), pid: Some(pid) }
}

/// The configuration file a `serve` process uses, as an absolute path: its `--config`/`-c`
/// argument, else its `VLESS_MTPROXY_CONFIG`, else the default name, relative to its cwd.
fn config_of(pid: u32, args: &[String]) -> Option<std::path::PathBuf> {
    let mut named = None;
    for (i, a) in args.iter().enumerate() {
        if let Some(v) = a.strip_prefix("--config=") {
            named = Some(v.to_string());
        } else if a == "--config" || a == "-c" {
            named = args.get(i + 1).cloned();
        }
    }
    let named = named.or_else(|| {
        let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
        env.split(|b| *b == 0).find_map(|kv| kv.strip_prefix(b"VLESS_MTPROXY_CONFIG=").map(|v| String::from_utf8_lossy(v).into_owned()))
    });
    let path = std::path::PathBuf::from(named.unwrap_or_else(|| crate::DEFAULT_CONFIG.to_string()));
    let abs = if path.is_absolute() { path } else { std::fs::read_link(format!("/proc/{pid}/cwd")).ok()?.join(path) };
    Some(std::fs::canonicalize(&abs).unwrap_or(abs))
}

/// The `vless-mtproxy serve` process of this configuration (not this process): `pid` when
/// given (the one the statistics listener named), else one whose configuration file is
/// `config`. Other serve processes are listed in `others`.
pub fn process(pid: Option<u32>, config: &Path, others: &mut Vec<u32>) -> Option<Service> {
    if let Some(p) = pid {
        if let Some(args) = cmdline(p).filter(|a| is_serve(a)) {
            return Some(process_service(p, &args));
        }
    }
    let me = std::process::id();
    let ours = std::fs::canonicalize(config).ok()?;
    let mut found = None;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        if pid == me {
            continue;
        }
        let Some(args) = cmdline(pid).filter(|a| is_serve(a)) else { continue };
        if found.is_none() && config_of(pid, &args).as_deref() == Some(ours.as_path()) {
            found = Some(process_service(pid, &args));
        } else {
            others.push(pid);
        }
    }
    found
}

pub async fn run(config: &Path, args: StatusArgs) -> anyhow::Result<std::process::ExitCode> {
    let cfg = load_config(config);
    let ep = match &cfg {
        Ok(c) => endpoint(Some(c), &args.endpoint),
        Err(_) => super::fallback_endpoint(config, &args.endpoint),
    };
    let report = match &ep {
        Ok(ep) => fetch_report(ep, Duration::from_secs(3)).await.map_err(|e| format!("{e:#}")),
        Err(e) => Err(format!("{e:#}")),
    };
    let mut service = match systemd().await {
        Some(s) => s,
        None => match container().await {
            Some(s) => s,
            None => {
                let mut others = Vec::new();
                process(report.as_ref().ok().map(|r| r.pid), config, &mut others).unwrap_or_else(|| {
                    let mut detail = format!("no systemd unit {UNIT}, container {CONTAINER} or process serving {}", config.display());
                    if !others.is_empty() {
                        detail.push_str(&format!(" (other vless-mtproxy serve processes: {others:?})"));
                    }
                    Service { running: false, manager: "none".into(), detail, pid: None }
                })
            }
        },
    };
    if let Ok(r) = &report {
        if !service.running {
            service = Service { running: true, manager: "unknown".into(), detail: "the statistics listener answers".into(), pid: Some(r.pid) };
        } else if service.pid.is_none() && service.manager != "container" {
            service.pid = Some(r.pid);
        }
    }
    let c = cfg.as_ref().ok();
    let r = report.as_ref().ok();
    let st = Status {
        version: env!("CARGO_PKG_VERSION").to_string(),
        proxy_version: r.map(|r| r.version.clone()),
        config_path: config.display().to_string(),
        config_valid: cfg.is_ok(),
        config_error: cfg.as_ref().err().cloned(),
        listen: match r {
            Some(r) => r.listen.clone(),
            None => c.map(|c| c.listen.iter().map(|a| a.to_string()).collect()).unwrap_or_default(),
        },
        port: c.map(|c| c.link_port()),
        users_enabled: r.map(|r| r.config.users_enabled).or_else(|| c.map(|c| c.users.iter().filter(|u| u.enabled).count())),
        users_disabled: r.map(|r| r.config.users_disabled).or_else(|| c.map(|c| c.users.iter().filter(|u| !u.enabled).count())),
        active_connections: r.map(|r| r.connections.active),
        uptime_seconds: r.map(|r| r.uptime_seconds),
        mode: r.map(|r| r.mode.clone()).or_else(|| c.map(|c| if c.ad_tag.is_some() { "middle-proxy" } else { "direct" }.to_string())),
        middle: r.and_then(|r| r.middle.clone()),
        last_reload: r.and_then(|r| r.reloads.last.as_ref()).map(|l| LastReloadOut { at: l.at, ok: l.ok, error: l.error.clone() }),
        stats_endpoint: ep.as_ref().map(|e| e.addr.to_string()).unwrap_or_else(|_| "-".into()),
        stats_reachable: r.is_some(),
        stats_error: report.as_ref().err().cloned(),
        service,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&st)?);
    } else {
        print!("{}", render(&st));
    }
    Ok(if st.service.running { ExitCode::SUCCESS } else { ExitCode::from(3) })
}

/// One line on the middle-proxy path: sessions, connections, failures, configuration age.
fn middle_line(m: &MiddleReport, now: u64) -> String {
    let count = |n: u64, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    let mut o = format!(
        "{} now ({} total), {} to middle-ends",
        count(m.sessions_active, "session", "sessions"),
        m.sessions_total,
        count(m.connections_active, "connection", "connections")
    );
    if m.connect_failures > 0 {
        o.push_str(&format!(", {} refused (no middle-end)", count(m.connect_failures, "client", "clients")));
    }
    match m.last_refresh_ok_at {
        Some(at) => o.push_str(&format!("; configuration refreshed {} ago", human_duration(now.saturating_sub(at)))),
        None => o.push_str("; configuration not refreshed since start"),
    }
    if m.refreshes_failed > 0 {
        o.push_str(&format!(" ({} failed)", count(m.refreshes_failed, "refresh", "refreshes")));
    }
    o
}

fn render(s: &Status) -> String {
    let mut o = String::new();
    let mut line = |k: &str, v: String| o.push_str(&format!("{k:<13}{v}\n"));
    line(
        "service",
        format!(
            "{} ({}){}",
            if s.service.running { "running" } else { "NOT running" },
            s.service.detail,
            s.service.pid.map(|p| format!(", pid {p}")).unwrap_or_default()
        ),
    );
    line(
        "version",
        match &s.proxy_version {
            Some(v) if *v != s.version => format!("{v} (this CLI: {})", s.version),
            Some(v) => v.clone(),
            None => format!("{} (CLI; the proxy did not answer)", s.version),
        },
    );
    line(
        "config",
        match &s.config_error {
            None => format!("{} (valid)", s.config_path),
            Some(e) => format!("{} INVALID: {}", s.config_path, e.lines().next().unwrap_or("")),
        },
    );
    line("listen", if s.listen.is_empty() { "-".into() } else { s.listen.join(", ") });
    line("link port", s.port.map(|p| p.to_string()).unwrap_or_else(|| "-".into()));
    line(
        "users",
        match (s.users_enabled, s.users_disabled) {
            (Some(e), Some(d)) => format!("{e} enabled, {d} disabled"),
            _ => "-".into(),
        },
    );
    line("mode", s.mode.clone().unwrap_or_else(|| "-".into()));
    if let Some(m) = &s.middle {
        line("middle-end", middle_line(m, mtproxy_core::stats::unix_now()));
    }
    line("connections", s.active_connections.map(|n| format!("{n} active")).unwrap_or_else(|| "-".into()));
    line("uptime", s.uptime_seconds.map(human_duration).unwrap_or_else(|| "-".into()));
    line(
        "last reload",
        match &s.last_reload {
            None => "none since start".into(),
            Some(l) if l.ok => format!("ok ({} ago)", human_duration(mtproxy_core::stats::unix_now().saturating_sub(l.at))),
            Some(l) => format!(
                "REFUSED ({} ago): {}",
                human_duration(mtproxy_core::stats::unix_now().saturating_sub(l.at)),
                l.error.as_deref().unwrap_or("").lines().next().unwrap_or("")
            ),
        },
    );
    line(
        "statistics",
        if s.stats_reachable { format!("http://{}/stats", s.stats_endpoint) } else { format!("unreachable: {}", s.stats_error.as_deref().unwrap_or("")) },
    );
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> MiddleReport {
        MiddleReport {
            config_generation: 2,
            clusters_v4: 5,
            clusters_v6: 0,
            refreshes_ok: 3,
            refreshes_failed: 0,
            last_refresh_ok_at: Some(1000),
            sessions_active: 1,
            sessions_total: 12,
            connect_failures: 0,
            packets_dropped: 0,
            connections_active: 2,
            connections_opened: 2,
            connection_open_failures: 0,
            frames_from_middle_end: 10,
            frames_to_middle_end: 11,
            clusters: Vec::new(),
        }
    }

    #[test]
    fn middle_line_says_what_matters() {
        assert_eq!(middle_line(&report(), 1250), "1 session now (12 total), 2 connections to middle-ends; configuration refreshed 4m 10s ago");
        let bad = MiddleReport { connect_failures: 3, refreshes_failed: 1, last_refresh_ok_at: None, sessions_active: 0, connections_active: 1, ..report() };
        assert_eq!(middle_line(&bad, 1250), "0 sessions now (12 total), 1 connection to middle-ends, 3 clients refused (no middle-end); configuration not refreshed since start (1 refresh failed)");
        let worse = MiddleReport { refreshes_failed: 2, ..report() };
        assert!(middle_line(&worse, 1250).ends_with("(2 refreshes failed)"));
    }
}
