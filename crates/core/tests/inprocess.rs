//! The proxy run in-process on loopback against the Rust test peers (fake DC, clients of each
//! kind, an echo server as mask host): relay, fronting, replay, transports and live reload.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use mtproxy_core::config::{parse_str, Config};
use mtproxy_core::events::FailReason;
use mtproxy_core::Shared;
use mtproxy_proto::{ProtoTag, Secret};
use mtproxy_testkit::proxy::Start;
use mtproxy_testkit::{client_hello, three_users, Client, FakeDc, Mode, S_CLASSIC, S_DD, S_EE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

fn secret(s: &str) -> Secret {
    Secret::from_hex(s).unwrap()
}

/// A TCP echo server standing in for the mask site.
async fn echo_server() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut b = [0u8; 4096];
                while let Ok(n) = s.read(&mut b).await {
                    if n == 0 || s.write_all(&b[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

fn config_text(mask: SocketAddr, users: &str, extra: &str) -> String {
    format!(
        r#"
[server]
listen = ["127.0.0.1:1"]
[timeouts]
handshake = "2s"
[fronting]
mask_host = "{mask}"
{users}{extra}
"#
    )
}

struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    dc: FakeDc,
    mask: SocketAddr,
    _stop: CancellationToken,
}

async fn start(extra: &str) -> Proxy {
    start_users(&three_users(), extra).await
}

async fn start_users(users: &str, extra: &str) -> Proxy {
    let dc = FakeDc::start().await.unwrap();
    let mask = echo_server().await;
    let cfg: Config = parse_str(&config_text(mask, users, extra), Path::new("test.toml")).unwrap();
    let px = Start::new(cfg).dc(dc.addr).start();
    Proxy { addr: px.addr, shared: px.shared, dc, mask, _stop: px.stop }
}

async fn roundtrip(c: &mut Client, n: usize) {
    let data: Vec<u8> = (0..n).map(|i| (i * 31 + 7) as u8).collect();
    c.send(&data).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), c.recv(n)).await.expect("echo in time").unwrap();
    assert_eq!(got, data);
}

/// A refused client is fronted to the echo mask host: it never gets its plaintext echoed by the
/// fake DC (it gets its own ciphertext back, or nothing).
async fn assert_refused(c: &mut Client) {
    let _ = c.send(b"ping-ping-ping-ping").await;
    if let Ok(Ok(got)) = tokio::time::timeout(Duration::from_secs(3), c.recv(19)).await {
        assert_ne!(got, b"ping-ping-ping-ping");
    }
}

fn failures(p: &Proxy, r: FailReason) -> u64 {
    p.shared.stats.handshake_failures[r.index()].load(std::sync::atomic::Ordering::SeqCst)
}

#[tokio::test]
async fn every_kind_relays_both_ways_with_large_and_small_writes() {
    let p = start("").await;
    for (s, mode) in [
        (S_CLASSIC, Mode::Classic(ProtoTag::Abridged)),
        (S_CLASSIC, Mode::Classic(ProtoTag::Intermediate)),
        (S_DD, Mode::Padded),
        (S_EE, Mode::FakeTls { domain: "cover.test".into() }),
    ] {
        let mut c = Client::connect(p.addr, &secret(s), &mode, -2).await.unwrap();
        roundtrip(&mut c, 40).await;
        roundtrip(&mut c, 300_000).await;
        roundtrip(&mut c, 1).await;
        drop(c);
    }
    assert_eq!(p.dc.connections.load(std::sync::atomic::Ordering::SeqCst), 4);
    // Byte counters are flushed in batches and at close: wait for the connections to end.
    for _ in 0..100 {
        if p.shared.stats.connections_active.load(std::sync::atomic::Ordering::SeqCst) == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(p.dc.last_dc.load(std::sync::atomic::Ordering::SeqCst) as u16 as i16, -2);
    let users = p.shared.stats.users();
    let ee = &users.iter().find(|(n, _)| n == "ee").unwrap().1;
    assert_eq!(ee.bytes_from_client.load(std::sync::atomic::Ordering::SeqCst), 40 + 300_000 + 1);
}

#[tokio::test]
async fn wrong_kind_or_secret_is_refused() {
    let p = start("").await;
    // dd user with plain intermediate, classic user with padded, ee user without TLS.
    for (s, mode) in [(S_DD, Mode::Classic(ProtoTag::Intermediate)), (S_CLASSIC, Mode::Padded), (S_EE, Mode::Padded)] {
        let mut c = Client::connect(p.addr, &secret(s), &mode, 2).await.unwrap();
        assert_refused(&mut c).await;
    }
    assert_eq!(failures(&p, FailReason::BadTransport), 3);
    let other = secret("ffffffffffffffffffffffffffffffff");
    let res = tokio::time::timeout(Duration::from_secs(5), Client::connect(p.addr, &other, &Mode::FakeTls { domain: "cover.test".into() }, 2))
        .await
        .expect("answer in time");
    assert!(res.is_err(), "fake-TLS with an unknown secret must not get a ServerHello");
    assert_eq!(failures(&p, FailReason::BadSecret), 1);
}

#[tokio::test]
async fn failed_handshakes_are_fronted_byte_exactly() {
    let p = start("").await;
    let mut junk: Vec<u8> = (0..200u32).map(|i| (i * 13) as u8).collect();
    junk[0] = 0x47;
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    s.write_all(&junk).await.unwrap();
    let mut back = vec![0u8; junk.len()];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut back)).await.unwrap().unwrap();
    assert_eq!(back, junk, "the mask host must see (and echo) exactly what the prober sent");

    // A ClientHello with a bad HMAC and one with a foreign SNI.
    for (sni, key) in [("cover.test", "ffffffffffffffffffffffffffffffff"), ("other.test", S_EE)] {
        let mut hello = client_hello(Some(sni), 1750);
        mtproxy_proto::faketls::sign_client_hello(&mut hello, &secret(key), now());
        let mut s = TcpStream::connect(p.addr).await.unwrap();
        s.write_all(&hello).await.unwrap();
        let mut back = vec![0u8; hello.len()];
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut back)).await.unwrap().unwrap();
        assert_eq!(back, hello);
    }
    assert_eq!(failures(&p, FailReason::BadSni), 1);
    let _ = p.mask;
}

