//! `[panel]`: the web panel on the statistics listener (docs/panel.md). It is off until a
//! password hash is set (`vless-mtproxy set-panel-password`), it needs the listener on, and on
//! a non-loopback listener it needs TLS (`[stats] tls_cert`/`tls_key`): plain HTTP would send
//! the password and the session cookie in clear. Without TLS, reach it over an SSH tunnel.

use std::net::SocketAddr;

use super::super::raw::{RawPanel, RawStats};
use super::{d, non_blank, ConfigError, Ctx, Panel};

pub(super) fn settings(ctx: &Ctx<'_>, raw: &RawPanel, stats: &RawStats, stats_listen: Option<SocketAddr>, tls: bool) -> Result<Panel, ConfigError> {
    let password_hash = match non_blank(&raw.password_hash) {
        None => None,
        Some((v, t)) => {
            if !t.starts_with("$argon2") || t.split('$').count() < 5 {
                // Never repeat the value: it may be a password typed here by mistake.
                return Err(ctx.at(
                    v,
                    "`panel.password_hash` is not an argon2 hash (PHC string `$argon2id$…`)",
                    "set it with `vless-mtproxy set-panel-password` (it reads the password from the terminal or stdin)",
                ));
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
    let allowed_hosts = allowed_hosts(ctx, raw)?;
    if let (Some((v, _)), None) = (non_blank(&raw.password_hash), stats_listen) {
        return Err(ctx.at(
            stats.listen.as_ref().unwrap_or(v),
            "`panel.password_hash` is set but `stats.listen` = \"off\": the panel is served on the statistics listener, so it would not be served at all",
            "turn the listener on (listen = \"127.0.0.1:8888\" in [stats]), or remove password_hash from [panel]",
        ));
    }
    if let (Some((v, _)), Some(addr)) = (non_blank(&raw.password_hash), stats_listen) {
        if !addr.ip().is_loopback() && !tls {
            return Err(ctx.at(
                v,
                format!("the panel cannot be served on `stats.listen` = \"{addr}\": the listener has no TLS, so a login would cross the network in clear"),
                "keep stats.listen on loopback (\"127.0.0.1:8888\") and reach the panel over an SSH tunnel (ssh -L 8888:127.0.0.1:8888 HOST), or give the listener a certificate (tls_cert and tls_key in [stats]), or remove password_hash",
            ));
        }
    }
    Ok(Panel { password_hash, session_ttl, history_file, allowed_hosts })
}

/// `allowed_hosts`: DNS names or IP addresses, without a port; kept lower case.
fn allowed_hosts(ctx: &Ctx<'_>, raw: &RawPanel) -> Result<Vec<String>, ConfigError> {
    let Some(v) = &raw.allowed_hosts else { return Ok(Vec::new()) };
    let mut out = Vec::new();
    for h in v.get_ref() {
        let h = h.trim().trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
        if h.parse::<std::net::IpAddr>().is_err() && !super::valid_domain(&h) {
            return Err(ctx.at(
                v,
                format!("`panel.allowed_hosts`: `{h}` is not a host name or an IP address"),
                "list the names the panel is opened by, without scheme or port: [\"panel.example.com\"]",
            ));
        }
        out.push(h);
    }
    Ok(out)
}
