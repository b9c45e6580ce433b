//! The validated configuration model, and how a TOML file becomes one.
//!
//! The file is parsed into raw serde structs (`raw`), then validated into the types below
//! (`validate`), so the rest of the proxy only ever sees values that make sense: ports in
//! range, secrets of the right length, a domain for every fake-TLS user. Defaults live in one
//! place (`defaults`). A file that fails validation is refused with its path, line, what is
//! wrong and what would be right ([`ConfigError`]).

mod cidr;
pub mod date;
mod defaults;
mod duration;
mod raw;
pub mod upstream;
mod validate;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use mtproxy_proto::{Secret, SecretKind};

pub use cidr::Cidr;
pub use defaults::COVER_DOMAINS;
pub use duration::{format_duration, parse_duration};
pub use upstream::{Credentials, DcSelection, UpstreamKind, UpstreamServer, UpstreamSettings};
pub use validate::{parse_size, parse_str, valid_domain, valid_user_name};

/// A host name or IP literal with a port, resolved when used.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    pub host: String,
    pub port: u16,
}

impl HostPort {
    /// Parse `host:port`, `1.2.3.4:port` or `[v6]:port`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if let Ok(sa) = text.parse::<SocketAddr>() {
            return Ok(HostPort { host: sa.ip().to_string(), port: sa.port() });
        }
        let (host, port) = text.rsplit_once(':').ok_or_else(|| format!("`{text}` has no port; write it as HOST:PORT, e.g. example.com:443"))?;
        let port: u16 = port.parse().ok().filter(|p| *p != 0).ok_or_else(|| format!("`{port}` is not a port number (1-65535)"))?;
        if host.is_empty() || host.contains(':') || host.contains(char::is_whitespace) {
            return Err(format!("`{host}` is not a host name; IPv6 addresses go in brackets: [2001:db8::1]:443"));
        }
        Ok(HostPort { host: host.to_string(), port })
    }
}

impl std::fmt::Display for HostPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Parse `--dc-override ID=HOST:PORT` items (repeatable; several addresses for one id are
/// tried in order).
pub fn parse_dc_overrides(items: &[String]) -> Result<Vec<(DcKey, Vec<HostPort>)>, String> {
    let mut out: Vec<(DcKey, Vec<HostPort>)> = Vec::new();
    for item in items {
        let (id, addr) = item.split_once('=').ok_or_else(|| format!("--dc-override `{item}`: write ID=HOST:PORT, e.g. 2=127.0.0.1:4443"))?;
        let key = DcKey::parse(id)?;
        let hp = HostPort::parse(addr)?;
        match out.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => v.push(hp),
            None => out.push((key, vec![hp])),
        }
    }
    Ok(out)
}

/// Which address family to use towards Telegram DCs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpPreference {
    PreferV4,
    PreferV6,
    OnlyV4,
    OnlyV6,
}

/// A DC id as written in overrides: a signed id, or `*` for every id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DcKey {
    Id(i16),
    Any,
}

impl DcKey {
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text == "*" {
            return Ok(DcKey::Any);
        }
        text.parse::<i16>().map(DcKey::Id).map_err(|_| format!("`{text}` is not a DC id; use a number such as 2, -2, 10002, or `*` for every DC"))
    }
}

/// One named user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub secret: Secret,
    pub kind: SecretKind,
    pub enabled: bool,
    /// The secret this user had before a rotation, accepted until the instant given.
    pub previous_secret: Option<(Secret, SystemTime)>,
    /// Free-form metadata kept for the operator (RFC 3339 times written by the CLI).
    pub created: Option<String>,
    pub rotated: Option<String>,
    /// Limits the proxy enforces on new connections (see `limits`).
    pub limits: UserLimits,
}

