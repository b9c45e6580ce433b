//! `[stats]`: the statistics listener. It stays on loopback unless the operator asks for a
//! remote listener twice over: `allow_remote = true` and a bearer token (docs/stats.md), so a
//! stray `listen = "0.0.0.0:…"` never opens the numbers to the network.

use std::net::SocketAddr;

use super::super::raw::RawStats;
use super::{d, flag, BearerToken, ConfigError, Ctx};

/// The validated `[stats]` values, moved into `Config` by `parse_str`.
pub(super) struct Stats {
    pub listen: Option<SocketAddr>,
    pub allow_remote: bool,
    pub token: Option<BearerToken>,
}

pub(super) fn settings(ctx: &Ctx<'_>, raw: &RawStats) -> Result<Stats, ConfigError> {
    let listen = match &raw.listen {
        None => Some(d::STATS_LISTEN.parse().unwrap()),
        Some(v) if v.get_ref().trim().is_empty() || v.get_ref().trim() == "off" => None,
        Some(v) => Some(v.get_ref().trim().parse::<SocketAddr>().map_err(|_| ctx.at(v, format!("`stats.listen`: `{}` is not an address with a port", v.get_ref()), "write e.g. \"127.0.0.1:8888\", or \"off\""))?),
    };
    let allow_remote = flag(&raw.allow_remote);
    let token = match &raw.token {
        None => None,
        Some(v) => Some(BearerToken::new(v.get_ref()).map_err(|m| ctx.at(v, format!("`stats.token`: {m}"), "generate one with `head -c 24 /dev/urandom | base64`"))?),
    };
    if let Some(addr) = listen {
        if !(addr.ip().is_loopback() || (allow_remote && token.is_some())) {
            let v = raw.listen.as_ref().unwrap();
            return Err(ctx.at(
                v,
                format!("`stats.listen` = \"{addr}\" is not a loopback address; the statistics would be open to the network"),
                "keep \"127.0.0.1:8888\", or set both `allow_remote = true` and `token = \"...\"` in [stats]",
            ));
        }
    }
    if let (Some(v), None) = (&raw.allow_remote, &token) {
        if *v.get_ref() {
            return Err(ctx.at(v, "`stats.allow_remote = true` needs a bearer token", "add token = \"<16+ random characters>\" to [stats]"));
        }
    }
    Ok(Stats { listen, allow_remote, token })
}
