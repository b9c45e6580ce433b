//! Raw -> validated. Each check names the line of the offending value and says what would be
//! right.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use mtproxy_proto::{Secret, SecretKind};
use toml::Spanned;

use super::defaults as d;
use super::duration::parse_duration;
use super::raw::{DurationValue, RawConfig, RawUser, SizeValue, S};
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

    let proxy_protocol = proxy_protocol(&ctx, server)?;

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

    let cover_domains = match &raw.fake_tls.domains {
        None => d::COVER_DOMAINS.iter().map(|s| s.to_string()).collect(),
        Some(v) => {
            let mut out: Vec<String> = Vec::new();
            for item in v.get_ref() {
                let dom = item.trim().to_ascii_lowercase();
                if !valid_domain(&dom) {
                    return Err(ctx.at(v, format!("`fake_tls.domains`: `{item}` is not a valid domain"), "list host names such as \"www.example.com\""));
                }
                if out.contains(&dom) {
                    return Err(ctx.at(v, format!("`fake_tls.domains`: `{dom}` is listed twice"), "list each domain once"));
                }
                out.push(dom);
            }
            out
        }
    };
    let path_field = |v: &S<String>, field: &str| -> Result<Option<std::path::PathBuf>, ConfigError> {
        match v {
            None => Ok(None),
            Some(p) if p.get_ref().trim().is_empty() => Err(ctx.at(p, format!("`{field}` is empty"), "give a file path, or remove the line for the default")),
            Some(p) => Ok(Some(p.get_ref().trim().into())),
        }
    };
    let pid_file = path_field(&server.pid_file, "pid_file")?;
    let usage_file = path_field(&raw.limits.usage_file, "usage_file")?;

    let fake_tls = FakeTls {
        cover_domains,
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
        usage_file,
    };

    let stats_listen = match &raw.stats.listen {
        None => Some(d::STATS_LISTEN.parse().unwrap()),
        Some(v) if v.get_ref().trim().is_empty() || v.get_ref() == "off" => None,
        Some(v) => Some(v.get_ref().parse::<SocketAddr>().map_err(|_| ctx.at(v, format!("`stats.listen`: `{}` is not an address with a port", v.get_ref()), "write e.g. \"127.0.0.1:8888\", or \"off\""))?),
    };
    let stats_allow_remote = raw.stats.allow_remote.as_ref().map(|v| *v.get_ref()).unwrap_or(false);
    let stats_token = match &raw.stats.token {
        None => None,
        Some(v) => Some(BearerToken::new(v.get_ref()).map_err(|m| ctx.at(v, format!("`stats.token`: {m}"), "generate one with `head -c 24 /dev/urandom | base64`"))?),
    };
    if let Some(addr) = stats_listen {
        if !(addr.ip().is_loopback() || (stats_allow_remote && stats_token.is_some())) {
            let v = raw.stats.listen.as_ref().unwrap();
            return Err(ctx.at(
                v,
                format!("`stats.listen` = \"{addr}\" is not a loopback address; the statistics would be open to the network"),
                "keep \"127.0.0.1:8888\", or set both `allow_remote = true` and `token = \"...\"` in [stats]",
            ));
        }
    }
    if let (Some(v), None) = (&raw.stats.allow_remote, &stats_token) {
        if *v.get_ref() {
            return Err(ctx.at(v, "`stats.allow_remote = true` needs a bearer token", "add token = \"<16+ random characters>\" to [stats]"));
        }
    }

    let ad_tag = match &raw.promoted_channel.ad_tag {
        None => None,
        Some(v) if v.get_ref().is_empty() => None,
        Some(v) => {
            let mut tag = [0u8; 16];
            hex::decode_to_slice(v.get_ref().trim(), &mut tag).map_err(|_| ctx.at(v, "`ad_tag` is not 32 hexadecimal characters", "paste the proxy tag that @MTProxybot gave, e.g. \"0123456789abcdef0123456789abcdef\""))?;
            Some(tag)
        }
    };

    let middle = middle_settings(&ctx, &raw.promoted_channel)?;

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
        proxy_protocol,
        pid_file,
        timeouts,
        fake_tls,
        fronting,
        limits,
        dc_overrides,
        stats_listen,
        stats_allow_remote,
        stats_token,
        ad_tag,
        middle,
        users,
    })
}