/// Per-user limits; `None` is unlimited.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserLimits {
    /// Connections of this user open at once.
    pub max_connections: Option<u32>,
    /// Distinct client IP addresses with a connection open at once.
    pub max_ips: Option<u32>,
    /// Bytes relayed (both directions) allowed in a period.
    pub quota_bytes: Option<u64>,
    /// The quota period: a calendar month (UTC) when true, else the whole lifetime.
    pub quota_monthly: bool,
    /// From this instant on, new connections are refused.
    pub expires: Option<SystemTime>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timeouts {
    /// From accept to an authenticated client.
    pub handshake: Duration,
    /// TCP connect to a DC or to the mask host.
    pub connect: Duration,
    /// No byte in either direction for this long closes a relayed connection.
    pub idle: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeTls {
    /// Accepted |now - client timestamp|.
    pub max_clock_skew: Duration,
    /// Replay cache: at most this many handshakes remembered ...
    pub replay_cache_entries: usize,
    /// ... for at most this long.
    pub replay_window: Duration,
    /// Cover domains the operator picks from for new fake-TLS users (`[fake_tls] domains`).
    pub cover_domains: Vec<String>,
    /// Learn each cover domain's TLS flight and shape ours like it (`crate::cover`).
    pub emulate_cover: bool,
    /// How often a learned flight is asked for again.
    pub cover_refresh: std::time::Duration,
    /// Where learned flights are kept; `None`: the config file's path plus ".covers".
    pub cover_cache: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fronting {
    pub enabled: bool,
    /// Where failed and probing connections go; `None`: the first `ee` user's domain on 443.
    pub mask_host: Option<HostPort>,
    /// Cap on bytes relayed per fronted connection (both directions together).
    pub max_bytes: u64,
    /// Cap on a fronted connection's lifetime.
    pub max_duration: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Client connections open at once, over all listeners.
    pub max_connections: usize,
    /// Where per-user data usage is kept across restarts; `None`: next to the config file.
    pub usage_file: Option<PathBuf>,
}

/// PROXY protocol (v1/v2) from a front such as HAProxy (docs/host-security.md).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProxyProtocol {
    /// Accept a header from the trusted sources (they may also connect without one).
    pub enabled: bool,
    /// Sources allowed to send a header; a header from anyone else is a failed handshake.
    pub trusted: Vec<Cidr>,
}

impl ProxyProtocol {
    /// Whether a connection from `ip` may carry a PROXY header.
    pub fn trusts(&self, ip: std::net::IpAddr) -> bool {
        self.enabled && self.trusted.iter().any(|c| c.contains(ip))
    }
}

/// Where a piece of the middle-proxy configuration comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `http://` or `https://` URL.
    Url(String),
    File(PathBuf),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Url(u) => f.write_str(u),
            Source::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// Middle-proxy (ME) settings, used when an ad tag is set (`[promoted_channel]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MiddleSettings {
    pub proxy_secret: Source,
    pub proxy_config: Source,
    /// `None`: no IPv6 middle-ends.
    pub proxy_config_v6: Option<Source>,
    /// Where the last good copies are kept.
    pub cache_dir: PathBuf,
    pub refresh_interval: Duration,
    /// The proxy's public address as Telegram sees it (behind NAT); mixed into the RPC keys.
    pub nat_ip: Option<IpAddr>,
    /// Connections kept per middle-end cluster; clients are multiplexed over them.
    pub connections_per_dc: usize,
    /// The `[upstream]` server the configuration fetch goes through (the first `socks5` or
    /// `http` entry with `dcs = ["*"]`); `None`: direct.
    pub fetch_via: Option<UpstreamServer>,
}

/// The bearer token the stats listener requires (`[stats] token`). Never printed: `Debug`
/// shows it redacted, and errors never quote it.
#[derive(Clone, PartialEq, Eq)]
pub struct BearerToken(String);

impl BearerToken {
    /// Accepts 16-256 visible ASCII characters (no spaces), as an HTTP header value can carry.
    pub fn new(token: &str) -> Result<Self, String> {
        let t = token.trim();
        if t.len() < 16 || t.len() > 256 || !t.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("the stats token must be 16 to 256 visible ASCII characters without spaces".to_string());
        }
        Ok(BearerToken(t.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerToken(<redacted>)")
    }
}

/// `[panel]` (docs/panel.md).
#[derive(Clone, PartialEq, Eq)]
pub struct Panel {
    /// Argon2 PHC string of the login password; `None`: the panel is off.
    pub password_hash: Option<String>,
    /// How long a login lasts.
    pub session_ttl: Duration,
    /// The traffic history file; `None`: next to the usage file (`<usage file>.history`).
    pub history_file: Option<PathBuf>,
    /// `[panel] allowed_hosts`: host names (lower case, no port) the panel answers to besides
    /// the loopback ones (the DNS-rebinding check of the `Host` header).
    pub allowed_hosts: Vec<String>,
}

/// `[stats] tls_cert` / `tls_key`: the statistics listener speaks HTTPS only. The PEM texts are
/// read (and checked to match) when the configuration loads, so a reload takes new files.
#[derive(Clone, PartialEq, Eq)]
pub struct StatsTls {
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

impl std::fmt::Debug for StatsTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("StatsTls").field("cert_path", &self.cert_path).field("key_path", &self.key_path).finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Panel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Panel")
            .field("password_hash", &self.password_hash.as_ref().map(|_| "<set>"))
            .field("session_ttl", &self.session_ttl)
            .field("history_file", &self.history_file)
            .field("allowed_hosts", &self.allowed_hosts)
            .finish()
    }
}

