//! The checks of this host itself: are the listen addresses accepting, and the state of
//! fail2ban and UFW (read through their own CLIs, each bounded by a timeout).

use std::collections::BTreeSet;
use std::time::Instant;

use mtproxy_core::config::Config;
use tokio::net::TcpStream;

use super::net::Net;
use super::{Check, Level};
use crate::inspect::connectable;
use crate::inspect::status::command_output;

fn which(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
}

pub async fn check_fail2ban() -> Check {
    let name = "fail2ban";
    if !which("fail2ban-client") {
        return Check::new(
            name,
            Level::Warn,
            "fail2ban is not installed",
            Some("install fail2ban and the vless-mtproxy jail so probers and secret guessers get banned"),
        );
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
        Check::new(
            name,
            Level::Warn,
            format!("running, but no vless-mtproxy jail (jails: {})", if list.is_empty() { "none" } else { &list }),
            Some("add the jail that matches `handshake failed client=... reason=...` (docs/logging.md)"),
        )
    }
}

pub async fn check_ufw(cfg: &Config) -> Check {
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
    let missing: Vec<u16> = ports
        .iter()
        .copied()
        .filter(|p| {
            !out.lines().any(|l| l.split_whitespace().next().is_some_and(|r| r == p.to_string() || r.starts_with(&format!("{p}/"))) && l.contains("ALLOW"))
        })
        .collect();
    if missing.is_empty() {
        Check::ok(name, "active; the proxy port is allowed")
    } else {
        Check::new(name, Level::Fail, format!("active, but port {missing:?} is not allowed"), Some("clients cannot connect: `ufw allow PORT/tcp`"))
    }
}

pub async fn check_listeners(net: &Net, cfg: &Config, reported: Option<&[String]>) -> Vec<Check> {
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
            Ok(Err(e)) => out.push(
                Check::new(
                    name,
                    Level::Fail,
                    format!("nothing accepts: {e}"),
                    Some("start the proxy (`vless-mtproxy status` shows how it runs) and read its log"),
                )
                .timed(t0),
            ),
            Err(_) => out.push(Check::new(name, Level::Fail, "connect timed out", Some("a firewall may drop local connections; check `ss -ltn`")).timed(t0)),
        }
    }
    out
}
