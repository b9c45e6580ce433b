//! Tests of the whole validator through `parse_str`: defaults, every section's errors with the
//! line they name, and that no secret is ever echoed. (The redaction helper's own test is in
//! `syntax.rs`.)

use std::time::UNIX_EPOCH;

use super::*;

#[test]
fn user_limits_cover_domains_and_paths() {
    let c = parse("[server]\npid_file = \"/run/p.pid\"\n[fake_tls]\ndomains = [\"Www.Example.com\"]\n[limits]\nusage_file = \"/var/lib/u\"\n[users.a]\nsecret = \"00112233445566778899aabbccddeeff\"\nmax_connections = 3\nmax_ips = 2\nquota = \"1.5GiB\"\nquota_reset = \"monthly\"\nexpires = \"2030-01-31\"\n").unwrap();
    let l = &c.users[0].limits;
    assert_eq!(l.max_connections, Some(3));
    assert_eq!(l.max_ips, Some(2));
    assert_eq!(l.quota_bytes, Some(3 << 29));
    assert!(l.quota_monthly);
    assert_eq!(l.expires, Some(UNIX_EPOCH + Duration::from_secs(super::super::date::parse_expiry("2030-02-01T00:00:00Z").unwrap() as u64)));
    assert_eq!(c.fake_tls.cover_domains, vec!["www.example.com".to_string()]);
    assert_eq!(c.pid_file.as_deref(), Some(Path::new("/run/p.pid")));
    assert_eq!(c.limits.usage_file.as_deref(), Some(Path::new("/var/lib/u")));
    let d = parse("[users.a]\nsecret = \"00112233445566778899aabbccddeeff\"\n").unwrap();
    assert_eq!(d.users[0].limits, UserLimits::default());
    assert_eq!(d.fake_tls.cover_domains.len(), d::COVER_DOMAINS.len());
    assert_eq!(d.pid_path(Path::new("/etc/x.toml")), Path::new("/etc/x.toml.pid"));
}

#[test]
fn bad_limits_name_their_line() {
    let base = "[users.a]\nsecret = \"00112233445566778899aabbccddeeff\"\n";
    for (extra, want) in [
        ("max_connections = 0\n", "`max_connections` = 0 is out of range"),
        ("max_ips = -1\n", "`max_ips` = -1 is out of range"),
        ("quota = \"lots\"\n", "is not a size"),
        ("quota = 0\n", "not positive"),
        ("quota_reset = \"weekly\"\n", "quota_reset"),
        ("expires = \"2025-02-30\"\n", "not a calendar date"),
    ] {
        let e = parse(&format!("{base}{extra}")).unwrap_err();
        assert!(e.starts_with("/etc/test.toml:3:") && e.contains(want), "{extra}: {e}");
    }
    let e = parse("[fake_tls]\ndomains = [\"bad domain\"]\n").unwrap_err();
    assert!(e.starts_with("/etc/test.toml:2:"), "{e}");
    assert_eq!(parse_size("10GiB"), Ok(10 << 30));
    assert_eq!(parse_size("500MB"), Ok(500_000_000));
    assert_eq!(parse_size("123"), Ok(123));
    assert!(parse_size("5 parsecs").is_err());
}

fn parse(text: &str) -> Result<Config, String> {
    parse_str(text, Path::new("/etc/test.toml")).map_err(|e| e.to_string())
}

#[test]
fn minimal_file_gets_defaults() {
    let c = parse("[users.a]\nsecret = \"00112233445566778899aabbccddeeff\"\n").unwrap();
    assert_eq!(c.users.len(), 1);
    assert_eq!(c.users[0].kind, SecretKind::Padded);
    assert_eq!(c.listen, vec!["0.0.0.0:8443".parse().unwrap()]);
    assert_eq!(c.timeouts.idle, d::IDLE_TIMEOUT);
    assert!(c.fronting.enabled);
}