/// A PostgreSQL URL (`postgres://user:password@host:port/db`). Its password is never shown:
/// `Debug` and [`DbUrl::redacted`] print `***` in its place.
#[derive(Clone, PartialEq, Eq)]
pub struct DbUrl(String);

impl DbUrl {
    pub fn new(url: &str) -> Result<Self, String> {
        let u = url.trim();
        if !(u.starts_with("postgres://") || u.starts_with("postgresql://")) {
            return Err("the store URL must begin with postgres:// or postgresql://".into());
        }
        Ok(DbUrl(u.to_string()))
    }

    /// The URL with the password in it, for the database client only.
    pub fn secret_str(&self) -> &str {
        &self.0
    }

    /// The URL with `***` for the password (and for a `password=` parameter), for logs and errors.
    pub fn redacted(&self) -> String {
        redact_url(&self.0)
    }
}

/// `scheme://user:PASSWORD@host/...?password=PASSWORD` -> the same with `***`.
pub fn redact_url(url: &str) -> String {
    let mut out = url.to_string();
    if let Some(scheme_end) = out.find("://").map(|i| i + 3) {
        let authority_end = out[scheme_end..].find(['/', '?']).map(|i| scheme_end + i).unwrap_or(out.len());
        if let Some(at) = out[scheme_end..authority_end].rfind('@').map(|i| scheme_end + i) {
            if let Some(colon) = out[scheme_end..at].find(':').map(|i| scheme_end + i) {
                out.replace_range(colon + 1..at, "***");
            }
        }
    }
    if let Some(q) = out.find('?') {
        let (head, query) = out.split_at(q + 1);
        let parts: Vec<String> =
            query.split('&').map(|kv| if kv.to_ascii_lowercase().starts_with("password=") { "password=***".to_string() } else { kv.to_string() }).collect();
        out = format!("{head}{}", parts.join("&"));
    }
    out
}

impl std::fmt::Debug for DbUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DbUrl({})", self.redacted())
    }
}

/// `[store]`: users, their limits and the promoted-channel tag live in PostgreSQL, shared by
/// every node of a fleet (docs/fleet.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreSettings {
    pub url: DbUrl,
    /// This node's name in `list-nodes` and in the usage table; `None`: the host name.
    pub node: Option<String>,
    /// The address clients use for this node in links (`show-user-config`); `None`: the
    /// `[server] public_host` (or the detected address).
    pub public_host: Option<String>,
    /// How often this node writes its counters to the store and reads the fleet's totals.
    pub flush_interval: Duration,
    /// How often the users are read again in full, whatever LISTEN/NOTIFY said.
    pub resync_interval: Duration,
    /// The last users known, kept for a start while the database is down; `None`: beside the
    /// config file (`.fleet-cache`).
    pub cache_file: Option<PathBuf>,
}

/// The whole validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub listen: Vec<SocketAddr>,
    pub public_host: Option<String>,
    pub public_port: Option<u16>,
    pub workers: usize,
    pub allow_any_transport: bool,
    pub dc_ip: IpPreference,
    /// docs/protocol.md §2.7 fast mode: DC->client bytes are forwarded without re-encryption.
    pub fast_mode: bool,
    pub proxy_protocol: ProxyProtocol,
    /// Where `serve` writes its process id (for `reload`); `None`: next to the config file.
    pub pid_file: Option<PathBuf>,
    pub timeouts: Timeouts,
    pub fake_tls: FakeTls,
    pub fronting: Fronting,
    pub limits: Limits,
    pub dc_overrides: Vec<(DcKey, Vec<HostPort>)>,
    pub stats_listen: Option<SocketAddr>,
    /// `[stats] allow_remote`: the stats listener may bind a non-loopback address (needs a token).
    pub stats_allow_remote: bool,
    /// `[stats] token`: when set, every stats endpoint but `/health` wants `Authorization: Bearer`.
    pub stats_token: Option<BearerToken>,
    /// `[stats] tls_cert` + `tls_key`: HTTPS on the statistics listener.
    pub stats_tls: Option<StatsTls>,
    /// `[panel]`: the web panel on the statistics listener (off without a password hash).
    pub panel: Panel,
    pub ad_tag: Option<[u8; 16]>,
    pub middle: MiddleSettings,
    /// `[upstream]`: direct, or through SOCKS5 / HTTP CONNECT servers.
    pub upstream: UpstreamSettings,
    /// The fleet's shared store (`[store]`); `None`: users live in this file.
    pub store: Option<StoreSettings>,
    pub users: Vec<User>,
}

