//! `[panel]`: the web panel on the statistics listener (docs/panel.md). It is off until a
//! password hash is set (`vless-mtproxy set-panel-password`), and it is only served on a
//! loopback listener: the listener speaks plain HTTP, so a panel on a public address would send
//! the password and the session cookie in clear. Reach it over an SSH tunnel instead.

use std::net::SocketAddr;

use super::super::raw::RawPanel;
use super::{d, non_blank, ConfigError, Ctx, Panel};

pub(super) fn settings(ctx: &Ctx<'_>, raw: &RawPanel, stats_listen: Option<SocketAddr>) -> Result<Panel, ConfigError> {
    let password_hash = match non_blank(&raw.password_hash) {
        None => None,
        Some((v, t)) => {
            if !t.starts_with("$argon2") || t.split('$').count() < 5 {
                // Never repeat the value: it may be a password typed here by mistake.
                return Err(ctx.at(v, "`panel.password_hash` is not an argon2 hash (PHC string `$argon2id$…`)", "set it with `vless-mtproxy set-panel-password` (it reads the password from the terminal or stdin)"));
            }
            Some(t.to_string())
        }
    };
    let session_ttl = ctx.duration(&raw.session_ttl, "session_ttl", d::PANEL_SESSION_TTL)?;
    // Seconds are allowed for tests (an expired session); an operator wants hours.
    if session_ttl.as_secs() < 2 || session_ttl.as_secs() > 30 * 86400 {
        return Err(ctx.at(raw.session_ttl.as_ref().unwrap(), "`panel.session_ttl` must be from 2s to 30d", "use e.g. \"12h\""));
    }
    let history_file = ctx.file_path(&raw.history_file, "history_file")?;
    if let (Some((v, _)), Some(addr)) = (non_blank(&raw.password_hash), stats_listen) {
        if !addr.ip().is_loopback() {
            return Err(ctx.at(
                v,
                format!("the panel cannot be served on `stats.listen` = \"{addr}\": the listener has no TLS, so a login would cross the network in clear"),
                "keep stats.listen on loopback (\"127.0.0.1:8888\") and reach the panel over an SSH tunnel (ssh -L 8888:127.0.0.1:8888 HOST), or remove password_hash",
            ));
        }
    }
    Ok(Panel { password_hash, session_ttl, history_file })
}