#[test]
fn errors_name_file_line_and_fix() {
    let e = parse("[server]\nworkers = 1\n\n[users.a]\nsecret = \"0011\"\n").unwrap_err();
    assert!(e.starts_with("/etc/test.toml:5: user `a`: a secret is 32 hexadecimal"), "{e}");
    assert!(e.contains("fix: "), "{e}");
    let e = parse("[server]\nworkers = 0\n").unwrap_err();
    assert!(e.starts_with("/etc/test.toml:2: `workers` = 0 is out of range"), "{e}");
    let e = parse("[server]\nlisten = [\"0.0.0.0:8443\"]\nbogus = 1\n").unwrap_err();
    assert!(e.starts_with("/etc/test.toml:3:") && e.contains("unknown field"), "{e}");
    let e = parse("[users.b]\nsecret = \"00112233445566778899aabbccddeeff\"\nkind = \"ee\"\n").unwrap_err();
    assert!(e.contains("has no domain"), "{e}");
    let e = parse("[timeouts]\nidle = \"5 weeks\"\n").unwrap_err();
    assert!(e.starts_with("/etc/test.toml:2:"), "{e}");
    let e = parse("[users.a]\nsecret = \"00112233445566778899aabbccddeeff\"\n[users.b]\nsecret = \"00112233445566778899aabbccddeeff\"\n").unwrap_err();
    assert!(e.contains("same secret"), "{e}");
    let e = parse("[dc_overrides]\nx = \"1.2.3.4:443\"\n").unwrap_err();
    assert!(e.contains("not a DC id"), "{e}");
    let e = parse("[dc_overrides]\n\"2\" = \"1.2.3.4:443\"\n\"02\" = \"1.2.3.5:443\"\n").unwrap_err();
    assert!(e.contains("DC override `2` names the same DC as `02`") && e.contains("one entry per DC"), "{e}");
    let e = parse("[promoted_channel]\nnat_ip = \"1.2.3\"\n").unwrap_err();
    assert!(e.starts_with("/etc/test.toml:2: `nat_ip`"), "{e}");
    let e = parse("[promoted_channel]\n\nproxy_config_url = \"ftp://x/y\"\n").unwrap_err();
    assert!(e.starts_with("/etc/test.toml:3: `proxy_config_url`: only http"), "{e}");
    let e = parse("[promoted_channel]\nproxy_secret_url = \"off\"\n").unwrap_err();
    assert!(e.starts_with("/etc/test.toml:2: `proxy_secret_url` cannot be off"), "{e}");
    let e = parse("[promoted_channel]\nconnections_per_dc = 0\n").unwrap_err();
    assert!(e.starts_with("/etc/test.toml:2: `connections_per_dc` = 0 is out of range"), "{e}");
}

#[test]
fn middle_settings_defaults_and_paths() {
    let c = parse("").unwrap();
    assert_eq!(c.middle.proxy_secret, Source::Url(d::PROXY_SECRET_URL.into()));
    assert_eq!(c.middle.proxy_config_v6, Some(Source::Url(d::PROXY_CONFIG_V6_URL.into())));
    assert_eq!(c.middle.cache_dir, Path::new("/etc/middle-cache"));
    assert_eq!(c.middle.connections_per_dc, d::MIDDLE_CONNECTIONS);
    let c = parse("[promoted_channel]\nproxy_secret_url = \"secret.bin\"\nproxy_config_url = \"http://127.0.0.1:9/c\"\nproxy_config_v6_url = \"off\"\ncache_dir = \"/var/cache/x\"\nnat_ip = \"203.0.113.7\"\nrefresh_interval = \"10m\"\n").unwrap();
    assert_eq!(c.middle.proxy_secret, Source::File("/etc/secret.bin".into()));
    assert_eq!(c.middle.proxy_config, Source::Url("http://127.0.0.1:9/c".into()));
    assert_eq!(c.middle.proxy_config_v6, None);
    assert_eq!(c.middle.cache_dir, Path::new("/var/cache/x"));
    assert_eq!(c.middle.nat_ip, Some("203.0.113.7".parse().unwrap()));
    assert_eq!(c.middle.refresh_interval, Duration::from_secs(600));
}

