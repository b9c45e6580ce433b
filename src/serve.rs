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
use mtproxy_proto::Secret;
use rand::RngCore;
use tokio_util::sync::CancellationToken;

use crate::links;

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

fn parse_overrides(items: &[String]) -> anyhow::Result<Vec<(DcKey, Vec<HostPort>)>> {
    let mut out: Vec<(DcKey, Vec<HostPort>)> = Vec::new();
    for item in items {
        let (id, addr) = item.split_once('=').with_context(|| format!("--dc-override `{item}`: write ID=HOST:PORT, e.g. 2=127.0.0.1:4443"))?;
        let key = DcKey::parse(id).map_err(anyhow::Error::msg)?;
        let hp = HostPort::parse(addr).map_err(anyhow::Error::msg)?;
        match out.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => v.push(hp),
            None => out.push((key, vec![hp])),
        }
    }
    Ok(out)
}

/// Write a fresh configuration with one `dd` user; never overwrites an existing file.
fn create_initial_config(path: &Path) -> anyhow::Result<()> {
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    let text = config::initial_config_text(8443, "default", &Secret::from_bytes(bytes));
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

fn print_links(cfg: &config::Config) {
    let (host, warning) = links::public_host(cfg);
    if let Some(w) = warning {
        eprintln!("warning: {w}");
    }
    for u in cfg.users.iter().filter(|u| u.enabled) {
        let (tg, tme) = links::user_links(cfg, u, &host);
        println!("user {} ({}):\n  {tg}\n  {tme}", u.name, u.kind.name());
    }
    if let Some(first) = cfg.users.iter().find(|u| u.enabled) {
        let (_, tme) = links::user_links(cfg, first, &host);
        println!("QR code for user {}:\n{}", first.name, links::qr_terminal(&tme));
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
    let overrides = parse_overrides(&args.dc_overrides)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cfg.workers)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async move {
        tokio::spawn(crate::logfile::reopen_on_hup(writer));
        serve(path.to_path_buf(), cfg, overrides, args.drain).await
    })
}

async fn serve(path: PathBuf, cfg: config::Config, overrides: Vec<(DcKey, Vec<HostPort>)>, drain: Duration) -> anyhow::Result<()> {
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
    tracing::info!(users = cfg.users.len(), mode = if cfg.ad_tag.is_some() { "middle-proxy (ad tag set; not yet supported, using direct)" } else { "direct" }, "proxy started");
    let shared = Shared::new(cfg, overrides);
    let shutdown = CancellationToken::new();
    tokio::spawn(watch_config(path, shared.clone()));
    tokio::spawn(wait_for_stop(shutdown.clone()));
    mtproxy_core::serve(listeners, shared, shutdown, drain).await;
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

/// Reload when the file changes (checked every second) or on SIGHUP. An invalid file is
/// refused with its error and the running configuration stays in force.
async fn watch_config(path: PathBuf, shared: Arc<Shared>) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup()).expect("SIGHUP handler");
    let read = |p: &Path| std::fs::read(p).ok();
    let mut last = read(&path);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        let forced = tokio::select! {
            _ = hup.recv() => true,
            _ = tick.tick() => false,
        };
        let now = read(&path);
        if !forced && now == last {
            continue;
        }
        last = now;
        match config::load(&path) {
            Ok(cfg) => {
                let users = cfg.users.len();
                shared.reload(cfg);
                tracing::info!(users, "configuration reloaded");
            }
            Err(e) => {
                shared.stats.reloads_failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::error!("configuration not reloaded, the previous one stays in force: {e}");
            }
        }
    }
}
