//! MTProxy wire protocols as pure functions.
//!
//! This crate owns no socket, no clock and no randomness source: every function takes the bytes
//! it works on and, where time or randomness matters, takes them as arguments. That makes the
//! protocol code deterministic, testable against the test vectors of
//! docs/protocol.md §8, and cheap to fuzz (see `fuzz/`).
//!
//! Layering on the client side, outermost first (docs/protocol.md §0):
//! ```text
//! TCP
//!  └─ [optional] fake-TLS records (ee secrets)            -> faketls
//!      └─ obfuscated2: 64-byte init + AES-256-CTR stream   -> obfs2, crypto
//!          └─ abridged / intermediate / padded framing     -> framing
//! ```
//! `secret` holds the 16-byte key and the client-side forms; `links` renders proxy links;
//! `proxy_protocol` parses the PROXY v1/v2 header a front such as HAProxy puts before all that.
//! `rpc` is the middle-proxy protocol (docs/protocol.md §5) used when an ad tag is set.
//! `opening` decides, from the first bytes, whether a connection can still become a handshake
//! (instant fronting); `tlsflight` reads a real site's TLS 1.3 flight and builds the hello that
//! asks for it (cover-site emulation).
//! `socks5` and `http_connect` are the client side of the upstream proxies the DC leg can go
//! through (`[upstream]`).

#![forbid(unsafe_code)]

pub mod crypto;
pub mod faketls;
pub mod framing;
pub mod http_connect;
pub mod links;
pub mod obfs2;
pub mod opening;
pub mod proxy_protocol;
pub mod rpc;
pub mod secret;
pub mod socks5;
pub mod tlsflight;

pub use obfs2::ProtoTag;
pub use secret::{Secret, SecretKind};
