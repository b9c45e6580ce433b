//! `vless-mtproxy`: the proxy (`serve`) and the operator commands, in one binary.
//!
//! This file only parses arguments, dispatches, and maps errors to exit codes; each group of
//! commands lives in its own module and contributes its subcommands through `flatten`.

mod hostsec;
mod cli;
mod links;
mod qr;
mod monitor;
mod serve;
mod store;

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
    #[command(flatten)]
    Host(hostsec::HostCommand),
    #[command(flatten)]
    Ops(cli::Ops),
    #[command(flatten)]
    Monitor(monitor::MonitorCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result: anyhow::Result<ExitCode> = match cli.command {
        Command::Serve(args) => serve::run(&cli.config, args).map(|()| ExitCode::SUCCESS),
        Command::Host(cmd) => hostsec::run(&cli.config, cmd),
        Command::Ops(op) => cli::run(&cli.config, op),
        Command::Monitor(cmd) => monitor::run(&cli.config, cmd),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
