//! The interactive wizard: one question at a time, each with a default that Enter accepts,
//! a clear word on a bad answer and the question again (a few times, then it gives up), and a
//! summary to confirm before anything on the host changes.
//!
//! It reads lines from any `BufRead` and writes to any `Write`, so tests drive it with plain
//! byte strings and the real run uses the terminal.

use std::io::{BufRead, Write};

use std::path::PathBuf;

use mtproxy_proto::SecretKind;

use crate::setup::options::{self, Answers, Draft, Invalid, KindChoice};
use crate::setup::owndomain::{self, Content, Cover, OwnDomain};

/// Attempts per question before the wizard stops.
const ATTEMPTS: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum WizardError {
    #[error("the input ended before the questions were answered")]
    Eof,
    #[error("{0} (asked {ATTEMPTS} times)")]
    TooManyTries(String),
    #[error("terminal: {0}")]
    Io(#[from] std::io::Error),
}

/// What the own-domain questions need from the host (closures, so tests need no host).
pub struct OwnCtx<'a> {
    /// Whether a domain resolves to this host (then the wizard offers own-domain mode).
    pub points_here: &'a dyn Fn(&str) -> bool,
    /// certbot's (certificate, key) paths for a domain.
    pub certbot: &'a dyn Fn(&str) -> (PathBuf, PathBuf),
    /// Whether the nginx site file exists and is not setup's.
    pub site_conflict: &'a dyn Fn() -> Option<PathBuf>,
}

impl OwnCtx<'_> {
    #[cfg(test)]
    pub fn none() -> OwnCtx<'static> {
        OwnCtx {
            points_here: &|_| false,
            certbot: &|d| owndomain::certbot_paths(std::path::Path::new(owndomain::DEFAULT_LETSENCRYPT_DIR), d),
            site_conflict: &|| None,
        }
    }
}

/// How the wizard finished.
#[derive(Debug, PartialEq, Eq)]
pub enum WizardResult {
    Proceed(Answers),
    Declined,
}

pub struct Wizard<R, W> {
    input: R,
    out: W,
}

impl<R: BufRead, W: Write> Wizard<R, W> {
    pub fn new(input: R, out: W) -> Self {
        Wizard { input, out }
    }

    fn ask<T>(&mut self, question: &str, default: &str, parse: impl Fn(&str) -> Result<T, Invalid>) -> Result<T, WizardError> {
        let mut last = String::new();
        for _ in 0..ATTEMPTS {
            if default.is_empty() {
                write!(self.out, "{question}: ")?;
            } else {
                write!(self.out, "{question} [{default}]: ")?;
            }
            self.out.flush()?;
            let mut line = String::new();
            if self.input.read_line(&mut line)? == 0 {
                writeln!(self.out)?;
                return Err(WizardError::Eof);
            }
            let answer = line.trim();
            let answer = if answer.is_empty() { default } else { answer };
            match parse(answer) {
                Ok(v) => return Ok(v),
                Err(Invalid(msg)) => {
                    writeln!(self.out, "  {msg}")?;
                    last = msg;
                }
            }
        }
        Err(WizardError::TooManyTries(last))
    }

    /// Ask everything. `defaults` come from flags, the environment or an existing install;
    /// `port_taken` says whether a port is used by something else than this proxy.
    #[cfg(test)]
    pub fn run(&mut self, defaults: &Draft, port_taken: &dyn Fn(u16) -> bool) -> Result<WizardResult, WizardError> {
        self.run_with(defaults, port_taken, &OwnCtx::none())
    }

