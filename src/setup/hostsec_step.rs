//! The host-security step: the UFW rule for the proxy port and the fail2ban filter and jail,
//! done by the binary's own `ufw` and `fail2ban-config` commands (docs/host-security.md), run as
//! separate processes so setup orchestrates them without a second copy of their logic.
//!
//! Neither is required for the proxy to work: a missing tool or a failed call is reported to
//! the admin and setup goes on; only what succeeded is recorded for uninstall.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

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
