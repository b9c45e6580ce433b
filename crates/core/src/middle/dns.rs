//! Name resolution for the configuration fetch that also works in the static binary.
//!
//! The system resolver (getaddrinfo) is tried first. A statically linked glibc binary cannot
//! load the NSS modules it needs (docs/testing.md "Static binary"), and the container image is FROM
//! scratch, so when it fails the names are looked up with a minimal DNS client of our own:
//! A and AAAA queries over UDP to the `nameserver` lines of /etc/resolv.conf (which container
//! runtimes provide). Only the configuration fetch resolves names; client traffic never does.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::time::Duration;

use rand::Rng;

const QUERY_TIMEOUT: Duration = Duration::from_secs(3);
const TYPE_A: u16 = 1;
const TYPE_AAAA: u16 = 28;

/// The resolver handed to the HTTP client.
pub struct Resolver {
    /// DNS servers for the fallback; `None`: read /etc/resolv.conf when needed.
    pub servers: Option<Vec<SocketAddr>>,
    /// Skip the system resolver (tests).
    pub system: bool,
}

impl ureq::Resolver for Resolver {
    fn resolve(&self, netloc: &str) -> io::Result<Vec<SocketAddr>> {
        if self.system {
            if let Ok(addrs) = netloc.to_socket_addrs() {
                let v: Vec<SocketAddr> = addrs.collect();
                if !v.is_empty() {
                    return Ok(v);
                }
            }
        }
        let (host, port) = netloc.rsplit_once(':').ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no port"))?;
        let port: u16 = port.parse().map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "bad port"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        let servers = match &self.servers {
            Some(s) => s.clone(),
            None => resolv_conf_servers(&std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default()),
        };
        let ips = lookup(host, &servers)?;
        Ok(ips.into_iter().map(|ip| SocketAddr::new(ip, port)).collect())
    }
}

/// The `nameserver` addresses of a resolv.conf text (port 53).
pub fn resolv_conf_servers(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some("nameserver")).then(|| w.next()).flatten()
        })
        .filter_map(|a| a.split('%').next().and_then(|a| a.parse::<IpAddr>().ok()))
        .map(|ip| SocketAddr::new(ip, 53))
        .take(3)
        .collect()
}

/// A DNS query for `name`.
pub fn query(id: u16, name: &str, qtype: u16) -> io::Result<Vec<u8>> {
    let mut q = Vec::with_capacity(18 + name.len());
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]); // RD, one question
    for label in name.trim_end_matches('.').split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("`{name}` is not a host name")));
        }
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes());
    Ok(q)
}

fn skip_name(b: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let len = *b.get(at)? as usize;
        if len == 0 {
            return Some(at + 1);
        }
        if len & 0xc0 == 0xc0 {
            return Some(at + 2);
        }
        at += 1 + len;
    }
}

/// The addresses in a response to query `id`; `None` if it is not a usable answer.
pub fn parse_response(b: &[u8], id: u16) -> Option<Vec<IpAddr>> {
    if b.len() < 12 || u16::from_be_bytes([b[0], b[1]]) != id || b[2] & 0x80 == 0 || b[3] & 0x0f != 0 {
        return None;
    }
    let qd = u16::from_be_bytes([b[4], b[5]]);
    let an = u16::from_be_bytes([b[6], b[7]]);
    let mut at = 12;
    for _ in 0..qd {
        at = skip_name(b, at)? + 4;
    }
    let mut out = Vec::new();
    for _ in 0..an {
        at = skip_name(b, at)?;
        let head = b.get(at..at + 10)?;
        let rtype = u16::from_be_bytes([head[0], head[1]]);
        let len = u16::from_be_bytes([head[8], head[9]]) as usize;
        let data = b.get(at + 10..at + 10 + len)?;
        match (rtype, len) {
            (TYPE_A, 4) => out.push(IpAddr::V4(Ipv4Addr::new(data[0], data[1], data[2], data[3]))),
            (TYPE_AAAA, 16) => out.push(IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(data).ok()?))),
            _ => {}
        }
        at += 10 + len;
    }
    Some(out)
}

