//! `[fake_tls]` and `[fronting]`: the disguise. Cover domains offered to new fake-TLS users, the
//! replay cache and clock skew that guard the ClientHello check, and where a connection that is
//! not ours (a probe, a failed handshake) is relayed to, with caps on bytes and time
//! (docs/protocol.md §4.3 timestamp window, §4.5 replay protection, §4.9 domain fronting).

use super::super::raw::{RawFakeTls, RawFronting};
use super::{d, non_blank, valid_domain, ConfigError, Ctx, FakeTls, Fronting, HostPort};

/// `[fake_tls] domains`: lower-cased, each a valid domain, none twice; the built-in list when
/// the line is absent.
pub(super) fn cover_domains(ctx: &Ctx<'_>, raw: &RawFakeTls) -> Result<Vec<String>, ConfigError> {
    let Some(v) = &raw.domains else { return Ok(d::COVER_DOMAINS.iter().map(|s| s.to_string()).collect()) };
    let mut out: Vec<String> = Vec::new();
    for item in v.get_ref() {
        let dom = item.trim().to_ascii_lowercase();
        if !valid_domain(&dom) {
            return Err(ctx.at(v, format!("`fake_tls.domains`: `{item}` is not a valid domain"), "list host names such as \"www.example.com\""));
        }
        if out.contains(&dom) {
            return Err(ctx.at(v, format!("`fake_tls.domains`: `{dom}` is listed twice"), "list each domain once"));
        }
        out.push(dom);
    }
    Ok(out)
}

/// The rest of `[fake_tls]`, around the already checked cover domains.
pub(super) fn fake_tls(ctx: &Ctx<'_>, raw: &RawFakeTls, cover_domains: Vec<String>) -> Result<FakeTls, ConfigError> {
    Ok(FakeTls {
        cover_domains,
        max_clock_skew: ctx.duration(&raw.max_clock_skew, "max_clock_skew", d::MAX_CLOCK_SKEW)?,
        replay_cache_entries: ctx.int(&raw.replay_cache_entries, "replay_cache_entries", 1024, 16 << 20, d::REPLAY_CACHE_ENTRIES as i64)? as usize,
        replay_window: ctx.duration(&raw.replay_window, "replay_window", d::REPLAY_WINDOW)?,
        emulate_cover: raw.emulate_cover.as_ref().map(|v| *v.get_ref()).unwrap_or(true),
        cover_refresh: {
            let r = ctx.duration(&raw.cover_refresh, "cover_refresh", d::COVER_REFRESH)?;
            if r < d::COVER_REFRESH_MIN {
                return Err(ctx.at(
                    raw.cover_refresh.as_ref().unwrap(),
                    "`fake_tls.cover_refresh` is shorter than a minute",
                    "write a period such as \"6h\" (at least \"1m\")",
                ));
            }
            r
        },
        cover_cache: ctx.file_path(&raw.cover_cache, "cover_cache")?,
    })
}

pub(super) fn fronting(ctx: &Ctx<'_>, raw: &RawFronting) -> Result<Fronting, ConfigError> {
    Ok(Fronting {
        enabled: raw.enabled.unwrap_or(true),
        mask_host: match non_blank(&raw.mask_host) {
            None => None,
            Some((v, h)) => Some(
                HostPort::parse(h).map_err(|m| ctx.at(v, format!("`mask_host`: {m}"), "write HOST:PORT of a real HTTPS site, e.g. \"www.example.com:443\""))?,
            ),
        },
        max_bytes: ctx.int(&raw.max_bytes, "max_bytes", 1024, i64::MAX, d::FRONTING_MAX_BYTES as i64)? as u64,
        max_duration: ctx.duration(&raw.max_duration, "max_duration", d::FRONTING_MAX_DURATION)?,
    })
}
