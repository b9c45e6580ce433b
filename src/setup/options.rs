//! What setup needs to know, where it comes from, and how each answer is checked.
//!
//! Answers come from three places, in this order of strength: command-line flags, the seed's
//! environment form (`MTPROXY_AUTO_MODE=yes`, `MTPROXY_PORT`, `MTPROXY_WORKERS`,
//! `MTPROXY_PADDING`), and an existing configuration (so a second run keeps what the first one
//! chose). Every value is checked by the same functions in both the wizard and the
//! non-interactive path, so both refuse the same things with the same words.

use std::path::{Path, PathBuf};

use mtproxy_core::config;
use mtproxy_proto::SecretKind;

/// Default folders of the VLESS host layout; every one can be overridden.
pub const DEFAULT_CONFIG_DIR: &str = "/opt/vless/config/mtproxy";
pub const DEFAULT_LOG_DIR: &str = "/opt/vless/logs/mtproxy";
pub const DEFAULT_DATA_DIR: &str = "/opt/vless/data/mtproxy";
pub const DEFAULT_INSTALL_DIR: &str = "/usr/local/bin";
pub const DEFAULT_UNIT_DIR: &str = "/etc/systemd/system";
pub const DEFAULT_LOGROTATE_DIR: &str = "/etc/logrotate.d";
/// The compose file of the VLESS stack, when it is installed.
pub const DEFAULT_VLESS_COMPOSE: &str = "/opt/vless/docker-compose.yml";
/// The configuration file's name inside the config folder.
pub const CONFIG_FILE: &str = "config.toml";
pub const DEFAULT_PORT: u16 = 8443;
pub const DEFAULT_WORKERS: usize = 1;
pub const MAX_WORKERS: usize = 256;
/// Cover domain offered when `ee` is chosen without one.
pub const DEFAULT_DOMAIN: &str = "www.cloudflare.com";

/// A bad answer: what is wrong and what would be right, ready to show.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct Invalid(pub String);

/// A secret kind as `--kind` or the wizard's kind question names it. `ee` is named without its
/// cover domain, which comes from `--domain`, an ee install, or the wizard's next question: until
/// then it is [`KindChoice::FakeTlsAwaitingDomain`], never a [`SecretKind`] with a made-up domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KindChoice {
    /// The kind with everything it needs (for ee, its domain).
    Ready(SecretKind),
    /// ee, its cover domain not known yet.
    FakeTlsAwaitingDomain,
}

impl KindChoice {
    /// The short name, as [`SecretKind::name`].
    pub fn name(&self) -> &'static str {
        match self {
            KindChoice::Ready(k) => k.name(),
            KindChoice::FakeTlsAwaitingDomain => "ee",
        }
    }

    /// The cover domain, once ee has one.
    pub fn domain(&self) -> Option<&str> {
        match self {
            KindChoice::Ready(SecretKind::FakeTls { domain }) => Some(domain),
            _ => None,
        }
    }

    /// An ee choice takes `domain` when there is one; other kinds have no domain and ignore it.
    pub fn with_domain(self, domain: Option<String>) -> KindChoice {
        match (self, domain) {
            (KindChoice::FakeTlsAwaitingDomain | KindChoice::Ready(SecretKind::FakeTls { .. }), Some(domain)) => {
                KindChoice::Ready(SecretKind::FakeTls { domain })
            }
            (choice, _) => choice,
        }
    }
}

/// How the proxy runs on this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    Docker,
    Podman,
    Systemd,
}

impl Runtime {
    pub fn name(self) -> &'static str {
        match self {
            Runtime::Docker => "docker",
            Runtime::Podman => "podman",
            Runtime::Systemd => "systemd",
        }
    }

    pub fn is_container(self) -> bool {
        !matches!(self, Runtime::Systemd)
    }

    pub fn parse(text: &str) -> Result<Self, Invalid> {
        match text.trim().to_ascii_lowercase().as_str() {
            "docker" => Ok(Runtime::Docker),
            "podman" => Ok(Runtime::Podman),
            "systemd" => Ok(Runtime::Systemd),
            other => Err(Invalid(format!("`{other}` is not a runtime; use docker, podman or systemd"))),
        }
    }
}

