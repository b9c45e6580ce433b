//! The checks that need the network: Telegram DCs, the cover domain (DNS, whether it points
//! here, TLS 1.3 with X25519, the certificate it presents), and the clock (HTTP `Date`). Each
//! step is bounded by `Net::timeout`, and a target this host has no route to is `skipped`
//! rather than waited for.
//!
//! An "own domain" cover (the domain is the proxy's `public_host`, or the mask host is on this
//! machine) is held to a stricter standard than a borrowed one: every A/AAAA record must be this
//! host, because clients connect to the domain itself and a prober compares the SNI with the
//! address it reached. A borrowed cover only gets a warning when it resolves elsewhere.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use mtproxy_core::config::{Config, HostPort};
use mtproxy_core::dc::Target;
use tokio::net::TcpStream;

use super::{Check, Level};
use crate::inspect::client;
use crate::inspect::{tlscert, tlsprobe};

/// Default routes of this host's network namespace: (IPv4, IPv6), loopback excluded.
pub fn default_routes() -> (bool, bool) {
    let v4 = std::fs::read_to_string("/proc/net/route")
        .map(|t| {
            t.lines().skip(1).any(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.len() > 2 && f[1] == "00000000" && f[0] != "lo"
            })
        })
        .unwrap_or(false);
    let v6 = std::fs::read_to_string("/proc/net/ipv6_route")
        .map(|t| {
            t.lines().any(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.len() >= 10 && f[0] == "00000000000000000000000000000000" && f[1] == "00" && f[9] != "lo"
            })
        })
        .unwrap_or(false);
    (v4, v6)
}

pub struct Net {
    pub v4: bool,
    pub v6: bool,
    pub timeout: Duration,
}

impl Net {
    fn can_reach(&self, ip: IpAddr) -> bool {
        ip.is_loopback() || if ip.to_canonical().is_ipv4() { self.v4 } else { self.v6 }
    }
    pub fn any(&self) -> bool {
        self.v4 || self.v6
    }
}

fn unreachable_net(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(101) | Some(113)) // ENETUNREACH, EHOSTUNREACH
}

enum Connect {
    Ok(TcpStream, Duration),
    Skipped(String),
    Failed(String),
}

async fn connect(net: &Net, addr: SocketAddr) -> Connect {
    if !net.can_reach(addr.ip()) {
        return Connect::Skipped(format!("no route to {} (network unavailable)", addr.ip()));
    }
    let t0 = Instant::now();
    match tokio::time::timeout(net.timeout, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => Connect::Ok(s, t0.elapsed()),
        Ok(Err(e)) if unreachable_net(&e) => Connect::Skipped(format!("{addr}: {e}")),
        Ok(Err(e)) => Connect::Failed(format!("{addr}: {e}")),
        Err(_) => Connect::Failed(format!("{addr}: no answer within {} ms", net.timeout.as_millis())),
    }
}

/// Why a name gave no address.
enum Miss {
    Skipped(String),
    Failed(String),
}

async fn resolve(net: &Net, host: &str, port: u16) -> Result<Vec<SocketAddr>, Miss> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let lookup = tokio::time::timeout(net.timeout, tokio::net::lookup_host((host, port))).await;
    if !net.any() {
        // The hosts file may still know the name (a host without a default route, a test
        // namespace); without it there is nothing to ask.
        return match lookup {
            Ok(Ok(a)) => Ok(a.collect()),
            _ => Err(Miss::Skipped(format!("cannot resolve {host}: no network"))),
        };
    }
    match lookup {
        Ok(Ok(a)) => Ok(a.collect()),
        Ok(Err(e)) => Err(Miss::Failed(format!("{host} does not resolve: {e}"))),
        Err(_) => Err(Miss::Failed(format!("resolving {host} took longer than {} ms", net.timeout.as_millis()))),
    }
}

