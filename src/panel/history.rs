//! Traffic history: a small time series the proxy keeps for the panel's graphs.
//!
//! The numbers are the byte counters `/metrics` exposes (`bytes.from_clients`/`to_clients` and
//! each user's `bytes_from_client`/`bytes_to_client` of the same [`Report`]): every few seconds
//! the sampler takes the growth since the last reading and adds it to the bucket of the current
//! minute and of the current hour.
//!
//! ```text
//! key ""   (all users)  minutes: up to 1440 buckets (24 h)   hours: up to 720 buckets (30 days)
//! key NAME (one user)   the same
//! bucket = [start unix seconds, bytes from clients, bytes to clients]; only non-empty ones kept
//! ```
//! Bounded: at most 2160 buckets per key, keys only for configured users. Kept in a JSON file
//! next to the usage file (`<usage file>.history`), written atomically (temp file, fsync, rename)
//! every minute and at shutdown, and read back at start, so graphs survive a restart. A counter
//! that went down (the proxy restarted) counts from zero.

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;

use mtproxy_core::stats_listener::Report;
use serde::{Deserialize, Serialize};

pub const MINUTE: u64 = 60;
pub const HOUR: u64 = 3600;
pub const MINUTES_KEPT: usize = 24 * 60;
pub const HOURS_KEPT: usize = 30 * 24;

/// `[start, from_clients, to_clients]`.
pub type Bucket = [u64; 3];

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Series {
    pub minutes: VecDeque<Bucket>,
    pub hours: VecDeque<Bucket>,
}

fn add_to(q: &mut VecDeque<Bucket>, step: u64, kept: usize, now: u64, from: u64, to: u64) {
    let start = now - now % step;
    match q.back_mut() {
        Some(b) if b[0] == start => {
            b[1] += from;
            b[2] += to;
        }
        _ => q.push_back([start, from, to]),
    }
    let oldest = start.saturating_sub(step * (kept as u64 - 1));
    while q.front().is_some_and(|b| b[0] < oldest) || q.len() > kept {
        q.pop_front();
    }
}

impl Series {
    fn add(&mut self, now: u64, from: u64, to: u64) {
        if from == 0 && to == 0 {
            return;
        }
        add_to(&mut self.minutes, MINUTE, MINUTES_KEPT, now, from, to);
        add_to(&mut self.hours, HOUR, HOURS_KEPT, now, from, to);
    }

    /// Bytes (both directions) in the minute buckets that start at or after `since`.
    pub fn minutes_since(&self, since: u64) -> u64 {
        self.minutes.iter().filter(|b| b[0] >= since).map(|b| b[1] + b[2]).sum()
    }

    /// Bytes (both directions) in the hour buckets that start at or after `since`.
    pub fn hours_since(&self, since: u64) -> u64 {
        self.hours.iter().filter(|b| b[0] >= since).map(|b| b[1] + b[2]).sum()
    }
}

/// The saved form: the series and the last counter readings.
#[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct History {
    pub version: u32,
    pub series: BTreeMap<String, Series>,
    /// The last cumulative readings (key -> [from, to]), to take growth from.
    #[serde(default)]
    last: BTreeMap<String, [u64; 2]>,
}

/// The key of the all-users series.
pub const TOTAL: &str = "";