/// With only fake-TLS users, a non-TLS opening is fronted at once (instant fronting), not after
/// the handshake timeout; a whole obfuscated2 init with an ee user's secret (a client that dropped
/// the fake-TLS layer) is still named `bad_transport`, which fail2ban does not ban.
#[tokio::test]
async fn fake_tls_only_fronts_plain_openings_at_once_and_names_a_right_secret() {
    let p = start_users(&format!("[users.ee]\nsecret = \"{S_EE}\"\nkind = \"ee\"\ndomain = \"cover.test\"\n"), "").await;
    let echoed_within = |data: Vec<u8>| async move {
        let t0 = std::time::Instant::now();
        let mut s = TcpStream::connect(p.addr).await.unwrap();
        s.write_all(&data).await.unwrap();
        let mut back = vec![0u8; data.len()];
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut back)).await.unwrap().unwrap();
        assert_eq!(back, data, "fronted byte for byte");
        t0.elapsed()
    };
    let plain_init = {
        let mut c = Client::connect(p.addr, &secret(S_EE), &Mode::Padded, 2).await.unwrap();
        assert_refused(&mut c).await;
        failures(&p, FailReason::BadTransport)
    };
    assert_eq!(plain_init, 1, "a right secret through the wrong transport is bad_transport");
    let junk: Vec<u8> = (0..64u32).map(|i| (i * 7 + 1) as u8).collect();
    // The handshake timeout is 2 s: an answer well inside it was fronted at once.
    assert!(echoed_within(junk).await < Duration::from_millis(500));
    assert!(echoed_within(b"GET / HTTP/1.1\r\nHost: cover.test\r\n\r\n".to_vec()).await < Duration::from_millis(500));
    assert_eq!(failures(&p, FailReason::Malformed), 2);
    assert_eq!(failures(&p, FailReason::BadTransport), 1);
    assert_eq!(failures(&p, FailReason::Timeout), 0);
}

