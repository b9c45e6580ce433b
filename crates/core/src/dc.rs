//! Where a DC id goes in direct mode (docs/protocol.md §2.5, §5.8, §7.2).
//!
//! Lookup order: an override for the exact signed id, then for `|id|`, then `*`; else the
//! built-in table for `|id|` (1-5, 203 CDN, 10001-10003 test). Unknown ids (and 0) go to DC 2,
//! as the official proxy serves them through its default cluster. Media ids (negative) use the
//! same addresses as their DC in direct mode.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::config::{DcKey, HostPort, IpPreference};

/// The DC an unknown or zero id is served by.
pub const FALLBACK_DC: i16 = 2;
const DC_PORT: u16 = 443;

fn table(dc: i16) -> Option<(Ipv4Addr, Ipv6Addr)> {
    let v4 = |a, b, c, d| Ipv4Addr::new(a, b, c, d);
    let v6 = |s: &str| s.parse::<Ipv6Addr>().unwrap();
    Some(match dc {
        1 => (v4(149, 154, 175, 50), v6("2001:b28:f23d:f001::a")),
        2 => (v4(149, 154, 167, 51), v6("2001:67c:4e8:f002::a")),
        3 => (v4(149, 154, 175, 100), v6("2001:b28:f23d:f003::a")),
        4 => (v4(149, 154, 167, 91), v6("2001:67c:4e8:f004::a")),
        5 => (v4(149, 154, 171, 5), v6("2001:b28:f23f:f005::a")),
        203 => (v4(91, 105, 192, 100), v6("2a0a:f280:203:a:5000::100")),
        10001 => (v4(149, 154, 175, 10), v6("2001:b28:f23d:f001::e")),
        10002 => (v4(149, 154, 167, 40), v6("2001:67c:4e8:f002::e")),
        10003 => (v4(149, 154, 175, 117), v6("2001:b28:f23d:f003::e")),
        _ => return None,
    })
}

/// An upstream target: a literal address, or a name to resolve at connect time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Addr(SocketAddr),
    Name(HostPort),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Addr(a) => write!(f, "{a}"),
            Target::Name(h) => write!(f, "{h}"),
        }
    }
}

fn target_of(h: &HostPort) -> Target {
    match h.host.parse::<IpAddr>() {
        Ok(ip) => Target::Addr(SocketAddr::new(ip, h.port)),
        Err(_) => Target::Name(h.clone()),
    }
}

/// The addresses to try, in order, for a client's DC id.
pub fn targets(dc: i16, overrides: &[(DcKey, Vec<HostPort>)], pref: IpPreference) -> Vec<Target> {
    let find = |k: DcKey| overrides.iter().find(|(key, _)| *key == k).map(|(_, v)| v);
    if let Some(list) = find(DcKey::Id(dc)).or_else(|| find(DcKey::Id(dc.saturating_abs()))).or_else(|| find(DcKey::Any)) {
        return list.iter().map(target_of).collect();
    }
    let (v4, v6) = table(dc.saturating_abs()).or_else(|| table(FALLBACK_DC)).unwrap();
    let a4 = Target::Addr(SocketAddr::new(IpAddr::V4(v4), DC_PORT));
    let a6 = Target::Addr(SocketAddr::new(IpAddr::V6(v6), DC_PORT));
    match pref {
        IpPreference::PreferV4 => vec![a4, a6],
        IpPreference::PreferV6 => vec![a6, a4],
        IpPreference::OnlyV4 => vec![a4],
        IpPreference::OnlyV6 => vec![a6],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> Target {
        Target::Addr(s.parse().unwrap())
    }

    #[test]
    fn table_media_test_unknown_and_overrides() {
        assert_eq!(targets(2, &[], IpPreference::OnlyV4), vec![addr("149.154.167.51:443")]);
        assert_eq!(targets(-4, &[], IpPreference::OnlyV4), vec![addr("149.154.167.91:443")]);
        assert_eq!(targets(10003, &[], IpPreference::OnlyV4), vec![addr("149.154.175.117:443")]);
        assert_eq!(targets(9999, &[], IpPreference::OnlyV4), vec![addr("149.154.167.51:443")]);
        assert_eq!(targets(0, &[], IpPreference::PreferV6)[0], addr("[2001:67c:4e8:f002::a]:443"));
        assert_eq!(targets(i16::MIN, &[], IpPreference::OnlyV4), vec![addr("149.154.167.51:443")]);
        let hp = |s: &str| HostPort::parse(s).unwrap();
        let o = vec![(DcKey::Id(-2), vec![hp("127.0.0.1:1")]), (DcKey::Id(2), vec![hp("127.0.0.1:2"), hp("dc.test:3")]), (DcKey::Any, vec![hp("127.0.0.1:9")])];
        assert_eq!(targets(-2, &o, IpPreference::PreferV4), vec![addr("127.0.0.1:1")]);
        assert_eq!(targets(2, &o, IpPreference::PreferV4), vec![addr("127.0.0.1:2"), Target::Name(hp("dc.test:3"))]);
        assert_eq!(targets(5, &o, IpPreference::PreferV4), vec![addr("127.0.0.1:9")]);
    }
}
