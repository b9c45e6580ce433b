//! The run itself: answers (flags, environment, an existing install, then the wizard), the
//! checks before anything is written, then the numbered steps from the host check to the
//! health check. `--render` stops after writing the deploy files.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use super::options::{Answers, Draft, EnvForm, Invalid, Paths, Runtime};
use super::report::{self, Steps};
use super::state::InstallState;
use super::templates::{self, ContainerSpec, IMAGE, SERVICE};
use super::{compose, config_step, files, host, hostsec_step, own_step, owndomain, runtime, wizard, xray, SetupArgs, SetupError};

pub(super) fn run_inner(args: SetupArgs) -> Result<ExitCode, SetupError> {
    let env = EnvForm::read(|k| std::env::var(k).ok())?;
    let paths = args.paths();
    if let Some(dir) = &args.render {
        let answers = args.answers(Answers::default(), &env)?;
        let serve = [args.dc_overrides.iter().flat_map(|d| ["--dc-override".to_string(), d.clone()]).collect::<Vec<_>>(), args.serve_args.clone()].concat();
        render_files(dir, &paths, &answers, &serve, args.network.as_deref() == Some("publish"))?;
        println!("Wrote the deploy files to {}", dir.display());
        return Ok(ExitCode::SUCCESS);
    }
    if !host::is_root() {
        return Err(SetupError::NotRoot);
    }
    let interactive = !args.non_interactive && !env.auto;
    let existing = config_step::load_existing(&paths.config_file())?;
    let previous = InstallState::load(&paths.state_file())?;
    let base = existing.as_ref().map(config_step::answers_of).unwrap_or_default();
    let mut answers = args.answers(base, &env)?;
    let previous_own = previous.as_ref().and_then(|s| s.own_domain.clone());
    if let Some(own) = args.own_domain(&env, previous_own.as_ref())? {
        let port_given = args.port.is_some() || env.port.is_some() || (previous_own.is_some() && existing.is_some());
        own_step::apply_own(&mut answers, own, port_given, args.public_host.is_some() || (previous_own.is_some() && existing.is_some()));
    }

    let wanted_runtime = match (&args.runtime, &previous) {
        (Some(r), _) => Some(Runtime::parse(r)?),
        (None, Some(s)) => Some(Runtime::parse(&s.runtime)?),
        (None, None) => None,
    };
    let rt = host::resolve_runtime(wanted_runtime)?;
    let publish = match (&args.network, &previous) {
        (Some(n), _) => n == "publish",
        (None, Some(s)) => s.publish,
        (None, None) => false,
    };
    let serve_extra: Vec<String> = if args.dc_overrides.is_empty() && args.serve_args.is_empty() {
        previous.as_ref().map(|s| s.serve_args.clone()).unwrap_or_default()
    } else {
        [args.dc_overrides.iter().flat_map(|d| ["--dc-override".to_string(), d.clone()]).collect::<Vec<_>>(), args.serve_args.clone()].concat()
    };
    let ours = |p: u16| previous.as_ref().is_some_and(|s| s.port == p);
    let taken = |p: u16| !ours(p) && host::port_in_use(p);

    let nginx = args.nginx_paths();
    let site_is_ours = previous_own.as_ref().is_some_and(|p| p.nginx_site.as_deref() == Some(nginx.site_file().as_path()));
    if interactive {
        let stdin = std::io::stdin();
        let mut w = wizard::Wizard::new(stdin.lock(), std::io::stdout());
        let letsencrypt = args.letsencrypt_dir.clone();
        let certbot = move |d: &str| owndomain::certbot_paths(&letsencrypt, d);
        let site_file = nginx.site_file();
        let conflict = || owndomain::site_conflict(&site_file, site_is_ours).then(|| site_file.clone());
        let ctx = wizard::OwnCtx { points_here: &own_step::points_here, certbot: &certbot, site_conflict: &conflict };
        match w.run_with(&answers, &taken, &ctx)? {
            wizard::WizardResult::Proceed(a) => answers = a.into(),
            wizard::WizardResult::Declined => {
                println!("Nothing was installed.");
                return Ok(ExitCode::SUCCESS);
            }
        }
    } else {
        if taken(answers.port) && answers.own.is_some() && answers.port == 443 {
            return Err(Invalid(
                "port 443 is already in use by another program (HAProxy, a web server?): free it, or put the proxy behind HAProxy with --behind-haproxy".into(),
            )
            .into());
        }
        if taken(answers.port) {
            return Err(SetupError::Other(format!("port {} is already in use by another program on this host; choose another with --port", answers.port)));
        }
        println!("vless-mtproxy setup (non-interactive):\n{}", wizard::summary(&answers));
    }
    let via_xray = xray_choice(&args, &paths, interactive, rt.is_container() && publish)?;
    let Some(answers) = answers.complete() else {
        return Err(Invalid("the ee kind needs a cover domain: pass --domain www.example.com (a real HTTPS site that is not blocked)".into()).into());
    };
    if let Some(own) = &answers.own {
        own_step::check(own, answers.port, &nginx, site_is_ours, previous_own.as_ref())?;
    }
    let exe = std::env::current_exe().map_err(|e| SetupError::Other(format!("cannot find this program's own file: {e}")))?;

    let mut steps = Steps::new(if answers.own.is_some() { 9 } else { 8 });
    steps.next("Checking the host");
    if rt.is_container() {
        host::check_static_binary(&exe)?;
    }
    steps.detail(&format!("runtime: {}; port {}: {}", rt.name(), answers.port, if ours(answers.port) { "used by this proxy" } else { "free" }));

    steps.next("Creating the folders");
    let (owner, group) = if rt.is_container() { (templates::CONTAINER_UID, templates::CONTAINER_GID) } else { (0, 0) };
    files::ensure_dir(&paths.config_dir, 0o750, Some((0, group)))?;
    files::ensure_dir(&paths.log_dir, 0o750, Some((owner, group)))?;
    files::ensure_dir(&paths.data_dir, 0o750, Some((owner, group)))?;
    files::ensure_dir(&paths.setup_dir(), 0o700, Some((0, 0)))?;
    for d in [&paths.config_dir, &paths.log_dir, &paths.data_dir] {
        steps.detail(&d.display().to_string());
    }

    steps.next(&format!("Installing the binary into {}", paths.install_dir.display()));
    let (binaries, binary_changed) = install_binary(&exe, &paths)?;
    steps.detail(if binary_changed { "installed" } else { "already up to date" });

    steps.next("Writing the configuration");
    let cfg_owner = if rt.is_container() { Some((owner, group)) } else { Some((0, 0)) };
    let state_dir = if rt.is_container() { templates::IN_DATA_DIR.to_string() } else { paths.data_dir.display().to_string() };
    let outcome = config_step::apply(&paths.config_file(), &answers, &args.first_user, cfg_owner, &paths.binary(), &state_dir)?;
    steps.detail(&format!("{} ({})", paths.config_file().display(), if outcome.created { "created, mode 0600" } else { "kept" }));
    for c in &outcome.commands {
        steps.detail(&format!("applied: vless-mtproxy {c}"));
    }
    for n in &outcome.notes {
        steps.detail(&format!("note: {n}"));
    }
    if let Some((source, inbound)) = &via_xray {
        steps.detail(&config_step::route_via_xray(&paths.config_file(), source, inbound, cfg_owner)?);
    }
    if args.panel_password_stdin {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map_err(|e| SetupError::Other(format!("cannot read the panel password from stdin: {e}")))?;
        config_step::run_cli_with_input(&paths.binary(), &paths.config_file(), &["set-panel-password".to_string()], Some(line.as_bytes()))?;
        steps.detail("web panel password set (http://127.0.0.1:8888/panel/ over an SSH tunnel)");
    }

    let own_state = match &answers.own {
        Some(own) => {
            steps.next(&format!("Setting up the cover site for {}", own.domain));
            Some(own_step::apply(own, &nginx, site_is_ours, previous_own.as_ref(), &paths, &steps)?)
        }
        None => None,
    };

    learn_covers(&paths, rt, &mut steps);

    let mut new_state = InstallState {
        runtime: rt.name().into(),
        port: answers.port,
        publish,
        serve_args: serve_extra.clone(),
        config_dir: paths.config_dir.clone(),
        log_dir: paths.log_dir.clone(),
        data_dir: paths.data_dir.clone(),
        binaries,
        own_domain: own_state,
        ..Default::default()
    };
    // The record is complete before anything is built or started, so a setup that fails half
    // way can still be undone by uninstall.
    let vless_compose = rt.is_container() && paths.vless_compose.is_file();
    if rt.is_container() {
        new_state.container = Some(SERVICE.into());
        new_state.image = Some(IMAGE.into());
        if vless_compose {
            new_state.vless_compose = Some(paths.vless_compose.clone());
        } else {
            new_state.own_compose = Some(paths.own_compose());
        }
    } else {
        new_state.unit_file = Some(paths.unit_file());
    }
    if paths.logrotate_dir.is_dir() {
        new_state.logrotate_file = Some(paths.logrotate_file());
    }
    steps.next("Firewall rule and fail2ban jail");
    hostsec_step::host_security(&args, &paths, &answers, previous.as_ref(), &mut new_state, &steps);
    files::write_if_changed(&paths.state_file(), new_state.to_text().as_bytes(), 0o600, None)?;
    if let Some(f) = &new_state.logrotate_file {
        files::write_if_changed(f, templates::logrotate(&paths, owner, group)?.as_bytes(), 0o644, None)?;
    }

    if rt.is_container() {
        steps.next(&format!("Building the image {IMAGE} with {}", rt.name()));
        let image_id = runtime::build_image(rt, &paths)?;
        steps.detail(&format!("image {}", &image_id.trim_start_matches("sha256:")[..12.min(image_id.len())]));
        let spec = ContainerSpec::new(&answers, publish, &serve_extra);
        let block = spec.compose_service(&paths)?;
        steps.next(&format!("Starting the container {SERVICE}"));
        let compose_file = if vless_compose {
            let o = compose::add_to_existing(&paths.vless_compose, &block, &paths.backup_dir())?;
            if let compose::Outcome::Written { backup: Some(b) } = &o {
                steps.detail(&format!("added the service to {} (backup: {})", paths.vless_compose.display(), b.display()));
            }
            paths.vless_compose.clone()
        } else {
            compose::write_own(&paths.own_compose(), &block)?;
            paths.own_compose()
        };
        let d = runtime::deploy_container(rt, &paths, &spec, &image_id, &compose_file)?;
        steps.detail(if d.restarted { "started" } else { "already running with this configuration" });
    } else {
        steps.next("Writing the systemd unit");
        let unit = templates::unit(&paths, &answers, &serve_extra)?;
        steps.next("Starting the service vless-mtproxy");
        let d = runtime::deploy_systemd(&paths, &unit, binary_changed)?;
        steps.detail(if d.restarted { "started" } else { "already running with this configuration" });
    }

    steps.next("Checking the proxy's health");
    runtime::wait_healthy(rt, &paths, Duration::from_secs(args.health_timeout))?;
    steps.detail(&format!("accepting connections on port {}", answers.port));
    report::print_finish(&paths, rt, &new_state);
    Ok(ExitCode::SUCCESS)
}

