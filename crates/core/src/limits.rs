//! Per-user limits, enforced when an authenticated client is admitted (docs/design.md "data path":
//! after the handshake, before the upstream connect): expiry date, data quota (optionally per
//! calendar month), connections open at once, distinct client IPs open at once.
//!
//! A refused client is closed with one log line naming the user and the reason (never a
//! secret):
//! ```text
//! connection refused client=203.0.113.9:51234 user=alice reason=max_ips
//! ```
//! Open connections of a user whose quota runs out or whose expiry passes are closed by
//! [`Limits::enforce`] (within about a second, plus the relay's flush batch):
//! ```text
//! connections closed user=alice reason=quota
//! ```
//! Why after the handshake: only then is the user known; the client has proven the secret, so
//! closing it reveals nothing to a prober.
//!
//! Data usage is the user's relayed bytes (both directions, from [`UserStats`], flushed in
//! batches of `stats::FLUSH_BYTES` per connection, so the quota is exact to that batch per
//! open connection) plus what earlier runs counted in the same period, which `serve` persists
//! with [`Limits::usage_table`] / [`Limits::restore_usage`] so a restart does not reset it.
//! The state is kept by user name, so it survives reloads like the statistics do.
//!
//! In a fleet (docs/fleet.md) the other nodes' share comes in with each flush to the store:
//! their bytes in the period ([`Limits::set_others`]) and their open connections and client IPs
//! ([`Limits::set_others_open`]); every check below adds them to this node's own counts.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::date::month_index;
use crate::config::User;
use crate::events::ClientAddr;
use crate::snapshot::UserEntry;
use crate::stats::{ActiveGuard, IpGuard, Stats, UserStats};
use tokio_util::sync::CancellationToken;

/// Why a user's new connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Expired,
    Quota,
    MaxConnections,
    MaxIps,
}

impl Refusal {
    pub const ALL: [Refusal; 4] = [Refusal::Expired, Refusal::Quota, Refusal::MaxConnections, Refusal::MaxIps];

    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Expired => "expired",
            Refusal::Quota => "quota",
            Refusal::MaxConnections => "max_connections",
            Refusal::MaxIps => "max_ips",
        }
    }

    pub fn index(self) -> usize {
        Refusal::ALL.iter().position(|r| *r == self).unwrap()
    }
}

#[derive(Default)]
struct Open {
    total: u32,
    ips: HashMap<IpAddr, u32>,
}

/// Quota accounting: used = `base` + (relayed bytes now - `mark`), within `period`; plus, in a
/// fleet, what the other nodes reported for the same period (`others`).
#[derive(Default)]
struct Quota {
    period: i64,
    base: u64,
    mark: u64,
    started: bool,
    others: Option<(i64, u64)>,
}

#[derive(Default)]
struct UserState {
    open: Mutex<Open>,
    /// The other nodes' open connections and client IPs (a fleet; empty otherwise).
    others_open: Mutex<(u32, HashSet<IpAddr>)>,
    quota: Mutex<Quota>,
    /// Cancelled (and replaced) to close the open connections of a user over quota or expired.
    cut: Mutex<CancellationToken>,
}

/// Limit state of every user, by name.
#[derive(Default)]
pub struct Limits {
    users: Mutex<HashMap<String, Arc<UserState>>>,
    /// Refusals by reason (index: [`Refusal::index`]).
    pub refused: [AtomicU64; Refusal::ALL.len()],
}

/// Holds a user's connection slot and IP slot; released on drop.
pub struct Lease {
    state: Arc<UserState>,
    ip: IpAddr,
    /// Cancelled when [`Limits::enforce`] closes this user's connections.
    pub cut: CancellationToken,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut open = self.state.open.lock().unwrap();
        open.total = open.total.saturating_sub(1);
        if let Some(n) = open.ips.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.ips.remove(&self.ip);
            }
        }
    }
}

fn relayed(stats: &UserStats) -> u64 {
    stats.bytes_from_client.load(Relaxed) + stats.bytes_to_client.load(Relaxed)
}

