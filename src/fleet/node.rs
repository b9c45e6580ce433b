//! The daemon's side of the fleet: one thread that keeps this node's users in step with the
//! store and reports this node's counters to it.
//!
//! - Users: `LISTEN vless_mtproxy_users`; a notification (sent by a CLI write at commit), or
//!   every `resync_interval` whatever happened, reads the fleet part again; when it differs,
//!   it is written to the disk cache (0600, temp file + rename) and the config watcher reloads
//!   (the same path as a file edit). A notification lost with a connection is made up by the
//!   full read done at every (re)connect.
//! - Usage: every `flush_interval`, this node's per-user bytes for the current quota period
//!   (absolute, not deltas) and a heartbeat go to the store in one transaction, and the other
//!   nodes' totals come back into the limits ([`mtproxy_core::limits::Limits::set_others`]).
//!   So a quota can be overshot by at most what the fleet relays in two flush intervals and
//!   the one-second enforcement tick (plus the per-connection accounting batch): docs/fleet.md.
//!   The same flush reports this node's open connections and client IPs per user and brings
//!   back the other nodes' (from nodes seen lately), for the fleet-wide connection/IP limits.
//! - Faults: when the store is unreachable the node keeps its last users (from memory, or
//!   from the cache at start), keeps counting, and retries every second; the first flush after
//!   the store comes back writes the totals counted meanwhile, so nothing is lost.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use mtproxy_core::config::{self, Config, ConfigError, StoreSettings};
use mtproxy_core::Shared;
use postgres::fallible_iterator::FallibleIterator;
use postgres::Client;
use toml_edit::DocumentMut;

use super::{db, FleetPart};

/// How long one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// The fleet as one node sees it.
pub struct Fleet {
    settings: StoreSettings,
    node: String,
    cache: PathBuf,
    part: Mutex<FleetPart>,
    /// Woken when the users changed; the config watcher reloads.
    pub changed: tokio::sync::Notify,
    stop: AtomicBool,
}

impl Fleet {
    /// The users to start with: the store's when it answers, else the disk cache (else none).
    pub fn open(config_path: &Path, cfg: &Config) -> Option<Arc<Fleet>> {
        let settings = cfg.store.clone()?;
        let cache = cfg.fleet_cache_path(config_path)?;
        let node = super::node_name(&settings);
        let part = match super::connect(&settings, CONNECT_TIMEOUT).and_then(|mut c| {
            db::check_version(&settings, &mut c)?;
            db::read_part(&mut c).map_err(|e| db::query_error(&settings, e))
        }) {
            Ok(p) => {
                write_cache(&cache, &p);
                tracing::info!(store = %settings.url.redacted(), node = %node, users = p.users.len(), "fleet store reached");
                p
            }
            Err(e) => match read_cache(&cache) {
                Some(p) => {
                    tracing::warn!(cache = %cache.display(), users = p.users.len(), "{e}; serving the users cached on disk until it answers");
                    p
                }
                None => {
                    tracing::error!(cache = %cache.display(), "{e}; no cached users either: no user can connect until the store answers");
                    FleetPart::default()
                }
            },
        };
        Some(Arc::new(Fleet { settings, node, cache, part: Mutex::new(part), changed: tokio::sync::Notify::new(), stop: AtomicBool::new(false) }))
    }

    /// The node's file with the fleet's users: what `serve` runs.
    pub fn effective(&self, config_path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(config_path).map_err(|source| ConfigError::Read { path: config_path.to_path_buf(), source })?;
        let cfg = config::parse_str(&text, config_path)?;
        if cfg.store.is_none() {
            // `[store]` was taken out of the file: the file's own users are the truth again.
            return Ok(cfg);
        }
        let merged =
            text.parse::<DocumentMut>().ok().and_then(|doc| super::merge(&doc, &self.part.lock().unwrap()).ok()).ok_or_else(|| ConfigError::Invalid {
                path: config_path.to_path_buf(),
                line: 1,
                message: "the users from the store do not fit into this file".into(),
                hint: "check the store with `list-users`".into(),
            })?;
        config::parse_str(&merged.to_string(), config_path)
    }

    /// Run the store thread until [`Fleet::stop`]; it flushes one last time on the way out.
    pub fn spawn(self: &Arc<Self>, shared: Arc<Shared>) -> std::thread::JoinHandle<()> {
        let me = self.clone();
        std::thread::Builder::new().name("fleet".into()).spawn(move || me.run(&shared)).expect("fleet thread")
    }

    pub fn stop(&self) {
        self.stop.store(true, Relaxed);
    }
}

/// A fleet node runs its file with the store's users, and reloads when they changed.
impl mtproxy_core::service::ConfigSource for Fleet {
    fn load(&self, path: &Path) -> Result<Config, ConfigError> {
        self.effective(path)
    }

    fn changed(&self) -> Option<&tokio::sync::Notify> {
        Some(&self.changed)
    }
}

impl Fleet {
    fn connect(&self) -> Result<Client, super::FleetError> {
        let mut c = super::connect(&self.settings, CONNECT_TIMEOUT)?;
        db::check_version(&self.settings, &mut c)?;
        c.batch_execute(&format!("LISTEN {}", db::CHANNEL)).map_err(|e| db::query_error(&self.settings, e))?;
        Ok(c)
    }

