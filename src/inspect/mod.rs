//! Operator commands that look at a running proxy: `stats` (numbers, live), `status` (is it
//! running, how), `doctor` (why Telegram would not connect). They read the proxy through its
//! statistics listener (docs/stats.md), so they work the same for systemd, a container or a
//! plain process, and never touch the relay.

pub mod client;
mod doctor;
mod status;
mod table;
pub(crate) mod tlscert;
pub(crate) mod tlsprobe;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use mtproxy_core::config::{self, Config};
use mtproxy_core::stats_listener::Report;

pub use doctor::DoctorArgs;
pub use status::StatusArgs;
pub use table::StatsArgs;

#[derive(clap::Subcommand)]
pub enum MonitorCommand {
    /// Show statistics of the running proxy (per user); `--live` refreshes until Ctrl-C.
    Stats(StatsArgs),
    /// Is the proxy running (systemd, container or process), and how is it doing.
    Status(StatusArgs),
    /// Check what Telegram clients need: config, listeners, DCs, clock, cover domain, firewall.
    Doctor(DoctorArgs),
}

pub fn run(config: &Path, cmd: MonitorCommand) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the runtime")?;
    rt.block_on(async {
        match cmd {
            MonitorCommand::Stats(a) => table::run(config, a).await,
            MonitorCommand::Status(a) => status::run(config, a).await,
            MonitorCommand::Doctor(a) => doctor::run(config, a).await,
        }
    })
}

/// Where the statistics listener is and how to authenticate to it.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub addr: SocketAddr,
    pub token: Option<String>,
    /// `[stats] tls_cert` (PEM): the listener speaks HTTPS, and this is the one certificate the
    /// commands trust (it is the same host).
    pub tls_cert: Option<Vec<u8>>,
}

impl Endpoint {
    /// GET `path` with the token, over TLS when the listener has it.
    pub async fn get(&self, path: &str, timeout: Duration) -> anyhow::Result<client::Response> {
        let mut headers = Vec::new();
        if let Some(t) = &self.token {
            headers.push(("Authorization".to_string(), format!("Bearer {t}")));
        }
        let tls = match &self.tls_cert {
            None => None,
            Some(pem) => Some(mtproxy_core::stats_listener::tls::pinned_connector(pem).map_err(|e| anyhow!("[stats] tls_cert: {e}"))?),
        };
        Ok(client::request_over(self.addr, tls.as_ref(), &self.addr.to_string(), "GET", path, &headers, timeout).await?)
    }
}

/// Options shared by the commands that read the statistics listener.
#[derive(clap::Args, Debug, Clone)]
pub struct EndpointArgs {
    /// Statistics listener to read (default: `[stats] listen` of the configuration).
    #[arg(long, value_name = "HOST:PORT")]
    pub stats_addr: Option<SocketAddr>,
    /// Bearer token for the statistics listener (default: `[stats] token` of the configuration).
    #[arg(long, env = "VLESS_MTPROXY_STATS_TOKEN", hide_env_values = true)]
    pub stats_token: Option<String>,
}

/// A listen address to connect to: the unspecified address means this host (loopback).
pub fn connectable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port()),
        IpAddr::V6(ip) if ip.is_unspecified() => SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), addr.port()),
        _ => addr,
    }
}

/// The endpoint from the arguments, else from the configuration.
pub fn endpoint(cfg: Option<&Config>, args: &EndpointArgs) -> anyhow::Result<Endpoint> {
    let token = args.stats_token.clone().or_else(|| cfg.and_then(|c| c.stats_token.as_ref()).map(|t| t.as_str().to_string()));
    let tls_cert = cfg.and_then(|c| c.stats_tls.as_ref()).map(|t| t.cert_pem.clone());
    if let Some(a) = args.stats_addr {
        return Ok(Endpoint { addr: a, token, tls_cert });
    }
    match cfg {
        Some(c) => match c.stats_listen {
            Some(a) => Ok(Endpoint { addr: connectable(a), token, tls_cert }),
            None => bail!("the statistics listener is off (`[stats] listen = \"off\"`); turn it on, or pass --stats-addr"),
        },
        None => Ok(Endpoint { addr: "127.0.0.1:8888".parse().unwrap(), token, tls_cert }),
    }
}