fn now() -> u32 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as u32
}

#[tokio::test]
async fn replayed_and_skewed_hellos_are_fronted() {
    let p = start("").await;
    let mut hello = client_hello(Some("cover.test"), 1800);
    mtproxy_proto::faketls::sign_client_hello(&mut hello, &secret(S_EE), now());
    let mut first = TcpStream::connect(p.addr).await.unwrap();
    first.write_all(&hello).await.unwrap();
    let mut head = [0u8; 3];
    first.read_exact(&mut head).await.unwrap();
    assert_eq!(head, [0x16, 0x03, 0x03], "first use gets a ServerHello");
    let mut again = TcpStream::connect(p.addr).await.unwrap();
    again.write_all(&hello).await.unwrap();
    let mut back = vec![0u8; hello.len()];
    tokio::time::timeout(Duration::from_secs(5), again.read_exact(&mut back)).await.unwrap().unwrap();
    assert_eq!(back, hello, "a replay goes to the mask host");
    assert_eq!(failures(&p, FailReason::Replay), 1);

    let mut old = client_hello(Some("cover.test"), 600);
    mtproxy_proto::faketls::sign_client_hello(&mut old, &secret(S_EE), now() - 3600);
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    s.write_all(&old).await.unwrap();
    let mut back = vec![0u8; old.len()];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut back)).await.unwrap().unwrap();
    assert_eq!(back, old);
    assert_eq!(failures(&p, FailReason::ClockSkew), 1);
}

