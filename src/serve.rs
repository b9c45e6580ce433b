//! `serve`: load (or create) the configuration, bind, run the proxy, reload on change and on
//! SIGHUP, drain on SIGTERM/SIGINT.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use mtproxy_core::config::{self, DcKey, HostPort};
use mtproxy_core::Shared;
use tokio_util::sync::CancellationToken;

use std::net::SocketAddr;

use mtproxy_core::server::ListenerCommand;
use tokio::sync::mpsc::UnboundedSender;

use crate::fleet::node::Fleet;
use crate::share;

/// Make the listeners match `listen`: bind the new addresses first, then close the ones no
/// longer listed. Open connections are not touched (they do not belong to a listener). If
/// none of the new addresses can be bound, the old listeners stay so the proxy stays reachable.
fn rebind(listen: &[SocketAddr], bound: &mut Vec<SocketAddr>, control: &UnboundedSender<ListenerCommand>) {
    let mut added = 0;
    let new: Vec<SocketAddr> = listen.iter().filter(|a| !bound.contains(a)).copied().collect();
    for addr in &new {
        match mtproxy_core::bind(*addr) {
            Ok(l) => {
                tracing::info!(%addr, "listening");
                let _ = control.send(ListenerCommand::Add(l));
                bound.push(*addr);
                added += 1;
            }
            Err(e) => tracing::error!(%addr, error = %e, "cannot listen on this address"),
        }
    }
    let stale: Vec<SocketAddr> = bound.iter().filter(|a| !listen.contains(a)).copied().collect();
    if stale.is_empty() {
        return;
    }
    if !bound.iter().any(|a| listen.contains(a)) && added == 0 {
        tracing::error!("no new listen address could be bound; keeping the old listeners");
        return;
    }
    for addr in stale {
        tracing::info!(%addr, "no longer listening (open connections stay)");
        let _ = control.send(ListenerCommand::Remove(addr));
        bound.retain(|a| *a != addr);
    }
}

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Send DC ID to HOST:PORT instead of Telegram's address (`*` for every id). Repeatable.
    #[arg(long = "dc-override", value_name = "ID=HOST:PORT")]
    dc_overrides: Vec<String>,
    /// How long open connections may finish after SIGTERM before they are closed.
    #[arg(long, default_value = "10s", value_parser = parse_duration_arg)]
    drain: Duration,
    /// Log filter (tracing syntax), e.g. `info` or `debug`; also RUST_LOG.
    #[arg(long, default_value = "info")]
    log: String,
    /// Also append log lines to this file (reopened on SIGHUP; safe with copytruncate).
    #[arg(long, value_name = "PATH")]
    log_file: Option<PathBuf>,
}

fn parse_duration_arg(s: &str) -> Result<Duration, String> {
    config::parse_duration(s)
}

/// Write a fresh configuration with one `dd` user; never overwrites an existing file.
fn create_initial_config(path: &Path) -> anyhow::Result<()> {
    let text = config::initial_config_text(8443, "default", &config::generate_secret());
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut f = OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).with_context(|| format!("creating {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

fn print_links(cfg: &config::Config) {
    let (host, warning) = share::public_host(cfg);
    if let Some(w) = warning {
        eprintln!("warning: {w}");
    }
    for u in cfg.users.iter().filter(|u| u.enabled) {
        let (tg, tme) = share::links(cfg, u, &host);
        println!("user {} ({}):\n  {tg}\n  {tme}", u.name, u.kind.name());
    }
    if let Some(first) = cfg.users.iter().find(|u| u.enabled) {
        let (_, tme) = share::links(cfg, first, &host);
        println!("QR code for user {}:\n{}", first.name, share::qr_terminal(&tme));
    }
}

pub fn run(path: &Path, args: ServeArgs) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&args.log));
    use std::io::IsTerminal;
    // Plain text when not on a terminal: log files are read by fail2ban and host tools.
    let writer = crate::logfile::LogWriter::new(args.log_file.as_deref())?;
    tracing_subscriber::fmt().with_env_filter(filter).with_ansi(!writer.has_file() && std::io::stderr().is_terminal()).with_writer(writer.clone()).init();

    if !path.exists() {
        create_initial_config(path)?;
        println!("Created {} with a new user `default` (a fresh random secret).", path.display());
        let cfg = config::load(path)?;
        print_links(&cfg);
    }
    let cfg = config::load(path)?;
    // A fleet node (`[store]`) runs its file with the store's users (or the cached ones).
    let fleet = crate::fleet::node::Fleet::open(path, &cfg);
    let cfg = match &fleet {
        Some(f) => f.effective(path)?,
        None => cfg,
    };
    let overrides = config::parse_dc_overrides(&args.dc_overrides).map_err(anyhow::Error::msg)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(cfg.workers).enable_all().build().context("starting the runtime")?;
    let pid_path = cfg.pid_path(path);
    let _pid = PidFile::create(&pid_path);
    runtime.block_on(async move {
        tokio::spawn(crate::logfile::reopen_on_hup(writer));
        serve(path.to_path_buf(), cfg, fleet, overrides, args.drain).await
    })
}

