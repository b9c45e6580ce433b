//! `[server]`: where the proxy listens, what links advertise (public host and port), how many
//! workers, which address family towards the DCs, and who may send a PROXY protocol header
//! (docs/host-security.md). `pid_file` is read by `parse_str` with the other path fields.

use std::net::SocketAddr;

use super::super::raw::RawServer;
use super::{d, flag, non_blank, Cidr, ConfigError, Ctx, IpPreference, ProxyProtocol};

/// The validated `[server]` values, moved into `Config` by `parse_str`.
pub(super) struct Server {
    pub listen: Vec<SocketAddr>,
    pub public_host: Option<String>,
    pub public_port: Option<u16>,
    pub workers: usize,
    pub allow_any_transport: bool,
    pub dc_ip: IpPreference,
    pub fast_mode: bool,
    pub proxy_protocol: ProxyProtocol,
}

pub(super) fn settings(ctx: &Ctx<'_>, server: &RawServer) -> Result<Server, ConfigError> {
    let listen = listen(ctx, server)?;
    let public_host = match non_blank(&server.public_host) {
        None => None,
        Some((v, h)) => {
            if h.contains(char::is_whitespace) || h.contains('/') || h.len() > 255 {
                return Err(ctx.at(v, format!("`public_host`: `{h}` is not a host name or IP address"), "write e.g. \"proxy.example.org\" or \"203.0.113.7\""));
            }
            Some(h.to_string())
        }
    };
    let public_port = ctx.opt_int(&server.public_port, "public_port", 1, 65535)?.map(|p| p as u16);
    let workers = ctx.int(&server.workers, "workers", 1, d::MAX_WORKERS as i64, d::WORKERS as i64)? as usize;
    let dc_ip = match &server.dc_ip {
        None => IpPreference::PreferV4,
        Some(v) => match v.get_ref().as_str() {
            "prefer-v4" => IpPreference::PreferV4,
            "prefer-v6" => IpPreference::PreferV6,
            "only-v4" => IpPreference::OnlyV4,
            "only-v6" => IpPreference::OnlyV6,
            other => {
                return Err(ctx.at(
                    v,
                    format!("`dc_ip` = \"{other}\" is not a known preference"),
                    "use \"prefer-v4\", \"prefer-v6\", \"only-v4\" or \"only-v6\"",
                ))
            }
        },
    };
    let proxy_protocol = proxy_protocol(ctx, server)?;
    Ok(Server {
        listen,
        public_host,
        public_port,
        workers,
        allow_any_transport: server.allow_any_transport.unwrap_or(false),
        dc_ip,
        fast_mode: server.fast_mode.unwrap_or(true),
        proxy_protocol,
    })
}

/// One or more distinct `IP:PORT` addresses; `0.0.0.0:8443` when the line is absent.
fn listen(ctx: &Ctx<'_>, server: &RawServer) -> Result<Vec<SocketAddr>, ConfigError> {
    let Some(v) = &server.listen else { return Ok(vec![SocketAddr::from(([0, 0, 0, 0], d::PORT))]) };
    let mut out = Vec::new();
    for item in v.get_ref().items() {
        let addr: SocketAddr =
            item.parse().map_err(|_| ctx.at(v, format!("`listen`: `{item}` is not an address with a port"), "write e.g. \"0.0.0.0:8443\" or \"[::]:8443\""))?;
        if addr.port() == 0 {
            return Err(ctx.at(v, format!("`listen`: `{item}` has port 0"), "choose a port from 1 to 65535"));
        }
        if out.contains(&addr) {
            return Err(ctx.at(v, format!("`listen`: `{item}` is listed twice"), "list each address once"));
        }
        out.push(addr);
    }
    if out.is_empty() {
        return Err(ctx.at(v, "`listen` is empty", "give at least one address, e.g. [\"0.0.0.0:8443\"]"));
    }
    Ok(out)
}

/// `proxy_protocol` and `trusted_proxies`: switching it on without a trusted source is refused,
/// since then every header would be a failed handshake.
fn proxy_protocol(ctx: &Ctx<'_>, server: &RawServer) -> Result<ProxyProtocol, ConfigError> {
    let enabled = flag(&server.proxy_protocol);
    let mut trusted = Vec::new();
    if let Some(v) = &server.trusted_proxies {
        for item in v.get_ref() {
            let c = Cidr::parse(item).map_err(|m| {
                ctx.at(v, format!("`trusted_proxies`: {m}"), "list addresses or networks of your front, e.g. [\"127.0.0.1/32\", \"10.0.0.0/8\"]")
            })?;
            trusted.push(c);
        }
    }
    if enabled && trusted.is_empty() {
        let at = match (&server.trusted_proxies, &server.proxy_protocol) {
            (Some(v), _) => v.span().start,
            (None, Some(p)) => p.span().start,
            (None, None) => 0,
        };
        return Err(ctx.err(
            at,
            "`proxy_protocol = true` but `trusted_proxies` is empty",
            "list the address of the front that sends the header, e.g. trusted_proxies = [\"127.0.0.1/32\"]",
        ));
    }
    Ok(ProxyProtocol { enabled, trusted })
}
