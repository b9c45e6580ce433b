//! The two text forms of a [`Report`]: official-MTProxy-style `key<TAB>value` lines (`/stats`,
//! docs/protocol.md §6.1) and the Prometheus text exposition format 0.0.4 (`/metrics`).
//!
//! `/stats` keeps the official key names where the meaning is the same (`pid`, `start_time`,
//! `current_time`, `uptime`, `active_connections`, `total_connections`, `config_filename`,
//! `config_loaded_at`, `workers`, `http_connections`, `http_queries`, `http_bad_headers`,
//! `proxy_tag_set`, `version`), then our own keys, then one block of `user:NAME:KEY` lines per
//! user (names cannot contain `:`, so the key splits unambiguously).

use std::fmt::Write;

use super::report::Report;

/// `/stats`.
pub fn stats_text(r: &Report) -> String {
    let mut o = String::with_capacity(2048 + r.users.len() * 400);
    let mut kv = |k: &str, v: &dyn std::fmt::Display| {
        let _ = writeln!(o, "{k}\t{v}");
    };
    kv("pid", &r.pid);
    kv("start_time", &r.start_time);
    kv("current_time", &r.current_time);
    kv("uptime", &r.uptime_seconds);
    kv("active_connections", &r.connections.active);
    kv("total_connections", &r.connections.total);
    kv("config_filename", &r.config.path.as_deref().unwrap_or("-"));
    kv("config_loaded_at", &r.config.loaded_at);
    kv("workers", &r.workers);
    kv("http_connections", &r.stats_http.connections);
    kv("http_queries", &r.stats_http.requests);
    kv("http_bad_headers", &r.stats_http.bad_requests);
    kv("proxy_tag_set", &(r.ad_tag_set as u8));
    kv("version", &r.version);
    kv("mode", &r.mode);
    kv("listen", &r.listen.join(","));
    kv("users_enabled", &r.config.users_enabled);
    kv("users_disabled", &r.config.users_disabled);
    kv("connections_refused_limit", &r.connections.refused_limit);
    kv("connections_closed_early", &r.connections.closed_early);
    for (reason, n) in &r.connections.refused_user_limits {
        kv(&format!("connections_refused_user_{reason}"), n);
    }
    kv("bytes_from_clients", &r.bytes.from_clients);
    kv("bytes_to_clients", &r.bytes.to_clients);
    kv("handshakes_ok", &r.handshakes.ok);
    for (reason, n) in &r.handshakes.failed {
        kv(&format!("handshakes_failed_{reason}"), n);
    }
    kv("fronting_active", &r.fronting.active);
    kv("fronting_total", &r.fronting.total);
    kv("upstream_connect_failures", &r.upstream.connect_failures);
    for d in &r.upstream.dcs {
        kv(&format!("upstream_dc_{}_connects_ok", d.dc), &d.connects_ok);
        kv(&format!("upstream_dc_{}_connect_failures", d.dc), &d.connect_failures);
        let avg_ms = if d.latency.count > 0 { d.latency.sum_seconds * 1000.0 / d.latency.count as f64 } else { 0.0 };
        kv(&format!("upstream_dc_{}_connect_avg_ms", d.dc), &format!("{avg_ms:.3}"));
    }
    for u in &r.upstream.servers {
        let p = format!("upstream:{}:", u.name);
        kv(&format!("{p}target"), &u.target);
        kv(&format!("{p}configured"), &(u.configured as u8));
        kv(&format!("{p}up"), &(u.up as u8));
        kv(&format!("{p}retry_in_seconds"), &u.retry_in_seconds);
        kv(&format!("{p}connects_ok"), &u.connects_ok);
        kv(&format!("{p}connect_failures"), &u.connect_failures);
        kv(&format!("{p}marked_down"), &u.marked_down);
        kv(&format!("{p}connect_avg_ms"), &format!("{:.3}", u.connect_avg_ms));
    }
    if let Some(m) = &r.middle {
        kv("middle_config_generation", &m.config_generation);
        kv("middle_clusters_v4", &m.clusters_v4);
        kv("middle_clusters_v6", &m.clusters_v6);
        kv("middle_refreshes_ok", &m.refreshes_ok);
        kv("middle_refreshes_failed", &m.refreshes_failed);
        kv("middle_last_refresh_ok_at", &m.last_refresh_ok_at.unwrap_or(0));
        kv("middle_sessions_active", &m.sessions_active);
        kv("middle_sessions_total", &m.sessions_total);
        kv("middle_connect_failures", &m.connect_failures);
        kv("middle_packets_dropped", &m.packets_dropped);
        kv("middle_connections_active", &m.connections_active);
        kv("middle_connections_opened", &m.connections_opened);
        kv("middle_connection_open_failures", &m.connection_open_failures);
        kv("middle_frames_from_middle_end", &m.frames_from_middle_end);
        kv("middle_frames_to_middle_end", &m.frames_to_middle_end);
        for c in &m.clusters {
            let p = format!("middle_cluster_{}_", c.cluster);
            kv(&format!("{p}connections_active"), &c.connections_active);
            kv(&format!("{p}connections_opened"), &c.connections_opened);
            kv(&format!("{p}connection_open_failures"), &c.connection_open_failures);
            kv(&format!("{p}frames_from_middle_end"), &c.frames_from_middle_end);
            kv(&format!("{p}frames_to_middle_end"), &c.frames_to_middle_end);
        }
    }
    kv("reloads_ok", &r.reloads.ok);
    kv("reloads_failed", &r.reloads.failed);
    if let Some(l) = &r.reloads.last {
        kv("last_reload_at", &l.at);
        kv("last_reload_ok", &(l.ok as u8));
    }
    for u in &r.users {
        let p = format!("user:{}:", u.name);
        kv(&format!("{p}enabled"), &(u.enabled as u8));
        kv(&format!("{p}active_connections"), &u.connections_active);
        kv(&format!("{p}total_connections"), &u.connections_total);
        kv(&format!("{p}bytes_from_client"), &u.bytes_from_client);
        kv(&format!("{p}bytes_to_client"), &u.bytes_to_client);
        kv(&format!("{p}unique_ips_active"), &u.unique_ips_active);
        kv(&format!("{p}unique_ips_seen"), &u.unique_ips_seen);
        kv(&format!("{p}quota_used_bytes"), &u.quota_used_bytes);
        kv(&format!("{p}last_seen"), &u.last_seen.unwrap_or(0));
    }
    o
}

