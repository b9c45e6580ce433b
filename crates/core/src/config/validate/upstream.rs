//! `[upstream]` and its `[[upstream.servers]]`: names unique and usable as labels, a known
//! `type`, an address for the proxy types and none for `direct`, credentials as a pair (each
//! 1-255 bytes, as RFC 1929 carries them), a weight, and DC selections that parse. A password is
//! never quoted in an error.

use std::time::Duration;

use toml::Spanned;

use super::super::raw::{DcItem, RawUpstream, RawUpstreamServer};
use super::super::upstream::{Credentials, DcSelection, UpstreamKind, UpstreamServer, UpstreamSettings};
use super::{d, non_blank, valid_user_name, ConfigError, Ctx, HostPort};

pub(super) fn settings(ctx: &Ctx<'_>, raw: &RawUpstream) -> Result<UpstreamSettings, ConfigError> {
    let retry_after = ctx.duration(&raw.retry_after, "retry_after", d::UPSTREAM_RETRY_AFTER)?;
    if retry_after.is_zero() || retry_after > Duration::from_secs(24 * 3600) {
        return Err(ctx.at(raw.retry_after.as_ref().unwrap(), "`upstream.retry_after` must be above zero and at most a day", "write e.g. \"30s\""));
    }
    let mut servers: Vec<UpstreamServer> = Vec::new();
    for s in &raw.servers {
        let server = server(ctx, s)?;
        if servers.iter().any(|o| o.name == server.name) {
            return Err(ctx.at(s, format!("upstream server `{}` is listed twice", server.name), "give each [[upstream.servers]] entry its own `name`"));
        }
        servers.push(server);
    }
    Ok(UpstreamSettings { servers, retry_after })
}

fn server(ctx: &Ctx<'_>, s: &Spanned<RawUpstreamServer>) -> Result<UpstreamServer, ConfigError> {
    let r = s.get_ref();
    let Some((name_v, name)) = non_blank(&r.name) else {
        return Err(ctx.at(s, "an [[upstream.servers]] entry has no `name`", "add name = \"xray\" (letters, digits, `_`, `-`, `.`)"));
    };
    if !valid_user_name(name) {
        return Err(ctx.at(name_v, format!("upstream name `{name}` is not usable as a label"), "use up to 64 letters, digits, `_`, `-` or `.`"));
    }
    let Some((kind_v, kind)) = non_blank(&r.kind) else {
        return Err(ctx.at(s, format!("upstream `{name}` has no `type`"), "add type = \"socks5\", \"http\" or \"direct\""));
    };
    let credentials = credentials(ctx, name, r)?;
    let address = match non_blank(&r.address) {
        None => None,
        Some((v, text)) => {
            Some(HostPort::parse(text).map_err(|m| ctx.at(v, format!("upstream `{name}` address: {m}"), "write HOST:PORT, e.g. \"127.0.0.1:10808\""))?)
        }
    };
    let kind = match kind {
        "direct" => {
            if let Some(v) = &r.address {
                return Err(ctx.at(v, format!("upstream `{name}` is direct and takes no `address`"), "remove `address`, or set type = \"socks5\" or \"http\""));
            }
            if credentials.is_some() {
                return Err(ctx.at(
                    r.username.as_ref().unwrap(),
                    format!("upstream `{name}` is direct and takes no credentials"),
                    "remove `username` and `password`",
                ));
            }
            UpstreamKind::Direct
        }
        "socks5" | "http" => {
            let Some(address) = address else {
                return Err(ctx.at(s, format!("upstream `{name}` has no `address`"), "add address = \"127.0.0.1:10808\" (the proxy's HOST:PORT)"));
            };
            if kind == "socks5" {
                UpstreamKind::Socks5 { address, credentials }
            } else {
                UpstreamKind::Http { address, credentials }
            }
        }
        other => return Err(ctx.at(kind_v, format!("upstream `{name}` has unknown type `{other}`"), "use \"socks5\", \"http\" or \"direct\"")),
    };
    let weight = ctx.int(&r.weight, "weight", 1, 1000, d::UPSTREAM_WEIGHT as i64)? as u32;
    let dcs = match &r.dcs {
        None => DcSelection::all(),
        Some(v) => selection(ctx, name, v)?,
    };
    Ok(UpstreamServer { name: name.to_string(), kind, weight, dcs })
}

fn credentials(ctx: &Ctx<'_>, name: &str, r: &RawUpstreamServer) -> Result<Option<Credentials>, ConfigError> {
    match (&r.username, &r.password) {
        (None, None) => Ok(None),
        (Some(u), None) => Err(ctx.at(u, format!("upstream `{name}` has a `username` but no `password`"), "add password = \"...\", or remove `username`")),
        (None, Some(p)) => Err(ctx.at(p, format!("upstream `{name}` has a `password` but no `username`"), "add username = \"...\", or remove `password`")),
        (Some(u), Some(p)) => {
            for (v, field) in [(u, "username"), (p, "password")] {
                let n = v.get_ref().len();
                if n == 0 || n > 255 {
                    return Err(ctx.at(v, format!("upstream `{name}`: `{field}` must be 1 to 255 bytes"), "RFC 1929 carries at most 255 bytes each"));
                }
            }
            Ok(Some(Credentials { username: u.get_ref().clone(), password: p.get_ref().clone() }))
        }
    }
}

fn selection(ctx: &Ctx<'_>, name: &str, v: &Spanned<Vec<DcItem>>) -> Result<DcSelection, ConfigError> {
    let hint = "list DC ids (2, -2 for media DC 2), \"media\" (every media DC) or \"*\" (every DC)";
    let mut sel = DcSelection::default();
    for item in v.get_ref() {
        let id = match item {
            DcItem::Text(t) if t.trim() == "*" => {
                sel.any = true;
                continue;
            }
            DcItem::Text(t) if t.trim().eq_ignore_ascii_case("media") => {
                sel.media = true;
                continue;
            }
            DcItem::Text(t) => t.trim().parse::<i64>().map_err(|_| ctx.at(v, format!("upstream `{name}`: `{t}` in `dcs` is not a DC id"), hint))?,
            DcItem::Id(n) => *n,
        };
        if id == 0 || id.abs() > i16::MAX as i64 {
            return Err(ctx.at(v, format!("upstream `{name}`: {id} in `dcs` is not a DC id"), hint));
        }
        if !sel.ids.contains(&(id as i16)) {
            sel.ids.push(id as i16);
        }
    }
    if sel == DcSelection::default() {
        return Err(ctx.at(v, format!("upstream `{name}`: `dcs` is empty, so the server would carry nothing"), hint));
    }
    Ok(sel)
}

/// The server the middle-proxy configuration fetch goes through: the first proxy entry (not
/// `direct`) that carries every DC.
pub(super) fn fetch_via(u: &UpstreamSettings) -> Option<UpstreamServer> {
    u.servers.iter().find(|s| s.dcs.any && s.kind.address().is_some()).cloned()
}
