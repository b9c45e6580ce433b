//! The vless-mtproxy server as a library.
//!
//! `config` turns a TOML file into a validated model; `server` binds and accepts; each
//! connection goes through `handshake` (with `replay`), then `fronting` on failure or
//! `upstream` + `relay` on success; `events` and `stats` are what observers see. `snapshot`
//! is the immutable configuration view that live reloads swap.

pub mod config;
pub mod dc;
pub mod events;
pub mod fronting;
pub mod handshake;
pub mod limits;
pub mod relay;
pub mod replay;
pub mod server;
pub mod snapshot;
pub mod stats;
pub mod upstream;

pub use server::{bind, serve, Shared};
