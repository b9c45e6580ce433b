//! `vless-mtproxy uninstall` (also installed as `vless-mtproxy-uninstall`): removes what setup
//! put on the host, exactly that, read from setup's install record: the container and its
//! image, or the systemd unit; the service block in the VLESS compose file (after a backup) or
//! our own compose file; the logrotate snippet; in own-domain mode the nginx cover site (the
//! operator's own file put back when setup had replaced it) and the folder setup created for
//! it; the installed binary and its links. The
//! configuration stays where it is, with a backup copy, unless `--purge` removes the
//! configuration, log and data folders too. Exit codes: 0 done, 1 error, 2 not root.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use crate::setup::files;
use crate::setup::host;
use crate::setup::hostsec_step;
use crate::setup::options::{self, DEFAULT_DATA_DIR};
use crate::setup::state::{InstallState, StateError};

#[derive(clap::Args, Debug)]
pub struct UninstallArgs {
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    yes: bool,
    /// Also delete the configuration (users and secrets), logs and data.
    #[arg(long)]
    purge: bool,
    /// The data folder setup used (its install record says what to remove).
    #[arg(long, default_value = DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum UninstallError {
    #[error("uninstall must run as root (sudo vless-mtproxy-uninstall)")]
    NotRoot,
    #[error(transparent)]
    State(#[from] StateError),
    #[error("not confirmed: nothing was removed (pass --yes to confirm without a terminal)")]
    NotConfirmed,
    #[error("{0}")]
    Failed(String),
}

pub fn run(args: UninstallArgs) -> ExitCode {
    match run_inner(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(UninstallError::NotRoot) => {
            eprintln!("error: {}", UninstallError::NotRoot);
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn confirm(state: &InstallState, purge: bool) -> Result<bool, UninstallError> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Ok(false);
    }
    let what = if purge { "and DELETE the configuration (all users and secrets), logs and data" } else { "keeping the configuration and a backup of it" };
    print!("Remove vless-mtproxy ({}) from this host, {what}? [y/N]: ", state.runtime);
    std::io::stdout().flush().map_err(|e| UninstallError::Failed(e.to_string()))?;
    let mut line = String::new();
    stdin.lock().read_line(&mut line).map_err(|e| UninstallError::Failed(e.to_string()))?;
    Ok(options::parse_yes_no(&line, false).unwrap_or(false))
}

fn remove_file(path: &Path, done: &mut Vec<String>) {
    match std::fs::remove_file(path) {
        Ok(()) => done.push(format!("removed {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => done.push(format!("warning: {}: {e}", path.display())),
    }
}

fn remove_dir(path: &Path, done: &mut Vec<String>) {
    match std::fs::remove_dir_all(path) {
        Ok(()) => done.push(format!("removed {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => done.push(format!("warning: {}: {e}", path.display())),
    }
}

fn run_inner(args: &UninstallArgs) -> Result<(), UninstallError> {
    if !host::is_root() {
        return Err(UninstallError::NotRoot);
    }
    let state_path = options::state_file(&args.data_dir);
    let Some(state) = InstallState::load(&state_path)? else {
        println!("No install record at {}: nothing installed by setup to remove.", state_path.display());
        return Ok(());
    };
    if !args.yes && !confirm(&state, args.purge)? {
        return Err(UninstallError::NotConfirmed);
    }
    let mut done: Vec<String> = Vec::new();
    let exe = std::env::current_exe().map_err(|e| UninstallError::Failed(format!("cannot find this program's own file: {e}")))?;
    let config_file = state.config_dir.join(options::CONFIG_FILE);
    let setup_dir = options::setup_dir(&state.data_dir);
    let backup_dir = setup_dir.join("backup");

    if let Some(port) = state.ufw_port {
        let c = hostsec_step::call(&exe, &config_file, &hostsec_step::ufw_args("remove", port, &state.ufw_args));
        done.push(if c.ok { format!("ufw: {}", c.text) } else { format!("warning: ufw remove: {}", c.text) });
    }
    if let Some(dir) = &state.fail2ban_dir {
        let c = hostsec_step::call(&exe, &config_file, &["fail2ban-config".to_string(), "--remove".to_string(), dir.display().to_string()]);
        done.push(if c.ok { format!("fail2ban: {}", c.text.replace('\n', "; ")) } else { format!("warning: fail2ban: {}", c.text) });
    }
    if state.container.is_some() {
        if host::on_path(&state.runtime) {
            done.extend(crate::setup::runtime_remove(&state.runtime));
        } else {
            done.push(format!("warning: {} is no longer installed; the container could not be removed", state.runtime));
        }
    }
    if let Some(unit) = &state.unit_file {
        if host::systemd_running() {
            let _ = host::succeeds("systemctl", &["disable", "--now", "vless-mtproxy.service"], Duration::from_secs(60));
            done.push("stopped and disabled vless-mtproxy.service".into());
        }
        remove_file(unit, &mut done);
        if host::systemd_running() {
            let _ = host::succeeds("systemctl", &["daemon-reload"], Duration::from_secs(60));
        }
    }
    if let Some(f) = &state.vless_compose {
        match crate::setup::compose_remove(f, &backup_dir) {
            Ok(Some(b)) => done.push(format!("removed the service from {} (backup: {})", f.display(), b.display())),
            Ok(None) => {}
            Err(e) => done.push(format!("warning: {e}")),
        }
    }
    if let Some(f) = &state.own_compose {
        remove_file(f, &mut done);
    }
    if let Some(f) = &state.logrotate_file {
        remove_file(f, &mut done);
    }
    if let Some(own) = &state.own_domain {
        if let Some(site) = &own.nginx_site {
            let conf = own.nginx_conf.clone().unwrap_or_else(|| PathBuf::from(crate::setup::owndomain::DEFAULT_NGINX_CONF));
            done.extend(crate::setup::owndomain::remove(site, own.nginx_site_backup.as_deref(), own.site_root_created.as_deref(), &conf, own.nginx_started));
        }
        if let Some(f) = &own.haproxy_snippet {
            remove_file(f, &mut done);
            done.push("HAProxy: take the vless_mtproxy lines out of your frontend and reload it".into());
        }
    }
    for b in &state.binaries {
        remove_file(b, &mut done);
    }

    if args.purge {
        remove_dir(&state.config_dir, &mut done);
        remove_dir(&state.log_dir, &mut done);
        remove_dir(&state.data_dir, &mut done);
    } else {
        if config_file.exists() {
            match files::backup(&config_file, &backup_dir) {
                Ok(b) => done.push(format!("kept {} (backup: {})", config_file.display(), b.display())),
                Err(e) => done.push(format!("warning: backup of the configuration failed: {e}")),
            }
        }
        remove_dir(&setup_dir.join("image"), &mut done);
        remove_file(&state_path, &mut done);
    }
    for line in &done {
        println!("  {line}");
    }
    let warnings = done.iter().filter(|l| l.starts_with("warning:")).count();
    if warnings > 0 {
        return Err(UninstallError::Failed(format!("{warnings} item(s) could not be removed; see the warnings above")));
    }
    println!("vless-mtproxy was removed{}.", if args.purge { ", with its configuration and data" } else { "; the configuration was kept" });
    Ok(())
}
