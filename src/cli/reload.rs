//! `reload`: make the running proxy re-read its configuration now.
//!
//! A proxy on this host (systemd unit or plain process) is found by its pid file and gets
//! SIGHUP. A proxy in setup's container (`vless_mtproxy`, Docker or Podman; docs/install.md)
//! writes its pid file inside the container, where the host cannot see it (and its pid there
//! is the container's own); then the container engine delivers the signal
//! (`podman kill --signal HUP vless_mtproxy`, the same for docker), provided the container
//! mounts this configuration's folder, so the file that was checked is the one it re-reads.
//!
//! What the proxy does with it (src/serve.rs): SIGHUP reloads the file at once, even when it
//! did not change, and reopens the log file. Without a signal it notices a changed file within
//! a second anyway. A file that does not validate is refused here, before any signal, as the
//! proxy would refuse it too.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};

use crate::setup::templates::{IN_CONFIG_DIR, SERVICE};
use crate::store;

/// Each container-engine command may take this long (a stuck engine must not hang `reload`).
const ENGINE_TIMEOUT: Duration = Duration::from_secs(10);
const ENGINES: [&str; 2] = ["podman", "docker"];

/// What applies after a reload; printed with every success.
const WHAT_APPLIES: &str = "New connections get the new users, secrets, limits and settings at once; open connections keep theirs \
(a removed or disabled user's close); `workers` and `[stats]` apply at the next start. Without a signal the proxy also \
picks up any change to the file within a second.";

/// Why the container could not be signalled (typed for tests; shown through anyhow).
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error("container {SERVICE} under {engine} mounts {mounted} at {IN_CONFIG_DIR}, not the folder of {config}; it would not re-read this file")]
    OtherConfig { engine: &'static str, mounted: String, config: String },
    #[error("{engine} kill --signal HUP {SERVICE} failed: {detail}")]
    Kill { engine: &'static str, detail: String },
}

/// Run `program args` with a deadline: Some((success, stdout)) when it ran to the end.
fn output(program: &str, args: &[&str]) -> Option<(bool, String)> {
    let mut child = Command::new(program).args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().ok()?;
    let deadline = Instant::now() + ENGINE_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
    let out = child.wait_with_output().ok()?;
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        text.push_str(&String::from_utf8_lossy(&out.stderr));
    }
    Some((out.status.success(), text))
}

/// The host folder mounted at [`IN_CONFIG_DIR`], from `inspect`'s `SOURCE=DESTINATION` lines.
fn config_mount(mounts: &str) -> Option<PathBuf> {
    mounts.lines().filter_map(|l| l.trim().rsplit_once('=')).find(|(_, dst)| dst.trim_end_matches('/') == IN_CONFIG_DIR).map(|(src, _)| PathBuf::from(src))
}

/// Whether `config` is the file the container reads (`IN_CONFIG_DIR/config.toml` of the folder
/// it mounts there).
fn same_config(config: &Path, mounted: &Path) -> bool {
    let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let file = config.file_name().and_then(|n| n.to_str()) == Some("config.toml");
    file && config.parent().map(|d| canon(if d.as_os_str().is_empty() { Path::new(".") } else { d })) == Some(canon(mounted))
}

/// Signal the running `vless_mtproxy` container, if one runs under an engine here. `Ok(None)`:
/// no such container is running.
fn signal_container(config: &Path) -> Result<Option<&'static str>, ContainerError> {
    for engine in ENGINES {
        let Some((true, running)) = output(engine, &["container", "inspect", "--format", "{{.State.Running}}", SERVICE]) else { continue };
        if running.trim() != "true" {
            continue;
        }
        let mounts = output(engine, &["container", "inspect", "--format", "{{range .Mounts}}{{.Source}}={{.Destination}}\n{{end}}", SERVICE])
            .filter(|(ok, _)| *ok)
            .map(|(_, t)| t)
            .unwrap_or_default();
        match config_mount(&mounts) {
            Some(m) if same_config(config, &m) => {}
            m => {
                return Err(ContainerError::OtherConfig {
                    engine,
                    mounted: m.map(|m| m.display().to_string()).unwrap_or_else(|| "nothing".into()),
                    config: config.display().to_string(),
                })
            }
        }
        return match output(engine, &["kill", "--signal", "HUP", SERVICE]) {
            Some((true, _)) => Ok(Some(engine)),
            Some((false, err)) => Err(ContainerError::Kill { engine, detail: err.trim().lines().last().unwrap_or("").to_string() }),
            None => Err(ContainerError::Kill { engine, detail: format!("no answer within {} s", ENGINE_TIMEOUT.as_secs()) }),
        };
    }
    Ok(None)
}

