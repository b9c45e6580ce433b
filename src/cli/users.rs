//! Users and secrets: one store, two views (named users; secrets as users named
//! `secret-XXXXXX`).

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context};
use mtproxy_core::config::{self, date, valid_domain, valid_user_name, Config, User};
use mtproxy_proto::{Secret, SecretKind};
use rand::RngCore;
use serde_json::json;
use toml_edit::{value, DocumentMut, Item, Table};

use super::domains::check_domain;
use super::output::{self, print_json, print_user, user_json, QrArgs};
use crate::store::{self, Store};

#[derive(clap::Args)]
pub struct ListArgs {
    #[arg(long)]
    /// Print JSON instead of text.
    pub json: bool,
}

#[derive(clap::Args)]
pub struct NameArg {
    /// The user's name.
    pub name: String,
}

#[derive(clap::Args)]
pub struct SecretArg {
    /// The secret: plain 32 hex, dd + 32 hex, ee + 32 hex + hex(domain), the masked form from
    /// list-secrets, or a unique prefix of at least 6 characters.
    pub secret: String,
}

/// Limits as flags; `none` clears one.
#[derive(clap::Args, Default)]
pub struct LimitFlags {
    /// Connections open at once (or `none`).
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub max_connections: Option<String>,
    /// Distinct client IP addresses at once (or `none`).
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub max_ips: Option<String>,
    /// Data quota, both directions, e.g. 10GiB or 500MB (or `none`).
    #[arg(long, value_name = "SIZE")]
    pub quota: Option<String>,
    /// When the quota starts again: `monthly` (calendar month, UTC) or `never`.
    #[arg(long, value_name = "monthly|never")]
    pub quota_reset: Option<String>,
    /// Last day of access, YYYY-MM-DD (through that day, UTC) or an RFC 3339 time (or `none`).
    #[arg(long, value_name = "DATE")]
    pub expires: Option<String>,
}

#[derive(clap::Args)]
pub struct KindFlags {
    /// Fake-TLS (`ee`) with this cover domain: traffic looks like HTTPS to that site.
    #[arg(long, value_name = "DOMAIN")]
    pub fake_tls: Option<String>,
    /// Random padding (`dd`); without this or --fake-tls the secret is classic, which DPI can spot.
    #[arg(long)]
    pub with_padding: bool,
    /// Skip the network check of the fake-TLS domain.
    #[arg(long)]
    pub no_check: bool,
}

#[derive(clap::Args)]
pub struct AddUserArgs {
    /// Name: 1-64 letters, digits, `_`, `-` or `.`.
    pub name: String,
    #[command(flatten)]
    pub kind: KindFlags,
    #[command(flatten)]
    pub limits: LimitFlags,
    #[command(flatten)]
    pub qr: QrArgs,
}

#[derive(clap::Args)]
pub struct AddSecretArgs {
    #[command(flatten)]
    pub kind: KindFlags,
    #[command(flatten)]
    pub qr: QrArgs,
}

#[derive(clap::Args)]
pub struct ShowUserArgs {
    pub name: String,
    /// Print JSON (with the secret and links) instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub qr: QrArgs,
}

#[derive(clap::Args)]
pub struct ShowConfigArgs {
    /// One secret (any client form, masked form or unique prefix); default: the whole server.
    pub secret: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub qr: QrArgs,
}

#[derive(clap::Args)]
pub struct RegenerateUserArgs {
    pub name: String,
    /// Keep the old secret working this long (e.g. 10m, 2h, 1d); default: it stops at once.
    #[arg(long, value_name = "DURATION", value_parser = parse_grace)]
    pub grace: Option<Duration>,
    #[command(flatten)]
    pub qr: QrArgs,
}

#[derive(clap::Args)]
pub struct RegenerateSecretArgs {
    /// The secret to replace (any client form, masked form or unique prefix).
    pub old_secret: String,
    /// Keep the old secret working this long (e.g. 10m); default: it stops at once.
    #[arg(long, value_name = "DURATION", value_parser = parse_grace)]
    pub grace: Option<Duration>,
    #[command(flatten)]
    pub qr: QrArgs,
}

#[derive(clap::Args)]
pub struct SetLimitsArgs {
    pub name: String,
    #[command(flatten)]
    pub limits: LimitFlags,
}

pub(crate) fn parse_grace(s: &str) -> Result<Duration, String> {
    let d = config::parse_duration(s)?;
    if d > Duration::from_secs(365 * 86400) {
        return Err("a grace period longer than a year is not useful; give e.g. 10m, 2h or 7d".into());
    }
    Ok(d)
}

