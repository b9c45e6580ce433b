//! `[promoted_channel]`: the ad tag from @MTProxybot and, because a tag needs them, the
//! middle-proxy settings: where Telegram's proxy secret and cluster lists come from (URL or
//! file), where the last good copies are cached, how often they refresh, the NAT address and
//! connections per cluster (docs/protocol.md §5; docs/middle-proxy.md).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::super::raw::RawPromoted;
use super::{d, non_blank, ConfigError, Ctx, MiddleSettings, Source, S};

/// The ad tag (`None` when absent or empty) and the middle-proxy settings.
pub(super) fn settings(ctx: &Ctx<'_>, raw: &RawPromoted) -> Result<(Option<[u8; 16]>, MiddleSettings), ConfigError> {
    let ad_tag = match &raw.ad_tag {
        None => None,
        Some(v) if v.get_ref().is_empty() => None,
        Some(v) => {
            let mut tag = [0u8; 16];
            hex::decode_to_slice(v.get_ref().trim(), &mut tag).map_err(|_| {
                ctx.at(v, "`ad_tag` is not 32 hexadecimal characters", "paste the proxy tag that @MTProxybot gave, e.g. \"0123456789abcdef0123456789abcdef\"")
            })?;
            Some(tag)
        }
    };
    Ok((ad_tag, middle_settings(ctx, raw)?))
}

/// An `http(s)://` URL, a file path (relative to the config file), or `None` for blank/`off`;
/// `default` when the line is absent.
fn source(ctx: &Ctx<'_>, v: &S<String>, field: &str, default: &str) -> Result<Option<Source>, ConfigError> {
    let Some(v) = v else { return Ok(Some(Source::Url(default.to_string()))) };
    let text = v.get_ref().trim();
    if text.is_empty() || text == "off" {
        return Ok(None);
    }
    if text.starts_with("http://") || text.starts_with("https://") {
        if text.contains(char::is_whitespace) {
            return Err(ctx.at(v, format!("`{field}`: the URL contains spaces"), "write a URL such as \"https://core.telegram.org/getProxyConfig\""));
        }
        return Ok(Some(Source::Url(text.to_string())));
    }
    if text.contains("://") {
        return Err(ctx.at(v, format!("`{field}`: only http:// and https:// URLs are supported"), "write an http(s) URL or a file path"));
    }
    Ok(Some(Source::File(resolve(ctx, text))))
}

/// A path relative to the configuration file's directory.
fn resolve(ctx: &Ctx<'_>, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        ctx.path.parent().unwrap_or(Path::new("")).join(p)
    }
}

fn middle_settings(ctx: &Ctx<'_>, raw: &RawPromoted) -> Result<MiddleSettings, ConfigError> {
    let required = |v: &S<String>, field: &str, default: &str| -> Result<Source, ConfigError> {
        source(ctx, v, field, default)?.ok_or_else(|| {
            ctx.at(
                v.as_ref().unwrap(),
                format!("`{field}` cannot be off"),
                format!("remove the line to use Telegram's address ({default}), or give another URL or a file path"),
            )
        })
    };
    let proxy_secret = required(&raw.proxy_secret_url, "proxy_secret_url", d::PROXY_SECRET_URL)?;
    let proxy_config = required(&raw.proxy_config_url, "proxy_config_url", d::PROXY_CONFIG_URL)?;
    let proxy_config_v6 = source(ctx, &raw.proxy_config_v6_url, "proxy_config_v6_url", d::PROXY_CONFIG_V6_URL)?;
    let cache_dir = resolve(ctx, non_blank(&raw.cache_dir).map_or(d::MIDDLE_CACHE_DIR, |(_, p)| p));
    let refresh_interval = ctx.duration(&raw.refresh_interval, "refresh_interval", d::MIDDLE_REFRESH)?;
    if refresh_interval < Duration::from_secs(1) {
        return Err(ctx.at(
            raw.refresh_interval.as_ref().unwrap(),
            "`refresh_interval` is shorter than a second",
            "use e.g. \"1h\" (Telegram asks for about once a day)",
        ));
    }
    let nat_ip = match non_blank(&raw.nat_ip) {
        None => None,
        Some((v, ip)) => Some(ip.parse::<std::net::IpAddr>().map_err(|_| {
            ctx.at(v, format!("`nat_ip`: `{ip}` is not an IP address"), "write the public IPv4 or IPv6 address of this host, e.g. \"203.0.113.7\"")
        })?),
    };
    let connections_per_dc = ctx.int(&raw.connections_per_dc, "connections_per_dc", 1, 64, d::MIDDLE_CONNECTIONS as i64)? as usize;
    Ok(MiddleSettings { proxy_secret, proxy_config, proxy_config_v6, cache_dir, refresh_interval, nat_ip, connections_per_dc, fetch_via: None })
}
