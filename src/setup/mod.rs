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
pub mod owndomain;
mod runtime;
pub mod state;
pub mod templates;
mod wizard;
pub mod xray;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use options::{Answers, EnvForm, Invalid, Kind, Paths, Runtime};
use owndomain::{Content, Cover, OwnDomain};
use state::{InstallState, OwnDomainState};
use templates::{ContainerSpec, IMAGE, SERVICE};

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
    fn paths(&self) -> Paths {
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
    fn answers(&self, base: Answers, env: &EnvForm) -> Result<Answers, Invalid> {
        let mut a = base;
        a.port = env.port.unwrap_or(a.port);
        a.workers = env.workers.unwrap_or(a.workers);
        a.kind = env.kind.unwrap_or(a.kind);
        if let Some(p) = &self.port {
            a.port = options::parse_port(p).map_err(|e| Invalid(format!("--port: {e}")))?;
        }
        if let Some(w) = &self.workers {
            a.workers = options::parse_workers(w).map_err(|e| Invalid(format!("--workers: {e}")))?;
        }
        if let Some(k) = &self.kind {
            a.kind = options::parse_kind(k).map_err(|e| Invalid(format!("--kind: {e}")))?;
        }
        if let Some(d) = &self.domain {
            a.domain = Some(options::parse_domain(d).map_err(|e| Invalid(format!("--domain: {e}")))?);
        }
        if a.kind != Kind::Ee {
            a.domain = None;
        }
        if let Some(t) = &self.ad_tag {
            a.ad_tag = Some(options::parse_ad_tag(t).map_err(|e| Invalid(format!("--ad-tag: {e}")))?);
        }
        if let Some(h) = &self.public_host {
            a.public_host = Some(options::parse_public_host(h).map_err(|e| Invalid(format!("--public-host: {e}")))?);
        }
        Ok(a)
    }
}

impl SetupArgs {
    fn nginx_paths(&self) -> owndomain::NginxPaths {
        owndomain::NginxPaths { conf: self.nginx_conf.clone(), site_dir: self.nginx_site_dir.clone() }
    }

    /// The own-domain plan from flags, the environment and the last install, checked; None when
    /// own-domain mode is not chosen.
    fn own_domain(&self, env: &EnvForm, previous: Option<&OwnDomainState>) -> Result<Option<OwnDomain>, Invalid> {
        let domain = match (&self.own_domain, &env.own_domain, previous) {
            (Some(d), _, _) => options::parse_domain(d).map_err(|e| Invalid(format!("--own-domain: {e}")))?,
            (None, Some(d), _) => d.clone(),
            (None, None, Some(p)) => p.domain.clone(),
            (None, None, None) => {
                if self.cert.is_some() || self.key.is_some() || self.cover.is_some() || self.site.is_some() || self.behind_haproxy {
                    return Err(Invalid("--cert, --key, --cover, --site and --behind-haproxy belong to own-domain mode: add --own-domain DOMAIN".into()));
                }
                return Ok(None);
            }
        };
        let same = previous.filter(|p| p.domain == domain);
        let (cb_cert, cb_key) = owndomain::certbot_paths(&self.letsencrypt_dir, &domain);
        let cert = self.cert.clone().or(env.cert.clone()).or(same.map(|p| p.cert.clone())).unwrap_or(cb_cert);
        let key = self.key.clone().or(env.key.clone()).or(same.map(|p| p.key.clone())).unwrap_or(cb_key);
        owndomain::check_pair(&cert, &key, &domain)?;
        let port = match (&self.cover_port, same.and_then(|p| p.cover_port)) {
            (Some(p), _) => options::parse_port(p).map_err(|e| Invalid(format!("--cover-port: {e}")))?,
            (None, Some(p)) => p,
            (None, None) => owndomain::DEFAULT_COVER_PORT,
        };
        let content = match (&self.site, same.and_then(|p| p.site_content.clone())) {
            (Some(s), _) => owndomain::parse_content(s).map_err(|e| Invalid(format!("--site: {e}")))?,
            (None, Some(s)) => owndomain::parse_content(&s)?,
            (None, None) => Content::Root(PathBuf::from(owndomain::DEFAULT_SITE_ROOT)),
        };
        let cover_text = self.cover.clone().or(same.map(|p| p.cover.clone())).unwrap_or_else(|| "nginx".into());
        let cover = owndomain::parse_cover(&cover_text, port, content).map_err(|e| Invalid(format!("--cover: {e}")))?;
        let behind_haproxy = self.behind_haproxy || (self.own_domain.is_none() && same.is_some_and(|p| p.behind_haproxy));
        Ok(Some(OwnDomain { domain, cert, key, cover, behind_haproxy, replace_site: self.replace_nginx_site }))
    }
}

