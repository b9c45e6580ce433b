//! The statistics listener run in-process against the Rust test peers: exact per-user counters
//! for known traffic of two users, `/stats`, `/stats.json` and `/metrics` agreeing, and bad
//! requests (unknown path, huge headers, slow clients, too many connections, no token) getting
//! errors instead of hangs.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mtproxy_core::config::parse_str;
use mtproxy_core::stats_listener::{self, Limits, Options, Report};
use mtproxy_core::Shared;
use mtproxy_proto::Secret;
use mtproxy_testkit::proxy::Start;
use mtproxy_testkit::{Client, FakeDc, Mode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

const S_ALICE: &str = "a1112233445566778899aabbccddeeff";
const S_BOB: &str = "b2112233445566778899aabbccddeeff";
const TOKEN: &str = "test-token-0123456789abcdef";

struct Env {
    proxy: SocketAddr,
    stats: SocketAddr,
    shared: Arc<Shared>,
    dc: FakeDc,
    _stop: CancellationToken,
}

async fn start(token: bool, limits: Limits) -> Env {
    let dc = FakeDc::start().await.unwrap();
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:1\"]\n[timeouts]\nhandshake = \"2s\"\n[fronting]\nenabled = false\n\
         [users.alice]\nsecret = \"{S_ALICE}\"\nkind = \"dd\"\n\
         [users.bob]\nsecret = \"{S_BOB}\"\nkind = \"ee\"\ndomain = \"cover.test\"\n\
         [users.carol]\nsecret = \"c3112233445566778899aabbccddeeff\"\nenabled = false\n"
    );
    let cfg = parse_str(&text, Path::new("t.toml")).unwrap();
    let token = token.then(|| mtproxy_core::config::BearerToken::new(TOKEN).unwrap());
    let opts = Options { token, config_path: Some("t.toml".into()), limits, mount: None };
    let px = Start::new(cfg).dc(dc.addr).stats(opts).start();
    Env { proxy: px.addr, stats: px.stats.unwrap(), shared: px.shared, dc, _stop: px.stop }
}

/// One HTTP/1.1 request with `Connection: close`; (status, headers, body).
async fn get(addr: SocketAddr, path: &str, extra: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{extra}\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await.expect("answer in time").unwrap();
    let text = String::from_utf8(buf).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head.to_string(), body.to_string())
}