/// The answers that shape the configuration. `K` is the first user's kind: a [`SecretKind`] once
/// everything is known; a [`KindChoice`] in a [`Draft`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answers<K = SecretKind> {
    pub port: u16,
    pub workers: usize,
    pub kind: K,
    /// The promoted-channel tag (32 hex), lower case.
    pub ad_tag: Option<String>,
    pub public_host: Option<String>,
    /// Own-domain mode (the cover is this host's own site): `setup::owndomain`.
    pub own: Option<Box<crate::setup::owndomain::OwnDomain>>,
}

impl Default for Answers {
    fn default() -> Self {
        Answers { port: DEFAULT_PORT, workers: DEFAULT_WORKERS, kind: SecretKind::Padded, ad_tag: None, public_host: None, own: None }
    }
}

/// The answers as flags, the environment and an existing install give them, before the wizard
/// or a non-interactive run's last check: `--kind ee` may still await its cover domain.
pub type Draft = Answers<KindChoice>;

impl From<Answers> for Draft {
    fn from(a: Answers) -> Draft {
        Answers { port: a.port, workers: a.workers, kind: KindChoice::Ready(a.kind), ad_tag: a.ad_tag, public_host: a.public_host, own: a.own }
    }
}

impl Draft {
    /// The answers, once the kind is complete; `None` while ee awaits its cover domain.
    pub fn complete(self) -> Option<Answers> {
        match self.kind {
            KindChoice::Ready(kind) => {
                Some(Answers { port: self.port, workers: self.workers, kind, ad_tag: self.ad_tag, public_host: self.public_host, own: self.own })
            }
            KindChoice::FakeTlsAwaitingDomain => None,
        }
    }
}

/// Where things go on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    pub install_dir: PathBuf,
    pub config_dir: PathBuf,
    pub log_dir: PathBuf,
    pub data_dir: PathBuf,
    pub unit_dir: PathBuf,
    pub logrotate_dir: PathBuf,
    /// A VLESS compose file to add the service to, when it exists.
    pub vless_compose: PathBuf,
}

impl Paths {
    pub fn config_file(&self) -> PathBuf {
        self.config_dir.join(CONFIG_FILE)
    }
    pub fn log_file(&self) -> PathBuf {
        self.log_dir.join("proxy.log")
    }
    pub fn binary(&self) -> PathBuf {
        self.install_dir.join("vless-mtproxy")
    }
    /// Setup's own files (root only, out of the container's reach although the data folder
    /// is mounted into it): the install record, the image context, backups, our compose file.
    pub fn setup_dir(&self) -> PathBuf {
        setup_dir(&self.data_dir)
    }
    /// The record of what setup installed, read by uninstall.
    pub fn state_file(&self) -> PathBuf {
        state_file(&self.data_dir)
    }
    pub fn image_context(&self) -> PathBuf {
        self.setup_dir().join("image")
    }
    /// Our own compose file, written when no VLESS compose file exists.
    pub fn own_compose(&self) -> PathBuf {
        self.setup_dir().join("docker-compose.yml")
    }
    pub fn unit_file(&self) -> PathBuf {
        self.unit_dir.join("vless-mtproxy.service")
    }
    pub fn logrotate_file(&self) -> PathBuf {
        self.logrotate_dir.join("vless-mtproxy")
    }
    pub fn backup_dir(&self) -> PathBuf {
        self.setup_dir().join("backup")
    }
}

pub fn setup_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("setup")
}

pub fn state_file(data_dir: &Path) -> PathBuf {
    setup_dir(data_dir).join("install-state.toml")
}

pub fn parse_port(text: &str) -> Result<u16, Invalid> {
    let t = text.trim();
    match t.parse::<u32>() {
        Ok(p) if (1..=65535).contains(&p) => Ok(p as u16),
        _ => Err(Invalid(format!("`{t}` is not a port; use a number from 1 to 65535 (default {DEFAULT_PORT})"))),
    }
}

pub fn parse_workers(text: &str) -> Result<usize, Invalid> {
    let t = text.trim();
    match t.parse::<usize>() {
        Ok(w) if (1..=MAX_WORKERS).contains(&w) => Ok(w),
        _ => Err(Invalid(format!("`{t}` is not a worker count; use a number from 1 to {MAX_WORKERS} (1 is enough for most hosts)"))),
    }
}

