//! What setup tells the admin as it goes: the numbered progress lines, and at the end where the
//! proxy runs, the first user's link and what to do next.

use super::config_step;
use super::options::{Paths, Runtime};
use super::state::InstallState;
use super::templates::SERVICE;

/// Numbered progress lines.
pub(super) struct Steps {
    total: usize,
    n: usize,
}

impl Steps {
    pub(super) fn new(total: usize) -> Steps {
        Steps { total, n: 0 }
    }
    pub(super) fn next(&mut self, title: &str) {
        self.n += 1;
        println!("[{}/{}] {title}", self.n, self.total);
    }
    pub(super) fn detail(&self, text: &str) {
        println!("      {text}");
    }
}

/// The closing words: where the proxy runs, the first user's links and QR code, the files, and
/// the commands for what comes next.
pub(super) fn print_finish(paths: &Paths, rt: Runtime, state: &InstallState) {
    let cfg_file = paths.config_file();
    println!(
        "\nThe proxy is running ({}).",
        if rt.is_container() { format!("container {SERVICE}, {}", rt.name()) } else { "systemd unit vless-mtproxy".into() }
    );
    match mtproxy_core::config::load(&cfg_file) {
        Ok(cfg) => {
            if let Some(u) = config_step::first_user(&cfg) {
                let (host, warning) = crate::share::public_host(&cfg);
                if let Some(w) = warning {
                    println!("warning: {w}");
                }
                let (tg, tme) = crate::share::links(&cfg, u, &host);
                println!("\nUser {} ({}):\n  {tg}\n  {tme}\n{}", u.name, u.kind.name(), crate::share::qr_terminal(&tme));
            }
        }
        Err(e) => println!("warning: cannot read the configuration back: {e}"),
    }
    let c = cfg_file.display();
    println!("Files:\n  configuration  {c}\n  log            {}\n  data           {}", paths.log_file().display(), paths.data_dir.display());
    if let Some(u) = &state.unit_file {
        println!("  unit           {}", u.display());
    }
    for f in state.own_compose.iter().chain(state.vless_compose.iter()) {
        println!("  compose        {}", f.display());
    }
    let b = paths.binary();
    let b = b.display();
    println!("\nAdd a user:     {b} --config {c} add-user NAME [--fake-tls DOMAIN]");
    println!("Show its link:  {b} --config {c} show-user-config NAME");
    println!("List users:     {b} --config {c} list-users");
    println!("The proxy picks up every change within a second; no restart is needed.");
    println!("Remove:         {} --data-dir {}", paths.install_dir.join("vless-mtproxy-uninstall").display(), paths.data_dir.display());
}
