//! The fail2ban filter and jail, generated from the proxy's documented failed-handshake line
//! (`crates/core/src/events.rs`):
//!
//! ```text
//! 2026-01-02T03:04:05.678901Z  WARN vless_mtproxy::handshake: handshake failed client=203.0.113.9:51234 reason=bad_secret
//! ... handshake failed client=[2001:db8::7]:40000 reason=replay
//! ```
//!
//! Which reasons count is a policy (docs/host-security.md, "Who fails"):
//! - `all` (default) counts what only a client without a valid secret produces: `bad_secret`,
//!   `replay`, `malformed`, `untrusted_proxy`. It never counts `rotated_secret` (a user whose
//!   secret was just rotated), `user_disabled` (a known user the admin switched off),
//!   `clock_skew`, `bad_sni` and `bad_transport` (the secret was right; the phone's clock or
//!   the link is wrong), or `timeout` (slow mobile links and carrier NATs produce them).
//! - `replay-and-flood` bans only replays (jail `vless-mtproxy`) and floods of failures of any
//!   reason (jail `vless-mtproxy-flood`, 30 in a minute), for hosts whose users sit behind
//!   carrier NATs where one stale link must not ban everyone on that address.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{bail, Context};

/// Reasons the default jail counts.
pub const COUNTED: &[&str] = &["bad_secret", "replay", "malformed", "untrusted_proxy"];
/// Reasons no default jail counts, with why (printed into the filter file).
pub const NOT_COUNTED: &[(&str, &str)] = &[
    ("rotated_secret", "a real user whose secret was rotated and who has not updated the link yet"),
    ("user_disabled", "a known user the admin switched off; the app keeps retrying"),
    ("clock_skew", "the secret was right; the phone's clock is wrong"),
    ("bad_sni", "the secret was right; the link names another domain"),
    ("bad_transport", "the secret was right; the client uses another transport"),
    ("timeout", "slow mobile links; many users behind one carrier NAT"),
];

/// Failures of any reason from one address within [`FLOOD_FINDTIME`] that make a flood.
pub const FLOOD_MAXRETRY: u32 = 30;
pub const FLOOD_FINDTIME: &str = "1m";

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Count every failure that only a client without a valid secret produces.
    All,
    /// Count only replays, plus floods of failures of any kind.
    ReplayAndFlood,
}

#[derive(clap::Args)]
pub struct Fail2banArgs {
    /// Which failures lead to a ban.
    #[arg(long, value_enum, default_value = "all")]
    pub mode: Mode,
    /// The proxy's log file (its stderr redirected), or `systemd:UNIT` to read the journal.
    #[arg(long, default_value = "/var/log/vless-mtproxy/proxy.log")]
    pub log: String,
    /// Port to block for a banned address. Default: the configuration's first listen port.
    #[arg(long)]
    pub port: Option<u16>,
    /// Failures within `--findtime` that ban an address.
    #[arg(long, default_value_t = 5)]
    pub maxretry: u32,
    /// Window for counting failures (fail2ban time syntax, e.g. 10m).
    #[arg(long, default_value = "10m")]
    pub findtime: String,
    /// How long a ban lasts (fail2ban time syntax, e.g. 1h).
    #[arg(long, default_value = "1h")]
    pub bantime: String,
    /// Write `filter.d/` and `jail.d/` files under DIR (e.g. /etc/fail2ban) instead of printing.
    #[arg(long, value_name = "DIR")]
    pub write: Option<PathBuf>,
    /// After writing, check the filter with `fail2ban-regex` against sample lines.
    #[arg(long, requires = "write")]
    pub check: bool,
    /// Remove the files this command writes from DIR and reload fail2ban.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["write", "check"])]
    pub remove: Option<PathBuf>,
}

/// What the jail needs to know.
#[derive(Clone, Debug)]
pub struct JailSettings {
    pub mode: Mode,
    pub log: String,
    pub port: u16,
    pub maxretry: u32,
    pub findtime: String,
    pub bantime: String,
}

/// One generated file: its path relative to the fail2ban directory, and its text.
pub struct GeneratedFile {
    pub rel: &'static str,
    pub text: String,
}

pub const FILTER: &str = "filter.d/vless-mtproxy.conf";
pub const FLOOD_FILTER: &str = "filter.d/vless-mtproxy-flood.conf";
pub const JAIL: &str = "jail.d/vless-mtproxy.local";
/// Every file any mode may write (what `--remove` deletes).
pub const ALL_FILES: &[&str] = &[FILTER, FLOOD_FILTER, JAIL];

