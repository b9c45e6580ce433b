//! The middle-proxy (ME) path in-process: the proxy on loopback, the test tree's fake
//! middle-end behind it, Rust test clients of every kind in front. Covers the ad tag and flags
//! the middle-end sees, answers and quick ACKs re-framed for each transport, closes both ways,
//! unknown DC ids, live switching between ME and direct mode, and per-user stats.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use std::time::Duration;

use mtproxy_core::config::{parse_str, Config};
use mtproxy_core::Shared;
use mtproxy_proto::rpc::msg::flags;
use mtproxy_proto::{ProtoTag, Secret};
use mtproxy_testkit::fake_me::{ConfigServer, FakeMe, QUICK_ACK_TOKEN, REQ_PQ_MULTI, RES_PQ};
use mtproxy_testkit::middle::{encrypted, proxy_secret, recv_packet, req_pq_multi, send_packet, MeFiles};
use mtproxy_testkit::proxy::Start;
use mtproxy_testkit::{three_users, Client, FakeDc, Mode, S_CLASSIC, S_DD, S_EE};
use tokio_util::sync::CancellationToken;

const AD_TAG: &str = "dcbe8f1493fa4cd9ab300891c0b5b326";
const AD_TAG2: &str = "0123456789abcdef0123456789abcdef";

fn tag_bytes(s: &str) -> [u8; 16] {
    let mut t = [0u8; 16];
    for i in 0..16 {
        t[i] = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
    }
    t
}

fn modes() -> Vec<(&'static str, &'static str, Mode, ProtoTag)> {
    vec![
        ("classic", S_CLASSIC, Mode::Classic(ProtoTag::Abridged), ProtoTag::Abridged),
        ("classic", S_CLASSIC, Mode::Classic(ProtoTag::Intermediate), ProtoTag::Intermediate),
        ("dd", S_DD, Mode::Padded, ProtoTag::PaddedIntermediate),
        ("ee", S_EE, Mode::FakeTls { domain: "cover.test".into() }, ProtoTag::PaddedIntermediate),
    ]
}

fn config_text(promoted: &str) -> String {
    let users = three_users();
    format!(
        r#"
[server]
listen = ["127.0.0.1:1"]
[timeouts]
handshake = "2s"
connect = "2s"
{users}{promoted}
"#
    )
}

fn parse(text: &str) -> Config {
    parse_str(text, Path::new("/tmp/middle-test.toml")).unwrap()
}

struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    dc: FakeDc,
    _stop: CancellationToken,
}

async fn start(cfg: Config) -> Proxy {
    let dc = FakeDc::start().await.unwrap();
    let px = Start::new(cfg).dc(dc.addr).start();
    Proxy { addr: px.addr, shared: px.shared, dc, _stop: px.stop }
}

fn assert_res_pq(answer: &[u8], nonce: [u8; 16]) {
    assert!(answer.len() >= 40, "short answer {answer:02x?}");
    assert_eq!(&answer[..8], &[0; 8], "resPQ is unencrypted");
    assert_eq!(u32::from_le_bytes(answer[20..24].try_into().unwrap()), RES_PQ);
    assert_eq!(&answer[24..40], &nonce, "resPQ carries the client's nonce");
}

async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..250 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// One request/answer exchange through the proxy: req_pq_multi -> resPQ, then an encrypted
/// packet echoed by the fake middle-end.
async fn exchange(c: &mut Client, tag: ProtoTag, seed: u8) {
    let nonce = [seed; 16];
    send_packet(c, tag, &req_pq_multi(nonce), false).await.unwrap();
    assert_res_pq(&recv_packet(c, tag).await.unwrap(), nonce);
    let data = encrypted(64, seed);
    send_packet(c, tag, &data, false).await.unwrap();
    assert_eq!(recv_packet(c, tag).await.unwrap(), data);
}

