//! The configuration file: written fresh on a first install (one user with a new random
//! secret), and on later runs left as it is except for what the admin asked to change.
//!
//! Changes to an existing file go through the operator CLI's own commands (`set-port`,
//! `set-workers`, `set-promoted-channel`), run as separate processes of this same binary, so the
//! file is edited by one store with its lock, atomic write and backup, and setup never keeps a
//! second writer of the format.

use std::path::Path;
use std::process::Command;

use mtproxy_core::config::{self, Config};
use mtproxy_proto::{Secret, SecretKind};

use crate::setup::files::{self, FileError};
use crate::setup::options::Answers;

#[derive(Debug, thiserror::Error)]
pub enum ConfigStepError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error("{0}\n  fix the file (or move it away to start afresh), then run setup again")]
    Existing(config::ConfigError),
    #[error("the configuration setup generated does not validate (a bug in setup): {0}")]
    Generated(config::ConfigError),
    #[error("`vless-mtproxy {command}` failed: {detail}")]
    Cli { command: String, detail: String },
}

/// What the step did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ConfigOutcome {
    pub created: bool,
    /// Operator commands run to bring an existing file to the answers.
    pub commands: Vec<String>,
    /// Answers an existing file does not follow and setup does not change (told to the admin).
    pub notes: Vec<String>,
}

/// The text of a fresh configuration. `state_dir` is the writable folder for the pid and usage
/// files as the proxy sees it (the configuration folder may be mounted read-only).
pub fn fresh_text(answers: &Answers, user: &str, secret: &Secret, state_dir: &str) -> String {
    let mut t = String::from(
        "# vless-mtproxy configuration, written by `vless-mtproxy setup`. Every field is documented in\n\
         # config.example.toml. This file holds secrets: keep it mode 0600. The proxy reloads it within\n\
         # about a second of a change; change it with the vless-mtproxy commands (add-user, set-port, ...).\n\n[server]\n",
    );
    let behind_haproxy = answers.own.as_ref().is_some_and(|o| o.behind_haproxy);
    if behind_haproxy {
        // Only HAProxy reaches the proxy; it says who the client is in a PROXY v2 header.
        t += &format!("listen = [\"127.0.0.1:{}\"]\npublic_port = 443\nproxy_protocol = true\ntrusted_proxies = [\"127.0.0.1/32\"]\n", answers.port);
    } else {
        t += &format!("listen = [\"0.0.0.0:{0}\", \"[::]:{0}\"]\n", answers.port);
    }
    match &answers.public_host {
        Some(h) => t += &format!("public_host = \"{h}\"\n"),
        None => t += "# public_host = \"proxy.example.org\"   # host or IP put in links; default: a local address\n",
    }
    t += &format!("workers = {}\n", answers.workers);
    t += &format!("pid_file = \"{state_dir}/proxy.pid\"\n\n[limits]\nusage_file = \"{state_dir}/usage\"\n");
    t += &format!("\n# The web panel (docs/panel.md) is off until `vless-mtproxy set-panel-password`.\n[panel]\nhistory_file = \"{state_dir}/history\"\n");
    if matches!(answers.kind, SecretKind::FakeTls { .. }) {
        // The configuration folder may be mounted read-only (the container): the learned cover
        // flights go to the writable state folder.
        t += &format!("\n[fake_tls]\ncover_cache = \"{state_dir}/covers\"\n");
    }
    if let Some(own) = &answers.own {
        t += &format!(
            "\n# Own domain: every connection that is not a Telegram client goes, byte for byte, to this\n# host's own site for {} (setup's nginx site, or the web server you named).\n[fronting]\nmask_host = \"{}\"\n",
            own.domain,
            own.mask_host()
        );
    }
    if let Some(tag) = &answers.ad_tag {
        t += &format!("\n[promoted_channel]\nad_tag = \"{tag}\"\n");
    }
    t += &format!("\n[users.{user}]\nsecret = \"{}\"\nkind = \"{}\"\n", secret.to_hex(), answers.kind.name());
    if let SecretKind::FakeTls { domain } = &answers.kind {
        t += &format!("domain = \"{domain}\"\n");
    }
    t += "enabled = true\n";
    t
}

/// The answers an existing configuration stands for (the defaults of a second run).
pub fn answers_of(cfg: &Config) -> Answers {
    let first = cfg.users.iter().find(|u| u.enabled).or(cfg.users.first());
    Answers {
        port: cfg.listen.first().map(|a| a.port()).unwrap_or(crate::setup::options::DEFAULT_PORT),
        workers: cfg.workers,
        kind: first.map(|u| u.kind.clone()).unwrap_or(SecretKind::Padded),
        ad_tag: cfg.ad_tag.map(hex::encode),
        public_host: cfg.public_host.clone(),
        own: None,
    }
}

pub fn load_existing(path: &Path) -> Result<Option<Config>, ConfigStepError> {
    if !path.exists() {
        return Ok(None);
    }
    config::load(path).map(Some).map_err(ConfigStepError::Existing)
}

