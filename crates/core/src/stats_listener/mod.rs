//! The statistics listener: `/stats`, `/stats.json`, `/metrics`, `/health` over HTTP/1.1
//! (docs/design.md "observers"; docs/protocol.md §6 for the official and Prometheus conventions).
//!
//! It is an observer: it reads the counters in [`crate::stats`] when asked and never sits on
//! the relay path. Bad clients cost little and cannot hang it:
//! * at most [`Limits::max_connections`] connections at once; one more gets `503` and is closed;
//! * request headers must arrive within [`Limits::header_timeout`] (a slowloris client is cut
//!   off) and fit in [`Limits::max_header_bytes`] (larger: `431` and close);
//! * a connection lives at most [`Limits::max_lifetime`]; bodies are never read (only `GET` and
//!   `HEAD` are served, anything else gets `405`); unknown paths get `404`.
//!
//! With a bearer token configured, every path but `/health` wants
//! `Authorization: Bearer TOKEN` (compared in constant time); `/health` says only up or down.
//!
//! With `[stats] tls_cert`/`tls_key` ([`tls`]) every connection is TLS (1.2 or 1.3) and plain
//! HTTP is not served: a plain request fails the handshake and the connection closes. The TLS
//! handshake counts against [`Limits::header_timeout`].
//!
//! A [`Mount`] (the web panel of the binary, docs/panel.md) may take over `/` and the paths it
//! claims; it gets the whole request (it may read a bounded body) and does its own
//! authentication. The same connection limits apply to it.

pub mod render;
pub mod report;
pub mod tls;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, AUTHORIZATION, CONNECTION, CONTENT_TYPE, WWW_AUTHENTICATE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use subtle::ConstantTimeEq;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::config::BearerToken;
use crate::server::Shared;
pub use report::{collect, Context, Report};

/// Bounds on what one client of the listener may cost.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    /// hyper's read buffer; it cannot be below 8192.
    pub max_header_bytes: usize,
    pub max_lifetime: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_connections: 32, header_timeout: Duration::from_secs(5), max_header_bytes: 16 * 1024, max_lifetime: Duration::from_secs(60) }
    }
}

/// A response future of a [`Mount`].
pub type MountFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Response<Full<Bytes>>> + Send>>;

/// Extra pages served on the statistics listener, outside this crate (the web panel).
pub trait Mount: Send + Sync {
    /// Whether this path is the mount's (checked before the statistics paths).
    fn handles(&self, path: &str) -> bool;
    /// Answer one request; `peer` is the client's address.
    fn call(&self, req: Request<Incoming>, peer: SocketAddr) -> MountFuture;
}

/// What the listener needs besides the shared state.
#[derive(Clone, Default)]
pub struct Options {
    pub token: Option<BearerToken>,
    pub config_path: Option<String>,
    pub limits: Limits,
    pub mount: Option<Arc<dyn Mount>>,
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("token", &self.token)
            .field("config_path", &self.config_path)
            .field("limits", &self.limits)
            .field("mount", &self.mount.is_some())
            .finish()
    }
}

#[derive(Default)]
struct Counters {
    connections: AtomicU64,
    requests: AtomicU64,
    bad: AtomicU64,
}

struct State {
    shared: Arc<Shared>,
    opts: Options,
    counters: Counters,
    tls: tls::Acceptors,
}

/// Serve the statistics endpoints on `listener` until `shutdown`.
pub async fn serve_stats(listener: TcpListener, shared: Arc<Shared>, opts: Options, shutdown: CancellationToken) {
    let limits = opts.limits.clone();
    let state = Arc::new(State { shared, opts, counters: Counters::default(), tls: tls::Acceptors::default() });
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        let (mut stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => return,
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "stats listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        state.counters.connections.fetch_add(1, Relaxed);
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            state.counters.bad.fetch_add(1, Relaxed);
            tokio::spawn(async move {
                let busy = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
                let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(busy)).await;
            });
            continue;
        };
        let state = state.clone();
        let limits = limits.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let svc_state = state.clone();
            let svc = hyper::service::service_fn(move |req| {
                let st = svc_state.clone();
                async move {
                    if let Some(m) = st.opts.mount.as_ref().filter(|m| m.handles(req.uri().path())) {
                        st.counters.requests.fetch_add(1, Relaxed);
                        let resp = m.call(req, peer).await;
                        if resp.status().is_client_error() {
                            st.counters.bad.fetch_add(1, Relaxed);
                        }
                        return Ok::<_, Infallible>(resp);
                    }
                    Ok::<_, Infallible>(respond(&st, req))
                }
            });
            let tls = state.shared.snapshot.load().config.stats_tls.clone();
            match tls {
                None => serve_connection(stream, svc, &state, &limits, &shutdown).await,
                Some(t) => {
                    let Some(acceptor) = state.tls.get(&t) else { return };
                    let hs = tokio::select! {
                        r = tokio::time::timeout(limits.header_timeout, acceptor.accept(stream)) => r,
                        _ = shutdown.cancelled() => return,
                    };
                    match hs {
                        Ok(Ok(tls_stream)) => serve_connection(tls_stream, svc, &state, &limits, &shutdown).await,
                        Ok(Err(e)) => {
                            state.counters.bad.fetch_add(1, Relaxed);
                            tracing::debug!(peer = %peer.ip(), error = %e, "stats listener: TLS handshake failed");
                        }
                        Err(_) => {
                            state.counters.bad.fetch_add(1, Relaxed);
                            tracing::debug!(peer = %peer.ip(), "stats listener: TLS handshake timed out");
                        }
                    }
                }
            }
        });
    }
}

