//! `[stats]`: the statistics listener. It stays on loopback unless the operator asks for a
//! remote listener twice over: `allow_remote = true` and a bearer token (docs/stats.md), so a
//! stray `listen = "0.0.0.0:…"` never opens the numbers to the network.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::super::raw::RawStats;
use super::{d, flag, non_blank, BearerToken, ConfigError, Ctx, StatsTls};
use crate::stats_listener::tls::{server_config, TlsFileError};

/// The validated `[stats]` values, moved into `Config` by `parse_str`.
pub(super) struct Stats {
    pub listen: Option<SocketAddr>,
    pub allow_remote: bool,
    pub token: Option<BearerToken>,
    pub tls: Option<StatsTls>,
}

pub(super) fn settings(ctx: &Ctx<'_>, raw: &RawStats) -> Result<Stats, ConfigError> {
    let listen =
        match &raw.listen {
            None => Some(d::STATS_LISTEN.parse().unwrap()),
            Some(v) if v.get_ref().trim().is_empty() || v.get_ref().trim() == "off" => None,
            Some(v) => Some(v.get_ref().trim().parse::<SocketAddr>().map_err(|_| {
                ctx.at(v, format!("`stats.listen`: `{}` is not an address with a port", v.get_ref()), "write e.g. \"127.0.0.1:8888\", or \"off\"")
            })?),
        };
    let allow_remote = flag(&raw.allow_remote);
    let token = match &raw.token {
        None => None,
        Some(v) => {
            Some(BearerToken::new(v.get_ref()).map_err(|m| ctx.at(v, format!("`stats.token`: {m}"), "generate one with `head -c 24 /dev/urandom | base64`"))?)
        }
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
    let tls = tls(ctx, raw)?;
    Ok(Stats { listen, allow_remote, token, tls })
}

/// `tls_cert` + `tls_key`: both or neither; each file read, and the pair checked with the very
/// function the listener builds its TLS configuration with. A relative path is taken from the
/// configuration file's directory.
fn tls(ctx: &Ctx<'_>, raw: &RawStats) -> Result<Option<StatsTls>, ConfigError> {
    let (cert, key) = match (non_blank(&raw.tls_cert), non_blank(&raw.tls_key)) {
        (None, None) => return Ok(None),
        (Some((v, _)), None) => {
            return Err(ctx.at(v, "`stats.tls_cert` is set but `stats.tls_key` is not", "add tls_key = \"/path/to/key.pem\" to [stats], or remove tls_cert"))
        }
        (None, Some((v, _))) => {
            return Err(ctx.at(
                v,
                "`stats.tls_key` is set but `stats.tls_cert` is not",
                "add tls_cert = \"/path/to/fullchain.pem\" to [stats], or remove tls_key",
            ))
        }
        (Some(c), Some(k)) => (c, k),
    };
    let dir = ctx.path.parent().map(PathBuf::from).unwrap_or_default();
    let read = |(v, t): (&toml::Spanned<String>, &str), field: &str| {
        let path = dir.join(t);
        std::fs::read(&path).map(|b| (path.clone(), b)).map_err(|e| {
            ctx.at(v, format!("`stats.{field}`: cannot read {}: {e}", path.display()), "give a readable PEM file (the proxy's user must be able to read it)")
        })
    };
    let (cert_path, cert_pem) = read(cert, "tls_cert")?;
    let (key_path, key_pem) = read(key, "tls_key")?;
    if let Err(e) = server_config(&cert_pem, &key_pem) {
        let (v, hint) = match e {
            TlsFileError::NoCertificate => (cert.0, "tls_cert must be the PEM certificate (chain), e.g. Let's Encrypt's fullchain.pem"),
            TlsFileError::NoKey => (key.0, "tls_key must be the PEM private key, e.g. Let's Encrypt's privkey.pem"),
            TlsFileError::Mismatch(_) => (key.0, "tls_key must be the key the certificate was issued for (the pair from the same issuance)"),
        };
        return Err(ctx.at(v, format!("[stats] TLS: {e}"), hint));
    }
    Ok(Some(StatsTls { cert_path, key_path, cert_pem, key_pem }))
}
