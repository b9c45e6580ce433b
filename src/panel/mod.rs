//! The web panel (issue 14, docs/panel.md): the server at a glance, the users, one user's links
//! and QR code, add/enable/disable/regenerate/limits, in a browser, served by the proxy itself.
//!
//! Why here, in the binary: every write must go through the CLI's own code (`cli::users`:
//! the same validation, the same locked atomic write of the config through `store`, the same
//! live reload by the file watch), and that code lives in the binary. The statistics listener
//! (library crate, `stats_listener`) knows nothing of it: `serve` hands it this [`Panel`] as an
//! [`stats_listener::Mount`] for `/` and `/panel/…`.
//!
//! ```text
//! browser --HTTP (loopback, SSH tunnel) or HTTPS ([stats] tls_cert)--> stats listener --/panel/...--> Panel::handle
//!   GET  /panel/, app.js, style.css       embedded assets (include_str!), no data, no login
//!   POST /panel/api/login                 argon2 verify, rate-limited -> session cookie + CSRF
//!   GET  /panel/api/{session,overview,users,users/NAME}      cookie
//!   POST /panel/api/logout, users, users/NAME/{secret,enable,disable,regenerate,limits,remove}
//!                                         cookie + X-CSRF-Token + JSON body (<= 16 KiB)
//! ```
//! A secret (link, QR code) leaves only in the answer to `POST users/NAME/secret`: never in a
//! URL, a GET, a list or a log line. The panel is off (every path answers 404) while the
//! configuration has no `[panel] password_hash`; that is read on each request, so setting a
//! password takes effect at the next reload.

pub mod auth;
pub mod history;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use hyper::{Method, Request, Response, StatusCode};
use mtproxy_core::stats_listener::{self, Mount, MountFuture};
use mtproxy_core::Shared;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::cli::output::user_json;
use crate::cli::users::{self as ops, KindFlags, LimitFlags};
use history::{History, TOTAL};

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const STYLE_CSS: &str = include_str!("assets/style.css");

