//! The store's schema and queries. The schema is versioned (`vless_schema`): each entry of
//! [`MIGRATIONS`] runs once, in order, in one transaction under an advisory lock, so nodes and
//! CLI calls starting together migrate it once. A binary meeting a newer schema stops
//! ([`FleetError::NewerSchema`]) rather than guess.
//!
//! Writers (the CLI) take `LOCK TABLE vless_users IN SHARE ROW EXCLUSIVE MODE` for their
//! read-modify-write: two writers at once run one after the other, so no update is lost, and
//! readers (nodes) are never blocked. A write that changes something ends with
//! `NOTIFY vless_mtproxy_users`, delivered to the listening nodes at commit.
//!
//! Usage rows are absolute per node and period (`bytes` = what this node relayed for this user
//! in this quota period), written with an upsert: a flush repeated after an outage writes the
//! latest total again, so no byte is lost or counted twice.

use std::collections::BTreeMap;

use mtproxy_core::config::StoreSettings;
use postgres::Client;

use super::{FleetError, FleetPart};

/// The channel nodes LISTEN on.
pub const CHANNEL: &str = "vless_mtproxy_users";

/// Schema versions: index + 1 is the version each one brings.
pub const MIGRATIONS: &[&str] = &[
    "
    CREATE TABLE vless_users (
        name text PRIMARY KEY,
        body text NOT NULL,
        updated timestamptz NOT NULL DEFAULT now()
    );
    CREATE TABLE vless_settings (key text PRIMARY KEY, value text NOT NULL);
    CREATE TABLE vless_usage (
        name text NOT NULL,
        node text NOT NULL,
        period bigint NOT NULL,
        bytes bigint NOT NULL,
        updated timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (name, node, period)
    );
    CREATE TABLE vless_nodes (
        node text PRIMARY KEY,
        version text NOT NULL,
        link_host text NOT NULL,
        link_port integer NOT NULL,
        started timestamptz NOT NULL,
        last_seen timestamptz NOT NULL,
        connections bigint NOT NULL,
        bytes bigint NOT NULL
    );
",
    "
    CREATE TABLE vless_open (
        name text NOT NULL,
        node text NOT NULL,
        connections integer NOT NULL,
        ips text NOT NULL,
        PRIMARY KEY (name, node)
    );
",
];

pub fn query_error(settings: &StoreSettings, e: postgres::Error) -> FleetError {
    let reason = match e.as_db_error() {
        Some(db) => db.message().to_string(),
        None => e.to_string(),
    };
    FleetError::Query { url: settings.url.redacted(), reason: mtproxy_core::config::redact_url(&reason) }
}

/// Bring the schema to the newest version this binary knows.
pub fn migrate(client: &mut Client) -> Result<(), postgres::Error> {
    let known = MIGRATIONS.len() as i32;
    let mut tx = client.transaction()?;
    tx.batch_execute(
        "SET LOCAL client_min_messages = warning; SELECT pg_advisory_xact_lock(7461726); CREATE TABLE IF NOT EXISTS vless_schema (version integer NOT NULL)",
    )?;
    let found: i32 = tx.query_opt("SELECT version FROM vless_schema", &[])?.map_or(0, |r| r.get(0));
    if found > known {
        tx.rollback()?;
        // Reported by the caller through `check_version`.
        return Ok(());
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        tx.batch_execute(sql)?;
        tracing::info!(version = i + 1, "store schema migrated");
    }
    if found != known {
        tx.execute("DELETE FROM vless_schema", &[])?;
        tx.execute("INSERT INTO vless_schema (version) VALUES ($1)", &[&known])?;
    }
    tx.commit()
}

/// The schema version in the store, refusing one newer than this binary.
pub fn check_version(settings: &StoreSettings, client: &mut Client) -> Result<(), FleetError> {
    let found: i32 = client.query_opt("SELECT version FROM vless_schema", &[]).map_err(|e| query_error(settings, e))?.map_or(0, |r| r.get(0));
    let known = MIGRATIONS.len() as i32;
    if found > known {
        return Err(FleetError::NewerSchema { found, known });
    }
    Ok(())
}

