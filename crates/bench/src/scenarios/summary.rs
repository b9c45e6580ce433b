//! The closing `summary` row: this run's numbers against the floor (the bare relay plus two AES
//! passes) and the goals of docs/performance.md.

use serde_json::{json, Value};

use super::{r3, Bench};

impl Bench {
    /// Ratios against the floor and the targets of docs/performance.md, from this run's rows.
    pub fn summary(&mut self) {
        let find = |f: &dyn Fn(&Value) -> bool| self.results.iter().find(|v| f(v)).cloned();
        let num = |v: &Option<Value>, k: &str| v.as_ref().and_then(|v| v[k].as_f64());
        let aes = num(&find(&|v| v["scenario"] == "aes_ctr"), "cpu_s_per_gb");
        let mut rows = Vec::new();
        for dir in ["up", "down"] {
            for conns in [1, 16, 256] {
                let row = |target: &str| find(&|v| v["scenario"] == "throughput" && v["target"] == target && v["dir"] == dir && v["conns"] == conns);
                // The floor uses the cheaper of the two bare relays.
                let bare = match (num(&row("bare"), "cpu_s_per_gb"), num(&row("bare64"), "cpu_s_per_gb")) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                let (Some(bare), Some(aes)) = (bare, aes) else { continue };
                let floor = bare + 2.0 * aes;
                for k in ["classic", "dd", "ee"] {
                    if let Some(x) = num(&row(k), "cpu_s_per_gb") {
                        rows.push(json!({"what": "cpu_per_gb", "target": k, "dir": dir, "conns": conns,
                            "floor": r3(floor), "value": x, "ratio": r3(x / floor), "goal": 1.2}));
                    }
                }
            }
        }
        for size in [64, 1024] {
            let row = |target: &str| find(&|v| v["scenario"] == "latency" && v["target"] == target && v["size"] == size);
            if let Some(bare) = num(&row("bare"), "cpu_us_per_round_trip") {
                for k in ["classic", "dd", "ee"] {
                    if let Some(x) = num(&row(k), "cpu_us_per_round_trip") {
                        rows.push(json!({"what": "cpu_per_message", "target": k, "size": size, "bare": bare,
                            "value": x, "ratio": r3(x / bare), "goal": 1.2}));
                    }
                }
            }
        }
        // The goals are for clients the proxy has not seen (the full secret search); returning
        // addresses are cheaper (hints.rs) and reported in their own rows.
        let hs_from = |target: &str, users: u64, clients: &str| {
            num(&find(&|v| v["scenario"] == "handshake" && v["target"] == target && v["users"] == users && v["clients"] == clients), "cpu_s_per_1000")
        };
        let hs = |target: &str, users: u64| if users == 1 { hs_from(target, 1, "one-address") } else { hs_from(target, users, "new-address") };
        if let Some(bare) = hs("bare", 1) {
            for k in ["classic", "dd"] {
                if let Some(x) = hs(k, 1) {
                    rows.push(json!({"what": "handshake_cpu_s_per_1000", "target": k, "users": 1, "bare": bare,
                        "value": x, "ratio": r3(x / bare), "goal": 1.3}));
                }
            }
        }
        if let Some(x) = hs("ee", 1) {
            rows.push(json!({"what": "handshake_cpu_s_per_1000", "target": "ee", "users": 1, "value": x, "goal_max": 0.25}));
        }
        if let Some(x) = hs("ee", 1000) {
            rows.push(json!({"what": "handshake_cpu_ms_each", "target": "ee", "users": 1000, "clients": "new-address", "value": r3(x), "goal_max": 1.0}));
        }
        let most = self.results.iter().filter(|v| v["scenario"] == "idle").filter_map(|v| v["conns"].as_u64()).max();
        for v in self.results.iter().filter(|v| v["scenario"] == "idle" && v["conns"].as_u64() == most) {
            rows.push(json!({"what": "idle_rss_bytes_per_conn", "target": v["target"], "conns": v["conns"],
                "value": v["rss_bytes_per_conn"], "goal_max": 4096}));
        }
        // The upstream leg's cost: the proxy's CPU through dante against the same proxy direct.
        for dir in ["up", "down"] {
            let row = |target: &str| find(&|v| v["scenario"] == "throughput" && v["target"] == target && v["dir"] == dir && v["conns"] == 16);
            if let (Some(via), Some(direct)) = (num(&row("dd+socks5"), "cpu_s_per_gb"), num(&row("dd"), "cpu_s_per_gb")) {
                rows.push(json!({"what": "socks5_cpu_per_gb", "target": "dd+socks5", "dir": dir, "conns": 16,
                    "direct": direct, "value": via, "ratio": r3(via / direct),
                    "upstream_cpu_s_per_gb": row("dd+socks5").map(|v| v["upstream_cpu_s_per_gb"].clone())}));
            }
        }
        if let (Some(via), Some(direct)) = (hs_from("dd+socks5", 1, "one-address"), hs_from("dd", 1, "one-address")) {
            rows.push(json!({"what": "socks5_handshake_cpu_s_per_1000", "target": "dd+socks5", "users": 1,
                "direct": direct, "value": via, "ratio": r3(via / direct)}));
        }
        let stall_ok = self.results.iter().filter(|v| v["scenario"] == "stall").all(|v| v["ok"] == true);
        self.emit(json!({"scenario": "summary", "stall_ok": stall_ok, "rows": rows}));
    }
}
