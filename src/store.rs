//! The configuration file as the store of users and settings (docs/design.md "control path").
//!
//! Every change goes: take an exclusive lock (`flock` on `<config>.lock`, so concurrent CLI
//! calls serialise) -> read -> edit the TOML document (`toml_edit`, so the admin's comments and
//! formatting stay) -> validate the result with the proxy's own validator -> write a temp file
//! in the same directory (mode 0600, same owner), fsync -> keep the current file as
//! `<config>.bak` (a hard link, then a rename) -> rename the temp file over the config -> fsync
//! the directory. A reader (or the proxy) therefore sees the old file or the new one, never a
//! mix, at every instant, including when the process is killed in the middle.
//!
//! The lock is a separate file because the config's inode changes with every rename: a lock on
//! the config itself would be taken on a file that is no longer the config.
//!
//! With `[store]` in the file (a fleet, docs/fleet.md) the same calls work on the shared
//! PostgreSQL store: [`Store::lock`] also opens a transaction holding the store's writers'
//! lock, [`Store::load`] gives the file with the store's users in it, and [`Store::commit`]
//! writes the users back to the store (and the node's own settings to the file, only when a
//! command changed them).
//!
//! For the crash test, `VLESS_MTPROXY_TEST_CRASH_AT=N` aborts the process at step N of a
//! write (1..=9); nothing else reads that variable.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use mtproxy_core::config::{self, Config, ConfigError};
use toml_edit::DocumentMut;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path} does not exist; create it with `vless-mtproxy add-user NAME` (or start `serve` once), or pass --config")]
    Missing { path: PathBuf },
    #[error("cannot lock {path}: {err}")]
    Lock { path: PathBuf, err: std::io::Error },
    #[error("cannot read {path}: {err}")]
    Read { path: PathBuf, err: std::io::Error },
    #[error("cannot write {path}: {err}")]
    Write { path: PathBuf, err: std::io::Error },
    #[error("{0}\nThe file was not changed; fix it first (config.example.toml documents every field).")]
    Invalid(ConfigError),
    #[error("the change would make the configuration invalid, so the file was not changed:\n{0}")]
    Rejected(ConfigError),
    #[error(transparent)]
    Fleet(#[from] crate::fleet::FleetError),
}

/// An exclusive hold on the configuration for one read-modify-write.
pub struct Store {
    path: PathBuf,
    _lock: Option<File>,
    fleet: Option<crate::fleet::cli::Session>,
}

/// The file's first text when the CLI creates it.
const NEW_FILE: &str = "# vless-mtproxy configuration. Every field is documented in config.example.toml.\n# This file holds secrets: keep it mode 0600.\n\n[server]\nlisten = [\"0.0.0.0:8443\", \"[::]:8443\"]\n";

/// The atomic 0600 writer for the proxy's own state files (usage, the fleet's cache, an export).
pub use mtproxy_core::statefile::write_private;

fn crash_point(step: u32) {
    if std::env::var("VLESS_MTPROXY_TEST_CRASH_AT").ok().and_then(|v| v.parse::<u32>().ok()) == Some(step) {
        std::process::abort();
    }
}

/// Read and validate the configuration without locking (writers replace it atomically); in
/// a fleet, with the store's users.
pub fn read(path: &Path) -> Result<Config, StoreError> {
    let cfg = match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(StoreError::Missing { path: path.to_path_buf() }),
        _ => config::load(path).map_err(StoreError::Invalid)?,
    };
    let Some(settings) = &cfg.store else { return Ok(cfg) };
    let part = crate::fleet::cli::read_part(settings)?;
    let text = std::fs::read_to_string(path).map_err(|err| StoreError::Read { path: path.to_path_buf(), err })?;
    merged(&text, &part, path).map(|(_, cfg)| cfg)
}

/// The file's text with the fleet part in place of its users, as a document and a model.
fn merged(text: &str, part: &crate::fleet::FleetPart, path: &Path) -> Result<(DocumentMut, Config), StoreError> {
    let file: DocumentMut = text.parse().map_err(|_| StoreError::Invalid(not_toml(path)))?;
    let text = crate::fleet::merge(&file, part)?.to_string();
    let cfg = config::parse_str(&text, path).map_err(StoreError::Invalid)?;
    Ok((text.parse().map_err(|_| StoreError::Invalid(not_toml(path)))?, cfg))
}

fn not_toml(path: &Path) -> ConfigError {
    // The validator accepted the text, so toml_edit will too; kept for completeness.
    ConfigError::Invalid { path: path.to_path_buf(), line: 1, message: "not a TOML document".into(), hint: "check the syntax".into() }
}

