//! The data path: the AES-CTR floor, bulk throughput each way, and ping-pong latency with the
//! CPU each costs the target.

use std::rc::Rc;
use std::time::{Duration, Instant};

use mtproxy_proto::crypto::AesCtr;
use rand::RngCore;
use serde_json::json;
use tokio::task::JoinSet;

use super::{median, open_many, pct, r3, Bench, Res, Target};
use crate::client::bulk_wire;
use crate::procstat;

impl Bench {
    /// Single-core AES-256-CTR speed of the crypto crate the proxy uses.
    pub fn aes(&mut self) {
        let mut c = AesCtr::new(&[7u8; 32], &[9u8; 16]);
        let mut buf = vec![0u8; 16384];
        let budget = if self.s.smoke { 0.02 } else { 1.0 };
        let t0 = procstat::thread_cpu_secs();
        let w0 = Instant::now();
        let mut bytes = 0u64;
        while procstat::thread_cpu_secs() - t0 < budget {
            for _ in 0..64 {
                c.apply(&mut buf);
            }
            bytes += 64 * buf.len() as u64;
        }
        let cpu = procstat::thread_cpu_secs() - t0;
        let _ = w0;
        self.emit(json!({"scenario": "aes_ctr", "bytes": bytes, "cpu_s": r3(cpu),
            "mb_per_s": r3(bytes as f64 / cpu / 1e6), "cpu_s_per_gb": r3(cpu / (bytes as f64 / 1e9))}));
    }

    /// Bulk transfer in one direction over `conns` connections.
    pub async fn throughput(&mut self, t: &Target, up: bool, conns: usize) -> Res<()> {
        const CH: u64 = 65536;
        let per = ((self.s.bytes / conns as u64) / CH).max(1) * CH;
        let mut cs = open_many(t, conns, 64, None).await?;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let wire: Rc<Vec<u8>> = Rc::new(bulk_wire(CH as usize, t.route.is_fake_tls()));
        let cpu0 = t.cpu();
        let up_cpu0 = t.upstream_cpu();
        let t0 = Instant::now();
        let mut set = JoinSet::new();
        for mut c in cs.drain(..) {
            let wire = wire.clone();
            set.spawn_local(async move {
                if up {
                    c.send(&crate::fakedc::command(b'S', per)).await?;
                    for _ in 0..per / CH {
                        c.send_raw(&wire).await?;
                    }
                    let mut ack = [0u8; 1];
                    c.recv_exact(&mut ack).await?;
                    if ack[0] != b'K' {
                        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "bad ack from the fake DC"));
                    }
                } else {
                    c.send(&crate::fakedc::command(b'D', per)).await?;
                    c.count(per).await?;
                }
                Ok::<_, std::io::Error>(c)
            });
        }
        let limit = Duration::from_secs(if self.s.smoke { 30 } else { 300 });
        let mut done = Vec::new();
        while let Some(r) = tokio::time::timeout(limit, set.join_next()).await.map_err(|_| "throughput: timed out".to_string())? {
            done.push(r.map_err(|e| e.to_string())?.map_err(|e| format!("throughput: {e}"))?);
        }
        let secs = t0.elapsed().as_secs_f64();
        let cpu = t.cpu() - cpu0;
        drop(done);
        let total = per * conns as u64;
        let mut row = json!({"scenario": "throughput", "target": t.label, "dir": if up {"up"} else {"down"},
            "conns": conns, "bytes": total, "secs": r3(secs), "mb_per_s": r3(total as f64 / secs / 1e6),
            "cpu_s": r3(cpu), "cpu_s_per_gb": r3(cpu / (total as f64 / 1e9)), "workers": self.s.workers});
        if let (Some(a), Some(b)) = (up_cpu0, t.upstream_cpu()) {
            // The upstream server's own cost, for comparison (not part of the proxy's).
            row["upstream_cpu_s_per_gb"] = json!(r3((b - a) / (total as f64 / 1e9)));
        }
        self.emit(row);
        Ok(())
    }

    /// Ping-pong of `size`-byte messages on `conns` connections at once.
    pub async fn latency(&mut self, t: &Target, size: usize, conns: usize) -> Res<()> {
        let rounds = if self.s.smoke { 5 } else { 100 };
        let reps = self.reps();
        let mut cs = open_many(t, conns, 64, Some((b'E', 0))).await?;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut all = Vec::with_capacity(rounds * conns * reps);
        let mut per_rep = Vec::new();
        let t0 = Instant::now();
        for _ in 0..reps {
            let cpu0 = t.cpu();
            let mut set = JoinSet::new();
            for mut c in cs.drain(..) {
                set.spawn_local(async move {
                    let mut msg = vec![0u8; size];
                    let mut back = vec![0u8; size];
                    let mut lat = Vec::with_capacity(rounds);
                    for _ in 0..rounds {
                        rand::thread_rng().fill_bytes(&mut msg);
                        let s = Instant::now();
                        c.send(&msg).await?;
                        c.recv_exact(&mut back).await?;
                        lat.push(s.elapsed().as_micros() as u32);
                        if back != msg {
                            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "echo differs"));
                        }
                    }
                    Ok::<_, std::io::Error>((c, lat))
                });
            }
            while let Some(r) = tokio::time::timeout(Duration::from_secs(300), set.join_next()).await.map_err(|_| "latency: timed out".to_string())? {
                let (c, lat) = r.map_err(|e| e.to_string())?.map_err(|e| format!("latency: {e}"))?;
                cs.push(c);
                all.extend(lat);
            }
            per_rep.push((t.cpu() - cpu0) * 1e6 / (rounds * conns) as f64);
        }
        let secs = t0.elapsed().as_secs_f64();
        all.sort_unstable();
        let msgs = all.len();
        self.emit(json!({"scenario": "latency", "target": t.label, "size": size, "conns": conns,
            "round_trips": msgs, "secs": r3(secs), "p50_us": pct(&all, 0.5), "p99_us": pct(&all, 0.99),
            "p999_us": pct(&all, 0.999), "cpu_us_per_round_trip": r3(median(&mut per_rep)),
            "cpu_us_per_round_trip_reps": per_rep.iter().map(|x| r3(*x)).collect::<Vec<_>>()}));
        Ok(())
    }
}