/// `[stats] listen`, `token` and `tls_cert` read line by line from a file that does not
/// validate, so the commands still find the running proxy (which keeps its previous
/// configuration) after a bad edit. Returns (listen, token, tls_cert) as written.
pub fn stats_lines(path: &Path) -> (Option<String>, Option<String>, Option<String>) {
    let Ok(text) = std::fs::read_to_string(path) else { return (None, None, None) };
    let mut section = String::new();
    let (mut listen, mut token, mut tls_cert) = (None, None, None);
    for line in text.lines() {
        let l = line.split('#').next().unwrap_or("").trim();
        if l.starts_with('[') {
            section = l.trim_matches(|c| c == '[' || c == ']').trim().to_string();
            continue;
        }
        if section != "stats" {
            continue;
        }
        if let Some((k, v)) = l.split_once('=') {
            let v = v.trim().trim_matches('"').to_string();
            match k.trim() {
                "listen" => listen = Some(v),
                "token" => token = Some(v),
                "tls_cert" => tls_cert = Some(v),
                _ => {}
            }
        }
    }
    (listen, token, tls_cert)
}

/// The endpoint when the configuration does not load: what its `[stats]` lines say, else the
/// default.
pub fn fallback_endpoint(path: &Path, args: &EndpointArgs) -> anyhow::Result<Endpoint> {
    let (listen, token, tls_cert) = stats_lines(path);
    let token = args.stats_token.clone().or(token);
    // A relative path is from the configuration's directory, as the proxy reads it.
    let tls_cert = tls_cert.and_then(|c| std::fs::read(path.parent().unwrap_or(Path::new("")).join(c)).ok());
    if let Some(a) = args.stats_addr {
        return Ok(Endpoint { addr: a, token, tls_cert });
    }
    let addr = match listen.as_deref() {
        Some("off") | Some("") => bail!("the statistics listener is off; pass --stats-addr"),
        Some(l) => l.parse().map(connectable).unwrap_or_else(|_| "127.0.0.1:8888".parse().unwrap()),
        None => "127.0.0.1:8888".parse().unwrap(),
    };
    Ok(Endpoint { addr, token, tls_cert })
}

/// Load the configuration if it can be; the error text when not.
pub fn load_config(path: &Path) -> Result<Config, String> {
    config::load(path).map_err(|e| e.to_string())
}

/// GET `/stats.json` from the running proxy.
pub async fn fetch_report(ep: &Endpoint, timeout: Duration) -> anyhow::Result<Report> {
    let r = ep
        .get("/stats.json", timeout)
        .await
        .map_err(|e| anyhow!("{e}; is the proxy running (`vless-mtproxy status`) with its statistics listener on {}?", ep.addr))?;
    match r.status {
        200 => serde_json::from_slice(&r.body).with_context(|| format!("{} sent statistics this version cannot read", ep.addr)),
        401 => bail!("{} wants a bearer token: set `[stats] token` in the configuration or pass --stats-token", ep.addr),
        s => bail!("{} answered HTTP {s} to /stats.json", ep.addr),
    }
}

/// "3d 04h", "2h 05m", "4m 10s", "12s".
pub fn human_duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86400, secs % 86400 / 3600, secs % 3600 / 60, secs % 60);
    if d > 0 {
        format!("{d}d {h:02}h")
    } else if h > 0 {
        format!("{h}h {m:02}m")
    } else if m > 0 {
        format!("{m}m {s:02}s")
    } else {
        format!("{s}s")
    }
}

/// "999 B", "1.5 KiB", "12.0 MiB", ...
pub fn human_bytes(n: f64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < UNITS.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{} B", v.round() as u64)
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn humanized() {
        assert_eq!(human_duration(59), "59s");
        assert_eq!(human_duration(3 * 3600 + 5 * 60), "3h 05m");
        assert_eq!(human_duration(2 * 86400 + 7200), "2d 02h");
        assert_eq!(human_bytes(999.0), "999 B");
        assert_eq!(human_bytes(1536.0), "1.5 KiB");
        assert_eq!(human_bytes(3.0 * 1024.0 * 1024.0), "3.0 MiB");
        assert_eq!(connectable("0.0.0.0:8888".parse().unwrap()), "127.0.0.1:8888".parse().unwrap());
        assert_eq!(connectable("[::]:8888".parse().unwrap()), "[::1]:8888".parse().unwrap());
    }

    #[test]
    fn stats_lines_of_a_broken_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "[server]\nlisten = [\"0.0.0.0:1\"]\n[stats]\nlisten = \"0.0.0.0:9999\" # comment\ntoken = \"abc\"\n[bogus\n").unwrap();
        assert_eq!(stats_lines(&p), (Some("0.0.0.0:9999".into()), Some("abc".into()), None));
        let none = EndpointArgs { stats_addr: None, stats_token: None };
        let ep = fallback_endpoint(&p, &none).unwrap();
        assert_eq!((ep.addr, ep.token.as_deref()), ("127.0.0.1:9999".parse().unwrap(), Some("abc")));
    }
}