fn unix(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// The quota period an instant falls in for this user: its month, or 0 for "never resets".
fn period(user: &User, now: SystemTime) -> i64 {
    if user.limits.quota_monthly {
        month_index(unix(now))
    } else {
        0
    }
}

impl Limits {
    fn state(&self, name: &str) -> Arc<UserState> {
        self.users.lock().unwrap().entry(name.to_string()).or_default().clone()
    }

    /// Bytes the user has used in the current quota period: through this process, plus what
    /// the other nodes of a fleet reported ([`Limits::set_others`]).
    pub fn used(&self, user: &User, stats: &UserStats, now: SystemTime) -> u64 {
        let p = period(user, now);
        let local = self.local_used(user, stats, now);
        let others = self.state(&user.name).quota.lock().unwrap().others.filter(|(op, _)| *op == p).map_or(0, |(_, b)| b);
        local + others
    }

    /// Bytes relayed by this node alone in the current period (what it persists and reports).
    pub fn local_used(&self, user: &User, stats: &UserStats, now: SystemTime) -> u64 {
        let st = self.state(&user.name);
        let mut q = st.quota.lock().unwrap();
        Self::roll(&mut q, period(user, now), relayed(stats));
        q.base + relayed(stats).saturating_sub(q.mark)
    }

    /// Make this node's own count for the current period at least `bytes` (what the fleet's
    /// store holds for this node, when the local usage file was lost); bytes relayed since
    /// the start stay counted.
    pub fn raise_local(&self, user: &User, stats: &UserStats, period_of_bytes: i64, bytes: u64, now: SystemTime) {
        if period(user, now) != period_of_bytes {
            return;
        }
        let used = self.local_used(user, stats, now);
        if used < bytes {
            self.state(&user.name).quota.lock().unwrap().base += bytes - used;
        }
    }

    /// This node's open connections and client IPs per user (for the fleet's store).
    pub fn open_table(&self) -> Vec<(String, u32, Vec<IpAddr>)> {
        let users = self.users.lock().unwrap();
        let mut out: Vec<_> = users
            .iter()
            .map(|(n, st)| {
                let o = st.open.lock().unwrap();
                let mut ips: Vec<IpAddr> = o.ips.keys().copied().collect();
                ips.sort();
                (n.clone(), o.total, ips)
            })
            .collect();
        out.sort();
        out
    }

    /// The other nodes' open connections and distinct client IPs for `name`.
    pub fn set_others_open(&self, name: &str, connections: u32, ips: HashSet<IpAddr>) {
        *self.state(name).others_open.lock().unwrap() = (connections, ips);
    }

    /// What the other nodes of the fleet relayed for `name` in `period` (read from the store
    /// after each flush); it counts towards the quota with this node's own bytes.
    pub fn set_others(&self, name: &str, period: i64, bytes: u64) {
        self.state(name).quota.lock().unwrap().others = Some((period, bytes));
    }

    fn roll(q: &mut Quota, period: i64, relayed_now: u64) {
        let others = q.others;
        if !q.started {
            // Everything this process relayed counts towards the first period it sees.
            *q = Quota { period, base: 0, mark: 0, started: true, others };
        } else if q.period != period {
            *q = Quota { period, base: 0, mark: relayed_now, started: true, others };
        }
    }

    /// Admit a new connection of `user` from `ip`, or say why not.
    pub fn admit(&self, user: &User, stats: &UserStats, ip: IpAddr, now: SystemTime) -> Result<Lease, Refusal> {
        let l = &user.limits;
        let result = (|| {
            if l.expires.is_some_and(|e| now >= e) {
                return Err(Refusal::Expired);
            }
            if let Some(q) = l.quota_bytes {
                if self.used(user, stats, now) >= q {
                    return Err(Refusal::Quota);
                }
            }
            let state = self.state(&user.name);
            let others = state.others_open.lock().unwrap();
            let mut open = state.open.lock().unwrap();
            if l.max_connections.is_some_and(|m| open.total + others.0 >= m) {
                return Err(Refusal::MaxConnections);
            }
            let ips_open = open.ips.len() + others.1.iter().filter(|i| !open.ips.contains_key(*i)).count();
            if l.max_ips.is_some_and(|m| !open.ips.contains_key(&ip) && !others.1.contains(&ip) && ips_open as u32 >= m) {
                return Err(Refusal::MaxIps);
            }
            drop(others);
            open.total += 1;
            *open.ips.entry(ip).or_default() += 1;
            drop(open);
            let cut = state.cut.lock().unwrap().clone();
            Ok(Lease { state, ip, cut })
        })();
        if let Err(r) = result {
            self.refused[r.index()].fetch_add(1, Relaxed);
        }
        result
    }

    /// Close the open connections of users whose quota is used up or whose expiry has passed;
    /// `serve` calls this every second. Returns who was cut and why (the caller logs it).
    pub fn enforce(&self, users: &[(User, Arc<UserStats>)], now: SystemTime) -> Vec<(String, Refusal)> {
        let mut cut = Vec::new();
        for (u, s) in users {
            // Published for the statistics (`quota_used_bytes`), whether or not a quota is set.
            s.quota_used_bytes.store(self.used(u, s, now), Relaxed);
            let Some(state) = self.users.lock().unwrap().get(&u.name).cloned() else { continue };
            if state.open.lock().unwrap().total == 0 {
                continue;
            }
            let reason = if u.limits.expires.is_some_and(|e| now >= e) {
                Some(Refusal::Expired)
            } else if u.limits.quota_bytes.is_some_and(|q| self.used(u, s, now) >= q) {
                Some(Refusal::Quota)
            } else {
                None
            };
            if let Some(r) = reason {
                let mut token = state.cut.lock().unwrap();
                token.cancel();
                *token = CancellationToken::new();
                cut.push((u.name.clone(), r));
            }
        }
        cut
    }

    /// Every user's usage in its current period, for persisting: `(name, period, bytes)`.
    pub fn usage_table(&self, users: &[(User, Arc<UserStats>)], now: SystemTime) -> Vec<(String, i64, u64)> {
        users.iter().map(|(u, s)| (u.name.clone(), period(u, now), self.local_used(u, s, now))).collect()
    }

    /// Restore usage counted by an earlier run; entries from another period are ignored.
    /// Call before the users relay anything (at start).
    pub fn restore_usage(&self, users: &[(User, Arc<UserStats>)], saved: &[(String, i64, u64)], now: SystemTime) {
        for (u, s) in users {
            if let Some((_, p, bytes)) = saved.iter().find(|(n, p, _)| *n == u.name && *p == period(u, now)) {
                let st = self.state(&u.name);
                let mut q = st.quota.lock().unwrap();
                *q = Quota { period: *p, base: *bytes, mark: relayed(s), started: true, others: q.others };
            }
        }
    }
}

/// The usage file: one `name period bytes` line per user (names never contain spaces).
pub fn format_usage(table: &[(String, i64, u64)]) -> String {
    let mut out = String::from("# vless-mtproxy data usage per user: name, period (0 = never resets, else year*12+month-1), bytes\n");
    for (n, p, b) in table {
        out.push_str(&format!("{n} {p} {b}\n"));
    }
    out
}

/// Read a usage file; lines that do not parse are skipped.
pub fn parse_usage(text: &str) -> Vec<(String, i64, u64)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some((it.next()?.to_string(), it.next()?.parse().ok()?, it.next()?.parse().ok()?))
        })
        .collect()
}