    /// The own-domain questions: certificate, key, cover web server, layout.
    fn own_domain(
        &mut self,
        domain: &str,
        defaults: Option<&OwnDomain>,
        port_taken: &dyn Fn(u16) -> bool,
        ctx: &OwnCtx<'_>,
    ) -> Result<Option<(OwnDomain, u16)>, WizardError> {
        let (cb_cert, cb_key) = (ctx.certbot)(domain);
        let d_cert = defaults.map(|o| o.cert.clone()).unwrap_or(cb_cert);
        let d_key = defaults.map(|o| o.key.clone()).unwrap_or(cb_key);
        writeln!(self.out, "Own domain: {domain}'s certificate and key (certbot keeps them in /etc/letsencrypt/live/{domain}/).")?;
        let cert = self.ask("Certificate (PEM, full chain)", &d_cert.display().to_string(), |s| {
            let p = PathBuf::from(s.trim());
            owndomain::check_cert(&p, domain).map(|_| p)
        })?;
        let key = self.ask("Private key (PEM)", &d_key.display().to_string(), |s| {
            let p = PathBuf::from(s.trim());
            owndomain::check_pair(&cert, &p, domain).map(|_| p)
        })?;
        writeln!(
            self.out,
            "The cover site: nginx (setup writes a site for {domain} on 127.0.0.1), or the PORT / HOST:PORT of a web server here that already serves it."
        )?;
        let (d_cover, d_port, d_content) = match defaults.map(|o| &o.cover) {
            Some(Cover::Existing(hp)) => (hp.to_string(), owndomain::DEFAULT_COVER_PORT, owndomain::DEFAULT_SITE_ROOT.to_string()),
            Some(Cover::Nginx { port, content }) => (
                "nginx".to_string(),
                *port,
                match content {
                    Content::Root(d) => d.display().to_string(),
                    Content::Proxy(u) => u.clone(),
                },
            ),
            None => ("nginx".to_string(), owndomain::DEFAULT_COVER_PORT, owndomain::DEFAULT_SITE_ROOT.to_string()),
        };
        let placeholder = Content::Root(PathBuf::new());
        let mut cover = self.ask("Cover web server", &d_cover, |s| owndomain::parse_cover(s, d_port, placeholder.clone()))?;
        let mut replace_site = false;
        if let Cover::Nginx { .. } = cover {
            let port = self.ask("Loopback port of the nginx site", &d_port.to_string(), |s| {
                let p = options::parse_port(s)?;
                if port_taken(p) && p != d_port {
                    Err(Invalid(format!("port {p} is already in use on this host; choose another")))
                } else {
                    Ok(p)
                }
            })?;
            let content = self.ask("Site content: a folder of static pages, or the http:// address of your fake site", &d_content, owndomain::parse_content)?;
            cover = Cover::Nginx { port, content };
            if let Some(f) = (ctx.site_conflict)() {
                replace_site = self.ask(
                    &format!("{} exists and was not written by setup: replace it (a backup is kept and put back by uninstall)? (y/n)", f.display()),
                    "n",
                    |s| options::parse_yes_no(s, false),
                )?;
                if !replace_site {
                    writeln!(self.out, "Keeping {}.", f.display())?;
                    return Ok(None);
                }
            }
        }
        writeln!(self.out, "Layout:\n  alone    the proxy takes port 443 itself\n  haproxy  HAProxy on 443 routes {domain}'s SNI to the proxy (127.0.0.1:{}), next to VLESS-Reality", owndomain::HAPROXY_BACKEND_PORT)?;
        let d_layout = if defaults.is_some_and(|o| o.behind_haproxy) || port_taken(443) { "haproxy" } else { "alone" };
        let behind_haproxy = self.ask("Layout (alone/haproxy)", d_layout, |s| match s.trim().to_ascii_lowercase().as_str() {
            "alone" => {
                if port_taken(443) {
                    Err(Invalid("port 443 is already in use by another program (HAProxy, a web server?): choose haproxy, or free the port".into()))
                } else {
                    Ok(false)
                }
            }
            "haproxy" => Ok(true),
            other => Err(Invalid(format!("`{other}`: answer alone or haproxy"))),
        })?;
        let own = OwnDomain { domain: domain.to_string(), cert, key, cover, behind_haproxy, replace_site };
        let port = own.proxy_port();
        Ok(Some((own, port)))
    }

