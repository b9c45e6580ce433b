//! Raw -> validated. Each check names the line of the offending value and says what would be
//! right.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use mtproxy_proto::{Secret, SecretKind};
use toml::Spanned;

use super::defaults as d;
use super::duration::parse_duration;
use super::raw::{DurationValue, RawConfig, RawUser, S};
use super::*;

struct Ctx<'a> {
    text: &'a str,
    path: &'a Path,
}

impl Ctx<'_> {
    fn line(&self, offset: usize) -> usize {
        self.text[..offset.min(self.text.len())].bytes().filter(|b| *b == b'\n').count() + 1
    }

    fn err(&self, offset: usize, message: impl Into<String>, hint: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_path_buf(),
            line: self.line(offset),
            message: message.into(),
            hint: hint.into(),
        }
    }

    fn at<T>(&self, v: &Spanned<T>, message: impl Into<String>, hint: impl Into<String>) -> ConfigError {
        self.err(v.span().start, message, hint)
    }

    fn duration(&self, v: &S<DurationValue>, field: &str, default: Duration) -> Result<Duration, ConfigError> {
        let Some(v) = v else { return Ok(default) };
        let parsed = match v.get_ref() {
            DurationValue::Seconds(n) if *n >= 0 => Ok(Duration::from_secs(*n as u64)),
            DurationValue::Seconds(n) => Err(format!("{n} is negative")),
            DurationValue::Text(t) => parse_duration(t),
        };
        parsed.map_err(|m| self.at(v, format!("`{field}`: {m}"), "write a duration such as \"10s\", \"5m\" or \"1h\""))
    }

    fn int(&self, v: &S<i64>, field: &str, min: i64, max: i64, default: i64) -> Result<i64, ConfigError> {
        let Some(v) = v else { return Ok(default) };
        let n = *v.get_ref();
        if n < min || n > max {
            return Err(self.at(v, format!("`{field}` = {n} is out of range"), format!("use a whole number from {min} to {max}")));
        }
        Ok(n)
    }
}

