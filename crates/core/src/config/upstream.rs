//! `[upstream]`, validated: how the proxy reaches Telegram (DCs and middle-ends).
//!
//! Where the server's own route to Telegram is filtered, the DC leg can go through another
//! proxy: a SOCKS5 server (Xray's `socks` inbound on a VLESS host, dante) or an HTTP CONNECT
//! proxy. Several servers may be listed, each for some DCs and with a weight; the choice among
//! them and their health live in `upstream::pool`. With no server listed every connection goes
//! direct, as before this section existed.

use std::time::Duration;

pub use mtproxy_proto::socks5::Credentials;

use super::HostPort;

/// The validated `[upstream]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamSettings {
    /// In file order; empty: everything direct.
    pub servers: Vec<UpstreamServer>,
    /// How long a server whose connect failed is skipped before it is tried again.
    pub retry_after: Duration,
}

impl Default for UpstreamSettings {
    fn default() -> Self {
        UpstreamSettings { servers: Vec::new(), retry_after: super::defaults::UPSTREAM_RETRY_AFTER }
    }
}

/// One `[[upstream.servers]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamServer {
    /// Unique; the label in logs and statistics.
    pub name: String,
    pub kind: UpstreamKind,
    /// Relative share of new connections among the servers chosen for a DC (1-1000).
    pub weight: u32,
    pub dcs: DcSelection,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamKind {
    Direct,
    Socks5 { address: HostPort, credentials: Option<Credentials> },
    Http { address: HostPort, credentials: Option<Credentials> },
}

impl UpstreamKind {
    pub fn type_name(&self) -> &'static str {
        match self {
            UpstreamKind::Direct => "direct",
            UpstreamKind::Socks5 { .. } => "socks5",
            UpstreamKind::Http { .. } => "http",
        }
    }

    /// The proxy's address; `None` for direct.
    pub fn address(&self) -> Option<&HostPort> {
        match self {
            UpstreamKind::Direct => None,
            UpstreamKind::Socks5 { address, .. } | UpstreamKind::Http { address, .. } => Some(address),
        }
    }
}

/// Which DC ids a server carries (`dcs = [...]`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DcSelection {
    /// `"*"`: every id.
    pub any: bool,
    /// `"media"`: every negative (media) id.
    pub media: bool,
    /// Signed ids listed exactly (`2` is DC 2, `-2` its media DC).
    pub ids: Vec<i16>,
}

impl DcSelection {
    pub fn all() -> Self {
        DcSelection { any: true, ..Default::default() }
    }

    /// How specifically this selection names `dc`: 3 an exact id, 2 `media`, 1 `*`, 0 not at
    /// all. A DC goes through the servers of the highest rank any server has for it, so
    /// `dcs = ["media"]` on a direct entry beats `dcs = ["*"]` on a SOCKS5 one for media DCs.
    pub fn rank(&self, dc: i16) -> u8 {
        if self.ids.contains(&dc) {
            3
        } else if self.media && dc < 0 {
            2
        } else if self.any {
            1
        } else {
            0
        }
    }
}

impl std::fmt::Display for DcSelection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts: Vec<String> = Vec::new();
        if self.any {
            parts.push("*".into());
        }
        if self.media {
            parts.push("media".into());
        }
        parts.extend(self.ids.iter().map(|i| i.to_string()));
        f.write_str(&parts.join(","))
    }
}
