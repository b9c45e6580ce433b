//! The middle-proxy counters in `/stats.json`, `/stats` and `/metrics`, in-process: the proxy
//! and its statistics listener on loopback, the test tree's fake middle-end behind it, Rust
//! test clients in front. Known traffic gives exact counts (cross-checked with what the fake
//! middle-end recorded), a pool replaced after a configuration change hands its cluster's
//! counters on, failures are counted, and direct mode has no `middle` section at all.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use mtproxy_core::config::{parse_str, Config};
use mtproxy_core::stats_listener::report::MiddleReport;
use mtproxy_core::stats_listener::{Options, Report};
use mtproxy_core::Shared;
use mtproxy_proto::{ProtoTag, Secret};
use mtproxy_testkit::fake_me::{FakeMe, QUICK_ACK_TOKEN, RES_PQ};
use mtproxy_testkit::middle::{encrypted, proxy_secret, recv_packet, req_pq_multi, send_packet, MeFiles};
use mtproxy_testkit::proxy::Start;
use mtproxy_testkit::{Client, FakeDc, Mode, S_CLASSIC, S_DD};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

const AD_TAG: &str = "dcbe8f1493fa4cd9ab300891c0b5b326";

fn config(promoted: &str) -> Config {
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:1\"]\n[timeouts]\nhandshake = \"2s\"\nconnect = \"2s\"\n[fronting]\nenabled = false\n\
         [users.classic]\nsecret = \"{S_CLASSIC}\"\nkind = \"classic\"\n[users.dd]\nsecret = \"{S_DD}\"\nkind = \"dd\"\n{promoted}"
    );
    parse_str(&text, Path::new("/tmp/middle-stats-test.toml")).unwrap()
}

struct Proxy {
    addr: SocketAddr,
    stats: SocketAddr,
    shared: Arc<Shared>,
    _dc: FakeDc,
    _stop: CancellationToken,
}

async fn start(cfg: Config) -> Proxy {
    let dc = FakeDc::start().await.unwrap();
    let px = Start::new(cfg).dc(dc.addr).stats(Options::default()).start();
    Proxy { addr: px.addr, stats: px.stats.unwrap(), shared: px.shared, _dc: dc, _stop: px.stop }
}

async fn get(addr: SocketAddr, path: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await.expect("answer in time").unwrap();
    let text = String::from_utf8(buf).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_string()
}

async fn report(p: &Proxy) -> Report {
    serde_json::from_str(&get(p.stats, "/stats.json").await).unwrap()
}

async fn middle(p: &Proxy) -> MiddleReport {
    report(p).await.middle.expect("a middle section in middle-proxy mode")
}

/// Poll `/stats.json` until `check` holds (bounded); returns that reading.
async fn eventually(p: &Proxy, what: &str, check: impl Fn(&MiddleReport) -> bool) -> MiddleReport {
    for _ in 0..250 {
        let m = middle(p).await;
        if check(&m) {
            return m;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}: {:#?}", middle(p).await);
}

async fn wait_for(what: &str, f: impl Fn() -> bool) {
    for _ in 0..250 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Prometheus text: samples {"name{labels}": value} and the declared type of each family;
/// every sample must belong to a family with HELP and TYPE.
fn parse_prom(text: &str) -> (HashMap<String, f64>, HashMap<String, String>) {
    let (mut samples, mut types, mut helps) = (HashMap::new(), HashMap::new(), Vec::new());
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap();
            assert!(!help.trim().is_empty(), "{line}");
            helps.push(name.to_string());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            types.insert(name.to_string(), kind.to_string());
        } else {
            let (key, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("bad line {line}"));
            let name = key.split('{').next().unwrap();
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|f| types.get(*f).is_some_and(|t| t == "histogram")))
                .unwrap_or(name);
            assert!(types.contains_key(family) && helps.iter().any(|h| h == family), "sample without HELP/TYPE: {line}");
            samples.insert(key.to_string(), value.parse::<f64>().unwrap_or_else(|_| panic!("bad value in {line}")));
        }
    }
    (samples, types)
}