/// Own-domain mode shapes the other answers: ee with the domain, links to the domain, port 443
/// (8443 behind HAProxy) unless a port was given.
fn apply_own(answers: &mut Answers, own: OwnDomain, port_given: bool, host_given: bool) {
    answers.kind = Kind::Ee;
    answers.domain = Some(own.domain.clone());
    if !host_given {
        answers.public_host = Some(own.domain.clone());
    }
    if !port_given {
        answers.port = own.proxy_port();
    }
    answers.own = Some(Box::new(own));
}

/// Whether `domain` resolves (hosts file or DNS, bounded) to an address of this host.
fn points_here(domain: &str) -> bool {
    use std::net::ToSocketAddrs;
    let d = domain.to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send((d.as_str(), 443).to_socket_addrs().map(|a| a.map(|s| s.ip().to_canonical()).collect::<Vec<_>>()).unwrap_or_default());
    });
    let Ok(ips) = rx.recv_timeout(Duration::from_secs(3)) else {
        return false;
    };
    let mine: Vec<std::net::IpAddr> = if_addrs::get_if_addrs().map(|v| v.into_iter().map(|i| i.ip().to_canonical()).collect()).unwrap_or_default();
    !ips.is_empty() && ips.iter().all(|i| mine.contains(i))
}

/// Whether to send the DC leg through the VLESS stack's Xray SOCKS inbound, and which one:
/// looked for only when the VLESS stack is there (its compose file) or `--xray-config` names a
/// file; the wizard asks (default no), a non-interactive run follows `--upstream-xray`.
fn xray_choice(args: &SetupArgs, paths: &Paths, interactive: bool, published: bool) -> Result<Option<(PathBuf, xray::SocksInbound)>, SetupError> {
    let candidates: Vec<PathBuf> = match &args.xray_config {
        Some(p) => vec![p.clone()],
        None if paths.vless_compose.is_file() => xray::CANDIDATES.iter().map(PathBuf::from).collect(),
        None => Vec::new(),
    };
    let found = xray::find(&candidates);
    let Some((source, inbound)) = found else {
        if args.upstream_xray {
            let looked = candidates.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ");
            return Err(Invalid(format!(
                "--upstream-xray: no `socks` inbound on a loopback address was found in Xray's config (looked at: {}); pass --xray-config FILE",
                if looked.is_empty() { "nothing: no VLESS stack here".into() } else { looked }
            ))
            .into());
        }
        return Ok(None);
    };
    let use_it = if args.upstream_xray {
        true
    } else if interactive {
        let stdin = std::io::stdin();
        let mut w = wizard::Wizard::new(stdin.lock(), std::io::stdout());
        w.ask_upstream_xray(&inbound.address, &source)?
    } else {
        false
    };
    if !use_it {
        return Ok(None);
    }
    if published {
        // A container with published ports has its own loopback: Xray's inbound is not there.
        return Err(
            Invalid(format!("routing through Xray's inbound {} needs the host network: run setup with --network host (the default)", inbound.address)).into()
        );
    }
    println!("  upstream        Xray SOCKS inbound {} ({})", inbound.address, source.display());
    Ok(Some((source, inbound)))
}

/// Numbered progress lines.
struct Steps {
    total: usize,
    n: usize,
}

impl Steps {
    fn next(&mut self, title: &str) {
        self.n += 1;
        println!("[{}/{}] {title}", self.n, self.total);
    }
    fn detail(&self, text: &str) {
        println!("      {text}");
    }
}

