//! The fleet: several nodes sharing their users through PostgreSQL (issue 13, docs/fleet.md).
//!
//! Why the store holds TOML: a node's configuration stays the one validated model it was
//! (`mtproxy_core::config`). The database keeps the *fleet part* of the document — the
//! `[users.NAME]` tables, verbatim, and the promoted-channel tag — and a node builds its
//! effective configuration by putting that part into its own file (listen, mask host, DCs,
//! `[store]`): [`merge`]. The CLI edits the merged document exactly as it edits a file, and
//! [`split`] takes the fleet part back out to write it in one transaction. So every user
//! command, every check and every error message is the same with and without `[store]`.
//!
//! ```text
//!   node's config.toml ──┐                       ┌── vless_users (name, body = TOML)
//!   (listen, DCs, …)     ├─ merge ─> Config      ├── vless_settings (ad_tag)
//!   fleet part (DB/cache)┘                       ├── vless_usage (name, node, period, bytes)
//!                                                └── vless_nodes (heartbeat per node)
//! ```
//!
//! `db` holds the schema and the queries, `node` the daemon's side (LISTEN/NOTIFY, resync,
//! disk cache, usage flush), `cli` the commands that exist only in a fleet.

pub mod cli;
pub mod db;
pub mod node;

use std::collections::BTreeMap;
use std::time::Duration;

use mtproxy_core::config::StoreSettings;
use serde::{Deserialize, Serialize};
use toml_edit::{DocumentMut, Item, Table};

/// What can go wrong with the store; never carries the URL's password.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("cannot reach the store at {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("the store at {url} failed: {reason}")]
    Query { url: String, reason: String },
    #[error("the store holds a user `{name}` that is not a plain table of settings")]
    BadUser { name: String },
    #[error("the store's schema is version {found}, newer than this binary knows ({known}); upgrade this node")]
    NewerSchema { found: i32, known: i32 },
}

/// The part of the configuration that lives in the store.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetPart {
    /// Promoted-channel tag (32 hex characters) or none.
    pub ad_tag: Option<String>,
    /// User name -> the body of its `[users.NAME]` table, normalised TOML text.
    pub users: BTreeMap<String, String>,
}

/// A user's table as standalone TOML text (`key = value` lines), normalised so that the same
/// settings always give the same text. Refuses sub-tables: a body must not smuggle sections in.
pub fn body_of(name: &str, item: &Item) -> Result<String, FleetError> {
    let bad = || FleetError::BadUser { name: name.to_string() };
    let t = item.as_table_like().ok_or_else(bad)?;
    let mut d = DocumentMut::new();
    for (k, v) in t.iter() {
        let Item::Value(v) = v else { return Err(bad()) };
        let mut v = v.clone();
        v.decor_mut().clear();
        d.insert(k, Item::Value(v));
    }
    Ok(d.to_string())
}

/// Parse a body read from the store back into a table (checking it is one).
fn table_of(name: &str, body: &str) -> Result<Table, FleetError> {
    let doc: DocumentMut = body.parse().map_err(|_| FleetError::BadUser { name: name.to_string() })?;
    body_of(name, doc.as_item())?;
    let mut t = doc.as_table().clone();
    t.set_implicit(false);
    Ok(t)
}

/// Take the fleet part out of a document: the `[users]` tables and `promoted_channel.ad_tag`.
pub fn split(doc: &DocumentMut) -> Result<FleetPart, FleetError> {
    let mut users = BTreeMap::new();
    if let Some(t) = doc.get("users").and_then(Item::as_table_like) {
        for (name, item) in t.iter() {
            users.insert(name.to_string(), body_of(name, item)?);
        }
    }
    let ad_tag = doc.get("promoted_channel").and_then(|p| p.get("ad_tag")).and_then(|v| v.as_str()).map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    Ok(FleetPart { ad_tag, users })
}

/// The document without its fleet part: the node's own settings.
pub fn strip(doc: &mut DocumentMut) {
    doc.remove("users");
    if let Some(p) = doc.get_mut("promoted_channel").and_then(Item::as_table_like_mut) {
        p.remove("ad_tag");
        if p.is_empty() {
            doc.remove("promoted_channel");
        }
    }
}

