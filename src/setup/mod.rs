//! `vless-mtproxy setup` (also installed as `vless-mtproxy-setup`): one command from a bare
//! host to a running proxy and the first user's link.
//!
//! Answers come from the wizard, or from flags and the seed's environment form when run
//! non-interactively; then numbered steps check the host, create the folders, install the
//! binary, write the configuration, build the image or the unit, start the proxy and check its
//! health. Every step compares before it writes, so a second run with the same answers changes
//! nothing, and a run with new answers changes only those. Exit codes: 0 done, 1 error, 2 not
//! root, 3 a required host component is missing (named in the message).

mod compose;
pub mod config_step;
pub mod files;
pub mod host;
pub mod hostsec_step;
pub mod options;
mod own_step;
pub mod owndomain;
mod report;
mod run;
mod runtime;
pub mod state;
pub mod templates;
mod wizard;
pub mod xray;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use mtproxy_proto::SecretKind;
use options::{Answers, Draft, EnvForm, Invalid, KindChoice, Paths};

#[derive(clap::Args, Debug)]
pub struct SetupArgs {
    /// Ask nothing: take flags, the MTPROXY_* environment, an existing install, then defaults.
    #[arg(long)]
    non_interactive: bool,
    /// Port clients connect to (default 8443, or the installed one).
    #[arg(long)]
    port: Option<String>,
    /// Worker threads, 1-256.
    #[arg(long)]
    workers: Option<String>,
    /// Secret kind of the first user: classic, dd or ee.
    #[arg(long)]
    kind: Option<String>,
    /// Cover domain for ee (fake-TLS).
    #[arg(long)]
    domain: Option<String>,
    /// Promoted-channel tag from @MTProxybot (32 hex).
    #[arg(long)]
    ad_tag: Option<String>,
    /// Host name or address clients reach this server by (put in links).
    #[arg(long)]
    public_host: Option<String>,
    /// docker, podman or systemd (default: a working Docker, else Podman, else systemd).
    #[arg(long)]
    runtime: Option<String>,
    /// Container networking: host (default; client addresses stay visible to fail2ban and UFW
    /// rules apply) or publish (`-p PORT:PORT`; Docker's published ports bypass UFW).
    #[arg(long, value_parser = ["host", "publish"])]
    network: Option<String>,
    /// Name of the first user (fresh install only).
    #[arg(long, default_value = "default")]
    first_user: String,
    #[arg(long, default_value = options::DEFAULT_INSTALL_DIR)]
    install_dir: PathBuf,
    #[arg(long, default_value = options::DEFAULT_CONFIG_DIR)]
    config_dir: PathBuf,
    #[arg(long, default_value = options::DEFAULT_LOG_DIR)]
    log_dir: PathBuf,
    #[arg(long, default_value = options::DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
    #[arg(long, default_value = options::DEFAULT_UNIT_DIR)]
    unit_dir: PathBuf,
    #[arg(long, default_value = options::DEFAULT_LOGROTATE_DIR)]
    logrotate_dir: PathBuf,
    /// The VLESS stack's compose file; the service is added to it when it exists.
    #[arg(long, default_value = options::DEFAULT_VLESS_COMPOSE)]
    vless_compose: PathBuf,
    /// Send the proxy's connections to Telegram through the VLESS stack's Xray SOCKS inbound
    /// (a `socks` inbound on loopback in Xray's config; read only). Without this flag a
    /// non-interactive run does not; the wizard asks when it finds one.
    #[arg(long)]
    upstream_xray: bool,
    /// Turn the web panel on: read its password from stdin (one line) and store its hash with
    /// `set-panel-password` (docs/panel.md). Never give a password as an argument.
    #[arg(long)]
    panel_password_stdin: bool,
    /// Xray's config JSON (default: the VLESS layouts' usual places).
    #[arg(long, value_name = "FILE")]
    xray_config: Option<PathBuf>,
    /// Passed to `serve`: send DC ID to HOST:PORT (repeatable).
    #[arg(long = "dc-override", value_name = "ID=HOST:PORT")]
    dc_overrides: Vec<String>,
    /// Any other `serve` option, passed through (repeatable), e.g. --serve-arg=--drain=5s.
    #[arg(long = "serve-arg", value_name = "ARG", allow_hyphen_values = true)]
    serve_args: Vec<String>,
    /// UFW rule for the port: allow (default), limit (6 connections per 30 s per address:
    /// Telegram clients open several at once), or off.
    #[arg(long, default_value = "allow", value_parser = ["allow", "limit", "off"])]
    ufw: String,
    /// Options passed to `vless-mtproxy ufw` (tests: --ufw-rootdir DIR --ufw-datadir DIR).
    #[arg(long = "ufw-arg", value_name = "ARG", allow_hyphen_values = true, hide = true)]
    ufw_args: Vec<String>,
    /// fail2ban's folder; the filter and jail are written there when it exists.
    #[arg(long, default_value = "/etc/fail2ban")]
    fail2ban_dir: PathBuf,
    /// Which failures ban: all (default), replay-and-flood (for users behind carrier NAT), off.
    #[arg(long, default_value = "all", value_parser = ["all", "replay-and-flood", "off"])]
    fail2ban_mode: String,
    /// Seconds to wait for the proxy's health check.
    #[arg(long, default_value_t = 30)]
    health_timeout: u64,
    /// Write the files setup would install (unit, Containerfile, compose, logrotate) into DIR
    /// and stop; changes nothing else and needs no root.
    #[arg(long, value_name = "DIR")]
    render: Option<PathBuf>,
    /// Own-domain mode: DOMAIN points at this host and has a real certificate; its site on this
    /// host is the cover (docs/install.md, "Own domain"). Implies --kind ee --domain DOMAIN,
    /// --public-host DOMAIN and port 443 (8443 on 127.0.0.1 with --behind-haproxy).
    #[arg(long, value_name = "DOMAIN")]
    own_domain: Option<String>,
    /// The domain's certificate chain, PEM (default: certbot's LETSENCRYPT_DIR/live/DOMAIN/fullchain.pem).
    #[arg(long, value_name = "FILE")]
    cert: Option<PathBuf>,
    /// The certificate's private key, PEM (default: certbot's .../live/DOMAIN/privkey.pem).
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
    #[arg(long, default_value = owndomain::DEFAULT_LETSENCRYPT_DIR)]
    letsencrypt_dir: PathBuf,
    /// The cover web server: nginx (setup writes its site) or PORT / HOST:PORT of a web server on
    /// this host that already serves the domain with its certificate.
    #[arg(long, value_name = "nginx|HOST:PORT")]
    cover: Option<String>,
    /// The loopback port of the nginx site.
    #[arg(long, value_name = "PORT")]
    cover_port: Option<String>,
    /// What the nginx site serves: a folder of static pages (created with a placeholder page
    /// when missing), or the http:// address of a site to proxy to (the VLESS stack's fake site).
    #[arg(long, value_name = "DIR|URL")]
    site: Option<String>,
    #[arg(long, default_value = owndomain::DEFAULT_NGINX_CONF)]
    nginx_conf: PathBuf,
    /// A folder nginx's configuration includes; setup writes vless-mtproxy-cover.conf there.
    #[arg(long, default_value = owndomain::DEFAULT_NGINX_SITE_DIR)]
    nginx_site_dir: PathBuf,
    /// Replace an existing vless-mtproxy-cover.conf that setup did not write (a backup is kept
    /// and put back by uninstall).
    #[arg(long)]
    replace_nginx_site: bool,
    /// Own domain behind HAProxy on 443 (SNI routing next to VLESS-Reality): the proxy listens on
    /// 127.0.0.1:8443 with the PROXY protocol; setup writes the HAProxy lines to add.
    #[arg(long)]
    behind_haproxy: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("setup must run as root (sudo vless-mtproxy-setup)")]
    NotRoot,
    #[error(transparent)]
    Host(#[from] host::HostError),
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error(transparent)]
    Wizard(#[from] wizard::WizardError),
    #[error(transparent)]
    Config(#[from] config_step::ConfigStepError),
    #[error(transparent)]
    Runtime(#[from] runtime::RuntimeError),
    #[error(transparent)]
    Compose(#[from] compose::ComposeError),
    #[error(transparent)]
    File(#[from] files::FileError),
    #[error(transparent)]
    State(#[from] state::StateError),
    #[error(transparent)]
    Template(#[from] templates::TemplateError),
    #[error(transparent)]
    OwnDomain(#[from] owndomain::OwnDomainError),
    #[error("{0}")]
    Other(String),
}

impl SetupError {
    pub fn exit_code(&self) -> u8 {
        match self {
            SetupError::NotRoot => 2,
            SetupError::Host(host::HostError::Missing(..) | host::HostError::NoRuntime) => 3,
            _ => 1,
        }
    }
}

impl SetupArgs {
    pub(super) fn paths(&self) -> Paths {
        Paths {
            install_dir: self.install_dir.clone(),
            config_dir: self.config_dir.clone(),
            log_dir: self.log_dir.clone(),
            data_dir: self.data_dir.clone(),
            unit_dir: self.unit_dir.clone(),
            logrotate_dir: self.logrotate_dir.clone(),
            vless_compose: self.vless_compose.clone(),
        }
    }

    /// Start from `base` (an existing install or the defaults), then the environment, then flags.
    /// `--kind ee` without `--domain` keeps an ee install's domain; with neither, the result
    /// awaits its domain ([`KindChoice::FakeTlsAwaitingDomain`]).
    pub(super) fn answers(&self, base: Answers, env: &EnvForm) -> Result<Draft, Invalid> {
        let base_domain = match &base.kind {
            SecretKind::FakeTls { domain } => Some(domain.clone()),
            _ => None,
        };
        let mut a = Draft::from(base);
        a.port = env.port.unwrap_or(a.port);
        a.workers = env.workers.unwrap_or(a.workers);
        if let Some(k) = &env.kind {
            a.kind = KindChoice::Ready(k.clone());
        }
        if let Some(p) = &self.port {
            a.port = options::parse_port(p).map_err(|e| Invalid(format!("--port: {e}")))?;
        }
        if let Some(w) = &self.workers {
            a.workers = options::parse_workers(w).map_err(|e| Invalid(format!("--workers: {e}")))?;
        }
        if let Some(k) = &self.kind {
            a.kind = options::parse_kind(k).map_err(|e| Invalid(format!("--kind: {e}")))?;
        }
        let domain = match &self.domain {
            Some(d) => Some(options::parse_domain(d).map_err(|e| Invalid(format!("--domain: {e}")))?),
            None => base_domain,
        };
        a.kind = a.kind.with_domain(domain);
        if let Some(t) = &self.ad_tag {
            a.ad_tag = Some(options::parse_ad_tag(t).map_err(|e| Invalid(format!("--ad-tag: {e}")))?);
        }
        if let Some(h) = &self.public_host {
            a.public_host = Some(options::parse_public_host(h).map_err(|e| Invalid(format!("--public-host: {e}")))?);
        }
        Ok(a)
    }
}

pub fn run(args: SetupArgs) -> ExitCode {
    let state_file = options::state_file(&args.data_dir);
    let rendering = args.render.is_some();
    match run::run_inner(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            if !rendering && state_file.exists() {
                eprintln!(
                    "Fix the cause and run setup again, or undo what was done: vless-mtproxy uninstall --data-dir {}",
                    state_file.parent().and_then(|p| p.parent()).unwrap_or(Path::new("/")).display()
                );
            }
            ExitCode::from(e.exit_code())
        }
    }
}

/// For uninstall: stop and remove the container and the image with `runtime` (docker/podman).
pub fn runtime_remove(runtime: &str) -> Vec<String> {
    runtime::remove_container(runtime)
}

/// For uninstall: take our service out of the VLESS compose file; the backup made, if any.
pub fn compose_remove(path: &Path, backup_dir: &Path) -> Result<Option<PathBuf>, compose::ComposeError> {
    match compose::remove_from_existing(path, backup_dir)? {
        compose::Outcome::Written { backup } => Ok(backup),
        compose::Outcome::Unchanged => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        setup: SetupArgs,
    }

    fn draft(flags: &[&str], base: Answers, env: &EnvForm) -> Result<Draft, Invalid> {
        Cli::parse_from(std::iter::once("setup").chain(flags.iter().copied())).setup.answers(base, env)
    }

    #[test]
    fn kind_and_domain_from_flags_environment_and_install() {
        let ee = |d: &str| KindChoice::Ready(SecretKind::FakeTls { domain: d.into() });
        let fresh = EnvForm::default();
        let d = |flags: &[&str]| draft(flags, Answers::default(), &fresh).unwrap().kind;
        assert_eq!(d(&[]), KindChoice::Ready(SecretKind::Padded));
        assert_eq!(d(&["--kind", "ee"]), KindChoice::FakeTlsAwaitingDomain);
        assert_eq!(d(&["--kind", "faketls", "--domain", "WWW.Example.com"]), ee("www.example.com"));
        assert_eq!(d(&["--domain", "www.example.com"]), KindChoice::Ready(SecretKind::Padded), "a domain without ee is dropped");
        assert!(draft(&["--kind", "tls"], Answers::default(), &fresh).unwrap_err().0.starts_with("--kind: "));
        assert!(draft(&["--kind", "ee", "--domain", "localhost"], Answers::default(), &fresh).unwrap_err().0.starts_with("--domain: "));
        // An ee install keeps its domain, also when only --kind ee is repeated or the
        // environment asked for dd first; --domain replaces it.
        let installed = Answers { kind: SecretKind::FakeTls { domain: "a.example.com".into() }, ..Answers::default() };
        let padding = EnvForm { kind: Some(SecretKind::Padded), ..EnvForm::default() };
        assert_eq!(draft(&[], installed.clone(), &fresh).unwrap().kind, ee("a.example.com"));
        assert_eq!(draft(&["--kind", "ee"], installed.clone(), &padding).unwrap().kind, ee("a.example.com"));
        assert_eq!(draft(&[], installed.clone(), &padding).unwrap().kind, KindChoice::Ready(SecretKind::Padded));
        assert_eq!(draft(&["--domain", "b.example.com"], installed.clone(), &fresh).unwrap().kind, ee("b.example.com"));
        assert_eq!(draft(&["--kind", "classic"], installed, &fresh).unwrap().kind, KindChoice::Ready(SecretKind::Classic));
    }
}