#[tokio::test]
async fn hello_split_into_tiny_segments_and_records_is_accepted() {
    let p = start("").await;
    // Build a hello, split the handshake message over three records and send it 7 bytes at a time.
    let mut hello = client_hello(Some("cover.test"), 1900);
    mtproxy_proto::faketls::sign_client_hello(&mut hello, &secret(S_EE), now());
    let random: [u8; 32] = hello[11..43].try_into().unwrap();
    let msg = &hello[5..];
    let mut wire = Vec::new();
    for part in [&msg[..700], &msg[700..1400], &msg[1400..]] {
        wire.extend_from_slice(&[0x16, 0x03, 0x01]);
        wire.extend_from_slice(&(part.len() as u16).to_be_bytes());
        wire.extend_from_slice(part);
    }
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    s.set_nodelay(true).unwrap();
    for chunk in wire.chunks(7) {
        s.write_all(chunk).await.unwrap();
    }
    let mut buf = Vec::new();
    let ok = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            s.read_buf(&mut buf).await.unwrap();
            if let Some(n) = mtproxy_proto::faketls::verify_server_hello(&secret(S_EE), &random, &buf) {
                return n;
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(ok, buf.len());
}

#[tokio::test]
async fn live_reload_adds_removes_and_keeps_others() {
    let p = start("").await;
    let mut dd = Client::connect(p.addr, &secret(S_DD), &Mode::Padded, 2).await.unwrap();
    let mut classic = Client::connect(p.addr, &secret(S_CLASSIC), &Mode::Classic(ProtoTag::Abridged), 2).await.unwrap();
    roundtrip(&mut dd, 10).await;
    roundtrip(&mut classic, 10).await;
    // Remove `dd`, add `new`.
    let text = config_text(p.mask, &three_users(), "[users.new]\nsecret = \"33112233445566778899aabbccddeeff\"\nkind = \"dd\"\n")
        .replace(&format!("[users.dd]\nsecret = \"{S_DD}\"\nkind = \"dd\"\n"), "");
    p.shared.reload(parse_str(&text, Path::new("t.toml")).unwrap());
    roundtrip(&mut classic, 100).await;
    let mut n = Client::connect(p.addr, &secret("33112233445566778899aabbccddeeff"), &Mode::Padded, 2).await.unwrap();
    roundtrip(&mut n, 100).await;
    dd.send(b"are you there").await.unwrap_or(());
    let r = tokio::time::timeout(Duration::from_secs(3), dd.recv(13)).await.expect("closed promptly");
    assert!(r.is_err(), "the removed user's connection is closed");
}

/// The secret an address used last is tried first next time (hints.rs), and a hint never
/// changes who gets in: a stale hint (another user, a disabled or removed user) still ends in
/// the same answer as a search without it.
#[tokio::test]
async fn returning_address_hint_changes_order_not_answers() {
    let p = start("").await;
    let here: std::net::IpAddr = "127.0.0.1".parse().unwrap();
    assert_eq!(p.shared.hints.get(here), None);
    let mut dd = Client::connect(p.addr, &secret(S_DD), &Mode::Padded, 2).await.unwrap();
    roundtrip(&mut dd, 10).await;
    assert_eq!(p.shared.hints.get(here), Some(secret(S_DD)));
    // Another user from the same address: the hint is wrong, the search goes on.
    let mut ee = Client::connect(p.addr, &secret(S_EE), &Mode::FakeTls { domain: "cover.test".into() }, 2).await.unwrap();
    roundtrip(&mut ee, 10).await;
    assert_eq!(p.shared.hints.get(here), Some(secret(S_EE)));
    // The hinted user is disabled: refused as disabled, exactly as without a hint.
    let text = config_text(p.mask, &three_users(), "")
        .replace(&format!("[users.ee]\nsecret = \"{S_EE}\"\n"), &format!("[users.ee]\nsecret = \"{S_EE}\"\nenabled = false\n"));
    p.shared.reload(parse_str(&text, Path::new("t.toml")).unwrap());
    let off = Client::connect(p.addr, &secret(S_EE), &Mode::FakeTls { domain: "cover.test".into() }, 2).await;
    assert!(off.is_err(), "no ServerHello for a disabled user (fronted instead)");
    assert_eq!(failures(&p, FailReason::UserDisabled), 1);
    // The hinted user is removed: its secret is a bad secret now; the others still get in.
    let text = config_text(p.mask, &three_users(), "").replace(&format!("[users.ee]\nsecret = \"{S_EE}\"\nkind = \"ee\"\ndomain = \"cover.test\"\n"), "");
    p.shared.reload(parse_str(&text, Path::new("t.toml")).unwrap());
    let gone = Client::connect(p.addr, &secret(S_EE), &Mode::FakeTls { domain: "cover.test".into() }, 2).await;
    assert!(gone.is_err(), "no ServerHello for a removed user");
    assert_eq!(failures(&p, FailReason::BadSecret), 1);
    let mut classic = Client::connect(p.addr, &secret(S_CLASSIC), &Mode::Classic(ProtoTag::Abridged), 2).await.unwrap();
    roundtrip(&mut classic, 10).await;
    assert_eq!(p.shared.hints.get(here), Some(secret(S_CLASSIC)));
}

#[tokio::test]
async fn rotation_grace_keeps_old_secret_until_expiry() {
    let until = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 2;
    let p = start("").await;
    let text = config_text(p.mask, &three_users(), "").replace(
        &format!("[users.dd]\nsecret = \"{S_DD}\"\n"),
        &format!("[users.dd]\nsecret = \"44112233445566778899aabbccddeeff\"\nprevious_secret = \"{S_DD}\"\nprevious_secret_expires = {until}\n"),
    );
    let mut before = Client::connect(p.addr, &secret(S_DD), &Mode::Padded, 2).await.unwrap();
    roundtrip(&mut before, 10).await;
    p.shared.reload(parse_str(&text, Path::new("t.toml")).unwrap());
    roundtrip(&mut before, 10).await; // rotation with grace keeps open connections
    let mut old = Client::connect(p.addr, &secret(S_DD), &Mode::Padded, 2).await.unwrap();
    roundtrip(&mut old, 10).await;
    let mut new = Client::connect(p.addr, &secret("44112233445566778899aabbccddeeff"), &Mode::Padded, 2).await.unwrap();
    roundtrip(&mut new, 10).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let mut late = Client::connect(p.addr, &secret(S_DD), &Mode::Padded, 2).await.unwrap();
    assert_refused(&mut late).await;
    assert_eq!(failures(&p, FailReason::RotatedSecret), 1);
}

async fn start_with_stop(extra_server: &str, extra: &str, drain: Duration) -> (Proxy, CancellationToken, tokio::task::JoinHandle<()>) {
    let dc = FakeDc::start().await.unwrap();
    let mask = echo_server().await;
    let text = config_text(mask, &three_users(), extra).replace("[timeouts]\n", &format!("{extra_server}\n[timeouts]\n"));
    let cfg: Config = parse_str(&text, Path::new("test.toml")).unwrap();
    let px = Start::new(cfg).dc(dc.addr).drain(drain).start();
    (Proxy { addr: px.addr, shared: px.shared, dc, mask, _stop: px.stop.clone() }, px.stop, px.task)
}

/// Reads until EOF or error; true when the proxy closed the connection within `within`.
async fn closed_within(c: &mut Client, within: Duration) -> bool {
    matches!(tokio::time::timeout(within, c.recv(1)).await, Ok(Err(_)))
}

#[tokio::test]
async fn idle_connections_are_closed_after_the_idle_timeout() {
    let (p, _stop, _t) = start_with_stop("", "", Duration::from_secs(1)).await;
    let text = config_text(p.mask, &three_users(), "").replace("handshake = \"2s\"", "handshake = \"2s\"\nidle = \"1s\"");
    p.shared.reload(parse_str(&text, Path::new("t.toml")).unwrap());
    let mut c = Client::connect(p.addr, &secret(S_DD), &Mode::Padded, 2).await.unwrap();
    roundtrip(&mut c, 10).await;
    // Traffic keeps it open past the timeout...
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        roundtrip(&mut c, 10).await;
    }
    // ... silence closes it.
    assert!(closed_within(&mut c, Duration::from_secs(3)).await);
}

