//! The host-security step: the UFW rule for the proxy port and the fail2ban filter and jail,
//! done by the binary's own `ufw` and `fail2ban-config` commands (docs/host-security.md), run as
//! separate processes so setup orchestrates them without a second copy of their logic.
//!
//! Neither is required for the proxy to work: a missing tool or a failed call is reported to
//! the admin and setup goes on; only what succeeded is recorded for uninstall.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::host;
use super::options::{Answers, Paths};
use super::report::Steps;
use super::state::InstallState;
use super::SetupArgs;

/// One call's outcome, in the command's own words.
#[derive(Debug)]
pub struct Called {
    pub ok: bool,
    pub text: String,
}

/// Run `vless-mtproxy --config CONFIG ARGS...` with this binary.
pub fn call(binary: &Path, config: &Path, args: &[String]) -> Called {
    let out = Command::new(binary).arg0("vless-mtproxy").arg("--config").arg(config).args(args).stdin(Stdio::null()).output();
    match out {
        Ok(o) => {
            let mut text = String::from_utf8_lossy(&o.stdout).trim().to_string();
            let err = String::from_utf8_lossy(&o.stderr).trim().to_string();
            if !err.is_empty() {
                if !text.is_empty() {
                    text.push('\n');
                }
                text.push_str(&err);
            }
            Called { ok: o.status.success(), text }
        }
        Err(e) => Called { ok: false, text: format!("cannot run {}: {e}", binary.display()) },
    }
}

/// `ufw allow|limit --port P` plus the pass-through options (tests give a private rootdir).
pub fn ufw_args(action: &str, port: u16, extra: &[String]) -> Vec<String> {
    let mut a = vec!["ufw".to_string(), action.to_string(), "--port".to_string(), port.to_string()];
    a.extend(extra.iter().cloned());
    a
}

/// `fail2ban-config --write DIR ...` for the proxy's log file; `--check` when fail2ban-regex exists.
pub fn fail2ban_args(dir: &Path, log_file: &Path, port: u16, mode: &str) -> Vec<String> {
    let mut a = vec![
        "fail2ban-config".to_string(),
        "--write".to_string(),
        dir.display().to_string(),
        "--log".to_string(),
        log_file.display().to_string(),
        "--port".to_string(),
        port.to_string(),
        "--mode".to_string(),
        mode.to_string(),
    ];
    if crate::setup::host::on_path("fail2ban-regex") {
        a.push("--check".to_string());
    }
    a
}

/// The fail2ban files' contents, to tell whether a write changed anything (then reload).
pub fn fail2ban_files(dir: &Path) -> Vec<(PathBuf, Option<Vec<u8>>)> {
    ["filter.d/vless-mtproxy.conf", "filter.d/vless-mtproxy-flood.conf", "jail.d/vless-mtproxy.local"]
        .iter()
        .map(|r| {
            let p = dir.join(r);
            let c = std::fs::read(&p).ok();
            (p, c)
        })
        .collect()
}

/// UFW and fail2ban through the binary's own commands; reported, never fatal.
pub(super) fn host_security(args: &SetupArgs, paths: &Paths, answers: &Answers, previous: Option<&InstallState>, state: &mut InstallState, steps: &Steps) {
    let bin = paths.binary();
    let cfg = paths.config_file();
    let say = |prefix: &str, c: &Called| {
        for line in c.text.lines() {
            steps.detail(&format!("{prefix}{line}"));
        }
    };
    if let Some(old) = previous.and_then(|p| p.ufw_port).filter(|p| *p != answers.port) {
        let c = call(&bin, &cfg, &ufw_args("remove", old, &args.ufw_args));
        say(if c.ok { "ufw (old port): " } else { "warning: ufw (old port): " }, &c);
    }
    if answers.own.as_ref().is_some_and(|o| o.behind_haproxy) {
        steps.detail("ufw: the proxy listens on 127.0.0.1 behind HAProxy; HAProxy's port 443 is yours to allow");
    } else if args.ufw != "off" {
        let c = call(&bin, &cfg, &ufw_args(&args.ufw, answers.port, &args.ufw_args));
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
        let before = fail2ban_files(&args.fail2ban_dir);
        let c = call(&bin, &cfg, &fail2ban_args(&args.fail2ban_dir, &paths.log_file(), answers.port, &args.fail2ban_mode));
        say(if c.ok { "fail2ban: " } else { "warning: fail2ban: " }, &c);
        if c.ok {
            state.fail2ban_dir = Some(args.fail2ban_dir.clone());
            if before != fail2ban_files(&args.fail2ban_dir) && host::on_path("fail2ban-client") {
                let reloaded = host::succeeds("fail2ban-client", &["reload"], Duration::from_secs(20));
                steps.detail(if reloaded { "fail2ban: reloaded" } else { "fail2ban: not running, the jail is used when it starts" });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments() {
        assert_eq!(ufw_args("allow", 8443, &["--ufw-rootdir".into(), "/r".into()]), ["ufw", "allow", "--port", "8443", "--ufw-rootdir", "/r"]);
        let f = fail2ban_args(Path::new("/etc/fail2ban"), Path::new("/l/proxy.log"), 443, "all");
        assert_eq!(&f[..9], ["fail2ban-config", "--write", "/etc/fail2ban", "--log", "/l/proxy.log", "--port", "443", "--mode", "all"]);
    }
}
