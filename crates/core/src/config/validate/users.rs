//! `[users.NAME]`: one table per user. The name, the 16-byte secret and its kind (with the
//! fake-TLS domain), a previous secret kept through a rotation, the per-user limits, and the
//! rule that no two users share a secret (the proxy could not tell them apart). The name,
//! domain and size rules are public because the CLI checks its arguments with them.

use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use mtproxy_proto::{Secret, SecretKind};
use toml::Spanned;

use super::super::raw::{RawUser, SizeValue, S};
use super::{ConfigError, Ctx, User, UserLimits};

/// Every user in file (name) order; refused if two share a secret, old or current.
pub(super) fn settings(ctx: &Ctx<'_>, raw: &BTreeMap<String, Spanned<RawUser>>) -> Result<Vec<User>, ConfigError> {
    let mut users = Vec::new();
    for (name, v) in raw {
        users.push(user(ctx, name, v)?);
    }
    let mut seen = std::collections::HashMap::new();
    for u in &users {
        for s in std::iter::once(&u.secret).chain(u.previous_secret.as_ref().map(|p| &p.0)) {
            if let Some(other) = seen.insert(*s, u.name.clone()) {
                if other != u.name {
                    let span = raw[&u.name].span().start;
                    return Err(ctx.err(
                        span,
                        format!("users `{other}` and `{}` have the same secret", u.name),
                        "give every user its own secret (`vless-mtproxy regenerate-user-secret NAME`)",
                    ));
                }
            }
        }
    }
    Ok(users)
}

/// True for a user name the CLI and file accept: 1-64 of `A-Z a-z 0-9 _ - .`.
pub fn valid_user_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
}

/// True for a DNS host name usable as a fake-TLS domain (SNI).
pub fn valid_domain(domain: &str) -> bool {
    domain.len() >= 4
        && domain.len() <= 182
        && domain.contains('.')
        && domain
            .split('.')
            .all(|l| !l.is_empty() && l.len() <= 63 && !l.starts_with('-') && !l.ends_with('-') && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
}

fn user(ctx: &Ctx<'_>, name: &str, v: &Spanned<RawUser>) -> Result<User, ConfigError> {
    let at = v.span().start;
    let u = v.get_ref();
    if !valid_user_name(name) {
        return Err(ctx.err(at, format!("user name `{name}` is not allowed"), "use 1-64 letters, digits, `_`, `-` or `.`"));
    }
    let secret_v = u
        .secret
        .as_ref()
        .ok_or_else(|| ctx.err(at, format!("user `{name}` has no secret"), "add secret = \"<32 hex>\" (e.g. from `head -c 16 /dev/urandom | xxd -ps`)"))?;
    let secret = Secret::from_hex(secret_v.get_ref()).map_err(|e| {
        ctx.at(secret_v, format!("user `{name}`: {e}"), "the secret is 16 random bytes as 32 hex characters, without a dd/ee prefix or a domain")
    })?;
    let kind_name = u.kind.as_ref().map(|k| k.get_ref().as_str()).unwrap_or("dd");
    let kind = match kind_name {
        "classic" => SecretKind::Classic,
        "dd" | "padded" | "secure" => SecretKind::Padded,
        "ee" | "fake-tls" | "tls" => {
            let dv = u.domain.as_ref().ok_or_else(|| {
                ctx.err(
                    at,
                    format!("user `{name}` is fake-TLS (ee) but has no domain"),
                    "add domain = \"www.example.com\" (a real HTTPS site that is not blocked)",
                )
            })?;
            let domain = dv.get_ref().trim().to_ascii_lowercase();
            if !valid_domain(&domain) {
                return Err(ctx.at(
                    dv,
                    format!("user `{name}`: `{domain}` is not a valid domain"),
                    "write a host name such as \"www.example.com\" (letters, digits, `-`, dots; 4-182 characters)",
                ));
            }
            SecretKind::FakeTls { domain }
        }
        other => {
            let kv = u.kind.as_ref().unwrap();
            return Err(ctx.at(kv, format!("user `{name}`: unknown kind \"{other}\""), "use \"classic\", \"dd\" or \"ee\""));
        }
    };
    if let (Some(dv), false) = (&u.domain, matches!(kind, SecretKind::FakeTls { .. })) {
        return Err(ctx.at(dv, format!("user `{name}` has a domain but is not of kind \"ee\""), "remove `domain`, or set kind = \"ee\""));
    }
    let previous_secret = match (&u.previous_secret, &u.previous_secret_expires) {
        (Some(ps), Some(exp)) => {
            let s = Secret::from_hex(ps.get_ref())
                .map_err(|e| ctx.at(ps, format!("user `{name}` previous_secret: {e}"), "32 hex characters, or remove the line"))?;
            let secs = u64::try_from(*exp.get_ref()).map_err(|_| ctx.at(exp, "previous_secret_expires is negative", "a Unix time in seconds"))?;
            Some((s, UNIX_EPOCH + Duration::from_secs(secs)))
        }
        (None, None) => None,
        (Some(ps), None) => {
            return Err(ctx.at(
                ps,
                format!("user `{name}` has previous_secret without previous_secret_expires"),
                "add previous_secret_expires = <Unix time>, or remove previous_secret",
            ))
        }
        (None, Some(exp)) => {
            return Err(ctx.at(exp, format!("user `{name}` has previous_secret_expires without previous_secret"), "remove previous_secret_expires"))
        }
    };
    let limits = user_limits(ctx, name, u)?;
    Ok(User {
        limits,
        name: name.to_string(),
        secret,
        kind,
        enabled: u.enabled.unwrap_or(true),
        previous_secret,
        created: u.created.clone(),
        rotated: u.rotated.clone(),
    })
}

/// Parse a byte count: a whole number of bytes, or a number with a unit (`K`, `M`, `G`, `T`:
/// powers of 1000; `KiB`, `MiB`, `GiB`, `TiB`: powers of 1024; `B` optional).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let bad = || format!("`{text}` is not a size; write e.g. \"500MB\", \"10GiB\" or a number of bytes");
    let n: f64 = n.parse().map_err(|_| bad())?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().trim_end_matches('b') {
        "" => 1,
        "k" => 1000,
        "m" => 1_000_000,
        "g" => 1_000_000_000,
        "t" => 1_000_000_000_000,
        "ki" => 1 << 10,
        "mi" => 1 << 20,
        "gi" => 1 << 30,
        "ti" => 1 << 40,
        _ => return Err(bad()),
    };
    let v = n * mult as f64;
    if !v.is_finite() || !(1.0..=1e18).contains(&v) {
        return Err(format!("`{text}` is out of range; give at least 1 byte and at most 1 EB"));
    }
    Ok(v as u64)
}

