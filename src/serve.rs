//! `serve`: parse the arguments, set up logging, create the configuration if missing, write the
//! pid file, and run the library's [`Server`] (docs/design.md "control path") with what only
//! the binary has plugged in: the fleet's store as the configuration source, the web panel on
//! the statistics listener, and the signals (SIGHUP reloads, SIGTERM/SIGINT stop and drain).

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use mtproxy_core::config::{self, DcKey, HostPort};
use mtproxy_core::service::{ConfigSource, FileSource, Handle, Options, Server};

use crate::fleet::node::Fleet;
use crate::share;

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

async fn serve(path: PathBuf, cfg: config::Config, fleet: Option<Arc<Fleet>>, overrides: Vec<(DcKey, Vec<HostPort>)>, drain: Duration) -> anyhow::Result<()> {
    let source: Arc<dyn ConfigSource> = match &fleet {
        Some(f) => f.clone(),
        None => Arc::new(FileSource),
    };
    let opts = Options { config_path: Some(path.clone()), source, dc_overrides: overrides, drain, ..Default::default() };
    let mut server = Server::bind(cfg, opts)?;
    let shared = server.shared().clone();
    // The web panel rides on the statistics listener; it answers only while a password is set.
    let panel = crate::panel::Panel::new(&path, shared.clone());
    server.mount_stats(Arc::new(crate::panel::PanelMount(panel.clone())));
    let fleet_thread = fleet.as_ref().map(|f| f.spawn(shared.clone()));
    let handle = server.handle();
    tokio::spawn(wait_for_stop(handle.clone()));
    tokio::spawn(reload_on_hup(handle));
    let history = tokio::spawn(panel.clone().keep_history());
    server.run().await;
    history.abort();
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

async fn wait_for_stop(server: Handle) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
    tracing::info!("stop requested; no longer accepting connections");
    server.stop();
}

/// SIGHUP reads the configuration again at once (the file is also watched every second).
async fn reload_on_hup(server: Handle) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup()).expect("SIGHUP handler");
    while hup.recv().await.is_some() {
        server.reload();
    }
}