#[tokio::test]
async fn half_close_delivers_everything_then_closes() {
    let p = start("").await;
    let mut c = Client::connect(p.addr, &secret(S_CLASSIC), &Mode::Classic(ProtoTag::Intermediate), 2).await.unwrap();
    let data: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
    c.send(&data).await.unwrap();
    c.stream().shutdown().await.unwrap(); // client stops sending
    let got = tokio::time::timeout(Duration::from_secs(5), c.recv(data.len())).await.unwrap().unwrap();
    assert_eq!(got, data, "everything sent before the half-close comes back");
    assert!(closed_within(&mut c, Duration::from_secs(3)).await, "then the proxy closes");
}

#[tokio::test]
async fn connection_cap_refuses_extra_clients() {
    let (p, _stop, _t) = start_with_stop("[limits]\nmax_connections = 2\n", "", Duration::from_secs(1)).await;
    let mut a = Client::connect(p.addr, &secret(S_DD), &Mode::Padded, 2).await.unwrap();
    let mut b = Client::connect(p.addr, &secret(S_DD), &Mode::Padded, 2).await.unwrap();
    roundtrip(&mut a, 10).await;
    roundtrip(&mut b, 10).await;
    let mut c = Client::connect(p.addr, &secret(S_DD), &Mode::Padded, 2).await.unwrap();
    assert!(closed_within(&mut c, Duration::from_secs(3)).await);
    assert_eq!(p.shared.stats.connections_refused_limit.load(std::sync::atomic::Ordering::SeqCst), 1);
    drop(a);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut d = Client::connect(p.addr, &secret(S_DD), &Mode::Padded, 2).await.unwrap();
    roundtrip(&mut d, 10).await;
}

#[tokio::test]
async fn shutdown_stops_accepting_and_drains_then_closes() {
    let (p, stop, task) = start_with_stop("", "", Duration::from_secs(1)).await;
    let mut c = Client::connect(p.addr, &secret(S_DD), &Mode::Padded, 2).await.unwrap();
    roundtrip(&mut c, 10).await;
    stop.cancel();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(TcpStream::connect(p.addr).await.is_err(), "no longer accepting");
    roundtrip(&mut c, 10).await; // still served during the drain period
    tokio::time::timeout(Duration::from_secs(5), task).await.expect("serve returns after the drain deadline").unwrap();
    assert!(closed_within(&mut c, Duration::from_secs(2)).await, "closed at the deadline");
}
