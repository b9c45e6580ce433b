//! Per-user data usage across restarts, and the limits enforcement tick: quotas are counted in
//! memory (`limits`), so the counters are restored from the usage file at start, written back
//! every [`SAVE_EVERY`] (only when the numbers changed) and at shutdown; the enforcer cuts a
//! user's connections within a second of a limit being crossed (docs/design.md "limits").

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::config::User;
use crate::limits;
use crate::server::Shared;
use crate::stats::UserStats;

/// How often usage counters are written to disk (and at shutdown).
pub const SAVE_EVERY: Duration = Duration::from_secs(10);

/// How often the per-user limits are checked.
const ENFORCE_EVERY: Duration = Duration::from_secs(1);

fn users_with_stats(shared: &Shared) -> Vec<(User, Arc<UserStats>)> {
    shared.snapshot.load().users.iter().map(|e| (e.user.clone(), e.stats.clone())).collect()
}

/// Put the counters saved at `path` back in force (a missing or unreadable file: none).
pub fn restore(path: &Path, shared: &Shared) {
    if let Ok(text) = std::fs::read_to_string(path) {
        let saved = limits::parse_usage(&text);
        shared.limits.restore_usage(&users_with_stats(shared), &saved, SystemTime::now());
    }
}

/// Persist per-user data usage (atomically: temp file, rename) so a restart keeps quotas; a
/// file that already holds these numbers is not rewritten.
pub fn save(path: &Path, shared: &Shared) {
    let table = shared.limits.usage_table(&users_with_stats(shared), SystemTime::now());
    let text = limits::format_usage(&table);
    // Unchanged counters leave the file alone: no rewrite and no new mtime every 10 s (a backup
    // or setup's "nothing changed" check sees an idle proxy's state as the same file).
    if std::fs::read(path).is_ok_and(|old| old == text.as_bytes()) {
        return;
    }
    if let Err(e) = crate::statefile::write_private(path, text.as_bytes()) {
        tracing::warn!(path = %path.display(), error = %e, "cannot save data usage");
    }
}

/// Save every [`SAVE_EVERY`], for as long as the task runs (the first save one period in).
pub async fn keep_saved(path: std::path::PathBuf, shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(SAVE_EVERY);
    tick.tick().await;
    loop {
        tick.tick().await;
        save(&path, &shared);
    }
}

/// Cut the connections of users over a limit, every second, for as long as the task runs.
pub async fn enforce(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(ENFORCE_EVERY);
    loop {
        tick.tick().await;
        for (user, reason) in shared.limits.enforce(&users_with_stats(&shared), SystemTime::now()) {
            limits::log_cut(&user, reason);
        }
    }
}
