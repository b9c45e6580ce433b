//! Fronting: a connection that failed the handshake is spliced, byte for byte, to a real web
//! site (docs/protocol.md §4.9), so an active prober sees that site and nothing of a proxy.
//!
//! What the client already sent goes first, then both directions are relayed unchanged until
//! either side closes, the byte cap or the time cap is reached. A mask host that resolves to
//! the very address the client reached us on is refused (it would loop back into us).
//! Without a configured mask host, a ClientHello is fronted to the fake-TLS domain it names
//! (when that is one of ours), so each cover domain's probes see that domain's site.
//! Without fronting (disabled, or no mask host) the connection is held silently until the
//! client gives up or the handshake timeout passes, as the official proxy's "skip mode" does.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use mtproxy_proto::faketls::{self, HelloRead};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::{Config, HostPort};
use crate::events::{log_handshake_failure, FailReason};
use crate::handshake::HandshakeState;
use crate::relay::{pump, Activity, Identity};
use crate::stats::{ByteCounter, Stats};

/// The mask host for this configuration: the configured one, else the first fake-TLS domain
/// on 443.
pub fn mask_host(config: &Config) -> Option<HostPort> {
    if !config.fronting.enabled {
        return None;
    }
    config.fronting.mask_host.clone().or_else(|| config.fake_tls_domains().first().map(|d| HostPort { host: d.to_string(), port: 443 }))
}

/// Where a probe naming `domain` ends up, so where that domain's flight is learned
/// (`crate::cover`): the configured mask host, else the domain itself on 443.
pub fn cover_target(config: &Config, domain: &str) -> HostPort {
    config.fronting.mask_host.clone().unwrap_or_else(|| HostPort { host: domain.to_string(), port: 443 })
}

/// The mask host for a connection that opened with `consumed`: without a configured mask host,
/// a ClientHello naming one of the fake-TLS domains goes to that domain, so a prober asking for
/// domain B never gets domain A's site.
pub fn mask_host_for(config: &Config, consumed: &[u8]) -> Option<HostPort> {
    if config.fronting.enabled && config.fronting.mask_host.is_none() {
        if let Some(sni) = hello_sni(consumed) {
            if config.fake_tls_domains().contains(&sni.as_str()) {
                return Some(cover_target(config, &sni));
            }
        }
    }
    mask_host(config)
}

fn hello_sni(consumed: &[u8]) -> Option<String> {
    match faketls::read_client_hello(consumed).ok()? {
        HelloRead::Complete { canonical, .. } => faketls::parse_hello_fields(&canonical).ok()?.sni.map(|s| s.to_ascii_lowercase()),
        HelloRead::Incomplete => None,
    }
}

/// True when `mask` would connect back to this proxy.
pub fn is_loop(mask: SocketAddr, local: SocketAddr, listen: &[SocketAddr]) -> bool {
    let norm = |a: SocketAddr| SocketAddr::new(a.ip().to_canonical(), a.port());
    let mask = norm(mask);
    if mask == norm(local) {
        return true;
    }
    listen.iter().any(|l| {
        l.port() == mask.port() && (norm(*l).ip() == mask.ip() || (l.ip().is_unspecified() && (mask.ip().is_loopback() || mask.ip().is_unspecified())))
    })
}

/// The failure branch of the data path (docs/design.md "data path": a failed PROXY header or
/// handshake): logged and counted, then fronted with what was read, unless the server already
/// answered (a ServerHello was sent).
pub async fn after_failure(client: TcpStream, peer: SocketAddr, st: HandshakeState, reason: FailReason, config: &Config, stats: &Arc<Stats>) {
    log_handshake_failure(peer, reason);
    stats.handshake_failed(reason);
    if !st.replied {
        front(client, st.consumed, config, stats.clone(), config.timeouts.handshake).await;
    }
}

