//! Cover domains for fake-TLS users (`[fake_tls] domains`), and the network check of a domain.
//!
//! The check resolves the name, connects to port 443 and sends a TLS ClientHello
//! (`inspect::tlsprobe`), each step bounded by [`CHECK_TIMEOUT`]: a cover domain must answer
//! TLS 1.3, because fake-TLS answers like a TLS 1.3 server and a prober comparing the two would
//! notice. It only warns: a host without outside network (or a test) must still be able to save
//! the domain.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{anyhow, bail};
use mtproxy_core::config::{valid_domain, Config, COVER_DOMAINS};
use mtproxy_core::cover::{self, CoverCache};
use mtproxy_core::fronting;
use serde_json::json;
use tokio::net::TcpStream;
use toml_edit::{value, Array, DocumentMut, Item, Table};

use super::output::print_json;
use super::output::JsonArg;
use crate::inspect::tlsprobe::{self, TlsAnswer};
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
    let ip = addrs[0].ip();
    match tls_answer(domain, addrs[0]) {
        Err(e) => eprintln!("warning: {domain} resolves but {ip}:443 is unreachable ({e}); fake-TLS clients of it would be fronted to a dead site. Saved anyway."),
        Ok(None) => eprintln!("warning: {domain} ({ip}:443) accepts connections but sent no TLS answer within {}s; it may not be an HTTPS site. Saved anyway.", CHECK_TIMEOUT.as_secs()),
        Ok(Some(a)) if a.is_tls13() => eprintln!("checked: {domain} resolves ({ip}) and answers TLS 1.3 on port 443"),
        Ok(Some(a)) => eprintln!(
            "warning: {domain} ({ip}:443) {}: fake-TLS answers like a TLS 1.3 server, so a prober comparing the proxy with the site could tell them apart. Saved anyway; a site that speaks TLS 1.3 is a better cover.",
            a.describe()
        ),
    }
}

/// Learn `domain`'s TLS flight now (`mtproxy_core::cover`) where the proxy will front its
/// probes (the mask host, or the domain on 443) and keep it in the cover cache, so fake-TLS
/// clients get the cover's shape from the proxy's first connection. Prints the outcome; never
/// fails: the running proxy keeps trying on its own.
pub fn learn_cover(config_path: &Path, cfg: &Config, domain: &str) {
    match learn_cover_into(&cfg.cover_cache_path(config_path), cfg, domain) {
        Some(Ok(m)) => eprintln!("{m}"),
        Some(Err(m)) => eprintln!("warning: {m}"),
        None => {}
    }
}

/// [`learn_cover`] into the cache file at `cache` (setup passes the host's path of a
/// container's file). `None` when emulation is off; else the message to show.
pub fn learn_cover_into(cache: &Path, cfg: &Config, domain: &str) -> Option<Result<String, String>> {
    if !cfg.fake_tls.emulate_cover {
        return None;
    }
    let target = fronting::cover_target(cfg, domain);
    let learned = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
        .and_then(|rt| rt.block_on(cover::learn::learn(domain, &target, CHECK_TIMEOUT)).map_err(|e| e.to_string()));
    Some(match learned {
        Ok(profile) => {
            let shape = profile.variants.get("default").or_else(|| profile.variants.values().next()).map(|v| v.describe()).unwrap_or_default();
            match CoverCache::update(cache, profile) {
                Ok(()) => Ok(format!("learned: the TLS flight of {domain} from {target} ({shape}); fake-TLS clients get the same shape")),
                Err(e) => Err(format!("learned the TLS flight of {domain} but cannot keep it: {e}")),
            }
        }
        Err(e) => Err(format!("cannot learn the TLS flight of {domain} from {target} ({e}); the proxy keeps trying and uses the generic flight until then")),
    })
}

/// Connect to `addr` and ask for a ServerHello for `domain`; `Ok(None)`: no answer in time.
fn tls_answer(domain: &str, addr: SocketAddr) -> std::io::Result<Option<TlsAnswer>> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let mut s = tokio::time::timeout(CHECK_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
        tokio::time::timeout(CHECK_TIMEOUT, tlsprobe::ask(&mut s, domain)).await.ok().transpose()
    })
}

fn domains_array(doc: &mut DocumentMut, current: &[String]) -> anyhow::Result<()> {
    let ft =
        doc.entry("fake_tls").or_insert_with(|| Item::Table(Table::new())).as_table_mut().ok_or_else(|| anyhow!("`fake_tls` in the file is not a table"))?;
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
    let cfg = store.commit(&doc)?;
    drop(store);
    println!("Added cover domain {d}.");
    if !a.no_check {
        learn_cover(config, &cfg, &d);
    }
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
    let users: Vec<&str> =
        cfg.users.iter().filter(|u| matches!(&u.kind, mtproxy_proto::SecretKind::FakeTls { domain } if *domain == d)).map(|u| u.name.as_str()).collect();
    if !users.is_empty() {
        eprintln!("note: users {} still use {d}; they keep working (give them a new domain by re-adding them)", users.join(", "));
    }
    Ok(())
}
