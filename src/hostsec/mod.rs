//! Host security commands: fail2ban filter and jail, the UFW rule for the proxy port, and the
//! HAProxy lines that put the proxy behind a shared port 443 (docs/host-security.md).
//!
//! Each command only writes files or runs the host's own tool (`ufw`, `fail2ban-regex`,
//! `fail2ban-client`); `setup` calls the same functions. A missing or inactive tool is reported
//! and skipped, never an error: the proxy works without them.

pub mod fail2ban;
pub mod haproxy;
pub mod ufw;

use std::path::Path;
use std::process::ExitCode;

/// The subcommands this module adds to the binary (flattened into `main`'s enum).
#[derive(clap::Subcommand)]
pub enum HostCommand {
    /// Print or write the fail2ban filter and jail for the proxy's failed-handshake log line.
    #[command(name = "fail2ban-config")]
    Fail2banConfig(fail2ban::Fail2banArgs),
    /// Open (`allow`, `limit`) or close (`remove`) the proxy port in UFW, with one tagged rule.
    Ufw(ufw::UfwArgs),
    /// Print HAProxy lines that route the fake-TLS domain's SNI on 443 to the proxy (PROXY v2).
    #[command(name = "haproxy-snippet")]
    HaproxySnippet(haproxy::HaproxyArgs),
}

pub fn run(config: &Path, cmd: HostCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        HostCommand::Fail2banConfig(a) => fail2ban::run(config, a),
        HostCommand::Ufw(a) => ufw::run(config, a),
        HostCommand::HaproxySnippet(a) => haproxy::run(config, a),
    }
}

/// The first listen port of the configuration, for commands whose `--port` was not given.
fn config_port(config: &Path) -> anyhow::Result<u16> {
    let cfg = mtproxy_core::config::load(config)
        .map_err(|e| anyhow::anyhow!("no --port given and the configuration cannot be read: {e}\n  fix: pass --port PORT"))?;
    Ok(cfg.listen.first().map(|a| a.port()).unwrap_or(8443))
}