fn proxy_protocol(ctx: &Ctx<'_>, server: &super::raw::RawServer) -> Result<ProxyProtocol, ConfigError> {
    let enabled = server.proxy_protocol.as_ref().map(|v| *v.get_ref()).unwrap_or(false);
    let mut trusted = Vec::new();
    if let Some(v) = &server.trusted_proxies {
        for item in v.get_ref() {
            let c = Cidr::parse(item).map_err(|m| ctx.at(v, format!("`trusted_proxies`: {m}"), "list addresses or networks of your front, e.g. [\"127.0.0.1/32\", \"10.0.0.0/8\"]"))?;
            trusted.push(c);
        }
    }
    if enabled && trusted.is_empty() {
        let at = match (&server.trusted_proxies, &server.proxy_protocol) {
            (Some(v), _) => v.span().start,
            (None, Some(p)) => p.span().start,
            (None, None) => 0,
        };
        return Err(ctx.err(at, "`proxy_protocol = true` but `trusted_proxies` is empty", "list the address of the front that sends the header, e.g. trusted_proxies = [\"127.0.0.1/32\"]"));
    }
    Ok(ProxyProtocol { enabled, trusted })
}

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
fn resolve(ctx: &Ctx<'_>, p: &str) -> std::path::PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        ctx.path.parent().unwrap_or(Path::new("")).join(p)
    }
}

