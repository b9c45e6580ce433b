//! Every default value of the configuration, in one place, and the first-start file.

use std::time::Duration;

use mtproxy_proto::Secret;

pub const PORT: u16 = 8443;
pub const WORKERS: usize = 1;
pub const MAX_WORKERS: usize = 256;
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Well above TDLib's 135-140 s without a pong (reference §7.3).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Wide enough for phones with a badly set clock (mtprotoproxy accepts -10..+20 min).
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(20 * 60);
pub const REPLAY_CACHE_ENTRIES: usize = 65536;
pub const REPLAY_WINDOW: Duration = Duration::from_secs(24 * 3600);
pub const FRONTING_MAX_BYTES: u64 = 64 * 1024 * 1024;
pub const FRONTING_MAX_DURATION: Duration = Duration::from_secs(10 * 60);
pub const MAX_CONNECTIONS: usize = 10000;
/// Cover domains offered for fake-TLS users when the file lists none: large HTTPS sites that
/// are reachable in most countries and carry heavy TLS traffic, so one more client blends in.
pub const COVER_DOMAINS: &[&str] = &["www.google.com", "www.microsoft.com", "www.apple.com", "www.amazon.com", "www.cloudflare.com"];
pub const STATS_LISTEN: &str = "127.0.0.1:8888";

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
