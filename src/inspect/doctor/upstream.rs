//! `doctor` for `[upstream]`: every DC (1-5) through every configured server, with the time
//! the connect took (proxy connect + SOCKS5 / CONNECT exchange) and whether the server is the
//! one the proxy would use for that DC (the most specific `dcs` match; `pool.rs`).
//!
//! The server is usually on loopback (Xray's SOCKS inbound), so no route check applies to it;
//! each attempt is bounded by `--timeout`. Nothing is sent after the exchange: the check proves
//! the path to the DC's TCP port, as the direct `dc N` checks do.

use std::time::Instant;

use mtproxy_core::config::{Config, DcKey, HostPort, UpstreamServer};
use mtproxy_core::dc;
use mtproxy_core::upstream::{self, LegError};

use super::{Check, Level};
use crate::inspect::doctor::net::Net;

/// Whether some server names `dc`, i.e. the proxy does not connect to it directly.
pub fn routed(cfg: &Config, dc: i16) -> Option<&UpstreamServer> {
    let best = cfg.upstream.servers.iter().map(|s| s.dcs.rank(dc)).max().unwrap_or(0);
    (best > 0).then(|| cfg.upstream.servers.iter().find(|s| s.dcs.rank(dc) == best)).flatten()
}

fn used_for(cfg: &Config, server: &UpstreamServer, dc: i16) -> bool {
    let best = cfg.upstream.servers.iter().map(|s| s.dcs.rank(dc)).max().unwrap_or(0);
    best > 0 && server.dcs.rank(dc) == best
}

/// One check per (server, DC).
pub async fn check(net: &Net, cfg: &Config, server: &UpstreamServer, dc_id: i16, overrides: &[(DcKey, Vec<HostPort>)]) -> Check {
    let via = match server.kind.address() {
        Some(a) => format!("{} {a}", server.kind.type_name()),
        None => "direct".to_string(),
    };
    let name = format!("upstream {} dc {dc_id}", server.name);
    let role = if used_for(cfg, server, dc_id) { "used for this DC" } else { "not used for this DC (another entry names it more exactly)" };
    let t0 = Instant::now();
    let mut errors: Vec<String> = Vec::new();
    for target in dc::targets(dc_id, overrides, cfg.dc_ip) {
        let started = Instant::now();
        match upstream::open(&server.kind, &target, net.timeout).await {
            Ok(_) => {
                let ms = started.elapsed().as_secs_f64() * 1000.0;
                return Check::ok(name, format!("{target} via {via} connected in {ms:.1} ms; {role}")).timed(t0);
            }
            Err(e) => {
                let own = e.server_at_fault();
                errors.push(format!("{target}: {e}"));
                if own || matches!(e, LegError::Timeout) {
                    break;
                }
            }
        }
    }
    let level = if used_for(cfg, server, dc_id) { Level::Fail } else { Level::Warn };
    Check::new(
        name,
        level,
        format!("via {via}: {}", errors.join("; ")),
        Some("check that the upstream server runs and accepts this host (address, credentials), and that it can reach Telegram"),
    )
    .timed(t0)
}