fn middle_settings(ctx: &Ctx<'_>, raw: &super::raw::RawPromoted) -> Result<MiddleSettings, ConfigError> {
    let required = |v: &S<String>, field: &str, default: &str| -> Result<Source, ConfigError> {
        source(ctx, v, field, default)?.ok_or_else(|| {
            ctx.at(v.as_ref().unwrap(), format!("`{field}` cannot be off"), format!("remove the line to use Telegram's address ({default}), or give another URL or a file path"))
        })
    };
    let proxy_secret = required(&raw.proxy_secret_url, "proxy_secret_url", d::PROXY_SECRET_URL)?;
    let proxy_config = required(&raw.proxy_config_url, "proxy_config_url", d::PROXY_CONFIG_URL)?;
    let proxy_config_v6 = source(ctx, &raw.proxy_config_v6_url, "proxy_config_v6_url", d::PROXY_CONFIG_V6_URL)?;
    let cache_dir = match &raw.cache_dir {
        Some(v) if !v.get_ref().trim().is_empty() => resolve(ctx, v.get_ref().trim()),
        _ => resolve(ctx, d::MIDDLE_CACHE_DIR),
    };
    let refresh_interval = ctx.duration(&raw.refresh_interval, "refresh_interval", d::MIDDLE_REFRESH)?;
    if refresh_interval < Duration::from_secs(1) {
        return Err(ctx.at(raw.refresh_interval.as_ref().unwrap(), "`refresh_interval` is shorter than a second", "use e.g. \"1h\" (Telegram asks for about once a day)"));
    }
    let nat_ip = match &raw.nat_ip {
        None => None,
        Some(v) if v.get_ref().trim().is_empty() => None,
        Some(v) => Some(v.get_ref().trim().parse::<std::net::IpAddr>().map_err(|_| {
            ctx.at(v, format!("`nat_ip`: `{}` is not an IP address", v.get_ref().trim()), "write the public IPv4 or IPv6 address of this host, e.g. \"203.0.113.7\"")
        })?),
    };
    let connections_per_dc = ctx.int(&raw.connections_per_dc, "connections_per_dc", 1, 64, d::MIDDLE_CONNECTIONS as i64)? as usize;
    Ok(MiddleSettings { proxy_secret, proxy_config, proxy_config_v6, cache_dir, refresh_interval, nat_ip, connections_per_dc })
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
    let count = |v: &S<i64>, field: &str| -> Result<Option<u32>, ConfigError> {
        v.as_ref().map(|_| ctx.int(v, field, 1, 1_000_000, 0).map(|n| n as u32)).transpose()
    };
    let quota_bytes = match &u.quota {
        None => None,
        Some(v) => Some(match v.get_ref() {
            SizeValue::Bytes(n) if *n >= 1 => *n as u64,
            SizeValue::Bytes(n) => return Err(ctx.at(v, format!("user `{name}`: quota {n} is not positive"), "give a size such as \"10GiB\", or remove the line for no quota")),
            SizeValue::Text(t) => parse_size(t).map_err(|m| ctx.at(v, format!("user `{name}`: {m}"), "give a size such as \"10GiB\""))?,
        }),
    };
    let quota_monthly = match &u.quota_reset {
        None => false,
        Some(v) => match v.get_ref().as_str() {
            "monthly" => true,
            "never" => false,
            other => return Err(ctx.at(v, format!("user `{name}`: quota_reset = \"{other}\" is not known"), "use \"monthly\" (counted per calendar month, UTC) or \"never\"")),
        },
    };
    let expires = match &u.expires {
        None => None,
        Some(v) => {
            let secs = super::date::parse_expiry(v.get_ref()).map_err(|m| ctx.at(v, format!("user `{name}` expires: {m}"), "e.g. expires = \"2026-12-31\""))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_limits_cover_domains_and_paths() {
        let c = parse("[server]\npid_file = \"/run/p.pid\"\n[fake_tls]\ndomains = [\"Www.Example.com\"]\n[limits]\nusage_file = \"/var/lib/u\"\n[users.a]\nsecret = \"00112233445566778899aabbccddeeff\"\nmax_connections = 3\nmax_ips = 2\nquota = \"1.5GiB\"\nquota_reset = \"monthly\"\nexpires = \"2030-01-31\"\n").unwrap();
        let l = &c.users[0].limits;
        assert_eq!(l.max_connections, Some(3));
        assert_eq!(l.max_ips, Some(2));
        assert_eq!(l.quota_bytes, Some(3 << 29));
        assert!(l.quota_monthly);
        assert_eq!(l.expires, Some(UNIX_EPOCH + Duration::from_secs(super::super::date::parse_expiry("2030-02-01T00:00:00Z").unwrap() as u64)));
        assert_eq!(c.fake_tls.cover_domains, vec!["www.example.com".to_string()]);
        assert_eq!(c.pid_file.as_deref(), Some(Path::new("/run/p.pid")));
        assert_eq!(c.limits.usage_file.as_deref(), Some(Path::new("/var/lib/u")));
        let d = parse("[users.a]\nsecret = \"00112233445566778899aabbccddeeff\"\n").unwrap();
        assert_eq!(d.users[0].limits, UserLimits::default());
        assert_eq!(d.fake_tls.cover_domains.len(), d::COVER_DOMAINS.len());
        assert_eq!(d.pid_path(Path::new("/etc/x.toml")), Path::new("/etc/x.toml.pid"));
    }

    #[test]
    fn bad_limits_name_their_line() {
        let base = "[users.a]\nsecret = \"00112233445566778899aabbccddeeff\"\n";
        for (extra, want) in [
            ("max_connections = 0\n", "`max_connections` = 0 is out of range"),
            ("max_ips = -1\n", "`max_ips` = -1 is out of range"),
            ("quota = \"lots\"\n", "is not a size"),
            ("quota = 0\n", "not positive"),
            ("quota_reset = \"weekly\"\n", "quota_reset"),
            ("expires = \"2025-02-30\"\n", "not a calendar date"),
        ] {
            let e = parse(&format!("{base}{extra}")).unwrap_err();
            assert!(e.starts_with("/etc/test.toml:3:") && e.contains(want), "{extra}: {e}");
        }
        let e = parse("[fake_tls]\ndomains = [\"bad domain\"]\n").unwrap_err();
        assert!(e.starts_with("/etc/test.toml:2:"), "{e}");
        assert_eq!(parse_size("10GiB"), Ok(10 << 30));
        assert_eq!(parse_size("500MB"), Ok(500_000_000));
        assert_eq!(parse_size("123"), Ok(123));
        assert!(parse_size("5 parsecs").is_err());
    }

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
        let e = parse("[promoted_channel]\nnat_ip = \"1.2.3\"\n").unwrap_err();
        assert!(e.starts_with("/etc/test.toml:2: `nat_ip`"), "{e}");
        let e = parse("[promoted_channel]\n\nproxy_config_url = \"ftp://x/y\"\n").unwrap_err();
        assert!(e.starts_with("/etc/test.toml:3: `proxy_config_url`: only http"), "{e}");
        let e = parse("[promoted_channel]\nproxy_secret_url = \"off\"\n").unwrap_err();
        assert!(e.starts_with("/etc/test.toml:2: `proxy_secret_url` cannot be off"), "{e}");
        let e = parse("[promoted_channel]\nconnections_per_dc = 0\n").unwrap_err();
        assert!(e.starts_with("/etc/test.toml:2: `connections_per_dc` = 0 is out of range"), "{e}");
    }

    #[test]
    fn middle_settings_defaults_and_paths() {
        let c = parse("").unwrap();
        assert_eq!(c.middle.proxy_secret, Source::Url(d::PROXY_SECRET_URL.into()));
        assert_eq!(c.middle.proxy_config_v6, Some(Source::Url(d::PROXY_CONFIG_V6_URL.into())));
        assert_eq!(c.middle.cache_dir, Path::new("/etc/middle-cache"));
        assert_eq!(c.middle.connections_per_dc, d::MIDDLE_CONNECTIONS);
        let c = parse("[promoted_channel]\nproxy_secret_url = \"secret.bin\"\nproxy_config_url = \"http://127.0.0.1:9/c\"\nproxy_config_v6_url = \"off\"\ncache_dir = \"/var/cache/x\"\nnat_ip = \"203.0.113.7\"\nrefresh_interval = \"10m\"\n").unwrap();
        assert_eq!(c.middle.proxy_secret, Source::File("/etc/secret.bin".into()));
        assert_eq!(c.middle.proxy_config, Source::Url("http://127.0.0.1:9/c".into()));
        assert_eq!(c.middle.proxy_config_v6, None);
        assert_eq!(c.middle.cache_dir, Path::new("/var/cache/x"));
        assert_eq!(c.middle.nat_ip, Some("203.0.113.7".parse().unwrap()));
        assert_eq!(c.middle.refresh_interval, Duration::from_secs(600));
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
    fn proxy_protocol_settings() {
        let c = parse("[server]\nproxy_protocol = true\ntrusted_proxies = [\"127.0.0.1/32\", \"10.0.0.0/8\", \"::1\"]\n").unwrap();
        assert!(c.proxy_protocol.enabled);
        assert!(c.proxy_protocol.trusts("10.2.3.4".parse().unwrap()));
        assert!(c.proxy_protocol.trusts("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!c.proxy_protocol.trusts("192.0.2.1".parse().unwrap()));
        let off = parse("[server]\ntrusted_proxies = [\"127.0.0.1\"]\n").unwrap();
        assert!(!off.proxy_protocol.trusts("127.0.0.1".parse().unwrap()));
        assert!(!parse("").unwrap().proxy_protocol.enabled);
        let e = parse("[server]\nworkers = 1\nproxy_protocol = true\n").unwrap_err();
        assert!(e.starts_with("/etc/test.toml:3:") && e.contains("trusted_proxies` is empty"), "{e}");
        let e = parse("[server]\nproxy_protocol = true\ntrusted_proxies = [\"10.0.0.1/8\"]\n").unwrap_err();
        assert!(e.starts_with("/etc/test.toml:3: `trusted_proxies`:") && e.contains("10.0.0.0/8"), "{e}");
        let e = parse("[server]\n\ntrusted_proxies = [\"haproxy\"]\n").unwrap_err();
        assert!(e.starts_with("/etc/test.toml:3:") && e.contains("fix: "), "{e}");
    }

    #[test]
    fn stats_listener_stays_local_unless_flag_and_token() {
        let c = parse("").unwrap();
        assert_eq!(c.stats_listen, Some("127.0.0.1:8888".parse().unwrap()));
        assert!(!c.stats_allow_remote && c.stats_token.is_none());
        assert!(parse("[stats]\nlisten = \"[::1]:9000\"\n").is_ok());
        let e = parse("[stats]\nlisten = \"0.0.0.0:8888\"\n").unwrap_err();
        assert!(e.starts_with("/etc/test.toml:2: `stats.listen` = \"0.0.0.0:8888\" is not a loopback"), "{e}");
        let e = parse("[stats]\nlisten = \"0.0.0.0:8888\"\nallow_remote = true\n").unwrap_err();
        assert!(e.contains("not a loopback"), "{e}");
        let e = parse("[stats]\nallow_remote = true\n").unwrap_err();
        assert!(e.starts_with("/etc/test.toml:2: `stats.allow_remote = true` needs a bearer token"), "{e}");
        let e = parse("[stats]\ntoken = \"short-secret\"\n").unwrap_err();
        assert!(e.starts_with("/etc/test.toml:2: `stats.token`") && !e.contains("short-secret"), "{e}");
        let c = parse("[stats]\nlisten = \"0.0.0.0:8888\"\nallow_remote = true\ntoken = \"abcdefghijklmnop-123\"\n").unwrap();
        assert_eq!(c.stats_token.as_ref().unwrap().as_str(), "abcdefghijklmnop-123");
        assert!(!format!("{c:?}").contains("abcdefghijklmnop"), "Debug must not show the token");
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