/// Largest request body the panel reads.
const MAX_BODY: usize = 16 * 1024;
/// How often the history takes a reading, and how often it is written to disk.
const SAMPLE_EVERY: Duration = Duration::from_secs(5);
const SAVE_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum PanelError {
    #[error("the panel is off: set a password with `vless-mtproxy set-panel-password`")]
    Off,
    #[error("not found")]
    NotFound,
    #[error("method not allowed")]
    Method,
    #[error("log in first (no session, or it expired)")]
    Unauthorized,
    #[error("wrong password")]
    WrongPassword,
    #[error("missing or wrong CSRF token")]
    Csrf,
    #[error("cross-origin request refused")]
    Origin,
    #[error("the panel answers only to 127.0.0.1, [::1], localhost and the names in `[panel] allowed_hosts` (a protection against DNS rebinding)")]
    Host,
    #[error("too many failed logins; try again in a minute")]
    TooMany,
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The CLI's operation refused the change (its own message, which never holds a secret).
    #[error("{0}")]
    Rejected(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl PanelError {
    fn status(&self) -> StatusCode {
        match self {
            PanelError::Off | PanelError::NotFound => StatusCode::NOT_FOUND,
            PanelError::Method => StatusCode::METHOD_NOT_ALLOWED,
            PanelError::Unauthorized | PanelError::WrongPassword => StatusCode::UNAUTHORIZED,
            PanelError::Csrf | PanelError::Origin | PanelError::Host => StatusCode::FORBIDDEN,
            PanelError::TooMany => StatusCode::TOO_MANY_REQUESTS,
            PanelError::BadRequest(_) => StatusCode::BAD_REQUEST,
            PanelError::Rejected(_) => StatusCode::UNPROCESSABLE_ENTITY,
            PanelError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn response(&self) -> Response<Full<Bytes>> {
        let mut r = reply(self.status(), "application/json", serde_json::to_vec(&json!({ "error": self.to_string() })).unwrap_or_default());
        if matches!(self, PanelError::TooMany) {
            r.headers_mut().insert("retry-after", HeaderValue::from_static("60"));
        }
        r
    }
}

type Result<T> = std::result::Result<T, PanelError>;

/// The panel: the config file it writes through the CLI's code, the proxy's counters, the
/// sessions and the traffic history.
pub struct Panel {
    config_path: PathBuf,
    shared: Arc<Shared>,
    sessions: auth::Sessions,
    history: Mutex<History>,
    history_path: PathBuf,
}

fn reply(status: StatusCode, ctype: &'static str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(ctype));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("content-security-policy", HeaderValue::from_static("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    r
}

fn json_reply(v: &Value) -> Response<Full<Bytes>> {
    reply(StatusCode::OK, "application/json", serde_json::to_vec(v).unwrap_or_default())
}

fn redirect(to: &'static str) -> Response<Full<Bytes>> {
    let mut r = reply(StatusCode::FOUND, "text/plain; charset=utf-8", "");
    r.headers_mut().insert(LOCATION, HeaderValue::from_static(to));
    r
}

fn unix_now() -> u64 {
    mtproxy_core::stats::unix_now()
}

#[derive(Deserialize)]
struct Login {
    password: String,
}

/// The add-user and limits forms. Limits as the CLI flags take them; in the limits form an
/// empty field clears that limit (`none`), in the add form it is left unset.
#[derive(Deserialize, Default)]
#[serde(default)]
struct UserForm {
    name: String,
    kind: String,
    domain: String,
    max_connections: Option<String>,
    max_ips: Option<String>,
    quota: Option<String>,
    quota_reset: Option<String>,
    expires: Option<String>,
    grace: String,
}

impl UserForm {
    fn limits(&self, empty_clears: bool) -> LimitFlags {
        let f = |v: &Option<String>| match v.as_deref().map(str::trim) {
            None => None,
            Some("") if empty_clears => Some("none".to_string()),
            Some("") => None,
            Some(s) => Some(s.to_string()),
        };
        LimitFlags {
            max_connections: f(&self.max_connections),
            max_ips: f(&self.max_ips),
            quota: f(&self.quota),
            quota_reset: self.quota_reset.clone().filter(|s| !s.is_empty()),
            expires: f(&self.expires),
        }
    }

    fn kind(&self) -> Result<KindFlags> {
        // The daemon learns a new cover's TLS flight by itself (cover::refresh), so the panel
        // skips the CLI's interactive network check.
        match self.kind.as_str() {
            "ee" => Ok(KindFlags { fake_tls: Some(self.domain.clone()), with_padding: false, no_check: true }),
            "dd" | "" => Ok(KindFlags { fake_tls: None, with_padding: true, no_check: true }),
            "classic" => Ok(KindFlags { fake_tls: None, with_padding: false, no_check: true }),
            k => Err(PanelError::BadRequest(format!("unknown kind `{k}`: classic, dd or ee"))),
        }
    }
}

/// Run a CLI store operation on the blocking pool (it takes the file lock).
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> anyhow::Result<T> + Send + 'static) -> Result<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(PanelError::Rejected(format!("{e:#}"))),
        Err(e) => Err(PanelError::Internal(e.to_string())),
    }
}

impl Panel {
    pub fn new(config_path: &Path, shared: Arc<Shared>) -> Arc<Panel> {
        let history_path = shared.snapshot.load().config.history_path(config_path);
        let history = History::load(&history_path);
        Arc::new(Panel { config_path: config_path.to_path_buf(), shared, sessions: auth::Sessions::default(), history: Mutex::new(history), history_path })
    }

    fn report(&self) -> stats_listener::Report {
        stats_listener::collect(&self.shared, &stats_listener::Context { config_path: Some(self.config_path.display().to_string()), ..Default::default() })
    }

    /// Take one reading of the counters into the history.
    pub fn sample(&self) {
        let report = self.report();
        self.history.lock().unwrap_or_else(|e| e.into_inner()).sample_report(&report, unix_now());
    }

    /// Write the history to its file (atomically).
    pub fn save_history(&self) {
        let h = self.history.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = h.save(&self.history_path) {
            tracing::warn!(path = %self.history_path.display(), error = %e, "cannot save the traffic history");
        }
    }

    /// Sample every few seconds and save every minute, for as long as the proxy runs.
    pub async fn keep_history(self: Arc<Self>) {
        let mut tick = tokio::time::interval(SAMPLE_EVERY);
        let mut last_save = Instant::now();
        loop {
            tick.tick().await;
            self.sample();
            if last_save.elapsed() >= SAVE_EVERY {
                let me = self.clone();
                let _ = tokio::task::spawn_blocking(move || me.save_history()).await;
                last_save = Instant::now();
            }
        }
    }

    async fn handle(self: Arc<Self>, req: Request<Incoming>, peer: SocketAddr) -> Result<Response<Full<Bytes>>> {
        let (hash, ttl, secure, host_ok) = {
            let snap = self.shared.snapshot.load();
            let host_ok = allowed_host(req.headers().get("host").and_then(|v| v.to_str().ok()), &snap.config.panel.allowed_hosts);
            (snap.config.panel.password_hash.clone(), snap.config.panel.session_ttl, snap.config.stats_tls.is_some(), host_ok)
        };
        let Some(hash) = hash else { return Err(PanelError::Off) };
        self.sessions.follow_password(&hash);
        if !host_ok {
            return Err(PanelError::Host);
        }
        let path = req.uri().path().to_string();
        let method = req.method().clone();
        let get = method == Method::GET || method == Method::HEAD;
        match (get, path.as_str()) {
            (true, "/" | "/panel") => return Ok(redirect("/panel/")),
            (true, "/panel/") => return Ok(reply(StatusCode::OK, "text/html; charset=utf-8", INDEX_HTML)),
            (true, "/panel/app.js") => return Ok(reply(StatusCode::OK, "text/javascript; charset=utf-8", APP_JS)),
            (true, "/panel/style.css") => return Ok(reply(StatusCode::OK, "text/css; charset=utf-8", STYLE_CSS)),
            _ => {}
        }
        let Some(api) = path.strip_prefix("/panel/api/") else { return Err(PanelError::NotFound) };
        let api = api.to_string();
        if method == Method::POST {
            same_origin(&req)?;
        }
        let now = Instant::now();
        if (method.clone(), api.as_str()) == (Method::POST, "login") {
            return self.login(req, peer, hash, ttl, secure, now).await;
        }
        let cookie = req.headers().get(COOKIE).and_then(|v| v.to_str().ok()).map(str::to_string);
        let auth::Check::Valid(csrf) = self.sessions.check(cookie.as_deref(), now) else { return Err(PanelError::Unauthorized) };
        if method == Method::GET {
            return match api.as_str() {
                "session" => Ok(json_reply(&json!({ "csrf": csrf }))),
                "overview" => Ok(json_reply(&self.overview())),
                "users" => self.users().map(|v| json_reply(&v)),
                _ => match api.strip_prefix("users/") {
                    Some(name) if !name.contains('/') => self.user(name).map(|v| json_reply(&v)),
                    _ => Err(PanelError::NotFound),
                },
            };
        }
        if method != Method::POST {
            return Err(PanelError::Method);
        }
        let given = req.headers().get("x-csrf-token").and_then(|v| v.to_str().ok());
        if !auth::csrf_ok(&csrf, given) {
            tracing::warn!(peer = %peer.ip(), "panel: write refused, missing or wrong CSRF token");
            return Err(PanelError::Csrf);
        }
        if api == "logout" {
            self.sessions.end(cookie.as_deref());
            let mut r = json_reply(&json!({ "ok": true }));
            r.headers_mut()
                .insert(SET_COOKIE, HeaderValue::from_str(&auth::set_cookie("", Duration::ZERO, secure)).map_err(|e| PanelError::Internal(e.to_string()))?);
            return Ok(r);
        }
        let form: UserForm = read_json(req).await?;
        self.write(&api, form, peer).await
    }

    async fn login(&self, req: Request<Incoming>, peer: SocketAddr, hash: String, ttl: Duration, secure: bool, now: Instant) -> Result<Response<Full<Bytes>>> {
        if !self.sessions.login_allowed(peer.ip(), now) {
            tracing::warn!(peer = %peer.ip(), "panel: login refused, too many failures");
            return Err(PanelError::TooMany);
        }
        let login: Login = read_json(req).await?;
        let ok = tokio::task::spawn_blocking(move || auth::verify_password(&hash, &login.password)).await.unwrap_or(false);
        if !ok {
            self.sessions.login_failed(peer.ip(), Instant::now());
            // One stable line per failure, with the address (fail2ban can match it).
            tracing::warn!(peer = %peer.ip(), "panel: login failed (wrong password)");
            return Err(PanelError::WrongPassword);
        }
        let (id, csrf) = self.sessions.create(now, ttl);
        tracing::info!(peer = %peer.ip(), "panel: logged in");
        let mut r = json_reply(&json!({ "csrf": csrf }));
        r.headers_mut().insert(SET_COOKIE, HeaderValue::from_str(&auth::set_cookie(&id, ttl, secure)).map_err(|e| PanelError::Internal(e.to_string()))?);
        Ok(r)
    }

    fn overview(&self) -> Value {
        let report = self.report();
        let now = unix_now();
        let total = self.history.lock().unwrap_or_else(|e| e.into_inner()).series(TOTAL);
        json!({
            "now": now,
            "report": report,
            "last_24h": total.minutes_since(now.saturating_sub(86_400)),
            "last_30d": total.hours_since(now.saturating_sub(30 * 86_400)),
            "history": total,
        })
    }

    fn users(&self) -> Result<Value> {
        let cfg = crate::store::read(&self.config_path).map_err(|e| PanelError::Internal(e.to_string()))?;
        let report = self.report();
        let now = unix_now();
        let history = self.history.lock().unwrap_or_else(|e| e.into_inner());
        let users: Vec<Value> = cfg
            .users
            .iter()
            .map(|u| {
                let mut v = user_json(&cfg, u, false);
                v["usage"] = json!(report.users.iter().find(|r| r.name == u.name));
                v["last_24h"] = json!(history.series(&u.name).minutes_since(now.saturating_sub(86_400)));
                v
            })
            .collect();
        Ok(json!({ "now": now, "users": users }))
    }

    fn user(&self, name: &str) -> Result<Value> {
        let cfg = crate::store::read(&self.config_path).map_err(|e| PanelError::Internal(e.to_string()))?;
        let u = ops::find(&cfg, name).map_err(|_| PanelError::NotFound)?;
        let mut v = user_json(&cfg, u, false);
        // The quota as `--quota` writes it, exactly, so saving the form keeps it.
        v["limits"]["quota_text"] = json!(u.limits.quota_bytes.map(crate::cli::output::size));
        v["usage"] = json!(self.report().users.into_iter().find(|r| r.name == u.name));
        v["history"] = json!(self.history.lock().unwrap_or_else(|e| e.into_inner()).series(&u.name));
        v["now"] = json!(unix_now());
        Ok(v)
    }

    /// The writes: each one is the CLI command's own function.
    async fn write(&self, api: &str, form: UserForm, peer: SocketAddr) -> Result<Response<Full<Bytes>>> {
        let config = self.config_path.clone();
        if api == "users" {
            let (kind, limits) = (form.kind()?, form.limits(false));
            let name = form.name.trim().to_string();
            let (_, name) = blocking(move || ops::create_user(&config, Some(&name), &kind, Some(&limits))).await?;
            tracing::info!(user = %name, peer = %peer.ip(), "panel: user added");
            return Ok(json_reply(&json!({ "name": name })));
        }
        let Some((name, action)) = api.strip_prefix("users/").and_then(|r| r.split_once('/')) else { return Err(PanelError::NotFound) };
        let name = name.to_string();
        let n = name.clone();
        match action {
            "secret" => {
                let cfg = crate::store::read(&config).map_err(|e| PanelError::Internal(e.to_string()))?;
                let u = ops::find(&cfg, &name).map_err(|_| PanelError::NotFound)?;
                let mut v = user_json(&cfg, u, true);
                let tme = v["links"]["tme"].as_str().unwrap_or_default().to_string();
                v["qr_svg"] = json!(crate::qr::svg(&tme).map_err(|e| PanelError::Internal(e.to_string()))?);
                tracing::info!(user = %name, peer = %peer.ip(), "panel: links shown");
                Ok(json_reply(&v))
            }
            "enable" | "disable" => {
                let enabled = action == "enable";
                blocking(move || ops::change_enabled(&config, &n, enabled)).await?;
                tracing::info!(user = %name, peer = %peer.ip(), "panel: user {action}d");
                Ok(json_reply(&json!({ "ok": true })))
            }
            "regenerate" => {
                let grace = match form.grace.trim() {
                    "" => None,
                    g => Some(ops::parse_grace(g).map_err(PanelError::Rejected)?),
                };
                let (_, until) = blocking(move || ops::rotate_secret(&config, &n, grace)).await?;
                tracing::info!(user = %name, peer = %peer.ip(), "panel: secret regenerated");
                Ok(json_reply(&json!({ "ok": true, "previous_secret_until": until })))
            }
            "limits" => {
                let limits = form.limits(true);
                blocking(move || ops::change_limits(&config, &n, &limits)).await?;
                tracing::info!(user = %name, peer = %peer.ip(), "panel: limits changed");
                Ok(json_reply(&json!({ "ok": true })))
            }
            "remove" => {
                // The page asks for the name typed again; the server checks it too, so a stray
                // request cannot remove a user.
                if form.name.trim() != name {
                    return Err(PanelError::BadRequest("type the user's name to confirm the removal".into()));
                }
                blocking(move || ops::delete_user(&config, &n)).await?;
                tracing::info!(user = %name, peer = %peer.ip(), "panel: user removed");
                Ok(json_reply(&json!({ "ok": true })))
            }
            _ => Err(PanelError::NotFound),
        }
    }
}

/// A write must come from the panel's own pages: an `Origin` header, when the browser sends
/// one, names the host the request went to. (SameSite=Strict and the CSRF token are the other
/// two locks.)
fn same_origin(req: &Request<Incoming>) -> Result<()> {
    let Some(origin) = req.headers().get("origin").and_then(|v| v.to_str().ok()) else { return Ok(()) };
    let host = req.headers().get("host").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let o = origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://")).unwrap_or("");
    if host.is_empty() || o != host {
        return Err(PanelError::Origin);
    }
    Ok(())
}

/// Whether a `Host` header names this machine's loopback (`127.0.0.1:8888`, `[::1]:8888`,
/// `localhost:8888`) or one of `[panel] allowed_hosts` (lower case, no port). A web page on
/// another name that resolves to this host (DNS rebinding) is the same origin to the browser,
/// but not to this check.
fn allowed_host(host: Option<&str>, allowed: &[String]) -> bool {
    let Some(host) = host else { return false };
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host),
    };
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
        || allowed.iter().any(|a| a.eq_ignore_ascii_case(name))
}

