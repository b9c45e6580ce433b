//! The UFW rule for the proxy port: exactly one rule (`PORT/tcp`, v4 and v6 as UFW does),
//! tagged with the comment `vless-mtproxy`, and removal of exactly that rule.
//!
//! We never touch a rule we did not add: when the port is already opened by another rule we
//! say so and add nothing, and `remove` deletes only rules carrying our comment. UFW missing or
//! inactive is reported, not an error.
//!
//! `limit` is UFW's rate limit: more than 6 connections from one address within 30 s are
//! dropped. Telegram clients open several connections at once (one per DC and media), so a
//! single user can hit it; hence the warning.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{bail, Context};

/// The comment that marks our rule.
pub const COMMENT: &str = "vless-mtproxy";

pub const LIMIT_WARNING: &str = "warning: `ufw limit` allows 6 connections per 30 s from one address and drops the rest; \
Telegram clients open several connections at once (one per DC, more for media), so busy users \
and users behind one carrier NAT can be cut off. Prefer `allow` plus the fail2ban jail.";

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Action {
    Allow,
    Limit,
    Remove,
}

#[derive(clap::Args)]
pub struct UfwArgs {
    #[arg(value_enum)]
    pub action: Action,
    /// The proxy port. Default: the configuration's first listen port.
    #[arg(long)]
    pub port: Option<u16>,
    /// The ufw program.
    #[arg(long, default_value = "ufw")]
    pub ufw_bin: PathBuf,
    /// Passed to ufw as --rootdir (tests run UFW on a copy of its files).
    #[arg(long, hide = true, requires = "ufw_datadir")]
    pub ufw_rootdir: Option<PathBuf>,
    /// Passed to ufw as --datadir.
    #[arg(long, hide = true, requires = "ufw_rootdir")]
    pub ufw_datadir: Option<PathBuf>,
}

/// How to run ufw.
pub struct Ufw {
    pub bin: PathBuf,
    pub rootdir: Option<PathBuf>,
    pub datadir: Option<PathBuf>,
}

/// What happened, in words for the operator.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    NotInstalled,
    Added { inactive: bool },
    AlreadyPresent,
    CoveredByOtherRule(String),
    Removed(usize),
    NothingToRemove,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::NotInstalled => write!(f, "UFW is not installed; skipping (open the port in your firewall yourself)"),
            Outcome::Added { inactive: false } => write!(f, "UFW rule added"),
            Outcome::Added { inactive: true } => write!(f, "UFW rule added, but UFW is inactive: it takes effect after `ufw enable`"),
            Outcome::AlreadyPresent => write!(f, "UFW rule already present; nothing changed"),
            Outcome::CoveredByOtherRule(r) => {
                write!(f, "the port is already in another UFW rule (`{r}`); not adding ours, and `remove` will leave that rule alone")
            }
            Outcome::Removed(n) => write!(f, "removed {n} vless-mtproxy UFW rule(s)"),
            Outcome::NothingToRemove => write!(f, "no vless-mtproxy UFW rule for this port; nothing removed"),
        }
    }
}

impl Ufw {
    fn cmd(&self) -> Command {
        let mut c = Command::new(&self.bin);
        if let (Some(r), Some(d)) = (&self.rootdir, &self.datadir) {
            c.arg(format!("--rootdir={}", r.display())).arg(format!("--datadir={}", d.display()));
        }
        c
    }

