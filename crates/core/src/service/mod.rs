//! The running proxy as one library type, [`Server`]: everything `serve` does besides parsing
//! its arguments, so the binary and the in-process tests start the proxy the same way
//! (docs/design.md "control path").
//!
//! [`Server::bind`] binds the client listeners (an error when none can be bound; a warning and
//! the others when several are listed and one fails), builds the [`Shared`] state, restores the
//! saved data usage and binds the statistics listener. [`Server::run`] then serves until
//! [`Handle::stop`]: it accepts (`server`), reloads on a file change or [`Handle::reload`]
//! (`reload`), rebinding when `listen` changed, saves usage and enforces the per-user limits
//! (`usage`), answers statistics (`stats_listener`), refreshes the middle-proxy configuration
//! and the cover sites' TLS flights, and at the end drains open connections and saves usage one
//! last time.
//!
//! What only the binary has plugs in typed: the configuration's origin ([`ConfigSource`], the
//! fleet's store), a [`Mount`] on the statistics listener (the web panel); the binary's own
//! tasks run beside [`Server::run`] on the [`Shared`] handle. Signals are the binary's: it calls
//! the [`Handle`], so tests run a `Server` without them.

pub mod reload;
pub mod usage;

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub use reload::{ConfigSource, FileSource};

use crate::config::{Config, DcKey, HostPort};
use crate::server::Shared;
use crate::stats_listener::{self, Mount};

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The only listen address cannot be bound.
    #[error("cannot listen on {addr}: {error}")]
    Listen { addr: SocketAddr, error: io::Error },
    /// None of the listen addresses can be bound.
    #[error("no listen address could be bound")]
    NoListener,
}

/// How to run a [`Server`] beyond its configuration.
pub struct Options {
    /// The configuration file: watched for changes, and the usage file and cover cache are
    /// beside it unless the configuration names them. `None` (in-process tests): nothing is
    /// read or written on disk and the configuration changes only through [`Shared::reload`].
    pub config_path: Option<PathBuf>,
    /// Where a reload reads the configuration from (default: the file).
    pub source: Arc<dyn ConfigSource>,
    /// `--dc-override`: DC addresses used instead of Telegram's.
    pub dc_overrides: Vec<(DcKey, Vec<HostPort>)>,
    /// How long open connections may finish after the stop before they are closed.
    pub drain: Duration,
    /// Fetch the middle-proxy configuration and learn the cover sites (network traffic to
    /// Telegram and the cover sites); off for tests that drive these themselves.
    pub refresh: bool,
    /// The statistics listener's options (its address is the configuration's `stats_listen`);
    /// a token or configuration path left unset is taken from the configuration.
    pub stats: stats_listener::Options,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            config_path: None,
            source: Arc::new(FileSource),
            dc_overrides: Vec::new(),
            drain: Duration::from_secs(10),
            refresh: true,
            stats: stats_listener::Options::default(),
        }
    }
}

/// Stops or reloads a running [`Server`]; cheap to clone.
#[derive(Clone)]
pub struct Handle {
    stop: CancellationToken,
    reload: Arc<Notify>,
}

impl Handle {
    /// Stop accepting, drain, save, and let [`Server::run`] return.
    pub fn stop(&self) {
        self.stop.cancel();
    }

    /// Read the configuration again now (the binary's SIGHUP).
    pub fn reload(&self) {
        self.reload.notify_one();
    }

    /// The token [`Handle::stop`] cancels.
    pub fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }
}

/// The proxy, bound and ready to [`run`](Server::run).
pub struct Server {
    shared: Arc<Shared>,
    listeners: Vec<TcpListener>,
    bound: Vec<SocketAddr>,
    stats: Option<TcpListener>,
    usage_path: Option<PathBuf>,
    opts: Options,
    handle: Handle,
}