pub fn run(args: SetupArgs) -> ExitCode {
    let state_file = options::state_file(&args.data_dir);
    let rendering = args.render.is_some();
    match run_inner(args) {
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

fn run_inner(args: SetupArgs) -> Result<ExitCode, SetupError> {
    let env = EnvForm::read(|k| std::env::var(k).ok())?;
    let paths = args.paths();
    if let Some(dir) = &args.render {
        let answers = args.answers(Answers::default(), &env)?;
        let serve = [args.dc_overrides.iter().flat_map(|d| ["--dc-override".to_string(), d.clone()]).collect::<Vec<_>>(), args.serve_args.clone()].concat();
        render_files(dir, &paths, &answers, &serve, args.network.as_deref() == Some("publish"))?;
        println!("Wrote the deploy files to {}", dir.display());
        return Ok(ExitCode::SUCCESS);
    }
    if !host::is_root() {
        return Err(SetupError::NotRoot);
    }
    let interactive = !args.non_interactive && !env.auto;
    let existing = config_step::load_existing(&paths.config_file())?;
    let previous = InstallState::load(&paths.state_file())?;
    let base = existing.as_ref().map(config_step::answers_of).unwrap_or_default();
    let mut answers = args.answers(base, &env)?;
    let previous_own = previous.as_ref().and_then(|s| s.own_domain.clone());
    if let Some(own) = args.own_domain(&env, previous_own.as_ref())? {
        let port_given = args.port.is_some() || env.port.is_some() || (previous_own.is_some() && existing.is_some());
        apply_own(&mut answers, own, port_given, args.public_host.is_some() || (previous_own.is_some() && existing.is_some()));
    }

    let wanted_runtime = match (&args.runtime, &previous) {
        (Some(r), _) => Some(Runtime::parse(r)?),
        (None, Some(s)) => Some(Runtime::parse(&s.runtime)?),
        (None, None) => None,
    };
    let rt = host::resolve_runtime(wanted_runtime)?;
    let publish = match (&args.network, &previous) {
        (Some(n), _) => n == "publish",
        (None, Some(s)) => s.publish,
        (None, None) => false,
    };
    let serve_extra: Vec<String> = if args.dc_overrides.is_empty() && args.serve_args.is_empty() {
        previous.as_ref().map(|s| s.serve_args.clone()).unwrap_or_default()
    } else {
        [args.dc_overrides.iter().flat_map(|d| ["--dc-override".to_string(), d.clone()]).collect::<Vec<_>>(), args.serve_args.clone()].concat()
    };
    let ours = |p: u16| previous.as_ref().is_some_and(|s| s.port == p);
    let taken = |p: u16| !ours(p) && host::port_in_use(p);

    let nginx = args.nginx_paths();
    let site_is_ours = previous_own.as_ref().is_some_and(|p| p.nginx_site.as_deref() == Some(nginx.site_file().as_path()));
    if interactive {
        let stdin = std::io::stdin();
        let mut w = wizard::Wizard::new(stdin.lock(), std::io::stdout());
        let letsencrypt = args.letsencrypt_dir.clone();
        let certbot = move |d: &str| owndomain::certbot_paths(&letsencrypt, d);
        let site_file = nginx.site_file();
        let conflict = || owndomain::site_conflict(&site_file, site_is_ours).then(|| site_file.clone());
        let ctx = wizard::OwnCtx { points_here: &points_here, certbot: &certbot, site_conflict: &conflict };
        match w.run_with(&answers, &taken, &ctx)? {
            wizard::WizardResult::Proceed(a) => answers = a,
            wizard::WizardResult::Declined => {
                println!("Nothing was installed.");
                return Ok(ExitCode::SUCCESS);
            }
        }
    } else {
        if taken(answers.port) && answers.own.is_some() && answers.port == 443 {
            return Err(Invalid(
                "port 443 is already in use by another program (HAProxy, a web server?): free it, or put the proxy behind HAProxy with --behind-haproxy".into(),
            )
            .into());
        }
        if taken(answers.port) {
            return Err(SetupError::Other(format!("port {} is already in use by another program on this host; choose another with --port", answers.port)));
        }
        println!("vless-mtproxy setup (non-interactive):\n{}", wizard::summary(&answers));
    }
    let via_xray = xray_choice(&args, &paths, interactive, rt.is_container() && publish)?;
    if answers.kind == Kind::Ee && answers.domain.is_none() {
        return Err(Invalid("the ee kind needs a cover domain: pass --domain www.example.com (a real HTTPS site that is not blocked)".into()).into());
    }
    // Own domain: what must hold before anything is written.
    if let Some(own) = &answers.own {
        if let Cover::Nginx { port, .. } = &own.cover {
            if !host::on_path("nginx") {
                return Err(host::HostError::Missing(
                    "nginx",
                    "the cover site needs a web server: apt-get install nginx (or name yours with --cover HOST:PORT)".into(),
                )
                .into());
            }
            let ours_before = previous_own.as_ref().and_then(|p| p.cover_port) == Some(*port);
            if *port == answers.port {
                return Err(Invalid(format!("--cover-port {port} is the proxy's own port; choose another loopback port for the site")).into());
            }
            if !ours_before && host::port_in_use(*port) {
                return Err(Invalid(format!("port {port} (the nginx cover site's) is already in use on this host; choose another with --cover-port")).into());
            }
            if !own.replace_site && owndomain::site_conflict(&nginx.site_file(), site_is_ours) {
                return Err(owndomain::OwnDomainError::SiteExists(nginx.site_file()).into());
            }
        }
    }
    let exe = std::env::current_exe().map_err(|e| SetupError::Other(format!("cannot find this program's own file: {e}")))?;

    let mut steps = Steps { total: if answers.own.is_some() { 9 } else { 8 }, n: 0 };
    steps.next("Checking the host");
    if rt.is_container() {
        host::check_static_binary(&exe)?;
    }
    steps.detail(&format!("runtime: {}; port {}: {}", rt.name(), answers.port, if ours(answers.port) { "used by this proxy" } else { "free" }));

    steps.next("Creating the folders");
    let (owner, group) = if rt.is_container() { (templates::CONTAINER_UID, templates::CONTAINER_GID) } else { (0, 0) };
    files::ensure_dir(&paths.config_dir, 0o750, Some((0, group)))?;
    files::ensure_dir(&paths.log_dir, 0o750, Some((owner, group)))?;
    files::ensure_dir(&paths.data_dir, 0o750, Some((owner, group)))?;
    files::ensure_dir(&paths.setup_dir(), 0o700, Some((0, 0)))?;
    for d in [&paths.config_dir, &paths.log_dir, &paths.data_dir] {
        steps.detail(&d.display().to_string());
    }

    steps.next(&format!("Installing the binary into {}", paths.install_dir.display()));
    let (binaries, binary_changed) = install_binary(&exe, &paths)?;
    steps.detail(if binary_changed { "installed" } else { "already up to date" });

    steps.next("Writing the configuration");
    let cfg_owner = if rt.is_container() { Some((owner, group)) } else { Some((0, 0)) };
    let state_dir = if rt.is_container() { templates::IN_DATA_DIR.to_string() } else { paths.data_dir.display().to_string() };
    let outcome = config_step::apply(&paths.config_file(), &answers, &args.first_user, cfg_owner, &paths.binary(), &state_dir)?;
    steps.detail(&format!("{} ({})", paths.config_file().display(), if outcome.created { "created, mode 0600" } else { "kept" }));
    for c in &outcome.commands {
        steps.detail(&format!("applied: vless-mtproxy {c}"));
    }
    for n in &outcome.notes {
        steps.detail(&format!("note: {n}"));
    }
    if let Some((source, inbound)) = &via_xray {
        steps.detail(&config_step::route_via_xray(&paths.config_file(), source, inbound, cfg_owner)?);
    }
    if args.panel_password_stdin {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map_err(|e| SetupError::Other(format!("cannot read the panel password from stdin: {e}")))?;
        config_step::run_cli_with_input(&paths.binary(), &paths.config_file(), &["set-panel-password".to_string()], Some(line.as_bytes()))?;
        steps.detail("web panel password set (http://127.0.0.1:8888/panel/ over an SSH tunnel)");
    }

    let own_state = match &answers.own {
        Some(own) => {
            steps.next(&format!("Setting up the cover site for {}", own.domain));
            Some(own_domain_step(own, &nginx, site_is_ours, previous_own.as_ref(), &paths, &steps)?)
        }
        None => None,
    };

    learn_covers(&paths, rt, &mut steps);

    let mut new_state = InstallState {
        runtime: rt.name().into(),
        port: answers.port,
        publish,
        serve_args: serve_extra.clone(),
        config_dir: paths.config_dir.clone(),
        log_dir: paths.log_dir.clone(),
        data_dir: paths.data_dir.clone(),
        binaries,
        own_domain: own_state,
        ..Default::default()
    };
    // The record is complete before anything is built or started, so a setup that fails half
    // way can still be undone by uninstall.
    let vless_compose = rt.is_container() && paths.vless_compose.is_file();
    if rt.is_container() {
        new_state.container = Some(SERVICE.into());
        new_state.image = Some(IMAGE.into());
        if vless_compose {
            new_state.vless_compose = Some(paths.vless_compose.clone());
        } else {
            new_state.own_compose = Some(paths.own_compose());
        }
    } else {
        new_state.unit_file = Some(paths.unit_file());
    }
    if paths.logrotate_dir.is_dir() {
        new_state.logrotate_file = Some(paths.logrotate_file());
    }
    steps.next("Firewall rule and fail2ban jail");
    host_security(&args, &paths, &answers, previous.as_ref(), &mut new_state, &steps);
    files::write_if_changed(&paths.state_file(), new_state.to_text().as_bytes(), 0o600, None)?;
    if let Some(f) = &new_state.logrotate_file {
        files::write_if_changed(f, templates::logrotate(&paths, owner, group)?.as_bytes(), 0o644, None)?;
    }

    if rt.is_container() {
        steps.next(&format!("Building the image {IMAGE} with {}", rt.name()));
        let image_id = runtime::build_image(rt, &paths)?;
        steps.detail(&format!("image {}", &image_id.trim_start_matches("sha256:")[..12.min(image_id.len())]));
        let spec = ContainerSpec::new(&answers, publish, &serve_extra);
        let block = spec.compose_service(&paths)?;
        steps.next(&format!("Starting the container {SERVICE}"));
        let compose_file = if vless_compose {
            let o = compose::add_to_existing(&paths.vless_compose, &block, &paths.backup_dir())?;
            if let compose::Outcome::Written { backup: Some(b) } = &o {
                steps.detail(&format!("added the service to {} (backup: {})", paths.vless_compose.display(), b.display()));
            }
            paths.vless_compose.clone()
        } else {
            compose::write_own(&paths.own_compose(), &block)?;
            paths.own_compose()
        };
        let d = runtime::deploy_container(rt, &paths, &spec, &image_id, &compose_file)?;
        steps.detail(if d.restarted { "started" } else { "already running with this configuration" });
    } else {
        steps.next("Writing the systemd unit");
        let unit = templates::unit(&paths, &answers, &serve_extra)?;
        steps.next("Starting the service vless-mtproxy");
        let d = runtime::deploy_systemd(&paths, &unit, binary_changed)?;
        steps.detail(if d.restarted { "started" } else { "already running with this configuration" });
    }

    steps.next("Checking the proxy's health");
    runtime::wait_healthy(rt, &paths, Duration::from_secs(args.health_timeout))?;
    steps.detail(&format!("accepting connections on port {}", answers.port));
    print_finish(&paths, rt, &new_state);
    Ok(ExitCode::SUCCESS)
}

/// The own-domain step: the nginx site (or a check of the operator's web server), and the
/// HAProxy lines when the proxy goes behind HAProxy. Returns the record for uninstall.
fn own_domain_step(
    own: &OwnDomain,
    nginx: &owndomain::NginxPaths,
    site_is_ours: bool,
    previous: Option<&OwnDomainState>,
    paths: &Paths,
    steps: &Steps,
) -> Result<OwnDomainState, SetupError> {
    let mut st =
        OwnDomainState { domain: own.domain.clone(), cert: own.cert.clone(), key: own.key.clone(), behind_haproxy: own.behind_haproxy, ..Default::default() };
    match &own.cover {
        Cover::Nginx { port, content } => {
            let applied = owndomain::apply_nginx(own, nginx, *port, content, site_is_ours, &paths.backup_dir())?;
            for l in &applied.lines {
                steps.detail(l);
            }
            let prev_same = previous.filter(|p| p.nginx_site.as_deref() == Some(applied.site_file.as_path()));
            st.cover = "nginx".into();
            st.cover_port = Some(*port);
            st.site_content = Some(match content {
                Content::Root(d) => d.display().to_string(),
                Content::Proxy(u) => u.clone(),
            });
            st.nginx_conf = Some(nginx.conf.clone());
            st.nginx_site = Some(applied.site_file.clone());
            // What a first run found stays what uninstall restores.
            st.nginx_site_backup = applied.site_backup.or(prev_same.and_then(|p| p.nginx_site_backup.clone()));
            st.site_root_created = applied.site_root_created.or(prev_same.and_then(|p| p.site_root_created.clone()));
            st.nginx_started = applied.nginx_started || prev_same.is_some_and(|p| p.nginx_started);
        }
        Cover::Existing(hp) => {
            let addr = std::net::ToSocketAddrs::to_socket_addrs(&(hp.host.as_str(), hp.port))
                .ok()
                .and_then(|mut a| a.next())
                .ok_or_else(|| SetupError::Other(format!("--cover {hp}: the address does not resolve")))?;
            owndomain::verify_cover(own, addr)?;
            steps.detail(&format!("your web server at {hp} presents the certificate for {}", own.domain));
            st.cover = hp.to_string();
        }
    }
    if own.behind_haproxy {
        let f = paths.setup_dir().join("haproxy-own-domain.cfg");
        let lines = owndomain::haproxy_lines(&own.domain);
        files::write_if_changed(&f, lines.as_bytes(), 0o644, None)?;
        steps.detail(&format!("HAProxy: add the lines in {} to your frontend on :443 (mode tcp), then reload HAProxy", f.display()));
        st.haproxy_snippet = Some(f);
    }
    Ok(st)
}

/// UFW and fail2ban through the binary's own commands; reported, never fatal.
/// Learn every fake-TLS cover's flight now (`mtproxy_core::cover`), so clients get the cover's
/// shape from the proxy's first connection; a container's cache file is written through its
/// host folder. Never fails: the proxy keeps trying on its own.
fn learn_covers(paths: &Paths, rt: Runtime, steps: &mut Steps) {
    let Ok(cfg) = mtproxy_core::config::load(&paths.config_file()) else { return };
    let domains = cfg.fake_tls_domains();
    if domains.is_empty() || !cfg.fake_tls.emulate_cover {
        return;
    }
    steps.next("Learning the cover sites' TLS flights");
    let cache = cfg.cover_cache_path(&paths.config_file());
    let cache = match cache.strip_prefix(templates::IN_DATA_DIR) {
        Ok(rest) if rt.is_container() => paths.data_dir.join(rest),
        _ => cache,
    };
    for d in domains {
        match crate::cli::domains::learn_cover_into(&cache, &cfg, d) {
            Some(Ok(m)) => steps.detail(&m),
            Some(Err(m)) => steps.detail(&format!("warning: {m}")),
            None => {}
        }
    }
}

fn host_security(args: &SetupArgs, paths: &Paths, answers: &Answers, previous: Option<&InstallState>, state: &mut InstallState, steps: &Steps) {
    let bin = paths.binary();
    let cfg = paths.config_file();
    let say = |prefix: &str, c: &hostsec_step::Called| {
        for line in c.text.lines() {
            steps.detail(&format!("{prefix}{line}"));
        }
    };
    if let Some(old) = previous.and_then(|p| p.ufw_port).filter(|p| *p != answers.port) {
        let c = hostsec_step::call(&bin, &cfg, &hostsec_step::ufw_args("remove", old, &args.ufw_args));
        say(if c.ok { "ufw (old port): " } else { "warning: ufw (old port): " }, &c);
    }
    if answers.own.as_ref().is_some_and(|o| o.behind_haproxy) {
        steps.detail("ufw: the proxy listens on 127.0.0.1 behind HAProxy; HAProxy's port 443 is yours to allow");
    } else if args.ufw != "off" {
        let c = hostsec_step::call(&bin, &cfg, &hostsec_step::ufw_args(&args.ufw, answers.port, &args.ufw_args));
        say(if c.ok { "ufw: " } else { "warning: ufw: " }, &c);
        if c.ok {
            state.ufw_port = Some(answers.port);
            state.ufw_args = args.ufw_args.clone();
        }
    } else {
        steps.detail("ufw: off (open the port in your firewall yourself)");
    }
    if args.fail2ban_mode == "off" {
        steps.detail("fail2ban: off");
    } else if !args.fail2ban_dir.is_dir() {
        steps.detail(&format!("fail2ban: {} does not exist (fail2ban not installed); no jail written", args.fail2ban_dir.display()));
    } else {
        let before = hostsec_step::fail2ban_files(&args.fail2ban_dir);
        let c = hostsec_step::call(&bin, &cfg, &hostsec_step::fail2ban_args(&args.fail2ban_dir, &paths.log_file(), answers.port, &args.fail2ban_mode));
        say(if c.ok { "fail2ban: " } else { "warning: fail2ban: " }, &c);
        if c.ok {
            state.fail2ban_dir = Some(args.fail2ban_dir.clone());
            if before != hostsec_step::fail2ban_files(&args.fail2ban_dir) && host::on_path("fail2ban-client") {
                let reloaded = host::succeeds("fail2ban-client", &["reload"], Duration::from_secs(20));
                steps.detail(if reloaded { "fail2ban: reloaded" } else { "fail2ban: not running, the jail is used when it starts" });
            }
        }
    }
}

/// Copy this program to the install folder (when it is not already there) and point the
/// multi-call names at it. Returns the paths and whether the binary changed.
fn install_binary(exe: &Path, paths: &Paths) -> Result<(Vec<PathBuf>, bool), SetupError> {
    // An existing folder such as /usr/local/bin keeps its mode and owner.
    if !paths.install_dir.is_dir() {
        files::ensure_dir(&paths.install_dir, 0o755, None)?;
    }
    let target = paths.binary();
    let same = std::fs::canonicalize(exe).ok().is_some_and(|a| std::fs::canonicalize(&target).ok().is_some_and(|b| a == b));
    let mut changed = false;
    if !same {
        let bytes = std::fs::read(exe).map_err(|source| files::FileError::Io { path: exe.to_path_buf(), action: "reading", source })?;
        changed = files::write_if_changed(&target, &bytes, 0o755, None)?;
    }
    let mut out = vec![target.clone()];
    for name in ["vless-mtproxy-setup", "vless-mtproxy-uninstall"] {
        let link = paths.install_dir.join(name);
        if std::fs::read_link(&link).ok().as_deref() != Some(Path::new("vless-mtproxy")) {
            let _ = std::fs::remove_file(&link);
            std::os::unix::fs::symlink("vless-mtproxy", &link).map_err(|source| files::FileError::Io {
                path: link.clone(),
                action: "creating the link",
                source,
            })?;
        }
        out.push(link);
    }
    Ok((out, changed))
}

/// `--render DIR`: the deploy files as setup would install them, for review or checks.
fn render_files(dir: &Path, paths: &Paths, answers: &Answers, serve: &[String], publish: bool) -> Result<(), SetupError> {
    files::ensure_dir(dir, 0o755, None)?;
    let spec = ContainerSpec::new(answers, publish, serve);
    let items = [
        ("Containerfile", templates::containerfile()?),
        ("vless-mtproxy.service", templates::unit(paths, answers, serve)?),
        ("docker-compose.yml", format!("services:\n{}", spec.compose_service(paths)?)),
        ("logrotate", templates::logrotate(paths, 0, 0)?),
    ];
    for (name, text) in items {
        files::write_if_changed(&dir.join(name), text.as_bytes(), 0o644, None)?;
    }
    Ok(())
}

fn print_finish(paths: &Paths, rt: Runtime, state: &InstallState) {
    let cfg_file = paths.config_file();
    println!(
        "\nThe proxy is running ({}).",
        if rt.is_container() { format!("container {SERVICE}, {}", rt.name()) } else { "systemd unit vless-mtproxy".into() }
    );
    match mtproxy_core::config::load(&cfg_file) {
        Ok(cfg) => {
            if let Some(u) = config_step::first_user(&cfg) {
                let (host, warning) = crate::share::public_host(&cfg);
                if let Some(w) = warning {
                    println!("warning: {w}");
                }
                let (tg, tme) = crate::share::links(&cfg, u, &host);
                println!("\nUser {} ({}):\n  {tg}\n  {tme}\n{}", u.name, u.kind.name(), crate::share::qr_terminal(&tme));
            }
        }
        Err(e) => println!("warning: cannot read the configuration back: {e}"),
    }
    let c = cfg_file.display();
    println!("Files:\n  configuration  {c}\n  log            {}\n  data           {}", paths.log_file().display(), paths.data_dir.display());
    if let Some(u) = &state.unit_file {
        println!("  unit           {}", u.display());
    }
    for f in state.own_compose.iter().chain(state.vless_compose.iter()) {
        println!("  compose        {}", f.display());
    }
    let b = paths.binary();
    let b = b.display();
    println!("\nAdd a user:     {b} --config {c} add-user NAME [--fake-tls DOMAIN]");
    println!("Show its link:  {b} --config {c} show-user-config NAME");
    println!("List users:     {b} --config {c} list-users");
    println!("The proxy picks up every change within a second; no restart is needed.");
    println!("Remove:         {} --data-dir {}", paths.install_dir.join("vless-mtproxy-uninstall").display(), paths.data_dir.display());
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
