//! The set of upstream servers in force and the order they are tried in for one connection.
//!
//! For a DC id the candidates are the servers that name it most specifically (an exact id beats
//! `media`, which beats `*`; `DcSelection::rank`), so "media DCs direct, the rest through Xray"
//! is two entries. Among the candidates, those in rotation come first in a weighted random
//! order (each draw picks a server with probability weight / remaining weight), then those out
//! of rotation, soonest back first: when all of them failed lately, trying one still beats
//! refusing the client. A DC no server names goes direct.
//!
//! A [`Router`] is rebuilt with every configuration snapshot (new connections use the new set);
//! the counters and the health of each server are kept in `Stats` by name, so a reload does not
//! forget that a server is down. The clock (`now_ms`) and the random source are arguments.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;

use crate::config::{UpstreamKind, UpstreamSettings};
use crate::stats::{Stats, UpstreamStats};

/// One configured server, with its counters.
#[derive(Debug)]
pub struct Route {
    pub name: String,
    pub kind: UpstreamKind,
    pub weight: u32,
    pub dcs: crate::config::DcSelection,
    /// `None` for the implicit direct route of a DC no server names.
    pub stats: Option<Arc<UpstreamStats>>,
}

/// The implicit route: no `[[upstream.servers]]` entry names the DC.
pub const IMPLICIT_DIRECT: &str = "direct";

#[derive(Debug)]
pub struct Router {
    routes: Vec<Route>,
    direct: Route,
    pub retry_after: Duration,
    settings: UpstreamSettings,
}

impl Router {
    pub fn new(settings: &UpstreamSettings, stats: &Stats) -> Router {
        let routes = settings
            .servers
            .iter()
            .map(|s| {
                let st = stats.upstream(&s.name);
                let describe = match s.kind.address() {
                    Some(a) => format!("{} {a}", s.kind.type_name()),
                    None => s.kind.type_name().to_string(),
                };
                *st.describe.lock().unwrap_or_else(|e| e.into_inner()) = describe;
                Route { name: s.name.clone(), kind: s.kind.clone(), weight: s.weight, dcs: s.dcs.clone(), stats: Some(st) }
            })
            .collect();
        let direct = Route { name: IMPLICIT_DIRECT.into(), kind: UpstreamKind::Direct, weight: 1, dcs: Default::default(), stats: None };
        Router { routes, direct, retry_after: settings.retry_after, settings: settings.clone() }
    }

    /// The section it was built from (a pool built from other settings is replaced).
    pub fn settings(&self) -> &UpstreamSettings {
        &self.settings
    }

    /// Every configured server, in file order.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The routes to try for `dc`, in order (never empty).
    pub fn plan(&self, dc: i16, now_ms: u64, rng: &mut impl Rng) -> Vec<&Route> {
        let best = self.routes.iter().map(|r| r.dcs.rank(dc)).max().unwrap_or(0);
        if best == 0 {
            return vec![&self.direct];
        }
        let candidates: Vec<&Route> = self.routes.iter().filter(|r| r.dcs.rank(dc) == best).collect();
        let is_up = |r: &Route| r.stats.as_ref().is_none_or(|s| s.is_up(now_ms));
        let mut up: Vec<&Route> = candidates.iter().copied().filter(|r| is_up(r)).collect();
        let mut down: Vec<&Route> = candidates.iter().copied().filter(|r| !is_up(r)).collect();
        let mut out = Vec::with_capacity(candidates.len());
        // Bounded: one server leaves `up` per round.
        while !up.is_empty() {
            let total: u64 = up.iter().map(|r| u64::from(r.weight)).sum();
            let mut pick = rng.gen_range(0..total);
            let i = up
                .iter()
                .position(|r| {
                    let w = u64::from(r.weight);
                    if pick < w {
                        true
                    } else {
                        pick -= w;
                        false
                    }
                })
                .unwrap_or(0);
            out.push(up.remove(i));
        }
        down.sort_by_key(|r| r.stats.as_ref().map_or(0, |s| s.down_until_ms.load(std::sync::atomic::Ordering::Relaxed)));
        out.extend(down);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DcSelection, HostPort, UpstreamServer};
    use rand::SeedableRng;

    fn server(name: &str, weight: u32, dcs: DcSelection) -> UpstreamServer {
        UpstreamServer { name: name.into(), kind: UpstreamKind::Socks5 { address: HostPort::parse("127.0.0.1:1080").unwrap(), credentials: None }, weight, dcs }
    }

    fn names(plan: Vec<&Route>) -> Vec<&str> {
        plan.into_iter().map(|r| r.name.as_str()).collect()
    }

    #[test]
    fn most_specific_selection_wins_and_unnamed_dcs_go_direct() {
        let stats = Stats::default();
        let media = DcSelection { media: true, ..Default::default() };
        let four = DcSelection { ids: vec![4], ..Default::default() };
        let settings = UpstreamSettings {
            servers: vec![server("all", 1, DcSelection::all()), server("media", 1, media), server("four", 1, four.clone())],
            retry_after: Duration::from_secs(30),
        };
        let r = Router::new(&settings, &stats);
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        assert_eq!(names(r.plan(2, 0, &mut rng)), ["all"]);
        assert_eq!(names(r.plan(-2, 0, &mut rng)), ["media"]);
        assert_eq!(names(r.plan(4, 0, &mut rng)), ["four"]);
        assert_eq!(names(r.plan(-4, 0, &mut rng)), ["media"]);
        let only_four = UpstreamSettings { servers: vec![server("four", 1, four)], retry_after: Duration::from_secs(30) };
        assert_eq!(names(Router::new(&only_four, &stats).plan(2, 0, &mut rng)), [IMPLICIT_DIRECT]);
        assert_eq!(names(Router::new(&UpstreamSettings::default(), &stats).plan(2, 0, &mut rng)), [IMPLICIT_DIRECT]);
        assert_eq!(*stats.upstream("all").describe.lock().unwrap(), "socks5 127.0.0.1:1080");
    }

    #[test]
    fn weights_share_first_place_and_failed_servers_go_last_until_their_time() {
        let stats = Stats::default();
        let settings =
            UpstreamSettings { servers: vec![server("a", 3, DcSelection::all()), server("b", 1, DcSelection::all())], retry_after: Duration::from_secs(30) };
        let r = Router::new(&settings, &stats);
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let firsts = (0..4000).filter(|_| r.plan(2, 0, &mut rng)[0].name == "a").count();
        assert!((2700..3300).contains(&firsts), "a first {firsts} of 4000 (want about 3000)");
        stats.upstream("a").failed(Some(10_000));
        for _ in 0..50 {
            assert_eq!(names(r.plan(2, 9_999, &mut rng)), ["b", "a"]);
        }
        // Its time is over: back in rotation (the retry).
        assert!((0..50).any(|_| r.plan(2, 10_000, &mut rng)[0].name == "a"));
        stats.upstream("b").failed(Some(5_000));
        assert_eq!(names(r.plan(2, 0, &mut rng)), ["b", "a"], "both down: soonest back first");
        stats.upstream("a").connected(Duration::from_millis(1));
        assert!(stats.upstream("a").is_up(0));
    }
}