pub fn parse_kind(text: &str) -> Result<KindChoice, Invalid> {
    match text.trim().to_ascii_lowercase().as_str() {
        "classic" | "plain" | "1" => Ok(KindChoice::Ready(SecretKind::Classic)),
        "dd" | "padded" | "2" => Ok(KindChoice::Ready(SecretKind::Padded)),
        "ee" | "fake-tls" | "faketls" | "3" => Ok(KindChoice::FakeTlsAwaitingDomain),
        other => Err(Invalid(format!("`{other}` is not a secret kind; use classic, dd (random padding) or ee (fake-TLS)"))),
    }
}

/// The cover domain, checked with the same rules the proxy applies when it loads the file.
pub fn parse_domain(text: &str) -> Result<String, Invalid> {
    let d = text.trim().trim_end_matches('.').to_ascii_lowercase();
    let probe = format!("[users.probe]\nsecret = \"{}\"\nkind = \"ee\"\ndomain = \"{}\"\n", "0".repeat(32), d.replace(['"', '\\'], ""));
    match config::parse_str(&probe, Path::new("domain")) {
        Ok(_) if !d.contains(['"', '\\']) => Ok(d),
        _ => Err(Invalid(format!(
            "`{d}` is not a usable cover domain; write a host name such as www.example.com (letters, digits, `-`, dots) of a real HTTPS site that is not blocked and is not your VPN's Reality destination"
        ))),
    }
}

/// The promoted-channel tag from @MTProxybot: 32 hex characters.
pub fn parse_ad_tag(text: &str) -> Result<String, Invalid> {
    let t = text.trim().to_ascii_lowercase();
    if t.len() == 32 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(t)
    } else {
        Err(Invalid("the promoted-channel tag is the 32 hex characters @MTProxybot gives (e.g. 0123456789abcdef0123456789abcdef)".into()))
    }
}

pub fn parse_public_host(text: &str) -> Result<String, Invalid> {
    let t = text.trim();
    let ok = !t.is_empty() && t.len() <= 253 && t.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b));
    if ok {
        Ok(t.trim_start_matches('[').trim_end_matches(']').to_string())
    } else {
        Err(Invalid(format!("`{t}` is not a host name or IP address; write what clients reach this server by, e.g. proxy.example.org or 203.0.113.7")))
    }
}

/// Yes/no answers: Enter gives the default.
pub fn parse_yes_no(text: &str, default: bool) -> Result<bool, Invalid> {
    match text.trim().to_ascii_lowercase().as_str() {
        "" => Ok(default),
        "y" | "yes" => Ok(true),
        "n" | "no" => Ok(false),
        other => Err(Invalid(format!("`{other}`: answer y or n"))),
    }
}

/// The seed's environment form. `MTPROXY_AUTO_MODE=yes` makes the run non-interactive;
/// `MTPROXY_PADDING=yes|no` chooses dd or classic secrets; `MTPROXY_OWN_DOMAIN=DOMAIN` (with
/// `MTPROXY_TLS_CERT`, `MTPROXY_TLS_KEY` when not certbot's files) chooses own-domain mode, as
/// `--own-domain`, `--cert` and `--key` do.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct EnvForm {
    pub auto: bool,
    pub port: Option<u16>,
    pub workers: Option<usize>,
    /// Classic or dd (`MTPROXY_PADDING`).
    pub kind: Option<SecretKind>,
    pub own_domain: Option<String>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

