//! The freshness of what the proxy learned from its covers (`mtproxy_core::cover`): the proxy
//! shapes its fake-TLS answer like the cover's real TLS 1.3 flight, learned at start and again
//! every `[fake_tls] cover_refresh`. A flight that is missing or much older than that means the
//! proxy answers with a shape the cover may no longer have (a new certificate changes the size
//! of its flight), which a prober comparing the two can see. Read from the cache file, no network.

use std::path::{Path, PathBuf};
use std::time::Duration;

use mtproxy_core::config::Config;
use mtproxy_core::cover::CoverCache;

use super::{Check, Level};
use crate::setup::templates::IN_DATA_DIR;

/// The cache file as this host sees it: a path inside the container's data folder is read
/// from the host's data folder.
fn host_path(path: PathBuf, data_dir: &Path) -> PathBuf {
    if path.exists() {
        return path;
    }
    match path.strip_prefix(IN_DATA_DIR) {
        Ok(rest) => data_dir.join(rest),
        Err(_) => path,
    }
}

fn ago(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h", s / 3600),
        s => format!("{} days", s / 86_400),
    }
}

pub fn check_learned(cfg: &Config, config_path: &Path, data_dir: &Path, domain: &str, now: u64) -> Check {
    let name = format!("cover {domain}: learned flight");
    if !cfg.fake_tls.emulate_cover {
        return Check::new(name, Level::Skipped, "cover emulation is off ([fake_tls] emulate_cover = false)", None);
    }
    let path = host_path(cfg.cover_cache_path(config_path), data_dir);
    let cache = match CoverCache::load(&path) {
        Ok(c) => c,
        Err(e) => {
            return Check::new(
                name,
                Level::Warn,
                e.to_string(),
                Some("the proxy rewrites the file when it next learns the cover; make sure its folder is writable by the proxy"),
            )
        }
    };
    let refresh = cfg.fake_tls.cover_refresh;
    let Some(p) = cache.get(domain) else {
        return Check::new(
            name,
            Level::Warn,
            format!("no flight learned for {domain} in {}", path.display()),
            Some("the proxy learns it from the mask host at start and every cover_refresh: check that the proxy runs, that the cover answers TLS 1.3, and the proxy's log"),
        );
    };
    let age = now.saturating_sub(p.learned_at);
    let detail = format!("learned {} ago from {} (refreshed every {})", ago(age), p.target, ago(refresh.as_secs()));
    if Duration::from_secs(age) > refresh * 2 {
        Check::new(
            name,
            Level::Warn,
            format!("stale: {detail}"),
            Some("the proxy has not re-learned the cover for two refresh periods: check that it runs and that the mask host answers (its log says why)"),
        )
    } else {
        Check::ok(name, detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_fresh_and_stale_flights() {
        let dir = tempfile::tempdir().unwrap();
        let cfg_path = dir.path().join("config.toml");
        let text = format!(
            "[fake_tls]\ncover_cache = \"{}/covers\"\ncover_refresh = \"1h\"\n[users.a]\nsecret = \"{}\"\nkind = \"ee\"\ndomain = \"cover.test\"\n",
            dir.path().display(),
            "1".repeat(32)
        );
        let cfg = mtproxy_core::config::parse_str(&text, &cfg_path).unwrap();
        let c = check_learned(&cfg, &cfg_path, dir.path(), "cover.test", 10_000);
        assert_eq!(c.status, Level::Warn, "{c:?}");
        assert!(c.detail.contains("no flight learned"));
        let profile = mtproxy_core::cover::CoverProfile {
            domain: "cover.test".into(),
            target: "127.0.0.1:10443".into(),
            learned_at: 10_000,
            variants: Default::default(),
        };
        let mut cache = CoverCache::default();
        cache.insert(profile);
        cache.save(&dir.path().join("covers")).unwrap();
        let c = check_learned(&cfg, &cfg_path, dir.path(), "cover.test", 10_600);
        assert_eq!(c.status, Level::Ok, "{c:?}");
        assert!(c.detail.contains("learned 10 min ago from 127.0.0.1:10443"), "{c:?}");
        let c = check_learned(&cfg, &cfg_path, dir.path(), "cover.test", 10_000 + 3 * 3600);
        assert_eq!(c.status, Level::Warn);
        assert!(c.detail.starts_with("stale: learned 3 h ago"), "{c:?}");
        assert_eq!(host_path(PathBuf::from("/var/lib/vless-mtproxy/covers"), Path::new("/opt/d")), Path::new("/opt/d/covers"));
    }
}
