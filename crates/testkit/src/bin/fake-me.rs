//! `fake-me`: the test tree's fake Telegram middle-end as a process, for the Python e2e suite.
//!
//! ```text
//! fake-me --secret-file PATH [--listen 127.0.0.1:0]
//! ```
//! Prints `LISTENING <addr>` once ready, then one JSON object per line for each event
//! (`handshake`, `proxy_req` with ad tag, flags, client/proxy address and MTProto constructor,
//! `close_conn`). Runs until killed. Loopback only: it refuses other listen addresses.

use std::io::Write;
use std::net::SocketAddr;

use mtproxy_testkit::fake_me::FakeMe;

fn usage() -> ! {
    eprintln!("usage: fake-me --secret-file PATH [--listen 127.0.0.1:PORT]");
    std::process::exit(2)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let mut secret_file = None;
    let mut listen: SocketAddr = "127.0.0.1:0".parse().unwrap();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--secret-file" => secret_file = Some(args.next().unwrap_or_else(|| usage())),
            "--listen" => listen = args.next().and_then(|v| v.parse().ok()).unwrap_or_else(|| usage()),
            _ => usage(),
        }
    }
    let Some(secret_file) = secret_file else { usage() };
    if !listen.ip().is_loopback() {
        eprintln!("fake-me: refusing to listen on {listen}: loopback addresses only");
        std::process::exit(2);
    }
    let secret = std::fs::read(&secret_file).unwrap_or_else(|e| {
        eprintln!("fake-me: cannot read {secret_file}: {e}");
        std::process::exit(2)
    });
    if secret.len() < 32 {
        eprintln!("fake-me: {secret_file} holds {} bytes; a proxy secret has at least 32", secret.len());
        std::process::exit(2);
    }
    let listener = tokio::net::TcpListener::bind(listen).await.unwrap_or_else(|e| {
        eprintln!("fake-me: cannot listen on {listen}: {e}");
        std::process::exit(2)
    });
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let me = FakeMe::start_on(listener, secret, Some(tx)).expect("fake middle-end");
    println!("LISTENING {}", me.addr);
    let _ = std::io::stdout().flush();
    while let Some(line) = rx.recv().await {
        println!("{line}");
        let _ = std::io::stdout().flush();
    }
}
