//! `[dc_overrides]`: a DC id (signed, docs/protocol.md §2.5) or `*` -> one or more `HOST:PORT`
//! addresses tried in order instead of Telegram's built-in ones. The same shape as
//! `serve --dc-override`, which `parse_dc_overrides` reads.

use std::collections::BTreeMap;

use toml::Spanned;

use super::super::raw::OneOrMany;
use super::{ConfigError, Ctx, DcKey, HostPort};

pub(super) fn settings(ctx: &Ctx<'_>, raw: &BTreeMap<String, Spanned<OneOrMany>>) -> Result<Vec<(DcKey, Vec<HostPort>)>, ConfigError> {
    let mut dc_overrides: Vec<(DcKey, Vec<HostPort>)> = Vec::new();
    let mut keys: Vec<&str> = Vec::new();
    for (key, v) in raw {
        let id = DcKey::parse(key).map_err(|m| ctx.at(v, m, "write e.g. \"2\" = \"127.0.0.1:4443\""))?;
        // "2" and "02" are one DC: two entries would leave one of them silently unused.
        if let Some(i) = dc_overrides.iter().position(|(other, _)| *other == id) {
            return Err(ctx.at(
                v,
                format!("DC override `{key}` names the same DC as `{}`", keys[i]),
                "keep one entry per DC; list several addresses in it as an array",
            ));
        }
        keys.push(key);
        let mut addrs = Vec::new();
        for item in v.get_ref().items() {
            addrs.push(HostPort::parse(item).map_err(|m| ctx.at(v, format!("DC override `{key}`: {m}"), "write HOST:PORT, e.g. \"149.154.167.51:443\""))?);
        }
        if addrs.is_empty() {
            return Err(ctx.at(v, format!("DC override `{key}` has no address"), "give at least one HOST:PORT"));
        }
        dc_overrides.push((id, addrs));
    }
    Ok(dc_overrides)
}
