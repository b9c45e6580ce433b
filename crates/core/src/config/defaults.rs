//! Every default value of the configuration, in one place, and the first-start file.

use std::time::Duration;

use mtproxy_proto::Secret;

pub const PORT: u16 = 8443;
pub const WORKERS: usize = 1;
pub const MAX_WORKERS: usize = 256;
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Well above TDLib's 135-140 s without a pong (docs/protocol.md §7.3).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Wide enough for phones with a badly set clock (mtprotoproxy accepts -10..+20 min).
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(20 * 60);
pub const REPLAY_CACHE_ENTRIES: usize = 65536;
pub const REPLAY_WINDOW: Duration = Duration::from_secs(24 * 3600);
/// How often a cover site's TLS flight is learned again (`[fake_tls] cover_refresh`).
pub const COVER_REFRESH: Duration = Duration::from_secs(6 * 3600);
pub const COVER_REFRESH_MIN: Duration = Duration::from_secs(60);
pub const FRONTING_MAX_BYTES: u64 = 64 * 1024 * 1024;
pub const FRONTING_MAX_DURATION: Duration = Duration::from_secs(10 * 60);
pub const MAX_CONNECTIONS: usize = 10000;
/// `[upstream] retry_after`: a failed upstream server is skipped this long.
pub const UPSTREAM_RETRY_AFTER: Duration = Duration::from_secs(30);
/// `[[upstream.servers]] weight`.
pub const UPSTREAM_WEIGHT: u32 = 1;
/// Cover domains offered for fake-TLS users when the file lists none: large HTTPS sites that
/// are reachable in most countries and carry heavy TLS traffic, so one more client blends in.
pub const COVER_DOMAINS: &[&str] = &["www.google.com", "www.microsoft.com", "www.apple.com", "www.amazon.com", "www.cloudflare.com"];
pub const STATS_LISTEN: &str = "127.0.0.1:8888";
/// How long a panel login lasts.
pub const PANEL_SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Telegram's published middle-proxy configuration (docs/protocol.md §5.1).
pub const PROXY_SECRET_URL: &str = "https://core.telegram.org/getProxySecret";
pub const PROXY_CONFIG_URL: &str = "https://core.telegram.org/getProxyConfig";
pub const PROXY_CONFIG_V6_URL: &str = "https://core.telegram.org/getProxyConfigV6";
/// Relative to the configuration file's directory.
pub const MIDDLE_CACHE_DIR: &str = "middle-cache";
/// Telegram asks for a daily refresh; hourly picks up a changed list sooner at little cost.
pub const MIDDLE_REFRESH: Duration = Duration::from_secs(3600);
/// Connections kept per middle-end cluster (the official proxy keeps 4..8 per target).
pub const MIDDLE_CONNECTIONS: usize = 4;

/// The configuration `serve` writes when none exists: one `dd` user, every other value
/// commented with its default so the admin sees what can be set.
pub fn initial_config_text(port: u16, user: &str, secret: &Secret) -> String {
    format!(
        r#"# vless-mtproxy configuration. Every field is documented in config.example.toml.
# This file holds secrets: keep it mode 0600.

[server]
listen = ["0.0.0.0:{port}", "[::]:{port}"]
# public_host = "proxy.example.org"   # host or IP put in links; default: a local address
# workers = 1

[users.{user}]
secret = "{secret}"
kind = "dd"
enabled = true
"#,
        secret = secret.to_hex()
    )
}
