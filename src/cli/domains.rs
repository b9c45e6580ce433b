//! Cover domains for fake-TLS users (`[fake_tls] domains`), and the network check of a domain.
//!
//! The check resolves the name and opens a TCP connection to port 443, each bounded by
//! [`CHECK_TIMEOUT`]. It only warns: a host without outside network (or a test) must still be
//! able to save the domain.

use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{anyhow, bail};
use mtproxy_core::config::{valid_domain, COVER_DOMAINS};
use serde_json::json;
use toml_edit::{value, Array, DocumentMut, Item, Table};

use super::output::print_json;
use super::users::JsonArg;
use crate::store::{self, Store};

/// Bound of each network step of a domain check.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(clap::Args)]
pub struct AddDomainArgs {
    /// A host name such as www.example.com: a real HTTPS site, reachable and not blocked.
    pub domain: String,
    /// Skip the network check.
    #[arg(long)]
    pub no_check: bool,
}

#[derive(clap::Args)]
pub struct DomainArg {
    pub domain: String,
}

/// Check that `domain` resolves and accepts connections on 443; print the outcome. Never fails.
pub fn check_domain(domain: &str) {
    let (tx, rx) = mpsc::channel();
    let name = domain.to_string();
    // The system resolver has no timeout of its own: run it on a thread and stop waiting.
    std::thread::spawn(move || {
        let _ = tx.send((name.as_str(), 443).to_socket_addrs().map(|a| a.collect::<Vec<_>>()));
    });
    let addrs = match rx.recv_timeout(CHECK_TIMEOUT) {
        Ok(Ok(a)) if !a.is_empty() => a,
        Ok(Ok(_)) | Ok(Err(_)) => {
            eprintln!("warning: check skipped: cannot resolve {domain} (no DNS answer; the network may be unavailable). Saved anyway; make sure clients can reach it.");
            return;
        }
        Err(_) => {
            eprintln!("warning: check skipped: resolving {domain} took longer than {}s (network unavailable?). Saved anyway.", CHECK_TIMEOUT.as_secs());
            return;
        }
    };
    match TcpStream::connect_timeout(&addrs[0], CHECK_TIMEOUT) {
        Ok(_) => eprintln!("checked: {domain} resolves ({}) and accepts connections on port 443", addrs[0].ip()),
        Err(e) => eprintln!("warning: {domain} resolves but {}:443 is unreachable ({e}); fake-TLS clients of it would be fronted to a dead site. Saved anyway.", addrs[0].ip()),
    }
}

fn domains_array(doc: &mut DocumentMut, current: &[String]) -> anyhow::Result<()> {
    let ft = doc.entry("fake_tls").or_insert_with(|| Item::Table(Table::new())).as_table_mut().ok_or_else(|| anyhow!("`fake_tls` in the file is not a table"))?;
    let mut arr = Array::new();
    for d in current {
        arr.push(d.as_str());
    }
    ft["domains"] = value(arr);
    Ok(())
}

pub fn list(config: &Path, a: JsonArg) -> anyhow::Result<()> {
    let cfg = store::read(config)?;
    let users_of = |d: &str| -> Vec<String> {
        cfg.users.iter().filter(|u| matches!(&u.kind, mtproxy_proto::SecretKind::FakeTls { domain } if domain == d)).map(|u| u.name.clone()).collect()
    };
    let is_default = cfg.fake_tls.cover_domains.iter().map(String::as_str).eq(COVER_DOMAINS.iter().copied());
    if a.json {
        let items: Vec<_> = cfg.fake_tls.cover_domains.iter().map(|d| json!({ "domain": d, "users": users_of(d) })).collect();
        print_json(&json!({ "domains": items, "defaults": is_default }));
        return Ok(());
    }
    if is_default {
        println!("Cover domains (the defaults; add or remove to keep your own list):");
    } else {
        println!("Cover domains:");
    }
    for d in &cfg.fake_tls.cover_domains {
        let users = users_of(d);
        if users.is_empty() {
            println!("  {d}");
        } else {
            println!("  {d}  (used by {})", users.join(", "));
        }
    }
    println!("Total: {}", cfg.fake_tls.cover_domains.len());
    Ok(())
}

pub fn add(config: &Path, a: AddDomainArgs) -> anyhow::Result<()> {
    let d = a.domain.trim().to_ascii_lowercase();
    if !valid_domain(&d) {
        bail!("`{}` is not a valid domain; give a host name such as www.example.com (letters, digits, `-`, dots; 4-182 characters)", a.domain);
    }
    if !a.no_check {
        check_domain(&d);
    }
    let store = Store::lock(config)?;
    let (mut doc, cfg) = store.load(false)?;
    if cfg.fake_tls.cover_domains.contains(&d) {
        bail!("`{d}` is already in the list");
    }
    let mut list = cfg.fake_tls.cover_domains.clone();
    list.push(d.clone());
    domains_array(&mut doc, &list)?;
    store.commit(&doc)?;
    println!("Added cover domain {d}.");
    Ok(())
}

pub fn remove(config: &Path, a: DomainArg) -> anyhow::Result<()> {
    let d = a.domain.trim().to_ascii_lowercase();
    let store = Store::lock(config)?;
    let (mut doc, cfg) = store.load(false)?;
    if !cfg.fake_tls.cover_domains.contains(&d) {
        bail!("`{d}` is not in the list ({}); `list-fake-tls-domains` shows it", cfg.fake_tls.cover_domains.join(", "));
    }
    let list: Vec<String> = cfg.fake_tls.cover_domains.iter().filter(|x| **x != d).cloned().collect();
    domains_array(&mut doc, &list)?;
    store.commit(&doc)?;
    println!("Removed cover domain {d} from the list.");
    let users: Vec<&str> = cfg.users.iter().filter(|u| matches!(&u.kind, mtproxy_proto::SecretKind::FakeTls { domain } if *domain == d)).map(|u| u.name.as_str()).collect();
    if !users.is_empty() {
        eprintln!("note: users {} still use {d}; they keep working (give them a new domain by re-adding them)", users.join(", "));
    }
    Ok(())
}