impl History {
    /// Read a saved history; a missing or unreadable file gives an empty one (with a warning).
    pub fn load(path: &Path) -> History {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice::<History>(&bytes).unwrap_or_else(|e| {
                tracing::warn!(path = %path.display(), error = %e, "traffic history unreadable; starting a new one");
                History::default()
            }),
            Err(_) => History::default(),
        }
    }

    /// Write atomically (temp file in the same folder, fsync, rename), mode 0600.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        crate::store::write_private(path, &serde_json::to_vec(self).map_err(std::io::Error::other)?)
    }

    fn observe(&mut self, key: &str, now: u64, from: u64, to: u64) {
        let (df, dt) = match self.last.get(key) {
            // A counter that went down started again from zero (a restart).
            Some([lf, lt]) if from >= *lf && to >= *lt => (from - lf, to - lt),
            _ => (from, to),
        };
        self.last.insert(key.to_string(), [from, to]);
        self.series.entry(key.to_string()).or_default().add(now, df, dt);
    }

    /// Take one reading of the counters at `now` (Unix seconds): the totals and each
    /// configured user's `(name, from client, to client)`, as the report has them.
    pub fn sample(&mut self, total: (u64, u64), users: &[(String, u64, u64)], now: u64) {
        self.version = 1;
        self.observe(TOTAL, now, total.0, total.1);
        for (name, from, to) in users {
            self.observe(name, now, *from, *to);
        }
        // Only configured users keep a history (bounded by the users of the file).
        let keep = |k: &String| k.is_empty() || users.iter().any(|(n, _, _)| n == k);
        self.series.retain(|k, _| keep(k));
        self.last.retain(|k, _| keep(k));
    }

    /// [`History::sample`] of a report (the numbers `/metrics` shows).
    pub fn sample_report(&mut self, report: &Report, now: u64) {
        let users: Vec<(String, u64, u64)> =
            report.users.iter().filter(|u| u.configured).map(|u| (u.name.clone(), u.bytes_from_client, u.bytes_to_client)).collect();
        self.sample((report.bytes.from_clients, report.bytes.to_clients), &users, now);
    }

    pub fn series(&self, key: &str) -> Series {
        self.series.get(key).cloned().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(h: &mut History, total: (u64, u64), users: &[(&str, u64, u64)], now: u64) {
        let users: Vec<(String, u64, u64)> = users.iter().map(|(n, f, t)| (n.to_string(), *f, *t)).collect();
        h.sample(total, &users, now);
    }

    #[test]
    fn growth_goes_into_minute_and_hour_buckets() {
        let mut h = History::default();
        let t0 = 1_700_000_000 - 1_700_000_000 % HOUR;
        sample(&mut h, (100, 200), &[("alice", 100, 200)], t0);
        sample(&mut h, (150, 260), &[("alice", 150, 260)], t0 + 10);
        sample(&mut h, (150, 260), &[("alice", 150, 260)], t0 + 61);
        sample(&mut h, (160, 300), &[("alice", 160, 300)], t0 + 125);
        let s = h.series(TOTAL);
        assert_eq!(s.minutes, VecDeque::from(vec![[t0, 150, 260], [t0 + 120, 10, 40]]));
        assert_eq!(s.hours, VecDeque::from(vec![[t0, 160, 300]]));
        assert_eq!(h.series("alice"), s);
        assert_eq!(s.minutes_since(t0 + 60), 50);
        assert_eq!(s.hours_since(t0), 460);
    }

    #[test]
    fn a_counter_that_went_down_counts_from_zero() {
        let mut h = History::default();
        sample(&mut h, (1000, 1000), &[], 3600);
        sample(&mut h, (10, 20), &[], 3660);
        assert_eq!(h.series(TOTAL).minutes.back(), Some(&[3660, 10, 20]));
    }

    #[test]
    fn bounded_and_only_configured_users() {
        let mut h = History::default();
        let mut total = 0;
        for i in 0..(HOURS_KEPT as u64 + 50) * 60 {
            total += 1;
            sample(&mut h, (total, 0), &[("bob", total, 0)], 1_000_000 + i * 60);
        }
        let s = h.series(TOTAL);
        assert_eq!(s.minutes.len(), MINUTES_KEPT);
        assert_eq!(s.hours.len(), HOURS_KEPT);
        assert!(s.minutes.iter().all(|b| b[1] == 1));
        sample(&mut h, (total, 0), &[], 1_000_000 + (HOURS_KEPT as u64 + 50) * 3600);
        assert!(h.series.keys().all(|k| k.is_empty()), "removed users lose their history");
    }

    #[test]
    fn survives_a_save_and_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cfg.toml.history");
        let mut h = History::default();
        sample(&mut h, (5, 6), &[("carol", 5, 6)], 7200);
        h.save(&path).unwrap();
        let back = History::load(&path);
        assert_eq!(back, h);
        assert!(!mtproxy_core::config::beside(&path, "tmp").exists());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        std::fs::write(&path, b"{not json").unwrap();
        assert_eq!(History::load(&path), History::default());
    }
}