async fn report(e: &Env) -> Report {
    let (st, _, body) = get(e.stats, "/stats.json", "").await;
    assert_eq!(st, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// The first report that satisfies `done`, polled for up to 5 s; the last one after that.
async fn report_when(e: &Env, done: impl Fn(&Report) -> bool) -> Report {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = report(e).await;
        if done(&r) || Instant::now() > deadline {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

async fn echo(c: &mut Client, n: usize, seed: u8) {
    let d = pattern(n, seed);
    c.send(&d).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), c.recv(n)).await.expect("echo in time").unwrap();
    assert_eq!(got, d);
}

/// Prometheus text -> {"name{labels}": value}, checking the line grammar on the way.
fn parse_prom(text: &str) -> HashMap<String, f64> {
    let mut out = HashMap::new();
    for line in text.lines() {
        if line.starts_with('#') {
            assert!(line.starts_with("# HELP ") || line.starts_with("# TYPE "), "{line}");
            continue;
        }
        let (key, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("bad line {line}"));
        out.insert(key.to_string(), value.parse::<f64>().unwrap_or_else(|_| panic!("bad value in {line}")));
    }
    out
}

#[tokio::test]
async fn known_traffic_of_two_users_is_counted_exactly() {
    let e = start(false, Limits::default()).await;
    let alice = Secret::from_hex(S_ALICE).unwrap();
    let bob = Secret::from_hex(S_BOB).unwrap();
    // alice: two connections (dd), 1000 + 70000 and 5 bytes; bob: one fake-TLS connection, 300000 + 1.
    let mut a1 = Client::connect(e.proxy, &alice, &Mode::Padded, 2).await.unwrap();
    let mut a2 = Client::connect(e.proxy, &alice, &Mode::Padded, -2).await.unwrap();
    let mut b1 = Client::connect(e.proxy, &bob, &Mode::FakeTls { domain: "cover.test".into() }, 4).await.unwrap();
    echo(&mut a1, 1000, 1).await;
    echo(&mut a1, 70_000, 2).await;
    echo(&mut a2, 5, 3).await;
    echo(&mut b1, 300_000, 4).await;
    echo(&mut b1, 1, 5).await;

    let live = report(&e).await;
    let user = |r: &Report, n: &str| r.users.iter().find(|u| u.name == n).unwrap().clone();
    assert_eq!(user(&live, "alice").connections_active, 2);
    assert_eq!(user(&live, "alice").unique_ips_active, 1, "both from 127.0.0.1");
    assert_eq!(user(&live, "bob").connections_active, 1);
    assert_eq!(live.connections.active, 3);
    assert_eq!(live.listen, vec![e.proxy.to_string()]);

    drop((a1, a2, b1));
    let r = report_when(&e, |r| r.connections.active == 0).await;
    assert_eq!(r.connections.active, 0);
    let a = user(&r, "alice");
    let b = user(&r, "bob");
    let c = user(&r, "carol");
    // Exact: counted bytes are the obfuscated2 stream after the 64-byte init, without TLS
    // record headers; the fake DC echoes every byte, so both directions carry the same count.
    assert_eq!((a.bytes_from_client, a.bytes_to_client), (71_005, 71_005));
    assert_eq!((b.bytes_from_client, b.bytes_to_client), (300_001, 300_001));
    assert_eq!((a.connections_total, b.connections_total, c.connections_total), (2, 1, 0));
    assert_eq!((a.unique_ips_active, a.unique_ips_seen), (0, 1));
    assert!(a.last_seen.is_some() && c.last_seen.is_none());
    assert_eq!((a.kind.as_str(), b.kind.as_str(), c.enabled), ("dd", "ee", false));
    assert_eq!(a.quota_used_bytes, 0);
    assert_eq!((r.bytes.from_clients, r.bytes.to_clients), (371_006, 371_006));
    assert_eq!((r.connections.total, r.handshakes.ok), (3, 3));
    assert_eq!((r.config.users_enabled, r.config.users_disabled), (2, 1));
    assert_eq!(r.mode, "direct");
    assert_eq!(e.dc.connections.load(std::sync::atomic::Ordering::SeqCst), 3);
    let dc = |name: &str| r.upstream.dcs.iter().find(|d| d.dc == name).unwrap().clone();
    assert_eq!(dc("2").connects_ok, 2, "DC 2 and its media id -2 count together");
    assert_eq!(dc("4").connects_ok, 1);
    assert_eq!(dc("2").latency.count, 2);
    assert!(dc("2").latency.sum_seconds > 0.0 && dc("2").latency.sum_seconds < 5.0);

    // /stats: official keys first, then per-user lines with the same numbers.
    let (st, head, text) = get(e.stats, "/stats", "").await;
    assert_eq!(st, 200);
    assert!(head.to_ascii_lowercase().contains("content-type: text/plain"));
    let kv: HashMap<&str, &str> = text.lines().map(|l| l.split_once('\t').expect("key<TAB>value")).collect();
    assert_eq!(text.lines().next().unwrap().split('\t').next(), Some("pid"));
    for k in ["pid", "start_time", "current_time", "uptime", "active_connections", "total_connections", "version"] {
        assert!(kv.contains_key(k), "official key {k} missing");
    }
    assert_eq!(kv["total_connections"], "3");
    assert_eq!(kv["user:alice:bytes_from_client"], "71005");
    assert_eq!(kv["user:bob:bytes_to_client"], "300001");
    assert_eq!(kv["user:alice:total_connections"], "2");
    assert_eq!(kv["user:carol:enabled"], "0");

    // /metrics: same numbers as /stats.json.
    let (st, head, prom) = get(e.stats, "/metrics", "").await;
    assert_eq!(st, 200);
    assert!(head.contains("version=0.0.4"));
    let m = parse_prom(&prom);
    assert_eq!(m["vless_mtproxy_connections_total"], 3.0);
    assert_eq!(m["vless_mtproxy_user_bytes_total{user=\"alice\",direction=\"from_client\"}"], 71_005.0);
    assert_eq!(m["vless_mtproxy_user_bytes_total{user=\"bob\",direction=\"to_client\"}"], 300_001.0);
    assert_eq!(m["vless_mtproxy_user_connections_total{user=\"alice\"}"], 2.0);
    assert_eq!(m["vless_mtproxy_user_unique_ips_seen{user=\"alice\"}"], 1.0);
    assert_eq!(m["vless_mtproxy_user_quota_used_bytes{user=\"bob\"}"], 0.0);
    assert_eq!(m["vless_mtproxy_upstream_connect_seconds_count{dc=\"2\"}"], 2.0);
    assert_eq!(m["vless_mtproxy_upstream_connect_seconds_bucket{dc=\"2\",le=\"+Inf\"}"], 2.0);
    assert_eq!(m["vless_mtproxy_handshakes_failed_total{reason=\"bad_secret\"}"], 0.0);
    assert_eq!(m["vless_mtproxy_users{state=\"disabled\"}"], 1.0);
}

/// Every accepted connection ends in exactly one bucket: a handshake that authenticated, a failed
/// handshake (by reason), closed early (nothing sent), or refused by a user's limit.
#[tokio::test]
async fn every_connection_is_accounted_for() {
    let e = start(false, Limits::default()).await;
    let text =
        format!("[timeouts]\nhandshake = \"2s\"\n[fronting]\nenabled = false\n[users.alice]\nsecret = \"{S_ALICE}\"\nkind = \"dd\"\nmax_connections = 1\n");
    e.shared.reload(parse_str(&text, Path::new("t.toml")).unwrap());
    let alice = Secret::from_hex(S_ALICE).unwrap();

    // Two port-scan style connections: open, send nothing, close.
    for _ in 0..2 {
        drop(TcpStream::connect(e.proxy).await.unwrap());
    }
    // A prober with 64 bytes no secret matches.
    let mut probe = TcpStream::connect(e.proxy).await.unwrap();
    probe.write_all(&pattern(64, 9)).await.unwrap();
    drop(probe);
    // alice may hold one connection; her second is refused after its handshake.
    let mut first = Client::connect(e.proxy, &alice, &Mode::Padded, 2).await.unwrap();
    echo(&mut first, 100, 1).await;
    let mut second = Client::connect(e.proxy, &alice, &Mode::Padded, 2).await.unwrap();
    second.send(&pattern(10, 2)).await.unwrap();
    assert!(tokio::time::timeout(Duration::from_secs(5), second.recv(1)).await.expect("refused in time").is_err());
    drop((first, second));

    let r = report_when(&e, |r| r.connections.active == 0 && r.connections.total == 5).await;
    let c = &r.connections;
    assert_eq!((c.active, c.total, c.closed_early, r.handshakes.ok), (0, 5, 2, 1), "{r:?}");
    assert_eq!(r.handshakes.failed["bad_secret"], 1, "{r:?}");
    assert_eq!(c.refused_user_limits["max_connections"], 1, "{r:?}");
    assert_eq!(c.refused_user_limits.len(), 4, "every reason is listed");
    let failed: u64 = r.handshakes.failed.values().sum();
    let refused: u64 = c.refused_user_limits.values().sum();
    assert_eq!(c.total, r.handshakes.ok + failed + c.closed_early + refused);

    let (_, _, text) = get(e.stats, "/stats", "").await;
    assert!(text.lines().any(|l| l == "connections_closed_early\t2"), "{text}");
    assert!(text.lines().any(|l| l == "connections_refused_user_max_connections\t1"), "{text}");
    let (_, _, prom) = get(e.stats, "/metrics", "").await;
    let m = parse_prom(&prom);
    assert_eq!(m["vless_mtproxy_connections_closed_early_total"], 2.0);
    assert_eq!(m["vless_mtproxy_connections_refused_user_limit_total{reason=\"max_connections\"}"], 1.0);
    assert_eq!(m["vless_mtproxy_connections_refused_user_limit_total{reason=\"quota\"}"], 0.0);
}

#[tokio::test]
async fn reload_outcome_and_failures_are_reported() {
    let e = start(false, Limits::default()).await;
    let text = "[users.alice]\nsecret = \"a1112233445566778899aabbccddeeff\"\n";
    e.shared.reload(parse_str(text, Path::new("t.toml")).unwrap());
    let r = report(&e).await;
    assert_eq!((r.reloads.ok, r.reloads.failed), (1, 0));
    assert!(r.reloads.last.as_ref().unwrap().ok);
    e.shared.stats.reload_failed("t.toml:2: broken");
    let r = report(&e).await;
    let last = r.reloads.last.unwrap();
    assert_eq!((r.reloads.failed, last.ok, last.error.as_deref()), (1, false, Some("t.toml:2: broken")));
    // bob was removed from the file: his counters stay, marked not configured.
    assert!(!r.users.iter().find(|u| u.name == "bob").unwrap().configured);
    let (_, _, prom) = get(e.stats, "/metrics", "").await;
    let m = parse_prom(&prom);
    assert_eq!(m["vless_mtproxy_config_reloads_total{result=\"failed\"}"], 1.0);
    assert_eq!(m["vless_mtproxy_config_last_reload_success"], 0.0);
}

#[tokio::test]
async fn health_and_token() {
    let e = start(true, Limits::default()).await;
    let (st, _, body) = get(e.stats, "/health", "").await;
    assert_eq!((st, body.as_str()), (200, "ok\n"), "health needs no token");
    let (st, head, _) = get(e.stats, "/stats.json", "").await;
    assert_eq!(st, 401);
    assert!(head.to_ascii_lowercase().contains("www-authenticate: bearer"));
    let (st, _, _) = get(e.stats, "/metrics", "Authorization: Bearer wrong-token-0123456789abc\r\n").await;
    assert_eq!(st, 401);
    let (st, _, body) = get(e.stats, "/stats", &format!("Authorization: Bearer {TOKEN}\r\n")).await;
    assert_eq!(st, 200);
    assert!(!body.contains(TOKEN));

    // Without a running client listener the proxy is not healthy.
    let cfg = parse_str("[users.a]\nsecret = \"a1112233445566778899aabbccddeeff\"\n", Path::new("t.toml")).unwrap();
    let idle = Shared::new(cfg, vec![]);
    let sl = stats_listener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = sl.local_addr().unwrap();
    let stop = CancellationToken::new();
    tokio::spawn(stats_listener::serve_stats(sl, idle, Options::default(), stop.clone()));
    let (st, _, _) = get(addr, "/health", "").await;
    assert_eq!(st, 503);
    stop.cancel();
}

#[tokio::test]
async fn bad_requests_get_errors_not_hangs() {
    let limits = Limits { max_connections: 4, header_timeout: Duration::from_secs(1), max_header_bytes: 16 * 1024, max_lifetime: Duration::from_secs(30) };
    let e = start(false, limits).await;

    let (st, _, _) = get(e.stats, "/nope", "").await;
    assert_eq!(st, 404);
    let (st, _, _) = get(e.stats, "/stats/../etc/passwd", "").await;
    assert_eq!(st, 404);

    // Other methods.
    let mut s = TcpStream::connect(e.stats).await.unwrap();
    s.write_all(b"POST /stats HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc").await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await.expect("closed in time").unwrap();
    assert!(buf.starts_with(b"HTTP/1.1 405"), "{}", String::from_utf8_lossy(&buf));

    // A 64 KiB header: 431 and close.
    let mut s = TcpStream::connect(e.stats).await.unwrap();
    let big = format!("GET /stats HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(64 * 1024));
    let _ = s.write_all(big.as_bytes()).await; // the server may close before all of it is written
    let mut buf = Vec::new();
    let t0 = Instant::now();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await.expect("closed in time");
    assert!(buf.starts_with(b"HTTP/1.1 431"), "{}", String::from_utf8_lossy(&buf[..buf.len().min(200)]));
    assert!(t0.elapsed() < Duration::from_secs(3));

    // Garbage instead of HTTP: 400.
    let mut s = TcpStream::connect(e.stats).await.unwrap();
    s.write_all(b"\x16\x03\x01\x02\x00hello\r\n\r\n").await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await.expect("closed in time");
    assert!(buf.starts_with(b"HTTP/1.1 400"), "{}", String::from_utf8_lossy(&buf));

    // Slowloris: one header byte every 300 ms is cut off at the 1 s header timeout.
    let mut s = TcpStream::connect(e.stats).await.unwrap();
    s.write_all(b"GET /stats HTTP/1.1\r\nHost: x\r\nX-Slow: ").await.unwrap();
    let t0 = Instant::now();
    let mut closed = false;
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        if s.write_all(b"a").await.is_err() {
            closed = true;
            break;
        }
        let mut b = [0u8; 512];
        match tokio::time::timeout(Duration::from_millis(1), s.read(&mut b)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(_)) => {} // an error status before the close is fine
            Err(_) => {}
        }
    }
    assert!(closed, "a slow client must be cut off");
    let took = t0.elapsed();
    assert!(took >= Duration::from_millis(600) && took < Duration::from_secs(4), "cut off after {took:?}");

    // Connection cap: 4 idle connections hold every slot; the 5th gets 503 at once.
    let mut hold = Vec::new();
    for _ in 0..4 {
        let s = TcpStream::connect(e.stats).await.unwrap();
        hold.push(s);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut s = TcpStream::connect(e.stats).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut buf)).await.expect("answer in time").unwrap();
    assert!(buf.starts_with(b"HTTP/1.1 503"), "{}", String::from_utf8_lossy(&buf));
    // The idle ones are cut off by the header timeout and the slots come back.
    drop(hold);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (st, _, _) = get(e.stats, "/health", "").await;
    assert_eq!(st, 200);
    let r = report(&e).await;
    assert!(r.stats_http.bad_requests >= 5, "{:?}", r.stats_http);
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed() {
    let limits = Limits { max_connections: 4, header_timeout: Duration::from_secs(1), max_header_bytes: 16 * 1024, max_lifetime: Duration::from_millis(1500) };
    let e = start(false, limits).await;
    let mut s = TcpStream::connect(e.stats).await.unwrap();
    let t0 = Instant::now();
    // Two requests on one keep-alive connection, then silence: closed (header timeout for the
    // next request, or the lifetime cap, whichever comes first).
    for _ in 0..2 {
        s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let mut buf = [0u8; 1024];
        let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await.expect("answer").unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buf[..n]));
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await.expect("closed in time").unwrap();
    let took = t0.elapsed();
    assert!(rest.is_empty());
    assert!(took >= Duration::from_millis(800) && took < Duration::from_secs(4), "{took:?}");
}