/// What an admitted connection holds until it ends: its place among the user's open connections
/// and client IPs. Fields drop in declaration order (the IP, the active count, then the lease).
pub struct Slot {
    _ip: IpGuard,
    _active: ActiveGuard,
    pub lease: Lease,
}

/// The limits stage (docs/design.md "data path": after the handshake, before the route): admit
/// `entry`'s new connection from `peer` at `now`, counted as open in `stats`; a refusal is
/// logged here and ends the connection.
pub fn take_slot(limits: &Limits, entry: &UserEntry, stats: &Arc<Stats>, peer: SocketAddr, now: SystemTime) -> Option<Slot> {
    let lease = match limits.admit(&entry.user, &entry.stats, peer.ip(), now) {
        Ok(lease) => lease,
        Err(reason) => {
            log_refusal(peer, &entry.user.name, reason);
            return None;
        }
    };
    let _active = ActiveGuard::new(entry.stats.clone(), stats.clone());
    let _ip = IpGuard::new(entry.stats.clone(), peer.ip());
    Some(Slot { _ip, _active, lease })
}

/// Write the log line of a user whose open connections a limit closed.
pub fn log_cut(user: &str, reason: Refusal) {
    tracing::warn!(target: "vless_mtproxy::limits", "connections closed user={} reason={}", user, reason.as_str());
}

