//! The vless-mtproxy server as a library.
//!
//! `config` turns a TOML file into a validated model; `server` binds and accepts; each
//! connection goes through `handshake` (with `replay`), then `fronting` on failure or
//! `upstream` + `relay` on success; `events` and `stats` are what observers see. `snapshot`
//! is the immutable configuration view that live reloads swap. `proxy_header` reads an optional
//! PROXY protocol header from a trusted front before the handshake.
//! `upstream` + `relay` on success (or `middle`, the middle-proxy path, when an ad tag is set); `events` and `stats` are what observers see. `snapshot`
//! is the immutable configuration view that live reloads swap.
//! is the immutable configuration view that live reloads swap. `observe` is the statistics
//! listener that reads `stats`.

pub mod config;
pub mod dc;
pub mod events;
pub mod fronting;
pub mod handshake;
pub mod proxy_header;
pub mod limits;
pub mod middle;
pub mod observe;
pub mod relay;
pub mod replay;
pub mod server;
pub mod snapshot;
pub mod stats;
pub mod upstream;

pub use server::{bind, serve, Shared};
