//! Who may use the panel: the password (argon2 PHC string in `[panel] password_hash`), sessions,
//! CSRF tokens and the login rate limit.
//!
//! ```text
//! POST /panel/api/login {password}  --argon2 verify (blocking pool)-->  Set-Cookie: vmp_session=ID
//!                                                                      (HttpOnly; SameSite=Strict;
//!                                                                       Path=/panel; Max-Age=ttl)
//!                                   <-- {csrf}                         CSRF token bound to ID
//! every POST after that: cookie + `X-CSRF-Token: csrf` (constant-time compare), JSON body
//! ```
//! Session ids and CSRF tokens are 256 random bits, hex; they live in memory only (a restart
//! logs everyone out) and expire `session_ttl` after login. Failed logins are limited per client
//! address and in total over a sliding minute, so a guesser gets a few tries a minute, and argon2
//! makes each one cost. The clock is an argument everywhere, so the tests need no sleeping.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rand::RngCore;
use subtle::ConstantTimeEq;

/// The session cookie's name.
pub const COOKIE: &str = "vmp_session";
/// At most this many sessions at once; a new login beyond it ends the oldest.
const MAX_SESSIONS: usize = 64;
/// Failed logins allowed per client address, and in total, within [`WINDOW`].
pub const FAILS_PER_IP: usize = 5;
pub const FAILS_TOTAL: usize = 30;
pub const WINDOW: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("cannot hash the password: {0}")]
    Hash(String),
    #[error("the password is too short: use at least 10 characters")]
    TooShort,
}

/// The argon2id PHC string of `password` with a fresh salt (default parameters of the crate:
/// 19 MiB, 2 passes, as OWASP recommends).
pub fn hash_password(password: &str) -> Result<String, AuthError> {
    if password.chars().count() < 10 {
        return Err(AuthError::TooShort);
    }
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default().hash_password(password.as_bytes(), &salt).map(|h| h.to_string()).map_err(|e| AuthError::Hash(e.to_string()))
}

/// Whether `password` matches the PHC string `hash` (false for a hash that does not parse).
pub fn verify_password(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
}

fn random_token() -> String {
    let mut b = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut b);
    hex::encode(b)
}

struct Session {
    csrf: String,
    expires: Instant,
}

/// What a request's cookie is worth.
#[derive(Debug, PartialEq, Eq)]
pub enum Check {
    /// A live session; its CSRF token.
    Valid(String),
    /// No cookie, an unknown id, or an expired one.
    Invalid,
}

/// Sessions and failed logins, shared by every connection of the listener.
#[derive(Default)]
pub struct Sessions {
    live: Mutex<HashMap<String, Session>>,
    fails: Mutex<VecDeque<(Instant, IpAddr)>>,
    /// The password hash the live sessions were opened under.
    hash: Mutex<Option<String>>,
}

impl Sessions {
    /// End every session when the password hash is not the one they were opened under (a new
    /// password logs everyone out).
    pub fn follow_password(&self, hash: &str) {
        let mut seen = self.hash.lock().unwrap_or_else(|e| e.into_inner());
        if seen.as_deref() != Some(hash) {
            if seen.is_some() {
                self.live.lock().unwrap_or_else(|e| e.into_inner()).clear();
            }
            *seen = Some(hash.to_string());
        }
    }

    /// A new session valid for `ttl`; returns (session id, CSRF token).
    pub fn create(&self, now: Instant, ttl: Duration) -> (String, String) {
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        live.retain(|_, s| s.expires > now);
        if live.len() >= MAX_SESSIONS {
            if let Some(oldest) = live.iter().min_by_key(|(_, s)| s.expires).map(|(k, _)| k.clone()) {
                live.remove(&oldest);
            }
        }
        let (id, csrf) = (random_token(), random_token());
        live.insert(id.clone(), Session { csrf: csrf.clone(), expires: now + ttl });
        (id, csrf)
    }

    /// The session named by a `Cookie` header value.
    pub fn check(&self, cookie_header: Option<&str>, now: Instant) -> Check {
        let Some(id) = cookie_header.and_then(session_id) else { return Check::Invalid };
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        match live.get(id) {
            Some(s) if s.expires > now => Check::Valid(s.csrf.clone()),
            Some(_) => {
                live.remove(id);
                Check::Invalid
            }
            None => Check::Invalid,
        }
    }

    /// End the session of this cookie (logout).
    pub fn end(&self, cookie_header: Option<&str>) {
        if let Some(id) = cookie_header.and_then(session_id) {
            self.live.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
        }
    }

    /// Whether a login from `ip` may be tried now (under both failure limits).
    pub fn login_allowed(&self, ip: IpAddr, now: Instant) -> bool {
        let mut fails = self.fails.lock().unwrap_or_else(|e| e.into_inner());
        while fails.front().is_some_and(|(t, _)| now.duration_since(*t) >= WINDOW) {
            fails.pop_front();
        }
        fails.len() < FAILS_TOTAL && fails.iter().filter(|(_, a)| *a == ip).count() < FAILS_PER_IP
    }

    /// Count a failed login.
    pub fn login_failed(&self, ip: IpAddr, now: Instant) {
        let mut fails = self.fails.lock().unwrap_or_else(|e| e.into_inner());
        fails.push_back((now, ip));
        while fails.len() > FAILS_TOTAL * 2 {
            fails.pop_front();
        }
    }
}