/// Whether to send the DC leg through the VLESS stack's Xray SOCKS inbound, and which one:
/// looked for only when the VLESS stack is there (its compose file) or `--xray-config` names a
/// file; the wizard asks (default no), a non-interactive run follows `--upstream-xray`.
fn xray_choice(args: &SetupArgs, paths: &Paths, interactive: bool, published: bool) -> Result<Option<(PathBuf, xray::SocksInbound)>, SetupError> {
    let candidates: Vec<PathBuf> = match &args.xray_config {
        Some(p) => vec![p.clone()],
        None if paths.vless_compose.is_file() => xray::CANDIDATES.iter().map(PathBuf::from).collect(),
        None => Vec::new(),
    };
    let found = xray::find(&candidates);
    let Some((source, inbound)) = found else {
        if args.upstream_xray {
            let looked = candidates.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ");
            return Err(Invalid(format!(
                "--upstream-xray: no `socks` inbound on a loopback address was found in Xray's config (looked at: {}); pass --xray-config FILE",
                if looked.is_empty() { "nothing: no VLESS stack here".into() } else { looked }
            ))
            .into());
        }
        return Ok(None);
    };
    let use_it = if args.upstream_xray {
        true
    } else if interactive {
        let stdin = std::io::stdin();
        let mut w = wizard::Wizard::new(stdin.lock(), std::io::stdout());
        w.ask_upstream_xray(&inbound.address, &source)?
    } else {
        false
    };
    if !use_it {
        return Ok(None);
    }
    if published {
        // A container with published ports has its own loopback: Xray's inbound is not there.
        return Err(
            Invalid(format!("routing through Xray's inbound {} needs the host network: run setup with --network host (the default)", inbound.address)).into()
        );
    }
    println!("  upstream        Xray SOCKS inbound {} ({})", inbound.address, source.display());
    Ok(Some((source, inbound)))
}

