//! Keep every cover domain's learned flight fresh while the proxy runs.
//!
//! At start the cache file is put in force at once (clients of a known domain get its shape
//! from the first connection). Then every few seconds the domains of the configuration in
//! force are compared with the cache: a domain never learned, learned from another target (the
//! mask host changed), or older than `cover_refresh` (plus up to a fifth more, so refreshes do
//! not tick like a clock) is asked again. A failure keeps what was known (the last shape, or the
//! generic flight) and is retried after a minute, then less and less often.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::Rng;
use tokio_util::sync::CancellationToken;

use super::cache::{CoverCache, CoverProfile};
use super::{learn, CoverBook};
use crate::fronting;
use crate::server::Shared;

/// How often the configuration is compared with the cache.
const CHECK_EVERY: Duration = Duration::from_secs(5);
/// First retry after a failed attempt; doubled each time up to `cover_refresh`.
const FIRST_RETRY: Duration = Duration::from_secs(60);
/// Bound of each network step while learning.
const LEARN_TIMEOUT: Duration = Duration::from_secs(5);

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Whether `profile` (learned from `target`) must be asked again.
fn due(profile: Option<&CoverProfile>, target: &str, refresh: Duration, now: u64, jitter: f64) -> bool {
    match profile {
        None => true,
        Some(p) => p.target != target || now.saturating_sub(p.learned_at) as f64 >= refresh.as_secs_f64() * (1.0 + jitter),
    }
}

/// Run until `shutdown`: learn what is due, save the cache at `path`, swap the book in force.
pub async fn keep_fresh(shared: Arc<Shared>, path: PathBuf, shutdown: CancellationToken) {
    let mut cache = CoverCache::load(&path).unwrap_or_else(|e| {
        tracing::warn!("{e}");
        CoverCache::default()
    });
    let mut emulating = None;
    let mut retry: HashMap<String, (Instant, Duration)> = HashMap::new();
    loop {
        let snap = shared.snapshot.load_full();
        let cfg = &snap.config;
        let emulate = cfg.fake_tls.emulate_cover;
        // The CLI learns a domain when it is added (`add-user --fake-tls`): take what it wrote.
        let took = merge_newer(&mut cache, CoverCache::load(&path).unwrap_or_default());
        if took && emulate {
            shared.covers.store(Arc::new(CoverBook::from_cache(&cache)));
        }
        if emulating != Some(emulate) {
            emulating = Some(emulate);
            shared.covers.store(Arc::new(if emulate { CoverBook::from_cache(&cache) } else { CoverBook::default() }));
        }
        if emulate {
            for domain in cfg.fake_tls_domains() {
                let target = fronting::cover_target(cfg, domain);
                let jitter = rand::thread_rng().gen_range(0.0..0.2);
                if !due(cache.get(domain), &target.to_string(), cfg.fake_tls.cover_refresh, unix_now(), jitter) {
                    continue;
                }
                if retry.get(domain).is_some_and(|(at, _)| Instant::now() < *at) {
                    continue;
                }
                let attempt = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    r = learn::learn(domain, &target, LEARN_TIMEOUT) => r,
                };
                match attempt {
                    Ok(profile) => {
                        let shapes: Vec<String> = profile.variants.iter().map(|(k, v)| format!("{k}: {}", v.describe())).collect();
                        tracing::info!(domain, %target, "learned the cover's TLS flight; fake-TLS clients of it get the same shape ({})", shapes.join("; "));
                        cache.insert(profile);
                        if let Err(e) = cache.save(&path) {
                            tracing::warn!("{e}");
                        }
                        retry.remove(domain);
                        shared.covers.store(Arc::new(CoverBook::from_cache(&cache)));
                    }
                    Err(e) => {
                        let known = if cache.get(domain).is_some() { "the shape learned before" } else { "the generic flight (reference 4.7)" };
                        tracing::warn!(domain, %target, error = %e, "cannot learn the cover's TLS flight; its fake-TLS clients get {known} until it answers");
                        let delay = retry.get(domain).map(|(_, d)| (*d * 2).min(cfg.fake_tls.cover_refresh)).unwrap_or(FIRST_RETRY);
                        retry.insert(domain.to_string(), (Instant::now() + delay, delay));
                    }
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(CHECK_EVERY) => {}
        }
    }
}

/// Take every profile of `disk` learned later than (or missing from) `cache`; true if any.
fn merge_newer(cache: &mut CoverCache, disk: CoverCache) -> bool {
    let mut took = false;
    for (domain, p) in disk.covers {
        if cache.get(&domain).is_none_or(|have| p.learned_at > have.learned_at) {
            cache.covers.insert(domain, p);
            took = true;
        }
    }
    took
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn newer_profiles_on_disk_replace_older_ones_in_memory() {
        let p = |d: &str, at: u64| CoverProfile { domain: d.into(), target: "t".into(), learned_at: at, variants: BTreeMap::new() };
        let mut mem = CoverCache::default();
        mem.insert(p("a", 10));
        mem.insert(p("b", 10));
        let mut disk = CoverCache::default();
        disk.insert(p("a", 5));
        assert!(!merge_newer(&mut mem, disk.clone()));
        disk.insert(p("b", 11));
        disk.insert(p("c", 1));
        assert!(merge_newer(&mut mem, disk));
        assert_eq!((mem.get("a").unwrap().learned_at, mem.get("b").unwrap().learned_at, mem.get("c").unwrap().learned_at), (10, 11, 1));
    }

    #[test]
    fn due_when_missing_moved_or_old() {
        let p = CoverProfile { domain: "d".into(), target: "127.0.0.1:443".into(), learned_at: 1000, variants: BTreeMap::new() };
        let six_h = Duration::from_secs(6 * 3600);
        assert!(due(None, "127.0.0.1:443", six_h, 1000, 0.0));
        assert!(due(Some(&p), "127.0.0.1:8443", six_h, 1000, 0.0));
        assert!(!due(Some(&p), "127.0.0.1:443", six_h, 1000 + 6 * 3600 - 1, 0.0));
        assert!(due(Some(&p), "127.0.0.1:443", six_h, 1000 + 6 * 3600, 0.0));
        assert!(!due(Some(&p), "127.0.0.1:443", six_h, 1000 + 6 * 3600, 0.1));
    }
}