/// Parse and validate configuration text; `path` is only used in error messages.
pub fn parse_str(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let ctx = Ctx { text, path };
    let raw: RawConfig = toml::from_str(text).map_err(|e| {
        let offset = e.span().map(|s| s.start).unwrap_or(0);
        let message = redact_strings(e.message().trim());
        let hint = if message.contains("unknown field") {
            "remove or rename the field; config.example.toml lists every field".to_string()
        } else {
            "check the TOML syntax near this line (strings in double quotes, one key per line)".to_string()
        };
        ctx.err(offset, message, hint)
    })?;

    let server = &raw.server;
    let listen = match &server.listen {
        None => vec![SocketAddr::from(([0, 0, 0, 0], d::PORT))],
        Some(v) => {
            let mut out = Vec::new();
            for item in v.get_ref().items() {
                let addr: SocketAddr = item.parse().map_err(|_| {
                    ctx.at(v, format!("`listen`: `{item}` is not an address with a port"), "write e.g. \"0.0.0.0:8443\" or \"[::]:8443\"")
                })?;
                if addr.port() == 0 {
                    return Err(ctx.at(v, format!("`listen`: `{item}` has port 0"), "choose a port from 1 to 65535"));
                }
                if out.contains(&addr) {
                    return Err(ctx.at(v, format!("`listen`: `{item}` is listed twice"), "list each address once"));
                }
                out.push(addr);
            }
            if out.is_empty() {
                return Err(ctx.at(v, "`listen` is empty", "give at least one address, e.g. [\"0.0.0.0:8443\"]"));
            }
            out
        }
    };
    let public_host = match &server.public_host {
        Some(v) if v.get_ref().trim().is_empty() => None,
        Some(v) => {
            let h = v.get_ref().trim();
            if h.contains(char::is_whitespace) || h.contains('/') || h.len() > 255 {
                return Err(ctx.at(v, format!("`public_host`: `{h}` is not a host name or IP address"), "write e.g. \"proxy.example.org\" or \"203.0.113.7\""));
            }
            Some(h.to_string())
        }
        None => None,
    };
    let public_port = server.public_port.as_ref().map(|_| ctx.int(&server.public_port, "public_port", 1, 65535, 0)).transpose()?.map(|p| p as u16);
    let workers = ctx.int(&server.workers, "workers", 1, d::MAX_WORKERS as i64, d::WORKERS as i64)? as usize;
    let dc_ip = match &server.dc_ip {
        None => IpPreference::PreferV4,
        Some(v) => match v.get_ref().as_str() {
            "prefer-v4" => IpPreference::PreferV4,
            "prefer-v6" => IpPreference::PreferV6,
            "only-v4" => IpPreference::OnlyV4,
            "only-v6" => IpPreference::OnlyV6,
            other => return Err(ctx.at(v, format!("`dc_ip` = \"{other}\" is not a known preference"), "use \"prefer-v4\", \"prefer-v6\", \"only-v4\" or \"only-v6\"")),
        },
    };

    let timeouts = Timeouts {
        handshake: ctx.duration(&raw.timeouts.handshake, "handshake", d::HANDSHAKE_TIMEOUT)?,
        connect: ctx.duration(&raw.timeouts.connect, "connect", d::CONNECT_TIMEOUT)?,
        idle: ctx.duration(&raw.timeouts.idle, "idle", d::IDLE_TIMEOUT)?,
    };
    for (v, name, t) in [
        (&raw.timeouts.handshake, "handshake", timeouts.handshake),
        (&raw.timeouts.connect, "connect", timeouts.connect),
        (&raw.timeouts.idle, "idle", timeouts.idle),
    ] {
        if t.is_zero() {
            return Err(ctx.at(v.as_ref().unwrap(), format!("timeout `{name}` is zero"), "give a positive duration such as \"10s\""));
        }
    }

    let fake_tls = FakeTls {
        max_clock_skew: ctx.duration(&raw.fake_tls.max_clock_skew, "max_clock_skew", d::MAX_CLOCK_SKEW)?,
        replay_cache_entries: ctx.int(&raw.fake_tls.replay_cache_entries, "replay_cache_entries", 1024, 16 << 20, d::REPLAY_CACHE_ENTRIES as i64)? as usize,
        replay_window: ctx.duration(&raw.fake_tls.replay_window, "replay_window", d::REPLAY_WINDOW)?,
    };

    let fronting = Fronting {
        enabled: raw.fronting.enabled.unwrap_or(true),
        mask_host: match &raw.fronting.mask_host {
            None => None,
            Some(v) if v.get_ref().trim().is_empty() => None,
            Some(v) => Some(HostPort::parse(v.get_ref()).map_err(|m| ctx.at(v, format!("`mask_host`: {m}"), "write HOST:PORT of a real HTTPS site, e.g. \"www.example.com:443\""))?),
        },
        max_bytes: ctx.int(&raw.fronting.max_bytes, "max_bytes", 1024, i64::MAX, d::FRONTING_MAX_BYTES as i64)? as u64,
        max_duration: ctx.duration(&raw.fronting.max_duration, "max_duration", d::FRONTING_MAX_DURATION)?,
    };

    let limits = Limits {
        max_connections: ctx.int(&raw.limits.max_connections, "max_connections", 1, 10_000_000, d::MAX_CONNECTIONS as i64)? as usize,
    };

    let stats_listen = match &raw.stats.listen {
        None => Some(d::STATS_LISTEN.parse().unwrap()),
        Some(v) if v.get_ref().trim().is_empty() || v.get_ref() == "off" => None,
        Some(v) => Some(v.get_ref().parse::<SocketAddr>().map_err(|_| ctx.at(v, format!("`stats.listen`: `{}` is not an address with a port", v.get_ref()), "write e.g. \"127.0.0.1:8888\", or \"off\""))?),
    };

    let ad_tag = match &raw.promoted_channel.ad_tag {
        None => None,
        Some(v) if v.get_ref().is_empty() => None,
        Some(v) => {
            let mut tag = [0u8; 16];
            hex::decode_to_slice(v.get_ref().trim(), &mut tag).map_err(|_| ctx.at(v, "`ad_tag` is not 32 hexadecimal characters", "paste the proxy tag that @MTProxybot gave, e.g. \"0123456789abcdef0123456789abcdef\""))?;
            Some(tag)
        }
    };

    let mut dc_overrides = Vec::new();
    for (key, v) in &raw.dc_overrides {
        let id = DcKey::parse(key).map_err(|m| ctx.at(v, m, "write e.g. \"2\" = \"127.0.0.1:4443\""))?;
        let mut addrs = Vec::new();
        for item in v.get_ref().items() {
            addrs.push(HostPort::parse(item).map_err(|m| ctx.at(v, format!("DC override `{key}`: {m}"), "write HOST:PORT, e.g. \"149.154.167.51:443\""))?);
        }
        if addrs.is_empty() {
            return Err(ctx.at(v, format!("DC override `{key}` has no address"), "give at least one HOST:PORT"));
        }
        dc_overrides.push((id, addrs));
    }

    let mut users = Vec::new();
    for (name, v) in &raw.users {
        users.push(user(&ctx, name, v)?);
    }
    let mut seen = std::collections::HashMap::new();
    for u in &users {
        for s in std::iter::once(&u.secret).chain(u.previous_secret.as_ref().map(|p| &p.0)) {
            if let Some(other) = seen.insert(*s, u.name.clone()) {
                if other != u.name {
                    let span = raw.users[&u.name].span().start;
                    return Err(ctx.err(span, format!("users `{other}` and `{}` have the same secret", u.name), "give every user its own secret (`vless-mtproxy regenerate-user-secret NAME`)"));
                }
            }
        }
    }

    Ok(Config {
        listen,
        public_host,
        public_port,
        workers,
        allow_any_transport: server.allow_any_transport.unwrap_or(false),
        dc_ip,
        fast_mode: server.fast_mode.unwrap_or(true),
        timeouts,
        fake_tls,
        fronting,
        limits,
        dc_overrides,
        stats_listen,
        ad_tag,
        users,
    })
}