/// req_pq_multi -> resPQ, then an encrypted packet echoed: two requests, two answers.
async fn exchange(c: &mut Client, tag: ProtoTag, seed: u8) {
    send_packet(c, tag, &req_pq_multi([seed; 16]), false).await.unwrap();
    let answer = recv_packet(c, tag).await.unwrap();
    assert_eq!(u32::from_le_bytes(answer[20..24].try_into().unwrap()), RES_PQ);
    let data = encrypted(64, seed);
    send_packet(c, tag, &data, false).await.unwrap();
    assert_eq!(recv_packet(c, tag).await.unwrap(), data);
}

#[tokio::test]
async fn middle_counters_are_exact_for_known_traffic() {
    let me = FakeMe::start(proxy_secret()).await.unwrap();
    let files = MeFiles::new(&proxy_secret(), &[me.addr]);
    let cfg = config(&files.section(Some(AD_TAG), 1));
    let settings = cfg.middle.clone();
    let p = start(cfg).await;

    // Before any client: the section is there, all zeros, the local copy (generation 1) in force.
    let m = middle(&p).await;
    assert_eq!((m.config_generation, m.clusters_v4, m.clusters_v6, m.sessions_total, m.connections_opened), (1, 1, 0, 0, 0));
    assert!(m.clusters.is_empty() && m.last_refresh_ok_at.is_none());
    // A refresh from the same files: counted, nothing changes.
    assert!(!p.shared.middle.refresh(&settings).await.unwrap());

    // Client A (dd): one junk packet (dropped), one exchange, one quick-ACK request.
    // Client B (classic, abridged): one exchange. Both share the single connection (size 1).
    let mut a = Client::connect(p.addr, &Secret::from_hex(S_DD).unwrap(), &Mode::Padded, 2).await.unwrap();
    let mut junk = req_pq_multi([9; 16]);
    junk[20..24].copy_from_slice(&0xdeadbeefu32.to_le_bytes());
    send_packet(&mut a, ProtoTag::PaddedIntermediate, &junk, false).await.unwrap();
    exchange(&mut a, ProtoTag::PaddedIntermediate, 1).await;
    send_packet(&mut a, ProtoTag::PaddedIntermediate, &req_pq_multi([2; 16]), true).await.unwrap();
    let ack = tokio::time::timeout(Duration::from_secs(5), a.recv(4)).await.unwrap().unwrap();
    assert_eq!(ack, QUICK_ACK_TOKEN.to_le_bytes());
    recv_packet(&mut a, ProtoTag::PaddedIntermediate).await.unwrap();
    let mut b = Client::connect(p.addr, &Secret::from_hex(S_CLASSIC).unwrap(), &Mode::Classic(ProtoTag::Abridged), 2).await.unwrap();
    exchange(&mut b, ProtoTag::Abridged, 3).await;

    // Out: 5 requests + 1 pong. In: 1 ping + 5 answers + 1 quick ACK.
    let m = eventually(&p, "frames of two open sessions", |m| m.frames_to_middle_end == 6 && m.frames_from_middle_end == 7).await;
    assert_eq!((m.sessions_active, m.sessions_total, m.connections_active, m.connections_opened), (2, 2, 1, 1));
    assert_eq!((m.packets_dropped, m.connect_failures, m.connection_open_failures), (1, 0, 0));
    assert_eq!((m.refreshes_ok, m.refreshes_failed), (1, 0));
    assert!(m.last_refresh_ok_at.is_some_and(|t| t > 1_700_000_000));
    // What the middle-end saw (it reads after the proxy counted the write).
    wait_for("the middle-end's log", || {
        let log = me.log();
        (log.handshakes, log.requests.len(), log.pongs) == (1, 5, 1)
    })
    .await;

    // Both leave: one RPC_CLOSE_CONN each; the connection stays open for the next clients.
    drop(a);
    drop(b);
    let m = eventually(&p, "sessions closed", |m| m.sessions_active == 0 && m.frames_to_middle_end == 8).await;
    assert_eq!((m.frames_from_middle_end, m.sessions_total, m.connections_active, m.connections_opened), (7, 2, 1, 1));
    wait_for("two RPC_CLOSE_CONN at the middle-end", || me.log().closed.len() == 2).await;
    let c2 = &m.clusters[0];
    assert_eq!((c2.cluster.as_str(), c2.connections_active, c2.frames_to_middle_end, c2.frames_from_middle_end), ("2", 1, 8, 7));

    // /stats and /metrics carry the same numbers, with the right metric types.
    let stats = get(p.stats, "/stats").await;
    let kv: HashMap<&str, &str> = stats.lines().filter_map(|l| l.split_once('\t')).collect();
    for (k, v) in [
        ("middle_config_generation", "1"),
        ("middle_refreshes_ok", "1"),
        ("middle_sessions_active", "0"),
        ("middle_sessions_total", "2"),
        ("middle_packets_dropped", "1"),
        ("middle_connect_failures", "0"),
        ("middle_connections_active", "1"),
        ("middle_connections_opened", "1"),
        ("middle_frames_from_middle_end", "7"),
        ("middle_frames_to_middle_end", "8"),
        ("middle_cluster_2_connections_opened", "1"),
        ("middle_cluster_2_frames_to_middle_end", "8"),
    ] {
        assert_eq!(kv.get(k).copied(), Some(v), "/stats {k}");
    }
    let (samples, types) = parse_prom(&get(p.stats, "/metrics").await);
    let v = |k: &str| samples.get(&format!("vless_mtproxy_{k}")).copied().unwrap_or_else(|| panic!("no sample {k}"));
    assert_eq!(v("middle_sessions_total"), 2.0);
    assert_eq!(v("middle_sessions_active"), 0.0);
    assert_eq!(v("middle_packets_dropped_total"), 1.0);
    assert_eq!(v("middle_connect_failures_total"), 0.0);
    assert_eq!(v("middle_config_refreshes_total{result=\"ok\"}"), 1.0);
    assert_eq!(v("middle_config_refreshes_total{result=\"failed\"}"), 0.0);
    assert_eq!(v("middle_config_generation"), 1.0);
    assert_eq!(v("middle_clusters{family=\"ipv4\"}"), 1.0);
    assert_eq!(v("middle_connections_active{cluster=\"2\"}"), 1.0);
    assert_eq!(v("middle_connections_opened_total{cluster=\"2\"}"), 1.0);
    assert_eq!(v("middle_connection_open_failures_total{cluster=\"2\"}"), 0.0);
    assert_eq!(v("middle_frames_total{cluster=\"2\",direction=\"from_middle_end\"}"), 7.0);
    assert_eq!(v("middle_frames_total{cluster=\"2\",direction=\"to_middle_end\"}"), 8.0);
    for (family, kind) in [
        ("middle_config_generation", "gauge"),
        ("middle_clusters", "gauge"),
        ("middle_config_refreshes_total", "counter"),
        ("middle_config_last_refresh_timestamp_seconds", "gauge"),
        ("middle_sessions_active", "gauge"),
        ("middle_sessions_total", "counter"),
        ("middle_connect_failures_total", "counter"),
        ("middle_packets_dropped_total", "counter"),
        ("middle_connections_active", "gauge"),
        ("middle_connections_opened_total", "counter"),
        ("middle_connection_open_failures_total", "counter"),
        ("middle_frames_total", "counter"),
    ] {
        assert_eq!(types.get(&format!("vless_mtproxy_{family}")).map(String::as_str), Some(kind), "{family}");
    }

    // The cluster moves to another middle-end: the refresh starts generation 2, the next client
    // gets a new pool, the idle connection of the old one closes, and the cluster's counters
    // go on from where they were.
    let me2 = FakeMe::start(proxy_secret()).await.unwrap();
    files.point_at(&[me2.addr]);
    assert!(p.shared.middle.refresh(&settings).await.unwrap());
    let mut c = Client::connect(p.addr, &Secret::from_hex(S_DD).unwrap(), &Mode::Padded, 2).await.unwrap();
    exchange(&mut c, ProtoTag::PaddedIntermediate, 4).await;
    // Out: +2 requests +1 pong; in: +1 ping +2 answers.
    let m = eventually(&p, "the new pool in use", |m| m.connections_active == 1 && m.frames_to_middle_end == 11).await;
    assert_eq!((m.config_generation, m.refreshes_ok, m.connections_opened, m.frames_from_middle_end), (2, 2, 2, 10));
    assert_eq!((m.sessions_active, m.sessions_total, m.clusters.len()), (1, 3, 1));
    wait_for("the new middle-end's log", || (me2.log().handshakes, me2.log().requests.len()) == (1, 2)).await;
}