#[tokio::test]
async fn every_kind_goes_through_the_middle_end_with_the_ad_tag() {
    let me = FakeMe::start(proxy_secret()).await.unwrap();
    let files = MeFiles::new(&proxy_secret(), &[me.addr]);
    let p = start(parse(&config_text(&files.section(Some(AD_TAG), 2)))).await;
    for (i, (_, s, mode, tag)) in modes().into_iter().enumerate() {
        // DC 9999 is unknown: served by the file's default cluster (docs/protocol.md §7.2).
        let dc = if i == 0 { 9999 } else { 2 };
        let mut c = Client::connect(p.addr, &Secret::from_hex(s).unwrap(), &mode, dc).await.unwrap();
        let client_addr = c.stream().local_addr().unwrap();
        let nonce = [i as u8 + 1; 16];
        // Quick ACK requested: the ACK comes first, in the transport's byte order.
        send_packet(&mut c, tag, &req_pq_multi(nonce), true).await.unwrap();
        let ack = tokio::time::timeout(Duration::from_secs(5), c.recv(4)).await.unwrap().unwrap();
        let want = if tag == ProtoTag::Abridged { QUICK_ACK_TOKEN.to_be_bytes() } else { QUICK_ACK_TOKEN.to_le_bytes() };
        assert_eq!(ack, want, "quick ack for {mode:?}");
        assert_res_pq(&recv_packet(&mut c, tag).await.unwrap(), nonce);
        // Larger packets, including one that needs the abridged long header, echo back intact.
        for n in [64, 1000, 70_000] {
            let data = encrypted(n, i as u8);
            send_packet(&mut c, tag, &data, false).await.unwrap();
            assert_eq!(recv_packet(&mut c, tag).await.unwrap(), data, "{mode:?} {n}");
        }
        let log = me.log();
        let reqs: Vec<_> = log.requests.iter().filter(|r| r.client == client_addr).collect();
        assert_eq!(reqs.len(), 4, "{mode:?}: {reqs:?}");
        let first = reqs[0];
        assert_eq!(first.ad_tag, Some(tag_bytes(AD_TAG)));
        assert_eq!(first.constructor, Some(REQ_PQ_MULTI));
        assert_eq!(first.proxy, p.addr, "proxy address = client-facing listener");
        let transport = if tag == ProtoTag::Abridged { flags::ABRIDGED } else { flags::INTERMEDIATE };
        assert_eq!(first.flags, transport | flags::EXTMODE2 | flags::MAGIC | flags::HAS_AD_TAG | flags::NOT_ENCRYPTED | flags::QUICKACK);
        assert_eq!(reqs[1].flags, transport | flags::EXTMODE2 | flags::MAGIC | flags::HAS_AD_TAG);
        assert!(reqs.iter().all(|r| r.conn_id == first.conn_id));
        // Leaving sends RPC_CLOSE_CONN for this client.
        drop(c);
        wait_until("RPC_CLOSE_CONN", || me.log().closed.contains(&first.conn_id)).await;
    }
    let log = me.log();
    // Four clients shared at most connections_per_dc = 2 connections; the ping was answered.
    assert!((1..=2).contains(&log.handshakes), "{}", log.handshakes);
    assert_eq!(log.pongs, log.handshakes);
    assert!(p.dc.connections.load(SeqCst) == 0, "nothing went direct");
    // Per-user stats work in ME mode.
    wait_until("connections closed", || p.shared.stats.connections_active.load(SeqCst) == 0).await;
    let users = p.shared.stats.users();
    let dd = &users.iter().find(|(n, _)| n == "dd").unwrap().1;
    assert_eq!(dd.connections_total.load(SeqCst), 1);
    // 47 (req_pq_multi + 3 pad) + 4 + 64+3 + 1000+3 + 70000+3 framed bytes sent by the client.
    assert_eq!(dd.bytes_from_client.load(SeqCst), 47 + 4 + 67 + 4 + 1003 + 4 + 70003);
    assert!(dd.bytes_to_client.load(SeqCst) > 71_000);
}

