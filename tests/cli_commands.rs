//! Every operator command against the real binary: what it writes, what it prints, and that
//! each bad input is refused with a message, a non-zero exit and the file untouched.

mod cli_common;

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cli_common::{Env, BASE};
use mtproxy_proto::SecretKind;

const ALICE_DD: &str = "ddaaaaaa00112233445566778899aabbcc";

#[test]
fn every_command_has_help() {
    let env = Env::new(None);
    for cmd in [
        "add-secret",
        "list-secrets",
        "remove-secret",
        "regenerate-secret",
        "show-config",
        "add-user",
        "remove-user",
        "list-users",
        "show-user-config",
        "enable-user",
        "disable-user",
        "regenerate-user-secret",
        "set-user-limits",
        "set-port",
        "set-workers",
        "set-promoted-channel",
        "show-promoted-channel",
        "remove-promoted-channel",
        "list-fake-tls-domains",
        "add-fake-tls-domain",
        "remove-fake-tls-domain",
        "reload",
        "serve",
    ] {
        let out = env.ok(&[cmd, "--help"]);
        assert!(out.contains("Usage:"), "{cmd}: {out}");
    }
}

#[test]
fn add_user_of_each_kind_keeps_comments_mode_and_a_backup() {
    let env = Env::new(Some(BASE));
    std::fs::set_permissions(&env.cfg, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = env.ok(&["add-user", "carol", "--no-qr"]);
    assert!(out.contains("tg://proxy?server=proxy.example.org&port=18443&secret="), "{out}");
    env.ok(&["add-user", "dave", "--with-padding", "--no-qr"]);
    env.ok(&["add-user", "erin", "--fake-tls", "Cover.Example.NET", "--no-check", "--no-qr"]);
    let text = env.text();
    assert!(text.starts_with(BASE.trim_end()), "the admin's text and comments stay as they were:\n{text}");
    let cfg = env.config();
    let kind = |n: &str| cfg.users.iter().find(|u| u.name == n).unwrap().kind.clone();
    assert_eq!(kind("carol"), SecretKind::Classic);
    assert_eq!(kind("dave"), SecretKind::Padded);
    assert_eq!(kind("erin"), SecretKind::FakeTls { domain: "cover.example.net".into() });
    assert!(cfg.users.iter().all(|u| u.name.len() < 3 || u.name == "alice" || u.name == "bob" || u.created.is_some()));
    let mode = std::fs::metadata(&env.cfg).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the store keeps the file private");
    let bak = std::fs::read_to_string(env.dir.path().join("proxy.toml.bak")).unwrap();
    assert!(bak.contains("[users.dave]") && !bak.contains("[users.erin]"), "one backup: the file before the last write");
}

#[test]
fn add_user_refuses_bad_input_and_leaves_the_file() {
    let env = Env::new(Some(BASE));
    assert!(env.fails(&["add-user", "bad name"]).contains("not allowed"));
    assert!(env.fails(&["add-user", "x/../y"]).contains("not allowed"));
    assert!(env.fails(&["add-user", "alice"]).contains("already exists"));
    assert!(env.fails(&["add-user", "z", "--fake-tls", "not a domain"]).contains("not a valid domain"));
    assert!(env.fails(&["add-user", "z", "--fake-tls", "localhost", "--no-check"]).contains("not a valid domain"));
    assert!(env.fails(&["add-user", "z", "--max-connections", "0"]).contains("--max-connections"));
    assert!(env.fails(&["add-user", "z", "--quota", "lots"]).contains("not a size"));
    assert!(env.fails(&["add-user", "z", "--expires", "2025-02-30"]).contains("not a calendar date"));
    assert!(env.fails(&["add-user", "z", "--quota-reset", "weekly"]).contains("monthly"));
    assert!(env.fails(&["add-user"]).contains("<NAME>"));
    // A broken file is never overwritten.
    let broken = Env::new(Some("[server]\nworkers = 0\n"));
    let e = broken.fails(&["add-user", "z"]);
    assert!(e.contains("proxy.toml:2:") && e.contains("not changed"), "{e}");
    let missing = Env::new(None);
    assert!(missing.fails(&["list-users"]).contains("does not exist"));
}

#[test]
fn a_missing_file_is_created_by_the_first_add() {
    let env = Env::new(None);
    env.ok(&["add-secret", "--with-padding", "--no-qr"]);
    let cfg = env.config();
    assert_eq!(cfg.users.len(), 1);
    assert!(cfg.users[0].name.starts_with("secret-") && cfg.users[0].name.len() == 13, "{}", cfg.users[0].name);
    assert_eq!(cfg.users[0].kind, SecretKind::Padded);
    assert_eq!(std::fs::metadata(&env.cfg).unwrap().permissions().mode() & 0o777, 0o600);
}

#[test]
fn lists_mask_secrets_and_count() {
    let env = Env::new(Some(BASE));
    env.ok(&["disable-user", "bob"]);
    for cmd in ["list-users", "list-secrets"] {
        let out = env.ok(&[cmd]);
        assert!(out.contains("ddaaaa…aabbcc") || out.contains("ddaaaa…bbcc"), "{out}");
        assert!(out.contains("eeaaaa…bbcc"), "{out}");
        assert!(!out.contains("aaaaaa00112233"), "a list never shows a whole secret:\n{out}");
        assert!(out.contains("Total: 1 enabled, 1 disabled"), "{out}");
        let j = env.json(&[cmd, "--json"]);
        assert_eq!(j["total"]["enabled"], 1);
        assert_eq!(j["users"][0]["name"], "alice");
        assert_eq!(j["users"][0]["secret_masked"], "ddaaaa…bbcc");
        assert_eq!(j["users"][1]["enabled"], false);
        assert!(!j.to_string().contains("aaaaaa00112233"));
    }
}

#[test]
fn secrets_are_found_by_any_client_form() {
    let env = Env::new(Some(BASE));
    let show = |s: &str| env.json(&["show-config", s, "--json"])["name"].as_str().unwrap().to_string();
    assert_eq!(show(ALICE_DD), "alice");
    assert_eq!(show("aaaaaa00112233445566778899aabbcc"), "alice");
    assert_eq!(show("ddaaaa…bbcc"), "alice");
    assert_eq!(show("eeaaaa...bbcc"), "bob");
    assert_eq!(show("eeaaaaaa11112233445566778899aabbcc7777772e6578616d706c652e636f6d"), "bob");
    assert_eq!(show("aaaaaa0011"), "alice");
    let e = env.fails(&["remove-secret", "aaaaaa"]);
    assert!(e.contains("matches 2 secrets") && !e.contains("aaaaaa"), "ambiguous prefix, secret not echoed: {e}");
    assert!(env.fails(&["remove-secret", "ffffff0011"]).contains("no secret matches"));
    assert!(env.fails(&["remove-secret", "xyz"]).contains("not a secret"));
    env.ok(&["remove-secret", ALICE_DD]);
    let cfg = env.config();
    assert_eq!(cfg.users.iter().map(|u| u.name.as_str()).collect::<Vec<_>>(), ["bob"]);
}

#[test]
fn show_config_prints_every_link() {
    let env = Env::new(Some(BASE));
    let out = env.ok(&["show-config"]);
    assert!(out.contains(&format!("tg://proxy?server=proxy.example.org&port=18443&secret={ALICE_DD}")), "{out}");
    assert!(
        out.contains("https://t.me/proxy?server=proxy.example.org&port=18443&secret=eeaaaaaa11112233445566778899aabbcc7777772e6578616d706c652e636f6d"),
        "{out}"
    );
    assert!(out.contains("Total: 2 enabled, 0 disabled"));
    let j = env.json(&["show-config", "--json"]);
    assert_eq!(j["listen"][0], "127.0.0.1:18443");
    assert_eq!(j["users"][0]["links"]["tg"], format!("tg://proxy?server=proxy.example.org&port=18443&secret={ALICE_DD}"));
    let one = env.ok(&["show-config", ALICE_DD]);
    assert!(one.contains("█"), "one secret comes with its QR code: {one}");
}

#[test]
fn remove_enable_disable_users() {
    let env = Env::new(Some(BASE));
    assert!(env.fails(&["remove-user", "nobody"]).contains("no user named `nobody`"));
    assert!(env.fails(&["enable-user", "nobody"]).contains("no user named"));
    assert!(env.fails(&["disable-user", "nobody"]).contains("no user named"));
    env.ok(&["disable-user", "alice"]);
    assert!(!env.config().users[0].enabled);
    assert!(env.ok(&["disable-user", "alice"]).contains("already disabled"));
    env.ok(&["enable-user", "alice"]);
    assert!(env.config().users[0].enabled);
    env.ok(&["remove-user", "alice"]);
    assert!(env.config().users.iter().all(|u| u.name != "alice"));
    assert!(env.text().contains("# Admin's comment at the top: keep me."));
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

#[test]
fn regenerate_with_and_without_grace() {
    let env = Env::new(Some(BASE));
    let out = env.ok(&["regenerate-user-secret", "alice", "--grace", "10m", "--no-qr"]);
    let cfg = env.config();
    let a = &cfg.users[0];
    assert_ne!(a.secret.to_hex(), "aaaaaa00112233445566778899aabbcc");
    let (prev, until) = a.previous_secret.unwrap();
    assert_eq!(prev.to_hex(), "aaaaaa00112233445566778899aabbcc");
    let until = until.duration_since(UNIX_EPOCH).unwrap().as_secs();
    assert!((now() + 595..=now() + 601).contains(&until), "{until}");
    assert!(a.rotated.is_some());
    assert!(out.contains(&a.secret.client_form(&a.kind)), "the new link is printed: {out}");
    assert!(out.contains("keeps working until"));
    env.ok(&["regenerate-user-secret", "alice", "--no-qr"]);
    assert!(env.config().users[0].previous_secret.is_none(), "without --grace the old secret stops at once");
    assert!(env.fails(&["regenerate-user-secret", "alice", "--grace", "10 parsecs"]).contains("parsecs"));
    assert!(env.fails(&["regenerate-user-secret", "nobody"]).contains("no user named"));
    // The secret view of the same operation.
    env.ok(&["regenerate-secret", "eeaaaaaa11112233445566778899aabbcc", "--grace", "1h", "--no-qr"]);
    let bob = env.config().users.into_iter().find(|u| u.name == "bob").unwrap();
    assert_eq!(bob.previous_secret.unwrap().0.to_hex(), "aaaaaa11112233445566778899aabbcc");
    assert!(env.fails(&["regenerate-secret", "0000000000"]).contains("no secret matches"));
}

#[test]
fn set_user_limits_writes_and_clears() {
    let env = Env::new(Some(BASE));
    env.ok(&[
        "set-user-limits",
        "alice",
        "--max-connections",
        "3",
        "--max-ips",
        "2",
        "--quota",
        "10GiB",
        "--quota-reset",
        "monthly",
        "--expires",
        "2030-01-31",
    ]);
    let l = env.config().users[0].limits.clone();
    assert_eq!((l.max_connections, l.max_ips, l.quota_bytes, l.quota_monthly), (Some(3), Some(2), Some(10 << 30), true));
    assert!(l.expires.is_some());
    assert!(env.ok(&["list-users"]).contains("conns<=3,ips<=2,quota=10GiB/month,expires=2030-02-01T00:00:00Z"));
    env.ok(&["set-user-limits", "alice", "--max-ips", "none", "--expires", "none"]);
    let l = env.config().users[0].limits.clone();
    assert_eq!((l.max_connections, l.max_ips, l.expires), (Some(3), None, None));
    assert!(env.fails(&["set-user-limits", "alice", "--max-ips", "-4"]).contains("--max-ips"));
    assert!(env.fails(&["set-user-limits", "nobody", "--max-ips", "4"]).contains("no user"));
}

#[test]
fn set_port_and_workers() {
    let env = Env::new(Some("[server]\nlisten = [\"127.0.0.1:18443\", \"[::1]:18443\"]\n[users.a]\nsecret = \"00112233445566778899aabbccddeeff\"\n"));
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    env.ok(&["set-port", &port.to_string()]);
    let cfg = env.config();
    assert_eq!(cfg.listen.iter().map(|a| a.port()).collect::<Vec<_>>(), vec![port, port]);
    assert_eq!(cfg.listen[1].ip().to_string(), "::1", "addresses keep their host");
    assert!(env.ok(&["set-port", &port.to_string()]).contains("already listens"));
    for bad in ["0", "65536", "http", "-1"] {
        env.fails(&["set-port", bad]);
    }
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let e = env.fails(&["set-port", &busy.local_addr().unwrap().port().to_string()]);
    assert!(e.contains("in use"), "{e}");
    env.ok(&["set-workers", "4"]);
    assert_eq!(env.config().workers, 4);
    for bad in ["0", "257", "many"] {
        env.fails(&["set-workers", bad]);
    }
}

#[test]
fn promoted_channel() {
    let env = Env::new(Some(BASE));
    assert!(env.ok(&["show-promoted-channel"]).contains("No promoted-channel tag"));
    assert!(env.ok(&["remove-promoted-channel"]).contains("nothing to remove"));
    for bad in ["abc", "0123456789abcdef0123456789abcdeg", "0123456789abcdef0123456789abcdef00"] {
        assert!(env.fails(&["set-promoted-channel", bad]).contains("32 hexadecimal"));
    }
    assert!(env.ok(&["set-promoted-channel", "0123456789ABCDEF0123456789abcdef"]).contains("middle-proxy mode"));
    assert_eq!(env.json(&["show-promoted-channel", "--json"])["ad_tag"], "0123456789abcdef0123456789abcdef");
    assert!(env.ok(&["remove-promoted-channel"]).contains("direct mode"));
    assert!(env.config().ad_tag.is_none());
}

#[test]
fn fake_tls_domains() {
    let env = Env::new(Some(BASE));
    let j = env.json(&["list-fake-tls-domains", "--json"]);
    assert_eq!(j["defaults"], true);
    assert!(j["domains"].as_array().unwrap().len() >= 3);
    env.ok(&["add-fake-tls-domain", "www.example.com", "--no-check"]);
    let out = env.ok(&["list-fake-tls-domains"]);
    assert!(out.contains("www.example.com  (used by bob)"), "{out}");
    assert!(env.fails(&["add-fake-tls-domain", "www.example.com", "--no-check"]).contains("already"));
    assert!(env.fails(&["add-fake-tls-domain", "bad_domain!", "--no-check"]).contains("not a valid domain"));
    assert!(env.fails(&["remove-fake-tls-domain", "nowhere.example"]).contains("not in the list"));
    let o = env.run(&["remove-fake-tls-domain", "www.example.com"]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("bob still use"));
    assert!(!env.config().fake_tls.cover_domains.contains(&"www.example.com".to_string()));
    assert!(env.text().contains("# Alice is my sister."));
}

#[test]
fn domain_check_without_network_warns_quickly_and_saves() {
    let env = Env::new(Some(BASE));
    let t = Instant::now();
    let o = env.run_offline(&["add-fake-tls-domain", "cover-check.invalid"]);
    assert!(o.status.code().is_some(), "unshare ran: {}", String::from_utf8_lossy(&o.stderr));
    assert!(t.elapsed() < Duration::from_secs(6), "the check is bounded: {:?}", t.elapsed());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("check skipped") || err.contains("unreachable"), "{err}");
    assert!(env.config().fake_tls.cover_domains.contains(&"cover-check.invalid".to_string()));
}

#[test]
fn reload_says_when_no_proxy_runs() {
    let env = Env::new(Some(BASE));
    let e = env.fails(&["reload"]);
    assert!(e.contains("no running proxy found") && e.contains("proxy.toml.pid"), "{e}");
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    std::fs::write(env.dir.path().join("proxy.toml.pid"), format!("{pid}\n")).unwrap();
    assert!(env.fails(&["reload"]).contains("stale pid file"));
    // A running process that is not the proxy is not signalled either.
    let mut sleeper = std::process::Command::new("sleep").arg("30").spawn().unwrap();
    std::fs::write(env.dir.path().join("proxy.toml.pid"), format!("{}\n", sleeper.id())).unwrap();
    assert!(env.fails(&["reload"]).contains("no running proxy"));
    assert!(sleeper.try_wait().unwrap().is_none(), "the unrelated process was not signalled");
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
    let broken = Env::new(Some("[server]\nworkers = 0\n"));
    assert!(broken.fails(&["reload"]).contains("Not reloading"));
}

#[test]
fn fifty_concurrent_adds_all_land() {
    let env = Env::new(Some(BASE));
    let children: Vec<_> = (0..50)
        .map(|i| {
            env.cmd(&["add-user", &format!("user{i:02}"), "--with-padding", "--no-qr"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let cfg = env.config();
    assert_eq!(cfg.users.len(), 52);
    for i in 0..50 {
        assert!(cfg.users.iter().any(|u| u.name == format!("user{i:02}")), "user{i:02} missing");
    }
    assert!(env.text().starts_with(BASE.trim_end()));
}

#[test]
fn a_write_killed_at_any_step_leaves_a_whole_file() {
    for step in 1..=9 {
        let env = Env::new(Some(BASE));
        let o = env.cmd(&["add-user", "carol", "--no-qr"]).env("VLESS_MTPROXY_TEST_CRASH_AT", step.to_string()).output().unwrap();
        assert!(o.status.code().is_none(), "step {step}: the process must die there (status {:?})", o.status);
        let text = env.text();
        let cfg = env.config(); // parses and validates
        let has_carol = cfg.users.iter().any(|u| u.name == "carol");
        if has_carol {
            assert!(step >= 8, "step {step}: new content visible before the rename");
            assert!(text.starts_with(BASE.trim_end()));
        } else {
            assert!(step < 8, "step {step}: the rename had happened");
            assert_eq!(text, BASE, "step {step}: the old file, byte for byte");
        }
        // The lock died with the process; the next write works and cleans up.
        env.ok(&["add-user", "dave", "--no-qr"]);
        assert!(env.config().users.iter().any(|u| u.name == "dave"));
        let leftovers: Vec<_> =
            std::fs::read_dir(env.dir.path()).unwrap().flatten().map(|e| e.file_name().into_string().unwrap()).filter(|n| n.contains(".tmp")).collect();
        assert!(leftovers.is_empty() || leftovers == ["proxy.toml.bak.tmp"], "step {step}: {leftovers:?}");
    }
}
