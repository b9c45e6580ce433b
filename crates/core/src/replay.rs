//! Anti-replay: a bounded, time-windowed set of handshake digests (docs/protocol.md §2.8, §4.5).
//!
//! Keys are 16 bytes of per-handshake randomness (the fake-TLS client random, or obfuscated2's
//! `P[8:24]`), stored after a successful authentication so that random probes cannot flush
//! real entries. Entries leave when the cache is full (oldest first) or older than the window.
//! The clock is an argument, so tests drive time.

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

pub type ReplayKey = [u8; 16];

pub struct ReplayCache {
    set: HashSet<ReplayKey>,
    order: VecDeque<(Instant, ReplayKey)>,
    capacity: usize,
    window: Duration,
}

impl ReplayCache {
    pub fn new(capacity: usize, window: Duration) -> Self {
        ReplayCache { set: HashSet::new(), order: VecDeque::new(), capacity: capacity.max(1), window }
    }

    /// Change the bounds (on reload); entries beyond the new capacity leave at the next insert.
    pub fn set_bounds(&mut self, capacity: usize, window: Duration) {
        self.capacity = capacity.max(1);
        self.window = window;
    }

    fn expire(&mut self, now: Instant) {
        while let Some((t, k)) = self.order.front() {
            if self.order.len() > self.capacity || now.saturating_duration_since(*t) > self.window {
                self.set.remove(k);
                self.order.pop_front();
            } else {
                break;
            }
        }
    }

    /// Record `key`; returns `false` when it was already there (a replay).
    pub fn check_and_insert(&mut self, key: ReplayKey, now: Instant) -> bool {
        self.expire(now);
        if !self.set.insert(key) {
            return false;
        }
        self.order.push_back((now, key));
        self.expire(now);
        true
    }

    pub fn len(&self) -> usize {
        self.set.len()
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_replays_within_bounds() {
        let t0 = Instant::now();
        let mut c = ReplayCache::new(3, Duration::from_secs(60));
        assert!(c.check_and_insert([1; 16], t0));
        assert!(!c.check_and_insert([1; 16], t0 + Duration::from_secs(1)));
        // Window: after 61 s the entry is gone.
        assert!(c.check_and_insert([1; 16], t0 + Duration::from_secs(62)));
        // Capacity: the oldest leaves first.
        for i in 2..=4u8 {
            assert!(c.check_and_insert([i; 16], t0 + Duration::from_secs(63)));
        }
        assert_eq!(c.len(), 3);
        assert!(c.check_and_insert([1; 16], t0 + Duration::from_secs(63)));
        assert!(!c.check_and_insert([4; 16], t0 + Duration::from_secs(63)));
    }
}
