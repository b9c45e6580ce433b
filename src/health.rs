//! `vless-mtproxy health`: exit 0 when the proxy accepts connections, 1 otherwise. It is the
//! container's HEALTHCHECK (a `FROM scratch` image has no curl) and setup's last step.
//!
//! It connects to the proxy's own listen port(s) from the configuration (an unspecified
//! address is tried on loopback) and succeeds when one accepts a TCP connection. It only
//! connects and closes: no handshake bytes are sent, so the proxy counts a silent client.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use mtproxy_core::config;

#[derive(clap::Args)]
pub struct HealthArgs {
    /// How long each connection attempt may take.
    #[arg(long, default_value = "3s", value_parser = |s: &str| config::parse_duration(s))]
    timeout: Duration,
}

fn target(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => SocketAddr::new(Ipv4Addr::LOCALHOST.into(), addr.port()),
        IpAddr::V6(ip) if ip.is_unspecified() => SocketAddr::new(Ipv6Addr::LOCALHOST.into(), addr.port()),
        _ => addr,
    }
}

pub fn run(config_path: &Path, args: HealthArgs) -> anyhow::Result<ExitCode> {
    let cfg = config::load(config_path).with_context(|| "health: the configuration cannot be read")?;
    let mut errors = Vec::new();
    for addr in cfg.listen.iter().copied().map(target) {
        match TcpStream::connect_timeout(&addr, args.timeout) {
            Ok(_) => {
                println!("ok: the proxy accepts connections on {addr}");
                return Ok(ExitCode::SUCCESS);
            }
            Err(e) => errors.push(format!("{addr}: {e}")),
        }
    }
    eprintln!("unhealthy: no listen address accepts connections ({})", errors.join("; "));
    Ok(ExitCode::FAILURE)
}
