//! The operator commands (issue 3): users and secrets, server settings, cover domains, the
//! promoted channel, and `reload`. Every change goes through [`crate::store`] (lock, validate,
//! atomic write); the running proxy picks it up within a second (file watch) or at once
//! (`reload` sends SIGHUP).
//!
//! A "secret" is a user without a chosen name: `add-secret` creates a user named
//! `secret-XXXXXX`, and the secret commands find users by any client form of their secret.

pub(crate) mod domains;
pub(crate) mod output;
mod panel_password;
mod reload;
mod settings;
pub(crate) mod users;

use std::path::Path;
use std::process::ExitCode;

use clap::Subcommand;

#[derive(Subcommand)]
pub enum Ops {
    /// Create a secret (a user with a generated name) and print its link and QR code.
    AddSecret(users::AddSecretArgs),
    /// List secrets (masked), with kind, dates and state.
    ListSecrets(users::ListArgs),
    /// Remove a secret, given in any client form (plain, dd…, ee…), masked as listed, or a unique prefix.
    RemoveSecret(users::SecretArg),
    /// Replace a secret with a new one and print the new link.
    RegenerateSecret(users::RegenerateSecretArgs),
    /// Show the server settings and every link, or one secret's link and QR code.
    ShowConfig(users::ShowConfigArgs),
    /// Add a named user and print the link and QR code.
    AddUser(users::AddUserArgs),
    /// Remove a user; their open connections close.
    RemoveUser(users::NameArg),
    /// List users (secrets masked), with kind, dates, state and limits.
    ListUsers(users::ListArgs),
    /// Show a user's links and QR code (optionally as PNG/SVG files).
    ShowUserConfig(users::ShowUserArgs),
    /// Let a disabled user connect again.
    EnableUser(users::NameArg),
    /// Refuse a user's new connections and close their open ones (the user is kept).
    DisableUser(users::NameArg),
    /// Give a user a new secret; with --grace the old one keeps working that long.
    RegenerateUserSecret(users::RegenerateUserArgs),
    /// Set or clear a user's limits (connections, IPs, data quota, expiry).
    SetUserLimits(users::SetLimitsArgs),
    /// Move the proxy to another port; the running proxy rebinds, open connections stay.
    SetPort(settings::PortArgs),
    /// Set the number of worker threads (applies at the next start).
    SetWorkers(settings::WorkersArgs),
    /// Store the promoted-channel tag from @MTProxybot (32 hex characters).
    SetPromotedChannel(settings::TagArgs),
    /// Show the promoted-channel tag.
    ShowPromotedChannel(output::JsonArg),
    /// Remove the promoted-channel tag.
    RemovePromotedChannel,
    /// List the cover domains offered for fake-TLS users.
    ListFakeTlsDomains(output::JsonArg),
    /// Add a cover domain (checked over the network when available; never blocks).
    AddFakeTlsDomain(domains::AddDomainArgs),
    /// Remove a cover domain from the list.
    RemoveFakeTlsDomain(domains::DomainArg),
    /// Set the web panel's login password (read from the terminal or stdin, never argv);
    /// --off turns the panel off.
    SetPanelPassword(panel_password::PanelPasswordArgs),
    /// Make the running proxy re-read the configuration now (SIGHUP; to the `vless_mtproxy`
    /// container through podman/docker when the proxy runs there).
    Reload,
    /// Fleet: copy the users (and promoted-channel tag) of a TOML file into the shared store.
    ImportUsers(crate::fleet::cli::ImportArgs),
    /// Fleet: print the store's users as TOML sections for a config file (the way back).
    ExportUsers(crate::fleet::cli::ExportArgs),
    /// Fleet: every node sharing the store: address, version, last seen, connections, bytes.
    ListNodes(crate::fleet::cli::NodesArgs),
    /// Fleet: forget a node that is gone (its usage still counts).
    RemoveNode(crate::fleet::cli::NodeArg),
}

pub fn run(config: &Path, op: Ops) -> anyhow::Result<ExitCode> {
    match op {
        Ops::AddSecret(a) => users::add_secret(config, a),
        Ops::ListSecrets(a) => users::list(config, a, true),
        Ops::RemoveSecret(a) => users::remove_secret(config, a),
        Ops::RegenerateSecret(a) => users::regenerate_secret(config, a),
        Ops::ShowConfig(a) => users::show_config(config, a),
        Ops::AddUser(a) => users::add_user(config, a),
        Ops::RemoveUser(a) => users::remove_user(config, a),
        Ops::ListUsers(a) => users::list(config, a, false),
        Ops::ShowUserConfig(a) => users::show_user(config, a),
        Ops::EnableUser(a) => users::set_enabled(config, a, true),
        Ops::DisableUser(a) => users::set_enabled(config, a, false),
        Ops::RegenerateUserSecret(a) => users::regenerate_user(config, a),
        Ops::SetUserLimits(a) => users::set_limits(config, a),
        Ops::SetPort(a) => settings::set_port(config, a),
        Ops::SetWorkers(a) => settings::set_workers(config, a),
        Ops::SetPromotedChannel(a) => settings::set_promoted(config, a),
        Ops::ShowPromotedChannel(a) => settings::show_promoted(config, a),
        Ops::RemovePromotedChannel => settings::remove_promoted(config),
        Ops::ListFakeTlsDomains(a) => domains::list(config, a),
        Ops::AddFakeTlsDomain(a) => domains::add(config, a),
        Ops::RemoveFakeTlsDomain(a) => domains::remove(config, a),
        Ops::SetPanelPassword(a) => panel_password::set_panel_password(config, a),
        Ops::Reload => reload::reload(config),
        Ops::ImportUsers(a) => crate::fleet::cli::import(config, a),
        Ops::ExportUsers(a) => crate::fleet::cli::export(config, a),
        Ops::ListNodes(a) => crate::fleet::cli::list_nodes(config, a),
        Ops::RemoveNode(a) => crate::fleet::cli::remove_node(config, a),
    }
    .map(|()| ExitCode::SUCCESS)
}
