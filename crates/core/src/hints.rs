//! Which secret a client address authenticated with last, tried first on its next handshake.
//!
//! Matching a handshake costs one check per configured secret until one fits: an HMAC-SHA256
//! over the whole ClientHello for fake-TLS, a SHA-256 and an AES key schedule for obfuscated2
//! (docs/performance.md). With a thousand users an unknown client costs about a millisecond.
//! Telegram clients open many connections from one address (one per DC and media session, and
//! again after every network change), so remembering the secret that matched for the address
//! makes those handshakes cost one check.
//!
//! A hint only changes the order of the search, never its answer: the hinted secret is tried
//! first and, when it does not fit, every other one follows. Secrets are unique across users
//! (config validation), so at most one can fit. A stale hint (the user was removed or
//! re-keyed) costs a lookup that finds nothing.
//!
//! Memory is bounded: two generations of at most `capacity` addresses each. When the current
//! one is full it becomes the old one and the previous old one is dropped, so an address that
//! keeps connecting stays, and a flood of new addresses cannot grow the table.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use mtproxy_proto::Secret;

/// Addresses remembered per generation by default. An entry is 33 bytes plus the table's
/// control byte, and a table of 16 Ki entries has 32 Ki slots: about 1.1 MB per generation,
/// 2.2 MB at most for both (`size_of::<(IpAddr, Secret)>()` is checked in the tests).
pub const DEFAULT_CAPACITY: usize = 16 * 1024;

/// Client address -> the secret it last authenticated with.
pub struct SecretHints {
    capacity: usize,
    generations: Mutex<Generations>,
}

#[derive(Default)]
struct Generations {
    current: HashMap<IpAddr, Secret>,
    old: HashMap<IpAddr, Secret>,
}

impl SecretHints {
    pub fn new(capacity: usize) -> Self {
        SecretHints { capacity: capacity.max(1), generations: Mutex::new(Generations::default()) }
    }

    /// The secret `ip` authenticated with last, if it is remembered.
    pub fn get(&self, ip: IpAddr) -> Option<Secret> {
        let g = self.generations.lock().unwrap();
        g.current.get(&ip).or_else(|| g.old.get(&ip)).copied()
    }

    /// Remember that `ip` authenticated with `secret`.
    pub fn remember(&self, ip: IpAddr, secret: Secret) {
        let mut g = self.generations.lock().unwrap();
        if g.current.get(&ip) == Some(&secret) {
            return;
        }
        if g.current.len() >= self.capacity && !g.current.contains_key(&ip) {
            g.old = std::mem::take(&mut g.current);
        }
        g.current.insert(ip, secret);
    }

    /// Addresses remembered now (both generations; an address in both counts twice).
    pub fn len(&self) -> usize {
        let g = self.generations.lock().unwrap();
        g.current.len() + g.old.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Default for SecretHints {
    fn default() -> Self {
        SecretHints::new(DEFAULT_CAPACITY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u32) -> IpAddr {
        IpAddr::from(n.to_be_bytes())
    }

    fn secret(n: u8) -> Secret {
        Secret::from_bytes([n; 16])
    }

    #[test]
    fn entry_size_is_as_documented() {
        assert_eq!(std::mem::size_of::<(IpAddr, Secret)>(), 33);
    }

    #[test]
    fn remembers_the_last_secret_per_address() {
        let h = SecretHints::new(8);
        assert_eq!(h.get(ip(1)), None);
        h.remember(ip(1), secret(1));
        h.remember(ip(2), secret(2));
        h.remember(ip(1), secret(3));
        assert_eq!(h.get(ip(1)), Some(secret(3)));
        assert_eq!(h.get(ip(2)), Some(secret(2)));
    }

    #[test]
    fn bounded_to_two_generations_and_recent_addresses_survive() {
        let h = SecretHints::new(4);
        for n in 0..4 {
            h.remember(ip(n), secret(n as u8));
        }
        // The fifth address starts a new generation; the first four are still found.
        h.remember(ip(4), secret(4));
        assert_eq!(h.get(ip(0)), Some(secret(0)));
        assert_eq!(h.len(), 5);
        // An address of the old generation that connects again moves to the current one.
        h.remember(ip(0), secret(0));
        for n in 5..8 {
            h.remember(ip(n), secret(n as u8));
        }
        // Current is full (0, 4, 5, 6): 7 starts another generation; 1-3 are dropped.
        assert_eq!(h.get(ip(0)), Some(secret(0)));
        assert_eq!(h.get(ip(1)), None);
        assert_eq!(h.get(ip(7)), Some(secret(7)));
        for n in 0..10_000 {
            h.remember(ip(1000 + n), secret(9));
        }
        assert!(h.len() <= 8, "never more than two generations: {}", h.len());
    }
}