#[test]
fn secrets_never_appear_in_errors() {
    let e = parse("[users.a]\nsecret = \"00112233445566778899aabbccddeefX\"\n").unwrap_err();
    assert!(!e.contains("00112233445566778899"), "{e}");
    // Found by fuzz/fuzz_targets/config.rs: a secret line under `[users]` (no user name) used
    // to be echoed by serde's "invalid type: string \"…\"" message.
    let e = parse("[users]\nsecret = \"6c1b0e2f9a8d7c6b5a4f3e2d1c0b9a88\"\n").unwrap_err();
    assert!(e.starts_with("/etc/test.toml:2: invalid type: string, expected struct RawUser"), "{e}");
    assert!(!e.contains("6c1b0e2f"), "{e}");
    let e = parse("[server]\nworkers = \"6c1b0e2f9a8d7c6b5a4f3e2d1c0b9a88\"\n").unwrap_err();
    assert!(!e.contains("6c1b0e2f"), "{e}");
}

#[test]
fn proxy_protocol_settings() {
    let c = parse("[server]\nproxy_protocol = true\ntrusted_proxies = [\"127.0.0.1/32\", \"10.0.0.0/8\", \"::1\"]\n").unwrap();
    assert!(c.proxy_protocol.enabled);
    assert!(c.proxy_protocol.trusts("10.2.3.4".parse().unwrap()));
    assert!(c.proxy_protocol.trusts("::ffff:127.0.0.1".parse().unwrap()));
    assert!(!c.proxy_protocol.trusts("192.0.2.1".parse().unwrap()));
    let off = parse("[server]\ntrusted_proxies = [\"127.0.0.1\"]\n").unwrap();
    assert!(!off.proxy_protocol.trusts("127.0.0.1".parse().unwrap()));
    assert!(!parse("").unwrap().proxy_protocol.enabled);
    let e = parse("[server]\nworkers = 1\nproxy_protocol = true\n").unwrap_err();
    assert!(e.starts_with("/etc/test.toml:3:") && e.contains("trusted_proxies` is empty"), "{e}");
    let e = parse("[server]\nproxy_protocol = true\ntrusted_proxies = [\"10.0.0.1/8\"]\n").unwrap_err();
    assert!(e.starts_with("/etc/test.toml:3: `trusted_proxies`:") && e.contains("10.0.0.0/8"), "{e}");
    let e = parse("[server]\n\ntrusted_proxies = [\"haproxy\"]\n").unwrap_err();
    assert!(e.starts_with("/etc/test.toml:3:") && e.contains("fix: "), "{e}");
}

#[test]
fn stats_listener_stays_local_unless_flag_and_token() {
    let c = parse("").unwrap();
    assert_eq!(c.stats_listen, Some("127.0.0.1:8888".parse().unwrap()));
    assert!(!c.stats_allow_remote && c.stats_token.is_none());
    assert!(parse("[stats]\nlisten = \"[::1]:9000\"\n").is_ok());
    // Spaces around the value are ignored, as in every other field.
    assert_eq!(parse("[stats]\nlisten = \" 127.0.0.1:9000 \"\n").unwrap().stats_listen, Some("127.0.0.1:9000".parse().unwrap()));
    assert_eq!(parse("[stats]\nlisten = \" off\"\n").unwrap().stats_listen, None);
    let e = parse("[stats]\nlisten = \"0.0.0.0:8888\"\n").unwrap_err();
    assert!(e.starts_with("/etc/test.toml:2: `stats.listen` = \"0.0.0.0:8888\" is not a loopback"), "{e}");
    let e = parse("[stats]\nlisten = \"0.0.0.0:8888\"\nallow_remote = true\n").unwrap_err();
    assert!(e.contains("not a loopback"), "{e}");
    let e = parse("[stats]\nallow_remote = true\n").unwrap_err();
    assert!(e.starts_with("/etc/test.toml:2: `stats.allow_remote = true` needs a bearer token"), "{e}");
    let e = parse("[stats]\ntoken = \"short-secret\"\n").unwrap_err();
    assert!(e.starts_with("/etc/test.toml:2: `stats.token`") && !e.contains("short-secret"), "{e}");
    let c = parse("[stats]\nlisten = \"0.0.0.0:8888\"\nallow_remote = true\ntoken = \"abcdefghijklmnop-123\"\n").unwrap();
    assert_eq!(c.stats_token.as_ref().unwrap().as_str(), "abcdefghijklmnop-123");
    assert!(!format!("{c:?}").contains("abcdefghijklmnop"), "Debug must not show the token");
}