/// The node's file with the fleet part in place of its own users and tag.
pub fn merge(file: &DocumentMut, part: &FleetPart) -> Result<DocumentMut, FleetError> {
    let mut doc = file.clone();
    strip(&mut doc);
    if let Some(tag) = &part.ad_tag {
        let p = doc.entry("promoted_channel").or_insert_with(|| Item::Table(Table::new()));
        if let Some(p) = p.as_table_like_mut() {
            p.insert("ad_tag", toml_edit::value(tag.as_str()));
        }
    }
    let mut users = Table::new();
    users.set_implicit(true);
    for (name, body) in &part.users {
        users.insert(name, Item::Table(table_of(name, body)?));
    }
    doc.insert("users", Item::Table(users));
    Ok(doc)
}

/// The name this node reports under: `[store] node`, else the host name.
pub fn node_name(settings: &StoreSettings) -> String {
    settings.node.clone().unwrap_or_else(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname").ok().map(|h| h.trim().to_string()).filter(|h| !h.is_empty()).unwrap_or_else(|| "node".into())
    })
}

/// Open a connection (no TLS: see docs/fleet.md), bounded by `timeout`.
pub fn connect(settings: &StoreSettings, timeout: Duration) -> Result<postgres::Client, FleetError> {
    let url = settings.url.redacted();
    let fail = |e: &postgres::Error| {
        // The cause (connection refused, timeout, authentication) is in the source.
        let reason = match std::error::Error::source(e) {
            Some(cause) => format!("{e}: {cause}"),
            None => e.to_string(),
        };
        FleetError::Connect { url: url.clone(), reason: mtproxy_core::config::redact_url(&reason) }
    };
    let mut cfg: postgres::Config = settings.url.secret_str().parse().map_err(|e: postgres::Error| fail(&e))?;
    cfg.connect_timeout(timeout);
    cfg.application_name("vless-mtproxy");
    let mut client = cfg.connect(postgres::NoTls).map_err(|e| fail(&e))?;
    db::migrate(&mut client).map_err(|e| db::query_error(settings, e))?;
    Ok(client)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "[server]\nlisten = [\"127.0.0.1:1\"]\n\n[promoted_channel]\nad_tag = \"00000000000000000000000000000000\"\n\n[users.old]\nsecret = \"0123456789abcdef0123456789abcdef\"\nkind = \"dd\"\n";

    #[test]
    fn merge_puts_the_store_users_in_place_of_the_files() {
        let file: DocumentMut = FILE.parse().unwrap();
        let mut part = FleetPart::default();
        part.users.insert("a.b".into(), "secret = \"11111111111111111111111111111111\"\nkind = \"classic\"\nmax_connections = 3\n".into());
        let merged = merge(&file, &part).unwrap();
        let cfg = mtproxy_core::config::parse_str(&merged.to_string(), std::path::Path::new("x")).unwrap();
        assert_eq!(cfg.users.len(), 1);
        assert_eq!(cfg.users[0].name, "a.b");
        assert_eq!(cfg.users[0].limits.max_connections, Some(3));
        assert_eq!(cfg.ad_tag, None, "the tag comes from the store too");
        assert_eq!(split(&merged).unwrap(), part, "split gives back what merge put in");
    }

    #[test]
    fn split_normalises_and_refuses_sections_in_a_user() {
        let doc: DocumentMut = "users.x = { secret =   \"ab\", kind = \"dd\" }\n".parse().unwrap();
        assert_eq!(split(&doc).unwrap().users["x"], "secret = \"ab\"\nkind = \"dd\"\n");
        assert!(table_of("x", "secret = \"ab\"\n[server]\nworkers = 9\n").is_err());
        let mut file: DocumentMut = FILE.parse().unwrap();
        strip(&mut file);
        assert_eq!(file.to_string(), "[server]\nlisten = [\"127.0.0.1:1\"]\n");
    }

    #[test]
    fn the_kubernetes_configmap_holds_a_valid_node_config_without_the_password() {
        let yaml: serde_yaml::Value = serde_yaml::from_str(include_str!("../../deploy/kubernetes/configmap.yaml")).unwrap();
        let text = yaml["data"]["config.toml"].as_str().unwrap();
        // The DaemonSet sets this from the Secret; no other test reads it.
        std::env::set_var("VLESS_MTPROXY_STORE_URL", "postgres://vless:pw@db:5432/vless?sslmode=disable");
        let cfg = mtproxy_core::config::parse_str(text, std::path::Path::new("configmap.yaml")).unwrap();
        let store = cfg.store.as_ref().unwrap();
        assert_eq!(store.url.redacted(), "postgres://vless:***@db:5432/vless?sslmode=disable");
        assert_eq!(store.cache_file.as_deref(), Some(std::path::Path::new("/var/lib/vless-mtproxy/fleet-cache")));
        assert!(cfg.users.is_empty());
    }
}