#[tokio::test]
async fn close_from_the_middle_end_closes_the_client_and_junk_is_dropped() {
    let me = FakeMe::start(proxy_secret()).await.unwrap();
    let files = MeFiles::new(&proxy_secret(), &[me.addr]);
    let p = start(parse(&config_text(&files.section(Some(AD_TAG), 2)))).await;
    let mut c = Client::connect(p.addr, &Secret::from_hex(S_DD).unwrap(), &Mode::Padded, 2).await.unwrap();
    // Not MTProto (auth_key_id 0, unknown function): dropped, and the next packet says so.
    let mut junk = req_pq_multi([9; 16]);
    junk[20..24].copy_from_slice(&0xdeadbeefu32.to_le_bytes());
    send_packet(&mut c, ProtoTag::PaddedIntermediate, &junk, false).await.unwrap();
    exchange(&mut c, ProtoTag::PaddedIntermediate, 3).await;
    let log = me.log();
    assert_eq!(log.requests.len(), 2);
    assert_eq!(log.requests[0].flags & flags::DROPPED, flags::DROPPED);
    assert_eq!(p.shared.middle.stats.packets_dropped.load(SeqCst), 1);
    assert!(me.close_client(log.requests[0].conn_id));
    let r = tokio::time::timeout(Duration::from_secs(5), c.recv(1)).await.expect("closed in time");
    assert!(r.is_err(), "client connection closed by RPC_CLOSE_EXT");
}

#[tokio::test]
async fn setting_and_removing_the_ad_tag_switches_new_connections_only() {
    let me = FakeMe::start(proxy_secret()).await.unwrap();
    let files = MeFiles::new(&proxy_secret(), &[me.addr]);
    let p = start(parse(&config_text(&files.section(Some(AD_TAG), 2)))).await;
    let secret = Secret::from_hex(S_DD).unwrap();
    let tag = ProtoTag::PaddedIntermediate;
    let mut a = Client::connect(p.addr, &secret, &Mode::Padded, 2).await.unwrap();
    exchange(&mut a, tag, 1).await;

    // Remove the tag: a new client goes direct (the fake DC echoes raw bytes), A keeps its ME session.
    p.shared.reload(parse(&config_text(&files.section(None, 2))));
    let mut b = Client::connect(p.addr, &secret, &Mode::Padded, 2).await.unwrap();
    b.send(b"direct-bytes").await.unwrap();
    assert_eq!(tokio::time::timeout(Duration::from_secs(5), b.recv(12)).await.unwrap().unwrap(), b"direct-bytes");
    assert_eq!(p.dc.connections.load(SeqCst), 1);
    exchange(&mut a, tag, 2).await;

    // Set another tag: the next client goes through ME with the new tag; B stays direct.
    p.shared.reload(parse(&config_text(&files.section(Some(AD_TAG2), 2))));
    let mut c = Client::connect(p.addr, &secret, &Mode::Padded, 2).await.unwrap();
    exchange(&mut c, tag, 3).await;
    b.send(b"still-direct").await.unwrap();
    assert_eq!(tokio::time::timeout(Duration::from_secs(5), b.recv(12)).await.unwrap().unwrap(), b"still-direct");
    exchange(&mut a, tag, 4).await;
    let tags: Vec<_> = me.log().requests.iter().map(|r| r.ad_tag.unwrap()).collect();
    assert_eq!(tags.iter().filter(|t| **t == tag_bytes(AD_TAG)).count(), 6, "A's three exchanges: {tags:?}");
    assert_eq!(me.log().requests.last().unwrap().ad_tag, Some(tag_bytes(AD_TAG)), "A keeps the tag it started with");
    assert!(tags.contains(&tag_bytes(AD_TAG2)));
    assert_eq!(p.dc.connections.load(SeqCst), 1);
}