impl Store {
    /// Wait for the exclusive lock (bounded by the other holders, each a short CLI call). In
    /// a fleet the store's transaction is the lock that matters; the file lock is then taken
    /// when it can be (a config mounted read-only, as a Kubernetes ConfigMap, has no room for
    /// it).
    pub fn lock(path: &Path) -> Result<Store, StoreError> {
        let settings = match config::load(path) {
            Ok(Config { store: Some(settings), .. }) => Some(settings),
            _ => None,
        };
        let file = match Self::lock_file(path) {
            Ok(f) => Some(f),
            Err(_) if settings.is_some() => None,
            Err(e) => return Err(e),
        };
        let fleet = settings.map(|s| crate::fleet::cli::Session::begin(&s)).transpose()?;
        Ok(Store { path: path.to_path_buf(), _lock: file, fleet })
    }

    fn lock_file(path: &Path) -> Result<File, StoreError> {
        let lock_path = config::beside(path, "lock");
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|err| StoreError::Lock { path: lock_path.clone(), err })?;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_path)
            .map_err(|err| StoreError::Lock { path: lock_path.clone(), err })?;
        file.lock().map_err(|err| StoreError::Lock { path: lock_path, err })?;
        Ok(file)
    }

    /// The document and its validated model; `create` starts a new file when none exists.
    pub fn load(&self, create: bool) -> Result<(DocumentMut, Config), StoreError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => NEW_FILE.to_string(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(StoreError::Missing { path: self.path.clone() }),
            Err(err) => return Err(StoreError::Read { path: self.path.clone(), err }),
        };
        if let Some(session) = &self.fleet {
            return merged(&text, session.part(), &self.path);
        }
        let cfg = config::parse_str(&text, &self.path).map_err(StoreError::Invalid)?;
        let doc: DocumentMut = text.parse().map_err(|_| StoreError::Invalid(not_toml(&self.path)))?;
        Ok((doc, cfg))
    }

    /// Temp files of writers that were killed (we hold the lock, so none is in use).
    fn remove_stale_temps(&self, dir: &Path) {
        let Some(name) = self.path.file_name().and_then(|n| n.to_str()) else { return };
        let prefix = format!("{name}.tmp.");
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                if e.file_name().to_str().is_some_and(|n| n.starts_with(&prefix)) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }

    /// Validate and write `doc` atomically; returns the new model. In a fleet the users go to
    /// the store in the transaction [`Store::lock`] opened, and the file is written only when
    /// the node's own settings changed.
    pub fn commit(&self, doc: &DocumentMut) -> Result<Config, StoreError> {
        let Some(session) = &self.fleet else { return self.write_file(doc) };
        let cfg = config::parse_str(&doc.to_string(), &self.path).map_err(StoreError::Rejected)?;
        let part = crate::fleet::split(doc)?;
        let text = std::fs::read_to_string(&self.path).map_err(|err| StoreError::Read { path: self.path.clone(), err })?;
        let file: DocumentMut = text.parse().map_err(|_| StoreError::Invalid(not_toml(&self.path)))?;
        if crate::fleet::cli::node_part_changed(doc, &file) {
            self.write_file(&crate::fleet::cli::node_file(doc, &file))?;
        }
        session.commit(&part)?;
        Ok(cfg)
    }

    fn write_file(&self, doc: &DocumentMut) -> Result<Config, StoreError> {
        let text = doc.to_string();
        let cfg = config::parse_str(&text, &self.path).map_err(StoreError::Rejected)?;
        crash_point(1);
        let werr = |err| StoreError::Write { path: self.path.clone(), err };
        let dir = match self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            Some(d) => d.to_path_buf(),
            None => PathBuf::from("."),
        };
        self.remove_stale_temps(&dir);
        let tmp = config::beside(&self.path, &format!("tmp.{}", std::process::id()));
        let owner = std::fs::metadata(&self.path).ok().map(|m| (m.uid(), m.gid()));
        let mut f = OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp).map_err(werr)?;
        if let Some((uid, gid)) = owner {
            // Keep the owner when root edits a file the proxy's user owns; not permitted otherwise.
            let _ = std::os::unix::fs::fchown(&f, Some(uid), Some(gid));
        }
        crash_point(2);
        let bytes = text.as_bytes();
        f.write_all(&bytes[..bytes.len() / 2]).map_err(werr)?;
        f.flush().map_err(werr)?;
        crash_point(3);
        f.write_all(&bytes[bytes.len() / 2..]).map_err(werr)?;
        crash_point(4);
        f.sync_all().map_err(werr)?;
        drop(f);
        crash_point(5);
        if owner.is_some() {
            let bak = config::beside(&self.path, "bak");
            let bak_tmp = config::beside(&self.path, "bak.tmp");
            let _ = std::fs::remove_file(&bak_tmp);
            std::fs::hard_link(&self.path, &bak_tmp).map_err(werr)?;
            crash_point(6);
            std::fs::rename(&bak_tmp, &bak).map_err(werr)?;
            crash_point(7);
        }
        std::fs::rename(&tmp, &self.path).map_err(werr)?;
        crash_point(8);
        File::open(&dir).and_then(|d| d.sync_all()).map_err(werr)?;
        crash_point(9);
        Ok(cfg)
    }
}
