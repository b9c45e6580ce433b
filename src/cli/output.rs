//! How users are shown: links, QR codes (terminal, PNG, SVG files), table rows and JSON.

use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use mtproxy_core::config::{date, Config, User};
use mtproxy_proto::SecretKind;
use serde_json::{json, Value};

use crate::{qr, share};

#[derive(clap::Args)]
pub struct JsonArg {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Where and how QR codes are produced.
#[derive(clap::Args, Clone, Default)]
pub struct QrArgs {
    /// Also write the QR code as a PNG file (in the user's folder under --qr-dir).
    #[arg(long)]
    pub png: bool,
    /// Also write the QR code as an SVG file (in the user's folder under --qr-dir).
    #[arg(long)]
    pub svg: bool,
    /// Folder for QR files; each user gets a sub-folder. Default: `qr` next to the config file.
    #[arg(long, value_name = "DIR")]
    pub qr_dir: Option<PathBuf>,
    /// Do not print the QR code in the terminal.
    #[arg(long)]
    pub no_qr: bool,
}

fn qr_dir(config_path: &Path, args: &QrArgs) -> PathBuf {
    args.qr_dir.clone().unwrap_or_else(|| match config_path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(p) => p.join("qr"),
        None => PathBuf::from("qr"),
    })
}

/// The links of a user (tg://, https://t.me) with the host links carry.
pub fn user_links(cfg: &Config, user: &User) -> (String, String) {
    let (host, _) = share::public_host(cfg);
    share::links(cfg, user, &host)
}

/// Warn (stderr) when links carry a guessed local address.
pub fn warn_host(cfg: &Config) {
    if let (_, Some(w)) = share::public_host(cfg) {
        eprintln!("warning: {w}");
    }
}

/// Print a user's links, the terminal QR code and write QR files when asked.
pub fn print_user(config_path: &Path, cfg: &Config, user: &User, args: &QrArgs) -> anyhow::Result<()> {
    let (tg, tme) = user_links(cfg, user);
    println!("user {} ({}{}):", user.name, user.kind.name(), if user.enabled { "" } else { ", disabled" });
    println!("  {tg}");
    println!("  {tme}");
    if !args.no_qr {
        println!("{}", share::qr_terminal(&tme));
    }
    if args.png || args.svg {
        for p in qr::write_files(&qr_dir(config_path, args), &user.name, &tme, args.png, args.svg)? {
            println!("QR code written to {}", p.display());
        }
    }
    Ok(())
}

fn unix(t: std::time::SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

pub fn domain(user: &User) -> Option<&str> {
    match &user.kind {
        SecretKind::FakeTls { domain } => Some(domain),
        _ => None,
    }
}

/// A byte count in the largest unit that writes it exactly (as `--quota` reads it).
pub fn size(b: u64) -> String {
    for (unit, n) in [
        ("TiB", 1u64 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
        ("TB", 1_000_000_000_000),
        ("GB", 1_000_000_000),
        ("MB", 1_000_000),
        ("KB", 1000),
    ] {
        if b >= n && b.is_multiple_of(n) {
            return format!("{}{unit}", b / n);
        }
    }
    format!("{b}B")
}

/// A one-line summary of a user's limits, `-` when none.
pub fn limits_text(user: &User) -> String {
    let l = &user.limits;
    let mut parts = Vec::new();
    if let Some(n) = l.max_connections {
        parts.push(format!("conns<={n}"));
    }
    if let Some(n) = l.max_ips {
        parts.push(format!("ips<={n}"));
    }
    if let Some(q) = l.quota_bytes {
        parts.push(format!("quota={}{}", size(q), if l.quota_monthly { "/month" } else { "" }));
    }
    if let Some(e) = l.expires {
        parts.push(format!("expires={}", date::format_rfc3339(unix(e))));
    }
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(",")
    }
}

/// A user as JSON; the secret appears only when `with_secret` (a `show` of one user).
pub fn user_json(cfg: &Config, user: &User, with_secret: bool) -> Value {
    let l = &user.limits;
    let mut v = json!({
        "name": user.name,
        "kind": user.kind.name(),
        "domain": domain(user),
        "secret_masked": share::masked_client_form(user),
        "enabled": user.enabled,
        "created": user.created,
        "rotated": user.rotated,
        "previous_secret_expires": user.previous_secret.map(|(_, t)| date::format_rfc3339(unix(t))),
        "limits": {
            "max_connections": l.max_connections,
            "max_ips": l.max_ips,
            "quota_bytes": l.quota_bytes,
            "quota_reset": if l.quota_monthly { "monthly" } else { "never" },
            "expires": l.expires.map(|e| date::format_rfc3339(unix(e))),
        },
    });
    if with_secret {
        let (tg, tme) = user_links(cfg, user);
        v["secret"] = json!(user.secret.client_form(&user.kind));
        v["links"] = json!({ "tg": tg, "tme": tme });
    }
    v
}

pub fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).expect("JSON values always serialise"));
}
