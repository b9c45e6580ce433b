//! Telegram's middle-proxy configuration: the proxy secret and the `proxy_for` lists (IPv4 and
//! IPv6), docs/protocol.md §5.1–5.2.
//!
//! Each piece is fetched from its configured source (an http(s) URL — Telegram's published
//! ones by default — or a file), validated, and written to the cache directory. A piece that
//! cannot be fetched or does not validate keeps the copy in force. At start the pieces come
//! from, in order: a configured file, the cache, the copy shipped in the binary (the values of
//! docs/protocol.md §5.1–5.2), so the proxy can serve before its first fetch and with Telegram's
//! addresses unreachable from this host.
//!
//! With `[upstream]` servers, the fetch goes through the first `socks5` / `http` entry that
//! carries every DC (`MiddleSettings::fetch_via`), as ureq's proxy (its `socks-proxy` feature;
//! HTTP CONNECT is built in), so a host whose route to Telegram is filtered can still refresh.

use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use mtproxy_proto::rpc::conf::{self, ProxyMultiConf};
use mtproxy_proto::rpc::msg::BUNDLED_PROXY_SECRET;

use crate::config::{MiddleSettings, Source, UpstreamKind, UpstreamServer};

/// The shipped `proxy-multi.conf` (docs/protocol.md §5.2 snapshot, the lines it lists).
pub const BUNDLED_CONFIG_V4: &str = "default 2;
proxy_for 1 149.154.175.50:8888;
proxy_for -1 149.154.175.50:8888;
proxy_for 2 149.154.161.144:8888;
proxy_for -2 149.154.161.184:8888;
proxy_for 203 91.105.192.110:443;
proxy_for -203 91.105.192.110:443;
proxy_for 3 149.154.175.100:8888;
proxy_for -3 149.154.175.100:8888;
proxy_for 4 91.108.4.217:8888;
proxy_for -4 149.154.165.250:8888;
proxy_for -4 149.154.165.109:8888;
proxy_for 5 91.108.56.152:8888;
proxy_for 5 91.108.56.103:8888;
proxy_for -5 91.108.56.152:8888;
proxy_for -5 91.108.56.103:8888;
";

/// The shipped IPv6 list (docs/protocol.md §5.2, mtprotoproxy's built-in table).
pub const BUNDLED_CONFIG_V6: &str = "default 2;
proxy_for 1 [2001:b28:f23d:f001::d]:8888;
proxy_for 2 [2001:67c:04e8:f002::d]:80;
proxy_for 3 [2001:b28:f23d:f003::d]:8888;
proxy_for 4 [2001:67c:04e8:f004::d]:8888;
proxy_for 5 [2001:b28:f23f:f005::d]:8888;
";

/// The largest document accepted from a source.
const MAX_BODY: u64 = 1024 * 1024;
/// Per fetch.
const FETCH_TIMEOUT: Duration = Duration::from_secs(15);

/// Accepted proxy secret lengths (the official proxy's `--aes-pwd` bounds).
const SECRET_LEN: std::ops::RangeInclusive<usize> = 32..=256;

/// Why a piece could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{source_name}: {message}")]
    Fetch { source_name: String, message: String },
    #[error("{source_name}: not a usable proxy secret ({len} bytes; expected {min}..{max})", min = SECRET_LEN.start(), max = SECRET_LEN.end())]
    BadSecret { source_name: String, len: usize },
    #[error("{source_name}: not a usable proxy-multi.conf: {error}")]
    BadConfig { source_name: String, error: conf::ConfError },
}

/// What the ME path currently uses.
#[derive(Clone, PartialEq, Eq)]
pub struct MeConfig {
    pub secret: Vec<u8>,
    pub v4: ProxyMultiConf,
    pub v6: Option<ProxyMultiConf>,
}

impl std::fmt::Debug for MeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the proxy secret.
        f.debug_struct("MeConfig").field("v4", &self.v4).field("v6", &self.v6).finish_non_exhaustive()
    }
}

const SECRET_FILE: &str = "proxy-secret";
const V4_FILE: &str = "proxy-multi.conf";
const V6_FILE: &str = "proxy-multi-v6.conf";