fn now_unix() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

fn fresh_secret(cfg: &Config) -> Secret {
    loop {
        let s = mtproxy_core::config::generate_secret();
        if !cfg.users.iter().any(|u| u.secret == s || u.previous_secret.is_some_and(|(p, _)| p == s)) {
            return s;
        }
    }
}

/// The `[users]` table of the document, created (as an implicit parent) when missing.
fn users_table(doc: &mut DocumentMut) -> anyhow::Result<&mut Table> {
    let item = doc.entry("users").or_insert_with(|| {
        let mut t = Table::new();
        t.set_implicit(true);
        Item::Table(t)
    });
    item.as_table_mut().ok_or_else(|| anyhow!("`users` in the file is not a table of [users.NAME] sections"))
}

fn user_table<'a>(doc: &'a mut DocumentMut, name: &str) -> anyhow::Result<&'a mut Table> {
    users_table(doc)?.get_mut(name).and_then(Item::as_table_mut).ok_or_else(|| anyhow!("no user named `{name}`; `list-users` shows the names"))
}

pub(crate) fn find<'a>(cfg: &'a Config, name: &str) -> anyhow::Result<&'a User> {
    cfg.users.iter().find(|u| u.name == name).ok_or_else(|| anyhow!("no user named `{name}`; `list-users` shows the names"))
}

fn kind_from(flags: &KindFlags) -> anyhow::Result<SecretKind> {
    match &flags.fake_tls {
        Some(d) => {
            let d = d.trim().to_ascii_lowercase();
            if !valid_domain(&d) {
                bail!("`{d}` is not a valid domain for --fake-tls; give a host name such as www.example.com (letters, digits, `-`, dots)");
            }
            if !flags.no_check {
                check_domain(&d);
            }
            Ok(SecretKind::FakeTls { domain: d })
        }
        None if flags.with_padding => Ok(SecretKind::Padded),
        None => Ok(SecretKind::Classic),
    }
}

/// Apply limit flags to a user's table (validated again by the store before writing).
fn apply_limits(t: &mut Table, f: &LimitFlags) -> anyhow::Result<()> {
    fn count(t: &mut Table, key: &str, v: &Option<String>) -> anyhow::Result<()> {
        match v.as_deref() {
            None => {}
            Some("none") => {
                t.remove(key);
            }
            Some(s) => {
                let n: i64 = s
                    .parse()
                    .ok()
                    .filter(|n| (1..=1_000_000).contains(n))
                    .ok_or_else(|| anyhow!("--{} `{s}`: give a whole number from 1 to 1000000, or `none`", key.replace('_', "-")))?;
                t[key] = value(n);
            }
        }
        Ok(())
    }
    count(t, "max_connections", &f.max_connections)?;
    count(t, "max_ips", &f.max_ips)?;
    match f.quota.as_deref() {
        None => {}
        Some("none") => {
            t.remove("quota");
        }
        Some(s) => {
            config::parse_size(s).map_err(|e| anyhow!("--quota: {e}"))?;
            t["quota"] = value(s.trim());
        }
    }
    match f.quota_reset.as_deref() {
        None => {}
        Some(s @ ("monthly" | "never")) => t["quota_reset"] = value(s),
        Some(s) => bail!("--quota-reset `{s}`: use `monthly` or `never`"),
    }
    match f.expires.as_deref() {
        None => {}
        Some("none") => {
            t.remove("expires");
        }
        Some(s) => {
            date::parse_expiry(s).map_err(|e| anyhow!("--expires: {e}"))?;
            t["expires"] = value(s.trim());
        }
    }
    Ok(())
}

fn new_user_table(secret: &Secret, kind: &SecretKind) -> Table {
    let mut t = Table::new();
    t["secret"] = value(secret.to_hex());
    t["kind"] = value(kind.name());
    if let SecretKind::FakeTls { domain } = kind {
        t["domain"] = value(domain.as_str());
    }
    t["enabled"] = value(true);
    t["created"] = value(date::format_rfc3339(now_unix()));
    t
}

