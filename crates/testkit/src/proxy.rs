//! The proxy started in-process through the same entry point as the binary's `serve`
//! ([`mtproxy_core::Server`]), so every Rust test runs the proxy the way it runs in production,
//! on loopback ports the system picks. Nothing is read or written on disk and nothing is
//! fetched from the network (no middle-proxy or cover refresh): a test drives those itself.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mtproxy_core::config::{Config, DcKey, HostPort};
use mtproxy_core::service::{Options, Server};
use mtproxy_core::stats_listener;
use mtproxy_core::Shared;
use tokio_util::sync::CancellationToken;

/// A running in-process proxy.
pub struct Proxy {
    /// The client listener.
    pub addr: SocketAddr,
    /// The statistics listener, when asked for.
    pub stats: Option<SocketAddr>,
    /// The state, for assertions and reloads ([`Shared::reload`]).
    pub shared: Arc<Shared>,
    /// Cancel to stop: the proxy stops accepting and drains.
    pub stop: CancellationToken,
    /// Ends when the proxy has stopped.
    pub task: tokio::task::JoinHandle<()>,
}

/// What to start: a configuration (its `listen` is replaced by `127.0.0.1:0`), optionally with
/// every DC sent to one address and a statistics listener.
pub struct Start {
    config: Config,
    dc: Option<SocketAddr>,
    stats: Option<stats_listener::Options>,
    drain: Duration,
}

impl Start {
    pub fn new(config: Config) -> Start {
        Start { config, dc: None, stats: None, drain: Duration::from_secs(1) }
    }

    /// Send every DC id to `addr` (a [`crate::FakeDc`]), like `--dc-override '*=ADDR'`.
    pub fn dc(mut self, addr: SocketAddr) -> Start {
        self.dc = Some(addr);
        self
    }

    /// Also run the statistics listener, on `127.0.0.1:0`, with these options.
    pub fn stats(mut self, opts: stats_listener::Options) -> Start {
        self.stats = Some(opts);
        self
    }

    /// How long open connections may finish after the stop (default 1 s).
    pub fn drain(mut self, drain: Duration) -> Start {
        self.drain = drain;
        self
    }

    /// Bind and run; needs a Tokio runtime.
    pub fn start(self) -> Proxy {
        let mut cfg = self.config;
        cfg.listen = vec![loopback()];
        cfg.stats_listen = self.stats.is_some().then(loopback);
        let dc_overrides = self.dc.map(|a| vec![(DcKey::Any, vec![HostPort::parse(&a.to_string()).expect("a DC address")])]).unwrap_or_default();
        let opts = Options { dc_overrides, drain: self.drain, refresh: false, stats: self.stats.unwrap_or_default(), ..Default::default() };
        let server = Server::bind(cfg, opts).expect("the proxy starts on loopback");
        let addr = server.local_addrs()[0];
        let stats = server.stats_addr();
        let shared = server.shared().clone();
        let stop = server.handle().stop_token();
        let task = tokio::spawn(server.run());
        Proxy { addr, stats, shared, stop, task }
    }
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}