impl EnvForm {
    pub fn read(get: impl Fn(&str) -> Option<String>) -> Result<Self, Invalid> {
        let auto = match get("MTPROXY_AUTO_MODE") {
            None => false,
            Some(v) => parse_yes_no(&v, false).map_err(|_| Invalid(format!("MTPROXY_AUTO_MODE=`{v}`: use yes or no")))?,
        };
        let port = get("MTPROXY_PORT").map(|v| parse_port(&v).map_err(|e| Invalid(format!("MTPROXY_PORT: {e}")))).transpose()?;
        let workers = get("MTPROXY_WORKERS").map(|v| parse_workers(&v).map_err(|e| Invalid(format!("MTPROXY_WORKERS: {e}")))).transpose()?;
        let kind = match get("MTPROXY_PADDING") {
            None => None,
            Some(v) => Some(if parse_yes_no(&v, true).map_err(|_| Invalid(format!("MTPROXY_PADDING=`{v}`: use yes (dd secrets) or no (classic)")))? {
                SecretKind::Padded
            } else {
                SecretKind::Classic
            }),
        };
        let own_domain = get("MTPROXY_OWN_DOMAIN").map(|v| parse_domain(&v).map_err(|e| Invalid(format!("MTPROXY_OWN_DOMAIN: {e}")))).transpose()?;
        let cert = get("MTPROXY_TLS_CERT").map(PathBuf::from);
        let key = get("MTPROXY_TLS_KEY").map(PathBuf::from);
        Ok(EnvForm { auto, port, workers, kind, own_domain, cert, key })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_and_workers() {
        assert_eq!(parse_port(" 443 "), Ok(443));
        assert!(parse_port("0").is_err());
        assert!(parse_port("65536").unwrap_err().0.contains("1 to 65535"));
        assert!(parse_port("http").is_err());
        assert_eq!(parse_workers("4"), Ok(4));
        assert!(parse_workers("0").is_err());
        assert!(parse_workers("257").is_err());
    }

    #[test]
    fn kinds_domains_tags() {
        assert_eq!(parse_kind("EE"), Ok(KindChoice::FakeTlsAwaitingDomain));
        assert_eq!(parse_kind("2"), Ok(KindChoice::Ready(SecretKind::Padded)));
        assert_eq!(parse_kind(" plain "), Ok(KindChoice::Ready(SecretKind::Classic)));
        let ee = |d: &str| KindChoice::Ready(SecretKind::FakeTls { domain: d.into() });
        assert_eq!(KindChoice::FakeTlsAwaitingDomain.with_domain(Some("a.com".into())), ee("a.com"));
        assert_eq!(ee("a.com").with_domain(Some("b.com".into())), ee("b.com"));
        assert_eq!(ee("a.com").with_domain(None), ee("a.com"));
        assert_eq!(KindChoice::FakeTlsAwaitingDomain.with_domain(None), KindChoice::FakeTlsAwaitingDomain);
        assert_eq!(KindChoice::Ready(SecretKind::Classic).with_domain(Some("a.com".into())), KindChoice::Ready(SecretKind::Classic));
        assert!(parse_kind("tls").is_err());
        assert_eq!(parse_domain("WWW.Example.com."), Ok("www.example.com".into()));
        assert!(parse_domain("localhost").is_err());
        assert!(parse_domain("a\".com").is_err());
        assert!(parse_domain("-bad.com").is_err());
        assert_eq!(parse_ad_tag("0123456789ABCDEF0123456789abcdef").unwrap(), "0123456789abcdef0123456789abcdef");
        assert!(parse_ad_tag("0123").is_err());
        assert_eq!(parse_public_host("[2001:db8::1]"), Ok("2001:db8::1".into()));
        assert!(parse_public_host("a b").is_err());
    }

    #[test]
    fn seed_environment_form() {
        let env = |pairs: &'static [(&'static str, &'static str)]| move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string());
        let f = EnvForm::read(env(&[("MTPROXY_AUTO_MODE", "yes"), ("MTPROXY_PORT", "9443"), ("MTPROXY_WORKERS", "2"), ("MTPROXY_PADDING", "no")])).unwrap();
        assert_eq!(f, EnvForm { auto: true, port: Some(9443), workers: Some(2), kind: Some(SecretKind::Classic), ..EnvForm::default() });
        let o = EnvForm::read(env(&[("MTPROXY_OWN_DOMAIN", "Cover.Example.org"), ("MTPROXY_TLS_CERT", "/c.pem")])).unwrap();
        assert_eq!((o.own_domain.as_deref(), o.cert.as_deref(), o.key), (Some("cover.example.org"), Some(Path::new("/c.pem")), None));
        assert!(EnvForm::read(env(&[("MTPROXY_OWN_DOMAIN", "bad domain")])).unwrap_err().0.starts_with("MTPROXY_OWN_DOMAIN"));
        assert_eq!(EnvForm::read(env(&[])).unwrap(), EnvForm::default());
        assert!(EnvForm::read(env(&[("MTPROXY_PORT", "99999")])).unwrap_err().0.starts_with("MTPROXY_PORT"));
        assert!(EnvForm::read(env(&[("MTPROXY_AUTO_MODE", "maybe")])).is_err());
    }
}