/// The pid file `reload` finds the running proxy by; removed at exit if it is still ours.
struct PidFile(Option<PathBuf>);

impl PidFile {
    fn create(path: &Path) -> PidFile {
        let tmp = config::beside(path, "tmp");
        let write = || -> std::io::Result<()> {
            std::fs::write(&tmp, format!("{}\n", std::process::id()))?;
            std::fs::rename(&tmp, path)
        };
        match write() {
            Ok(()) => PidFile(Some(path.to_path_buf())),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot write the pid file; `reload` will not find this process (the file watch still works)");
                PidFile(None)
            }
        }
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        if let Some(p) = &self.0 {
            if std::fs::read_to_string(p).ok().and_then(|t| t.trim().parse::<u32>().ok()) == Some(std::process::id()) {
                let _ = std::fs::remove_file(p);
            }
        }
    }
}

fn users_with_stats(shared: &Shared) -> Vec<(config::User, Arc<mtproxy_core::stats::UserStats>)> {
    shared.snapshot.load().users.iter().map(|e| (e.user.clone(), e.stats.clone())).collect()
}

/// Persist per-user data usage (atomically: temp file, rename) so a restart keeps quotas; a
/// file that already holds these numbers is not rewritten.
fn save_usage(path: &Path, shared: &Shared) {
    let table = shared.limits.usage_table(&users_with_stats(shared), std::time::SystemTime::now());
    let text = mtproxy_core::limits::format_usage(&table);
    // Unchanged counters leave the file alone: no rewrite and no new mtime every 10 s (a backup
    // or setup's "nothing changed" check sees an idle proxy's state as the same file).
    if std::fs::read(path).is_ok_and(|old| old == text.as_bytes()) {
        return;
    }
    if let Err(e) = crate::store::write_private(path, text.as_bytes()) {
        tracing::warn!(path = %path.display(), error = %e, "cannot save data usage");
    }
}

/// How often usage counters are written to disk (and at shutdown).
const USAGE_SAVE_EVERY: Duration = Duration::from_secs(10);