    /// As [`run`], offering own-domain mode (when the cover domain points here, or defaults
    /// already chose it).
    pub fn run_with(&mut self, defaults: &Draft, port_taken: &dyn Fn(u16) -> bool, ctx: &OwnCtx<'_>) -> Result<WizardResult, WizardError> {
        writeln!(self.out, "vless-mtproxy setup: a Telegram MTProto proxy for this host.\nPress Enter to accept the value in brackets.\n")?;
        if !self.ask("Install the Telegram proxy on this host? (y/n)", "y", |s| options::parse_yes_no(s, true))? {
            return Ok(WizardResult::Declined);
        }
        let port = self.ask("Port clients connect to (1-65535)", &defaults.port.to_string(), |s| {
            let p = options::parse_port(s)?;
            if port_taken(p) {
                Err(Invalid(format!("port {p} is already in use by another program on this host; choose another port")))
            } else {
                Ok(p)
            }
        })?;
        let workers = self.ask(&format!("Worker threads (1-{})", options::MAX_WORKERS), &defaults.workers.to_string(), options::parse_workers)?;
        writeln!(self.out, "Secret kind:\n  classic  plain obfuscated2 (oldest clients)\n  dd       random padding (default)\n  ee       fake-TLS: looks like HTTPS to a cover domain (best against DPI)")?;
        let mut own = None;
        let mut port = port;
        let kind = match self.ask("Secret kind (classic/dd/ee)", defaults.kind.name(), options::parse_kind)? {
            KindChoice::Ready(kind) => kind,
            // ee chosen, its cover domain asked now.
            KindChoice::FakeTlsAwaitingDomain => {
                let d = defaults.kind.domain().unwrap_or(options::DEFAULT_DOMAIN).to_string();
                if defaults.own.is_some() {
                    writeln!(self.out, "Own domain: the cover is this host's own site; the domain's A/AAAA records must point here.")?;
                } else {
                    writeln!(self.out, "The cover domain must be a real HTTPS site that is not blocked, and not your VPN's Reality destination.")?;
                }
                let domain = self.ask("Cover domain", &d, options::parse_domain)?;
                let offer = defaults.own.is_some()
                    || ((ctx.points_here)(&domain)
                        && self.ask(&format!("{domain} points at this host: make it your own domain (its certificate, a cover site on this host; strongest against probes)? (y/n)"), "y", |s| options::parse_yes_no(s, true))?);
                if offer {
                    match self.own_domain(&domain, defaults.own.as_deref(), port_taken, ctx)? {
                        Some((o, p)) => {
                            if p != port {
                                writeln!(
                                    self.out,
                                    "The proxy listens on port {p} ({}).",
                                    if o.behind_haproxy { "127.0.0.1, behind HAProxy" } else { "own domain, alone on 443" }
                                )?;
                            }
                            port = p;
                            own = Some(Box::new(o));
                        }
                        None => return Ok(WizardResult::Declined),
                    }
                }
                SecretKind::FakeTls { domain }
            }
        };
        let ad_default = defaults.ad_tag.clone().unwrap_or_default();
        let ad_tag = self.ask("Promoted channel tag from @MTProxybot (32 hex, Enter for none)", &ad_default, |s| {
            if s.trim().is_empty() || s.trim() == "-" {
                Ok(None)
            } else {
                options::parse_ad_tag(s).map(Some)
            }
        })?;
        let public_host = match &own {
            Some(o) => Some(defaults.public_host.clone().filter(|_| defaults.own.is_some()).unwrap_or_else(|| o.domain.clone())),
            None => defaults.public_host.clone(),
        };
        let answers = Answers { port, workers, kind, ad_tag, public_host, own };
        writeln!(self.out, "\nSummary:\n{}", summary(&answers.clone().into()))?;
        if self.ask("Proceed? (y/n)", "y", |s| options::parse_yes_no(s, true))? {
            Ok(WizardResult::Proceed(answers))
        } else {
            Ok(WizardResult::Declined)
        }
    }
}

impl<R: BufRead, W: Write> Wizard<R, W> {
    /// Offer the VLESS stack's Xray SOCKS inbound for the DC leg (default no: direct is what
    /// works on most hosts, and Xray then carries Telegram's traffic too).
    pub fn ask_upstream_xray(&mut self, address: &str, source: &std::path::Path) -> Result<bool, WizardError> {
        writeln!(
            self.out,
            "Xray has a SOCKS inbound on {address} ({}). Where this host's own route to Telegram is filtered,\nthe proxy can reach Telegram through it (Xray's config is not changed).",
            source.display()
        )?;
        self.ask("Send the proxy's connections to Telegram through Xray? (y/n)", "n", |s| options::parse_yes_no(s, false))
    }
}

