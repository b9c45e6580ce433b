//! The `socks5` scenario: the proxy with an `[upstream]` SOCKS5 server (Debian's dante, started
//! here as a child), measured with the same throughput and handshake rows (target `dd+socks5`).

use mtproxy_proto::SecretKind;
use serde_json::json;

use super::{free_addr, secrets, Bench, Clients, Res, Target};
use crate::client::Route;
use crate::procs;

impl Bench {
    /// The proxy for `kind` with dante as its `[upstream]` SOCKS5 server; `None` when dante is
    /// not installed.
    pub fn start_via_socks5(&self, kind: SecretKind) -> Res<Option<Target>> {
        let Some(bin) = procs::danted() else { return Ok(None) };
        let dante = procs::start_dante(&bin, &self.s.dir, free_addr()?).map_err(|e| e.to_string())?;
        let extra = format!("[upstream]\n[[upstream.servers]]\nname = \"dante\"\ntype = \"socks5\"\naddress = \"{}\"\n", dante.addr);
        let addr = free_addr()?;
        let list = secrets(1);
        let proc = procs::start_proxy_with(&self.s.proxy_bin, &self.s.dir, addr, self.dc, self.s.workers, &kind, &list, &extra).map_err(|e| e.to_string())?;
        Ok(Some(Target { proc, route: Route::Proxy(kind), secret: list[0], label: "dd+socks5", upstream: Some(dante) }))
    }

    /// Throughput both ways (16 connections) and handshakes (one user) through a SOCKS5
    /// upstream (dante); a `socks5` row says whether it ran.
    pub async fn socks5(&mut self) -> Res<()> {
        let Some(t) = self.start_via_socks5(SecretKind::Padded)? else {
            self.emit(json!({"scenario": "socks5", "ran": false, "why": "danted (Debian package dante-server) is not installed"}));
            return Ok(());
        };
        for up in [true, false] {
            self.throughput(&t, up, 16).await?;
        }
        self.handshakes_on(&t, 1, Clients::OneAddress).await?;
        self.emit(json!({"scenario": "socks5", "ran": true, "target": t.label, "upstream": "dante"}));
        Ok(())
    }
}