pub async fn check_dc(net: &Net, id: i16, targets: Vec<Target>) -> Check {
    let name = format!("dc {id}");
    let t0 = Instant::now();
    let mut failed = Vec::new();
    let mut skipped = Vec::new();
    for t in targets {
        let addrs = match &t {
            Target::Addr(a) => vec![*a],
            Target::Name(HostPort { host, port }) => match resolve(net, host, *port).await {
                Ok(a) => a,
                Err(Miss::Skipped(m)) => {
                    skipped.push(m);
                    continue;
                }
                Err(Miss::Failed(m)) => {
                    failed.push(m);
                    continue;
                }
            },
        };
        for a in addrs {
            match connect(net, a).await {
                Connect::Ok(_, took) => return Check::ok(name, format!("{a} answered in {} ms", took.as_millis())).timed(t0),
                Connect::Skipped(m) => skipped.push(m),
                Connect::Failed(m) => failed.push(m),
            }
        }
    }
    if failed.is_empty() {
        let why = skipped.first().cloned().unwrap_or_else(|| "no address to try".into());
        return Check::new(name, Level::Skipped, why, Some("run doctor where the host has its normal network to test Telegram DCs")).timed(t0);
    }
    Check::new(
        name,
        Level::Fail,
        format!("unreachable: {}", failed.join("; ")),
        Some("clients of this DC cannot be served: check outbound firewall rules and the provider's routing to Telegram; try `dc_ip = \"prefer-v6\"` if IPv6 works"),
    )
    .timed(t0)
}

fn local_ips() -> BTreeSet<IpAddr> {
    if_addrs::get_if_addrs().map(|v| v.into_iter().map(|i| i.ip().to_canonical()).collect()).unwrap_or_default()
}

/// Whether `domain` is the operator's own: links name it, or the mask host is this machine.
pub fn own_domain(cfg: &Config, domain: &str, local: &BTreeSet<IpAddr>) -> bool {
    let named = cfg.public_host.as_deref().is_some_and(|h| h.eq_ignore_ascii_case(domain));
    let local_mask = cfg.fronting.enabled
        && cfg.fronting.mask_host.as_ref().and_then(|m| m.host.parse::<IpAddr>().ok()).is_some_and(|ip| ip.is_loopback() || local.contains(&ip.to_canonical()));
    named || local_mask
}

pub async fn check_cover(net: &Net, cfg: &Config, domain: &str) -> Vec<Check> {
    let mut out = Vec::new();
    let t0 = Instant::now();
    let dns_name = format!("cover {domain}: DNS");
    let here_name = format!("cover {domain}: points here");
    let local = local_ips();
    let own = own_domain(cfg, domain, &local);
    match resolve(net, domain, 443).await {
        Ok(addrs) => {
            let ips: BTreeSet<IpAddr> = addrs.iter().map(|a| a.ip().to_canonical()).collect();
            let list = ips.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", ");
            out.push(Check::ok(dns_name, format!("resolves to {list}")).timed(t0));
            // This host's addresses: its interfaces, and public_host when that is another name
            // or an address (the domain itself proves nothing about where it points).
            let mut mine = local.clone();
            if let Some(h) = cfg.public_host.as_deref().filter(|h| !h.eq_ignore_ascii_case(domain)) {
                if let Ok(a) = resolve(net, h, 443).await {
                    mine.extend(a.iter().map(|a| a.ip().to_canonical()));
                }
            }
            out.push(points_here(domain, &ips, &mine, own));
        }
        Err(Miss::Skipped(m)) => {
            out.push(Check::new(dns_name, Level::Skipped, m.clone(), Some("run doctor with the host's normal network")));
            out.push(Check::new(here_name, Level::Skipped, "needs DNS", None));
        }
        Err(Miss::Failed(m)) => {
            let advice = if own {
                "create the domain's A (and AAAA) record pointing at this server at your DNS provider"
            } else {
                "use a real, resolvable HTTPS site as the fake-TLS domain"
            };
            out.push(Check::new(dns_name, Level::Fail, m, Some(advice)).timed(t0));
            out.push(Check::new(here_name, Level::Skipped, "needs DNS", None));
        }
    }
    out.push(check_tls13(net, cfg, domain).await);
    out.push(check_certificate(net, cfg, domain).await);
    out
}

