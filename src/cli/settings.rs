//! Server settings (port, workers, promoted channel) and `reload`.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;

use anyhow::{anyhow, bail};
use serde_json::json;
use toml_edit::{value, Array, DocumentMut, Item, Table};

use super::output::print_json;
use super::output::JsonArg;
use crate::store::{self, Store};

#[derive(clap::Args)]
pub struct PortArgs {
    /// The new listen port (1-65535), on every listen address.
    #[arg(value_parser = clap::value_parser!(u16).range(1..))]
    pub port: u16,
}

#[derive(clap::Args)]
pub struct WorkersArgs {
    /// Worker threads, 1-256.
    #[arg(value_parser = clap::value_parser!(u16).range(1..=256))]
    pub count: u16,
}

#[derive(clap::Args)]
pub struct TagArgs {
    /// The proxy tag @MTProxybot gave: 32 hexadecimal characters.
    pub tag: String,
}

fn table<'a>(doc: &'a mut DocumentMut, name: &str) -> anyhow::Result<&'a mut Table> {
    doc.entry(name).or_insert_with(|| Item::Table(Table::new())).as_table_mut().ok_or_else(|| anyhow!("`{name}` in the file is not a table"))
}

/// Whether another program holds `addr`; `Ok` for free (or not testable, e.g. no IPv6).
fn port_free(addr: SocketAddr) -> anyhow::Result<()> {
    match TcpListener::bind(addr) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            bail!("port {} is in use on {addr} by another program; choose a free port (`ss -ltnp` shows who listens)", addr.port())
        }
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            eprintln!("warning: binding {addr} needs root or CAP_NET_BIND_SERVICE; the proxy must have it");
            Ok(())
        }
        Err(_) => Ok(()),
    }
}

pub fn set_port(config: &Path, a: PortArgs) -> anyhow::Result<()> {
    let store = Store::lock(config)?;
    let (mut doc, cfg) = store.load(false)?;
    let mut listen: Vec<SocketAddr> = Vec::new();
    for addr in &cfg.listen {
        let mut n = *addr;
        n.set_port(a.port);
        if !listen.contains(&n) {
            listen.push(n);
        }
    }
    if listen == cfg.listen {
        println!("The proxy already listens on port {}.", a.port);
        return Ok(());
    }
    for addr in &listen {
        port_free(*addr)?;
    }
    let mut arr = Array::new();
    for l in &listen {
        arr.push(l.to_string());
    }
    table(&mut doc, "server")?["listen"] = value(arr);
    let cfg = store.commit(&doc)?;
    println!("Listen port set to {}. The running proxy moves to it within a second; open connections stay.", a.port);
    match cfg.public_port {
        Some(p) => eprintln!("note: links keep port {p} (server.public_port, a front such as HAProxy); change that front if it forwards to the old port"),
        None => eprintln!("note: links now carry port {}: hand users their new link (show-user-config NAME) and open the port in the firewall", a.port),
    }
    Ok(())
}

pub fn set_workers(config: &Path, a: WorkersArgs) -> anyhow::Result<()> {
    let store = Store::lock(config)?;
    let (mut doc, _) = store.load(false)?;
    table(&mut doc, "server")?["workers"] = value(a.count as i64);
    store.commit(&doc)?;
    println!("Workers set to {}. This takes effect when the proxy restarts (its thread pool is sized at start).", a.count);
    Ok(())
}

pub fn set_promoted(config: &Path, a: TagArgs) -> anyhow::Result<()> {
    let tag = a.tag.trim().to_ascii_lowercase();
    if tag.len() != 32 || !tag.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("the tag must be 32 hexadecimal characters (got {}); paste the proxy tag @MTProxybot gave", tag.len());
    }
    let store = Store::lock(config)?;
    let (mut doc, _) = store.load(false)?;
    table(&mut doc, "promoted_channel")?["ad_tag"] = value(tag);
    store.commit(&doc)?;
    println!("Promoted-channel tag stored. The running proxy re-reads the file within a second: new connections then go through Telegram's middle-end servers with this tag (middle-proxy mode, docs/middle-proxy.md); open connections keep their path.");
    Ok(())
}

pub fn show_promoted(config: &Path, a: JsonArg) -> anyhow::Result<()> {
    let cfg = store::read(config)?;
    let tag = cfg.ad_tag.map(hex::encode);
    if a.json {
        print_json(&json!({ "ad_tag": tag }));
    } else {
        match tag {
            Some(t) => println!("Promoted-channel tag: {t}"),
            None => println!("No promoted-channel tag is set (set-promoted-channel TAG)."),
        }
    }
    Ok(())
}

pub fn remove_promoted(config: &Path) -> anyhow::Result<()> {
    let store = Store::lock(config)?;
    let (mut doc, cfg) = store.load(false)?;
    if cfg.ad_tag.is_none() {
        println!("No promoted-channel tag is set; nothing to remove.");
        return Ok(());
    }
    if let Some(t) = doc.get_mut("promoted_channel").and_then(Item::as_table_mut) {
        t.remove("ad_tag");
    }
    store.commit(&doc)?;
    println!(
        "Promoted-channel tag removed. New connections go straight to the DCs again (direct mode) once the running proxy re-reads the file, within a second."
    );
    Ok(())
}