#[tokio::test]
async fn middle_failures_are_counted() {
    // A middle-end with another proxy secret (same key selector): the handshake fails.
    let me = FakeMe::start(proxy_secret()).await.unwrap();
    let mut wrong = proxy_secret();
    wrong[100] ^= 1;
    let files = MeFiles::new(&wrong, &[me.addr]);
    let cfg = config(&files.section(Some(AD_TAG), 1));
    let mut settings = cfg.middle.clone();
    let p = start(cfg).await;
    let mut d = Client::connect(p.addr, &Secret::from_hex(S_CLASSIC).unwrap(), &Mode::Classic(ProtoTag::Intermediate), 2).await.unwrap();
    send_packet(&mut d, ProtoTag::Intermediate, &req_pq_multi([1; 16]), false).await.unwrap();
    let r = tokio::time::timeout(Duration::from_secs(10), d.recv(1)).await.expect("closed in time");
    assert!(r.is_err(), "no middle-end: the client is closed");
    let m = eventually(&p, "the failure counted", |m| m.connect_failures == 1).await;
    assert_eq!((m.connection_open_failures, m.connections_opened, m.connections_active, m.sessions_total, m.sessions_active), (1, 0, 0, 0, 0));
    assert_eq!((m.frames_to_middle_end, m.frames_from_middle_end), (0, 0));
    let rep = report(&p).await;
    assert_eq!(rep.upstream.connect_failures, 1, "also an upstream failure");

    // A refresh whose secret file is gone: counted as failed, the copy in force stays.
    settings.proxy_secret = mtproxy_core::config::Source::File(files.path("missing-secret"));
    assert!(p.shared.middle.refresh(&settings).await.is_err());
    let m = middle(&p).await;
    assert_eq!((m.refreshes_ok, m.refreshes_failed, m.last_refresh_ok_at, m.config_generation), (0, 1, None, 1));
    let (samples, _) = parse_prom(&get(p.stats, "/metrics").await);
    assert_eq!(samples["vless_mtproxy_middle_connection_open_failures_total{cluster=\"2\"}"], 1.0);
    assert_eq!(samples["vless_mtproxy_middle_connect_failures_total"], 1.0);
    assert_eq!(samples["vless_mtproxy_middle_config_refreshes_total{result=\"failed\"}"], 1.0);
}

#[tokio::test]
async fn direct_mode_has_no_middle_section() {
    let me = FakeMe::start(proxy_secret()).await.unwrap();
    let files = MeFiles::new(&proxy_secret(), &[me.addr]);
    let p = start(config(&files.section(None, 1))).await;
    let json: serde_json::Value = serde_json::from_str(&get(p.stats, "/stats.json").await).unwrap();
    assert!(json["middle"].is_null(), "{}", json["middle"]);
    assert!(!get(p.stats, "/stats").await.contains("middle_"));
    assert!(!get(p.stats, "/metrics").await.contains("vless_mtproxy_middle_"));
    // A proxy older than the section: the CLI still reads its report.
    let mut old = json.clone();
    old.as_object_mut().unwrap().remove("middle");
    let r: Report = serde_json::from_value(old).unwrap();
    assert!(r.middle.is_none());

    // Tag set live: the section appears.
    p.shared.reload(config(&files.section(Some(AD_TAG), 1)));
    let m = middle(&p).await;
    assert_eq!((m.sessions_total, m.connections_opened), (0, 0));
}
