//! `set-panel-password`: the web panel's login (docs/panel.md). The password is read from the
//! terminal (echo off, asked twice) or from stdin when it is not a terminal (`setup` and
//! scripts pipe it), never from the command line where `ps` and shell history would keep it.
//! Only its argon2 hash is written, to `[panel] password_hash`, through the store.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

use anyhow::{anyhow, bail};
use toml_edit::{value, Item, Table};

use crate::panel::auth;
use crate::store::Store;

#[derive(clap::Args)]
pub struct PanelPasswordArgs {
    /// Turn the panel off instead (remove the password hash).
    #[arg(long)]
    pub off: bool,
}

fn read_line_quiet(prompt: &str) -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    let tty = stdin.is_terminal();
    let saved = if tty {
        eprint!("{prompt}");
        let _ = std::io::stderr().flush();
        let t = rustix::termios::tcgetattr(&stdin).ok();
        if let Some(t) = &t {
            let mut quiet = t.clone();
            quiet.local_modes.remove(rustix::termios::LocalModes::ECHO);
            let _ = rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, &quiet);
        }
        t
    } else {
        None
    };
    let mut line = String::new();
    let r = stdin.lock().read_line(&mut line);
    if let Some(t) = saved {
        let _ = rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, &t);
        eprintln!();
    }
    r.map_err(|e| anyhow!("cannot read the password: {e}"))?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

/// Write (or with `None` remove) `[panel] password_hash` through the store.
pub(crate) fn store_hash(config: &Path, hash: Option<&str>) -> anyhow::Result<()> {
    let store = Store::lock(config)?;
    let (mut doc, _) = store.load(true)?;
    let panel = doc.entry("panel").or_insert_with(|| Item::Table(Table::new())).as_table_mut().ok_or_else(|| anyhow!("`panel` in the file is not a table"))?;
    match hash {
        Some(h) => panel["password_hash"] = value(h),
        None => {
            panel.remove("password_hash");
        }
    }
    store.commit(&doc)?;
    Ok(())
}

pub fn set_panel_password(config: &Path, a: PanelPasswordArgs) -> anyhow::Result<()> {
    if a.off {
        store_hash(config, None)?;
        println!("The web panel is off (no password); the running proxy stops serving it within a second.");
        return Ok(());
    }
    let password = read_line_quiet("Panel password (10+ characters): ")?;
    if std::io::stdin().is_terminal() && read_line_quiet("Again: ")? != password {
        bail!("the two passwords differ; nothing was changed");
    }
    let hash = auth::hash_password(&password)?;
    store_hash(config, Some(&hash))?;
    println!("Panel password set (open sessions end). Open http://127.0.0.1:8888/panel/ (over `ssh -L 8888:127.0.0.1:8888 HOST` from your computer).");
    Ok(())
}
