//! The interactive wizard: one question at a time, each with a default that Enter accepts,
//! a clear word on a bad answer and the question again (a few times, then it gives up), and a
//! summary to confirm before anything on the host changes.
//!
//! It reads lines from any `BufRead` and writes to any `Write`, so tests drive it with plain
//! byte strings and the real run uses the terminal.

use std::io::{BufRead, Write};

use crate::setup::options::{self, Answers, Invalid, Kind};

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
    pub fn run(&mut self, defaults: &Answers, port_taken: &dyn Fn(u16) -> bool) -> Result<WizardResult, WizardError> {
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
        let kind = self.ask("Secret kind (classic/dd/ee)", defaults.kind.name(), options::parse_kind)?;
        let domain = if kind == Kind::Ee {
            let d = defaults.domain.clone().unwrap_or_else(|| options::DEFAULT_DOMAIN.to_string());
            writeln!(self.out, "The cover domain must be a real HTTPS site that is not blocked, and not your VPN's Reality destination.")?;
            Some(self.ask("Cover domain", &d, options::parse_domain)?)
        } else {
            None
        };
        let ad_default = defaults.ad_tag.clone().unwrap_or_default();
        let ad_tag = self.ask("Promoted channel tag from @MTProxybot (32 hex, Enter for none)", &ad_default, |s| {
            if s.trim().is_empty() || s.trim() == "-" {
                Ok(None)
            } else {
                options::parse_ad_tag(s).map(Some)
            }
        })?;
        let answers = Answers { port, workers, kind, domain, ad_tag, public_host: defaults.public_host.clone() };
        writeln!(self.out, "\nSummary:\n{}", summary(&answers))?;
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

/// The answers as the admin reads them, before and after the install.
pub fn summary(a: &Answers) -> String {
    let mut s = format!("  port            {}\n  workers         {}\n  secret kind     {}\n", a.port, a.workers, a.kind.name());
    if let Some(d) = &a.domain {
        s += &format!("  cover domain    {d}\n");
    }
    s += &format!("  promoted tag    {}\n", a.ad_tag.as_deref().unwrap_or("(none)"));
    s += &format!("  public host     {}\n", a.public_host.as_deref().unwrap_or("(a local address)"));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drive(input: &str, taken: &dyn Fn(u16) -> bool) -> (Result<WizardResult, WizardError>, String) {
        let mut out = Vec::new();
        let r = Wizard::new(input.as_bytes(), &mut out).run(&Answers::default(), taken);
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
        let want = Answers { port: 9443, workers: 2, kind: Kind::Ee, domain: Some("www.example.com".into()), ad_tag: Some("0123456789abcdef0123456789abcdef".into()), public_host: None };
        assert_eq!(r.unwrap(), WizardResult::Proceed(want));
        assert!(out.contains("`70000` is not a port"));
        assert!(out.contains("port 9000 is already in use"));
        assert!(out.contains("`x` is not a worker count"));
        assert!(out.contains("`localhost` is not a usable cover domain"));
        assert!(out.contains("32 hex characters"));
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