/// Add a user (a generated `secret-XXXXXX` name when `name` is `None`): validate, write through
/// the store, return the new configuration and the name. The CLI and the web panel both call it.
pub(crate) fn create_user(config: &Path, name: Option<&str>, kind_flags: &KindFlags, limits: Option<&LimitFlags>) -> anyhow::Result<(Config, String)> {
    if let Some(n) = name {
        if !valid_user_name(n) {
            bail!("user name `{n}` is not allowed; use 1-64 letters, digits, `_`, `-` or `.`");
        }
    }
    let kind = kind_from(kind_flags)?;
    let store = Store::lock(config)?;
    let (mut doc, cfg) = store.load(true)?;
    let name = match name {
        Some(n) => {
            if cfg.users.iter().any(|u| u.name == n) {
                bail!("user `{n}` already exists; pick another name, or `remove-user {n}` first");
            }
            n.to_string()
        }
        None => loop {
            let mut b = [0u8; 3];
            rand::thread_rng().fill_bytes(&mut b);
            let n = format!("secret-{}", hex::encode(b));
            if !cfg.users.iter().any(|u| u.name == n) {
                break n;
            }
        },
    };
    let secret = fresh_secret(&cfg);
    let mut t = new_user_table(&secret, &kind);
    if let Some(l) = limits {
        apply_limits(&mut t, l)?;
    }
    users_table(&mut doc)?.insert(&name, Item::Table(t));
    let cfg = store.commit(&doc)?;
    Ok((cfg, name))
}

fn create(config: &Path, name: Option<&str>, kind_flags: &KindFlags, limits: Option<&LimitFlags>, qr: &QrArgs) -> anyhow::Result<()> {
    let (cfg, name) = create_user(config, name, kind_flags, limits)?;
    let kind = find(&cfg, &name)?.kind.clone();
    println!("Added user `{name}` ({}). The running proxy accepts it within a second.", kind.name());
    if let (SecretKind::FakeTls { domain }, false) = (&kind, kind_flags.no_check) {
        super::domains::learn_cover(config, &cfg, domain);
    }
    if kind == SecretKind::Classic {
        eprintln!("note: a classic secret is easy for DPI to recognise; --with-padding or --fake-tls DOMAIN hide the traffic better");
    }
    output::warn_host(&cfg);
    print_user(config, &cfg, find(&cfg, &name)?, qr)
}

pub fn add_user(config: &Path, a: AddUserArgs) -> anyhow::Result<()> {
    create(config, Some(&a.name), &a.kind, Some(&a.limits), &a.qr)
}

pub fn add_secret(config: &Path, a: AddSecretArgs) -> anyhow::Result<()> {
    create(config, None, &a.kind, None, &a.qr)
}

pub fn list(config: &Path, a: ListArgs, secrets_view: bool) -> anyhow::Result<()> {
    let cfg = store::read(config)?;
    let enabled = cfg.users.iter().filter(|u| u.enabled).count();
    let disabled = cfg.users.len() - enabled;
    let usage = crate::fleet::cli::fleet_usage(&cfg);
    if a.json {
        let items: Vec<_> = cfg
            .users
            .iter()
            .map(|u| {
                let mut v = user_json(&cfg, u, false);
                if let Some(used) = usage.as_ref().and_then(|m| m.get(&u.name)) {
                    v["fleet_usage_bytes"] = json!(used);
                }
                v
            })
            .collect();
        print_json(&json!({ "users": items, "total": { "enabled": enabled, "disabled": disabled } }));
        return Ok(());
    }
    let rows: Vec<[String; 8]> = cfg
        .users
        .iter()
        .map(|u| {
            [
                if secrets_view { crate::share::masked_client_form(u) } else { u.name.clone() },
                if secrets_view { u.name.clone() } else { crate::share::masked_client_form(u) },
                format!("{}{}", u.kind.name(), output::domain(u).map(|d| format!(" ({d})")).unwrap_or_default()),
                u.created.clone().unwrap_or_else(|| "-".into()),
                u.rotated.clone().unwrap_or_else(|| "-".into()),
                if u.enabled { "yes".into() } else { "no".into() },
                match usage.as_ref().and_then(|m| m.get(&u.name)) {
                    Some(used) => format!("{} (fleet: used {})", output::limits_text(u), output::size(*used)),
                    None => output::limits_text(u),
                },
                String::new(),
            ]
        })
        .collect();
    let head = if secrets_view {
        ["SECRET", "USER", "KIND", "CREATED", "ROTATED", "ENABLED", "LIMITS", ""]
    } else {
        ["NAME", "SECRET", "KIND", "CREATED", "ROTATED", "ENABLED", "LIMITS", ""]
    };
    let mut widths = head.map(|h| h.chars().count());
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let s: Vec<String> = cells.iter().enumerate().take(7).map(|(i, c)| format!("{c:<w$}", w = widths[i])).collect();
        println!("{}", s.join("  ").trim_end());
    };
    line(head.to_vec());
    for r in &rows {
        line(r.iter().map(String::as_str).collect());
    }
    println!("Total: {enabled} enabled, {disabled} disabled");
    Ok(())
}