/// The failregex for lines whose reason is one of `reasons` (`None`: any reason).
///
/// fail2ban strips the timestamp and leaves the rest of the line with a leading space; the
/// level and target (`WARN vless_mtproxy::handshake:`) or a journal prefix may come before the
/// message, so up to eight words are skipped. IPv6 addresses are in brackets.
pub fn failregex(reasons: Option<&[&str]>) -> String {
    let reasons = match reasons {
        Some(r) => format!("(?:{})", r.join("|")),
        None => "[a-z_]+".to_string(),
    };
    format!(r"^\s*(?:\S+\s+){{0,8}}?handshake failed client=\[?<ADDR>\]?:\d+ reason={reasons}\s*$")
}

fn filter_text(title: &str, counted: Option<&[&str]>) -> String {
    let mut s = String::new();
    s.push_str("# Generated by `vless-mtproxy fail2ban-config`; regenerate rather than edit.\n");
    s.push_str(&format!("# {title}\n"));
    s.push_str("# Matches the proxy's failed-handshake line (docs/host-security.md):\n");
    s.push_str("#   handshake failed client=203.0.113.9:51234 reason=bad_secret\n");
    s.push_str("#   handshake failed client=[2001:db8::7]:40000 reason=replay\n");
    match counted {
        Some(c) => {
            s.push_str(&format!("# Counted: {}\n# Not counted:\n", c.join(", ")));
            for (r, why) in NOT_COUNTED.iter().filter(|(r, _)| !c.contains(r)) {
                s.push_str(&format!("#   {r}: {why}\n"));
            }
            for r in COUNTED.iter().filter(|r| !c.contains(r)) {
                s.push_str(&format!("#   {r}: counted only by the default mode\n"));
            }
        }
        None => s.push_str("# Counted: every reason (a flood of failures from one address)\n"),
    }
    s.push_str("\n[Definition]\n");
    s.push_str(&format!("failregex = {}\n", failregex(counted)));
    s.push_str("ignoreregex =\n");
    s.push_str("# The proxy writes RFC 3339 UTC timestamps (2026-01-02T03:04:05.678901Z).\n");
    s.push_str("datepattern = {^LN-BEG}%%Y-%%m-%%dT%%H:%%M:%%S(?:\\.%%f)?Z\n");
    s
}

fn jail_section(name: &str, filter: &str, s: &JailSettings, maxretry: u32, findtime: &str) -> String {
    let mut out = format!("[{name}]\nenabled  = true\nfilter   = {filter}\nport     = {}\nprotocol = tcp\n", s.port);
    match s.log.strip_prefix("systemd:") {
        Some(unit) => out.push_str(&format!("backend  = systemd\njournalmatch = _SYSTEMD_UNIT={unit}\n")),
        None => out.push_str(&format!("backend  = auto\nlogpath  = {}\n", s.log)),
    }
    out.push_str(&format!("maxretry = {maxretry}\nfindtime = {findtime}\nbantime  = {}\n", s.bantime));
    out
}

/// The files for `settings.mode`.
pub fn generate(s: &JailSettings) -> Vec<GeneratedFile> {
    let header = "# Generated by `vless-mtproxy fail2ban-config`; regenerate rather than edit.\n# See docs/host-security.md for what is counted and why.\n\n";
    match s.mode {
        Mode::All => vec![
            GeneratedFile { rel: FILTER, text: filter_text("Mode `all`: failures only a client without a valid secret produces.", Some(COUNTED)) },
            GeneratedFile { rel: JAIL, text: format!("{header}{}", jail_section("vless-mtproxy", "vless-mtproxy", s, s.maxretry, &s.findtime)) },
        ],
        Mode::ReplayAndFlood => vec![
            GeneratedFile { rel: FILTER, text: filter_text("Mode `replay-and-flood`: replayed handshakes only.", Some(&["replay"])) },
            GeneratedFile { rel: FLOOD_FILTER, text: filter_text("Mode `replay-and-flood`: floods of failed handshakes.", None) },
            GeneratedFile {
                rel: JAIL,
                text: format!(
                    "{header}{}\n{}",
                    jail_section("vless-mtproxy", "vless-mtproxy", s, s.maxretry, &s.findtime),
                    jail_section("vless-mtproxy-flood", "vless-mtproxy-flood", s, FLOOD_MAXRETRY, FLOOD_FINDTIME)
                ),
            },
        ],
    }
}

