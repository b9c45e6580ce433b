//! "Own domain" mode: the strongest cover there is. The operator's domain points at this
//! server (A/AAAA), a real certificate for it is served by a real web server on this host, and
//! the proxy stands on port 443 in front of that web server (alone, or behind HAProxy's SNI
//! routing next to a VLESS-Reality server). Every connection that is not a Telegram client
//! (a prober, a browser, a scanner) is handed byte for byte to the web server, so the SNI, the
//! address it resolves to, the certificate and every answer agree: there is no second site to
//! compare with, as there is when the cover is borrowed.
//!
//! What setup does here: checks the certificate and key (readable, matching, for the domain,
//! not expired), then, for the default cover web server, writes one nginx site (a `server` for
//! the domain on a loopback port with TLS 1.3 and 1.2, X25519 first, serving a static folder or
//! proxying to the VLESS stack's fake site; and a default server with `ssl_reject_handshake on`
//! so an unknown SNI is refused the way a real multi-site host refuses it), validates it with
//! `nginx -t`, reloads or starts nginx, and finally shakes hands with the site to see that it
//! presents exactly the given certificate and refuses an unknown name. An nginx site that setup
//! did not write is never replaced without the operator's word (`--replace-nginx-site`, or a yes
//! in the wizard), and then only after a dated backup that uninstall puts back.
//!
//! The configuration it leads to: an `ee` user with the domain, `public_host = DOMAIN`,
//! `[fronting] mask_host = "127.0.0.1:PORT"`; behind HAProxy also the PROXY protocol from
//! 127.0.0.1 and `public_port = 443` (the HAProxy lines come from `hostsec::haproxy`).

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mtproxy_core::config::HostPort;

use crate::inspect::tlscert;
use crate::setup::files::{self, FileError};
use crate::setup::host;
use crate::setup::options::Invalid;

/// The loopback port of the nginx cover site (the proxy itself takes 443, or 8443 behind HAProxy).
pub const DEFAULT_COVER_PORT: u16 = 10443;
/// The proxy's port behind HAProxy (on 127.0.0.1), as in docs/host-security.md.
pub const HAPROXY_BACKEND_PORT: u16 = 8443;
pub const DEFAULT_SITE_ROOT: &str = "/var/www/vless-mtproxy-cover";
pub const DEFAULT_NGINX_CONF: &str = "/etc/nginx/nginx.conf";
pub const DEFAULT_NGINX_SITE_DIR: &str = "/etc/nginx/conf.d";
pub const DEFAULT_LETSENCRYPT_DIR: &str = "/etc/letsencrypt";
/// The one nginx file setup writes.
pub const SITE_FILE: &str = "vless-mtproxy-cover.conf";
/// First line of the site file, so an operator (and setup) can tell it apart from their own.
const SITE_MARK: &str = "# vless-mtproxy cover site, written by `vless-mtproxy setup`";
/// `ssl_reject_handshake` appeared in nginx 1.19.4.
const NGINX_MIN: (u32, u32, u32) = (1, 19, 4);

/// What the nginx site serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// A folder of static pages (created with one page when it does not exist).
    Root(PathBuf),
    /// An HTTP address to proxy to, such as the VLESS stack's fake site.
    Proxy(String),
}

/// The web server the proxy hands non-Telegram connections to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cover {
    /// nginx from the distribution, with the site setup writes on 127.0.0.1:port.
    Nginx { port: u16, content: Content },
    /// A local web server the operator runs, already serving the domain with its certificate.
    Existing(HostPort),
}

/// Everything own-domain mode needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnDomain {
    pub domain: String,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub cover: Cover,
    /// HAProxy on 443 routes the domain's SNI to the proxy (PROXY v2) next to Reality.
    pub behind_haproxy: bool,
    /// Replace an nginx site file setup did not write (after a backup).
    pub replace_site: bool,
}

impl OwnDomain {
    /// `[fronting] mask_host`.
    pub fn mask_host(&self) -> String {
        match &self.cover {
            Cover::Nginx { port, .. } => format!("127.0.0.1:{port}"),
            Cover::Existing(hp) => hp.to_string(),
        }
    }

    /// The port the proxy listens on.
    pub fn proxy_port(&self) -> u16 {
        if self.behind_haproxy {
            HAPROXY_BACKEND_PORT
        } else {
            443
        }
    }

