//! `vless-mtproxy`: the proxy (`serve`) and the operator commands, in one binary.
//!
//! This file only parses arguments, dispatches, and maps errors to exit codes; each group of
//! commands lives in its own module and contributes its subcommands through `flatten`.

mod cli;
mod fleet;
mod health;
mod hostsec;
mod inspect;
mod logfile;
mod panel;
mod qr;
mod serve;
mod setup;
mod share;
mod store;
mod uninstall;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Where the configuration is when neither `--config` nor `VLESS_MTPROXY_CONFIG` says.
pub const DEFAULT_CONFIG: &str = "vless-mtproxy.toml";

#[derive(Parser)]
#[command(name = "vless-mtproxy", version, about = "Telegram MTProto proxy (classic, dd, fake-TLS) with an operator CLI")]
pub struct Cli {
    /// Configuration file (TOML).
    #[arg(long, short = 'c', global = true, env = "VLESS_MTPROXY_CONFIG", default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy. Creates the configuration (one user, a fresh secret) when it does not exist.
    Serve(serve::ServeArgs),
    /// Install the proxy on this host: wizard, or --non-interactive with flags.
    Setup(Box<setup::SetupArgs>),
    /// Remove what setup installed (the configuration is kept unless --purge).
    Uninstall(uninstall::UninstallArgs),
    #[command(flatten)]
    Ops(cli::Ops),
    #[command(flatten)]
    Monitor(inspect::MonitorCommand),
    /// Exit 0 when the proxy is healthy: GET /health on the statistics listener, else a TCP
    /// connect to the listen port (the container health check).
    Health(health::HealthArgs),
    #[command(flatten)]
    Host(hostsec::HostCommand),
}

/// Multi-call: installed as `vless-mtproxy-setup` / `vless-mtproxy-uninstall`, the binary runs
/// that command (the seed's names).
fn multicall_args() -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let name = args.first().map(|a| std::path::Path::new(a).file_name().unwrap_or_default().to_string_lossy().into_owned()).unwrap_or_default();
    match name.as_str() {
        "vless-mtproxy-setup" => args.insert(1, "setup".into()),
        "vless-mtproxy-uninstall" => args.insert(1, "uninstall".into()),
        _ => {}
    }
    args
}

fn main() -> ExitCode {
    let cli = Cli::parse_from(multicall_args());
    let result: anyhow::Result<ExitCode> = match cli.command {
        Command::Serve(args) => serve::run(&cli.config, args).map(|()| ExitCode::SUCCESS),
        Command::Setup(args) => Ok(setup::run(*args)),
        Command::Uninstall(args) => Ok(uninstall::run(args)),
        Command::Health(args) => health::run(&cli.config, args),
        Command::Host(cmd) => hostsec::run(&cli.config, cmd),
        Command::Ops(op) => cli::run(&cli.config, op),
        Command::Monitor(cmd) => inspect::run(&cli.config, cmd),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