/// Sample log lines, each with whether the default (`all`) filter must count it.
pub fn sample_lines() -> Vec<(String, bool)> {
    let mut out = Vec::new();
    let mut t = 0;
    let mut line = |client: &str, reason: &str| {
        t += 1;
        format!("2026-01-02T03:04:{:02}.123456Z  WARN vless_mtproxy::handshake: handshake failed client={client} reason={reason}", t % 60)
    };
    for r in COUNTED {
        out.push((line("203.0.113.9:51234", r), true));
        out.push((line("[2001:db8::7]:40000", r), true));
    }
    for (r, _) in NOT_COUNTED {
        out.push((line("198.51.100.4:1234", r), false));
    }
    out.push(("2026-01-02T03:05:00.000000Z  INFO vless_mtproxy: listening on 0.0.0.0:8443".to_string(), false));
    out
}

/// Run `fail2ban-regex` on the samples with the filter at `filter`; error unless exactly the
/// lines the mode counts matched.
pub fn check_filter(filter: &Path, mode: Mode) -> anyhow::Result<String> {
    let samples = sample_lines();
    let want = samples
        .iter()
        .filter(|(l, all)| match mode {
            Mode::All => *all,
            Mode::ReplayAndFlood => l.ends_with("reason=replay"),
        })
        .count();
    let dir = std::env::temp_dir().join(format!("vless-mtproxy-f2b-{}", std::process::id()));
    fs::create_dir_all(&dir)?;
    let sample_path = dir.join("samples.log");
    fs::write(&sample_path, samples.iter().map(|(l, _)| format!("{l}\n")).collect::<String>())?;
    let out = Command::new("fail2ban-regex").arg(&sample_path).arg(filter).output();
    let _ = fs::remove_dir_all(&dir);
    let out = out.context("running fail2ban-regex (Debian package fail2ban)")?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    if !out.status.success() {
        bail!("fail2ban-regex failed on {}:\n{}{}", filter.display(), text, String::from_utf8_lossy(&out.stderr));
    }
    let matched = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Lines: ").and_then(|r| r.split(", ").find_map(|p| p.strip_suffix(" matched")?.parse::<usize>().ok())))
        .with_context(|| format!("fail2ban-regex printed no `Lines:` summary:\n{text}"))?;
    if matched != want {
        bail!("the filter {} matched {matched} of the sample lines, expected {want}:\n{text}", filter.display());
    }
    Ok(format!("fail2ban-regex: {matched} of {} sample lines matched, as expected", samples.len()))
}