#[test]
fn domains_and_names() {
    assert!(valid_domain("www.example.com"));
    assert!(!valid_domain("localhost"));
    assert!(!valid_domain("-bad.com"));
    assert!(valid_user_name("alice_1.x-y"));
    assert!(!valid_user_name("bad name"));
}

mod example_file {
    #[test]
    fn the_documented_example_is_valid() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../config.example.toml");
        let c = crate::config::load(std::path::Path::new(path)).unwrap();
        assert_eq!(c.users.len(), 2);
        assert_eq!(c.listen.len(), 2);
    }

    /// The commented-out `[[upstream.servers]]` examples, uncommented, are a valid section that
    /// names every field.
    #[test]
    fn the_upstream_examples_are_valid_when_uncommented() {
        let text = include_str!("../../../../../config.example.toml");
        let start = text.find("[upstream]\n").unwrap();
        let end = start + text[start..].find("# DC address overrides").unwrap();
        let section: String = text[start..end]
            .lines()
            .filter_map(|l| l.strip_prefix("# ").filter(|r| r.starts_with("[[") || r.contains(" = ")).or(Some(l).filter(|l| !l.starts_with('#'))))
            .map(|l| format!("{l}\n"))
            .collect();
        for field in ["name", "type", "address", "username", "password", "weight", "dcs", "retry_after"] {
            assert!(section.contains(&format!("{field} = ")), "{field} is not documented");
        }
        let c = super::parse_str(&section, std::path::Path::new("example")).unwrap();
        assert_eq!(c.upstream.servers.len(), 2);
        assert_eq!(c.upstream.servers[1].dcs.rank(-2), 2);
    }
}

#[test]
fn upstream_servers_parse_in_file_order() {
    let base = "[users.a]\nsecret = \"00112233445566778899aabbccddeeff\"\n";
    let d = parse(base).unwrap();
    assert!(d.upstream.servers.is_empty());
    assert_eq!(d.upstream.retry_after, d::UPSTREAM_RETRY_AFTER);
    let c = parse(&format!(
        "{base}[upstream]\nretry_after = \"5s\"\n[[upstream.servers]]\nname = \"xray\"\ntype = \"socks5\"\naddress = \"127.0.0.1:10808\"\nusername = \"u\"\npassword = \"p\"\nweight = 3\ndcs = [\"*\"]\n[[upstream.servers]]\nname = \"media-direct\"\ntype = \"direct\"\ndcs = [\"media\", 4, \"-5\"]\n[[upstream.servers]]\nname = \"web\"\ntype = \"http\"\naddress = \"proxy.example:3128\"\n"
    ))
    .unwrap();
    let u = &c.upstream;
    assert_eq!(u.retry_after, Duration::from_secs(5));
    let names: Vec<&str> = u.servers.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["xray", "media-direct", "web"]);
    assert_eq!(
        u.servers[0].kind,
        UpstreamKind::Socks5 {
            address: HostPort::parse("127.0.0.1:10808").unwrap(),
            credentials: Some(Credentials { username: "u".into(), password: "p".into() })
        }
    );
    assert_eq!(u.servers[0].weight, 3);
    assert_eq!(u.servers[1].dcs, DcSelection { any: false, media: true, ids: vec![4, -5] });
    assert_eq!(u.servers[2].dcs, DcSelection::all());
    assert_eq!(u.servers[2].kind, UpstreamKind::Http { address: HostPort::parse("proxy.example:3128").unwrap(), credentials: None });
    let ranks: Vec<u8> = [2i16, -2, 4, -5].iter().map(|dc| u.servers[1].dcs.rank(*dc)).collect();
    assert_eq!(ranks, [0, 2, 3, 3]);
}