/// Look `name` up (A, then AAAA) at each server in turn.
pub fn lookup(name: &str, servers: &[SocketAddr]) -> io::Result<Vec<IpAddr>> {
    if servers.is_empty() {
        return Err(io::Error::new(io::ErrorKind::NotFound, format!("cannot resolve `{name}`: no DNS server (no nameserver in /etc/resolv.conf)")));
    }
    let mut last = io::Error::new(io::ErrorKind::NotFound, format!("`{name}` has no address"));
    for server in servers {
        let bind: SocketAddr = if server.is_ipv4() { "0.0.0.0:0".parse().unwrap() } else { "[::]:0".parse().unwrap() };
        let sock = match UdpSocket::bind(bind).and_then(|s| s.connect(server).map(|_| s)) {
            Ok(s) => s,
            Err(e) => {
                last = e;
                continue;
            }
        };
        sock.set_read_timeout(Some(QUERY_TIMEOUT))?;
        let mut found = Vec::new();
        for qtype in [TYPE_A, TYPE_AAAA] {
            let id: u16 = rand::thread_rng().gen();
            if let Err(e) = sock.send(&query(id, name, qtype)?) {
                last = e;
                continue;
            }
            let mut buf = [0u8; 1500];
            // Skip stray datagrams with other ids; bounded by the read timeout per datagram.
            for _ in 0..4 {
                match sock.recv(&mut buf) {
                    Ok(n) => {
                        if let Some(ips) = parse_response(&buf[..n], id) {
                            found.extend(ips);
                            break;
                        }
                    }
                    Err(e) => {
                        last = e;
                        break;
                    }
                }
            }
        }
        if !found.is_empty() {
            return Ok(found);
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-shot-per-query DNS server on loopback answering every A query with 127.0.0.1
    /// (through a CNAME, with a compressed name) and AAAA with ::1.
    fn dns_server() -> SocketAddr {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = sock.local_addr().unwrap();
        std::thread::spawn(move || {
            sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut buf = [0u8; 512];
            while let Ok((n, from)) = sock.recv_from(&mut buf) {
                let q = &buf[..n];
                let qend = skip_name(q, 12).unwrap() + 4;
                let qtype = u16::from_be_bytes([q[qend - 4], q[qend - 3]]);
                let mut r = q[..qend].to_vec();
                r[2] = 0x81;
                r[3] = 0x80;
                r[7] = 2; // two answers
                          // CNAME pointing at the question name (compressed), then the address.
                r.extend_from_slice(&[0xc0, 12, 0, 5, 0, 1, 0, 0, 0, 60, 0, 2, 0xc0, 12]);
                r.extend_from_slice(&[0xc0, 12]);
                r.extend_from_slice(&qtype.to_be_bytes());
                r.extend_from_slice(&[0, 1, 0, 0, 0, 60]);
                if qtype == TYPE_A {
                    r.extend_from_slice(&[0, 4, 127, 0, 0, 1]);
                } else {
                    r.extend_from_slice(&[0, 16]);
                    r.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
                }
                let _ = sock.send_to(&r, from);
            }
        });
        addr
    }

    #[test]
    fn resolves_through_our_own_dns_client() {
        let server = dns_server();
        let r = Resolver { servers: Some(vec![server]), system: false };
        let got = ureq::Resolver::resolve(&r, "config.test.invalid:8080").unwrap();
        assert_eq!(got, vec!["127.0.0.1:8080".parse().unwrap(), "[::1]:8080".parse().unwrap()]);
        assert_eq!(ureq::Resolver::resolve(&r, "[::1]:443").unwrap(), vec!["[::1]:443".parse().unwrap()]);
    }

    #[test]
    fn resolv_conf_and_bad_input() {
        let s = resolv_conf_servers("# x\nsearch lan\nnameserver 10.0.0.53\nnameserver fe80::1%eth0\nnameserver bogus\n");
        assert_eq!(s, vec!["10.0.0.53:53".parse().unwrap(), "[fe80::1]:53".parse().unwrap()]);
        assert!(lookup("a.test", &[]).unwrap_err().to_string().contains("no DNS server"));
        assert!(query(1, "a..b", TYPE_A).is_err());
        assert_eq!(parse_response(&[0; 11], 0), None);
        let mut resp = query(7, "a.test", TYPE_A).unwrap();
        resp[2] |= 0x80;
        resp[3] = 3; // NXDOMAIN
        assert_eq!(parse_response(&resp, 7), None);
        resp[3] = 0;
        assert_eq!(parse_response(&resp, 7), Some(vec![]));
        assert_eq!(parse_response(&resp, 8), None);
    }
}
