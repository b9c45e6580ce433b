//! HAProxy lines that share port 443 between a VPN (e.g. VLESS/Reality) and this proxy.
//!
//! A fake-TLS (`ee`) client opens with a TLS ClientHello that names the cover domain (SNI).
//! HAProxy in TCP mode can read that SNI without terminating TLS (`req_ssl_sni`) and send the
//! connection to the proxy, prefixed with a PROXY v2 header so the proxy sees the client's real
//! address. Every other SNI keeps going where it went before.
//!
//! The cover domain must differ from the Reality destination: routing is by SNI alone, so a
//! shared name would send Reality clients to the proxy (or the reverse), and a prober that
//! compares the two would see one name served two ways.

use std::path::Path;
use std::process::ExitCode;

use anyhow::bail;
use mtproxy_core::config::{valid_domain, HostPort};

#[derive(clap::Args)]
pub struct HaproxyArgs {
    /// The fake-TLS cover domain(s) to route. Default: every ee user's domain in the configuration.
    #[arg(long = "domain")]
    pub domains: Vec<String>,
    /// Where the proxy listens, as HAProxy reaches it (HOST:PORT).
    #[arg(long)]
    pub backend: String,
    /// Name of the HAProxy backend section.
    #[arg(long, default_value = "vless_mtproxy")]
    pub name: String,
    /// Print a whole frontend bound here (e.g. 0.0.0.0:443) instead of lines for an existing one.
    #[arg(long, requires = "default_backend")]
    pub bind: Option<String>,
    /// With --bind: the backend for every other SNI (your VPN's).
    #[arg(long, requires = "bind")]
    pub default_backend: Option<String>,
    /// The Reality destination / server name, to check that it differs from the cover domain.
    #[arg(long)]
    pub reality_dest: Option<String>,
}

/// What the snippet needs.
pub struct Snippet<'a> {
    pub domains: &'a [String],
    pub backend: &'a HostPort,
    pub name: &'a str,
    /// `(bind, default_backend)` for a whole frontend.
    pub frontend: Option<(&'a str, &'a str)>,
}

fn valid_section_name(n: &str) -> bool {
    !n.is_empty() && n.len() <= 64 && n.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.:".contains(&b))
}

/// The routing lines (inside a frontend in `mode tcp`).
fn routing_lines(s: &Snippet<'_>) -> String {
    format!(
        "    tcp-request inspect-delay 5s\n    tcp-request content accept if {{ req_ssl_hello_type 1 }}\n    use_backend {} if {{ req_ssl_sni -i {} }}\n",
        s.name,
        s.domains.join(" ")
    )
}

/// The text printed by `haproxy-snippet`.
pub fn render(s: &Snippet<'_>) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "# vless-mtproxy behind HAProxy on 443: ClientHellos naming {} go to the proxy at {}\n\
         # with a PROXY v2 header; every other SNI keeps its current route.\n\
         # The cover domain must differ from the Reality destination (dest / serverNames): routing is\n\
         # by SNI alone, so a shared name would send Reality clients to the proxy or the reverse.\n\
         # In the proxy's configuration, trust HAProxy's address (the source it connects from):\n\
         #   [server]\n#   proxy_protocol = true\n#   trusted_proxies = [\"127.0.0.1/32\"]\n\
         #   public_port = 443\n#\n",
        s.domains.join(", "),
        s.backend
    ));
    match s.frontend {
        None => {
            out.push_str("# --- add to your existing frontend on :443 (mode tcp), above its other use_backend lines ---\n");
            out.push_str(&routing_lines(s));
        }
        Some((bind, default_backend)) => {
            out.push_str(&format!("frontend {}_443\n    bind {bind}\n    mode tcp\n", s.name));
            out.push_str(&routing_lines(s));
            out.push_str(&format!("    default_backend {default_backend}\n"));
        }
    }
    out.push_str(&format!(
        "\n# --- new backend ---\nbackend {}\n    mode tcp\n    # Telegram keeps quiet connections for minutes: do not cut them at HAProxy's client/server timeouts.\n    timeout tunnel 10m\n    server mtproxy {} send-proxy-v2\n",
        s.name, s.backend
    ));
    out
}

pub fn run(config: &Path, a: HaproxyArgs) -> anyhow::Result<ExitCode> {
    let backend = HostPort::parse(&a.backend).map_err(|m| anyhow::anyhow!("--backend: {m}"))?;
    let mut domains: Vec<String> = a.domains.iter().map(|d| d.trim().to_ascii_lowercase()).collect();
    if domains.is_empty() {
        let cfg = mtproxy_core::config::load(config)
            .map_err(|e| anyhow::anyhow!("no --domain given and the configuration cannot be read: {e}\n  fix: pass --domain COVER.DOMAIN"))?;
        domains = cfg.fake_tls_domains().into_iter().map(str::to_string).collect();
        if domains.is_empty() {
            bail!("the configuration has no enabled ee (fake-TLS) user: SNI routing needs a cover domain; pass --domain");
        }
    }
    for d in &domains {
        if !valid_domain(d) {
            bail!("--domain `{d}` is not a host name; write e.g. www.example.com");
        }
    }
    if let Some(r) = &a.reality_dest {
        let r = r.trim().to_ascii_lowercase();
        let r_host = r.rsplit_once(':').map(|(h, _)| h.to_string()).unwrap_or(r);
        if domains.contains(&r_host) {
            bail!("the cover domain `{r_host}` is also the Reality destination: HAProxy routes by SNI alone, so both cannot share it; give the proxy users another cover domain");
        }
    }
    for n in std::iter::once(&a.name).chain(a.default_backend.iter()) {
        if !valid_section_name(n) {
            bail!("`{n}` is not a HAProxy section name; use letters, digits, `_`, `-`, `.`");
        }
    }
    if let Some(b) = &a.bind {
        if b.parse::<std::net::SocketAddr>().is_err() && HostPort::parse(b).is_err() {
            bail!("--bind `{b}` is not ADDRESS:PORT; write e.g. 0.0.0.0:443");
        }
    }
    let frontend = a.bind.as_deref().zip(a.default_backend.as_deref());
    print!("{}", render(&Snippet { domains: &domains, backend: &backend, name: &a.name, frontend }));
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snippet_routes_sni_with_proxy_v2() {
        let domains = vec!["cover.example.com".to_string()];
        let backend = HostPort::parse("127.0.0.1:8443").unwrap();
        let t = render(&Snippet { domains: &domains, backend: &backend, name: "vless_mtproxy", frontend: None });
        assert!(t.contains("use_backend vless_mtproxy if { req_ssl_sni -i cover.example.com }"), "{t}");
        assert!(t.contains("server mtproxy 127.0.0.1:8443 send-proxy-v2"), "{t}");
        assert!(t.contains("differ from the Reality destination"));
        assert!(!t.contains("default_backend"), "lines for an existing frontend leave its routes alone");
        let full = render(&Snippet { domains: &domains, backend: &backend, name: "m", frontend: Some(("0.0.0.0:443", "vpn")) });
        assert!(full.contains("frontend m_443\n    bind 0.0.0.0:443\n    mode tcp\n") && full.contains("default_backend vpn"), "{full}");
    }
}