    pub fn describe(&self) -> String {
        let cover = match &self.cover {
            Cover::Nginx { port, content: Content::Root(d) } => format!("nginx on 127.0.0.1:{port}, static pages from {}", d.display()),
            Cover::Nginx { port, content: Content::Proxy(u) } => format!("nginx on 127.0.0.1:{port}, proxying to {u}"),
            Cover::Existing(hp) => format!("your web server at {hp}"),
        };
        let layout = if self.behind_haproxy { "behind HAProxy on 443 (SNI routing)" } else { "the proxy alone on 443" };
        format!(
            "  own domain      {}\n  certificate     {}\n  key             {}\n  cover site      {cover}\n  layout          {layout}\n",
            self.domain,
            self.cert.display(),
            self.key.display()
        )
    }
}

/// certbot's files for `domain`.
pub fn certbot_paths(letsencrypt_dir: &Path, domain: &str) -> (PathBuf, PathBuf) {
    let live = letsencrypt_dir.join("live").join(domain);
    (live.join("fullchain.pem"), live.join("privkey.pem"))
}

/// `nginx` (setup writes the site) or the address of an existing local web server
/// (`PORT`, `HOST:PORT`).
pub fn parse_cover(text: &str, port: u16, content: Content) -> Result<Cover, Invalid> {
    let t = text.trim();
    if t.eq_ignore_ascii_case("nginx") || t.is_empty() {
        return Ok(Cover::Nginx { port, content });
    }
    let hp = match t.parse::<u16>() {
        Ok(p) if p > 0 => HostPort { host: "127.0.0.1".into(), port: p },
        _ => HostPort::parse(t).map_err(|m| {
            Invalid(format!("the cover web server: {m}; write nginx, or the PORT / HOST:PORT of a web server on this host that serves the domain"))
        })?,
    };
    Ok(Cover::Existing(hp))
}

/// A folder (absolute path) or an `http://` / `https://` address to proxy to.
pub fn parse_content(text: &str) -> Result<Content, Invalid> {
    let t = text.trim();
    if t.starts_with("http://") || t.starts_with("https://") {
        let rest = t.split_once("://").map(|(_, r)| r).unwrap_or("");
        if rest.is_empty() || t.contains(|c: char| c.is_whitespace() || c == ';' || c == '{' || c == '}' || c == '"' || c == '\'') {
            return Err(Invalid(format!("`{t}` is not an address nginx can proxy to; write e.g. http://127.0.0.1:8080")));
        }
        return Ok(Content::Proxy(t.to_string()));
    }
    let p = Path::new(t);
    if !p.is_absolute() || t.contains(|c: char| c.is_whitespace() || c == ';' || c == '{' || c == '}' || c == '"' || c == '\'') {
        return Err(Invalid(format!(
            "`{t}` is neither an absolute folder without spaces (e.g. {DEFAULT_SITE_ROOT}) nor an http:// address of a site to proxy to"
        )));
    }
    Ok(Content::Root(p.to_path_buf()))
}

/// Check the certificate alone: readable, for the domain, not expired. Returns a summary line.
pub fn check_cert(cert: &Path, domain: &str) -> Result<String, Invalid> {
    let text = std::fs::read(cert).map_err(|e| {
        Invalid(format!(
            "{}: cannot read the certificate: {e}; give the full-chain PEM file (certbot: /etc/letsencrypt/live/{domain}/fullchain.pem)",
            cert.display()
        ))
    })?;
    use rustls_pki_types::pem::PemObject;
    let chain: Vec<_> = rustls_pki_types::CertificateDer::pem_slice_iter(&text).filter_map(Result::ok).collect();
    let Some(leaf) = chain.first() else {
        return Err(Invalid(format!("{}: no PEM certificate in it (expected -----BEGIN CERTIFICATE-----, e.g. certbot's fullchain.pem)", cert.display())));
    };
    let info = tlscert::inspect(leaf, domain).map_err(|e| Invalid(format!("{}: {e}", cert.display())))?;
    if !info.matches {
        return Err(Invalid(format!(
            "{} is a certificate for {}, not {domain}: get one for the domain (certbot certonly -d {domain}) or give its path",
            cert.display(),
            info.names()
        )));
    }
    let now = tlscert::now_unix();
    if now >= info.not_after {
        return Err(Invalid(format!("{}: the certificate for {domain} has expired; renew it (certbot renew) and run setup again", cert.display())));
    }
    if now < info.not_before {
        return Err(Invalid(format!("{}: the certificate is not valid yet; check this host's clock", cert.display())));
    }
    Ok(format!("certificate for {} ({} days left, {} in the chain)", info.names(), info.days_left(now), chain.len()))
}

