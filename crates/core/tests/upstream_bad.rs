//! Upstream servers that misbehave, each a scripted peer on loopback that answers what no
//! SOCKS5 or HTTP proxy should (or a refusal a real one sends): every case gives a named error,
//! a counted failure for the server, and, when the server itself is at fault, the next server
//! of the plan is tried. (Real servers — dante, tinyproxy — are exercised end to end in
//! tests/e2e/test_upstream.py.)

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use mtproxy_core::config::parse_str;
use mtproxy_core::dc::Target;
use mtproxy_core::stats::Stats;
use mtproxy_core::upstream::{open, open_planned, LegError, Router};
use mtproxy_proto::http_connect::HttpConnectError;
use mtproxy_proto::socks5::{Reply, Socks5Error};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A peer that, per connection, reads once before each canned answer, then closes.
async fn scripted(answers: Vec<&'static [u8]>) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let answers = answers.clone();
            tokio::spawn(async move {
                let mut b = [0u8; 1024];
                for a in answers {
                    if s.read(&mut b).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let _ = s.write_all(a).await;
                }
            });
        }
    });
    addr
}

/// A port nothing listens on.
async fn closed_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

fn router(servers: &str, stats: &Stats) -> Router {
    let cfg = parse_str(&format!("[upstream]\nretry_after = \"60s\"\n{servers}"), Path::new("t.toml")).unwrap();
    Router::new(&cfg.upstream, stats)
}

fn socks(name: &str, addr: SocketAddr, extra: &str) -> String {
    format!("[[upstream.servers]]\nname = \"{name}\"\ntype = \"socks5\"\naddress = \"{addr}\"\n{extra}\n")
}

fn http(name: &str, addr: SocketAddr, extra: &str) -> String {
    format!("[[upstream.servers]]\nname = \"{name}\"\ntype = \"http\"\naddress = \"{addr}\"\n{extra}\n")
}

async fn attempt(servers: String) -> LegError {
    let stats = Stats::default();
    let r = router(&servers, &stats);
    let target = Target::Addr("127.0.0.1:9".parse().unwrap());
    match open(&r.routes()[0].kind, &target, Duration::from_secs(2)).await {
        Ok(_) => panic!("connected through a broken upstream"),
        Err(e) => e,
    }
}

#[tokio::test]
async fn every_bad_answer_has_a_named_error() {
    let cases: Vec<(String, &str)> = vec![
        (socks("s", closed_port().await, ""), "cannot reach the upstream server"),
        (socks("s", scripted(vec![b"HTTP/1.1 400 Bad Request\r\n\r\n"]).await, ""), "not a SOCKS5 server"),
        (socks("s", scripted(vec![b"\x05\xff"]).await, ""), "accepts none of the offered methods"),
        (socks("s", scripted(vec![b"\x05\x02"]).await, ""), "chose method 0x02, which was not offered"),
        (socks("s", scripted(vec![b"\x05\x02", b"\x01\x01"]).await, "username = \"u\"\npassword = \"hunter2-pw\""), "refused the username/password"),
        (socks("s", scripted(vec![b"\x05\x00", b"\x05\x02\x00\x01\0\0\0\0\0\0"]).await, ""), "connection not allowed by ruleset (0x02)"),
        (socks("s", scripted(vec![b"\x05\x00", b"\x05\x00\x00\x09"]).await, ""), "unknown address type 0x09"),
        (socks("s", scripted(vec![b"\x05\x00", b"\x05\x00\x00\x01\x7f\0\0\x01\0\x50extra"]).await, ""), "sent bytes after its reply"),
        (socks("s", scripted(vec![b"\x05"]).await, ""), "closed the connection during its handshake"),
        (http("h", closed_port().await, ""), "cannot reach the upstream server"),
        (http("h", scripted(vec![b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n"]).await, ""), "answered 407 Proxy Authentication Required"),
        (http("h", scripted(vec![b"HTTP/1.0 403 Filtered\r\n\r\n"]).await, "username = \"u\"\npassword = \"hunter2-pw\""), "answered 403 Filtered"),
        (http("h", scripted(vec![b"\x05\x00"]).await, ""), "not an HTTP response"),
        (http("h", scripted(vec![b"HTTP/1.1 200 OK\r\n"]).await, ""), "closed the connection during its handshake"),
    ];
    for (servers, want) in cases {
        let e = attempt(servers.clone()).await;
        let text = e.to_string();
        assert!(text.contains(want), "{servers}: got `{text}`, want `{want}`");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(e.server_at_fault(), "{text}");
    }
}

#[tokio::test]
async fn target_side_refusals_do_not_take_the_server_out() {
    for (servers, want) in [
        (socks("s", scripted(vec![b"\x05\x00", b"\x05\x05\x00\x01\0\0\0\0\0\0"]).await, ""), LegErrorKind::Socks(Reply::ConnectionRefused)),
        (socks("s", scripted(vec![b"\x05\x00", b"\x05\x04"]).await, ""), LegErrorKind::Socks(Reply::HostUnreachable)),
        (http("h", scripted(vec![b"HTTP/1.1 502 Bad Gateway\r\n\r\n"]).await, ""), LegErrorKind::Http(502)),
    ] {
        let e = attempt(servers).await;
        match (&e, want) {
            (LegError::Socks5(Socks5Error::Refused(r)), LegErrorKind::Socks(w)) => assert_eq!(*r, w),
            (LegError::Http(HttpConnectError::Status { code, .. }), LegErrorKind::Http(w)) => assert_eq!(*code, w),
            _ => panic!("unexpected {e}"),
        }
        assert!(!e.server_at_fault(), "{e}");
    }
}

enum LegErrorKind {
    Socks(Reply),
    Http(u16),
}

#[tokio::test]
async fn a_failed_server_is_counted_skipped_and_the_next_one_carries_the_connection() {
    let stats = Stats::default();
    let target = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dc = target.local_addr().unwrap();
    let dead = closed_port().await;
    let servers = format!("{}[[upstream.servers]]\nname = \"fallback\"\ntype = \"direct\"\nweight = 1\n", socks("first", dead, "weight = 1000"));
    let r = router(&servers, &stats);
    let targets = [Target::Addr(dc)];
    let mut vias = Vec::new();
    for _ in 0..5 {
        let (o, via) = open_planned(&r, &stats, 2, &targets, Duration::from_secs(2)).await.unwrap();
        assert_eq!(o.stream.peer_addr().unwrap(), dc);
        vias.push(via);
    }
    assert!(vias.iter().all(|v| v == "fallback"), "{vias:?}");
    let first = stats.upstream("first");
    // Tried once, then out of rotation (retry_after 60 s): later connections went straight to
    // the fallback (weights 1000:1 would have put `first` first almost every time).
    assert_eq!(first.connect_failures.load(Relaxed), 1);
    assert_eq!(first.marked_down.load(Relaxed), 1);
    assert!(!first.is_up(stats.clock_ms()));
    assert_eq!(stats.upstream("fallback").connects_ok.load(Relaxed), 5);
    // Every server failing: one error naming the last attempt.
    let all_dead = router(&socks("only", dead, ""), &stats);
    let e = open_planned(&all_dead, &stats, 2, &targets, Duration::from_secs(2)).await.err().unwrap();
    assert!(e.to_string().contains("via socks5"), "{e}");
}