/// A mount (the web panel's hook) gets the paths it claims, with the request and the peer;
/// every other path is the listener's own, and the listener counts the mount's requests.
#[tokio::test]
async fn a_mount_answers_its_paths_and_leaves_the_rest() {
    struct Echo;
    impl stats_listener::Mount for Echo {
        fn handles(&self, path: &str) -> bool {
            path.starts_with("/panel/")
        }
        fn call(&self, req: hyper::Request<hyper::body::Incoming>, peer: SocketAddr) -> stats_listener::MountFuture {
            let text = format!("{} {} from {}", req.method(), req.uri().path(), peer.ip());
            Box::pin(async move {
                let mut r = hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from(text)));
                *r.status_mut() = hyper::StatusCode::IM_A_TEAPOT;
                r
            })
        }
    }
    let cfg = parse_str("[users.a]\nsecret = \"a1112233445566778899aabbccddeeff\"\n", Path::new("t.toml")).unwrap();
    let opts = Options { mount: Some(Arc::new(Echo)), ..Default::default() };
    let px = Start::new(cfg).stats(opts).start();
    let (stats, stop) = (px.stats.unwrap(), px.stop);
    let (st, _, body) = get(stats, "/panel/api/x", "").await;
    assert_eq!((st, body.as_str()), (418, "GET /panel/api/x from 127.0.0.1"));
    assert_eq!(get(stats, "/stats", "").await.0, 200);
    assert_eq!(get(stats, "/nope", "").await.0, 404);
    let (_, _, body) = get(stats, "/stats.json", "").await;
    let r: Report = serde_json::from_str(&body).unwrap();
    assert_eq!(r.stats_http.requests, 4);
    assert_eq!(r.stats_http.bad_requests, 2, "the mount's 418 and the 404");
    stop.cancel();
}
