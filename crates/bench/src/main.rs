//! `bench`: the load benchmark of vless-mtproxy (docs/performance.md).
//!
//! ```text
//! bench [--smoke] [--workers N] [--mib N] [--only aes,stall,throughput,latency,handshake,idle,socks5]
//!       [--proxy-bin PATH] [--no-netns]
//! bench fake-dc ADDR                     (child process: the fake DC)
//! bench bare-relay ADDR DC_ADDR WORKERS BUF  (child process: the reference relay)
//! ```
//! The main command enters a network namespace of its own (loopback MTU 1500), starts the fake
//! DC, then for each scenario the proxy under test (the release `vless-mtproxy` binary) or the
//! bare relay, drives it with the load client, and prints one JSON line per measurement. It
//! exits non-zero when a scenario fails or the stall check does not pass.

mod bare;
mod client;
mod fakedc;
mod netns;
mod procs;
mod procstat;
mod scenarios;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: bench [--smoke] [--workers N] [--mib N] [--only LIST] [--proxy-bin PATH] [--no-netns]\n\
    LIST: comma-separated from aes,stall,throughput,latency,handshake,idle,socks5";

fn runtime(workers: usize) -> tokio::runtime::Runtime {
    if workers <= 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime")
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(workers).enable_all().build().expect("tokio runtime")
    }
}

fn parse_addr(s: Option<&String>) -> Result<SocketAddr, String> {
    s.ok_or("missing address")?.parse().map_err(|_| format!("`{}` is not an address like 127.0.0.1:5000", s.unwrap()))
}

fn child(args: &[String]) -> Result<(), String> {
    match args[0].as_str() {
        "fake-dc" => {
            let addr = parse_addr(args.get(1))?;
            let rt = runtime(1);
            rt.block_on(async {
                let l = tokio::net::TcpListener::bind(addr).await.map_err(|e| format!("fake DC cannot listen on {addr}: {e}"))?;
                fakedc::run(l).await;
                Ok(())
            })
        }
        "bare-relay" => {
            let addr = parse_addr(args.get(1))?;
            let dc = parse_addr(args.get(2))?;
            let workers: usize = args.get(3).and_then(|w| w.parse().ok()).ok_or("bare-relay needs a worker count")?;
            let buf: usize = args.get(4).and_then(|w| w.parse().ok()).unwrap_or(8192);
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(workers.max(1)).enable_all().build().map_err(|e| e.to_string())?;
            rt.block_on(async {
                let l = tokio::net::TcpListener::bind(addr).await.map_err(|e| format!("bare relay cannot listen on {addr}: {e}"))?;
                bare::run(l, dc, buf).await;
                Ok(())
            })
        }
        _ => unreachable!(),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if matches!(args.first().map(String::as_str), Some("fake-dc" | "bare-relay")) {
        return match child(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("bench {}: {e}", args[0]);
                ExitCode::FAILURE
            }
        };
    }
    let mut smoke = false;
    let mut workers = 1usize;
    let mut mib: Option<u64> = None;
    let mut only = None;
    let mut proxy_bin: Option<PathBuf> = None;
    let mut use_netns = true;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = |name: &str| it.next().cloned().ok_or_else(|| format!("{name} needs a value\n{USAGE}"));
        let r: Result<(), String> = match a.as_str() {
            "--smoke" => {
                smoke = true;
                Ok(())
            }
            "--no-netns" => {
                use_netns = false;
                Ok(())
            }
            "--workers" => val("--workers").and_then(|v| v.parse().map(|w| workers = w).map_err(|_| format!("--workers: `{v}` is not a number"))),
            "--mib" => val("--mib").and_then(|v| v.parse().map(|m| mib = Some(m)).map_err(|_| format!("--mib: `{v}` is not a number"))),
            "--only" => val("--only").map(|v| only = Some(v.split(',').map(str::to_string).collect())),
            "--proxy-bin" => val("--proxy-bin").map(|v| proxy_bin = Some(PathBuf::from(v))),
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => Err(format!("unknown argument `{other}`\n{USAGE}")),
        };
        if let Err(e) = r {
            eprintln!("bench: {e}");
            return ExitCode::from(2);
        }
    }
    let proxy_bin = match proxy_bin {
        Some(p) => p,
        None => {
            let exe = std::env::current_exe().expect("own path");
            let p = exe.with_file_name("vless-mtproxy");
            // Under `cargo run`, build the proxy too (a no-op when it is up to date).
            if let Ok(cargo) = std::env::var("CARGO") {
                let st = std::process::Command::new(cargo)
                    .args(["build", "--release", "--bin", "vless-mtproxy", "--manifest-path"])
                    .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.toml"))
                    .status();
                if !matches!(st, Ok(s) if s.success()) {
                    eprintln!("bench: building the proxy failed");
                    return ExitCode::from(2);
                }
            }
            if !p.exists() {
                eprintln!("bench: {} not found; build it first: cargo build --release --bin vless-mtproxy (or pass --proxy-bin)", p.display());
                return ExitCode::from(2);
            }
            p
        }
    };
    if use_netns {
        if let Err(e) = netns::enter() {
            eprintln!("bench: {e}");
            return ExitCode::from(2);
        }
    }
    let nofile = netns::raise_nofile();
    let dir = std::env::temp_dir().join(format!("vless-bench-{}", std::process::id()));
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("bench: creating {}: {e}", dir.display());
        return ExitCode::FAILURE;
    }
    let settings = scenarios::Settings { smoke, workers, bytes: mib.unwrap_or(if smoke { 2 } else { 512 }) << 20, only, proxy_bin, dir: dir.clone(), nofile };
    let code = run(settings);
    let _ = std::fs::remove_dir_all(&dir);
    code
}

fn run(settings: scenarios::Settings) -> ExitCode {
    let dc_addr: SocketAddr = match std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("bench: no free port: {e}");
            return ExitCode::FAILURE;
        }
    };
    let dc = match procs::start_self(&["fake-dc".to_string(), dc_addr.to_string()], dc_addr, "the fake DC") {
        Ok(p) => p,
        Err(e) => {
            eprintln!("bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut b = scenarios::Bench { s: settings, dc: dc_addr, results: Vec::new(), failures: Vec::new() };
    let rt = runtime(1);
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, scenarios::run_all(&mut b));
    drop(rt);
    drop(dc);
    if b.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        for f in &b.failures {
            eprintln!("bench: FAILED: {f}");
        }
        ExitCode::FAILURE
    }
}
