//! Own-domain mode (docs/install.md, "Own domain") as setup runs it: the plan from flags, the
//! environment and the last install; how it shapes the other answers; the checks before
//! anything is written; and the step that sets up the cover site and the HAProxy lines.
//! The pieces it works with (certificates, the nginx site, HAProxy text) are `owndomain`'s.

use std::path::PathBuf;
use std::time::Duration;

use mtproxy_proto::SecretKind;

use super::options::{self, Draft, EnvForm, Invalid, KindChoice, Paths};
use super::owndomain::{self, Content, Cover, OwnDomain};
use super::report::Steps;
use super::state::OwnDomainState;
use super::{files, host, SetupArgs, SetupError};

impl SetupArgs {
    pub(super) fn nginx_paths(&self) -> owndomain::NginxPaths {
        owndomain::NginxPaths { conf: self.nginx_conf.clone(), site_dir: self.nginx_site_dir.clone() }
    }

    /// The own-domain plan from flags, the environment and the last install, checked; None when
    /// own-domain mode is not chosen.
    pub(super) fn own_domain(&self, env: &EnvForm, previous: Option<&OwnDomainState>) -> Result<Option<OwnDomain>, Invalid> {
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
pub(super) fn apply_own(answers: &mut Draft, own: OwnDomain, port_given: bool, host_given: bool) {
    answers.kind = KindChoice::Ready(SecretKind::FakeTls { domain: own.domain.clone() });
    if !host_given {
        answers.public_host = Some(own.domain.clone());
    }
    if !port_given {
        answers.port = own.proxy_port();
    }
    answers.own = Some(Box::new(own));
}

/// Whether `domain` resolves (hosts file or DNS, bounded) to an address of this host.
pub(super) fn points_here(domain: &str) -> bool {
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

/// What must hold before anything is written: nginx there (for setup's site), the site's
/// loopback port free and not the proxy's, and no site file of someone else's in the way.
pub(super) fn check(
    own: &OwnDomain,
    proxy_port: u16,
    nginx: &owndomain::NginxPaths,
    site_is_ours: bool,
    previous: Option<&OwnDomainState>,
) -> Result<(), SetupError> {
    if let Cover::Nginx { port, .. } = &own.cover {
        if !host::on_path("nginx") {
            return Err(host::HostError::Missing(
                "nginx",
                "the cover site needs a web server: apt-get install nginx (or name yours with --cover HOST:PORT)".into(),
            )
            .into());
        }
        let ours_before = previous.and_then(|p| p.cover_port) == Some(*port);
        if *port == proxy_port {
            return Err(Invalid(format!("--cover-port {port} is the proxy's own port; choose another loopback port for the site")).into());
        }
        if !ours_before && host::port_in_use(*port) {
            return Err(Invalid(format!("port {port} (the nginx cover site's) is already in use on this host; choose another with --cover-port")).into());
        }
        if !own.replace_site && owndomain::site_conflict(&nginx.site_file(), site_is_ours) {
            return Err(owndomain::OwnDomainError::SiteExists(nginx.site_file()).into());
        }
    }
    Ok(())
}

/// The own-domain step: the nginx site (or a check of the operator's web server), and the
/// HAProxy lines when the proxy goes behind HAProxy. Returns the record for uninstall.
pub(super) fn apply(
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
