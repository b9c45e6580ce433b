//! `vless-mtproxy health` against the real binary: with the statistics listener on it asks
//! `GET /health` (and the probe is not a client connection of the proxy), with a token too; with
//! the listener off it falls back to a TCP connect and says so; a stopped proxy, a non-200
//! answer and a silent listener each fail with exit 1 and a one-line reason. All on loopback.

mod cli_common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use cli_common::{terminate, Env};

const TOKEN: &str = "health-check-token-0123456789";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn config(port: u16, stats: &str) -> String {
    format!(
        "[server]\nlisten = [\"127.0.0.1:{port}\"]\npublic_host = \"127.0.0.1\"\n[stats]\n{stats}\n[fronting]\nenabled = false\n[users.alice]\nsecret = \"00112233445566778899aabbccddeeff\"\nkind = \"dd\"\n"
    )
}

/// One GET over a fresh connection: (status, body).
fn get(port: u16, path: &str, token: Option<&str>) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n").as_bytes()).ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let status = buf.split(' ').nth(1)?.parse().ok()?;
    Some((status, buf.split_once("\r\n\r\n")?.1.to_string()))
}

struct Proxy {
    child: Option<Child>,
    log: PathBuf,
}

impl Proxy {
    /// Start `serve` and wait until it accepts clients: via `/stats.json` (its `listen` list is
    /// filled) when the statistics listener is on, else via the log line of the listener, so
    /// the wait itself never connects to the client port.
    fn start(env: &Env, stats_port: Option<u16>, token: Option<&str>) -> Proxy {
        let log = env.dir.path().join("serve.log");
        let child = env.cmd(&["serve", "--drain", "1s"]).stdout(Stdio::null()).stderr(std::fs::File::create(&log).unwrap()).spawn().unwrap();
        let mut p = Proxy { child: Some(child), log };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let ready = match stats_port {
                Some(sp) => {
                    get(sp, "/stats.json", token).is_some_and(|(st, body)| st == 200 && json(&body)["listen"].as_array().is_some_and(|l| !l.is_empty()))
                }
                None => p.log().contains("proxy started"),
            };
            if ready {
                return p;
            }
            assert!(p.child.as_mut().unwrap().try_wait().unwrap().is_none(), "proxy exited:\n{}", p.log());
            assert!(Instant::now() < deadline, "proxy did not start:\n{}", p.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM and wait for the exit.
    fn stop(&mut self) {
        if let Some(c) = self.child.take() {
            terminate(c);
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or(serde_json::Value::Null)
}

fn health(env: &Env, extra: &[&str]) -> Output {
    let mut args = vec!["health"];
    args.extend_from_slice(extra);
    env.run(&args)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Exit 1 with exactly one line on stderr, which starts `unhealthy:`; returns that line.
fn unhealthy(o: &Output) -> String {
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "should be unhealthy; stdout: {} stderr: {err}", text(&o.stdout));
    let lines: Vec<&str> = err.trim().lines().collect();
    assert_eq!(lines.len(), 1, "one line of reason: {err}");
    assert!(lines[0].starts_with("unhealthy: "), "{err}");
    lines[0].to_string()
}

#[test]
fn health_asks_the_statistics_listener_and_is_not_a_client() {
    let (port, sp) = (free_port(), free_port());
    let env = Env::new(Some(&config(port, &format!("listen = \"127.0.0.1:{sp}\""))));
    let mut proxy = Proxy::start(&env, Some(sp), None);
    let before = json(&get(sp, "/stats.json", None).unwrap().1);

    let o = health(&env, &[]);
    assert!(o.status.success(), "{}\n{}\n{}", text(&o.stdout), text(&o.stderr), proxy.log());
    assert_eq!(text(&o.stdout).trim(), format!("ok: GET /health on the statistics listener 127.0.0.1:{sp} answered 200"));

    // The check went to the statistics listener, not to the client port.
    let after = json(&get(sp, "/stats.json", None).unwrap().1);
    assert_eq!(after["connections"]["total"], 0, "health must not be a client connection: {after}");
    assert_eq!(after["connections"]["closed_early"], 0);
    let reqs = |v: &serde_json::Value| v["stats_http"]["requests"].as_u64().unwrap();
    // before's own request, health's, and after's own.
    assert_eq!(reqs(&after), reqs(&before) + 2);

    // Stopped: the statistics port refuses, and the reason says so.
    proxy.stop();
    let line = unhealthy(&health(&env, &[]));
    assert!(line.contains(&format!("GET /health on the statistics listener: cannot connect to 127.0.0.1:{sp}")), "{line}");
    assert!(line.to_lowercase().contains("refused"), "{line}");
}

#[test]
fn health_with_a_token_and_after_a_bad_edit() {
    let (port, sp) = (free_port(), free_port());
    let env = Env::new(Some(&config(port, &format!("listen = \"127.0.0.1:{sp}\"\ntoken = \"{TOKEN}\""))));
    let proxy = Proxy::start(&env, Some(sp), Some(TOKEN));
    let o = health(&env, &[]);
    assert!(o.status.success(), "{}\n{}", text(&o.stderr), proxy.log());
    assert!(text(&o.stdout).contains(&format!("127.0.0.1:{sp} answered 200")));

    // A bad edit: the proxy refuses it and keeps running, and so health stays green, found
    // through the file's [stats] lines.
    std::fs::write(&env.cfg, format!("{}\n[users.broken]\nsecret = \"zz\"\n", config(port, &format!("listen = \"127.0.0.1:{sp}\"\ntoken = \"{TOKEN}\""))))
        .unwrap();
    let o = health(&env, &[]);
    assert!(o.status.success(), "{}\n{}", text(&o.stderr), proxy.log());
    assert!(text(&o.stderr).contains("does not validate"), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("answered 200"));
}

#[test]
fn health_without_statistics_falls_back_to_tcp() {
    let port = free_port();
    let env = Env::new(Some(&config(port, "listen = \"off\"")));
    let mut proxy = Proxy::start(&env, None, None);
    let o = health(&env, &[]);
    assert!(o.status.success(), "{}\n{}", text(&o.stderr), proxy.log());
    assert_eq!(text(&o.stdout).trim(), format!("ok: the proxy accepts connections on 127.0.0.1:{port} (TCP connect check: the statistics listener is off)"));
    proxy.stop();
    let line = unhealthy(&health(&env, &[]));
    assert!(line.starts_with("unhealthy: TCP connect check (the statistics listener is off): no listen address accepts connections (127.0.0.1:"), "{line}");
    assert!(line.to_lowercase().contains("refused"), "{line}");
}

/// A one-connection HTTP server on loopback: records the request, answers `reply` (or nothing,
/// holding the connection open until the client leaves).
fn one_shot_server(reply: Option<&'static str>) -> (u16, std::thread::JoinHandle<String>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let h = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut req = Vec::new();
        let mut b = [0u8; 1024];
        while !req.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut b) {
                Ok(0) | Err(_) => break,
                Ok(n) => req.extend_from_slice(&b[..n]),
            }
        }
        match reply {
            Some(r) => s.write_all(r.as_bytes()).unwrap(),
            // Silent: wait (bounded by the read timeout) until the client gives up.
            None => while matches!(s.read(&mut b), Ok(n) if n > 0) {},
        }
        String::from_utf8_lossy(&req).into_owned()
    });
    (port, h)
}