fn write_file(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(d) = path.parent() {
        fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let tmp = path.with_extension("tmp-vless-mtproxy");
    let mut f = fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o644).open(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Write the files of `settings` under `dir`; removes a flood filter left by another mode.
pub fn install(dir: &Path, settings: &JailSettings) -> anyhow::Result<Vec<PathBuf>> {
    let files = generate(settings);
    let mut written = Vec::new();
    for f in &files {
        let p = dir.join(f.rel);
        write_file(&p, &f.text)?;
        written.push(p);
    }
    for rel in ALL_FILES.iter().filter(|r| !files.iter().any(|f| f.rel == **r)) {
        let _ = fs::remove_file(dir.join(rel));
    }
    Ok(written)
}

/// Remove every file [`install`] may have written; returns those that existed.
pub fn uninstall(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    for rel in ALL_FILES {
        let p = dir.join(rel);
        match fs::remove_file(&p) {
            Ok(()) => removed.push(p),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", p.display())),
        }
    }
    Ok(removed)
}

/// `fail2ban-client reload`, when fail2ban is installed and running; says what happened.
pub fn reload() -> String {
    match Command::new("fail2ban-client").arg("reload").output() {
        Err(_) => "fail2ban is not installed (no fail2ban-client); nothing to reload".to_string(),
        Ok(o) if o.status.success() => "fail2ban reloaded".to_string(),
        Ok(o) => format!("fail2ban did not reload (is it running?): {}", String::from_utf8_lossy(&o.stderr).trim().lines().last().unwrap_or("no message")),
    }
}

pub fn run(config: &Path, a: Fail2banArgs) -> anyhow::Result<ExitCode> {
    if let Some(dir) = &a.remove {
        let removed = uninstall(dir)?;
        if removed.is_empty() {
            println!("no vless-mtproxy fail2ban files under {}", dir.display());
        }
        for p in removed {
            println!("removed {}", p.display());
        }
        println!("{}", reload());
        return Ok(ExitCode::SUCCESS);
    }
    for (name, v) in [("--findtime", &a.findtime), ("--bantime", &a.bantime)] {
        let ok = !v.is_empty()
            && v.trim_end_matches(|c: char| c.is_ascii_alphabetic()).chars().all(|c| c.is_ascii_digit())
            && v.starts_with(|c: char| c.is_ascii_digit());
        if !ok {
            bail!("{name} `{v}` is not a fail2ban time; write e.g. 600, 10m, 1h or 1d");
        }
    }
    if a.maxretry == 0 {
        bail!("--maxretry 0 would ban on nothing; give 1 or more (default 5)");
    }
    if !a.log.starts_with("systemd:") && !a.log.starts_with('/') {
        bail!("--log `{}` is not an absolute path; write e.g. /var/log/vless-mtproxy/proxy.log or systemd:vless-mtproxy.service", a.log);
    }
    let port = match a.port {
        Some(p) => p,
        None => super::config_port(config)?,
    };
    let settings = JailSettings { mode: a.mode, log: a.log, port, maxretry: a.maxretry, findtime: a.findtime, bantime: a.bantime };
    match &a.write {
        None => {
            for f in generate(&settings) {
                println!("# ===== {} =====\n{}", f.rel, f.text);
            }
        }
        Some(dir) => {
            for p in install(dir, &settings)? {
                println!("wrote {}", p.display());
            }
            if a.check {
                println!("{}", check_filter(&dir.join(FILTER), settings.mode)?);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(mode: Mode) -> JailSettings {
        JailSettings { mode, log: "/var/log/vless-mtproxy/proxy.log".into(), port: 8443, maxretry: 5, findtime: "10m".into(), bantime: "1h".into() }
    }

    #[test]
    fn default_jail_has_the_seed_defaults() {
        let files = generate(&settings(Mode::All));
        assert_eq!(files.iter().map(|f| f.rel).collect::<Vec<_>>(), vec![FILTER, JAIL]);
        let jail = &files[1].text;
        for want in ["[vless-mtproxy]", "port     = 8443", "maxretry = 5", "findtime = 10m", "bantime  = 1h", "logpath  = /var/log/vless-mtproxy/proxy.log"] {
            assert!(jail.contains(want), "{want} missing in\n{jail}");
        }
        let filter = &files[0].text;
        assert!(filter.contains("reason=(?:bad_secret|replay|malformed|untrusted_proxy)"), "{filter}");
        assert!(!filter.lines().any(|l| l.starts_with("failregex") && l.contains("rotated_secret")));
    }

    #[test]
    fn replay_and_flood_has_two_jails_and_journal_backend() {
        let mut s = settings(Mode::ReplayAndFlood);
        s.log = "systemd:vless-mtproxy.service".into();
        let files = generate(&s);
        assert_eq!(files.len(), 3);
        assert!(files[0].text.contains("reason=(?:replay)"));
        assert!(files[1].text.contains("reason=[a-z_]+"));
        let jail = &files[2].text;
        assert!(jail.contains("[vless-mtproxy-flood]") && jail.contains("maxretry = 30") && jail.contains("findtime = 1m"));
        assert!(jail.contains("journalmatch = _SYSTEMD_UNIT=vless-mtproxy.service") && !jail.contains("logpath"));
    }

    #[test]
    fn install_and_uninstall_round_trip() {
        let dir = std::env::temp_dir().join(format!("f2b-unit-{}", std::process::id()));
        install(&dir, &settings(Mode::ReplayAndFlood)).unwrap();
        assert!(dir.join(FLOOD_FILTER).exists());
        install(&dir, &settings(Mode::All)).unwrap();
        assert!(!dir.join(FLOOD_FILTER).exists(), "switching modes leaves no stale flood filter");
        let removed = uninstall(&dir).unwrap();
        assert_eq!(removed.len(), 2);
        assert!(!dir.join(FILTER).exists() && !dir.join(JAIL).exists());
        fs::remove_dir_all(&dir).unwrap();
    }
}