/// Escape a Prometheus label value (backslash, double quote, newline).
pub fn escape_label(v: &str) -> String {
    let mut o = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => o.push_str("\\\\"),
            '"' => o.push_str("\\\""),
            '\n' => o.push_str("\\n"),
            c => o.push(c),
        }
    }
    o
}

struct Prom(String);

impl Prom {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{k}=\"{}\"", escape_label(v));
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }
    fn one(&mut self, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }
}

/// Prefix of every metric name.
pub const PREFIX: &str = "vless_mtproxy_";

/// `/metrics`.
pub fn prometheus(r: &Report) -> String {
    let mut p = Prom(String::with_capacity(4096 + r.users.len() * 1200));
    let n = |s: &str| format!("{PREFIX}{s}");
    p.family(&n("info"), "gauge", "Build and mode of the running proxy (value is always 1).");
    p.sample(&n("info"), &[("version", &r.version), ("mode", &r.mode)], 1);
    p.one(&n("start_time_seconds"), "gauge", "Unix time the proxy started.", r.start_time);
    p.one(&n("uptime_seconds"), "gauge", "Seconds since the proxy started.", r.uptime_seconds);
    p.one(&n("connections_active"), "gauge", "Client connections open now.", r.connections.active);
    p.one(&n("connections_total"), "counter", "Client connections accepted since start.", r.connections.total);
    p.one(&n("connections_refused_limit_total"), "counter", "Client connections refused by max_connections.", r.connections.refused_limit);
    p.one(
        &n("connections_closed_early_total"),
        "counter",
        "Client connections closed before the handshake had a verdict (nothing sent, or shutdown).",
        r.connections.closed_early,
    );
    p.family(&n("connections_refused_user_limit_total"), "counter", "Authenticated connections refused by a user's limit, by reason.");
    for (reason, v) in &r.connections.refused_user_limits {
        p.sample(&n("connections_refused_user_limit_total"), &[("reason", reason)], v);
    }
    p.family(&n("bytes_total"), "counter", "Client stream bytes relayed (after obfuscated2 init, without TLS record headers).");
    p.sample(&n("bytes_total"), &[("direction", "from_client")], r.bytes.from_clients);
    p.sample(&n("bytes_total"), &[("direction", "to_client")], r.bytes.to_clients);
    p.one(&n("handshakes_ok_total"), "counter", "Handshakes that authenticated a user.", r.handshakes.ok);
    p.family(&n("handshakes_failed_total"), "counter", "Failed handshakes by reason.");
    for (reason, v) in &r.handshakes.failed {
        p.sample(&n("handshakes_failed_total"), &[("reason", reason)], v);
    }
    p.one(&n("fronting_sessions_active"), "gauge", "Connections spliced to the mask host now.", r.fronting.active);
    p.one(&n("fronting_sessions_total"), "counter", "Connections spliced to the mask host since start.", r.fronting.total);
    p.family(&n("upstream_connect_failures_total"), "counter", "Upstream (Telegram DC) connects where no address answered, by DC.");
    for d in &r.upstream.dcs {
        p.sample(&n("upstream_connect_failures_total"), &[("dc", &d.dc)], d.connect_failures);
    }
    p.family(&n("upstream_connect_seconds"), "histogram", "Time to connect to a Telegram DC, by DC.");
    for d in &r.upstream.dcs {
        let name = n("upstream_connect_seconds_bucket");
        for b in &d.latency.buckets {
            p.sample(&name, &[("dc", &d.dc), ("le", &format!("{}", b.le))], b.count);
        }
        p.sample(&name, &[("dc", &d.dc), ("le", "+Inf")], d.latency.count);
        p.sample(&n("upstream_connect_seconds_sum"), &[("dc", &d.dc)], d.latency.sum_seconds);
        p.sample(&n("upstream_connect_seconds_count"), &[("dc", &d.dc)], d.latency.count);
    }
    if !r.upstream.servers.is_empty() {
        p.family(&n("upstream_server_up"), "gauge", "1 while an [[upstream.servers]] entry is in rotation, 0 while it is skipped after a failure.");
        for u in &r.upstream.servers {
            p.sample(&n("upstream_server_up"), &[("upstream", &u.name), ("target", &u.target)], u.up as u8);
        }
        p.family(&n("upstream_server_connects_total"), "counter", "Connections to Telegram made through an upstream server.");
        for u in &r.upstream.servers {
            p.sample(&n("upstream_server_connects_total"), &[("upstream", &u.name)], u.connects_ok);
        }
        p.family(&n("upstream_server_connect_failures_total"), "counter", "Attempts through an upstream server that gave no connection.");
        for u in &r.upstream.servers {
            p.sample(&n("upstream_server_connect_failures_total"), &[("upstream", &u.name)], u.connect_failures);
        }
        p.family(&n("upstream_server_marked_down_total"), "counter", "Failures that were the upstream server's own and took it out of rotation.");
        for u in &r.upstream.servers {
            p.sample(&n("upstream_server_marked_down_total"), &[("upstream", &u.name)], u.marked_down);
        }
    }
    if let Some(m) = &r.middle {
        p.one(
            &n("middle_config_generation"),
            "gauge",
            "Version of the middle-end configuration in force (1 = the local copy read at start, +1 per refresh that changed it).",
            m.config_generation,
        );
        p.family(&n("middle_clusters"), "gauge", "Middle-end clusters in the configuration in force, by address family.");
        p.sample(&n("middle_clusters"), &[("family", "ipv4")], m.clusters_v4);
        p.sample(&n("middle_clusters"), &[("family", "ipv6")], m.clusters_v6);
        p.family(
            &n("middle_config_refreshes_total"),
            "counter",
            "Middle-end configuration refreshes by result (failed: a document could not be fetched or validated; the copy in force stayed).",
        );
        p.sample(&n("middle_config_refreshes_total"), &[("result", "ok")], m.refreshes_ok);
        p.sample(&n("middle_config_refreshes_total"), &[("result", "failed")], m.refreshes_failed);
        p.one(
            &n("middle_config_last_refresh_timestamp_seconds"),
            "gauge",
            "Unix time of the last middle-end configuration refresh without a failure (0: none yet).",
            m.last_refresh_ok_at.unwrap_or(0),
        );
        p.one(&n("middle_sessions_active"), "gauge", "Clients relayed through a middle-end now.", m.sessions_active);
        p.one(&n("middle_sessions_total"), "counter", "Clients relayed through a middle-end since start.", m.sessions_total);
        p.one(&n("middle_connect_failures_total"), "counter", "Clients closed because no middle-end connection could be had.", m.connect_failures);
        p.one(
            &n("middle_packets_dropped_total"),
            "counter",
            "Client packets not forwarded to the middle-end because they do not look like MTProto.",
            m.packets_dropped,
        );
        p.family(&n("middle_connections_active"), "gauge", "Encrypted connections to middle-ends open now, by cluster.");
        for c in &m.clusters {
            p.sample(&n("middle_connections_active"), &[("cluster", &c.cluster)], c.connections_active);
        }
        p.family(&n("middle_connections_opened_total"), "counter", "Encrypted connections to middle-ends opened (handshake completed), by cluster.");
        for c in &m.clusters {
            p.sample(&n("middle_connections_opened_total"), &[("cluster", &c.cluster)], c.connections_opened);
        }
        p.family(
            &n("middle_connection_open_failures_total"),
            "counter",
            "Attempts to open a middle-end connection where no address of the cluster answered, by cluster.",
        );
        for c in &m.clusters {
            p.sample(&n("middle_connection_open_failures_total"), &[("cluster", &c.cluster)], c.connection_open_failures);
        }
        p.family(&n("middle_frames_total"), "counter", "RPC messages exchanged with middle-ends after the handshake, by cluster and direction.");
        for c in &m.clusters {
            p.sample(&n("middle_frames_total"), &[("cluster", &c.cluster), ("direction", "from_middle_end")], c.frames_from_middle_end);
            p.sample(&n("middle_frames_total"), &[("cluster", &c.cluster), ("direction", "to_middle_end")], c.frames_to_middle_end);
        }
    }
    p.family(&n("config_reloads_total"), "counter", "Configuration reloads by result.");
    p.sample(&n("config_reloads_total"), &[("result", "ok")], r.reloads.ok);
    p.sample(&n("config_reloads_total"), &[("result", "failed")], r.reloads.failed);
    p.one(
        &n("config_last_reload_success"),
        "gauge",
        "1 when the last reload succeeded or none happened yet, 0 when it was refused.",
        r.reloads.last.as_ref().map_or(1, |l| l.ok as u8),
    );
    p.one(&n("config_loaded_timestamp_seconds"), "gauge", "Unix time the configuration in force was loaded.", r.config.loaded_at);
    p.family(&n("users"), "gauge", "Configured users by state.");
    p.sample(&n("users"), &[("state", "enabled")], r.config.users_enabled);
    p.sample(&n("users"), &[("state", "disabled")], r.config.users_disabled);
    p.one(&n("stats_http_requests_total"), "counter", "Requests to this statistics listener.", r.stats_http.requests);

    type Field = fn(&super::report::UserReport) -> u64;
    let per_user: [(&str, &str, &str, Field); 6] = [
        ("user_connections_active", "gauge", "Open connections of the user.", |u| u.connections_active),
        ("user_connections_total", "counter", "Connections of the user since start.", |u| u.connections_total),
        ("user_unique_ips", "gauge", "Distinct client IPs with an open connection of the user.", |u| u.unique_ips_active),
        ("user_unique_ips_seen", "gauge", "Distinct client IPs of the user since start (at most 4096 remembered).", |u| u.unique_ips_seen),
        ("user_quota_used_bytes", "gauge", "Bytes counted against the user's quota.", |u| u.quota_used_bytes),
        ("user_last_seen_timestamp_seconds", "gauge", "Unix time of the user's last handshake or close (0: never).", |u| u.last_seen.unwrap_or(0)),
    ];
    for (name, kind, help, f) in per_user {
        p.family(&n(name), kind, help);
        for u in &r.users {
            p.sample(&n(name), &[("user", &u.name)], f(u));
        }
    }
    p.family(&n("user_bytes_total"), "counter", "Client stream bytes of the user by direction.");
    for u in &r.users {
        p.sample(&n("user_bytes_total"), &[("user", &u.name), ("direction", "from_client")], u.bytes_from_client);
        p.sample(&n("user_bytes_total"), &[("user", &u.name), ("direction", "to_client")], u.bytes_to_client);
    }
    p.family(&n("user_enabled"), "gauge", "1 when the user is configured and enabled.");
    for u in &r.users {
        p.sample(&n("user_enabled"), &[("user", &u.name)], u.enabled as u8);
    }
    p.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
