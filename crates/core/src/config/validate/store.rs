//! `[store]`: the fleet's PostgreSQL store. Only the shape is checked here (a postgres URL, sane
//! intervals); whether the database answers is the daemon's and the CLI's business. The URL's
//! password never appears in an error: messages name the field, not the value.

use super::super::raw::RawStore;
use super::super::{DbUrl, StoreSettings};
use super::{non_blank, valid_user_name, ConfigError, Ctx};
use std::time::Duration;

pub(super) fn settings(ctx: &Ctx<'_>, raw: &RawStore) -> Result<StoreSettings, ConfigError> {
    // `url_env`: the URL comes from that environment variable (a Kubernetes Secret), so the
    // file (a ConfigMap) holds no password.
    let from_env = non_blank(&raw.url_env).map(|(v, name)| (v, name, std::env::var(name).unwrap_or_default()));
    let url = match (non_blank(&raw.url), from_env) {
        (Some((v, _)), Some(_)) => return Err(ctx.at(v, "`[store]` has both `url` and `url_env`", "keep one of them")),
        (None, None) => {
            return Err(ctx.err(
                0,
                "`[store]` has no `url`",
                "write url = \"postgres://USER:PASSWORD@HOST:5432/DB\" (or url_env = \"VARIABLE\"), or remove [store] to keep the users in this file",
            ));
        }
        (None, Some((v, name, value))) if value.trim().is_empty() => {
            return Err(ctx.at(
                v,
                format!("`store.url_env`: the environment variable {name} is not set"),
                "set it to the postgres:// URL (in Kubernetes: from the Secret), or write url = \"...\"",
            ));
        }
        (None, Some((v, name, value))) => DbUrl::new(&value)
            .map_err(|m| ctx.at(v, format!("`store.url_env`: {name}: {m}"), "set it to postgres://USER:PASSWORD@HOST:5432/DB?sslmode=disable"))?,
        (Some((v, text)), None) => {
            DbUrl::new(text).map_err(|m| ctx.at(v, format!("`store.url`: {m}"), "write url = \"postgres://USER:PASSWORD@HOST:5432/DB?sslmode=disable\""))?
        }
    };
    if url.secret_str().contains("sslmode=require") || url.secret_str().contains("sslmode=verify") {
        let v = raw.url.as_ref().or(raw.url_env.as_ref()).unwrap();
        return Err(ctx.at(
            v,
            "`store.url`: TLS to the database is not supported yet",
            "reach PostgreSQL on loopback, a private network or a tunnel, with sslmode=disable (docs/fleet.md)",
        ));
    }
    let node = match non_blank(&raw.node) {
        None => None,
        Some((_, n)) if valid_user_name(n) => Some(n.to_string()),
        Some((v, n)) => return Err(ctx.at(v, format!("`store.node` = \"{n}\" is not a node name"), "use 1-64 letters, digits, `_`, `-` or `.`")),
    };
    let public_host = non_blank(&raw.public_host).map(|(_, h)| h.to_string());
    let flush_interval = ctx.duration(&raw.flush_interval, "store.flush_interval", Duration::from_secs(2))?;
    let resync_interval = ctx.duration(&raw.resync_interval, "store.resync_interval", Duration::from_secs(30))?;
    for (v, d, field) in [(&raw.flush_interval, flush_interval, "flush_interval"), (&raw.resync_interval, resync_interval, "resync_interval")] {
        if d < Duration::from_millis(200) || d > Duration::from_secs(3600) {
            let v = v.as_ref().unwrap();
            return Err(ctx.at(v, format!("`store.{field}` is out of range"), "use a duration from 200ms to 1h, e.g. \"2s\""));
        }
    }
    let cache_file = ctx.file_path(&raw.cache_file, "cache_file")?;
    Ok(StoreSettings { url, node, public_host, flush_interval, resync_interval, cache_file })
}