async fn read_json<T: for<'de> Deserialize<'de>>(req: Request<Incoming>) -> Result<T> {
    let is_json = req.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|c| c.starts_with("application/json"));
    if !is_json {
        return Err(PanelError::BadRequest("send JSON (Content-Type: application/json)".into()));
    }
    let body = tokio::time::timeout(Duration::from_secs(5), Limited::new(req.into_body(), MAX_BODY).collect())
        .await
        .map_err(|_| PanelError::BadRequest("the body took too long".into()))?
        .map_err(|_| PanelError::BadRequest(format!("the body is larger than {MAX_BODY} bytes or broken")))?
        .to_bytes();
    // Not serde's message: it may quote a value (a password).
    serde_json::from_slice(&body)
        .map_err(|e| PanelError::BadRequest(format!("not the expected JSON ({:?} error at line {} column {})", e.classify(), e.line(), e.column())))
}

/// The [`Mount`] handle the statistics listener holds.
pub struct PanelMount(pub Arc<Panel>);

impl Mount for PanelMount {
    fn handles(&self, path: &str) -> bool {
        path == "/" || path == "/panel" || path.starts_with("/panel/")
    }

    fn call(&self, req: Request<Incoming>, peer: SocketAddr) -> MountFuture {
        let panel = self.0.clone();
        Box::pin(async move {
            let head = req.method() == Method::HEAD;
            let mut r = panel.handle(req, peer).await.unwrap_or_else(|e| e.response());
            if head {
                *r.body_mut() = Full::new(Bytes::new());
            }
            r
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_host_names() {
        for ok in ["127.0.0.1:8888", "127.0.0.1", "[::1]:8888", "localhost:8888", "LOCALHOST", "127.1.2.3:80"] {
            assert!(allowed_host(Some(ok), &[]), "{ok}");
        }
        for bad in ["evil.test:8888", "evil.test", "10.0.0.1:8888", "[2001:db8::1]:8888", "localhost.evil.test", "", "127.0.0.1.nip.io:8888"] {
            assert!(!allowed_host(Some(bad), &[]), "{bad}");
        }
        assert!(!allowed_host(None, &[]));
    }

    #[test]
    fn allowed_hosts_add_names() {
        let allowed = vec!["panel.example.com".to_string(), "10.201.0.1".to_string(), "2001:db8::1".to_string()];
        for ok in ["panel.example.com", "PANEL.example.com:8443", "10.201.0.1:8888", "[2001:db8::1]:8888", "127.0.0.1:8888"] {
            assert!(allowed_host(Some(ok), &allowed), "{ok}");
        }
        for bad in ["example.com", "panel.example.com.evil.test", "10.201.0.2:8888", "evil.test:8888"] {
            assert!(!allowed_host(Some(bad), &allowed), "{bad}");
        }
    }

    #[test]
    fn limits_form_maps_empty_fields() {
        let f = UserForm { max_connections: Some("".into()), max_ips: Some(" 4 ".into()), quota: None, quota_reset: Some("".into()), ..Default::default() };
        let clear = f.limits(true);
        assert_eq!(
            (clear.max_connections.as_deref(), clear.max_ips.as_deref(), clear.quota.as_deref(), clear.quota_reset.as_deref()),
            (Some("none"), Some("4"), None, None)
        );
        let add = f.limits(false);
        assert_eq!(add.max_connections, None);
        assert!(UserForm { kind: "xx".into(), ..Default::default() }.kind().is_err());
        let ee = UserForm { kind: "ee".into(), domain: "www.example.com".into(), ..Default::default() }.kind().unwrap();
        assert_eq!(ee.fake_tls.as_deref(), Some("www.example.com"));
        assert!(ee.no_check);
    }
}