#[test]
fn health_sends_the_token_and_reports_status_and_timeout() {
    let port = free_port();
    // 200 from a server that records the request: path and bearer token as configured.
    let (sp, srv) = one_shot_server(Some("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n"));
    let env = Env::new(Some(&config(port, &format!("listen = \"127.0.0.1:{sp}\"\ntoken = \"{TOKEN}\""))));
    assert!(health(&env, &[]).status.success());
    let req = srv.join().unwrap();
    assert!(req.starts_with("GET /health HTTP/1.1\r\n"), "{req}");
    assert!(req.contains(&format!("\r\nAuthorization: Bearer {TOKEN}\r\n")), "{req}");

    // 503 with the proxy's reason: status code and the body's first line.
    let (sp, srv) = one_shot_server(Some(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 43\r\nConnection: close\r\n\r\nnot ready: no client listener is accepting\n",
    ));
    std::fs::write(&env.cfg, config(port, &format!("listen = \"127.0.0.1:{sp}\""))).unwrap();
    let line = unhealthy(&health(&env, &[]));
    assert_eq!(line, format!("unhealthy: GET /health on the statistics listener 127.0.0.1:{sp} answered HTTP 503: not ready: no client listener is accepting"));
    assert!(!srv.join().unwrap().contains("Authorization"), "no token configured, none sent");

    // Accepts and stays silent: the timeout ends it.
    let (sp, srv) = one_shot_server(None);
    std::fs::write(&env.cfg, config(port, &format!("listen = \"127.0.0.1:{sp}\""))).unwrap();
    let t0 = Instant::now();
    let line = unhealthy(&health(&env, &["--timeout", "1s"]));
    assert!(t0.elapsed() < Duration::from_secs(8), "the timeout bounds the check");
    assert_eq!(line, format!("unhealthy: GET /health on the statistics listener: 127.0.0.1:{sp} did not answer within 1 s"));
    srv.join().unwrap();
}