/// The proxy URL ureq takes for an `[upstream]` server. ureq splits the credentials at the
/// first `:` and reads no percent escapes, and takes no IPv6 literal: such a server is refused
/// here (the fetch then fails with that reason; direct would bypass what the admin asked for).
fn proxy_url(via: &UpstreamServer) -> Result<String, String> {
    let (scheme, address, credentials) = match &via.kind {
        UpstreamKind::Direct => return Err("direct".into()),
        UpstreamKind::Socks5 { address, credentials } => ("socks5", address, credentials),
        UpstreamKind::Http { address, credentials } => ("http", address, credentials),
    };
    if address.host.contains(':') {
        return Err(format!("upstream `{}`: the fetch cannot use an IPv6 literal address ({address})", via.name));
    }
    let creds = match credentials {
        None => String::new(),
        Some(c) if c.username.contains(':') || c.username.contains('@') => {
            return Err(format!("upstream `{}`: the fetch cannot use a username with `:` or `@`", via.name));
        }
        Some(c) => format!("{}:{}@", c.username, c.password),
    };
    Ok(format!("{scheme}://{creds}{}:{}", address.host, address.port))
}

fn fetch_blocking(src: &Source, via: Option<&UpstreamServer>) -> Result<Vec<u8>, SourceError> {
    let err = |m: String| SourceError::Fetch { source_name: src.to_string(), message: m };
    match src {
        Source::File(p) => {
            let f = std::fs::File::open(p).map_err(|e| err(e.to_string()))?;
            let mut out = Vec::new();
            f.take(MAX_BODY + 1).read_to_end(&mut out).map_err(|e| err(e.to_string()))?;
            if out.len() as u64 > MAX_BODY {
                return Err(err(format!("larger than {MAX_BODY} bytes")));
            }
            Ok(out)
        }
        Source::Url(u) => {
            let mut builder = ureq::AgentBuilder::new().timeout(FETCH_TIMEOUT).redirects(3).resolver(super::dns::Resolver { servers: None, system: true });
            if let Some(v) = via {
                // The error names the server, never the URL (it holds the password).
                let url = proxy_url(v).map_err(err)?;
                let proxy = ureq::Proxy::new(url).map_err(|_| err(format!("upstream `{}` cannot be used as ureq's proxy", v.name)))?;
                builder = builder.proxy(proxy);
            }
            let agent = builder.build();
            let via_name = via.map(|v| format!(" (via upstream `{}`)", v.name)).unwrap_or_default();
            let mut req = agent.get(u);
            // ureq authenticates to an HTTP proxy in its CONNECT (https URLs) but not on a plain
            // http request, which goes to the proxy in absolute form: add the header there. (On
            // https it would travel inside the tunnel to the origin, so never then.)
            if let Some(UpstreamServer { kind: UpstreamKind::Http { credentials: Some(c), .. }, .. }) = via {
                if u.starts_with("http://") {
                    req = req.set("Proxy-Authorization", &mtproxy_proto::http_connect::basic_credentials(&c.username, &c.password));
                }
            }
            let resp = req.call().map_err(|e| match e {
                ureq::Error::Status(code, _) => err(format!("HTTP status {code}{via_name}")),
                // ureq's transport errors may quote the proxy URL: only its kind is kept then.
                ureq::Error::Transport(t) if via.is_some() => err(format!("{}{via_name}", t.kind())),
                ureq::Error::Transport(t) => err(t.to_string()),
            })?;
            let mut out = Vec::new();
            resp.into_reader().take(MAX_BODY + 1).read_to_end(&mut out).map_err(|e| err(e.to_string()))?;
            if out.len() as u64 > MAX_BODY {
                return Err(err(format!("larger than {MAX_BODY} bytes")));
            }
            Ok(out)
        }
    }
}

async fn fetch(src: &Source, via: Option<&UpstreamServer>) -> Result<Vec<u8>, SourceError> {
    let s = src.clone();
    let via = via.cloned();
    tokio::task::spawn_blocking(move || fetch_blocking(&s, via.as_ref()))
        .await
        .unwrap_or_else(|e| Err(SourceError::Fetch { source_name: src.to_string(), message: e.to_string() }))
}