/// Run one operator command of this binary against `config_file`.
pub fn run_cli(binary: &Path, config_file: &Path, args: &[String]) -> Result<(), ConfigStepError> {
    run_cli_with_input(binary, config_file, args, None)
}

/// [`run_cli`] with `input` on the command's stdin (a password for `set-panel-password`).
pub fn run_cli_with_input(binary: &Path, config_file: &Path, args: &[String], input: Option<&[u8]>) -> Result<(), ConfigStepError> {
    use std::io::Write;
    use std::os::unix::process::CommandExt;
    use std::process::Stdio;
    let shown = args.join(" ");
    let cannot = |e: std::io::Error| ConfigStepError::Cli { command: shown.clone(), detail: format!("cannot run {}: {e}", binary.display()) };
    let mut child = Command::new(binary)
        .arg0("vless-mtproxy")
        .arg("--config")
        .arg(config_file)
        .args(args)
        .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(cannot)?;
    if let (Some(bytes), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin.write_all(bytes).map_err(cannot)?;
    }
    let out = child.wait_with_output().map_err(cannot)?;
    if out.status.success() {
        Ok(())
    } else {
        let detail = String::from_utf8_lossy(&out.stderr).trim().to_string();
        Err(ConfigStepError::Cli { command: shown, detail: if detail.is_empty() { format!("exit status {}", out.status) } else { detail } })
    }
}

pub fn apply(
    path: &Path,
    answers: &Answers,
    first_user: &str,
    owner: Option<(u32, u32)>,
    binary: &Path,
    state_dir: &str,
) -> Result<ConfigOutcome, ConfigStepError> {
    let mut outcome = ConfigOutcome::default();
    let Some(existing) = load_existing(path)? else {
        let text = fresh_text(answers, first_user, &config::generate_secret(), state_dir);
        config::parse_str(&text, path).map_err(ConfigStepError::Generated)?;
        files::write_if_changed(path, text.as_bytes(), 0o600, owner)?;
        outcome.created = true;
        return Ok(outcome);
    };
    let have = answers_of(&existing);
    let mut commands: Vec<Vec<String>> = Vec::new();
    if have.port != answers.port || existing.listen.iter().any(|a| a.port() != answers.port) {
        commands.push(vec!["set-port".into(), answers.port.to_string()]);
    }
    if have.workers != answers.workers {
        commands.push(vec!["set-workers".into(), answers.workers.to_string()]);
    }
    if answers.ad_tag.is_some() && have.ad_tag != answers.ad_tag {
        commands.push(vec!["set-promoted-channel".into(), answers.ad_tag.clone().unwrap_or_default()]);
    }
    for c in commands {
        run_cli(binary, path, &c)?;
        outcome.commands.push(c.join(" "));
    }
    if answers.public_host.is_some() && have.public_host != answers.public_host {
        outcome.notes.push(format!(
            "server.public_host in {} is {:?}; setup does not change it: edit that line to {:?} (the proxy reloads it)",
            path.display(),
            have.public_host.as_deref().unwrap_or("(unset)"),
            answers.public_host.as_deref().unwrap_or_default()
        ));
    }
    if let Some(own) = &answers.own {
        let mask = existing.fronting.mask_host.as_ref().map(|m| m.to_string());
        if mask.as_deref() != Some(own.mask_host().as_str()) || !existing.fronting.enabled {
            outcome.notes.push(format!(
                "own domain: [fronting] mask_host in {} is {:?}; setup does not change it: set it to \"{}\" (with enabled = true) so probers reach your site (the proxy reloads it)",
                path.display(),
                mask.as_deref().unwrap_or("(unset)"),
                own.mask_host()
            ));
        }
    }
    if have.kind != answers.kind {
        outcome.notes.push(format!(
            "existing users keep their secrets and kinds (the first is {}); add a user of another kind with `vless-mtproxy --config {} add-user NAME [--fake-tls DOMAIN | --with-padding]`",
            have.kind.name(),
            path.display()
        ));
    }
    // Keep mode and owner right (the container user must read the file).
    let content = std::fs::read(path).map_err(|source| FileError::Io { path: path.to_path_buf(), action: "reading", source })?;
    files::write_if_changed(path, &content, 0o600, owner)?;
    Ok(outcome)
}

/// Where the per-install links are shown from: the first enabled user.
pub fn first_user(cfg: &Config) -> Option<&config::User> {
    cfg.users.iter().find(|u| u.enabled)
}