/// Find the user a secret string names (see [`SecretArg`]). Errors never repeat the secret.
pub fn resolve_secret<'a>(cfg: &'a Config, text: &str) -> anyhow::Result<&'a User> {
    let t = text.trim().to_ascii_lowercase();
    let forms = |u: &User| {
        let full = u.secret.client_form(&u.kind);
        let short = match u.kind {
            SecretKind::FakeTls { .. } => full[..34].to_string(),
            _ => full.clone(),
        };
        (full, short, u.secret.to_hex())
    };
    let matches: Vec<&User> = if let Some((head, tail)) = t.split_once('…').or_else(|| t.split_once("...")) {
        cfg.users
            .iter()
            .filter(|u| {
                let (_, short, _) = forms(u);
                !head.is_empty() && !tail.is_empty() && short.starts_with(head) && short.ends_with(tail)
            })
            .collect()
    } else {
        if t.len() < 6 || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
            bail!("that is not a secret: give 32 hex characters (optionally with dd/ee prefix and domain), the masked form from list-secrets, or a prefix of at least 6 hex characters");
        }
        let exact: Vec<&User> = cfg
            .users
            .iter()
            .filter(|u| {
                let (full, short, hex) = forms(u);
                t == full || t == short || t == hex
            })
            .collect();
        if !exact.is_empty() {
            exact
        } else {
            cfg.users
                .iter()
                .filter(|u| {
                    let (full, _, hex) = forms(u);
                    full.starts_with(&t) || hex.starts_with(&t)
                })
                .collect()
        }
    };
    match matches.as_slice() {
        [one] => Ok(one),
        [] => bail!("no secret matches the value given; `list-secrets` shows them (masked)"),
        many => bail!(
            "the value given matches {} secrets (users {}); give more characters",
            many.len(),
            many.iter().map(|u| u.name.as_str()).collect::<Vec<_>>().join(", ")
        ),
    }
}

pub fn remove_secret(config: &Path, a: SecretArg) -> anyhow::Result<()> {
    let store = Store::lock(config)?;
    let (mut doc, cfg) = store.load(false)?;
    let name = resolve_secret(&cfg, &a.secret)?.name.clone();
    users_table(&mut doc)?.remove(&name);
    store.commit(&doc)?;
    println!("Removed the secret of user `{name}`; its open connections close within a second.");
    Ok(())
}

pub fn remove_user(config: &Path, a: NameArg) -> anyhow::Result<()> {
    delete_user(config, &a.name)?;
    println!("Removed user `{}`; their open connections close within a second.", a.name);
    Ok(())
}

/// Remove a user through the store (the `remove-user` command and the panel).
pub(crate) fn delete_user(config: &Path, name: &str) -> anyhow::Result<()> {
    let store = Store::lock(config)?;
    let (mut doc, cfg) = store.load(false)?;
    find(&cfg, name)?;
    users_table(&mut doc)?.remove(name);
    store.commit(&doc)?;
    Ok(())
}

/// Enable or disable a user through the store; `false` when it already was so.
pub(crate) fn change_enabled(config: &Path, name: &str, enabled: bool) -> anyhow::Result<bool> {
    let store = Store::lock(config)?;
    let (mut doc, cfg) = store.load(false)?;
    if find(&cfg, name)?.enabled == enabled {
        return Ok(false);
    }
    user_table(&mut doc, name)?["enabled"] = value(enabled);
    store.commit(&doc)?;
    Ok(true)
}

pub fn set_enabled(config: &Path, a: NameArg, enabled: bool) -> anyhow::Result<()> {
    if !change_enabled(config, &a.name, enabled)? {
        println!("User `{}` is already {}.", a.name, if enabled { "enabled" } else { "disabled" });
    } else if enabled {
        println!("Enabled user `{}`.", a.name);
    } else {
        println!("Disabled user `{}`; their open connections close within a second.", a.name);
    }
    Ok(())
}

/// Give a user a new secret through the store; with a grace period the old one keeps working
/// until the returned Unix time.
pub(crate) fn rotate_secret(config: &Path, name: &str, grace: Option<Duration>) -> anyhow::Result<(Config, Option<i64>)> {
    let store = Store::lock(config)?;
    let (mut doc, cfg) = store.load(false)?;
    let user = find(&cfg, name)?;
    let new = fresh_secret(&cfg);
    let old = user.secret;
    let t = user_table(&mut doc, name)?;
    t["secret"] = value(new.to_hex());
    let until = grace.filter(|g| !g.is_zero()).map(|g| now_unix() + g.as_secs().max(1) as i64);
    match until {
        Some(until) => {
            t["previous_secret"] = value(old.to_hex());
            t["previous_secret_expires"] = value(until);
        }
        None => {
            t.remove("previous_secret");
            t.remove("previous_secret_expires");
        }
    }
    t["rotated"] = value(date::format_rfc3339(now_unix()));
    let cfg = store.commit(&doc)?;
    Ok((cfg, until))
}