#[tokio::test]
async fn config_refresh_survives_an_outage_and_picks_up_a_new_address() {
    let me1 = FakeMe::start(proxy_secret()).await.unwrap();
    let me2 = FakeMe::start(proxy_secret()).await.unwrap();
    let mut routes = HashMap::new();
    routes.insert("/secret".to_string(), proxy_secret());
    routes.insert("/conf".to_string(), format!("default 2;\nproxy_for 2 {};\n", me1.addr).into_bytes());
    let server = ConfigServer::start(routes).await.unwrap();
    let cache = tempfile::tempdir().unwrap();
    let section = format!(
        "[promoted_channel]\nad_tag = \"{AD_TAG}\"\nproxy_secret_url = \"{}\"\nproxy_config_url = \"{}\"\nproxy_config_v6_url = \"off\"\ncache_dir = \"{}\"\nrefresh_interval = \"1s\"\n",
        server.url("/secret"),
        server.url("/conf"),
        cache.path().display()
    );
    let cfg = parse(&config_text(&section));
    let settings = cfg.middle.clone();
    let p = start(cfg).await;
    // First fetch before any client: until then the shipped (real Telegram) list is in force.
    assert!(p.shared.middle.refresh(&settings).await.unwrap(), "the first fetch changes the shipped copy");
    assert_eq!(std::fs::read(cache.path().join("proxy-secret")).unwrap(), proxy_secret());
    let stop = CancellationToken::new();
    let s2 = settings.clone();
    tokio::spawn(p.shared.middle.clone().refresh_loop(move || Some(s2.clone()), stop.clone()));
    let _stop_guard = stop.drop_guard();

    let secret = Secret::from_hex(S_EE).unwrap();
    let mode = Mode::FakeTls { domain: "cover.test".into() };
    let tag = ProtoTag::PaddedIntermediate;
    let mut a = Client::connect(p.addr, &secret, &mode, 2).await.unwrap();
    exchange(&mut a, tag, 1).await;
    assert!(me1.log().requests.len() == 2);

    // The config server goes away: refreshes fail and are counted, serving goes on.
    server.pause().await;
    let failed = p.shared.middle.stats.refresh_failed.load(SeqCst);
    wait_until("a failed refresh", || p.shared.middle.stats.refresh_failed.load(SeqCst) > failed).await;
    let mut b = Client::connect(p.addr, &secret, &mode, 2).await.unwrap();
    exchange(&mut b, tag, 2).await;
    exchange(&mut a, tag, 3).await;
    assert_eq!(me2.log().requests.len(), 0);

    // It comes back with a changed address: new clients go to the new middle-end, old ones stay.
    server.set("/conf", format!("default 2;\nproxy_for 2 {};\n", me2.addr));
    server.resume().await.unwrap();
    let m = p.shared.middle.clone();
    wait_until("the new address in force", || m.targets(2, mtproxy_core::config::IpPreference::PreferV4).1 == vec![me2.addr]).await;
    let mut c = Client::connect(p.addr, &secret, &mode, 2).await.unwrap();
    exchange(&mut c, tag, 4).await;
    assert_eq!(me2.log().requests.len(), 2);
    assert_eq!(me2.log().requests[0].ad_tag, Some(tag_bytes(AD_TAG)));
    exchange(&mut a, tag, 5).await;
    exchange(&mut b, tag, 6).await;
    assert_eq!(me1.log().requests.len(), 10, "A: three exchanges, B: two, two packets each");
    let cached = std::fs::read_to_string(cache.path().join("proxy-multi.conf")).unwrap();
    assert!(cached.contains(&me2.addr.to_string()), "{cached}");
}