/// The fleet part as stored now.
pub fn read_part(client: &mut impl postgres::GenericClient) -> Result<FleetPart, postgres::Error> {
    let users: BTreeMap<String, String> =
        client.query("SELECT name, body FROM vless_users ORDER BY name", &[])?.into_iter().map(|r| (r.get(0), r.get(1))).collect();
    let ad_tag = client.query_opt("SELECT value FROM vless_settings WHERE key = 'ad_tag'", &[])?.map(|r| r.get(0));
    Ok(FleetPart { ad_tag, users })
}

/// Write `new` over `old` (both read inside the same locked transaction); returns whether
/// anything changed (then the nodes are notified at commit).
pub fn write_part(tx: &mut impl postgres::GenericClient, old: &FleetPart, new: &FleetPart) -> Result<bool, postgres::Error> {
    let mut changed = false;
    for (name, body) in &new.users {
        if old.users.get(name) != Some(body) {
            tx.execute(
                "INSERT INTO vless_users (name, body) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET body = EXCLUDED.body, updated = now()",
                &[name, body],
            )?;
            changed = true;
        }
    }
    for name in old.users.keys().filter(|n| !new.users.contains_key(*n)) {
        tx.execute("DELETE FROM vless_users WHERE name = $1", &[name])?;
        // A removed user's usage goes with it: a new user of the same name starts at zero.
        tx.execute("DELETE FROM vless_usage WHERE name = $1", &[name])?;
        changed = true;
    }
    if old.ad_tag != new.ad_tag {
        match &new.ad_tag {
            Some(t) => {
                tx.execute("INSERT INTO vless_settings (key, value) VALUES ('ad_tag', $1) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value", &[t])?
            }
            None => tx.execute("DELETE FROM vless_settings WHERE key = 'ad_tag'", &[])?,
        };
        changed = true;
    }
    if changed {
        tx.batch_execute(&format!("NOTIFY {CHANNEL}"))?;
    }
    Ok(changed)
}

/// What the other nodes hold open for one user (fleet-wide connection and IP limits).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct OthersOpen {
    pub connections: u32,
    pub ips: std::collections::HashSet<std::net::IpAddr>,
}

/// What one flush brings back: the other nodes' bytes by (user, period), and their open
/// connections and IPs by user (only nodes seen within `fresh`: a node that died leaves no
/// phantom connections behind for longer).
pub struct Others {
    pub bytes: BTreeMap<(String, i64), u64>,
    pub open: BTreeMap<String, OthersOpen>,
}

/// One node's heartbeat, written with its usage.
pub struct Heartbeat<'a> {
    pub node: &'a str,
    pub link_host: &'a str,
    pub link_port: u16,
    pub started_unix: i64,
    pub connections: i64,
    pub bytes: i64,
}