/// Check the certificate and that the key belongs to it. Never shows the key.
pub fn check_pair(cert: &Path, key: &Path, domain: &str) -> Result<String, Invalid> {
    let summary = check_cert(cert, domain)?;
    tlscert::load_pair(cert, key).map_err(|e| Invalid(e.to_string()))?;
    Ok(summary)
}

#[derive(Debug, thiserror::Error)]
pub enum OwnDomainError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error("{0} exists and was not written by setup: pass --replace-nginx-site to replace it (a dated backup is kept and put back by uninstall), or choose another cover with --cover")]
    SiteExists(PathBuf),
    #[error("nginx {found} is too old: the cover site needs ssl_reject_handshake (nginx 1.19.4 or later); upgrade nginx or name your own web server with --cover HOST:PORT")]
    NginxTooOld { found: String },
    #[error("nginx refused the configuration (`nginx -t`):\n{detail}\n  {restored}")]
    NginxTest { detail: String, restored: String },
    #[error("`{command}` failed: {detail}")]
    Command { command: String, detail: String },
    #[error("the cover site at {addr}: {message}")]
    Cover { addr: String, message: String },
}

/// Where nginx is configured.
#[derive(Debug, Clone)]
pub struct NginxPaths {
    /// The main configuration file, passed as `nginx -c` (so a test's private nginx works too).
    pub conf: PathBuf,
    /// A folder the main configuration includes (`conf.d`).
    pub site_dir: PathBuf,
}

impl NginxPaths {
    pub fn site_file(&self) -> PathBuf {
        self.site_dir.join(SITE_FILE)
    }
}

fn run(program: &str, args: &[&str]) -> Result<std::process::Output, OwnDomainError> {
    let shown = format!("{program} {}", args.join(" "));
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| OwnDomainError::Command { command: shown.clone(), detail: e.to_string() })?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(OwnDomainError::Command { command: shown, detail: String::from_utf8_lossy(&out.stderr).trim().to_string() })
    }
}

/// `nginx -v` (it writes to stderr): `nginx version: nginx/1.22.1`.
pub fn nginx_version() -> Result<(u32, u32, u32), OwnDomainError> {
    let out = Command::new("nginx")
        .arg("-v")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| OwnDomainError::Command { command: "nginx -v".into(), detail: e.to_string() })?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stderr), String::from_utf8_lossy(&out.stdout));
    parse_nginx_version(&text).ok_or_else(|| OwnDomainError::Command { command: "nginx -v".into(), detail: format!("unexpected answer: {}", text.trim()) })
}

fn parse_nginx_version(text: &str) -> Option<(u32, u32, u32)> {
    let v = text.split("nginx/").nth(1)?.split_whitespace().next()?;
    let mut it = v.split('.').map(|p| p.trim_matches(|c: char| !c.is_ascii_digit()).parse::<u32>().ok());
    Some((it.next()??, it.next()??, it.next().flatten().unwrap_or(0)))
}

/// The nginx site: the domain on a loopback port, and a default server that refuses every
/// other name during the handshake.
pub fn site_text(plan: &OwnDomain, port: u16, content: &Content, version: (u32, u32, u32)) -> String {
    // `http2 on;` replaced `listen ... http2` in 1.25.1.
    let (listen_h2, http2_line) = if version >= (1, 25, 1) { ("", "    http2 on;\n") } else { (" http2", "") };
    let body = match content {
        Content::Root(dir) => format!("    root {};\n    index index.html;\n    location / {{\n        try_files $uri $uri/ =404;\n    }}\n", dir.display()),
        Content::Proxy(url) => format!(
            "    location / {{\n        proxy_pass {url};\n        proxy_set_header Host $host;\n        proxy_set_header X-Forwarded-Proto https;\n        proxy_http_version 1.1;\n    }}\n"
        ),
    };
    format!(
        "{SITE_MARK} for {domain};\n\
         # removed by `vless-mtproxy uninstall`. The proxy on port {proxy_port} hands every connection that is\n\
         # not a Telegram client to this site, byte for byte (`[fronting] mask_host = \"127.0.0.1:{port}\"`).\n\
         \n\
         # Any other name is refused during the handshake, as a real host refuses names it does not serve.\n\
         # nginx takes the protocol versions from the default server of the port (they are fixed before\n\
         # the SNI picks the server), so they are set here too, or TLS 1.3 would be off for every name.\n\
         server {{\n    listen 127.0.0.1:{port} ssl{listen_h2} default_server;\n    server_name _;\n    ssl_reject_handshake on;\n\
         \x20   ssl_protocols TLSv1.2 TLSv1.3;\n    ssl_ecdh_curve X25519:prime256v1:secp384r1;\n}}\n\
         \n\
         server {{\n    listen 127.0.0.1:{port} ssl{listen_h2};\n{http2_line}    server_name {domain};\n\
         \x20   ssl_certificate {cert};\n    ssl_certificate_key {key};\n\
         \x20   ssl_protocols TLSv1.2 TLSv1.3;\n    ssl_ecdh_curve X25519:prime256v1:secp384r1;\n\
         \x20   ssl_prefer_server_ciphers off;\n    ssl_session_cache shared:vless_mtproxy_cover:1m;\n\
         \x20   add_header Strict-Transport-Security \"max-age=31536000\" always;\n\
         {body}}}\n",
        domain = plan.domain,
        proxy_port = plan.proxy_port(),
        cert = plan.cert.display(),
        key = plan.key.display(),
    )
}