async fn serve(path: PathBuf, cfg: config::Config, fleet: Option<Arc<Fleet>>, overrides: Vec<(DcKey, Vec<HostPort>)>, drain: Duration) -> anyhow::Result<()> {
    let mut listeners = Vec::new();
    for addr in &cfg.listen {
        match mtproxy_core::bind(*addr) {
            Ok(l) => {
                tracing::info!(%addr, "listening");
                listeners.push(l);
            }
            Err(e) if cfg.listen.len() > 1 => tracing::warn!(%addr, error = %e, "cannot listen on this address; continuing with the others"),
            Err(e) => bail!("cannot listen on {addr}: {e}"),
        }
    }
    if listeners.is_empty() {
        bail!("no listen address could be bound");
    }
    tracing::info!(
        users = cfg.users.len(),
        mode = if cfg.ad_tag.is_some() { "middle-proxy (ad tag set: clients go through Telegram's middle-end servers)" } else { "direct" },
        "proxy started"
    );
    let usage_path = cfg.usage_path(&path);
    let cover_cache = cfg.cover_cache_path(&path);
    let bound: Vec<SocketAddr> = listeners.iter().filter_map(|l| l.local_addr().ok()).collect();
    let stats_listen = cfg.stats_listen;
    let stats_tls = cfg.stats_tls.is_some();
    let mut stats_opts = mtproxy_core::stats_listener::Options {
        token: cfg.stats_token.clone(),
        config_path: Some(std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone()).display().to_string()),
        ..Default::default()
    };
    let shared = Shared::new(cfg, overrides);
    // The web panel rides on the statistics listener; it answers only while a password is set.
    let panel = crate::panel::Panel::new(&path, shared.clone());
    stats_opts.mount = Some(Arc::new(crate::panel::PanelMount(panel.clone())));
    if let Ok(text) = std::fs::read_to_string(&usage_path) {
        let saved = mtproxy_core::limits::parse_usage(&text);
        shared.limits.restore_usage(&users_with_stats(&shared), &saved, std::time::SystemTime::now());
    }
    let fleet_thread = fleet.as_ref().map(|f| f.spawn(shared.clone()));
    let shutdown = CancellationToken::new();
    if let Some(addr) = stats_listen {
        // The statistics are an observer: a busy port costs the admin the endpoint, not the proxy.
        match mtproxy_core::stats_listener::bind(addr) {
            Ok(l) => {
                tracing::info!(%addr, tls = stats_tls, "statistics listener (/stats, /stats.json, /metrics, /health; web panel at /panel/ when a password is set)");
                tokio::spawn(mtproxy_core::stats_listener::serve_stats(l, shared.clone(), stats_opts, shutdown.clone()));
            }
            Err(e) => tracing::warn!(%addr, error = %e, "cannot listen for statistics; the proxy runs without them"),
        }
    }
    // The middle-proxy configuration is fetched only while an ad tag is set.
    let s2 = shared.clone();
    let settings = move || {
        let snap = s2.snapshot.load();
        snap.config.ad_tag.map(|_| snap.config.middle.clone())
    };
    tokio::spawn(shared.middle.clone().refresh_loop(settings, shutdown.clone()));
    // Each cover domain's TLS flight: the cached one at once, then learned and kept fresh.
    tokio::spawn(mtproxy_core::cover::refresh::keep_fresh(shared.clone(), cover_cache, shutdown.clone()));
    let (control_tx, control_rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(watch_config(path, shared.clone(), control_tx, bound, fleet.clone()));
    tokio::spawn(wait_for_stop(shutdown.clone()));
    let saver = {
        let (shared, usage_path) = (shared.clone(), usage_path.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(USAGE_SAVE_EVERY);
            tick.tick().await;
            loop {
                tick.tick().await;
                save_usage(&usage_path, &shared);
            }
        })
    };
    let history = tokio::spawn(panel.clone().keep_history());
    let enforcer = {
        let shared = shared.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                for (user, reason) in shared.limits.enforce(&users_with_stats(&shared), std::time::SystemTime::now()) {
                    mtproxy_core::limits::log_cut(&user, reason);
                }
            }
        })
    };
    mtproxy_core::server::serve_with_control(listeners, shared.clone(), shutdown, drain, Some(control_rx)).await;
    saver.abort();
    enforcer.abort();
    history.abort();
    save_usage(&usage_path, &shared);
    panel.sample();
    panel.save_history();
    if let (Some(f), Some(t)) = (&fleet, fleet_thread) {
        // The store thread flushes the last counters; bounded by its connect/query timeouts.
        f.stop();
        let _ = tokio::time::timeout(Duration::from_secs(10), tokio::task::spawn_blocking(move || t.join())).await;
    }
    tracing::info!("stopped");
    Ok(())
}

async fn wait_for_stop(shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
    tracing::info!("stop requested; no longer accepting connections");
    shutdown.cancel();
}

/// Reload when the file changes (checked every second; the path is read anew each time, so a
/// Kubernetes ConfigMap's `..data` symlink swap is seen like an edit), on SIGHUP, or, in a
/// fleet, when the store's users changed. An invalid file is refused with its error and the
/// running configuration stays in force.
async fn watch_config(path: PathBuf, shared: Arc<Shared>, control: UnboundedSender<ListenerCommand>, mut bound: Vec<SocketAddr>, fleet: Option<Arc<Fleet>>) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup()).expect("SIGHUP handler");
    let read = |p: &Path| std::fs::read(p).ok();
    let mut last = read(&path);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        let store_changed = async {
            match &fleet {
                Some(f) => f.changed.notified().await,
                None => std::future::pending().await,
            }
        };
        let forced = tokio::select! {
            _ = hup.recv() => true,
            _ = tick.tick() => false,
            _ = store_changed => true,
        };
        let now = read(&path);
        if !forced && now == last {
            continue;
        }
        last = now;
        let loaded = match &fleet {
            Some(f) => f.effective(&path),
            None => config::load(&path),
        };
        match loaded {
            Ok(cfg) => {
                let users = cfg.users.len();
                let listen = cfg.listen.clone();
                shared.reload(cfg);
                rebind(&listen, &mut bound, &control);
                tracing::info!(users, "configuration reloaded");
            }
            Err(e) => {
                shared.stats.reload_failed(&e.to_string());
                tracing::error!("configuration not reloaded, the previous one stays in force: {e}");
            }
        }
    }
}
