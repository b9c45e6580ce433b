//! `vless-mtproxy stats [--live] [--json] [--interval 2s]`: the running proxy's numbers as a
//! table, one row per user. `--live` redraws in place every interval with bytes/s per user
//! (from the difference of two readings) until Ctrl-C, then restores the terminal and exits 0.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use mtproxy_core::config::parse_duration;
use mtproxy_core::stats_listener::Report;

use super::{endpoint, fetch_report, human_bytes, human_duration, load_config, EndpointArgs};

#[derive(clap::Args, Debug)]
pub struct StatsArgs {
    /// Redraw every interval, with rates per user, until Ctrl-C.
    #[arg(long)]
    pub live: bool,
    /// Print the proxy's /stats.json as it is (schema in docs/stats.md).
    #[arg(long, conflicts_with = "live")]
    pub json: bool,
    /// Time between two readings with --live.
    #[arg(long, default_value = "2s", value_parser = parse_interval)]
    pub interval: Duration,
    #[command(flatten)]
    pub endpoint: EndpointArgs,
}

fn parse_interval(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < Duration::from_millis(200) || d > Duration::from_secs(3600) {
        return Err(format!("`{s}`: the interval must be between 200ms and 1h"));
    }
    Ok(d)
}

const TIMEOUT: Duration = Duration::from_secs(5);

pub async fn run(config: &Path, args: StatsArgs) -> anyhow::Result<ExitCode> {
    let ep = match load_config(config) {
        Ok(c) => endpoint(Some(&c), &args.endpoint)?,
        Err(_) => super::fallback_endpoint(config, &args.endpoint)?,
    };
    if args.json {
        let r = fetch_report(&ep, TIMEOUT).await?;
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(ExitCode::SUCCESS);
    }
    if !args.live {
        let r = fetch_report(&ep, TIMEOUT).await?;
        print!("{}", render(&r, None));
        return Ok(ExitCode::SUCCESS);
    }
    live(&ep, args.interval).await
}

/// Restores the terminal however `live` ends.
struct Screen {
    tty: bool,
}

impl Screen {
    fn enter(tty: bool) -> Screen {
        if tty {
            // Alternate screen, cursor hidden.
            print!("\x1b[?1049h\x1b[?25l");
            let _ = std::io::stdout().flush();
        }
        Screen { tty }
    }

    fn draw(&self, text: &str) {
        let mut out = std::io::stdout().lock();
        if self.tty {
            let _ = write!(out, "\x1b[H\x1b[2J{}", text.replace('\n', "\r\n"));
        } else {
            let _ = writeln!(out, "{text}");
        }
        let _ = out.flush();
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        if self.tty {
            print!("\x1b[?25h\x1b[?1049l");
            let _ = std::io::stdout().flush();
        }
    }
}

async fn live(ep: &super::Endpoint, interval: Duration) -> anyhow::Result<ExitCode> {
    let screen = Screen::enter(std::io::stdout().is_terminal());
    let mut prev: Option<(Instant, Report)> = None;
    let mut ctrl_c = std::pin::pin!(tokio::signal::ctrl_c());
    loop {
        let started = Instant::now();
        let text = match fetch_report(ep, TIMEOUT.min(interval.max(Duration::from_secs(1)))).await {
            Ok(r) => {
                let rates = prev.as_ref().map(|(t, p)| Rates::between(p, &r, started.duration_since(*t)));
                let text = render(&r, rates.as_ref());
                prev = Some((started, r));
                text
            }
            Err(e) => format!("cannot read statistics: {e:#}\n(retrying every {})\n", mtproxy_core::config::format_duration(interval)),
        };
        let stamp = chrono_like_now();
        screen.draw(&format!("{text}\n{stamp}  every {}  Ctrl-C to quit\n", mtproxy_core::config::format_duration(interval)));
        tokio::select! {
            _ = tokio::time::sleep_until((started + interval).into()) => {}
            _ = &mut ctrl_c => break,
        }
    }
    drop(screen);
    Ok(ExitCode::SUCCESS)
}