/// Learn every fake-TLS cover's flight now (`mtproxy_core::cover`), so clients get the cover's
/// shape from the proxy's first connection; a container's cache file is written through its
/// host folder. Never fails: the proxy keeps trying on its own.
fn learn_covers(paths: &Paths, rt: Runtime, steps: &mut Steps) {
    let Ok(cfg) = mtproxy_core::config::load(&paths.config_file()) else { return };
    let domains = cfg.fake_tls_domains();
    if domains.is_empty() || !cfg.fake_tls.emulate_cover {
        return;
    }
    steps.next("Learning the cover sites' TLS flights");
    let cache = cfg.cover_cache_path(&paths.config_file());
    let cache = match cache.strip_prefix(templates::IN_DATA_DIR) {
        Ok(rest) if rt.is_container() => paths.data_dir.join(rest),
        _ => cache,
    };
    for d in domains {
        match crate::cli::domains::learn_cover_into(&cache, &cfg, d) {
            Some(Ok(m)) => steps.detail(&m),
            Some(Err(m)) => steps.detail(&format!("warning: {m}")),
            None => {}
        }
    }
}

/// Copy this program to the install folder (when it is not already there) and point the
/// multi-call names at it. Returns the paths and whether the binary changed.
fn install_binary(exe: &Path, paths: &Paths) -> Result<(Vec<PathBuf>, bool), SetupError> {
    // An existing folder such as /usr/local/bin keeps its mode and owner.
    if !paths.install_dir.is_dir() {
        files::ensure_dir(&paths.install_dir, 0o755, None)?;
    }
    let target = paths.binary();
    let same = std::fs::canonicalize(exe).ok().is_some_and(|a| std::fs::canonicalize(&target).ok().is_some_and(|b| a == b));
    let mut changed = false;
    if !same {
        let bytes = std::fs::read(exe).map_err(|source| files::FileError::Io { path: exe.to_path_buf(), action: "reading", source })?;
        changed = files::write_if_changed(&target, &bytes, 0o755, None)?;
    }
    let mut out = vec![target.clone()];
    for name in ["vless-mtproxy-setup", "vless-mtproxy-uninstall"] {
        let link = paths.install_dir.join(name);
        if std::fs::read_link(&link).ok().as_deref() != Some(Path::new("vless-mtproxy")) {
            let _ = std::fs::remove_file(&link);
            std::os::unix::fs::symlink("vless-mtproxy", &link).map_err(|source| files::FileError::Io {
                path: link.clone(),
                action: "creating the link",
                source,
            })?;
        }
        out.push(link);
    }
    Ok((out, changed))
}

/// `--render DIR`: the deploy files as setup would install them, for review or checks.
fn render_files(dir: &Path, paths: &Paths, answers: &Draft, serve: &[String], publish: bool) -> Result<(), SetupError> {
    files::ensure_dir(dir, 0o755, None)?;
    let spec = ContainerSpec::new(answers, publish, serve);
    let items = [
        ("Containerfile", templates::containerfile()?),
        ("vless-mtproxy.service", templates::unit(paths, answers, serve)?),
        ("docker-compose.yml", format!("services:\n{}", spec.compose_service(paths)?)),
        ("logrotate", templates::logrotate(paths, 0, 0)?),
    ];
    for (name, text) in items {
        files::write_if_changed(&dir.join(name), text.as_bytes(), 0o644, None)?;
    }
    Ok(())
}
