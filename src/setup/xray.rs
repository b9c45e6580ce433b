//! The VLESS stack's Xray, read only: find a `socks` inbound on loopback in Xray's config JSON,
//! so setup can offer to send the proxy's DC leg through it (`[upstream]`, a SOCKS5 server of
//! type `socks5`). Xray's file is never written.
//!
//! What counts: an entry of `inbounds` with `"protocol": "socks"`, a `listen` that is a loopback
//! address (`127.x`, `::1`, `localhost`; an absent `listen` is every address, not offered: the
//! proxy would reach it, but so could anyone), a numeric `port` (or a one-port string), and
//! `settings.auth` `"noauth"` (or absent) or `"password"` with an account (the first is used).

use std::path::{Path, PathBuf};

use serde_json::Value;

/// Where the VLESS layouts keep Xray's configuration, tried in order.
pub const CANDIDATES: &[&str] = &[
    "/opt/vless/config/xray_config.json",
    "/opt/vless/config/config.json",
    "/opt/vless/xray/config.json",
    "/usr/local/etc/xray/config.json",
    "/etc/xray/config.json",
];

/// A usable SOCKS inbound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocksInbound {
    /// `HOST:PORT` to put in `address` (IPv6 in brackets).
    pub address: String,
    pub tag: Option<String>,
    pub credentials: Option<(String, String)>,
}

fn loopback(listen: &str) -> Option<String> {
    let l = listen.trim();
    if l == "localhost" {
        return Some("127.0.0.1".into());
    }
    match l.parse::<std::net::IpAddr>() {
        Ok(ip) if ip.is_loopback() && ip.is_ipv6() => Some(format!("[{ip}]")),
        Ok(ip) if ip.is_loopback() => Some(ip.to_string()),
        _ => None,
    }
}

/// The first loopback SOCKS inbound of Xray's JSON text; `Err` when the text is not JSON.
pub fn socks_inbound(text: &str) -> Result<Option<SocksInbound>, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let Some(inbounds) = v.get("inbounds").and_then(Value::as_array) else { return Ok(None) };
    for ib in inbounds {
        if ib.get("protocol").and_then(Value::as_str) != Some("socks") {
            continue;
        }
        let Some(host) = ib.get("listen").and_then(Value::as_str).and_then(loopback) else { continue };
        let port = match ib.get("port") {
            Some(Value::Number(n)) => n.as_u64(),
            Some(Value::String(s)) => s.trim().parse::<u64>().ok(),
            _ => None,
        };
        let Some(port) = port.filter(|p| (1..=65535).contains(p)) else { continue };
        let settings = ib.get("settings");
        let auth = settings.and_then(|s| s.get("auth")).and_then(Value::as_str).unwrap_or("noauth");
        let credentials = match auth {
            "noauth" => None,
            "password" => {
                let first = settings.and_then(|s| s.get("accounts")).and_then(Value::as_array).and_then(|a| a.first());
                let user = first.and_then(|a| a.get("user")).and_then(Value::as_str);
                let pass = first.and_then(|a| a.get("pass")).and_then(Value::as_str);
                match (user, pass) {
                    (Some(u), Some(p)) if !u.is_empty() && !p.is_empty() && u.len() <= 255 && p.len() <= 255 => Some((u.to_string(), p.to_string())),
                    _ => continue,
                }
            }
            _ => continue,
        };
        let tag = ib.get("tag").and_then(Value::as_str).map(str::to_string);
        return Ok(Some(SocksInbound { address: format!("{host}:{port}"), tag, credentials }));
    }
    Ok(None)
}

/// The first file among `paths` that holds a usable inbound.
pub fn find(paths: &[PathBuf]) -> Option<(PathBuf, SocksInbound)> {
    paths.iter().find_map(|p| {
        let text = std::fs::read_to_string(p).ok()?;
        socks_inbound(&text).ok().flatten().map(|s| (p.clone(), s))
    })
}

/// A TOML basic string (quotes and backslashes escaped).
fn toml_str(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if c.is_control() => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// The `[upstream]` block that sends every DC through the inbound.
pub fn upstream_toml(s: &SocksInbound, source: &Path) -> String {
    let mut t = format!(
        "\n# Telegram is reached through the VLESS stack's Xray SOCKS inbound{} (found in {} by setup).\n[upstream]\nretry_after = \"30s\"\n\n[[upstream.servers]]\nname = \"xray\"\ntype = \"socks5\"\naddress = \"{}\"\n",
        s.tag.as_deref().map(|t| format!(" `{t}`")).unwrap_or_default(),
        source.display(),
        s.address
    );
    if let Some((u, p)) = &s.credentials {
        t += &format!("username = {}\npassword = {}\n", toml_str(u), toml_str(p));
    }
    t += "dcs = [\"*\"]\n";
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_loopback_socks_inbound_only() {
        let xray = r#"{"log": {}, "inbounds": [
            {"tag": "vless-in", "port": 443, "protocol": "vless", "settings": {}},
            {"tag": "open-socks", "port": 1080, "protocol": "socks", "settings": {"auth": "noauth"}},
            {"tag": "socks-in", "listen": "127.0.0.1", "port": 10808, "protocol": "socks",
             "settings": {"auth": "password", "accounts": [{"user": "tg", "pass": "p\"w"}], "udp": true}}
        ], "outbounds": [{"protocol": "freedom"}]}"#;
        let s = socks_inbound(xray).unwrap().unwrap();
        assert_eq!(s, SocksInbound { address: "127.0.0.1:10808".into(), tag: Some("socks-in".into()), credentials: Some(("tg".into(), "p\"w".into())) });
        let block = upstream_toml(&s, Path::new("/opt/vless/config/xray_config.json"));
        let cfg = mtproxy_core::config::parse_str(&block, Path::new("x.toml")).unwrap();
        assert_eq!(cfg.upstream.servers[0].name, "xray");
        assert_eq!(cfg.upstream.servers[0].kind.address().unwrap().to_string(), "127.0.0.1:10808");

        let v6 = r#"{"inbounds": [{"listen": "::1", "port": "1081", "protocol": "socks"}]}"#;
        assert_eq!(socks_inbound(v6).unwrap().unwrap().address, "[::1]:1081");
        for none in [
            r#"{"inbounds": [{"listen": "0.0.0.0", "port": 1080, "protocol": "socks"}]}"#,
            r#"{"inbounds": [{"listen": "127.0.0.1", "port": 1080, "protocol": "http"}]}"#,
            r#"{"inbounds": [{"listen": "127.0.0.1", "port": "1000-2000", "protocol": "socks"}]}"#,
            r#"{"inbounds": [{"listen": "127.0.0.1", "port": 1080, "protocol": "socks", "settings": {"auth": "password", "accounts": []}}]}"#,
            r#"{"outbounds": []}"#,
        ] {
            assert_eq!(socks_inbound(none).unwrap(), None, "{none}");
        }
        assert!(socks_inbound("not json").is_err());
    }
}