#[test]
fn bad_upstreams_name_their_line_and_never_the_password() {
    let base = "[users.a]\nsecret = \"00112233445566778899aabbccddeeff\"\n[[upstream.servers]]\n";
    for (body, line, want) in [
        ("type = \"socks5\"\naddress = \"127.0.0.1:1080\"\n", 3, "has no `name`"),
        ("name = \"a b\"\ntype = \"socks5\"\n", 4, "not usable as a label"),
        ("name = \"x\"\naddress = \"127.0.0.1:1080\"\n", 3, "has no `type`"),
        ("name = \"x\"\ntype = \"socks4\"\naddress = \"127.0.0.1:1080\"\n", 5, "unknown type `socks4`"),
        ("name = \"x\"\ntype = \"socks5\"\n", 3, "has no `address`"),
        ("name = \"x\"\ntype = \"http\"\naddress = \"nowhere\"\n", 6, "has no port"),
        ("name = \"x\"\ntype = \"direct\"\naddress = \"127.0.0.1:1\"\n", 6, "takes no `address`"),
        ("name = \"x\"\ntype = \"socks5\"\naddress = \"127.0.0.1:1\"\npassword = \"hunter2-secret\"\n", 7, "no `username`"),
        ("name = \"x\"\ntype = \"socks5\"\naddress = \"127.0.0.1:1\"\nusername = \"u\"\n", 7, "no `password`"),
        ("name = \"x\"\ntype = \"socks5\"\naddress = \"127.0.0.1:1\"\nweight = 0\n", 7, "`weight` = 0 is out of range"),
        ("name = \"x\"\ntype = \"socks5\"\naddress = \"127.0.0.1:1\"\ndcs = []\n", 7, "`dcs` is empty"),
        ("name = \"x\"\ntype = \"socks5\"\naddress = \"127.0.0.1:1\"\ndcs = [\"eu\"]\n", 7, "`eu` in `dcs` is not a DC id"),
        ("name = \"x\"\ntype = \"socks5\"\naddress = \"127.0.0.1:1\"\ndcs = [0]\n", 7, "0 in `dcs` is not a DC id"),
        ("name = \"x\"\ntype = \"socks5\"\naddress = \"127.0.0.1:1\"\n[[upstream.servers]]\nname = \"x\"\ntype = \"direct\"\n", 7, "listed twice"),
    ] {
        let e = parse(&format!("{base}{body}")).unwrap_err();
        assert!(e.starts_with(&format!("/etc/test.toml:{line}:")) && e.contains(want), "{body}: {e}");
        assert!(e.contains("fix:"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
    }
    let e = parse("[upstream]\nretry_after = \"0s\"\n").unwrap_err();
    assert!(e.starts_with("/etc/test.toml:2:"), "{e}");
    let e = parse("[upstream]\nbogus = 1\n").unwrap_err();
    assert!(e.contains("unknown field"), "{e}");
}

#[test]
fn cover_emulation_settings() {
    let c = parse("[users.a]\nsecret = \"00112233445566778899aabbccddeeff\"\n").unwrap();
    assert!(c.fake_tls.emulate_cover);
    assert_eq!(c.fake_tls.cover_refresh, d::COVER_REFRESH);
    assert_eq!(c.cover_cache_path(Path::new("/etc/p.toml")), Path::new("/etc/p.toml.covers"));
    let c = parse("[fake_tls]\nemulate_cover = false\ncover_refresh = \"1h\"\ncover_cache = \"/var/lib/p/covers\"\n").unwrap();
    assert!(!c.fake_tls.emulate_cover);
    assert_eq!(c.fake_tls.cover_refresh, std::time::Duration::from_secs(3600));
    assert_eq!(c.cover_cache_path(Path::new("/etc/p.toml")), Path::new("/var/lib/p/covers"));
    let e = parse("[fake_tls]\n\ncover_refresh = \"10s\"\n").unwrap_err();
    assert!(e.starts_with("/etc/test.toml:3:") && e.contains("shorter than a minute") && e.contains("6h"), "{e}");
    let e = parse("[fake_tls]\ncover_cache = \" \"\n").unwrap_err();
    assert!(e.starts_with("/etc/test.toml:2:") && e.contains("`cover_cache` is empty"), "{e}");
}

#[test]
fn panel_is_off_without_a_hash_and_stays_on_loopback() {
    let c = parse("").unwrap();
    assert!(c.panel.password_hash.is_none());
    assert_eq!(c.panel.session_ttl, std::time::Duration::from_secs(12 * 3600));
    let h = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA";
    let c = parse(&format!("[panel]\npassword_hash = \"{h}\"\nsession_ttl = \"1h\"\n")).unwrap();
    assert_eq!(c.panel.password_hash.as_deref(), Some(h));
    assert!(!format!("{:?}", c.panel).contains("argon2"));
    let e = parse("[panel]\npassword_hash = \"hunter2hunter2\"\n").unwrap_err();
    assert!(e.starts_with("/etc/test.toml:2: `panel.password_hash` is not an argon2 hash") && !e.contains("hunter2"), "{e}");
    let remote = format!("[stats]\nlisten = \"0.0.0.0:8888\"\nallow_remote = true\ntoken = \"abcdefghijklmnop-123\"\n[panel]\npassword_hash = \"{h}\"\n");
    let e = parse(&remote).unwrap_err();
    assert!(e.contains("the panel cannot be served on `stats.listen` = \"0.0.0.0:8888\""), "{e}");
    assert!(parse("[panel]\nsession_ttl = \"1s\"\n").unwrap_err().contains("session_ttl"));
    assert_eq!(parse("").unwrap().history_path(Path::new("/etc/x.toml")), Path::new("/etc/x.toml.usage.history"));
    assert_eq!(parse("[limits]\nusage_file = \"/var/lib/v/usage\"\n").unwrap().history_path(Path::new("/etc/x.toml")), Path::new("/var/lib/v/usage.history"));
    assert_eq!(parse("[panel]\nhistory_file = \"/h\"\n").unwrap().history_path(Path::new("/etc/x.toml")), Path::new("/h"));
}

#[test]
fn store_section_defaults_errors_and_a_redacted_url() {
    let c = parse("[store]\nurl = \"postgres://vless:s3cr3t-pw@10.0.0.5:5432/vless?sslmode=disable\"\nnode = \"fra-1\"\n").unwrap();
    let s = c.store.as_ref().unwrap();
    assert_eq!(s.node.as_deref(), Some("fra-1"));
    assert_eq!((s.flush_interval, s.resync_interval), (Duration::from_secs(2), Duration::from_secs(30)));
    assert_eq!(s.url.redacted(), "postgres://vless:***@10.0.0.5:5432/vless?sslmode=disable");
    assert!(!format!("{c:?}").contains("s3cr3t-pw"), "Debug never shows the password");
    assert_eq!(c.fleet_cache_path(Path::new("/etc/x.toml")).as_deref(), Some(Path::new("/etc/x.toml.fleet-cache")));
    assert!(parse("[server]\n").unwrap().store.is_none());
    assert_eq!(super::super::redact_url("postgresql://u@h/db?user=u&password=pw"), "postgresql://u@h/db?user=u&password=***");
    for (text, want) in [
        ("[store]\nnode = \"a\"\n", "has no `url`"),
        ("[store]\nurl = \"mysql://u:pw@h/db\"\n", "must begin with postgres://"),
        ("[store]\nurl = \"postgres://u:pw@h/db?sslmode=require\"\n", "TLS to the database is not supported yet"),
        ("[store]\nurl = \"postgres://h/db\"\nflush_interval = \"10ms\"\n", "`store.flush_interval` is out of range"),
        ("[store]\nurl = \"postgres://h/db\"\nnode = \"a b\"\n", "is not a node name"),
        ("[store]\nurl_env = \"VLESS_MTPROXY_TEST_NO_SUCH_VARIABLE\"\n", "VLESS_MTPROXY_TEST_NO_SUCH_VARIABLE is not set"),
        ("[store]\nurl = \"postgres://h/db\"\nurl_env = \"X\"\n", "both `url` and `url_env`"),
    ] {
        let e = parse(text).unwrap_err();
        assert!(e.contains(want) && !e.contains("pw@"), "{text}: {e}");
    }
}

/// The test certificates (self-signed, EC P-256) of crates/core/testdata.
fn testdata(name: &str) -> String {
    format!("{}/testdata/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn stats_tls_needs_both_readable_matching_files() {
    let (ca, ka, kb) = (testdata("stats-a.crt"), testdata("stats-a.key"), testdata("stats-b.key"));
    let c = parse(&format!("[stats]\ntls_cert = \"{ca}\"\ntls_key = \"{ka}\"\n")).unwrap();
    let t = c.stats_tls.as_ref().unwrap();
    assert_eq!(t.cert_path, Path::new(&ca));
    assert!(t.cert_pem.starts_with(b"-----BEGIN CERTIFICATE-----"));
    // Debug never shows the key.
    assert!(!format!("{c:?}").contains("PRIVATE"));
    assert!(parse("").unwrap().stats_tls.is_none());
    let e = parse(&format!("[stats]\ntls_cert = \"{ca}\"\n")).unwrap_err();
    assert!(e.starts_with("/etc/test.toml:2: `stats.tls_cert` is set but `stats.tls_key` is not"), "{e}");
    let e = parse(&format!("[stats]\ntls_key = \"{ka}\"\n")).unwrap_err();
    assert!(e.starts_with("/etc/test.toml:2: `stats.tls_key` is set but `stats.tls_cert` is not"), "{e}");
    let e = parse(&format!("[stats]\ntls_cert = \"/nonexistent/cert.pem\"\ntls_key = \"{ka}\"\n")).unwrap_err();
    assert!(e.starts_with("/etc/test.toml:2: `stats.tls_cert`: cannot read /nonexistent/cert.pem"), "{e}");
    // A key where the certificate should be: no certificate, named at the tls_cert line.
    let e = parse(&format!("[stats]\ntls_cert = \"{ka}\"\ntls_key = \"{ka}\"\n")).unwrap_err();
    assert!(e.starts_with("/etc/test.toml:2: [stats] TLS: no PEM certificate") && e.contains("fullchain.pem"), "{e}");
    let e = parse(&format!("[stats]\ntls_cert = \"{ca}\"\ntls_key = \"{ca}\"\n")).unwrap_err();
    assert!(e.starts_with("/etc/test.toml:3: [stats] TLS: no PEM private key"), "{e}");
    // Another certificate's key.
    let e = parse(&format!("[stats]\ntls_cert = \"{ca}\"\ntls_key = \"{kb}\"\n")).unwrap_err();
    assert!(e.starts_with("/etc/test.toml:3: [stats] TLS: the private key does not belong to the certificate"), "{e}");
    assert!(!e.contains("BEGIN"), "{e}");
}

#[test]
fn stats_tls_relative_paths_are_from_the_config_directory() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let c = parse_str("[stats]\ntls_cert = \"testdata/stats-a.crt\"\ntls_key = \"testdata/stats-a.key\"\n", &dir.join("config.toml")).unwrap();
    assert_eq!(c.stats_tls.unwrap().key_path, dir.join("testdata/stats-a.key"));
}

#[test]
fn panel_on_a_public_listener_needs_tls_and_a_listener() {
    let h = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA";
    let (ca, ka) = (testdata("stats-a.crt"), testdata("stats-a.key"));
    let remote = "[stats]\nlisten = \"10.201.0.1:8888\"\nallow_remote = true\ntoken = \"abcdefghijklmnop-123\"\n";
    let e = parse(&format!("{remote}[panel]\npassword_hash = \"{h}\"\n")).unwrap_err();
    assert!(e.contains("the listener has no TLS") && e.contains("tls_cert and tls_key"), "{e}");
    let c = parse(&format!("{remote}tls_cert = \"{ca}\"\ntls_key = \"{ka}\"\n[panel]\npassword_hash = \"{h}\"\nallowed_hosts = [\"Panel.Example.com\", \"10.201.0.1\", \"[2001:db8::1]\"]\n")).unwrap();
    assert_eq!(c.panel.allowed_hosts, ["panel.example.com", "10.201.0.1", "2001:db8::1"]);
    let e = parse("[panel]\nallowed_hosts = [\"https://panel.example.com/\"]\n").unwrap_err();
    assert!(e.starts_with("/etc/test.toml:2: `panel.allowed_hosts`: `https://panel.example.com/` is not a host name"), "{e}");
    // The panel with the listener off would never be served.
    let e = parse(&format!("[stats]\nlisten = \"off\"\n[panel]\npassword_hash = \"{h}\"\n")).unwrap_err();
    assert!(e.starts_with("/etc/test.toml:2: `panel.password_hash` is set but `stats.listen` = \"off\"") && e.contains("remove password_hash"), "{e}");
    assert!(parse("[stats]\nlisten = \"off\"\n[panel]\nsession_ttl = \"1h\"\n").is_ok());
}