/// Write the one log line of a refused connection.
pub fn log_refusal(client: SocketAddr, user: &str, reason: Refusal) {
    tracing::warn!(target: "vless_mtproxy::limits", "connection refused client={} user={} reason={}", ClientAddr(client), user, reason.as_str());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::UserLimits;
    use std::time::Duration;

    fn user(limits: UserLimits) -> User {
        User {
            name: "u".into(),
            secret: mtproxy_proto::Secret::from_bytes([7; 16]),
            kind: mtproxy_proto::SecretKind::Padded,
            enabled: true,
            previous_secret: None,
            created: None,
            rotated: None,
            limits,
        }
    }

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn connection_and_ip_slots_are_counted_and_released() {
        let l = Limits::default();
        let s = UserStats::default();
        let u = user(UserLimits { max_connections: Some(3), max_ips: Some(1), ..Default::default() });
        let now = SystemTime::now();
        let a1 = l.admit(&u, &s, A, now).unwrap();
        let _a2 = l.admit(&u, &s, A, now).unwrap();
        assert_eq!(l.admit(&u, &s, B, now).err(), Some(Refusal::MaxIps));
        let _a3 = l.admit(&u, &s, A, now).unwrap();
        assert_eq!(l.admit(&u, &s, A, now).err(), Some(Refusal::MaxConnections));
        drop(a1);
        assert!(l.admit(&u, &s, A, now).is_ok());
        assert_eq!(l.refused[Refusal::MaxIps.index()].load(Relaxed), 1);
    }

    #[test]
    fn expiry_and_quota() {
        let l = Limits::default();
        let s = UserStats::default();
        let now = SystemTime::now();
        let u = user(UserLimits { expires: Some(now), ..Default::default() });
        assert_eq!(l.admit(&u, &s, A, now).err(), Some(Refusal::Expired));
        assert!(l.admit(&u, &s, A, now - Duration::from_secs(1)).is_ok());
        let u = user(UserLimits { quota_bytes: Some(1000), quota_monthly: true, ..Default::default() });
        assert!(l.admit(&u, &s, A, now).is_ok());
        s.bytes_to_client.store(1000, Relaxed);
        assert_eq!(l.admit(&u, &s, A, now).err(), Some(Refusal::Quota));
        // Next month the quota starts again.
        assert!(l.admit(&u, &s, A, now + Duration::from_secs(32 * 86400)).is_ok());
    }

    #[test]
    fn enforce_cuts_open_connections_over_quota_or_expired() {
        let l = Limits::default();
        let s = Arc::new(UserStats::default());
        let now = SystemTime::now();
        let u = user(UserLimits { quota_bytes: Some(1000), ..Default::default() });
        let lease = l.admit(&u, &s, A, now).unwrap();
        assert!(l.enforce(&[(u.clone(), s.clone())], now).is_empty());
        assert!(!lease.cut.is_cancelled());
        s.bytes_from_client.store(1000, Relaxed);
        assert_eq!(l.enforce(&[(u.clone(), s.clone())], now), vec![("u".to_string(), Refusal::Quota)]);
        assert!(lease.cut.is_cancelled());
        // The admin raises the quota: a new connection gets a fresh token.
        let raised = user(UserLimits { quota_bytes: Some(5000), ..Default::default() });
        let lease2 = l.admit(&raised, &s, A, now).unwrap();
        assert!(!lease2.cut.is_cancelled());
        let expired = user(UserLimits { expires: Some(now), ..Default::default() });
        assert_eq!(l.enforce(&[(expired, s.clone())], now), vec![("u".to_string(), Refusal::Expired)]);
        assert!(lease2.cut.is_cancelled());
        drop((lease, lease2));
        assert!(l.enforce(&[(u, s)], now).is_empty(), "nothing open, nothing to cut");
    }

    #[test]
    fn usage_survives_a_restart_within_the_period() {
        let now = SystemTime::now();
        let u = user(UserLimits { quota_bytes: Some(1000), ..Default::default() });
        let first = Limits::default();
        let s1 = Arc::new(UserStats::default());
        s1.bytes_from_client.store(600, Relaxed);
        let text = format_usage(&first.usage_table(&[(u.clone(), s1.clone())], now));
        let saved = parse_usage(&text);
        assert_eq!(saved, vec![("u".to_string(), 0, 600)]);
        let second = Limits::default();
        let s2 = Arc::new(UserStats::default());
        second.restore_usage(&[(u.clone(), s2.clone())], &saved, now);
        assert!(second.admit(&u, &s2, A, now).is_ok());
        s2.bytes_to_client.store(400, Relaxed);
        assert_eq!(second.admit(&u, &s2, A, now).err(), Some(Refusal::Quota));
    }

    #[test]
    fn fleet_quota_counts_the_other_nodes_of_the_same_period() {
        let now = SystemTime::now();
        let u = user(UserLimits { quota_bytes: Some(1000), quota_monthly: true, ..Default::default() });
        let l = Limits::default();
        let s = Arc::new(UserStats::default());
        s.bytes_from_client.store(300, Relaxed);
        let p = period(&u, now);
        // Another period's report does not count.
        l.set_others("u", p - 1, 900);
        assert_eq!(l.used(&u, &s, now), 300);
        l.set_others("u", p, 700);
        assert_eq!(l.used(&u, &s, now), 1000);
        assert_eq!(l.local_used(&u, &s, now), 300, "this node persists and reports only its own bytes");
        assert_eq!(l.usage_table(&[(u.clone(), s.clone())], now), vec![("u".to_string(), p, 300)]);
        assert_eq!(l.admit(&u, &s, A, now).err(), Some(Refusal::Quota));
    }

    #[test]
    fn fleet_connection_and_ip_limits_count_the_other_nodes() {
        let now = SystemTime::now();
        let u = user(UserLimits { max_connections: Some(3), max_ips: Some(2), ..Default::default() });
        let l = Limits::default();
        let s = Arc::new(UserStats::default());
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let c: IpAddr = "192.0.2.3".parse().unwrap();
        l.set_others_open("u", 1, [b].into_iter().collect());
        let _a1 = l.admit(&u, &s, A, now).unwrap();
        // A third address while A (here) and B (elsewhere) are open: over max_ips.
        assert_eq!(l.admit(&u, &s, c, now).err(), Some(Refusal::MaxIps));
        // B's address is already counted: allowed.
        let _b1 = l.admit(&u, &s, b, now).unwrap();
        // 2 here + 1 elsewhere = max_connections.
        assert_eq!(l.admit(&u, &s, A, now).err(), Some(Refusal::MaxConnections));
        assert_eq!(
            l.open_table(),
            vec![("u".to_string(), 2, {
                let mut v = vec![A, b];
                v.sort();
                v
            })]
        );
        l.set_others_open("u", 0, HashSet::new());
        assert!(l.admit(&u, &s, A, now).is_ok());
    }

    #[test]
    fn raise_local_keeps_the_larger_count_of_the_current_period() {
        let now = SystemTime::now();
        let u = user(UserLimits { quota_bytes: Some(1000), ..Default::default() });
        let l = Limits::default();
        let s = Arc::new(UserStats::default());
        s.bytes_from_client.store(100, Relaxed);
        l.raise_local(&u, &s, 0, 700, now);
        assert_eq!(l.local_used(&u, &s, now), 700);
        l.raise_local(&u, &s, 0, 500, now);
        assert_eq!(l.local_used(&u, &s, now), 700, "never lowered");
        l.raise_local(&u, &s, 5, 900, now);
        assert_eq!(l.local_used(&u, &s, now), 700, "another period does not count");
        s.bytes_to_client.store(50, Relaxed);
        assert_eq!(l.local_used(&u, &s, now), 750);
    }
}
