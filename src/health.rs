//! `vless-mtproxy health`: exit 0 when the proxy is healthy, 1 otherwise, with one line that
//! says which check ran and, on failure, why. It is the container's HEALTHCHECK (a
//! `FROM scratch` image has no curl) and setup's last step.
//!
//! Two checks, chosen by the configuration:
//! * statistics listener on (`[stats] listen`, default `127.0.0.1:8888`): `GET /health` there
//!   with the inspect commands' HTTP client ([`crate::inspect::client`]); healthy on `200`. The
//!   proxy answers `200` only while a client listener accepts (docs/stats.md), so this asks the
//!   process itself, and a probe is not counted as a client connection.
//! * statistics listener off: a TCP connect to the client listen address(es), which only shows
//!   that something accepts there (the proxy counts it as a connection closed early).
//!
//! An unspecified address (`0.0.0.0`, `::`) is tried on loopback. When the file does not
//! validate (a bad edit, which the running proxy refuses while it keeps its previous
//! configuration) the `[stats]` lines are read as written, so a healthy proxy stays healthy.

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use mtproxy_core::config;

use crate::inspect::{self, Endpoint, EndpointArgs};

#[derive(clap::Args)]
pub struct HealthArgs {
    /// How long the check may take (the HTTP request, or each connection attempt).
    #[arg(long, default_value = "3s", value_parser = |s: &str| config::parse_duration(s))]
    timeout: Duration,
}

/// Which check applies to a configuration.
enum Check {
    Http(Endpoint),
    Tcp(Vec<SocketAddr>),
}

fn choose(config_path: &Path) -> anyhow::Result<Check> {
    let none = EndpointArgs { stats_addr: None, stats_token: None };
    match config::load(config_path) {
        Ok(cfg) => match cfg.stats_listen {
            Some(_) => Ok(Check::Http(inspect::endpoint(Some(&cfg), &none)?)),
            None => Ok(Check::Tcp(cfg.listen.iter().copied().map(inspect::connectable).collect())),
        },
        Err(e) => {
            // The running proxy keeps its previous configuration; find its listener from the
            // lines as written. Without one there is nothing to check.
            let ep = inspect::fallback_endpoint(config_path, &none).map_err(|_| e).with_context(|| "health: the configuration cannot be read")?;
            eprintln!("warning: the configuration does not validate; checking the statistics listener its [stats] lines name ({})", ep.addr);
            Ok(Check::Http(ep))
        }
    }
}

/// The first line of a response body, short and printable.
fn first_line(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let line = text.lines().next().unwrap_or("").trim();
    line.chars().filter(|c| !c.is_control()).take(120).collect()
}

/// `GET /health`; `Ok` with the success line, `Err` with the reason.
fn http_check(ep: &Endpoint, timeout: Duration) -> Result<String, String> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| format!("cannot start the runtime: {e}"))?;
    let addr = ep.addr;
    let r = rt.block_on(ep.get("/health", timeout)).map_err(|e| format!("GET /health on the statistics listener: {e:#}"))?;
    match r.status {
        200 => Ok(format!("ok: GET /health on the statistics listener {addr} answered 200")),
        s => {
            let why = first_line(&r.body);
            Err(format!("GET /health on the statistics listener {addr} answered HTTP {s}{}", if why.is_empty() { String::new() } else { format!(": {why}") }))
        }
    }
}

fn tcp_check(addrs: &[SocketAddr], timeout: Duration) -> Result<String, String> {
    let mut errors = Vec::new();
    for addr in addrs {
        match TcpStream::connect_timeout(addr, timeout) {
            Ok(_) => return Ok(format!("ok: the proxy accepts connections on {addr} (TCP connect check: the statistics listener is off)")),
            Err(e) => errors.push(format!("{addr}: {e}")),
        }
    }
    Err(format!("TCP connect check (the statistics listener is off): no listen address accepts connections ({})", errors.join("; ")))
}

pub fn run(config_path: &Path, args: HealthArgs) -> anyhow::Result<ExitCode> {
    let result = match choose(config_path)? {
        Check::Http(ep) => http_check(&ep, args.timeout),
        Check::Tcp(addrs) => tcp_check(&addrs, args.timeout),
    };
    match result {
        Ok(line) => {
            println!("{line}");
            Ok(ExitCode::SUCCESS)
        }
        Err(why) => {
            eprintln!("unhealthy: {why}");
            Ok(ExitCode::FAILURE)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_reason_is_one_short_line() {
        assert_eq!(first_line(b"not ready: no client listener is accepting\nmore\n"), "not ready: no client listener is accepting");
        assert_eq!(first_line(b""), "");
        assert_eq!(first_line(&[b'x'; 500]).len(), 120);
        assert_eq!(first_line(b"a\x1b[31mb"), "a[31mb");
    }
}
