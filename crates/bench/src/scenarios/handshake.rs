//! Handshake cost: connect, handshake, first echo, close, again and again; with one user or many,
//! from one client address (the proxy's secret hint) or from new ones (the full secret search).

use std::time::{Duration, Instant};

use serde_json::json;
use tokio::task::JoinSet;

use super::{median, open_many, r3, Bench, Res, Target};
use crate::client::{Conn, Route};

/// Where the connections of a handshake run come from.
#[derive(Clone, Copy)]
pub enum Clients {
    /// All from 127.0.0.1: after the first, the proxy tries the address's last secret first.
    OneAddress,
    /// Each from a loopback address of its own (127.1.0.0 upwards): the full secret search.
    NewAddresses,
}

impl Clients {
    fn name(self) -> &'static str {
        match self {
            Clients::OneAddress => "one-address",
            Clients::NewAddresses => "new-address",
        }
    }

    /// The source address of the next connection (`None`: the default, 127.0.0.1).
    fn source(self, next: &std::cell::Cell<u32>) -> Option<std::net::IpAddr> {
        match self {
            Clients::OneAddress => None,
            Clients::NewAddresses => {
                let n = next.get();
                next.set(n + 1);
                Some(std::net::Ipv4Addr::new(127, 1 + (n >> 16) as u8, (n >> 8) as u8, n as u8).into())
            }
        }
    }
}

impl Bench {
    /// connect -> handshake -> first echo -> close, `par` at a time.
    pub async fn handshakes(&mut self, route: &Route, users: usize, clients: Clients) -> Res<()> {
        let t = self.start(route, users)?;
        self.handshakes_on(&t, users, clients).await
    }

    /// [`Bench::handshakes`] against a target already started with `users` users.
    pub async fn handshakes_on(&mut self, t: &Target, users: usize, clients: Clients) -> Res<()> {
        let count: usize = if self.s.smoke {
            10
        } else if users >= 1000 {
            600
        } else {
            3000
        };
        let par = 8;
        // Warm-up (runtime threads, allocator).
        drop(open_many(t, 8, 8, Some((b'E', 0))).await?);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (addr, secret) = (t.proc.addr, t.secret);
        let reps = self.reps();
        let per = count / par / reps;
        let next_source = std::rc::Rc::new(std::cell::Cell::new(0u32));
        let mut per_rep = Vec::new();
        let t0 = Instant::now();
        for _ in 0..reps {
            let cpu0 = t.cpu();
            let mut set = JoinSet::new();
            for _ in 0..par {
                let next_source = next_source.clone();
                let route = t.route.clone();
                set.spawn_local(async move {
                    for _ in 0..per {
                        let from = clients.source(&next_source);
                        let mut c = Conn::open_from(from, addr, &route, &secret, Some((b'E', 0))).await?;
                        let msg = [0x5au8; 16];
                        let mut back = [0u8; 16];
                        c.send(&msg).await?;
                        c.recv_exact(&mut back).await?;
                        if back != msg {
                            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "echo differs"));
                        }
                    }
                    Ok::<_, std::io::Error>(())
                });
            }
            while let Some(r) = tokio::time::timeout(Duration::from_secs(600), set.join_next()).await.map_err(|_| "handshakes: timed out".to_string())? {
                r.map_err(|e| e.to_string())?.map_err(|e| format!("handshakes: {e}"))?;
            }
            // Let the proxy finish closing the last connections before reading its CPU.
            tokio::time::sleep(Duration::from_millis(100)).await;
            per_rep.push((t.cpu() - cpu0) * 1000.0 / (per * par) as f64);
        }
        let secs = t0.elapsed().as_secs_f64();
        let n = per * par * reps;
        let m = median(&mut per_rep);
        self.emit(json!({"scenario": "handshake", "target": t.label, "users": users, "clients": clients.name(), "count": n,
            "secs": r3(secs), "per_s": r3(n as f64 / secs),
            "cpu_s_per_1000": r3(m), "cpu_us_each": r3(m * 1000.0),
            "cpu_s_per_1000_reps": per_rep.iter().map(|x| r3(*x)).collect::<Vec<_>>()}));
        Ok(())
    }
}
