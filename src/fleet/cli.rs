//! The CLI against the store: the transaction every user command runs in when `[store]` is
//! set ([`Session`], used by `crate::store`), and the commands that exist only in a fleet:
//! `import-users`, `export-users`, `list-nodes`, and the per-node links of `show-user-config`.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use mtproxy_core::config::{Config, StoreSettings, User};
use postgres::Client;
use serde_json::json;
use toml_edit::{DocumentMut, Item};

use super::{db, FleetError, FleetPart};
use crate::store::Store;

const TIMEOUT: Duration = Duration::from_secs(5);

/// One CLI change: a transaction holding the writers' lock from the read to the commit, so two
/// CLI calls on two nodes at once run one after the other (no lost update).
pub struct Session {
    settings: StoreSettings,
    client: RefCell<Client>,
    old: FleetPart,
}

impl Session {
    pub fn begin(settings: &StoreSettings) -> Result<Session, FleetError> {
        let mut client = super::connect(settings, TIMEOUT)?;
        db::check_version(settings, &mut client)?;
        let q = |e| db::query_error(settings, e);
        client.batch_execute("BEGIN; LOCK TABLE vless_users IN SHARE ROW EXCLUSIVE MODE").map_err(q)?;
        let old = db::read_part(&mut client).map_err(q)?;
        Ok(Session { settings: settings.clone(), client: RefCell::new(client), old })
    }

    pub fn part(&self) -> &FleetPart {
        &self.old
    }

    /// Write `new` and commit (the nodes are notified at commit when something changed).
    pub fn commit(&self, new: &FleetPart) -> Result<(), FleetError> {
        let q = |e| db::query_error(&self.settings, e);
        let mut c = self.client.borrow_mut();
        db::write_part(&mut *c, &self.old, new).map_err(q)?;
        c.batch_execute("COMMIT").map_err(q)
    }
}

/// The fleet part as stored now (no lock: a reader).
pub fn read_part(settings: &StoreSettings) -> Result<FleetPart, FleetError> {
    let mut c = super::connect(settings, TIMEOUT)?;
    db::check_version(settings, &mut c)?;
    db::read_part(&mut c).map_err(|e| db::query_error(settings, e))
}

fn fleet_settings(config: &Path) -> anyhow::Result<StoreSettings> {
    match mtproxy_core::config::load(config)?.store {
        Some(s) => Ok(s),
        None => bail!("{} has no [store]: this command works on a fleet's shared store (docs/fleet.md)", config.display()),
    }
}

#[derive(clap::Args)]
pub struct ImportArgs {
    /// The TOML file whose [users] (and promoted-channel tag) go into the store; default: the
    /// config file itself.
    pub from: Option<PathBuf>,
    /// Overwrite users of the same name already in the store (default: refuse).
    #[arg(long)]
    pub replace: bool,
}

/// `import-users`: a file's users into the store, in one transaction.
pub fn import(config: &Path, a: ImportArgs) -> anyhow::Result<()> {
    fleet_settings(config)?;
    let from = a.from.clone().unwrap_or_else(|| config.to_path_buf());
    let text = std::fs::read_to_string(&from).with_context(|| format!("reading {}", from.display()))?;
    mtproxy_core::config::parse_str(&text, &from)?;
    let src = super::split(&text.parse::<DocumentMut>().context("not a TOML document")?)?;
    if src.users.is_empty() {
        bail!("{} has no [users.NAME] to import", from.display());
    }
    let st = Store::lock(config)?;
    let (mut doc, _) = st.load(false)?;
    let mut part = super::split(&doc)?;
    let clash: Vec<&str> = src.users.keys().filter(|n| part.users.contains_key(*n)).map(String::as_str).collect();
    if !clash.is_empty() && !a.replace {
        bail!("the store already has users named {}; nothing was imported (--replace overwrites them)", clash.join(", "));
    }
    part.users.extend(src.users.clone());
    if part.ad_tag.is_none() {
        part.ad_tag = src.ad_tag;
    }
    doc = super::merge(&doc, &part)?;
    st.commit(&doc)?;
    println!("imported {} users into the store; every node applies them now", src.users.len());
    Ok(())
}