    fn run(&self, args: &[&str]) -> anyhow::Result<Option<String>> {
        let out = match self.cmd().args(args).output() {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            r => r.with_context(|| format!("running {}", self.bin.display()))?,
        };
        if !out.status.success() {
            bail!("`ufw {}` failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(Some(String::from_utf8_lossy(&out.stdout).into_owned()))
    }

    /// `ufw show added` rule lines (without the leading `ufw `).
    fn added(&self) -> anyhow::Result<Option<Vec<String>>> {
        Ok(self.run(&["show", "added"])?.map(|t| t.lines().filter_map(|l| l.trim().strip_prefix("ufw ")).map(str::to_string).collect()))
    }

    /// Add our rule (`allow` or `limit`).
    pub fn open(&self, port: u16, limit: bool) -> anyhow::Result<Outcome> {
        let Some(status) = self.run(&["status"])? else { return Ok(Outcome::NotInstalled) };
        let inactive = status.lines().any(|l| l.trim() == "Status: inactive");
        let spec = format!("{port}/tcp");
        let action = if limit { "limit" } else { "allow" };
        let rules = self.added()?.unwrap_or_default();
        for r in rules.iter().filter(|r| mentions_port(r, port)) {
            if is_ours(r, port).as_deref() == Some(action) {
                return Ok(Outcome::AlreadyPresent);
            }
            if is_ours(r, port).is_none() {
                return Ok(Outcome::CoveredByOtherRule(r.clone()));
            }
        }
        // Switching allow <-> limit: drop our other rule first, so exactly one remains.
        self.remove(port)?;
        self.run(&[action, &spec, "comment", COMMENT])?;
        Ok(Outcome::Added { inactive })
    }

    /// Delete every rule for `port` that carries our comment.
    pub fn remove(&self, port: u16) -> anyhow::Result<Outcome> {
        let Some(rules) = self.added()? else { return Ok(Outcome::NotInstalled) };
        let mut n = 0;
        for r in &rules {
            if let Some(action) = is_ours(r, port) {
                self.run(&["delete", &action, &format!("{port}/tcp")])?;
                n += 1;
            }
        }
        Ok(if n == 0 { Outcome::NothingToRemove } else { Outcome::Removed(n) })
    }
}

/// Whether a rule line names `port` at all (`8443/tcp`, `8443`, `port 8443`, ranges not parsed).
fn mentions_port(rule: &str, port: u16) -> bool {
    let p = port.to_string();
    let words: Vec<&str> = rule.split_whitespace().collect();
    words.iter().any(|w| *w == p || w.split('/').next() == Some(&p))
}

/// `Some(action)` when the line is exactly our rule: `allow|limit PORT/tcp comment 'vless-mtproxy'`.
fn is_ours(rule: &str, port: u16) -> Option<String> {
    let rest = rule.strip_suffix(&format!(" comment '{COMMENT}'"))?;
    let mut w = rest.split_whitespace();
    let action = w.next()?;
    let spec = w.next()?;
    (w.next().is_none() && matches!(action, "allow" | "limit") && spec == format!("{port}/tcp")).then(|| action.to_string())
}

pub fn run(config: &Path, a: UfwArgs) -> anyhow::Result<ExitCode> {
    let port = match a.port {
        Some(p) => p,
        None => super::config_port(config)?,
    };
    let ufw = Ufw { bin: a.ufw_bin, rootdir: a.ufw_rootdir, datadir: a.ufw_datadir };
    let outcome = match a.action {
        Action::Allow => ufw.open(port, false)?,
        Action::Limit => {
            eprintln!("{LIMIT_WARNING}");
            ufw.open(port, true)?
        }
        Action::Remove => ufw.remove(port)?,
    };
    println!("{outcome}");
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_only_our_rule() {
        assert_eq!(is_ours("allow 8443/tcp comment 'vless-mtproxy'", 8443).as_deref(), Some("allow"));
        assert_eq!(is_ours("limit 8443/tcp comment 'vless-mtproxy'", 8443).as_deref(), Some("limit"));
        assert_eq!(is_ours("allow 8443/tcp", 8443), None);
        assert_eq!(is_ours("allow 8443/tcp comment 'web'", 8443), None);
        assert_eq!(is_ours("allow 443/tcp comment 'vless-mtproxy'", 8443), None);
        assert_eq!(is_ours("allow from 10.0.0.0/8 to any port 8443 comment 'vless-mtproxy'", 8443), None);
        assert!(mentions_port("allow 8443/tcp", 8443));
        assert!(mentions_port("allow from 10.0.0.0/8 to any port 8443", 8443));
        assert!(!mentions_port("allow 18443/tcp", 8443));
    }

    #[test]
    fn missing_ufw_is_reported_not_an_error() {
        let ufw = Ufw { bin: "/nonexistent/ufw".into(), rootdir: None, datadir: None };
        assert_eq!(ufw.open(8443, false).unwrap(), Outcome::NotInstalled);
        assert_eq!(ufw.remove(8443).unwrap(), Outcome::NotInstalled);
    }
}