/// Hand the connection to the mask host. Returns when the fronted session ends.
pub async fn front(client: TcpStream, consumed: Vec<u8>, config: &Config, stats: Arc<Stats>, hold: Duration) {
    let Some(mask) = mask_host_for(config, &consumed) else {
        return hold_silently(client, hold).await;
    };
    let local = client.local_addr().ok();
    let addrs: Vec<SocketAddr> = match tokio::time::timeout(config.timeouts.connect, tokio::net::lookup_host((mask.host.as_str(), mask.port))).await {
        Ok(Ok(a)) => a.collect(),
        _ => {
            tracing::debug!(%mask, "mask host does not resolve");
            return hold_silently(client, hold).await;
        }
    };
    let mut upstream = None;
    for a in addrs {
        if local.is_some_and(|l| is_loop(a, l, &config.listen)) {
            tracing::warn!(%mask, "mask host points back at this proxy; not fronting");
            continue;
        }
        if let Ok(Ok(s)) = tokio::time::timeout(config.timeouts.connect, TcpStream::connect(a)).await {
            upstream = Some(s);
            break;
        }
    }
    let Some(mut upstream) = upstream else {
        return hold_silently(client, hold).await;
    };
    stats.fronted_total.fetch_add(1, Relaxed);
    stats.fronted_active.fetch_add(1, Relaxed);
    if upstream.write_all(&consumed).await.is_ok() {
        let _ = client.set_nodelay(true);
        let _ = upstream.set_nodelay(true);
        let (cr, mut cw) = client.into_split();
        let (ur, mut uw) = upstream.into_split();
        let remaining = AtomicU64::new(config.fronting.max_bytes);
        let activity = Activity::new();
        let sink_in = AtomicU64::new(0);
        let sink_out = AtomicU64::new(0);
        let mut c_in = ByteCounter::new(&sink_in, &sink_in);
        let mut c_out = ByteCounter::new(&sink_out, &sink_out);
        // A clean end (FIN) of one direction is passed on and the other goes on, as TCP
        // half-close does; a reset from the mask host resets the client, so a prober sees the
        // site's close exactly.
        let both = async {
            let up = pump(&cr, &mut uw, Identity, &activity, &mut c_in, Some(&remaining));
            let down = pump(&ur, &mut cw, Identity, &activity, &mut c_out, Some(&remaining));
            tokio::pin!(up, down);
            tokio::select! {
                r = &mut up => {
                    if r.is_ok() {
                        let _ = down.await;
                    }
                    false
                }
                r = &mut down => match r {
                    Ok(()) => {
                        let _ = up.await;
                        false
                    }
                    Err(_) => true,
                },
            }
        };
        let reset_client = tokio::time::timeout(config.fronting.max_duration, both).await.unwrap_or(false);
        if reset_client {
            // Linger 0: the close below sends a reset at once (no blocking on drop: the socket
            // is non-blocking and nothing is left to flush).
            let _ = socket2::SockRef::from(cw.as_ref()).set_linger(Some(Duration::ZERO));
        }
    }
    stats.fronted_active.fetch_sub(1, Relaxed);
}

/// Keep the connection open, reading and discarding, until the client closes or `hold` passes.
async fn hold_silently(mut client: TcpStream, hold: Duration) {
    let drain = async {
        let mut buf = [0u8; 1024];
        while let Ok(n) = client.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(hold, drain).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loop_detection() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        let listen = [a("0.0.0.0:8443"), a("192.0.2.1:9443")];
        assert!(is_loop(a("127.0.0.1:8443"), a("10.0.0.1:8443"), &listen));
        assert!(is_loop(a("10.0.0.1:8443"), a("10.0.0.1:8443"), &listen));
        assert!(is_loop(a("192.0.2.1:9443"), a("10.0.0.1:8443"), &listen));
        assert!(!is_loop(a("127.0.0.1:443"), a("10.0.0.1:8443"), &listen));
        assert!(!is_loop(a("198.51.100.7:8443"), a("10.0.0.1:8443"), &listen));
    }
}