impl Server {
    /// Bind the listeners, build the state and restore the saved usage; nothing is accepted
    /// before [`Server::run`].
    pub fn bind(cfg: Config, mut opts: Options) -> Result<Server, StartError> {
        let mut listeners = Vec::new();
        for addr in &cfg.listen {
            match crate::server::bind(*addr) {
                Ok(l) => {
                    tracing::info!(%addr, "listening");
                    listeners.push(l);
                }
                Err(e) if cfg.listen.len() > 1 => tracing::warn!(%addr, error = %e, "cannot listen on this address; continuing with the others"),
                Err(error) => return Err(StartError::Listen { addr: *addr, error }),
            }
        }
        if listeners.is_empty() {
            return Err(StartError::NoListener);
        }
        tracing::info!(
            users = cfg.users.len(),
            mode = if cfg.ad_tag.is_some() { "middle-proxy (ad tag set: clients go through Telegram's middle-end servers)" } else { "direct" },
            "proxy started"
        );
        let bound: Vec<SocketAddr> = listeners.iter().filter_map(|l| l.local_addr().ok()).collect();
        let (stats_listen, stats_tls) = (cfg.stats_listen, cfg.stats_tls.is_some());
        opts.stats.token = opts.stats.token.take().or_else(|| cfg.stats_token.clone());
        if opts.stats.config_path.is_none() {
            opts.stats.config_path = opts.config_path.as_ref().map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone()).display().to_string());
        }
        let usage_path = opts.config_path.as_ref().map(|p| cfg.usage_path(p));
        let shared = Shared::new(cfg, std::mem::take(&mut opts.dc_overrides));
        if let Some(p) = &usage_path {
            usage::restore(p, &shared);
        }
        let mut stats = None;
        if let Some(addr) = stats_listen {
            // The statistics are an observer: a busy port costs the admin the endpoint, not the proxy.
            match stats_listener::bind(addr) {
                Ok(l) => {
                    tracing::info!(%addr, tls = stats_tls, "statistics listener (/stats, /stats.json, /metrics, /health; web panel at /panel/ when a password is set)");
                    stats = Some(l);
                }
                Err(e) => tracing::warn!(%addr, error = %e, "cannot listen for statistics; the proxy runs without them"),
            }
        }
        let handle = Handle { stop: CancellationToken::new(), reload: Arc::new(Notify::new()) };
        Ok(Server { shared, listeners, bound, stats, usage_path, opts, handle })
    }

    /// The state every connection shares: for the binary's own tasks and tests' assertions.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// The client listeners' addresses (with the port the system chose for port 0).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.bound
    }

    /// The statistics listener's address, when one is bound.
    pub fn stats_addr(&self) -> Option<SocketAddr> {
        self.stats.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Stops and reloads the server from outside.
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// Answer the paths `mount` claims on the statistics listener (the web panel).
    pub fn mount_stats(&mut self, mount: Arc<dyn Mount>) {
        self.opts.stats.mount = Some(mount);
    }

    /// Serve until [`Handle::stop`], then drain and save the usage; returns when done.
    pub async fn run(self) {
        let Server { shared, listeners, bound, stats, usage_path, opts, handle } = self;
        let shutdown = handle.stop.clone();
        if let Some(l) = stats {
            tokio::spawn(stats_listener::serve_stats(l, shared.clone(), opts.stats, shutdown.clone()));
        }
        let mut tasks = Vec::new();
        if opts.refresh {
            // The middle-proxy configuration is fetched only while an ad tag is set.
            let s2 = shared.clone();
            let settings = move || {
                let snap = s2.snapshot.load();
                snap.config.ad_tag.map(|_| snap.config.middle.clone())
            };
            tokio::spawn(shared.middle.clone().refresh_loop(settings, shutdown.clone()));
            if let Some(path) = &opts.config_path {
                // Each cover domain's TLS flight: the cached one at once, then learned and kept fresh.
                let cover_cache = shared.snapshot.load().config.cover_cache_path(path);
                tokio::spawn(crate::cover::refresh::keep_fresh(shared.clone(), cover_cache, shutdown.clone()));
            }
        }
        let (control_tx, control_rx) = tokio::sync::mpsc::unbounded_channel();
        if let Some(path) = &opts.config_path {
            let w = reload::Watch {
                path: path.clone(),
                source: opts.source.clone(),
                shared: shared.clone(),
                control: control_tx,
                bound,
                asked: handle.reload.clone(),
            };
            tasks.push(tokio::spawn(reload::watch(w)));
        }
        if let Some(p) = &usage_path {
            tasks.push(tokio::spawn(usage::keep_saved(p.clone(), shared.clone())));
        }
        tasks.push(tokio::spawn(usage::enforce(shared.clone())));
        crate::server::serve(listeners, shared.clone(), shutdown, opts.drain, control_rx).await;
        for t in tasks {
            t.abort();
        }
        if let Some(p) = &usage_path {
            usage::save(p, &shared);
        }
    }
}