/// HH:MM:SS UTC, without a date library.
fn chrono_like_now() -> String {
    let s = mtproxy_core::stats::unix_now() % 86400;
    format!("{:02}:{:02}:{:02} UTC", s / 3600, s % 3600 / 60, s % 60)
}

/// Bytes per second per user between two readings.
pub struct Rates {
    per_user: HashMap<String, (f64, f64)>,
    total: (f64, f64),
}

impl Rates {
    pub fn between(a: &Report, b: &Report, dt: Duration) -> Rates {
        let secs = dt.as_secs_f64().max(0.001);
        let rate = |x: u64, y: u64| y.saturating_sub(x) as f64 / secs;
        let mut per_user = HashMap::new();
        for u in &b.users {
            let (fi, ti) = a.users.iter().find(|p| p.name == u.name).map(|p| (p.bytes_from_client, p.bytes_to_client)).unwrap_or((0, 0));
            per_user.insert(u.name.clone(), (rate(fi, u.bytes_from_client), rate(ti, u.bytes_to_client)));
        }
        Rates { per_user, total: (rate(a.bytes.from_clients, b.bytes.from_clients), rate(a.bytes.to_clients, b.bytes.to_clients)) }
    }
}

fn rate(v: f64) -> String {
    format!("{}/s", human_bytes(v))
}

/// The table (with rate columns when `rates` is given).
pub fn render(r: &Report, rates: Option<&Rates>) -> String {
    let mut o = String::new();
    let failed: u64 = r.handshakes.failed.values().sum();
    o.push_str(&format!(
        "vless-mtproxy {}  up {}  mode {}  listening {}\n",
        r.version,
        human_duration(r.uptime_seconds),
        r.mode,
        if r.listen.is_empty() { "-".to_string() } else { r.listen.join(", ") }
    ));
    o.push_str(&format!(
        "connections {} active, {} total   traffic in {}  out {}   handshakes {} ok, {} failed   fronted {}\n",
        r.connections.active,
        r.connections.total,
        human_bytes(r.bytes.from_clients as f64),
        human_bytes(r.bytes.to_clients as f64),
        r.handshakes.ok,
        failed,
        r.fronting.total
    ));
    if let Some(rt) = rates {
        o.push_str(&format!("rate in {}  out {}\n", rate(rt.total.0), rate(rt.total.1)));
    }
    o.push('\n');
    let mut header = vec!["USER", "STATE", "ACTIVE", "TOTAL", "IPS", "IN", "OUT"];
    if rates.is_some() {
        header.extend(["IN/s", "OUT/s"]);
    }
    header.push("LAST SEEN");
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|s| s.to_string()).collect()];
    for u in &r.users {
        let state = if !u.configured {
            "removed"
        } else if u.enabled {
            "enabled"
        } else {
            "disabled"
        };
        let seen = if u.connections_active > 0 {
            "now".to_string()
        } else {
            match u.last_seen {
                Some(t) => format!("{} ago", human_duration(r.current_time.saturating_sub(t))),
                None => "never".to_string(),
            }
        };
        let mut row = vec![
            u.name.clone(),
            state.to_string(),
            u.connections_active.to_string(),
            u.connections_total.to_string(),
            u.unique_ips_active.to_string(),
            human_bytes(u.bytes_from_client as f64),
            human_bytes(u.bytes_to_client as f64),
        ];
        if let Some(rt) = rates {
            let (i, t) = rt.per_user.get(&u.name).copied().unwrap_or((0.0, 0.0));
            row.push(rate(i));
            row.push(rate(t));
        }
        row.push(seen);
        rows.push(row);
    }
    let widths: Vec<usize> = (0..rows[0].len()).map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
    for row in &rows {
        let line: Vec<String> = row.iter().enumerate().map(|(i, c)| format!("{c:<w$}", w = widths[i])).collect();
        o.push_str(line.join("  ").trim_end());
        o.push('\n');
    }
    if r.users.is_empty() {
        o.push_str("(no users)\n");
    }
    o
}
