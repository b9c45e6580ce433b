//! The route stage (docs/design.md "data path": after `limits`, before the relay): where an
//! admitted client's bytes go, and for the direct route the upstream connect.
//!
//! The mode is chosen per connection from the snapshot it started with: with an ad tag set the
//! client is served through the middle-end (`middle::session`, which connects and relays on its
//! own); without one, directly to its DC ([`connect_dc`], then `relay::direct`). The direct
//! connect reads only the DC table (configured addresses and overrides) and the upstream router.

use std::net::SocketAddr;
use std::time::Instant;

use mtproxy_proto::obfs2::KeyIv;
use mtproxy_proto::ProtoTag;

use crate::config::Config;
use crate::events::ClientAddr;
use crate::snapshot::Snapshot;
use crate::stats::Stats;
use crate::upstream::{self, DcLeg, DcRequest};

/// Where an admitted client goes.
pub enum Route {
    /// Straight to its DC.
    Direct,
    /// Through the middle-end, with this ad tag.
    Middle { ad_tag: [u8; 16] },
}

/// The route for a connection under `config`: ad tag -> middle-end, else direct.
pub fn choose(config: &Config) -> Route {
    match config.ad_tag {
        Some(ad_tag) => Route::Middle { ad_tag },
        None => Route::Direct,
    }
}

/// The DC a direct client asked for, in the client's transport, keyed towards the client.
pub struct Target<'a> {
    pub dc: i16,
    pub tag: ProtoTag,
    pub to_client: &'a KeyIv,
    /// A fake-TLS client (for the log line).
    pub tls: bool,
}

/// The upstream connect of the direct route: DC `target.dc` through the upstream router,
/// counted, and logged with the client and its user. `None`: no DC address answered.
pub async fn connect_dc(target: Target<'_>, snap: &Snapshot, stats: &Stats, peer: SocketAddr, user: &str) -> Option<DcLeg> {
    let cfg = &snap.config;
    let Target { dc, tag, to_client, tls } = target;
    let connect_started = Instant::now();
    let req = DcRequest { dc, tag, to_client, fast_mode: cfg.fast_mode, overrides: &snap.dc_overrides, pref: cfg.dc_ip, timeout: cfg.timeouts.connect };
    match upstream::connect(req, &snap.router, stats).await {
        Ok(leg) => {
            stats.upstream_connected(dc, connect_started.elapsed());
            tracing::debug!(client = %ClientAddr(peer), user = %user, dc, via = %leg.via, transport = tag.name(), tls, "relaying");
            Some(leg)
        }
        Err(e) => {
            stats.upstream_failed(dc);
            tracing::warn!(client = %ClientAddr(peer), user = %user, error = %e, "upstream connect failed");
            None
        }
    }
}
