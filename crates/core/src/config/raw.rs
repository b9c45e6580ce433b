//! The file as serde sees it: every field optional, unknown fields refused, values kept with
//! their byte spans so validation errors can name the line.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

pub type S<T> = Option<Spanned<T>>;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub timeouts: RawTimeouts,
    #[serde(default)]
    pub fake_tls: RawFakeTls,
    #[serde(default)]
    pub fronting: RawFronting,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub stats: RawStats,
    #[serde(default)]
    pub panel: RawPanel,
    #[serde(default)]
    pub promoted_channel: RawPromoted,
    #[serde(default)]
    pub upstream: RawUpstream,
    #[serde(default)]
    pub dc_overrides: BTreeMap<String, Spanned<OneOrMany>>,
    #[serde(default)]
    pub store: Option<RawStore>,
    #[serde(default)]
    pub users: BTreeMap<String, Spanned<RawUser>>,
}

/// `[store]`: the shared PostgreSQL store of a fleet (docs/fleet.md).
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    pub url: S<String>,
    pub url_env: S<String>,
    pub node: S<String>,
    pub public_host: S<String>,
    pub flush_interval: S<DurationValue>,
    pub resync_interval: S<DurationValue>,
    pub cache_file: S<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn items(&self) -> Vec<&str> {
        match self {
            OneOrMany::One(s) => vec![s.as_str()],
            OneOrMany::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub listen: S<OneOrMany>,
    pub public_host: S<String>,
    pub public_port: S<i64>,
    pub workers: S<i64>,
    pub allow_any_transport: Option<bool>,
    pub dc_ip: S<String>,
    pub fast_mode: Option<bool>,
    pub proxy_protocol: S<bool>,
    pub trusted_proxies: S<Vec<String>>,
    pub pid_file: S<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawTimeouts {
    pub handshake: S<DurationValue>,
    pub connect: S<DurationValue>,
    pub idle: S<DurationValue>,
}

/// A duration written as a string (`"10s"`) or a bare integer of seconds.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum DurationValue {
    Seconds(i64),
    Text(String),
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawFakeTls {
    pub max_clock_skew: S<DurationValue>,
    pub replay_cache_entries: S<i64>,
    pub replay_window: S<DurationValue>,
    pub domains: S<Vec<String>>,
    pub emulate_cover: S<bool>,
    pub cover_refresh: S<DurationValue>,
    pub cover_cache: S<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawFronting {
    pub enabled: Option<bool>,
    pub mask_host: S<String>,
    pub max_bytes: S<i64>,
    pub max_duration: S<DurationValue>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub max_connections: S<i64>,
    pub usage_file: S<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawStats {
    pub listen: S<String>,
    pub allow_remote: S<bool>,
    pub token: S<String>,
    pub tls_cert: S<String>,
    pub tls_key: S<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawPanel {
    pub password_hash: S<String>,
    pub allowed_hosts: S<Vec<String>>,
    pub session_ttl: S<DurationValue>,
    pub history_file: S<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawPromoted {
    pub ad_tag: S<String>,
    pub proxy_secret_url: S<String>,
    pub proxy_config_url: S<String>,
    pub proxy_config_v6_url: S<String>,
    pub cache_dir: S<String>,
    pub refresh_interval: S<DurationValue>,
    pub nat_ip: S<String>,
    pub connections_per_dc: S<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUser {
    pub secret: S<String>,
    pub kind: S<String>,
    pub domain: S<String>,
    pub enabled: Option<bool>,
    pub previous_secret: S<String>,
    pub previous_secret_expires: S<i64>,
    pub created: Option<String>,
    pub rotated: Option<String>,
    pub max_connections: S<i64>,
    pub max_ips: S<i64>,
    pub quota: S<SizeValue>,
    pub quota_reset: S<String>,
    pub expires: S<String>,
}

/// A byte count written as an integer or a string with a unit (`"10GiB"`, `"500MB"`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum SizeValue {
    Bytes(i64),
    Text(String),
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    pub retry_after: S<DurationValue>,
    #[serde(default)]
    pub servers: Vec<Spanned<RawUpstreamServer>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstreamServer {
    pub name: S<String>,
    #[serde(rename = "type")]
    pub kind: S<String>,
    pub address: S<String>,
    pub username: S<String>,
    pub password: S<String>,
    pub weight: S<i64>,
    pub dcs: S<Vec<DcItem>>,
}

/// One item of `dcs`: a DC id as a number or a string, `"media"` or `"*"`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum DcItem {
    Id(i64),
    Text(String),
}
