//! Running the proxy: the `vless_mtproxy` container (Docker or Podman) or the systemd unit.
//!
//! Both paths are idempotent: the image is rebuilt from an unchanged context (the engine's
//! cache gives the same image), and the container is recreated only when its specification
//! (run arguments and image id, kept as a label) changed; the unit is rewritten, reloaded and
//! restarted only when its text or the binary changed.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::setup::files::{self, FileError};
use crate::setup::options::{Paths, Runtime};
use crate::setup::templates::{self, ContainerSpec, TemplateError, IMAGE, SERVICE};

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error("`{command}` failed: {detail}")]
    Command { command: String, detail: String },
    #[error("the proxy did not become healthy within {0} s; see the log: {1}")]
    Unhealthy(u64, String),
}

/// Run a command, returning its output, or an error that shows the command and its stderr.
pub fn run(program: &str, args: &[String]) -> Result<Output, RuntimeError> {
    let shown = format!("{program} {}", args.join(" "));
    let out =
        Command::new(program).args(args).stdin(Stdio::null()).output().map_err(|e| RuntimeError::Command { command: shown.clone(), detail: e.to_string() })?;
    if out.status.success() {
        Ok(out)
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = err.trim().lines().rev().take(15).collect();
        Err(RuntimeError::Command { command: shown, detail: tail.into_iter().rev().collect::<Vec<_>>().join("\n") })
    }
}

fn sv(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn stdout_of(program: &str, args: &[&str]) -> Option<String> {
    run(program, &sv(args)).ok().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
}

/// What the container step did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Deployed {
    pub image_changed: bool,
    pub restarted: bool,
}

/// Write the image context (recipe and the static binary) and build `vless_mtproxy:latest`.
pub fn build_image(rt: Runtime, paths: &Paths) -> Result<String, RuntimeError> {
    let ctx = paths.image_context();
    files::ensure_dir(&ctx, 0o700, Some((0, 0)))?;
    files::write_if_changed(&ctx.join("Containerfile"), templates::containerfile()?.as_bytes(), 0o644, None)?;
    let bin = std::fs::read(paths.binary()).map_err(|source| FileError::Io { path: paths.binary(), action: "reading", source })?;
    files::write_if_changed(&ctx.join("vless-mtproxy"), &bin, 0o755, None)?;
    let mut args = sv(&["build"]);
    if rt == Runtime::Podman {
        // Docker format keeps the HEALTHCHECK instruction; OCI format would drop it.
        args.extend(sv(&["--format", "docker"]));
    }
    args.extend(["-t".to_string(), IMAGE.to_string(), "-f".to_string(), ctx.join("Containerfile").display().to_string(), ctx.display().to_string()]);
    run(rt.name(), &args)?;
    stdout_of(rt.name(), &["image", "inspect", "--format", "{{.Id}}", IMAGE])
        .ok_or_else(|| RuntimeError::Command { command: format!("{} image inspect {IMAGE}", rt.name()), detail: "the image just built is not there".into() })
}

fn docker_compose_available() -> bool {
    crate::setup::host::succeeds("docker", &["compose", "version"], Duration::from_secs(10))
}

/// Create (or keep) and start the container.
pub fn deploy_container(rt: Runtime, paths: &Paths, spec: &ContainerSpec, image_id: &str, compose_file: &Path) -> Result<Deployed, RuntimeError> {
    let mut hasher = Sha256::new();
    hasher.update(image_id.as_bytes());
    for a in spec.run_args(paths, "") {
        hasher.update(a.as_bytes());
        hasher.update([0]);
    }
    let label = hex::encode(&hasher.finalize()[..12]);
    let name = rt.name();
    let current = stdout_of(name, &["container", "inspect", "--format", "{{index .Config.Labels \"vless-mtproxy.spec\"}} {{.State.Running}}", SERVICE]);
    let mut out = Deployed::default();
    match current.as_deref().map(|s| s.split_once(' ').unwrap_or((s, ""))) {
        Some((l, running)) if l == label => {
            if running != "true" {
                run(name, &sv(&["start", SERVICE]))?;
                out.restarted = true;
            }
            return Ok(out);
        }
        Some(_) => {
            run(name, &sv(&["rm", "-f", SERVICE]))?;
            out.image_changed = true;
        }
        None => {}
    }
    if rt == Runtime::Docker && docker_compose_available() {
        // The compose file knows the service: let compose own the container, so the VLESS
        // stack's own `docker compose up` finds it its own and does not clash on the name.
        let f = compose_file.display().to_string();
        run("docker", &sv(&["compose", "-f", &f, "up", "-d", "--no-deps", SERVICE]))?;
        let _ = run("docker", &sv(&["container", "update", "--label-add", &format!("vless-mtproxy.spec={label}"), SERVICE]));
    } else {
        run(name, &spec.run_args(paths, &label))?;
    }
    out.restarted = true;
    Ok(out)
}

/// Wait until the proxy answers its health check (inside the container, or on the host).
pub fn wait_healthy(rt: Runtime, paths: &Paths, limit: Duration) -> Result<(), RuntimeError> {
    let deadline = Instant::now() + limit;
    let check = || -> bool {
        if rt.is_container() {
            crate::setup::host::succeeds(rt.name(), &["exec", SERVICE, "/vless-mtproxy", "health"], Duration::from_secs(10))
        } else {
            let bin = paths.binary().display().to_string();
            let cfg = paths.config_file().display().to_string();
            crate::setup::host::succeeds(&bin, &["--config", &cfg, "health"], Duration::from_secs(10))
        }
    };
    loop {
        if check() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(RuntimeError::Unhealthy(limit.as_secs(), paths.log_file().display().to_string()));
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Install (or keep) the unit and have it running the current binary and unit text.
pub fn deploy_systemd(paths: &Paths, unit_text: &str, binary_changed: bool) -> Result<Deployed, RuntimeError> {
    let changed = files::write_if_changed(&paths.unit_file(), unit_text.as_bytes(), 0o644, None)?;
    if changed {
        run("systemctl", &sv(&["daemon-reload"]))?;
    }
    run("systemctl", &sv(&["enable", "vless-mtproxy.service"]))?;
    let active = crate::setup::host::succeeds("systemctl", &["is-active", "--quiet", "vless-mtproxy.service"], Duration::from_secs(10));
    let mut out = Deployed::default();
    if !active || changed || binary_changed {
        run("systemctl", &sv(&["restart", "vless-mtproxy.service"]))?;
        out.restarted = true;
    }
    Ok(out)
}

/// Remove the container and the image (for uninstall); a missing one is not an error.
pub fn remove_container(rt: &str) -> Vec<String> {
    let mut done = Vec::new();
    if stdout_of(rt, &["container", "inspect", "--format", "{{.Id}}", SERVICE]).is_some() {
        let _ = run(rt, &sv(&["stop", "-t", "10", SERVICE]));
        match run(rt, &sv(&["rm", "-f", SERVICE])) {
            Ok(_) => done.push(format!("removed container {SERVICE}")),
            Err(e) => done.push(format!("warning: {e}")),
        }
    }
    if stdout_of(rt, &["image", "inspect", "--format", "{{.Id}}", IMAGE]).is_some() {
        match run(rt, &sv(&["rmi", IMAGE])) {
            Ok(_) => done.push(format!("removed image {IMAGE}")),
            Err(e) => done.push(format!("warning: {e}")),
        }
    }
    done
}