const INDEX_HTML: &str = "<!DOCTYPE html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\"><title>Welcome</title></head>\n<body>\n<h1>Welcome</h1>\n<p>This site is under construction.</p>\n</body>\n</html>\n";

/// What the nginx step did (recorded for uninstall).
#[derive(Debug, Default)]
pub struct Applied {
    pub site_file: PathBuf,
    /// The operator's own file that was replaced, kept for uninstall to put back.
    pub site_backup: Option<PathBuf>,
    /// A site folder setup created (uninstall removes it).
    pub site_root_created: Option<PathBuf>,
    /// nginx was not running and setup started it (uninstall stops it again).
    pub nginx_started: bool,
    pub lines: Vec<String>,
}

/// Whether a site file would replace something that is not ours.
pub fn site_conflict(file: &Path, ours: bool) -> bool {
    !ours && std::fs::read_to_string(file).map(|t| !t.starts_with(SITE_MARK)).unwrap_or(false)
}

fn nginx_running(conf: &Path) -> bool {
    // `nginx -s reload` fails when there is no master to signal (no pid file, or a dead pid).
    run("nginx", &["-c", &conf.display().to_string(), "-s", "reload"]).is_ok()
}

fn wait_accepting(addr: SocketAddr, limit: Duration) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// Write (or keep) the nginx site, check it with `nginx -t`, reload or start nginx, and shake
/// hands with the site. `ours`: the install record says setup wrote this file before.
pub fn apply_nginx(plan: &OwnDomain, nginx: &NginxPaths, port: u16, content: &Content, ours: bool, backup_dir: &Path) -> Result<Applied, OwnDomainError> {
    let version = nginx_version()?;
    if version < NGINX_MIN {
        return Err(OwnDomainError::NginxTooOld { found: format!("{}.{}.{}", version.0, version.1, version.2) });
    }
    let mut applied = Applied { site_file: nginx.site_file(), ..Default::default() };
    if let Content::Root(dir) = content {
        if !dir.exists() {
            files::ensure_dir(dir, 0o755, None)?;
            files::write_if_changed(&dir.join("index.html"), INDEX_HTML.as_bytes(), 0o644, None)?;
            applied.site_root_created = Some(dir.clone());
            applied.lines.push(format!("created {} with a placeholder page (put your own pages there)", dir.display()));
        }
    }
    let file = nginx.site_file();
    let text = site_text(plan, port, content, version);
    let before = std::fs::read(&file).ok();
    if site_conflict(&file, ours) {
        if !plan.replace_site {
            return Err(OwnDomainError::SiteExists(file));
        }
        let b = files::backup(&file, backup_dir)?;
        applied.lines.push(format!("replaced {} (your file is kept as {}; uninstall puts it back)", file.display(), b.display()));
        applied.site_backup = Some(b);
    }
    let changed = files::write_if_changed(&file, text.as_bytes(), 0o644, None)?;
    let conf = nginx.conf.display().to_string();
    if let Err(e) = run("nginx", &["-t", "-q", "-c", &conf]) {
        let restored = match &before {
            Some(old) => files::write_if_changed(&file, old, 0o644, None).map(|_| format!("{} was put back as it was", file.display())),
            None => std::fs::remove_file(&file).map(|_| format!("{} was removed again", file.display())).map_err(|source| FileError::Io {
                path: file.clone(),
                action: "removing",
                source,
            }),
        }?;
        let detail = match e {
            OwnDomainError::Command { detail, .. } => detail,
            other => other.to_string(),
        };
        return Err(OwnDomainError::NginxTest { detail, restored });
    }
    applied.lines.push(format!("{} ({}); nginx -t: ok", file.display(), if changed { "written" } else { "unchanged" }));
    if nginx_running(&nginx.conf) {
        applied.lines.push("nginx reloaded".into());
    } else if host::systemd_running() && nginx.conf == Path::new(DEFAULT_NGINX_CONF) {
        run("systemctl", &["enable", "--now", "nginx"])?;
        applied.lines.push("nginx started (systemctl enable --now nginx)".into());
    } else {
        run("nginx", &["-c", &conf])?;
        applied.nginx_started = true;
        applied.lines.push("nginx started".into());
    }
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    verify_cover(plan, addr)?;
    applied.lines.push(format!("https://{} on {addr} presents the certificate; an unknown name is refused", plan.domain));
    Ok(applied)
}

