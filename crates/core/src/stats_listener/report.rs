//! One consistent reading of every counter: the model behind `/stats`, `/stats.json` and
//! `/metrics`, and what the CLI (`stats`, `status`) deserializes from `/stats.json`.
//!
//! All three endpoints render the same [`Report`] taken once per request, so within one response
//! the numbers agree with each other; docs/stats.md documents every field (schema version
//! [`SCHEMA`]).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;

use mtproxy_proto::SecretKind;
use serde::{Deserialize, Serialize};

use crate::events::FailReason;
use crate::limits::Refusal;
use crate::server::Shared;
use crate::stats::{unix_now, CONNECT_BUCKETS};

/// Version of the `/stats.json` layout; bumped when a field changes meaning or goes away.
pub const SCHEMA: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Report {
    pub schema: u32,
    pub version: String,
    pub pid: u32,
    /// Unix seconds.
    pub start_time: u64,
    pub current_time: u64,
    pub uptime_seconds: u64,
    /// "direct" or "middle-proxy".
    pub mode: String,
    pub ad_tag_set: bool,
    pub workers: usize,
    /// Addresses accepting clients now.
    pub listen: Vec<String>,
    pub config: ConfigInfo,
    pub reloads: Reloads,
    pub connections: Connections,
    pub bytes: Bytes,
    pub handshakes: Handshakes,
    pub fronting: FrontingReport,
    pub upstream: Upstream,
    /// The middle-proxy path (promoted channel); `null` in direct mode (no ad tag and no
    /// middle-end session since start). Absent from proxies older than this field.
    #[serde(default)]
    pub middle: Option<MiddleReport>,
    pub stats_http: HttpCounters,
    pub users: Vec<UserReport>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ConfigInfo {
    pub path: Option<String>,
    /// Unix seconds when the configuration in force was loaded.
    pub loaded_at: u64,
    pub users_enabled: usize,
    pub users_disabled: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Reloads {
    pub ok: u64,
    pub failed: u64,
    pub last: Option<LastReload>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LastReload {
    pub at: u64,
    pub ok: bool,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Connections {
    pub active: u64,
    pub total: u64,
    pub refused_limit: u64,
    /// Closed before the handshake had a verdict: nothing was sent, or shutdown began.
    #[serde(default)]
    pub closed_early: u64,
    /// A user's limit refused the connection after its handshake, by reason (every reason
    /// listed): `expired`, `quota`, `max_connections`, `max_ips`.
    #[serde(default)]
    pub refused_user_limits: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Bytes {
    pub from_clients: u64,
    pub to_clients: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Handshakes {
    pub ok: u64,
    /// Failures by reason (every reason listed, zeros included).
    pub failed: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FrontingReport {
    pub active: u64,
    pub total: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Upstream {
    pub connect_failures: u64,
    pub dcs: Vec<DcReport>,
    /// The `[[upstream.servers]]` entries configured since start, in the order first seen;
    /// empty when everything goes direct without an `[upstream]` section. Absent from proxies
    /// older than this field.
    #[serde(default)]
    pub servers: Vec<UpstreamServerReport>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UpstreamServerReport {
    pub name: String,
    /// "socks5 HOST:PORT", "http HOST:PORT" or "direct".
    pub target: String,
    /// False for an entry removed from the file since start (its counters are kept).
    pub configured: bool,
    /// In rotation now: not failed, or its `retry_after` is over.
    pub up: bool,
    /// Seconds until it is tried again; 0 when up.
    pub retry_in_seconds: u64,
    pub connects_ok: u64,
    /// Attempts through it that gave no connection (its own fault or the DC's).
    pub connect_failures: u64,
    /// Failures that were its own and took it out of rotation.
    pub marked_down: u64,
    /// Mean time to a connection through it, milliseconds (0 before the first).
    pub connect_avg_ms: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DcReport {
    /// "1".."5", "203", "10001".."10003", or "other".
    pub dc: String,
    pub connects_ok: u64,
    pub connect_failures: u64,
    pub latency: Histogram,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Histogram {
    /// Cumulative counts per upper bound (seconds), as Prometheus has them; `+Inf` is `count`.
    pub buckets: Vec<Bucket>,
    pub count: u64,
    pub sum_seconds: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Bucket {
    pub le: f64,
    pub count: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MiddleReport {
    /// Version of the middle-end configuration in force: 1 is the local copy read at start,
    /// each refresh that changed it adds 1.
    pub config_generation: u64,
    /// Middle-end clusters (`proxy_for` ids) in the configuration in force, IPv4 and IPv6.
    pub clusters_v4: usize,
    pub clusters_v6: usize,
    pub refreshes_ok: u64,
    /// Refreshes where a document could not be fetched or validated (the copy stayed).
    pub refreshes_failed: u64,
    /// Unix seconds of the last refresh without a failure; `None`: none yet.
    pub last_refresh_ok_at: Option<u64>,
    /// Clients relayed through a middle-end now / since start.
    pub sessions_active: u64,
    pub sessions_total: u64,
    /// Clients closed because no middle-end connection could be had.
    pub connect_failures: u64,
    /// Client packets not forwarded because they do not look like MTProto.
    pub packets_dropped: u64,
    /// Sums over `clusters`.
    pub connections_active: u64,
    pub connections_opened: u64,
    pub connection_open_failures: u64,
    pub frames_from_middle_end: u64,
    pub frames_to_middle_end: u64,
    /// Per cluster a client asked for since start, by cluster id.
    pub clusters: Vec<MiddleCluster>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MiddleCluster {
    /// The `proxy_for` id (negative: media), as a string like the DC ids: "2", "-2".
    pub cluster: String,
    pub connections_active: u64,
    pub connections_opened: u64,
    pub connection_open_failures: u64,
    pub frames_from_middle_end: u64,
    pub frames_to_middle_end: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct HttpCounters {
    pub connections: u64,
    pub requests: u64,
    pub bad_requests: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UserReport {
    pub name: String,
    /// False for a user removed from the file since start (its counters are kept).
    pub configured: bool,
    pub enabled: bool,
    /// "classic", "dd", "ee", or "" when not configured.
    pub kind: String,
    pub connections_active: u64,
    pub connections_total: u64,
    pub bytes_from_client: u64,
    pub bytes_to_client: u64,
    pub unique_ips_active: u64,
    pub unique_ips_seen: u64,
    pub quota_used_bytes: u64,
    /// Unix seconds of the last handshake or close; `None`: never.
    pub last_seen: Option<u64>,
}

/// Things only the caller knows.
#[derive(Debug, Clone, Default)]
pub struct Context {
    pub config_path: Option<String>,
    pub http: HttpCounters,
}

fn kind_name(k: &SecretKind) -> &'static str {
    match k {
        SecretKind::Classic => "classic",
        SecretKind::Padded => "dd",
        SecretKind::FakeTls { .. } => "ee",
    }
}

/// The `middle` section: `None` while the path is off and was never used.
fn middle_report(shared: &Shared, ad_tag_set: bool) -> Option<MiddleReport> {
    let m = &shared.middle;
    let s = &m.stats;
    let clusters: Vec<MiddleCluster> = m
        .cluster_stats()
        .into_iter()
        .map(|(id, c)| MiddleCluster {
            cluster: id.to_string(),
            connections_active: c.connections_active.load(Relaxed),
            connections_opened: c.opened.load(Relaxed),
            connection_open_failures: c.open_failures.load(Relaxed),
            frames_from_middle_end: c.frames_in.load(Relaxed),
            frames_to_middle_end: c.frames_out.load(Relaxed),
        })
        .collect();
    let (refreshes_ok, refreshes_failed) = (s.refresh_ok.load(Relaxed), s.refresh_failed.load(Relaxed));
    let sessions_total = s.sessions_total.load(Relaxed);
    let connect_failures = s.connect_failures.load(Relaxed);
    if !ad_tag_set && clusters.is_empty() && refreshes_ok + refreshes_failed + sessions_total + connect_failures == 0 {
        return None;
    }
    let state = m.state();
    let last = s.last_refresh_ok_at.load(Relaxed);
    let sum = |f: fn(&MiddleCluster) -> u64| clusters.iter().map(f).sum::<u64>();
    Some(MiddleReport {
        config_generation: state.generation,
        clusters_v4: state.config.v4.clusters.len(),
        clusters_v6: state.config.v6.as_ref().map_or(0, |c| c.clusters.len()),
        refreshes_ok,
        refreshes_failed,
        last_refresh_ok_at: (last != 0).then_some(last),
        sessions_active: s.sessions_active.load(Relaxed),
        sessions_total,
        connect_failures,
        packets_dropped: s.packets_dropped.load(Relaxed),
        connections_active: sum(|c| c.connections_active),
        connections_opened: sum(|c| c.connections_opened),
        connection_open_failures: sum(|c| c.connection_open_failures),
        frames_from_middle_end: sum(|c| c.frames_from_middle_end),
        frames_to_middle_end: sum(|c| c.frames_to_middle_end),
        clusters,
    })
}

/// Read every counter once.
pub fn collect(shared: &Shared, ctx: &Context) -> Report {
    let st = &shared.stats;
    let snap = shared.snapshot.load_full();
    let cfg = &snap.config;
    let now = unix_now();
    let failed = FailReason::ALL.iter().map(|r| (r.as_str().to_string(), st.handshake_failures[r.index()].load(Relaxed))).collect();
    let dcs = st
        .dcs()
        .into_iter()
        .map(|(id, d)| {
            let mut cum = 0;
            let buckets = CONNECT_BUCKETS
                .iter()
                .enumerate()
                .map(|(i, le)| {
                    cum += d.latency_buckets[i].load(Relaxed);
                    Bucket { le: *le, count: cum }
                })
                .collect();
            let count = cum + d.latency_buckets[CONNECT_BUCKETS.len()].load(Relaxed);
            DcReport {
                dc: if id == 0 { "other".to_string() } else { id.to_string() },
                connects_ok: d.connects_ok.load(Relaxed),
                connect_failures: d.connect_failures.load(Relaxed),
                latency: Histogram { buckets, count, sum_seconds: d.latency_sum_micros.load(Relaxed) as f64 / 1e6 },
            }
        })
        .collect();
    let now_ms = st.clock_ms();
    let servers = st
        .upstreams()
        .into_iter()
        .map(|(name, u)| {
            let ok = u.connects_ok.load(Relaxed);
            let until = u.down_until_ms.load(Relaxed);
            UpstreamServerReport {
                target: u.describe.lock().unwrap_or_else(|e| e.into_inner()).clone(),
                configured: cfg.upstream.servers.iter().any(|s| s.name == name),
                up: u.is_up(now_ms),
                retry_in_seconds: until.saturating_sub(now_ms).div_ceil(1000),
                connects_ok: ok,
                connect_failures: u.connect_failures.load(Relaxed),
                marked_down: u.marked_down.load(Relaxed),
                connect_avg_ms: if ok > 0 { u.latency_sum_micros.load(Relaxed) as f64 / 1000.0 / ok as f64 } else { 0.0 },
                name,
            }
        })
        .collect();
    let users = st
        .users()
        .into_iter()
        .map(|(name, u)| {
            let conf = cfg.users.iter().find(|c| c.name == name);
            let (ips_active, ips_seen) = u.unique_ips();
            let last = u.last_seen.load(Relaxed);
            UserReport {
                configured: conf.is_some(),
                enabled: conf.is_some_and(|c| c.enabled),
                kind: conf.map(|c| kind_name(&c.kind)).unwrap_or("").to_string(),
                connections_active: u.connections_active.load(Relaxed),
                connections_total: u.connections_total.load(Relaxed),
                bytes_from_client: u.bytes_from_client.load(Relaxed),
                bytes_to_client: u.bytes_to_client.load(Relaxed),
                unique_ips_active: ips_active,
                unique_ips_seen: ips_seen,
                quota_used_bytes: u.quota_used_bytes.load(Relaxed),
                last_seen: (last != 0).then_some(last),
                name,
            }
        })
        .collect();
    Report {
        schema: SCHEMA,
        version: env!("CARGO_PKG_VERSION").to_string(),
        pid: std::process::id(),
        start_time: st.started_unix,
        current_time: now,
        uptime_seconds: st.started.elapsed().as_secs(),
        mode: if cfg.ad_tag.is_some() { "middle-proxy" } else { "direct" }.to_string(),
        ad_tag_set: cfg.ad_tag.is_some(),
        workers: cfg.workers,
        listen: st.listening().iter().map(|a| a.to_string()).collect(),
        config: ConfigInfo {
            path: ctx.config_path.clone(),
            loaded_at: st.config_loaded_at.load(Relaxed),
            users_enabled: cfg.users.iter().filter(|u| u.enabled).count(),
            users_disabled: cfg.users.iter().filter(|u| !u.enabled).count(),
        },
        reloads: Reloads {
            ok: st.reloads_ok.load(Relaxed),
            failed: st.reloads_failed.load(Relaxed),
            last: st.last_reload().map(|r| LastReload { at: r.at_unix, ok: r.ok, error: r.error }),
        },
        connections: Connections {
            active: st.connections_active.load(Relaxed),
            total: st.connections_total.load(Relaxed),
            refused_limit: st.connections_refused_limit.load(Relaxed),
            closed_early: st.connections_closed_early.load(Relaxed),
            refused_user_limits: Refusal::ALL.iter().map(|r| (r.as_str().to_string(), shared.limits.refused[r.index()].load(Relaxed))).collect(),
        },
        bytes: Bytes { from_clients: st.bytes_from_client.load(Relaxed), to_clients: st.bytes_to_client.load(Relaxed) },
        handshakes: Handshakes { ok: st.handshakes_ok.load(Relaxed), failed },
        fronting: FrontingReport { active: st.fronted_active.load(Relaxed), total: st.fronted_total.load(Relaxed) },
        upstream: Upstream { connect_failures: st.upstream_connect_failures.load(Relaxed), dcs, servers },
        middle: middle_report(shared, cfg.ad_tag.is_some()),
        stats_http: ctx.http.clone(),
        users,
    }
}