/// Whether `pid` is a running `serve` of this binary (guards against a stale, reused pid).
fn is_proxy(pid: i32) -> bool {
    let Some(p) = rustix::process::Pid::from_raw(pid) else { return false };
    if rustix::process::test_kill_process(p).is_err() {
        return false;
    }
    match std::fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(cmd) => cmd.split(|b| *b == 0).any(|arg| arg == b"serve"),
        Err(_) => true,
    }
}

/// The local proxy's pid from its pid file, or why there is none.
fn local_proxy(pid_path: &Path) -> Result<i32, String> {
    let text = match std::fs::read_to_string(pid_path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(format!("{} does not exist", pid_path.display())),
        Err(e) => return Err(format!("cannot read {}: {e}", pid_path.display())),
    };
    let pid: i32 = text.trim().parse().map_err(|_| format!("{} does not hold a process id", pid_path.display()))?;
    if !is_proxy(pid) {
        return Err(format!("process {pid} from {} is not running (stale pid file)", pid_path.display()));
    }
    Ok(pid)
}

pub fn reload(config: &Path) -> anyhow::Result<()> {
    let cfg = match store::read(config) {
        Ok(c) => c,
        Err(store::StoreError::Invalid(e)) => bail!("{e}\nNot reloading: the running proxy would refuse this file and keep its current configuration."),
        Err(e) => return Err(e.into()),
    };
    let pid_path = cfg.pid_path(config);
    let why_not_local = match local_proxy(&pid_path) {
        Ok(pid) => {
            let p = rustix::process::Pid::from_raw(pid).expect("checked by is_proxy");
            rustix::process::kill_process(p, rustix::process::Signal::HUP).map_err(|e| anyhow!("cannot signal process {pid}: {e}"))?;
            println!("Sent SIGHUP to the proxy (pid {pid}); it re-reads {} now.\n{WHAT_APPLIES}", config.display());
            return Ok(());
        }
        Err(why) => why,
    };
    match signal_container(config)? {
        Some(engine) => {
            println!(
                "Sent SIGHUP to the proxy in the {engine} container {SERVICE} (no local proxy: {why_not_local}); it re-reads {} (mounted at {IN_CONFIG_DIR}) now.\n{WHAT_APPLIES}",
                config.display()
            );
            Ok(())
        }
        None => bail!(
            "no running proxy found: {why_not_local} (is `serve` running with this config?), and no container {SERVICE} is running under podman or docker. The configuration is valid and applies when the proxy starts."
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_config_mount() {
        let inspect = "/opt/vless/logs/mtproxy=/var/log/vless-mtproxy\n/opt/vless/config/mtproxy=/etc/vless-mtproxy\n";
        assert_eq!(config_mount(inspect), Some(PathBuf::from("/opt/vless/config/mtproxy")));
        assert_eq!(config_mount("/a=/etc/vless-mtproxy/\n"), Some(PathBuf::from("/a")));
        assert_eq!(config_mount("/a=/etc/other\n"), None);
        assert_eq!(config_mount(""), None);
    }

    #[test]
    fn only_the_mounted_config_toml_is_the_containers() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("config.toml");
        std::fs::write(&cfg, "").unwrap();
        assert!(same_config(&cfg, dir.path()));
        assert!(same_config(&dir.path().join(".").join("config.toml"), dir.path()));
        assert!(!same_config(&dir.path().join("other.toml"), dir.path()));
        assert!(!same_config(&cfg, Path::new("/elsewhere")));
    }
}
