//! Fuzz the configuration parser (`mtproxy_core::config::parse_str`) on arbitrary UTF-8. The file
//! is written by the operator, not by clients, but it holds the users' secrets: an error about a
//! broken file must never echo a secret, whatever shape the breakage has.
//!
//! Invariants checked beyond "no panic":
//! * an error names the file and a line that exists (`PATH:LINE: ...` with 1 <= LINE <= lines+1)
//!   and carries a `fix:` hint;
//! * no value of a `secret = "..."` / `previous_secret = "..."` line in the input appears in the
//!   error text (for hex values of at least 16 characters that occur nowhere else in the input
//!   and are not part of the example values the hints print);
//! * an accepted config is usable: listen addresses with ports, non-zero timeouts, valid user
//!   names and fake-TLS domains, distinct secrets between users.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use mtproxy_core::config::{parse_str, ConfigError};
use mtproxy_proto::SecretKind;

const PATH: &str = "/fuzz/config.toml";

/// Example values that hint texts print on purpose; a "secret" equal to a part of them would be
/// echoed by the hint, not by the input.
const HINT_VALUES: &str = "0123456789abcdef0123456789abcdef 00112233445566778899aabbccddeeff";

/// The quoted values of `secret = "..."` and `previous_secret = "..."` lines.
fn secret_values(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    for line in text.lines() {
        let t = line.trim_start();
        let rest = t.strip_prefix("previous_secret").or_else(|| t.strip_prefix("secret"));
        let Some(rest) = rest else { continue };
        let Some(rest) = rest.trim_start().strip_prefix('=') else { continue };
        let rest = rest.trim_start();
        for quote in ['"', '\''] {
            if let Some(v) = rest.strip_prefix(quote).and_then(|r| r.split(quote).next()) {
                out.push(v);
            }
        }
    }
    out
}

/// User names the documentation allows: 1-64 of `A-Z a-z 0-9 _ - .` (config.example.toml).
fn valid_user_name(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
}

/// A DNS name usable as SNI: dot-separated labels of letters, digits and inner hyphens.
fn valid_domain(domain: &str) -> bool {
    domain.contains('.')
        && domain.len() <= 253
        && domain
            .split('.')
            .all(|l| (1..=63).contains(&l.len()) && !l.starts_with('-') && !l.ends_with('-') && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match parse_str(text, Path::new(PATH)) {
        Ok(cfg) => {
            assert!(!cfg.listen.is_empty());
            assert!(cfg.listen.iter().all(|a| a.port() != 0));
            assert!(!cfg.timeouts.handshake.is_zero() && !cfg.timeouts.connect.is_zero() && !cfg.timeouts.idle.is_zero());
            let mut secrets = std::collections::HashMap::new();
            for u in &cfg.users {
                assert!(valid_user_name(&u.name), "accepted user name {:?}", u.name);
                if let SecretKind::FakeTls { domain } = &u.kind {
                    assert!(valid_domain(domain), "accepted domain {domain:?}");
                }
                for s in std::iter::once(&u.secret).chain(u.previous_secret.as_ref().map(|p| &p.0)) {
                    if let Some(other) = secrets.insert(*s, &u.name) {
                        assert_eq!(other, &u.name, "two users share a secret");
                    }
                }
            }
        }
        Err(ConfigError::Invalid { line, .. }) => {
            let message = parse_str(text, Path::new(PATH)).unwrap_err().to_string();
            assert!(message.starts_with(&format!("{PATH}:{line}: ")), "{message}");
            assert!(line >= 1 && line <= text.lines().count() + 1, "line {line} of {}", text.lines().count());
            assert!(message.contains("\n  fix: "), "{message}");
            let lower_text = text.to_lowercase();
            let lower_message = message.to_lowercase();
            for value in secret_values(text) {
                let v = value.to_lowercase();
                let hex = v.bytes().all(|b| b.is_ascii_hexdigit());
                if !hex || v.len() < 16 || lower_text.matches(v.as_str()).count() != 1 || HINT_VALUES.contains(v.as_str()) {
                    continue;
                }
                assert!(!lower_message.contains(v.as_str()), "error echoes the secret {value:?}: {message}");
            }
        }
        Err(other) => panic!("parse_str cannot fail to read: {other}"),
    }
});