/// One HTTP/1.1 connection (plain or TLS) with the lifetime and shutdown bounds.
async fn serve_connection<I, S>(io: I, svc: S, state: &State, limits: &Limits, shutdown: &CancellationToken)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::HttpService<Incoming, ResBody = Full<Bytes>>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .keep_alive(true)
        .serve_connection(TokioIo::new(io), svc);
    let mut conn = std::pin::pin!(conn);
    let deadline = tokio::time::sleep(limits.max_lifetime);
    tokio::pin!(deadline);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                state.counters.bad.fetch_add(1, Relaxed);
                tracing::debug!(error = %e, "stats listener: connection ended with an error");
            }
        }
        _ = &mut deadline => {
            // Finish the request in progress (if any), then close.
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(limits.header_timeout, conn.as_mut()).await;
        }
        _ = shutdown.cancelled() => {}
    }
}

/// Bind the listener socket (an error says which address).
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    crate::server::bind(addr)
}

fn text(status: StatusCode, ctype: &'static str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(ctype));
    r.headers_mut().insert("cache-control", HeaderValue::from_static("no-store"));
    r
}

fn authorized(token: &Option<BearerToken>, req: &Request<Incoming>) -> bool {
    let Some(token) = token else { return true };
    let Some(v) = req.headers().get(AUTHORIZATION) else { return false };
    let v = v.as_bytes();
    let Some(given) = v.strip_prefix(b"Bearer ") else { return false };
    given.ct_eq(token.as_str().as_bytes()).into()
}

fn respond(st: &State, req: Request<Incoming>) -> Response<Full<Bytes>> {
    st.counters.requests.fetch_add(1, Relaxed);
    let mut resp = respond_inner(st, &req);
    if resp.status().is_client_error() {
        st.counters.bad.fetch_add(1, Relaxed);
    }
    if req.method() == Method::HEAD {
        *resp.body_mut() = Full::new(Bytes::new());
    }
    if req.headers().get(hyper::header::CONTENT_LENGTH).is_some_and(|v| v != "0") || req.headers().contains_key(hyper::header::TRANSFER_ENCODING) {
        // We never read bodies: close rather than leave one in the stream.
        resp.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

fn respond_inner(st: &State, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    const PLAIN: &str = "text/plain; charset=utf-8";
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, PLAIN, "only GET and HEAD are served\n");
        r.headers_mut().insert("allow", HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let path = req.uri().path();
    if path == "/health" {
        let listening = st.shared.stats.listening();
        return if listening.is_empty() {
            text(StatusCode::SERVICE_UNAVAILABLE, PLAIN, "not ready: no client listener is accepting\n")
        } else {
            text(StatusCode::OK, PLAIN, "ok\n")
        };
    }
    if !matches!(path, "/stats" | "/stats.json" | "/metrics") {
        return text(StatusCode::NOT_FOUND, PLAIN, "not found; try /stats, /stats.json, /metrics or /health\n");
    }
    if !authorized(&st.opts.token, req) {
        let mut r = text(StatusCode::UNAUTHORIZED, PLAIN, "missing or wrong bearer token\n");
        r.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return r;
    }
    let ctx = Context {
        config_path: st.opts.config_path.clone(),
        http: report::HttpCounters {
            connections: st.counters.connections.load(Relaxed),
            requests: st.counters.requests.load(Relaxed),
            bad_requests: st.counters.bad.load(Relaxed),
        },
    };
    let rep = collect(&st.shared, &ctx);
    match path {
        "/stats" => text(StatusCode::OK, PLAIN, render::stats_text(&rep)),
        "/stats.json" => match serde_json::to_vec_pretty(&rep) {
            Ok(body) => text(StatusCode::OK, "application/json", body),
            Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, PLAIN, format!("cannot encode: {e}\n")),
        },
        _ => text(StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", render::prometheus(&rep)),
    }
}