fn check_secret(src: &Source, bytes: Vec<u8>) -> Result<Vec<u8>, SourceError> {
    if SECRET_LEN.contains(&bytes.len()) {
        Ok(bytes)
    } else {
        Err(SourceError::BadSecret { source_name: src.to_string(), len: bytes.len() })
    }
}

fn check_conf(src: &Source, bytes: &[u8]) -> Result<ProxyMultiConf, SourceError> {
    let text = String::from_utf8_lossy(bytes);
    conf::parse(&text).map_err(|error| SourceError::BadConfig { source_name: src.to_string(), error })
}

/// The configuration to start with: configured files, then the cache, then the shipped copy.
/// Reads local files only; never the network.
pub fn initial(settings: &MiddleSettings) -> MeConfig {
    // A configured file first, then the cached copy; the first one that validates wins.
    fn local<T>(src: &Source, cache: &Path, name: &str, check: impl Fn(&Source, Vec<u8>) -> Result<T, SourceError>) -> Option<T> {
        let cached = Source::File(cache.join(name));
        let configured = matches!(src, Source::File(_)).then_some(src);
        configured.into_iter().chain(std::iter::once(&cached)).find_map(|s| fetch_blocking(s, None).and_then(|b| check(s, b)).ok())
    }
    let cache = &settings.cache_dir;
    let secret = local(&settings.proxy_secret, cache, SECRET_FILE, check_secret).unwrap_or_else(|| BUNDLED_PROXY_SECRET.to_vec());
    let v4 =
        local(&settings.proxy_config, cache, V4_FILE, |s, b| check_conf(s, &b)).unwrap_or_else(|| conf::parse(BUNDLED_CONFIG_V4).expect("bundled list parses"));
    let v6 = settings
        .proxy_config_v6
        .as_ref()
        .map(|src| local(src, cache, V6_FILE, |s, b| check_conf(s, &b)).unwrap_or_else(|| conf::parse(BUNDLED_CONFIG_V6).expect("bundled list parses")));
    MeConfig { secret, v4, v6 }
}

/// Fetch every piece; pieces that fail keep `current`'s value. Returns the new configuration
/// and the errors of the pieces that failed.
pub async fn refresh(settings: &MiddleSettings, current: &MeConfig) -> (MeConfig, Vec<SourceError>) {
    let mut errors = Vec::new();
    let mut next = current.clone();
    match fetch(&settings.proxy_secret, settings.fetch_via.as_ref()).await.and_then(|b| check_secret(&settings.proxy_secret, b)) {
        Ok(s) => next.secret = s,
        Err(e) => errors.push(e),
    }
    match fetch(&settings.proxy_config, settings.fetch_via.as_ref()).await.and_then(|b| check_conf(&settings.proxy_config, &b)) {
        Ok(c) => next.v4 = c,
        Err(e) => errors.push(e),
    }
    match &settings.proxy_config_v6 {
        None => next.v6 = None,
        Some(src) => match fetch(src, settings.fetch_via.as_ref()).await.and_then(|b| check_conf(src, &b)) {
            Ok(c) => next.v6 = Some(c),
            Err(e) => {
                if next.v6.is_none() {
                    next.v6 = conf::parse(BUNDLED_CONFIG_V6).ok();
                }
                errors.push(e)
            }
        },
    }
    (next, errors)
}

fn write_atomic(dir: &Path, name: &str, data: &[u8], mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join(name))
}