/// The answers as the admin reads them, before and after the install (a non-interactive run
/// shows its draft: an ee kind that still awaits its domain has no cover domain line).
pub fn summary(a: &Draft) -> String {
    let mut s = format!("  port            {}\n  workers         {}\n  secret kind     {}\n", a.port, a.workers, a.kind.name());
    if let Some(d) = a.kind.domain() {
        s += &format!("  cover domain    {d}\n");
    }
    s += &format!("  promoted tag    {}\n", a.ad_tag.as_deref().unwrap_or("(none)"));
    s += &format!("  public host     {}\n", a.public_host.as_deref().unwrap_or("(a local address)"));
    if let Some(o) = &a.own {
        s += &o.describe();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drive(input: &str, taken: &dyn Fn(u16) -> bool) -> (Result<WizardResult, WizardError>, String) {
        let mut out = Vec::new();
        let r = Wizard::new(input.as_bytes(), &mut out).run(&Answers::default().into(), taken);
        (r, String::from_utf8(out).unwrap())
    }

    #[test]
    fn enter_accepts_every_default() {
        let (r, out) = drive("\n\n\n\n\n\n", &|_| false);
        assert_eq!(r.unwrap(), WizardResult::Proceed(Answers::default()));
        assert!(out.contains("Port clients connect to (1-65535) [8443]: "), "{out}");
        assert!(out.contains("Summary:"));
    }

    #[test]
    fn bad_answers_are_asked_again_and_ee_asks_the_domain() {
        let taken = |p: u16| p == 9000;
        let (r, out) = drive("y\n70000\n9000\n9443\nx\n2\nee\nlocalhost\nwww.example.com\nnothex\n0123456789abcdef0123456789abcdef\ny\n", &taken);
        let want = Answers {
            port: 9443,
            workers: 2,
            kind: SecretKind::FakeTls { domain: "www.example.com".into() },
            ad_tag: Some("0123456789abcdef0123456789abcdef".into()),
            public_host: None,
            own: None,
        };
        assert_eq!(r.unwrap(), WizardResult::Proceed(want));
        assert!(out.contains("`70000` is not a port"));
        assert!(out.contains("port 9000 is already in use"));
        assert!(out.contains("`x` is not a worker count"));
        assert!(out.contains("`localhost` is not a usable cover domain"));
        assert!(out.contains("32 hex characters"));
    }

    #[test]
    fn a_domain_that_points_here_is_offered_as_own_domain() {
        let td = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/inspect/testdata");
        let certbot = |_: &str| (td.join("cover.crt"), td.join("cover.key"));
        let ctx = OwnCtx { points_here: &|d| d == "cover.test", certbot: &certbot, site_conflict: &|| None };
        let taken = |p: u16| p == 443;
        // ee, cover.test (points here: yes), a wrong key first, certbot's defaults, nginx, port,
        // a relative folder refused, a folder; 443 is taken, so `alone` is refused: haproxy.
        let input = format!("y\n\n\nee\ncover.test\n\n\n{}\n\nnginx\n\nsite\n/srv/cover\nalone\nhaproxy\n\ny\n", td.join("other.key").display());
        let mut out = Vec::new();
        let r = Wizard::new(input.as_bytes(), &mut out).run_with(&Answers::default().into(), &taken, &ctx).unwrap();
        let out = String::from_utf8(out).unwrap();
        let WizardResult::Proceed(a) = r else { panic!("{out}") };
        let own = a.own.clone().expect("own domain chosen");
        assert_eq!((a.port, a.public_host.as_deref()), (owndomain::HAPROXY_BACKEND_PORT, Some("cover.test")), "{out}");
        assert_eq!(a.kind, SecretKind::FakeTls { domain: "cover.test".into() });
        assert_eq!(own.cover, Cover::Nginx { port: owndomain::DEFAULT_COVER_PORT, content: Content::Root("/srv/cover".into()) });
        assert!(own.behind_haproxy && own.key == td.join("cover.key"));
        assert!(out.contains("is not the key of the certificate"), "{out}");
        assert!(out.contains("port 443 is already in use"), "{out}");
        assert!(out.contains("own domain      cover.test"), "{out}");
        // A domain that does not point here is not offered.
        let (r, out) = drive("y\n\n\nee\nwww.example.com\n\ny\n", &|_| false);
        assert!(matches!(r.unwrap(), WizardResult::Proceed(Answers { own: None, .. })) && !out.contains("own domain"));
    }

    #[test]
    fn the_xray_question_defaults_to_no() {
        let ask = |input: &str| {
            let mut out = Vec::new();
            let r = Wizard::new(input.as_bytes(), &mut out).ask_upstream_xray("127.0.0.1:10808", std::path::Path::new("/x.json")).unwrap();
            (r, String::from_utf8(out).unwrap())
        };
        let (r, out) = ask("\n");
        assert!(!r && out.contains("SOCKS inbound on 127.0.0.1:10808 (/x.json)") && out.contains("[n]: "), "{out}");
        assert!(ask("y\n").0);
    }

    #[test]
    fn decline_eof_and_give_up() {
        assert_eq!(drive("n\n", &|_| false).0.unwrap(), WizardResult::Declined);
        assert_eq!(drive("\n\n\n\n\nn\n", &|_| false).0.unwrap(), WizardResult::Declined);
        assert!(matches!(drive("y\n", &|_| false).0, Err(WizardError::Eof)));
        assert!(matches!(drive("y\na\nb\nc\nd\ne\n", &|_| false).0, Err(WizardError::TooManyTries(_))));
    }
}
