//! Connections held open: resident memory per idle connection, and the stall check (bursts of
//! awkward sizes must arrive whole without more input).

use std::time::{Duration, Instant};

use rand::RngCore;
use serde_json::json;

use super::{open_many, r3, with_timeout, Bench, Res};
use crate::client::{Conn, Route};

impl Bench {
    /// `conns` connections held open after one message each: resident memory per connection.
    pub async fn idle(&mut self, route: &Route, conns: usize) -> Res<()> {
        let t = self.start(route, 1)?;
        drop(open_many(&t, 16, 16, Some((b'E', 0))).await?);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let rss0 = t.rss();
        let t0 = Instant::now();
        let mut cs = open_many(&t, conns, 64, Some((b'E', 0))).await?;
        let msg = [0x42u8; 32];
        let mut back = [0u8; 32];
        for c in cs.iter_mut() {
            with_timeout(Duration::from_secs(10), "idle echo", async {
                c.send(&msg).await?;
                c.recv_exact(&mut back).await
            })
            .await?;
            if back != msg {
                return Err("idle: echo differs".into());
            }
            c.shrink();
        }
        let secs = t0.elapsed().as_secs_f64();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let rss1 = t.rss();
        drop(cs);
        self.emit(json!({"scenario": "idle", "target": route.name(), "conns": conns, "secs_to_open": r3(secs),
            "rss_before": rss0, "rss_after": rss1,
            "rss_bytes_per_conn": (rss1 as i64 - rss0 as i64) / conns as i64}));
        Ok(())
    }

    /// Bursts of awkward sizes, then silence: every byte must arrive without more input.
    pub async fn stall(&mut self, route: &Route) -> Res<()> {
        let t = self.start(route, 1)?;
        let sizes: &[usize] = &[1, 63, 1000, 16383, 16385, 100_003, 1_048_583];
        let wait = Duration::from_secs(5);
        let mut failed = Vec::new();
        let (addr, secret) = (t.proc.addr, t.secret);
        for &n in sizes {
            let mut data = vec![0u8; n];
            rand::thread_rng().fill_bytes(&mut data);
            // client -> DC: the DC acknowledges once it has all n bytes.
            let up = with_timeout(wait, &format!("up {n}"), async {
                let mut c = Conn::open(addr, route, &secret, Some((b'S', n as u64))).await?;
                c.send(&data).await?;
                let mut ack = [0u8; 1];
                c.recv_exact(&mut ack).await?;
                Ok(ack[0] == b'K')
            })
            .await;
            if up != Ok(true) {
                failed.push(format!("up {n}: {up:?}"));
            }
            // DC -> client: the DC sends n bytes and goes quiet.
            let down = with_timeout(wait, &format!("down {n}"), async {
                let mut c = Conn::open(addr, route, &secret, Some((b'D', n as u64))).await?;
                c.count(n as u64).await
            })
            .await;
            if let Err(e) = down {
                failed.push(e);
            }
            // Both ways: an echoed burst comes back whole and unchanged.
            let echo = with_timeout(wait, &format!("echo {n}"), async {
                let mut c = Conn::open(addr, route, &secret, Some((b'E', 0))).await?;
                c.send(&data).await?;
                let mut back = vec![0u8; n];
                c.recv_exact(&mut back).await?;
                Ok(back == data)
            })
            .await;
            if echo != Ok(true) {
                failed.push(format!("echo {n}: {echo:?}"));
            }
        }
        let ok = failed.is_empty();
        if !ok {
            self.failures.push(format!("stall {}: {}", route.name(), failed.join("; ")));
        }
        self.emit(json!({"scenario": "stall", "target": route.name(), "sizes": sizes, "ok": ok, "failures": failed}));
        Ok(())
    }
}