/// serde's type errors quote the offending string value (`invalid type: string "…", expected
/// struct RawUser`). That value may be a secret (a `secret = "…"` line in the wrong table), so
/// the quoted part is dropped: the line number already points at it.
fn redact_strings(message: &str) -> String {
    const MARK: &str = "string \"";
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find(MARK) {
        out.push_str(&rest[..at + MARK.len() - 2]);
        let mut chars = rest[at + MARK.len()..].char_indices();
        let mut end = rest.len() - at - MARK.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    chars.next();
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                _ => {}
            }
        }
        rest = &rest[at + MARK.len() + end..];
    }
    out.push_str(rest);
    out
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
        && domain.split('.').all(|l| {
            !l.is_empty() && l.len() <= 63 && !l.starts_with('-') && !l.ends_with('-') && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

fn user(ctx: &Ctx<'_>, name: &str, v: &Spanned<RawUser>) -> Result<User, ConfigError> {
    let at = v.span().start;
    let u = v.get_ref();
    if !valid_user_name(name) {
        return Err(ctx.err(at, format!("user name `{name}` is not allowed"), "use 1-64 letters, digits, `_`, `-` or `.`"));
    }
    let secret_v = u.secret.as_ref().ok_or_else(|| ctx.err(at, format!("user `{name}` has no secret"), "add secret = \"<32 hex>\" (e.g. from `head -c 16 /dev/urandom | xxd -ps`)"))?;
    let secret = Secret::from_hex(secret_v.get_ref()).map_err(|e| ctx.at(secret_v, format!("user `{name}`: {e}"), "the secret is 16 random bytes as 32 hex characters, without a dd/ee prefix or a domain"))?;
    let kind_name = u.kind.as_ref().map(|k| k.get_ref().as_str()).unwrap_or("dd");
    let kind = match kind_name {
        "classic" => SecretKind::Classic,
        "dd" | "padded" | "secure" => SecretKind::Padded,
        "ee" | "fake-tls" | "tls" => {
            let dv = u.domain.as_ref().ok_or_else(|| ctx.err(at, format!("user `{name}` is fake-TLS (ee) but has no domain"), "add domain = \"www.example.com\" (a real HTTPS site that is not blocked)"))?;
            let domain = dv.get_ref().trim().to_ascii_lowercase();
            if !valid_domain(&domain) {
                return Err(ctx.at(dv, format!("user `{name}`: `{domain}` is not a valid domain"), "write a host name such as \"www.example.com\" (letters, digits, `-`, dots; 4-182 characters)"));
            }
            SecretKind::FakeTls { domain }
        }
        other => {
            let kv = u.kind.as_ref().unwrap();
            return Err(ctx.at(kv, format!("user `{name}`: unknown kind \"{other}\""), "use \"classic\", \"dd\" or \"ee\""));
        }
    };
    if u.domain.is_some() && !matches!(kind, SecretKind::FakeTls { .. }) {
        let dv = u.domain.as_ref().unwrap();
        return Err(ctx.at(dv, format!("user `{name}` has a domain but is not of kind \"ee\""), "remove `domain`, or set kind = \"ee\""));
    }
    let previous_secret = match (&u.previous_secret, &u.previous_secret_expires) {
        (Some(ps), Some(exp)) => {
            let s = Secret::from_hex(ps.get_ref()).map_err(|e| ctx.at(ps, format!("user `{name}` previous_secret: {e}"), "32 hex characters, or remove the line"))?;
            let secs = u64::try_from(*exp.get_ref()).map_err(|_| ctx.at(exp, "previous_secret_expires is negative", "a Unix time in seconds"))?;
            Some((s, UNIX_EPOCH + Duration::from_secs(secs)))
        }
        (None, None) => None,
        (Some(ps), None) => return Err(ctx.at(ps, format!("user `{name}` has previous_secret without previous_secret_expires"), "add previous_secret_expires = <Unix time>, or remove previous_secret")),
        (None, Some(exp)) => return Err(ctx.at(exp, format!("user `{name}` has previous_secret_expires without previous_secret"), "remove previous_secret_expires")),
    };
    Ok(User {
        name: name.to_string(),
        secret,
        kind,
        enabled: u.enabled.unwrap_or(true),
        previous_secret,
        created: u.created.clone(),
        rotated: u.rotated.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, String> {
        parse_str(text, Path::new("/etc/test.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn minimal_file_gets_defaults() {
        let c = parse("[users.a]\nsecret = \"00112233445566778899aabbccddeeff\"\n").unwrap();
        assert_eq!(c.users.len(), 1);
        assert_eq!(c.users[0].kind, SecretKind::Padded);
        assert_eq!(c.listen, vec!["0.0.0.0:8443".parse().unwrap()]);
        assert_eq!(c.timeouts.idle, d::IDLE_TIMEOUT);
        assert!(c.fronting.enabled);
    }

    #[test]
    fn errors_name_file_line_and_fix() {
        let e = parse("[server]\nworkers = 1\n\n[users.a]\nsecret = \"0011\"\n").unwrap_err();
        assert!(e.starts_with("/etc/test.toml:5: user `a`: a secret is 32 hexadecimal"), "{e}");
        assert!(e.contains("fix: "), "{e}");
        let e = parse("[server]\nworkers = 0\n").unwrap_err();
        assert!(e.starts_with("/etc/test.toml:2: `workers` = 0 is out of range"), "{e}");
        let e = parse("[server]\nlisten = [\"0.0.0.0:8443\"]\nbogus = 1\n").unwrap_err();
        assert!(e.starts_with("/etc/test.toml:3:") && e.contains("unknown field"), "{e}");
        let e = parse("[users.b]\nsecret = \"00112233445566778899aabbccddeeff\"\nkind = \"ee\"\n").unwrap_err();
        assert!(e.contains("has no domain"), "{e}");
        let e = parse("[timeouts]\nidle = \"5 weeks\"\n").unwrap_err();
        assert!(e.starts_with("/etc/test.toml:2:"), "{e}");
        let e = parse("[users.a]\nsecret = \"00112233445566778899aabbccddeeff\"\n[users.b]\nsecret = \"00112233445566778899aabbccddeeff\"\n").unwrap_err();
        assert!(e.contains("same secret"), "{e}");
        let e = parse("[dc_overrides]\nx = \"1.2.3.4:443\"\n").unwrap_err();
        assert!(e.contains("not a DC id"), "{e}");
    }

    #[test]
    fn secrets_never_appear_in_errors() {
        let e = parse("[users.a]\nsecret = \"00112233445566778899aabbccddeefX\"\n").unwrap_err();
        assert!(!e.contains("00112233445566778899"), "{e}");
        // Found by fuzz/fuzz_targets/config.rs: a secret line under `[users]` (no user name) used
        // to be echoed by serde's "invalid type: string \"…\"" message.
        let e = parse("[users]\nsecret = \"6c1b0e2f9a8d7c6b5a4f3e2d1c0b9a88\"\n").unwrap_err();
        assert!(e.starts_with("/etc/test.toml:2: invalid type: string, expected struct RawUser"), "{e}");
        assert!(!e.contains("6c1b0e2f"), "{e}");
        let e = parse("[server]\nworkers = \"6c1b0e2f9a8d7c6b5a4f3e2d1c0b9a88\"\n").unwrap_err();
        assert!(!e.contains("6c1b0e2f"), "{e}");
    }

    #[test]
    fn redaction_handles_escapes_and_several_strings() {
        assert_eq!(redact_strings(r#"invalid type: string "a\"b", expected x"#), "invalid type: string, expected x");
        assert_eq!(redact_strings(r#"string "x" and string "y" end"#), "string and string end");
        assert_eq!(redact_strings(r#"unterminated string "abc"#), "unterminated string");
        assert_eq!(redact_strings("no strings here"), "no strings here");
    }

    #[test]
    fn domains_and_names() {
        assert!(valid_domain("www.example.com"));
        assert!(!valid_domain("localhost"));
        assert!(!valid_domain("-bad.com"));
        assert!(valid_user_name("alice_1.x-y"));
        assert!(!valid_user_name("bad name"));
    }
}

#[cfg(test)]
mod example_file {
    #[test]
    fn the_documented_example_is_valid() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../config.example.toml");
        let c = super::super::load(std::path::Path::new(path)).unwrap();
        assert_eq!(c.users.len(), 2);
        assert_eq!(c.listen.len(), 2);
    }
}