/// Add the `[upstream]` block for Xray's SOCKS inbound to the file, unless it has upstream
/// servers already (then it is left alone and the admin is told). There is no operator command
/// for `[upstream]`, so this appends text; the whole result is validated before it is written.
pub fn route_via_xray(path: &Path, source: &Path, inbound: &crate::setup::xray::SocksInbound, owner: Option<(u32, u32)>) -> Result<String, ConfigStepError> {
    let text = std::fs::read_to_string(path).map_err(|source| FileError::Io { path: path.to_path_buf(), action: "reading", source })?;
    let cfg = config::parse_str(&text, path).map_err(ConfigStepError::Existing)?;
    if !cfg.upstream.servers.is_empty() || text.lines().any(|l| l.trim() == "[upstream]") {
        let names: Vec<&str> = cfg.upstream.servers.iter().map(|s| s.name.as_str()).collect();
        return Ok(format!("note: {} has an [upstream] section already ({}); setup leaves it as it is", path.display(), names.join(", ")));
    }
    let next = format!("{}{}", text, crate::setup::xray::upstream_toml(inbound, source));
    config::parse_str(&next, path).map_err(ConfigStepError::Generated)?;
    files::write_if_changed(path, next.as_bytes(), 0o600, owner)?;
    Ok(format!("Telegram is reached through Xray's SOCKS inbound {} ([upstream] added)", inbound.address))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_via_xray_appends_once_and_keeps_an_existing_section() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        let s = Secret::from_bytes([7; 16]);
        std::fs::write(&path, fresh_text(&Answers::default(), "default", &s, "/var/lib/x")).unwrap();
        let inbound =
            crate::setup::xray::SocksInbound { address: "127.0.0.1:10808".into(), tag: Some("socks-in".into()), credentials: Some(("tg".into(), "pw".into())) };
        let xray = Path::new("/opt/vless/config/xray_config.json");
        let said = route_via_xray(&path, xray, &inbound, None).unwrap();
        assert!(said.contains("[upstream] added"), "{said}");
        let cfg = config::load(&path).unwrap();
        assert_eq!(cfg.upstream.servers.len(), 1);
        assert_eq!(cfg.users.len(), 1, "the users are kept");
        let once = std::fs::read_to_string(&path).unwrap();
        let again = route_via_xray(&path, xray, &inbound, None).unwrap();
        assert!(again.contains("leaves it as it is"), "{again}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), once, "a second run changes nothing");
    }

    #[test]
    fn fresh_text_validates_for_every_kind() {
        let s = Secret::from_bytes([7; 16]);
        for kind in [SecretKind::Classic, SecretKind::Padded, SecretKind::FakeTls { domain: "www.example.com".into() }] {
            let a = Answers {
                port: 9443,
                workers: 3,
                kind,
                ad_tag: Some("0123456789abcdef0123456789abcdef".into()),
                public_host: Some("203.0.113.7".into()),
                own: None,
            };
            let text = fresh_text(&a, "default", &s, "/var/lib/vless-mtproxy");
            assert!(text.contains("pid_file = \"/var/lib/vless-mtproxy/proxy.pid\"") && text.contains("usage_file = \"/var/lib/vless-mtproxy/usage\""));
            let cfg = config::parse_str(&text, Path::new("t")).unwrap();
            assert_eq!(answers_of(&cfg), a, "{text}");
        }
        let cfg = config::parse_str(&fresh_text(&Answers::default(), "default", &s, "/d"), Path::new("t")).unwrap();
        assert_eq!(cfg.panel.history_file.as_deref(), Some(Path::new("/d/history")), "the history goes to the writable state folder");
        assert!(cfg.panel.password_hash.is_none(), "the panel is off after setup unless asked");
        assert_eq!(answers_of(&cfg), Answers::default());
    }

    #[test]
    fn own_domain_config_fronts_to_the_local_site() {
        use crate::setup::owndomain::{Content, Cover, OwnDomain};
        let s = Secret::from_bytes([7; 16]);
        let mut own = OwnDomain {
            domain: "cover.example.org".into(),
            cert: "/c".into(),
            key: "/k".into(),
            cover: Cover::Nginx { port: 10443, content: Content::Root("/var/www/x".into()) },
            behind_haproxy: false,
            replace_site: false,
        };
        let a = Answers {
            port: 443,
            kind: SecretKind::FakeTls { domain: own.domain.clone() },
            public_host: Some(own.domain.clone()),
            own: Some(Box::new(own.clone())),
            ..Answers::default()
        };
        let cfg = config::parse_str(&fresh_text(&a, "default", &s, "/d"), Path::new("t")).unwrap();
        assert_eq!(cfg.fronting.mask_host.as_ref().map(|m| m.to_string()).as_deref(), Some("127.0.0.1:10443"));
        assert!(cfg.fronting.enabled && cfg.public_host.as_deref() == Some("cover.example.org"));
        assert_eq!(cfg.listen.iter().map(|l| l.port()).collect::<Vec<_>>(), [443, 443]);
        assert_eq!(cfg.fake_tls_domains(), ["cover.example.org"]);
        assert_eq!(cfg.cover_cache_path(Path::new("/etc/x.toml")), Path::new("/d/covers"));
        own.behind_haproxy = true;
        let b = Answers { port: 8443, own: Some(Box::new(own)), ..a };
        let cfg = config::parse_str(&fresh_text(&b, "default", &s, "/d"), Path::new("t")).unwrap();
        assert_eq!(cfg.listen, ["127.0.0.1:8443".parse().unwrap()]);
        assert_eq!(cfg.link_port(), 443);
        assert!(cfg.proxy_protocol.trusts("127.0.0.1".parse().unwrap()));
    }
}
