//! Showing a user how to connect: links and a QR code rendered locally (the secret never
//! leaves this host), and the host name links carry.

use std::net::IpAddr;

use mtproxy_core::config::{Config, User};
use mtproxy_proto::links;
use qrcode::render::unicode;
use qrcode::QrCode;

/// The server part of links: the configured public host, else a local interface address
/// (with a warning, since it may be a private address behind NAT), else 127.0.0.1.
pub fn public_host(config: &Config) -> (String, Option<String>) {
    if let Some(h) = &config.public_host {
        return (h.clone(), None);
    }
    let mut best: Option<IpAddr> = None;
    if let Ok(ifaces) = if_addrs::get_if_addrs() {
        for i in ifaces.iter().filter(|i| !i.is_loopback()) {
            let ip = i.ip();
            let rank = |ip: &IpAddr| match ip {
                IpAddr::V4(v4) if !v4.is_private() && !v4.is_link_local() => 0,
                IpAddr::V4(_) => 1,
                IpAddr::V6(v6) if (v6.segments()[0] & 0xe000) == 0x2000 => 2,
                IpAddr::V6(_) => 9,
            };
            if rank(&ip) < 9 && best.as_ref().is_none_or(|b| rank(&ip) < rank(b)) {
                best = Some(ip);
            }
        }
    }
    let host = best.map(|ip| ip.to_string()).unwrap_or_else(|| "127.0.0.1".into());
    let warning =
        format!("server.public_host is not set; links use the local address {host}. Set public_host to the address or name clients reach this server by.");
    (host, Some(warning))
}

/// Both link forms for a user.
pub fn links(config: &Config, user: &User, host: &str) -> (String, String) {
    links_at(user, host, config.link_port())
}

/// The links of a user through one address (a fleet node's, in `show-user-config`).
pub fn links_at(user: &User, host: &str, port: u16) -> (String, String) {
    (links::tg_link(host, port, &user.secret, &user.kind), links::tme_link(host, port, &user.secret, &user.kind))
}

/// A QR code of `text` as Unicode half blocks, dark on light, with the quiet zone a phone
/// camera needs.
pub fn qr_terminal(text: &str) -> String {
    match QrCode::new(text.as_bytes()) {
        Ok(code) => code.render::<unicode::Dense1x2>().dark_color(unicode::Dense1x2::Light).light_color(unicode::Dense1x2::Dark).quiet_zone(true).build(),
        Err(e) => format!("(QR code unavailable: {e})"),
    }
}

/// A user's secret as lists show it: the client form's prefix and the masked secret, e.g.
/// `dd1a2b…4b5c` (the domain of an `ee` secret is shown separately).
pub fn masked_client_form(user: &User) -> String {
    let prefix = match user.kind {
        mtproxy_proto::SecretKind::Classic => "",
        mtproxy_proto::SecretKind::Padded => "dd",
        mtproxy_proto::SecretKind::FakeTls { .. } => "ee",
    };
    format!("{prefix}{}", user.secret.masked())
}