impl Config {
    /// The port links should carry.
    pub fn link_port(&self) -> u16 {
        self.public_port.or_else(|| self.listen.first().map(|a| a.port())).unwrap_or(defaults::PORT)
    }

    /// Every distinct fake-TLS domain of enabled users, in file order.
    pub fn fake_tls_domains(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for u in self.users.iter().filter(|u| u.enabled) {
            if let SecretKind::FakeTls { domain } = &u.kind {
                if !out.contains(&domain.as_str()) {
                    out.push(domain);
                }
            }
        }
        out
    }
}

/// `<config path>.<suffix>`: where state files go when the config does not name them.
pub fn beside(config_path: &Path, suffix: &str) -> PathBuf {
    let mut s = config_path.as_os_str().to_owned();
    s.push(".");
    s.push(suffix);
    PathBuf::from(s)
}

impl Config {
    /// The pid file `serve` writes and `reload` reads.
    pub fn pid_path(&self, config_path: &Path) -> PathBuf {
        self.pid_file.clone().unwrap_or_else(|| beside(config_path, "pid"))
    }

    /// The file learned cover flights are kept in (`crate::cover::CoverCache`).
    pub fn cover_cache_path(&self, config_path: &Path) -> PathBuf {
        self.fake_tls.cover_cache.clone().unwrap_or_else(|| beside(config_path, "covers"))
    }

    /// The file the panel's traffic history is kept in: next to the usage file (a writable
    /// state folder when the configuration's is read-only) unless `[panel] history_file` says.
    pub fn history_path(&self, config_path: &Path) -> PathBuf {
        self.panel.history_file.clone().unwrap_or_else(|| beside(&self.usage_path(config_path), "history"))
    }

    /// The file per-user data usage is persisted in.
    pub fn fleet_cache_path(&self, config_path: &Path) -> Option<PathBuf> {
        self.store.as_ref().map(|s| s.cache_file.clone().unwrap_or_else(|| beside(config_path, "fleet-cache")))
    }

    pub fn usage_path(&self, config_path: &Path) -> PathBuf {
        self.limits.usage_file.clone().unwrap_or_else(|| beside(config_path, "usage"))
    }
}

/// A configuration file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}:{line}: {message}\n  fix: {hint}")]
    Invalid { path: PathBuf, line: usize, message: String, hint: String },
}

/// Read and validate a configuration file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
    parse_str(&text, path)
}

/// A fresh random secret for a new user. Its first byte is never 0xdd or 0xee: written as a
/// classic secret (32 hex characters, no prefix) it would begin with `dd` or `ee`, which some
/// clients take for the padded or fake-TLS prefix and cut off (Telethon 1.45 does; the e2e
/// harness hit it). Two values of 256 fewer leave 127.98 bits of randomness.
pub fn generate_secret() -> Secret {
    use rand::RngCore;
    loop {
        let mut b = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut b);
        if b[0] != 0xdd && b[0] != 0xee {
            return Secret::from_bytes(b);
        }
    }
}

/// The text of a fresh configuration with one user, for `serve` on first start.
pub fn initial_config_text(listen_port: u16, user: &str, secret: &Secret) -> String {
    defaults::initial_config_text(listen_port, user, secret)
}

#[cfg(test)]
mod tests {
    use super::generate_secret;

    #[test]
    fn generated_secrets_never_begin_with_a_client_prefix_byte() {
        let mut first_bytes = std::collections::HashSet::new();
        for _ in 0..20_000 {
            let b = generate_secret().as_bytes()[0];
            assert!(b != 0xdd && b != 0xee, "a classic link would begin with {b:02x}");
            first_bytes.insert(b);
        }
        assert!(first_bytes.len() > 200, "the first byte still takes almost every value");
    }
}