/// Write this node's usage rows (`(name, period, bytes)`), open connections
/// (`(name, connections, ips)`) and heartbeat in one transaction, then read the other nodes'.
pub fn flush(
    client: &mut Client,
    hb: &Heartbeat<'_>,
    rows: &[(String, i64, u64)],
    open: &[(String, u32, Vec<std::net::IpAddr>)],
    fresh: std::time::Duration,
) -> Result<Others, postgres::Error> {
    let mut tx = client.transaction()?;
    let names: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    let periods: Vec<i64> = rows.iter().map(|r| r.1).collect();
    let bytes: Vec<i64> = rows.iter().map(|r| r.2.min(i64::MAX as u64) as i64).collect();
    if !rows.is_empty() {
        // Only users that still exist: a row for a user removed meanwhile would outlive it.
        tx.execute(
            "INSERT INTO vless_usage (name, node, period, bytes)
             SELECT u.name, $1, u.period, u.bytes FROM unnest($2::text[], $3::bigint[], $4::bigint[]) AS u(name, period, bytes)
             WHERE EXISTS (SELECT 1 FROM vless_users v WHERE v.name = u.name)
             ON CONFLICT (name, node, period) DO UPDATE SET bytes = GREATEST(vless_usage.bytes, EXCLUDED.bytes), updated = now()",
            &[&hb.node, &names, &periods, &bytes],
        )?;
    }
    let port = hb.link_port as i32;
    tx.execute(
        "INSERT INTO vless_nodes (node, version, link_host, link_port, started, last_seen, connections, bytes)
         VALUES ($1, $2, $3, $4, to_timestamp($5::bigint), now(), $6, $7)
         ON CONFLICT (node) DO UPDATE SET version = EXCLUDED.version, link_host = EXCLUDED.link_host, link_port = EXCLUDED.link_port,
           started = EXCLUDED.started, last_seen = now(), connections = EXCLUDED.connections, bytes = EXCLUDED.bytes",
        &[&hb.node, &env!("CARGO_PKG_VERSION"), &hb.link_host, &port, &hb.started_unix, &hb.connections, &hb.bytes],
    )?;
    let open: Vec<_> = open.iter().filter(|o| o.1 > 0).collect();
    let names: Vec<&str> = open.iter().map(|o| o.0.as_str()).collect();
    let conns: Vec<i32> = open.iter().map(|o| o.1.min(i32::MAX as u32) as i32).collect();
    let ips: Vec<String> = open.iter().map(|o| o.2.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(",")).collect();
    tx.execute("DELETE FROM vless_open WHERE node = $1", &[&hb.node])?;
    if !open.is_empty() {
        tx.execute(
            "INSERT INTO vless_open (name, node, connections, ips) SELECT u.name, $1, u.c, u.ips FROM unnest($2::text[], $3::int[], $4::text[]) AS u(name, c, ips)",
            &[&hb.node, &names, &conns, &ips],
        )?;
    }
    let bytes = usage_sums(&mut tx, Some(hb.node))?;
    let mut others_open: BTreeMap<String, OthersOpen> = BTreeMap::new();
    for r in tx.query(
        "SELECT o.name, o.connections, o.ips FROM vless_open o JOIN vless_nodes n ON n.node = o.node
         WHERE o.node <> $1 AND n.last_seen > now() - make_interval(secs => $2)",
        &[&hb.node, &fresh.as_secs_f64()],
    )? {
        let e = others_open.entry(r.get(0)).or_default();
        e.connections += r.get::<_, i32>(1).max(0) as u32;
        e.ips.extend(r.get::<_, &str>(2).split(',').filter_map(|i| i.parse::<std::net::IpAddr>().ok()));
    }
    tx.commit()?;
    Ok(Others { bytes, open: others_open })
}

/// Bytes by (user, period), summed over the nodes (all, or all but one).
pub fn usage_sums(client: &mut impl postgres::GenericClient, except_node: Option<&str>) -> Result<BTreeMap<(String, i64), u64>, postgres::Error> {
    Ok(client
        .query("SELECT name, period, sum(bytes)::bigint FROM vless_usage WHERE node IS DISTINCT FROM $1 GROUP BY name, period", &[&except_node])?
        .into_iter()
        .map(|r| ((r.get::<_, String>(0), r.get::<_, i64>(1)), r.get::<_, i64>(2).max(0) as u64))
        .collect())
}

/// This node's own usage rows as the store has them: `(name, period, bytes)`.
pub fn own_usage(client: &mut Client, node: &str) -> Result<Vec<(String, i64, u64)>, postgres::Error> {
    Ok(client
        .query("SELECT name, period, bytes FROM vless_usage WHERE node = $1", &[&node])?
        .into_iter()
        .map(|r| (r.get(0), r.get(1), r.get::<_, i64>(2).max(0) as u64))
        .collect())
}

/// One row of `list-nodes`.
pub struct NodeRow {
    pub node: String,
    pub version: String,
    pub link_host: String,
    pub link_port: u16,
    pub started: i64,
    pub last_seen: i64,
    pub seconds_ago: i64,
    pub connections: i64,
    pub bytes: i64,
}

pub fn nodes(client: &mut Client) -> Result<Vec<NodeRow>, postgres::Error> {
    Ok(client
        .query(
            "SELECT node, version, link_host, link_port, extract(epoch FROM started)::bigint, extract(epoch FROM last_seen)::bigint,
                    extract(epoch FROM now() - last_seen)::bigint, connections, bytes FROM vless_nodes ORDER BY node",
            &[],
        )?
        .into_iter()
        .map(|r| NodeRow {
            node: r.get(0),
            version: r.get(1),
            link_host: r.get(2),
            link_port: r.get::<_, i32>(3) as u16,
            started: r.get(4),
            last_seen: r.get(5),
            seconds_ago: r.get(6),
            connections: r.get(7),
            bytes: r.get(8),
        })
        .collect())
}
