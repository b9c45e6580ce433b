//! Property tests for the configuration parser: durations survive `format_duration` ->
//! `parse_duration`, generated user tables are read back exactly, and a broken secret is never
//! echoed in the error, wherever the breakage is. The fuzz target `fuzz/fuzz_targets/config.rs`
//! covers arbitrary text; see docs/fuzzing.md.

use std::path::Path;
use std::time::Duration;

use mtproxy_core::config::{format_duration, initial_config_text, parse_duration, parse_str};
use mtproxy_proto::{Secret, SecretKind};
use proptest::prelude::*;

fn config() -> ProptestConfig {
    // PROPTEST_CASES raises the count for a deeper sweep (docs/fuzzing.md).
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(64);
    ProptestConfig { cases, ..ProptestConfig::default() }
}

/// Durations the config can hold exactly: whole milliseconds whose count fits a u64, and whole
/// seconds up to the largest `Duration` seconds.
fn duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        (0u64..=u64::MAX).prop_map(Duration::from_millis),
        (0u64..10_000_000).prop_map(Duration::from_millis),
        (0u64..=u64::MAX).prop_map(Duration::from_secs),
        (0u64..1000, prop_oneof![Just(60u64), Just(3600), Just(86400)]).prop_map(|(n, u)| Duration::from_secs(n * u)),
    ]
}

#[derive(Debug, Clone)]
struct GenUser {
    name: String,
    secret: [u8; 16],
    kind: SecretKind,
    enabled: bool,
}

fn kind() -> impl Strategy<Value = SecretKind> {
    prop_oneof![
        Just(SecretKind::Classic),
        Just(SecretKind::Padded),
        // `valid_domain`: 4-182 characters, at least one dot, labels of letters, digits and inner `-`.
        "[a-z0-9]{1,12}(\\.[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?){1,2}"
            .prop_filter("a cover domain is at least 4 characters", |d| d.len() >= 4)
            .prop_map(|domain| SecretKind::FakeTls { domain }),
    ]
}

fn users() -> impl Strategy<Value = Vec<GenUser>> {
    prop::collection::btree_map("[A-Za-z0-9_.-]{1,20}", (any::<[u8; 16]>(), kind(), any::<bool>()), 1..6).prop_map(|m| {
        m.into_iter()
            .enumerate()
            // Distinct secrets are required; make them so.
            .map(|(i, (name, (mut secret, kind, enabled)))| {
                secret[0] = i as u8;
                GenUser { name, secret, kind, enabled }
            })
            .collect()
    })
}

fn users_toml(users: &[GenUser]) -> String {
    let mut t = String::from("[server]\nlisten = \"127.0.0.1:8443\"\n");
    for u in users {
        t.push_str(&format!("\n[users.\"{}\"]\nsecret = \"{}\"\nenabled = {}\n", u.name, hex::encode(u.secret), u.enabled));
        match &u.kind {
            SecretKind::Classic => t.push_str("kind = \"classic\"\n"),
            SecretKind::Padded => t.push_str("kind = \"dd\"\n"),
            SecretKind::FakeTls { domain } => t.push_str(&format!("kind = \"ee\"\ndomain = \"{domain}\"\n")),
        }
    }
    t
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn duration_format_parse_round_trip(d in duration()) {
        let text = format_duration(d);
        prop_assert_eq!(parse_duration(&text), Ok(d), "{}", text);
    }

    #[test]
    fn duration_parse_never_panics_and_is_exact(n in any::<u64>(), unit in prop_oneof![Just(""), Just("ms"), Just("s"), Just("m"), Just("h"), Just("d")]) {
        let size: u128 = match unit { "ms" => 0, "" | "s" => 1, "m" => 60, "h" => 3600, _ => 86400 };
        let want = if size == 0 { Some(Duration::from_millis(n)) } else {
            u64::try_from(n as u128 * size).ok().map(Duration::from_secs)
        };
        prop_assert_eq!(parse_duration(&format!("{n}{unit}")).ok(), want);
    }

    #[test]
    fn generated_users_are_read_back(users in users()) {
        let cfg = parse_str(&users_toml(&users), Path::new("/gen.toml")).unwrap();
        prop_assert_eq!(cfg.users.len(), users.len());
        for (got, want) in cfg.users.iter().zip(&users) {
            prop_assert_eq!(&got.name, &want.name);
            prop_assert_eq!(got.secret, Secret::from_bytes(want.secret));
            prop_assert_eq!(&got.kind, &want.kind);
            prop_assert_eq!(got.enabled, want.enabled);
        }
    }

    /// A secret that is one character short, has a non-hex character, or sits in the wrong table
    /// is refused with the line, and the error never contains it.
    #[test]
    fn broken_secrets_are_not_echoed(secret in any::<[u8; 16]>(), how in 0u8..5, at in 0usize..31) {
        let hex = hex::encode(secret);
        let (text, value) = match how {
            0 => { let v = hex[..31].to_string(); (format!("[users.a]\nsecret = \"{v}\"\n"), v) }
            1 => { let mut v = hex.clone(); v.replace_range(at..at + 1, "g"); (format!("[users.a]\nsecret = \"{v}\"\n"), v) }
            2 => (format!("[users]\nsecret = \"{hex}\"\n"), hex.clone()),
            3 => (format!("[server]\nworkers = \"{hex}\"\n"), hex.clone()),
            _ => (format!("[users.a]\nsecret = \"{hex}\"\nprevious_secret = \"{}\"\n", &hex[1..]), hex[1..].to_string()),
        };
        let e = parse_str(&text, Path::new("/p.toml")).unwrap_err().to_string();
        prop_assert!(e.starts_with("/p.toml:2: ") || e.starts_with("/p.toml:3: "), "{}", e);
        prop_assert!(!e.contains(&value[..16]), "secret echoed: {}", e);
    }

    /// The first-start file parses for any port and user name the CLI allows.
    #[test]
    fn initial_config_parses(port in 1u16.., name in "[A-Za-z0-9_-]{1,30}", secret in any::<[u8; 16]>()) {
        let cfg = parse_str(&initial_config_text(port, &name, &Secret::from_bytes(secret)), Path::new("/i.toml")).unwrap();
        prop_assert_eq!(cfg.users.len(), 1);
        prop_assert_eq!(cfg.users[0].secret, Secret::from_bytes(secret));
        prop_assert!(cfg.listen.iter().all(|a| a.port() == port));
    }
}