/// Which of the domain's addresses are this host's, and what that means.
fn points_here(domain: &str, ips: &BTreeSet<IpAddr>, mine: &BTreeSet<IpAddr>, own: bool) -> Check {
    let name = format!("cover {domain}: points here");
    let (here, elsewhere): (Vec<IpAddr>, Vec<IpAddr>) = ips.iter().partition(|i| mine.contains(i));
    let join = |v: &[IpAddr]| v.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", ");
    if elsewhere.is_empty() {
        return Check::ok(name, format!("every address of {domain} ({}) is this host's, as the SNI suggests", join(&here)));
    }
    if own {
        let detail = if here.is_empty() {
            format!("{domain} resolves to {}, none of them this host", join(&elsewhere))
        } else {
            format!("{domain} resolves to {} (this host) but also to {} (elsewhere)", join(&here), join(&elsewhere))
        };
        return Check::new(
            name,
            Level::Fail,
            detail,
            Some("point every A/AAAA record of the domain at this server (at your DNS provider); clients and probers that get another address reach another machine"),
        );
    }
    if here.is_empty() {
        Check::new(
            name,
            Level::Warn,
            format!("{domain} resolves to {}, not to this host", join(&elsewhere)),
            Some("clients send this SNI to an IP the domain does not use, which DPI can notice; prefer a domain whose A/AAAA record is this server"),
        )
    } else {
        Check::ok(name, format!("{domain} resolves to {} (this host) and {} (elsewhere)", join(&here), join(&elsewhere)))
    }
}

/// Where the cover is reached: `[fronting] mask_host`, else the domain on 443.
fn cover_target(cfg: &Config, domain: &str) -> HostPort {
    cfg.fronting.mask_host.clone().filter(|_| cfg.fronting.enabled).unwrap_or(HostPort { host: domain.to_string(), port: 443 })
}

async fn check_tls13(net: &Net, cfg: &Config, domain: &str) -> Check {
    let name = format!("cover {domain}: TLS 1.3");
    let t0 = Instant::now();
    let target = cover_target(cfg, domain);
    let addrs = match resolve(net, &target.host, target.port).await {
        Ok(a) => a,
        Err(Miss::Skipped(m)) => return Check::new(name, Level::Skipped, m, None).timed(t0),
        Err(Miss::Failed(m)) => return Check::new(name, Level::Fail, m, Some("set [fronting] mask_host to a reachable HTTPS server")).timed(t0),
    };
    let mut last = String::from("no address");
    for a in addrs {
        let mut s = match connect(net, a).await {
            Connect::Ok(s, _) => s,
            Connect::Skipped(m) => return Check::new(name, Level::Skipped, m, None).timed(t0),
            Connect::Failed(m) => {
                last = m;
                continue;
            }
        };
        let advice = Some("fake-TLS answers like a TLS 1.3 server: pick a cover domain (or mask_host) that speaks TLS 1.3, or probers can tell us apart");
        return match tokio::time::timeout(net.timeout, tlsprobe::ask_group(&mut s, domain)).await {
            Ok(Ok((answer, group))) if answer.is_tls13() => match group {
                Some(tlsprobe::X25519) if answer == tlsprobe::TlsAnswer::Version(0x0304) => {
                    Check::ok(name, format!("{target} ({a}) answers TLS 1.3 with X25519")).timed(t0)
                }
                g => {
                    let picked = g.map(tlsprobe::group_name).unwrap_or_else(|| "no key share".into());
                    let how = if answer == tlsprobe::TlsAnswer::RetryRequest { "asks in a HelloRetryRequest for" } else { "answers with" };
                    Check::new(
                        name,
                        Level::Warn,
                        format!("{target} ({a}) answers TLS 1.3 but {how} {picked}, not X25519, to an X25519 key share"),
                        Some("Telegram clients offer X25519 and the proxy answers with it: make the cover prefer X25519 (nginx: ssl_ecdh_curve X25519:prime256v1;)"),
                    )
                    .timed(t0)
                }
            },
            Ok(Ok((answer, _))) => Check::new(name, Level::Fail, format!("{target}: {}", answer.describe()), advice).timed(t0),
            Ok(Err(e)) => Check::new(name, Level::Fail, format!("{target}: {e}"), advice).timed(t0),
            Err(_) => Check::new(name, Level::Fail, format!("{target} sent no ServerHello within {} ms", net.timeout.as_millis()), advice).timed(t0),
        };
    }
    Check::new(name, Level::Fail, format!("cannot connect: {last}"), Some("the mask host must be reachable for fronting to work")).timed(t0)
}

