//! The proxy's own state files (usage counters, the fleet's cache, the panel's history, an
//! export): written whole or not at all, readable by the owner only, because they sit beside
//! the configuration and a crash in the middle of a write must not leave half a file behind.
//! One writer for all of them, here, so the library's usage saving and the binary's files
//! share it (docs/design.md "control path").

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::config;

/// Write a private file (0600) whole or not at all: a temp file beside it, fsync, rename.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = config::beside(path, "tmp");
    let mut f = OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}