#[derive(clap::Args)]
pub struct ExportArgs {
    /// Write to this file (mode 0600) instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// `export-users`: the store's users (and tag) as TOML sections to paste into a config file.
pub fn export(config: &Path, a: ExportArgs) -> anyhow::Result<()> {
    let part = read_part(&fleet_settings(config)?)?;
    let doc = super::merge(&DocumentMut::new(), &part)?;
    let text = format!("# users exported from the fleet store by vless-mtproxy export-users (secrets: keep this 0600)\n{doc}");
    match a.output {
        None => print!("{text}"),
        Some(p) => {
            crate::store::write_private(&p, text.as_bytes()).with_context(|| format!("writing {}", p.display()))?;
            eprintln!("{} users written to {}", part.users.len(), p.display());
        }
    }
    Ok(())
}

#[derive(clap::Args)]
pub struct NodesArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `list-nodes`: every node that reported to the store.
pub fn list_nodes(config: &Path, a: NodesArgs) -> anyhow::Result<()> {
    let settings = fleet_settings(config)?;
    let mut c = super::connect(&settings, TIMEOUT)?;
    let nodes = db::nodes(&mut c).map_err(|e| db::query_error(&settings, e))?;
    if a.json {
        let items: Vec<_> = nodes
            .iter()
            .map(|n| json!({"node": n.node, "version": n.version, "host": n.link_host, "port": n.link_port, "started": n.started, "last_seen": n.last_seen, "seconds_since_seen": n.seconds_ago, "connections": n.connections, "bytes": n.bytes}))
            .collect();
        crate::cli::output::print_json(&json!({ "nodes": items }));
        return Ok(());
    }
    // A node silent for longer than this (with this node's flush interval) is marked.
    let silent_after = (3 * settings.flush_interval + Duration::from_secs(5)).as_secs() as i64;
    println!("{:<20} {:<28} {:<9} {:>12} {:<7} {:>12} {:>14}", "NODE", "ADDRESS", "VERSION", "LAST SEEN", "STATE", "CONNECTIONS", "BYTES");
    for n in &nodes {
        let addr = format!("{}:{}", n.link_host, n.link_port);
        let state = if n.seconds_ago > silent_after { "silent" } else { "up" };
        println!(
            "{:<20} {:<28} {:<9} {:>12} {:<7} {:>12} {:>14}",
            n.node,
            addr,
            n.version,
            format!("{}s ago", n.seconds_ago),
            state,
            n.connections,
            crate::cli::output::size(n.bytes.max(0) as u64)
        );
    }
    println!("Total: {} nodes", nodes.len());
    Ok(())
}

#[derive(clap::Args)]
pub struct NodeArg {
    /// The node's name as `list-nodes` shows it.
    pub node: String,
}

/// `remove-node`: forget a node that is gone (its heartbeat and open connections; its usage
/// rows stay, they still count towards the quotas of this period). A running node comes back at
/// its next flush.
pub fn remove_node(config: &Path, a: NodeArg) -> anyhow::Result<()> {
    let settings = fleet_settings(config)?;
    let mut c = super::connect(&settings, TIMEOUT)?;
    let q = |e| db::query_error(&settings, e);
    let mut tx = c.transaction().map_err(q)?;
    let n = tx.execute("DELETE FROM vless_nodes WHERE node = $1", &[&a.node]).map_err(q)?;
    tx.execute("DELETE FROM vless_open WHERE node = $1", &[&a.node]).map_err(q)?;
    tx.commit().map_err(q)?;
    if n == 0 {
        bail!("no node named `{}`; `list-nodes` shows the names", a.node);
    }
    println!("node {} removed from the list (its usage still counts)", a.node);
    Ok(())
}

/// In a fleet: each user's bytes in its current quota period, summed over the nodes (as of
/// their last flush), for `list-users`. `None` without `[store]` or when the store is down.
pub fn fleet_usage(cfg: &Config) -> Option<std::collections::BTreeMap<String, u64>> {
    let settings = cfg.store.as_ref()?;
    let mut c = super::connect(settings, TIMEOUT).ok()?;
    let sums = db::usage_sums(&mut c, None).ok()?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    let month = mtproxy_core::config::date::month_index(now);
    Some(
        cfg.users
            .iter()
            .map(|u| {
                let period = if u.limits.quota_monthly { month } else { 0 };
                (u.name.clone(), sums.get(&(u.name.clone(), period)).copied().unwrap_or(0))
            })
            .collect(),
    )
}

/// `show-user-config` in a fleet: one link per node seen in the last day (the shared name,
/// when the nodes report one, collapses to one line).
pub fn print_node_links(cfg: &Config, user: &User) {
    let Some(settings) = &cfg.store else { return };
    let nodes = match super::connect(settings, TIMEOUT).and_then(|mut c| db::nodes(&mut c).map_err(|e| db::query_error(settings, e))) {
        Ok(n) => n,
        Err(e) => return eprintln!("warning: {e}; the per-node links are not shown"),
    };
    let mut seen = std::collections::BTreeSet::new();
    let fresh: Vec<_> = nodes.iter().filter(|n| n.seconds_ago < 86_400 && seen.insert((n.link_host.clone(), n.link_port))).collect();
    if fresh.is_empty() {
        return;
    }
    println!("links through each node of the fleet:");
    for n in fresh {
        let (tg, _) = crate::share::links_at(user, &n.link_host, n.link_port);
        println!("  {}: {tg}", n.node);
    }
}

/// The node's own settings changed in a fleet edit (not only users): compare without the
/// fleet part.
pub fn node_part_changed(edited: &DocumentMut, file: &DocumentMut) -> bool {
    let (mut a, mut b) = (edited.clone(), file.clone());
    super::strip(&mut a);
    super::strip(&mut b);
    a.to_string() != b.to_string()
}

/// What to write to the file after a fleet edit that changed node settings: the edited
/// settings, with the file's own (ignored) users kept for a later import or rollback.
pub fn node_file(edited: &DocumentMut, file: &DocumentMut) -> DocumentMut {
    let mut out = edited.clone();
    super::strip(&mut out);
    if let Some(u) = file.get("users") {
        out.insert("users", u.clone());
    }
    if let Some(tag) = file.get("promoted_channel").and_then(|p| p.get("ad_tag")) {
        let p = out.entry("promoted_channel").or_insert_with(|| Item::Table(toml_edit::Table::new()));
        if let Some(p) = p.as_table_like_mut() {
            p.insert("ad_tag", tag.clone());
        }
    }
    out
}