/// Days left under which the certificate check warns.
pub const CERT_WARN_DAYS: i64 = 14;

/// `YYYY-MM-DD` of Unix seconds.
fn date(ts: i64) -> String {
    let s = crate::setup::files::utc_stamp(std::time::UNIX_EPOCH + Duration::from_secs(ts.max(0) as u64));
    format!("{}-{}-{}", &s[0..4], &s[4..6], &s[6..8])
}

/// The certificate the cover presents for SNI `domain`: for that name, valid now and for a
/// while yet. A real handshake (rustls), because in TLS 1.3 the certificate is encrypted.
async fn check_certificate(net: &Net, cfg: &Config, domain: &str) -> Check {
    let name = format!("cover {domain}: certificate");
    let t0 = Instant::now();
    let target = cover_target(cfg, domain);
    let addr = match resolve(net, &target.host, target.port).await {
        Ok(a) if !a.is_empty() => a[0],
        Ok(_) => return Check::new(name, Level::Fail, format!("{target} has no address"), None).timed(t0),
        Err(Miss::Skipped(m)) => return Check::new(name, Level::Skipped, m, None).timed(t0),
        Err(Miss::Failed(m)) => return Check::new(name, Level::Fail, m, Some("set [fronting] mask_host to a reachable HTTPS server")).timed(t0),
    };
    if !net.can_reach(addr.ip()) {
        return Check::new(name, Level::Skipped, format!("no route to {} (network unavailable)", addr.ip()), None).timed(t0);
    }
    let (sni, timeout) = (domain.to_string(), net.timeout);
    let fetched = tokio::task::spawn_blocking(move || tlscert::fetch(addr, &sni, timeout)).await;
    let presented = match fetched {
        Ok(Ok(p)) => p,
        Ok(Err(tlscert::TlsCertError::Connect { source, .. })) if unreachable_net(&source) => {
            return Check::new(name, Level::Skipped, format!("{target}: {source}"), None).timed(t0)
        }
        Ok(Err(e)) => {
            return Check::new(
                name,
                Level::Fail,
                format!("{target} for SNI {domain}: {e}"),
                Some("the cover must complete a TLS handshake for the domain with its certificate, as a real site does"),
            )
            .timed(t0)
        }
        Err(e) => return Check::new(name, Level::Fail, format!("the handshake task failed: {e}"), None).timed(t0),
    };
    let info = match tlscert::inspect(&presented.chain[0], domain) {
        Ok(i) => i,
        Err(e) => return Check::new(name, Level::Fail, format!("{target}: {e}"), Some("give the cover a valid certificate for the domain")).timed(t0),
    };
    let now = tlscert::now_unix();
    let days = info.days_left(now);
    let renew = "renew it (certbot renew, or your CA's tool) and reload the web server";
    let c = if !info.matches {
        Check::new(
            name,
            Level::Fail,
            format!("{target} presents a certificate for {}, not {domain}", info.names()),
            Some("give the cover a certificate for the domain (certbot certonly -d DOMAIN) and point its ssl_certificate at it"),
        )
    } else if now >= info.not_after {
        Check::new(name, Level::Fail, format!("the certificate for {domain} expired on {} ({} days ago)", date(info.not_after), -days), Some(renew))
    } else if now < info.not_before {
        Check::new(
            name,
            Level::Fail,
            format!("the certificate for {domain} is valid only from {}", date(info.not_before)),
            Some("check this host's clock, or the certificate's dates"),
        )
    } else if days < CERT_WARN_DAYS {
        Check::new(name, Level::Warn, format!("the certificate for {domain} expires on {} (in {days} days)", date(info.not_after)), Some(renew))
    } else {
        Check::ok(
            name,
            format!(
                "{target} presents a certificate for {domain} ({}), valid until {} ({days} days), issuer {}, {}{}",
                info.names(),
                date(info.not_after),
                info.issuer,
                presented.version,
                presented.group.map(|g| format!(" {g}")).unwrap_or_default()
            ),
        )
    };
    c.timed(t0)
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp as i64 + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// Parse an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) into Unix seconds.
pub fn parse_http_date(s: &str) -> Option<i64> {
    let f: Vec<&str> = s.split_whitespace().collect();
    if f.len() != 6 || f[5] != "GMT" {
        return None;
    }
    let day: u32 = f[1].parse().ok()?;
    let month = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"].iter().position(|m| *m == f[2])? as u32 + 1;
    let year: i64 = f[3].parse().ok()?;
    let t: Vec<u32> = f[4].split(':').map(|x| x.parse().ok()).collect::<Option<Vec<_>>>()?;
    if t.len() != 3 || t[0] > 23 || t[1] > 59 || t[2] > 60 || !(1..=31).contains(&day) {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86400 + (t[0] * 3600 + t[1] * 60 + t[2]) as i64)
}

pub async fn check_clock(net: &Net, cfg: &Config, server: Option<&str>) -> Check {
    let name = "clock";
    let t0 = Instant::now();
    let target = match server {
        Some(s) => HostPort::parse(s).unwrap_or(HostPort { host: s.to_string(), port: 80 }),
        None => match cfg.fake_tls_domains().first() {
            Some(d) => HostPort { host: d.to_string(), port: 80 },
            None => {
                return Check::new(
                    name,
                    Level::Skipped,
                    "no fake-TLS domain to read the time from",
                    Some("pass --time-server HOST[:PORT] (a plain HTTP server you trust)"),
                )
            }
        },
    };
    let addr = match resolve(net, &target.host, target.port).await {
        Ok(a) if !a.is_empty() => a[0],
        Ok(_) => return Check::new(name, Level::Fail, format!("{target} has no address"), None).timed(t0),
        Err(Miss::Skipped(m)) => return Check::new(name, Level::Skipped, m, None).timed(t0),
        Err(_) => return Check::new(name, Level::Warn, format!("cannot resolve {}", target.host), Some("pass --time-server HOST[:PORT]")).timed(t0),
    };
    if !net.can_reach(addr.ip()) {
        return Check::new(name, Level::Skipped, format!("no route to {} (network unavailable)", addr.ip()), None).timed(t0);
    }
    let before = std::time::SystemTime::now();
    let resp = client::request(addr, &target.host, "HEAD", "/", &[], net.timeout).await;
    let after = std::time::SystemTime::now();
    let local_mid = {
        let a = before.duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs_f64();
        let b = after.duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs_f64();
        (a + b) / 2.0
    };
    let resp = match resp {
        Ok(r) => r,
        Err(client::HttpError::Connect { source, .. }) if unreachable_net(&source) => {
            return Check::new(name, Level::Skipped, format!("{target}: {source}"), None).timed(t0)
        }
        Err(e) => {
            return Check::new(
                name,
                Level::Warn,
                format!("no HTTP answer from {target}: {e}"),
                Some("pass --time-server HOST[:PORT] (a plain HTTP server you trust)"),
            )
            .timed(t0)
        }
    };
    let Some(remote) = resp.header("date").and_then(parse_http_date) else {
        return Check::new(name, Level::Warn, format!("{target} sent no usable Date header"), Some("pass --time-server HOST[:PORT]")).timed(t0);
    };
    // The Date has one-second resolution: it can lag by up to a second.
    let offset = remote as f64 + 0.5 - local_mid;
    let skew = cfg.fake_tls.max_clock_skew.as_secs_f64();
    let detail = format!("local clock is {:+.1} s from {target}'s", -offset);
    let advice =
        "turn on time synchronisation (`timedatectl set-ntp true`, chrony): fake-TLS clients are refused when clocks differ by more than max_clock_skew";
    let c = if offset.abs() <= 10.0 {
        Check::ok(name, detail)
    } else if offset.abs() <= skew / 2.0 {
        Check::new(name, Level::Warn, detail, Some(advice))
    } else {
        Check::new(name, Level::Fail, detail, Some(advice))
    };
    c.timed(t0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates() {
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"), Some(784111777));
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 PST"), None);
        assert_eq!(parse_http_date("garbage"), None);
    }
}