fn rotate(config: &Path, name: &str, grace: Option<Duration>, qr: &QrArgs) -> anyhow::Result<()> {
    let (cfg, until) = rotate_secret(config, name, grace)?;
    match (until, grace) {
        (Some(u), Some(g)) => {
            println!("New secret for `{name}`. The old one keeps working until {} ({}).", date::format_rfc3339(u), config::format_duration(g))
        }
        _ => println!("New secret for `{name}`. The old one stopped working; its open connections close within a second."),
    }
    output::warn_host(&cfg);
    print_user(config, &cfg, find(&cfg, name)?, qr)
}

pub fn regenerate_user(config: &Path, a: RegenerateUserArgs) -> anyhow::Result<()> {
    rotate(config, &a.name, a.grace, &a.qr)
}

pub fn regenerate_secret(config: &Path, a: RegenerateSecretArgs) -> anyhow::Result<()> {
    let name = resolve_secret(&store::read(config)?, &a.old_secret)?.name.clone();
    rotate(config, &name, a.grace, &a.qr)
}

pub fn show_user(config: &Path, a: ShowUserArgs) -> anyhow::Result<()> {
    let cfg = store::read(config)?;
    let user = find(&cfg, &a.name)?;
    if a.json {
        print_json(&user_json(&cfg, user, true));
        return Ok(());
    }
    output::warn_host(&cfg);
    print_user(config, &cfg, user, &a.qr)?;
    crate::fleet::cli::print_node_links(&cfg, user);
    Ok(())
}

pub fn show_config(config: &Path, a: ShowConfigArgs) -> anyhow::Result<()> {
    let cfg = store::read(config)?;
    if let Some(s) = &a.secret {
        let user = resolve_secret(&cfg, s)?;
        if a.json {
            print_json(&user_json(&cfg, user, true));
            return Ok(());
        }
        output::warn_host(&cfg);
        return print_user(config, &cfg, user, &a.qr);
    }
    let (host, warning) = crate::share::public_host(&cfg);
    let listen: Vec<String> = cfg.listen.iter().map(|a| a.to_string()).collect();
    if a.json {
        let users: Vec<_> = cfg.users.iter().map(|u| user_json(&cfg, u, true)).collect();
        print_json(&json!({
            "config": config.display().to_string(),
            "listen": listen,
            "public_host": host,
            "public_host_configured": warning.is_none(),
            "link_port": cfg.link_port(),
            "workers": cfg.workers,
            "promoted_channel": cfg.ad_tag.map(hex::encode),
            "users": users,
        }));
        return Ok(());
    }
    if let Some(w) = warning {
        eprintln!("warning: {w}");
    }
    println!("config: {}", config.display());
    println!("listen: {}", listen.join(", "));
    println!("links use: {host}:{}", cfg.link_port());
    println!("workers: {}", cfg.workers);
    println!("promoted channel: {}", cfg.ad_tag.map(hex::encode).unwrap_or_else(|| "none".into()));
    let qr = QrArgs { no_qr: true, ..a.qr.clone() };
    for u in &cfg.users {
        print_user(config, &cfg, u, &qr)?;
    }
    let enabled = cfg.users.iter().filter(|u| u.enabled).count();
    println!("Total: {enabled} enabled, {} disabled", cfg.users.len() - enabled);
    Ok(())
}

/// Apply limit flags to a user through the store (`none` clears one).
pub(crate) fn change_limits(config: &Path, name: &str, limits: &LimitFlags) -> anyhow::Result<Config> {
    let store = Store::lock(config)?;
    let (mut doc, cfg) = store.load(false)?;
    find(&cfg, name)?;
    apply_limits(user_table(&mut doc, name)?, limits)?;
    store.commit(&doc).context("limits not changed")
}

pub fn set_limits(config: &Path, a: SetLimitsArgs) -> anyhow::Result<()> {
    let cfg = change_limits(config, &a.name, &a.limits)?;
    println!("Limits of `{}`: {}", a.name, output::limits_text(find(&cfg, &a.name)?));
    Ok(())
}