    fn run(&self, shared: &Shared) {
        let mut client: Option<Client> = None;
        let mut restored = false;
        let mut down_since: Option<Instant> = None;
        let mut next_resync = Instant::now();
        let mut next_flush = Instant::now() + self.settings.flush_interval;
        loop {
            let stopping = self.stop.load(Relaxed);
            if client.is_none() {
                match self.connect() {
                    Ok(c) => {
                        if let Some(t) = down_since.take() {
                            tracing::info!(after = ?t.elapsed(), "fleet store reachable again; flushing the counters kept meanwhile");
                        }
                        client = Some(c);
                        // Whatever was notified while we were away: read everything again.
                        next_resync = Instant::now();
                        next_flush = Instant::now();
                    }
                    Err(e) => {
                        if down_since.is_none() {
                            tracing::warn!("{e}; serving the last users known and counting locally until it answers");
                            down_since = Some(Instant::now());
                        }
                        if stopping {
                            tracing::warn!(
                                "stopping while the fleet store is down: this node's last counters are in its usage file and reach the store at its next start"
                            );
                            return;
                        }
                        std::thread::sleep(Duration::from_millis(500));
                        continue;
                    }
                }
            }
            let c = client.as_mut().expect("connected");
            let step = (|| -> Result<(), postgres::Error> {
                if !restored {
                    // Once, before the first flush: a node whose usage file was lost (a new
                    // disk, an emptyDir) takes its own counts back from the store.
                    self.restore_own(c, shared)?;
                    restored = true;
                }
                let now = Instant::now();
                if now >= next_resync {
                    next_resync = now + self.settings.resync_interval;
                    self.refresh(c)?;
                }
                if now >= next_flush || stopping {
                    next_flush = now + self.settings.flush_interval;
                    self.flush(c, shared)?;
                }
                if stopping {
                    return Ok(());
                }
                let wait = next_resync.min(next_flush).saturating_duration_since(Instant::now()).min(Duration::from_millis(250));
                let notified = {
                    let mut notes = c.notifications();
                    let got = notes.timeout_iter(wait).next()?.is_some();
                    while got && notes.iter().next()?.is_some() {}
                    got
                };
                if notified {
                    self.refresh(c)?;
                }
                Ok(())
            })();
            match step {
                Ok(()) if stopping => return,
                Ok(()) => {}
                Err(e) => {
                    tracing::warn!("{}; serving the last users known and counting locally until it answers", db::query_error(&self.settings, e));
                    down_since = Some(Instant::now());
                    client = None;
                    if stopping {
                        return;
                    }
                }
            }
        }
    }

    /// Read the users; when they changed, cache them and have the watcher reload.
    fn refresh(&self, c: &mut Client) -> Result<(), postgres::Error> {
        let part = db::read_part(c)?;
        let mut cur = self.part.lock().unwrap();
        if *cur != part {
            write_cache(&self.cache, &part);
            *cur = part;
            drop(cur);
            self.changed.notify_one();
        }
        Ok(())
    }

    fn restore_own(&self, c: &mut Client, shared: &Shared) -> Result<(), postgres::Error> {
        let own = db::own_usage(c, &self.node)?;
        let now = SystemTime::now();
        for e in shared.snapshot.load().users.iter() {
            for (_, period, bytes) in own.iter().filter(|(n, _, _)| *n == e.user.name) {
                shared.limits.raise_local(&e.user, &e.stats, *period, *bytes, now);
            }
        }
        Ok(())
    }

    fn flush(&self, c: &mut Client, shared: &Shared) -> Result<(), postgres::Error> {
        let now = SystemTime::now();
        let snap = shared.snapshot.load();
        let users: Vec<_> = snap.users.iter().map(|e| (e.user.clone(), e.stats.clone())).collect();
        let rows = shared.limits.usage_table(&users, now);
        let link_host =
            self.settings.public_host.clone().or_else(|| snap.config.public_host.clone()).unwrap_or_else(|| crate::share::public_host(&snap.config).0);
        let st = &shared.stats;
        let hb = db::Heartbeat {
            node: &self.node,
            link_host: &link_host,
            link_port: snap.config.link_port(),
            started_unix: st.started_unix as i64,
            connections: st.connections_active.load(Relaxed) as i64,
            bytes: (st.bytes_from_client.load(Relaxed) + st.bytes_to_client.load(Relaxed)) as i64,
        };
        // A node silent for this long no longer counts towards connection and IP limits.
        let fresh = 3 * self.settings.flush_interval + Duration::from_secs(5);
        let mut others = db::flush(c, &hb, &rows, &shared.limits.open_table(), fresh)?;
        for (name, period, _) in &rows {
            shared.limits.set_others(name, *period, others.bytes.get(&(name.clone(), *period)).copied().unwrap_or(0));
            let open = others.open.remove(name).unwrap_or_default();
            shared.limits.set_others_open(name, open.connections, open.ips);
        }
        Ok(())
    }
}

/// The cache: the fleet part as JSON, 0600, written atomically.
fn write_cache(path: &Path, part: &FleetPart) {
    let json = serde_json::to_string(part).unwrap_or_default();
    if let Err(e) = crate::store::write_private(path, json.as_bytes()) {
        tracing::warn!(path = %path.display(), error = %e, "cannot write the fleet cache; a start while the store is down would have no users");
    }
}

fn read_cache(path: &Path) -> Option<FleetPart> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_cache_is_private_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c");
        let mut part = FleetPart { ad_tag: Some("ab".into()), ..Default::default() };
        part.users.insert("u".into(), "secret = \"x\"\n".into());
        write_cache(&p, &part);
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(read_cache(&p), Some(part));
    }
}