#[tokio::test]
async fn unreachable_middle_end_refuses_fast_and_tries_every_address() {
    // Two dead addresses then the live one: a client is served once the pool reaches it.
    let dead1 = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let dead2 = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let me = FakeMe::start(proxy_secret()).await.unwrap();
    let files = MeFiles::new(&proxy_secret(), &[dead1, dead2, me.addr]);
    let p = start(parse(&config_text(&files.section(Some(AD_TAG), 2)))).await;
    let mut c = Client::connect(p.addr, &Secret::from_hex(S_CLASSIC).unwrap(), &Mode::Classic(ProtoTag::Intermediate), 2).await.unwrap();
    exchange(&mut c, ProtoTag::Intermediate, 1).await;

    // A wrong proxy secret (same key selector, different key material): the keys differ, the
    // encrypted handshake fails; the client is closed, the failure counted.
    let mut wrong = proxy_secret();
    wrong[100] ^= 1;
    let other = MeFiles::new(&wrong, &[me.addr]);
    let p2 = start(parse(&config_text(&other.section(Some(AD_TAG), 2)))).await;
    let mut d = Client::connect(p2.addr, &Secret::from_hex(S_CLASSIC).unwrap(), &Mode::Classic(ProtoTag::Intermediate), 2).await.unwrap();
    send_packet(&mut d, ProtoTag::Intermediate, &req_pq_multi([1; 16]), false).await.unwrap();
    let r = tokio::time::timeout(Duration::from_secs(10), d.recv(1)).await.expect("closed in time");
    assert!(r.is_err());
    assert_eq!(p2.shared.middle.stats.connect_failures.load(SeqCst), 1);
}

#[tokio::test]
async fn ipv6_middle_end() {
    // An IPv6 middle-end: the IPv6 key layout (docs/protocol.md §8.4 D6) end to end.
    let Ok(l6) = tokio::net::TcpListener::bind("[::1]:0").await else {
        eprintln!("no IPv6 loopback here; skipping the IPv6 half");
        return;
    };
    let me6 = FakeMe::start_on(l6, proxy_secret(), None).unwrap();
    let files = MeFiles::new(&proxy_secret(), &[me6.addr]);
    let p = start(parse(&config_text(&files.section(Some(AD_TAG), 2)))).await;
    let mut c = Client::connect(p.addr, &Secret::from_hex(S_DD).unwrap(), &Mode::Padded, 2).await.unwrap();
    exchange(&mut c, ProtoTag::PaddedIntermediate, 1).await;
    assert_eq!(me6.log().handshakes, 1);
    assert_eq!(me6.log().requests[0].client, c.stream().local_addr().unwrap());
}

#[tokio::test]
async fn nat_address_is_mixed_into_the_keys_and_sent_as_the_proxy_address() {
    // Behind NAT: Telegram sees 203.0.113.7; only a proxy told so (nat_ip) derives the same keys,
    // and that address is sent as the proxy's in each request.
    let public: std::net::IpAddr = "203.0.113.7".parse().unwrap();
    let l4 = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let me_nat = FakeMe::start_behind_nat(l4, proxy_secret(), public).unwrap();
    let files = MeFiles::new(&proxy_secret(), &[me_nat.addr]);
    let without = start(parse(&config_text(&files.section(Some(AD_TAG), 2)))).await;
    let mut d = Client::connect(without.addr, &Secret::from_hex(S_DD).unwrap(), &Mode::Padded, 2).await.unwrap();
    send_packet(&mut d, ProtoTag::PaddedIntermediate, &req_pq_multi([1; 16]), false).await.unwrap();
    let r = tokio::time::timeout(Duration::from_secs(10), d.recv(1)).await.expect("closed in time");
    assert!(r.is_err(), "keys differ without nat_ip: no service");
    assert_eq!(me_nat.log().handshakes, 0);
    let with = start(parse(&config_text(&format!("{}nat_ip = \"{public}\"\n", files.section(Some(AD_TAG), 2))))).await;
    let mut e = Client::connect(with.addr, &Secret::from_hex(S_DD).unwrap(), &Mode::Padded, 2).await.unwrap();
    exchange(&mut e, ProtoTag::PaddedIntermediate, 2).await;
    let log = me_nat.log();
    assert_eq!(log.handshakes, 1);
    assert_eq!(log.requests[0].proxy, std::net::SocketAddr::new(public, with.addr.port()));
}
