//! The statistics listener with `[stats] tls_cert`/`tls_key`: HTTPS only (a plain request gets
//! no HTTP answer), the CLI's pinned client accepts the configured certificate and nothing
//! else, and a reload with another certificate is served from the next connection on.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use mtproxy_core::config::parse_str;
use mtproxy_core::stats_listener::{tls, Options};
use mtproxy_testkit::proxy::Start;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn config(name: &str) -> mtproxy_core::config::Config {
    let d = env!("CARGO_MANIFEST_DIR");
    let text = format!("[server]\nlisten = [\"127.0.0.1:1\"]\n[stats]\ntls_cert = \"{d}/testdata/{name}.crt\"\ntls_key = \"{d}/testdata/{name}.key\"\n");
    parse_str(&text, Path::new("t.toml")).unwrap()
}

fn pem(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/testdata/{name}.crt", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

async fn read_all<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> Vec<u8> {
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    buf
}

async fn https_get(addr: SocketAddr, cert: &str, path: &str) -> std::io::Result<String> {
    let c = tls::pinned_connector(&pem(cert)).unwrap();
    let tcp = TcpStream::connect(addr).await?;
    let mut s = c.connect(rustls::pki_types::ServerName::IpAddress(addr.ip().into()), tcp).await?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").as_bytes()).await?;
    Ok(String::from_utf8_lossy(&read_all(&mut s).await).into_owned())
}

#[tokio::test]
async fn https_only_with_the_configured_certificate() {
    let px = Start::new(config("stats-a")).stats(Options::default()).start();
    let (shared, addr, stop) = (px.shared, px.stats.unwrap(), px.stop);

    let r = https_get(addr, "stats-a", "/metrics").await.unwrap();
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(r.contains("mtproxy_"), "{r}");
    // Plain HTTP: no HTTP answer (the handshake fails, the connection closes).
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").await.unwrap();
    let plain = read_all(&mut s).await;
    assert!(!plain.starts_with(b"HTTP/"), "{:?}", String::from_utf8_lossy(&plain));
    // The pinned client refuses another certificate.
    assert!(https_get(addr, "stats-b", "/health").await.is_err());

    // A reload with the other pair: new connections get it.
    shared.reload(config("stats-b"));
    let r = https_get(addr, "stats-b", "/health").await.unwrap();
    assert!(r.starts_with("HTTP/1.1 "), "{r}");
    assert!(https_get(addr, "stats-a", "/health").await.is_err());
    stop.cancel();
}
