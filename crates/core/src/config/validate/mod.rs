//! Raw -> validated. Each check names the line of the offending value and says what would be
//! right.
//!
//! This file holds what every section shares ([`Ctx`]: line numbers, error building, the
//! duration / integer / path readers) and [`parse_str`], which runs one function per section
//! and assembles the [`Config`]. The sections live beside it: `syntax` (TOML errors, redacted),
//! `server`, `timeouts`, `tls_fronting`, `stats`, `panel`, `promoted`, `dc_overrides`, `upstream`,
//! `users`.

mod dc_overrides;
mod panel;
mod promoted;
mod server;
mod stats;
mod store;
mod syntax;
#[cfg(test)]
mod tests;
mod timeouts;
mod tls_fronting;
mod upstream;
mod users;

use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::defaults as d;
use super::duration::parse_duration;
use super::raw::{DurationValue, S};
use super::*;

pub use users::{parse_size, valid_domain, valid_user_name};

/// The text being validated and the path to name in errors; every section reads through it.
struct Ctx<'a> {
    text: &'a str,
    path: &'a Path,
}

impl Ctx<'_> {
    fn line(&self, offset: usize) -> usize {
        self.text[..offset.min(self.text.len())].bytes().filter(|b| *b == b'\n').count() + 1
    }

    fn err(&self, offset: usize, message: impl Into<String>, hint: impl Into<String>) -> ConfigError {
        ConfigError::Invalid { path: self.path.to_path_buf(), line: self.line(offset), message: message.into(), hint: hint.into() }
    }

    fn at<T>(&self, v: &Spanned<T>, message: impl Into<String>, hint: impl Into<String>) -> ConfigError {
        self.err(v.span().start, message, hint)
    }

    fn duration(&self, v: &S<DurationValue>, field: &str, default: Duration) -> Result<Duration, ConfigError> {
        let Some(v) = v else { return Ok(default) };
        let parsed = match v.get_ref() {
            DurationValue::Seconds(n) if *n >= 0 => Ok(Duration::from_secs(*n as u64)),
            DurationValue::Seconds(n) => Err(format!("{n} is negative")),
            DurationValue::Text(t) => parse_duration(t),
        };
        parsed.map_err(|m| self.at(v, format!("`{field}`: {m}"), "write a duration such as \"10s\", \"5m\" or \"1h\""))
    }

    fn int(&self, v: &S<i64>, field: &str, min: i64, max: i64, default: i64) -> Result<i64, ConfigError> {
        let Some(v) = v else { return Ok(default) };
        let n = *v.get_ref();
        if n < min || n > max {
            return Err(self.at(v, format!("`{field}` = {n} is out of range"), format!("use a whole number from {min} to {max}")));
        }
        Ok(n)
    }

    /// [`Ctx::int`] for a field with no default: absent stays `None`.
    fn opt_int(&self, v: &S<i64>, field: &str, min: i64, max: i64) -> Result<Option<i64>, ConfigError> {
        v.as_ref().map(|_| self.int(v, field, min, max, 0)).transpose()
    }

    /// A file path field (`pid_file`, `usage_file`): absent is `None` (the caller's default),
    /// present but blank is refused.
    fn file_path(&self, v: &S<String>, field: &str) -> Result<Option<PathBuf>, ConfigError> {
        match v {
            None => Ok(None),
            Some(p) if p.get_ref().trim().is_empty() => Err(self.at(p, format!("`{field}` is empty"), "give a file path, or remove the line for the default")),
            Some(p) => Ok(Some(p.get_ref().trim().into())),
        }
    }
}

/// A string field that counts as unset when absent or blank; otherwise the value, trimmed.
fn non_blank(v: &S<String>) -> Option<(&Spanned<String>, &str)> {
    v.as_ref().map(|v| (v, v.get_ref().trim())).filter(|(_, t)| !t.is_empty())
}

/// A boolean switch that is off unless written.
fn flag(v: &S<bool>) -> bool {
    v.as_ref().map(|v| *v.get_ref()).unwrap_or(false)
}

/// Parse and validate configuration text; `path` is only used in error messages.
pub fn parse_str(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let ctx = Ctx { text, path };
    let raw = syntax::parse(&ctx)?;

    // The checks run in this order and the first failure is reported, so a file with several
    // mistakes always names the same one first; that is why the two path fields sit between
    // the fake-TLS domains and the rest of `[fake_tls]`.
    let server = server::settings(&ctx, &raw.server)?;
    let timeouts = timeouts::settings(&ctx, &raw.timeouts)?;
    let cover_domains = tls_fronting::cover_domains(&ctx, &raw.fake_tls)?;
    let pid_file = ctx.file_path(&raw.server.pid_file, "pid_file")?;
    let usage_file = ctx.file_path(&raw.limits.usage_file, "usage_file")?;
    let fake_tls = tls_fronting::fake_tls(&ctx, &raw.fake_tls, cover_domains)?;
    let fronting = tls_fronting::fronting(&ctx, &raw.fronting)?;
    let limits =
        Limits { max_connections: ctx.int(&raw.limits.max_connections, "max_connections", 1, 10_000_000, d::MAX_CONNECTIONS as i64)? as usize, usage_file };
    let stats = stats::settings(&ctx, &raw.stats)?;
    let panel = panel::settings(&ctx, &raw.panel, &raw.stats, stats.listen, stats.tls.is_some())?;
    let (ad_tag, mut middle) = promoted::settings(&ctx, &raw.promoted_channel)?;
    let dc_overrides = dc_overrides::settings(&ctx, &raw.dc_overrides)?;
    let upstream = upstream::settings(&ctx, &raw.upstream)?;
    middle.fetch_via = upstream::fetch_via(&upstream);
    let store = raw.store.as_ref().map(|s| store::settings(&ctx, s)).transpose()?;
    let users = users::settings(&ctx, &raw.users)?;

    Ok(Config {
        listen: server.listen,
        public_host: server.public_host,
        public_port: server.public_port,
        workers: server.workers,
        allow_any_transport: server.allow_any_transport,
        dc_ip: server.dc_ip,
        fast_mode: server.fast_mode,
        proxy_protocol: server.proxy_protocol,
        pid_file,
        timeouts,
        fake_tls,
        fronting,
        limits,
        dc_overrides,
        stats_listen: stats.listen,
        stats_allow_remote: stats.allow_remote,
        stats_token: stats.token,
        stats_tls: stats.tls,
        panel,
        ad_tag,
        middle,
        upstream,
        store,
        users,
    })
}
