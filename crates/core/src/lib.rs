//! The vless-mtproxy server as a library.
//!
//! `config` turns a TOML file into a validated model; `server` binds, accepts, caps the
//! connections and runs each through the stages of the data path (docs/design.md "data path"):
//! it may start with a PROXY protocol header from a trusted front (`admit`), then goes through
//! `handshake` (with `replay`, and `hints` to try a returning address's secret first), then
//! `fronting` on failure, or on success the per-user `limits`, then `route`: directly to a DC
//! (`route::connect_dc` through `upstream`, then `relay::direct`) or `middle` (the middle-proxy
//! path, while an ad tag is set); `events` and `stats` are what observers see, and `stats_listener` is the statistics
//! listener that reads them. `snapshot` is the immutable configuration view that live reloads
//! swap. `cover` learns each cover site's TLS flight and shapes the fake-TLS flight like it.
//! `service` is the running proxy as one type ([`Server`]: listeners, reload, usage, the
//! statistics listener, refreshes, drain), used by the binary's `serve` and by the tests.

#![forbid(unsafe_code)]

pub mod admit;
pub mod config;
pub mod cover;
pub mod dc;
pub mod events;
pub mod fronting;
pub mod handshake;
pub mod hints;
pub mod limits;
pub mod middle;
pub mod relay;
pub mod replay;
pub mod route;
pub mod server;
pub mod service;
pub mod snapshot;
pub mod statefile;
pub mod stats;
pub mod stats_listener;
pub mod upstream;

pub use server::{bind, serve, Shared};
pub use service::Server;