fn user_limits(ctx: &Ctx<'_>, name: &str, u: &RawUser) -> Result<UserLimits, ConfigError> {
    let count = |v: &S<i64>, field: &str| -> Result<Option<u32>, ConfigError> { Ok(ctx.opt_int(v, field, 1, 1_000_000)?.map(|n| n as u32)) };
    let quota_bytes = match &u.quota {
        None => None,
        Some(v) => Some(match v.get_ref() {
            SizeValue::Bytes(n) if *n >= 1 => *n as u64,
            SizeValue::Bytes(n) => {
                return Err(ctx.at(v, format!("user `{name}`: quota {n} is not positive"), "give a size such as \"10GiB\", or remove the line for no quota"))
            }
            SizeValue::Text(t) => parse_size(t).map_err(|m| ctx.at(v, format!("user `{name}`: {m}"), "give a size such as \"10GiB\""))?,
        }),
    };
    let quota_monthly = match &u.quota_reset {
        None => false,
        Some(v) => match v.get_ref().as_str() {
            "monthly" => true,
            "never" => false,
            other => {
                return Err(ctx.at(
                    v,
                    format!("user `{name}`: quota_reset = \"{other}\" is not known"),
                    "use \"monthly\" (counted per calendar month, UTC) or \"never\"",
                ))
            }
        },
    };
    let expires = match &u.expires {
        None => None,
        Some(v) => {
            let secs =
                super::super::date::parse_expiry(v.get_ref()).map_err(|m| ctx.at(v, format!("user `{name}` expires: {m}"), "e.g. expires = \"2026-12-31\""))?;
            Some(UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64))
        }
    };
    Ok(UserLimits {
        max_connections: count(&u.max_connections, "max_connections")?,
        max_ips: count(&u.max_ips, "max_ips")?,
        quota_bytes,
        quota_monthly,
        expires,
    })
}
