//! Live reload: the configuration file is checked every second (the path is read anew each
//! time, so a Kubernetes ConfigMap's `..data` symlink swap is seen like an edit), and reloaded
//! at once when the owner asks ([`super::Handle::reload`], SIGHUP in the binary) or when the
//! [`ConfigSource`] says its part changed (a fleet's store). An invalid file is refused with
//! its error and the running configuration stays in force; the listeners follow `listen`
//! (docs/design.md "control path").

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::Notify;

use crate::config::{self, Config, ConfigError};
use crate::server::{ListenerCommand, Shared};

/// Where the running configuration comes from. The plain file by default; the binary's fleet
/// node supplies its own (the file with the store's users in it) without the library knowing
/// about the store.
pub trait ConfigSource: Send + Sync {
    /// The configuration to run, read anew (`path` is the configuration file).
    fn load(&self, path: &Path) -> Result<Config, ConfigError>;

    /// Woken when the configuration changed outside the file: a reload is forced.
    fn changed(&self) -> Option<&Notify> {
        None
    }
}

/// The configuration file alone.
pub struct FileSource;

impl ConfigSource for FileSource {
    fn load(&self, path: &Path) -> Result<Config, ConfigError> {
        config::load(path)
    }
}

/// Make the listeners match `listen`: bind the new addresses first, then close the ones no
/// longer listed. Open connections are not touched (they do not belong to a listener). If
/// none of the new addresses can be bound, the old listeners stay so the proxy stays reachable.
pub(super) fn rebind(listen: &[SocketAddr], bound: &mut Vec<SocketAddr>, control: &UnboundedSender<ListenerCommand>) {
    let mut added = 0;
    let new: Vec<SocketAddr> = listen.iter().filter(|a| !bound.contains(a)).copied().collect();
    for addr in &new {
        match crate::server::bind(*addr) {
            Ok(l) => {
                tracing::info!(%addr, "listening");
                let _ = control.send(ListenerCommand::Add(l));
                bound.push(*addr);
                added += 1;
            }
            Err(e) => tracing::error!(%addr, error = %e, "cannot listen on this address"),
        }
    }
    let stale: Vec<SocketAddr> = bound.iter().filter(|a| !listen.contains(a)).copied().collect();
    if stale.is_empty() {
        return;
    }
    if !bound.iter().any(|a| listen.contains(a)) && added == 0 {
        tracing::error!("no new listen address could be bound; keeping the old listeners");
        return;
    }
    for addr in stale {
        tracing::info!(%addr, "no longer listening (open connections stay)");
        let _ = control.send(ListenerCommand::Remove(addr));
        bound.retain(|a| *a != addr);
    }
}

/// What the watcher needs; it runs until its task is aborted.
pub(super) struct Watch {
    pub path: PathBuf,
    pub source: Arc<dyn ConfigSource>,
    pub shared: Arc<Shared>,
    pub control: UnboundedSender<ListenerCommand>,
    pub bound: Vec<SocketAddr>,
    pub asked: Arc<Notify>,
}

/// Reload when the file changes, when asked, or when the source changed.
pub(super) async fn watch(mut w: Watch) {
    let read = |p: &Path| std::fs::read(p).ok();
    let mut last = read(&w.path);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        let source_changed = async {
            match w.source.changed() {
                Some(n) => n.notified().await,
                None => std::future::pending().await,
            }
        };
        let forced = tokio::select! {
            _ = w.asked.notified() => true,
            _ = tick.tick() => false,
            _ = source_changed => true,
        };
        let now = read(&w.path);
        if !forced && now == last {
            continue;
        }
        last = now;
        match w.source.load(&w.path) {
            Ok(cfg) => {
                let users = cfg.users.len();
                let listen = cfg.listen.clone();
                w.shared.reload(cfg);
                rebind(&listen, &mut w.bound, &w.control);
                tracing::info!(users, "configuration reloaded");
            }
            Err(e) => {
                w.shared.stats.reload_failed(&e.to_string());
                tracing::error!("configuration not reloaded, the previous one stays in force: {e}");
            }
        }
    }
}