/// The cover presents exactly the certificate of `plan.cert` for the domain, and refuses an
/// unknown name (both through a real TLS handshake).
pub fn verify_cover(plan: &OwnDomain, addr: SocketAddr) -> Result<(), OwnDomainError> {
    let fail = |message: String| OwnDomainError::Cover { addr: addr.to_string(), message };
    if !wait_accepting(addr, Duration::from_secs(10)) {
        return Err(fail("nothing accepts connections there within 10 s; see the web server's error log".into()));
    }
    let want = tlscert::load_pair(&plan.cert, &plan.key).map_err(|e| fail(e.to_string()))?;
    let mut last = String::new();
    // A reload hands the port to new workers gradually: give it a few tries.
    for _ in 0..20 {
        match tlscert::fetch(addr, &plan.domain, Duration::from_secs(3)) {
            Ok(p) if p.chain.first() == want.first() => {
                let probe = format!("unknown-{}.invalid", std::process::id());
                return match tlscert::fetch(addr, &probe, Duration::from_secs(3)) {
                    Err(_) => Ok(()),
                    Ok(_) if matches!(plan.cover, Cover::Existing(_)) => Ok(()),
                    Ok(_) => {
                        Err(fail(format!("it completes a handshake for the unknown name {probe}; the default server must refuse it (ssl_reject_handshake on)")))
                    }
                };
            }
            Ok(p) => {
                last = format!(
                    "it presents another certificate than {} for {}: {}",
                    plan.cert.display(),
                    plan.domain,
                    p.chain.first().and_then(|c| tlscert::inspect(c, &plan.domain).ok()).map(|i| i.names()).unwrap_or_default()
                )
            }
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    Err(fail(last))
}

/// For uninstall: take the site out (or put the operator's file back), remove the folder setup
/// created, and reload nginx (or stop it when setup started it). Returns what was done.
pub fn remove(site_file: &Path, backup: Option<&Path>, site_root: Option<&Path>, conf: &Path, started: bool) -> Vec<String> {
    let mut done = Vec::new();
    match backup {
        Some(b) => {
            match std::fs::read(b).map_err(|e| e.to_string()).and_then(|old| files::write_if_changed(site_file, &old, 0o644, None).map_err(|e| e.to_string())) {
                Ok(_) => done.push(format!("put back your {} from {}", site_file.display(), b.display())),
                Err(e) => done.push(format!("warning: restoring {}: {e}", site_file.display())),
            }
        }
        None => match std::fs::remove_file(site_file) {
            Ok(()) => done.push(format!("removed {}", site_file.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => done.push(format!("warning: {}: {e}", site_file.display())),
        },
    }
    if let Some(d) = site_root {
        match std::fs::remove_dir_all(d) {
            Ok(()) => done.push(format!("removed {}", d.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => done.push(format!("warning: {}: {e}", d.display())),
        }
    }
    if host::on_path("nginx") {
        let c = conf.display().to_string();
        let r = if started {
            run("nginx", &["-c", &c, "-s", "quit"]).map(|_| "stopped nginx (setup had started it)")
        } else {
            run("nginx", &["-c", &c, "-s", "reload"]).map(|_| "nginx reloaded")
        };
        match r {
            Ok(m) => done.push(m.to_string()),
            Err(e) if started => done.push(format!("nginx was not stopped: {e}")),
            Err(_) => {}
        }
    }
    done
}

/// The HAProxy lines for the domain (written next to setup's files and printed).
pub fn haproxy_lines(domain: &str) -> String {
    let domains = [domain.to_string()];
    let backend = HostPort { host: "127.0.0.1".into(), port: HAPROXY_BACKEND_PORT };
    crate::hostsec::haproxy::render(&crate::hostsec::haproxy::Snippet { domains: &domains, backend: &backend, name: "vless_mtproxy", frontend: None })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(content: Content) -> OwnDomain {
        OwnDomain {
            domain: "cover.test".into(),
            cert: "/etc/letsencrypt/live/cover.test/fullchain.pem".into(),
            key: "/etc/letsencrypt/live/cover.test/privkey.pem".into(),
            cover: Cover::Nginx { port: 10443, content },
            behind_haproxy: false,
            replace_site: false,
        }
    }

    #[test]
    fn site_text_refuses_unknown_names_and_serves_the_domain() {
        let p = plan(Content::Root("/var/www/x".into()));
        let t = site_text(&p, 10443, &Content::Root("/var/www/x".into()), (1, 22, 1));
        assert!(t.starts_with(SITE_MARK), "{t}");
        assert!(
            t.contains(
                "listen 127.0.0.1:10443 ssl http2 default_server;\n    server_name _;\n    ssl_reject_handshake on;\n    ssl_protocols TLSv1.2 TLSv1.3;"
            ),
            "{t}"
        );
        assert!(t.contains("server_name cover.test;") && t.contains("ssl_certificate /etc/letsencrypt/live/cover.test/fullchain.pem;"));
        assert!(t.contains("ssl_protocols TLSv1.2 TLSv1.3;") && t.contains("ssl_ecdh_curve X25519:"));
        assert!(t.contains("root /var/www/x;"));
        let new = site_text(&p, 10443, &Content::Proxy("http://127.0.0.1:8080".into()), (1, 26, 0));
        assert!(new.contains("    http2 on;\n") && !new.contains("ssl http2") && new.contains("proxy_pass http://127.0.0.1:8080;"), "{new}");
        assert_eq!(p.mask_host(), "127.0.0.1:10443");
        assert_eq!(p.proxy_port(), 443);
    }

    #[test]
    fn inputs_are_checked() {
        assert_eq!(parse_nginx_version("nginx version: nginx/1.22.1\n"), Some((1, 22, 1)));
        assert_eq!(parse_nginx_version("nginx version: nginx/1.27.3 (Ubuntu)"), Some((1, 27, 3)));
        assert_eq!(parse_nginx_version("bash: nginx: not found"), None);
        assert_eq!(parse_content("http://127.0.0.1:8080").unwrap(), Content::Proxy("http://127.0.0.1:8080".into()));
        assert_eq!(parse_content("/srv/site").unwrap(), Content::Root("/srv/site".into()));
        assert!(parse_content("site").unwrap_err().0.contains("absolute folder"));
        assert!(parse_content("/a;b").is_err() && parse_content("http://x;y").is_err());
        let c = Content::Root("/s".into());
        assert_eq!(parse_cover("nginx", 10443, c.clone()).unwrap(), Cover::Nginx { port: 10443, content: c.clone() });
        assert_eq!(parse_cover("8080", 1, c.clone()).unwrap(), Cover::Existing(HostPort { host: "127.0.0.1".into(), port: 8080 }));
        assert_eq!(parse_cover("10.0.0.2:443", 1, c.clone()).unwrap(), Cover::Existing(HostPort { host: "10.0.0.2".into(), port: 443 }));
        assert!(parse_cover("web server", 1, c).unwrap_err().0.contains("write nginx"));
        let td = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/inspect/testdata");
        assert!(check_pair(&td.join("cover.crt"), &td.join("cover.key"), "cover.test").unwrap().contains("cover.test"));
        assert!(check_pair(&td.join("cover.crt"), &td.join("cover.key"), "other.test").unwrap_err().0.contains("not other.test"));
        assert!(check_pair(&td.join("cover.crt"), &td.join("other.key"), "cover.test").unwrap_err().0.contains("is not the key"));
        assert!(check_pair(&td.join("none.crt"), &td.join("cover.key"), "cover.test").unwrap_err().0.contains("cannot read the certificate"));
    }

    #[test]
    fn conflicts_only_with_files_that_are_not_ours() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join(SITE_FILE);
        assert!(!site_conflict(&f, false), "no file, no conflict");
        std::fs::write(&f, "server { listen 80; }\n").unwrap();
        assert!(site_conflict(&f, false));
        assert!(!site_conflict(&f, true), "recorded as ours");
        std::fs::write(&f, format!("{SITE_MARK} for x;\n")).unwrap();
        assert!(!site_conflict(&f, false), "our mark");
    }
}