/// The session id in a `Cookie` header (`a=b; vmp_session=ID; …`).
fn session_id(header: &str) -> Option<&str> {
    header.split(';').filter_map(|kv| kv.trim().split_once('=')).find(|(k, _)| *k == COOKIE).map(|(_, v)| v.trim()).filter(|v| !v.is_empty())
}

/// Whether the CSRF token a request sent is the session's.
pub fn csrf_ok(expected: &str, given: Option<&str>) -> bool {
    given.is_some_and(|g| g.len() == expected.len() && bool::from(g.as_bytes().ct_eq(expected.as_bytes())))
}

/// The `Set-Cookie` value for a new session (or, with `ttl` zero, one that deletes it);
/// `secure` (the listener speaks TLS) adds `Secure`, so the browser never sends it in clear.
pub fn set_cookie(id: &str, ttl: Duration, secure: bool) -> String {
    format!("{COOKIE}={id}; Path=/panel; HttpOnly; SameSite=Strict; Max-Age={}{}", ttl.as_secs(), if secure { "; Secure" } else { "" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_verifies_and_refuses_others() {
        let h = hash_password("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password(&h, "correct horse battery"));
        assert!(!verify_password(&h, "correct horse batterY"));
        assert!(!verify_password("not a hash", "x"));
        assert!(matches!(hash_password("short"), Err(AuthError::TooShort)));
        // A fresh salt each time.
        assert_ne!(h, hash_password("correct horse battery").unwrap());
    }

    #[test]
    fn sessions_expire_and_end() {
        let s = Sessions::default();
        let t0 = Instant::now();
        let (id, csrf) = s.create(t0, Duration::from_secs(60));
        assert_eq!(id.len(), 64);
        let cookie = format!("theme=dark; {COOKIE}={id}");
        assert_eq!(s.check(Some(&cookie), t0 + Duration::from_secs(59)), Check::Valid(csrf.clone()));
        assert_eq!(s.check(Some(&cookie), t0 + Duration::from_secs(60)), Check::Invalid);
        // Once expired it is gone, even if the clock were to go back.
        assert_eq!(s.check(Some(&cookie), t0), Check::Invalid);
        let (id2, _) = s.create(t0, Duration::from_secs(60));
        let c2 = format!("{COOKIE}={id2}");
        s.end(Some(&c2));
        assert_eq!(s.check(Some(&c2), t0), Check::Invalid);
        assert_eq!(s.check(None, t0), Check::Invalid);
        assert_eq!(s.check(Some(&format!("{COOKIE}=")), t0), Check::Invalid);
        assert_eq!(s.check(Some(&format!("{COOKIE}={}", "0".repeat(64))), t0), Check::Invalid);
    }

    #[test]
    fn a_new_password_ends_every_session() {
        let s = Sessions::default();
        let t0 = Instant::now();
        s.follow_password("$argon2id$one");
        let (id, csrf) = s.create(t0, Duration::from_secs(60));
        let c = format!("{COOKIE}={id}");
        s.follow_password("$argon2id$one");
        assert_eq!(s.check(Some(&c), t0), Check::Valid(csrf));
        s.follow_password("$argon2id$two");
        assert_eq!(s.check(Some(&c), t0), Check::Invalid);
    }

    #[test]
    fn sessions_are_bounded() {
        let s = Sessions::default();
        let t0 = Instant::now();
        let first = s.create(t0, Duration::from_secs(10)).0;
        for i in 0..MAX_SESSIONS {
            s.create(t0 + Duration::from_millis(i as u64 + 1), Duration::from_secs(10));
        }
        assert_eq!(s.live.lock().unwrap().len(), MAX_SESSIONS);
        assert_eq!(s.check(Some(&format!("{COOKIE}={first}")), t0), Check::Invalid);
    }

    #[test]
    fn csrf_compares_whole_tokens() {
        assert!(csrf_ok("abcd", Some("abcd")));
        assert!(!csrf_ok("abcd", Some("abc")));
        assert!(!csrf_ok("abcd", Some("abce")));
        assert!(!csrf_ok("abcd", None));
        assert!(!csrf_ok("abcd", Some("")));
    }

    #[test]
    fn failed_logins_are_limited_per_address_and_in_total() {
        let s = Sessions::default();
        let t0 = Instant::now();
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        for i in 0..FAILS_PER_IP {
            assert!(s.login_allowed(a, t0));
            s.login_failed(a, t0 + Duration::from_millis(i as u64));
        }
        assert!(!s.login_allowed(a, t0 + Duration::from_secs(1)));
        assert!(s.login_allowed(b, t0 + Duration::from_secs(1)), "another address is not blocked");
        assert!(s.login_allowed(a, t0 + WINDOW + Duration::from_secs(1)), "the window slides");
        let s = Sessions::default();
        for i in 0..FAILS_TOTAL {
            let ip = IpAddr::from([10, 0, (i / 250) as u8, (i % 250) as u8]);
            s.login_failed(ip, t0);
        }
        assert!(!s.login_allowed(b, t0 + Duration::from_secs(1)), "the total limit holds for a fresh address");
    }

    #[test]
    fn cookie_is_httponly_strict() {
        assert_eq!(set_cookie("abc", Duration::from_secs(60), true), "vmp_session=abc; Path=/panel; HttpOnly; SameSite=Strict; Max-Age=60; Secure");
        let c = set_cookie("abc", Duration::from_secs(3600), false);
        assert_eq!(c, "vmp_session=abc; Path=/panel; HttpOnly; SameSite=Strict; Max-Age=3600");
    }
}
