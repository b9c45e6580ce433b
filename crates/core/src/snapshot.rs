//! The immutable view of the configuration that connections work with.
//!
//! A reload builds a new [`Snapshot`] and swaps it in (arc-swap); connections that already
//! started keep the `Arc<UserEntry>` they matched. A user whose secret, kind or enabled state
//! changed, or who was removed, gets their entry's `revoked` token cancelled, which closes
//! their open connections; every other user keeps the same entry and is not disturbed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use mtproxy_proto::opening::Accepts;
use mtproxy_proto::{Secret, SecretKind};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, DcKey, HostPort, User};
use crate::stats::{Stats, UserStats};

/// A configured user as the data path sees it.
#[derive(Debug)]
pub struct UserEntry {
    pub user: User,
    pub stats: Arc<UserStats>,
    /// Cancelled when the user is removed, disabled or re-keyed.
    pub revoked: CancellationToken,
}

/// One secret to try during a handshake.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub secret: Secret,
    pub entry: Arc<UserEntry>,
    /// For a retired (rotated-out) secret: until when it is still accepted.
    pub retired_until: Option<SystemTime>,
}

impl Candidate {
    /// The state of this secret at `now`: usable, or why not.
    pub fn usable(&self, now: SystemTime) -> Result<(), crate::events::FailReason> {
        use crate::events::FailReason;
        if !self.entry.user.enabled {
            return Err(FailReason::UserDisabled);
        }
        match self.retired_until {
            Some(until) if now >= until => Err(FailReason::RotatedSecret),
            _ => Ok(()),
        }
    }
}

#[derive(Debug)]
pub struct Snapshot {
    pub config: Config,
    pub users: Vec<Arc<UserEntry>>,
    /// Every secret of every user (current first, then retired ones), in config order.
    pub candidates: Vec<Candidate>,
    /// Position of each secret in `candidates` (secrets are unique: config validation).
    by_secret: HashMap<Secret, usize>,
    /// Overrides from the command line first, then from the file.
    pub dc_overrides: Vec<(DcKey, Vec<HostPort>)>,
    /// The handshakes some configured secret can use (instant fronting, `opening`).
    pub accepts: Accepts,
    /// The `[upstream]` servers in force (direct and middle-end legs go through them).
    pub router: Arc<crate::upstream::Router>,
}

impl Snapshot {
    /// Build a snapshot; `previous` lets unchanged users keep their entry (and connections).
    pub fn build(config: Config, previous: Option<&Snapshot>, stats: &Stats, cli_overrides: &[(DcKey, Vec<HostPort>)]) -> Snapshot {
        let mut users = Vec::with_capacity(config.users.len());
        for u in &config.users {
            let kept = previous.and_then(|p| p.users.iter().find(|e| e.user.name == u.name)).filter(|e| same_access(&e.user, u));
            let entry = match kept {
                Some(e) if e.user == *u => e.clone(),
                Some(e) => Arc::new(UserEntry { user: u.clone(), stats: e.stats.clone(), revoked: e.revoked.clone() }),
                None => Arc::new(UserEntry { user: u.clone(), stats: stats.user(&u.name), revoked: CancellationToken::new() }),
            };
            users.push(entry);
        }
        if let Some(prev) = previous {
            for old in &prev.users {
                let kept = config.users.iter().any(|u| u.name == old.user.name && same_access(&old.user, u));
                if !kept {
                    old.revoked.cancel();
                }
            }
        }
        let mut candidates: Vec<Candidate> = users.iter().map(|e| Candidate { secret: e.user.secret, entry: e.clone(), retired_until: None }).collect();
        for e in &users {
            if let Some((s, until)) = e.user.previous_secret {
                candidates.push(Candidate { secret: s, entry: e.clone(), retired_until: Some(until) });
            }
        }
        let mut dc_overrides = cli_overrides.to_vec();
        for (k, v) in &config.dc_overrides {
            if !dc_overrides.iter().any(|(ck, _)| ck == k) {
                dc_overrides.push((*k, v.clone()));
            }
        }
        let by_secret = candidates.iter().enumerate().map(|(i, c)| (c.secret, i)).collect();
        let accepts = accepted_handshakes(&config, &candidates);
        let router = Arc::new(crate::upstream::Router::new(&config.upstream, stats));
        Snapshot { config, users, candidates, by_secret, dc_overrides, accepts, router }
    }

    /// The candidates in the order a handshake tries them: the one holding `hint` (the secret
    /// this client address used last, `hints.rs`) first, then every other one in config order.
    pub fn search_order(&self, hint: Option<Secret>) -> impl Iterator<Item = &Candidate> {
        let first = hint.and_then(|s| self.by_secret.get(&s)).copied();
        first.map(|i| &self.candidates[i]).into_iter().chain(self.candidates.iter().enumerate().filter(move |(i, _)| Some(*i) != first).map(|(_, c)| c))
    }

    /// Whether `sni` names a fake-TLS domain we serve.
    pub fn serves_domain(&self, sni: &str) -> bool {
        self.config.users.iter().any(|u| matches!(&u.kind, SecretKind::FakeTls { domain } if domain.eq_ignore_ascii_case(sni)))
    }
}

/// Which handshakes the configured secrets can use. Disabled users count: their handshake must
/// still be recognised, to be refused as `user_disabled` rather than fronted as noise.
fn accepted_handshakes(config: &Config, candidates: &[Candidate]) -> Accepts {
    if config.allow_any_transport && !candidates.is_empty() {
        return Accepts { fake_tls: true, obfuscated2: true };
    }
    let tls = |c: &&Candidate| matches!(c.entry.user.kind, SecretKind::FakeTls { .. });
    Accepts { fake_tls: candidates.iter().any(|c| tls(&c)), obfuscated2: candidates.iter().any(|c| !tls(&c)) }
}

/// Two versions of a user grant the same access: a connection of one may stay open under the
/// other. Rotations with a grace period keep the old secret as `previous_secret`, so they count
/// as the same access while the old secret still works.
fn same_access(a: &User, b: &User) -> bool {
    let secret_kept = a.secret == b.secret || b.previous_secret.map(|(s, _)| s) == Some(a.secret);
    secret_kept && a.kind == b.kind && a.enabled == b.enabled
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_str;
    use std::path::Path;

    #[test]
    fn search_order_puts_the_hinted_secret_first_once() {
        let text = "[users.a]\nsecret = \"a1112233445566778899aabbccddeeff\"\n\
                    [users.b]\nsecret = \"b1112233445566778899aabbccddeeff\"\n\
                    [users.c]\nsecret = \"c1112233445566778899aabbccddeeff\"\n";
        let snap = Snapshot::build(parse_str(text, Path::new("t.toml")).unwrap(), None, &Stats::default(), &[]);
        let names = |hint: Option<Secret>| snap.search_order(hint).map(|c| c.entry.user.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(None), ["a", "b", "c"]);
        assert_eq!(names(Some(Secret::from_hex("c1112233445566778899aabbccddeeff").unwrap())), ["c", "a", "b"]);
        assert_eq!(names(Some(Secret::from_hex("ffffffffffffffffffffffffffffffff").unwrap())), ["a", "b", "c"], "an unknown hint changes nothing");
    }
}