/// Keep the configuration in the cache directory (the secret 0600).
pub fn save_cache(dir: &Path, c: &MeConfig) -> std::io::Result<()> {
    write_atomic(dir, SECRET_FILE, &c.secret, 0o600)?;
    write_atomic(dir, V4_FILE, c.v4.to_text().as_bytes(), 0o644)?;
    if let Some(v6) = &c.v6 {
        write_atomic(dir, V6_FILE, v6.to_text().as_bytes(), 0o644)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(dir: &Path) -> MiddleSettings {
        MiddleSettings {
            proxy_secret: Source::File(dir.join("missing-secret")),
            proxy_config: Source::File(dir.join("missing-conf")),
            proxy_config_v6: Some(Source::File(dir.join("missing-v6"))),
            cache_dir: dir.join("cache"),
            refresh_interval: Duration::from_secs(60),
            nat_ip: None,
            connections_per_dc: 2,
            fetch_via: None,
        }
    }

    #[test]
    fn proxy_urls_for_ureq() {
        use crate::config::{Credentials, DcSelection, HostPort};
        let server = |kind| UpstreamServer { name: "x".into(), kind, weight: 1, dcs: DcSelection::all() };
        let hp = |s: &str| HostPort::parse(s).unwrap();
        let creds = |u: &str, p: &str| Some(Credentials { username: u.into(), password: p.into() });
        assert_eq!(proxy_url(&server(UpstreamKind::Socks5 { address: hp("127.0.0.1:1080"), credentials: None })).unwrap(), "socks5://127.0.0.1:1080");
        assert_eq!(
            proxy_url(&server(UpstreamKind::Http { address: hp("proxy.lan:3128"), credentials: creds("u", "p:@w") })).unwrap(),
            "http://u:p:@w@proxy.lan:3128"
        );
        let e = proxy_url(&server(UpstreamKind::Socks5 { address: hp("[::1]:1080"), credentials: None })).unwrap_err();
        assert!(e.contains("IPv6"), "{e}");
        let e = proxy_url(&server(UpstreamKind::Socks5 { address: hp("127.0.0.1:1080"), credentials: creds("a:b", "secret-pw") })).unwrap_err();
        assert!(e.contains("username") && !e.contains("secret-pw"), "{e}");
        let p = ureq::Proxy::new(proxy_url(&server(UpstreamKind::Http { address: hp("proxy.lan:3128"), credentials: creds("u", "p:@w") })).unwrap());
        assert!(p.is_ok());
    }

    #[test]
    fn bundled_then_cache_then_file() {
        let dir = tempfile::tempdir().unwrap();
        let s = settings(dir.path());
        let c = initial(&s);
        assert_eq!(c.secret, BUNDLED_PROXY_SECRET.to_vec());
        assert_eq!(c.v4.default, Some(2));
        assert_eq!(c.v4.targets(2).unwrap()[0], "149.154.161.144:8888".parse().unwrap());
        assert_eq!(c.v6.as_ref().unwrap().targets(2).unwrap()[0], "[2001:67c:4e8:f002::d]:80".parse().unwrap());

        let cached = MeConfig { secret: vec![7; 64], v4: conf::parse("proxy_for 2 127.0.0.1:1;").unwrap(), v6: None };
        save_cache(&s.cache_dir, &cached).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(s.cache_dir.join(SECRET_FILE)).unwrap().permissions().mode() & 0o777, 0o600);
        let c = initial(&s);
        assert_eq!((c.secret.clone(), c.v4.clone()), (cached.secret.clone(), cached.v4.clone()));

        std::fs::write(dir.path().join("missing-conf"), "proxy_for 2 127.0.0.1:2;").unwrap();
        std::fs::write(dir.path().join("missing-secret"), [1u8; 8]).unwrap(); // too short: ignored
        let c = initial(&s);
        assert_eq!(c.v4.targets(2).unwrap()[0], "127.0.0.1:2".parse().unwrap());
        assert_eq!(c.secret, cached.secret);
    }

    #[tokio::test]
    async fn failed_pieces_keep_the_current_copy() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = settings(dir.path());
        let current = initial(&s);
        std::fs::write(dir.path().join("conf"), "default 2; proxy_for 2 127.0.0.1:5;").unwrap();
        s.proxy_config = Source::File(dir.path().join("conf"));
        s.proxy_secret = Source::Url("http://127.0.0.1:1/secret".into());
        let (next, errors) = refresh(&s, &current).await;
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].to_string().starts_with("http://127.0.0.1:1/secret: "), "{}", errors[0]);
        assert_eq!(next.secret, current.secret);
        assert_eq!(next.v4.targets(7).unwrap()[0], "127.0.0.1:5".parse().unwrap());
        std::fs::write(dir.path().join("conf"), "<html>not found</html>").unwrap();
        let (next2, errors) = refresh(&s, &next).await;
        assert!(errors.iter().any(|e| matches!(e, SourceError::BadConfig { .. })));
        assert_eq!(next2.v4, next.v4);
    }
}
