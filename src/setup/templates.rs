//! The deploy files (container image recipe, systemd unit, compose service, logrotate
//! snippet), rendered from the templates in `deploy/` that are compiled into the binary, so a
//! single static file is all an install needs.
//!
//! Placeholders are `{{NAME}}`; rendering fails when one is left without a value, so a
//! template and its caller cannot drift apart silently.

use std::collections::BTreeMap;
use std::path::Path;

use crate::setup::options::{Answers, Paths};

pub const CONTAINERFILE: &str = include_str!("../../deploy/Containerfile");
pub const UNIT: &str = include_str!("../../deploy/vless-mtproxy.service");
pub const COMPOSE_SERVICE: &str = include_str!("../../deploy/compose-service.yml");
pub const LOGROTATE: &str = include_str!("../../deploy/logrotate.conf");

/// The container's name, and the compose service's.
pub const SERVICE: &str = "vless_mtproxy";
pub const IMAGE: &str = "vless_mtproxy:latest";
/// The unprivileged user the container runs as ("nobody").
pub const CONTAINER_UID: u32 = 65534;
pub const CONTAINER_GID: u32 = 65534;
/// Paths inside the container.
pub const IN_CONFIG_DIR: &str = "/etc/vless-mtproxy";
pub const IN_LOG_FILE: &str = "/var/log/vless-mtproxy/proxy.log";
pub const IN_DATA_DIR: &str = "/var/lib/vless-mtproxy";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TemplateError {
    #[error("template {template}: placeholder {{{{{name}}}}} has no value (a bug in setup)")]
    Unfilled { template: &'static str, name: String },
}

pub fn render(template_name: &'static str, text: &str, values: &BTreeMap<&str, String>) -> Result<String, TemplateError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or_else(|| TemplateError::Unfilled { template: template_name, name: after.chars().take(20).collect() })?;
        let name = &after[..end];
        let value = values.get(name).ok_or_else(|| TemplateError::Unfilled { template: template_name, name: name.to_string() })?;
        out.push_str(value);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

fn p(path: &Path) -> String {
    path.display().to_string()
}

/// The `serve` arguments every runtime adds after `serve`: the log file and any options a
/// test or an admin passed through (such as `--dc-override`).
pub fn serve_args(log_file: &str, extra: &[String]) -> Vec<String> {
    let mut v = vec!["serve".to_string(), "--log-file".to_string(), log_file.to_string()];
    v.extend(extra.iter().cloned());
    v
}

pub fn containerfile() -> Result<String, TemplateError> {
    let values = BTreeMap::from([("UID", CONTAINER_UID.to_string()), ("GID", CONTAINER_GID.to_string())]);
    render("Containerfile", CONTAINERFILE, &values)
}

/// Quote one argument for a systemd `ExecStart=` line.
fn systemd_quote(arg: &str) -> String {
    if !arg.is_empty() && arg.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./:=,@*[]".contains(&b)) {
        arg.to_string()
    } else {
        format!("\"{}\"", arg.replace('\\', "\\\\").replace('"', "\\\"").replace('%', "%%").replace('$', "$$"))
    }
}

/// The systemd unit. Of the answers only the port matters, so `--render` takes a [`Draft`](crate::setup::options::Draft) too.
pub fn unit<K>(paths: &Paths, answers: &Answers<K>, extra_serve: &[String]) -> Result<String, TemplateError> {
    let mut exec = vec![p(&paths.binary()), "--config".into(), p(&paths.config_file())];
    exec.extend(serve_args(&p(&paths.log_file()), extra_serve));
    let caps = if answers.port < 1024 { "CAP_NET_BIND_SERVICE" } else { "" };
    let values = BTreeMap::from([
        ("EXEC_START", exec.iter().map(|a| systemd_quote(a)).collect::<Vec<_>>().join(" ")),
        ("CAPS", caps.to_string()),
        ("LOG_DIR", systemd_quote(&p(&paths.log_dir))),
        ("DATA_DIR", systemd_quote(&p(&paths.data_dir))),
    ]);
    render("vless-mtproxy.service", UNIT, &values)
}

/// Options of a container: host networking or published port, capabilities, serve arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSpec {
    pub publish: bool,
    pub port: u16,
    pub serve: Vec<String>,
}

impl ContainerSpec {
    /// Of the answers only the port matters (see [`unit`]).
    pub fn new<K>(answers: &Answers<K>, publish: bool, extra_serve: &[String]) -> Self {
        ContainerSpec { publish, port: answers.port, serve: serve_args(IN_LOG_FILE, extra_serve) }
    }

    pub fn needs_bind_cap(&self) -> bool {
        self.port < 1024
    }

    /// `run` arguments after the runtime's name (`docker run ...` / `podman run ...`).
    pub fn run_args(&self, paths: &Paths, label: &str) -> Vec<String> {
        let mut a: Vec<String> = ["run", "-d", "--name", SERVICE, "--restart", "unless-stopped", "--user"].iter().map(|s| s.to_string()).collect();
        a.push(format!("{CONTAINER_UID}:{CONTAINER_GID}"));
        if self.publish {
            a.extend(["-p".into(), format!("{0}:{0}/tcp", self.port)]);
        } else {
            a.extend(["--network".into(), "host".into()]);
        }
        a.extend(["--read-only".into(), "--cap-drop".into(), "ALL".into()]);
        if self.needs_bind_cap() {
            a.extend(["--cap-add".into(), "NET_BIND_SERVICE".into()]);
        }
        a.extend(["--security-opt".into(), "no-new-privileges".into()]);
        a.extend(["-v".into(), format!("{}:{IN_CONFIG_DIR}:ro", p(&paths.config_dir))]);
        a.extend(["-v".into(), format!("{}:/var/log/vless-mtproxy", p(&paths.log_dir))]);
        a.extend(["-v".into(), format!("{}:{IN_DATA_DIR}", p(&paths.data_dir))]);
        a.extend(["--label".into(), format!("vless-mtproxy.spec={label}")]);
        a.push(IMAGE.into());
        a.extend(self.serve.iter().cloned());
        a
    }

    /// The service block for a compose file (two-space indented under `services:`).
    pub fn compose_service(&self, paths: &Paths) -> Result<String, TemplateError> {
        let network = if self.publish { format!("    ports:\n      - \"{0}:{0}/tcp\"", self.port) } else { "    network_mode: host".to_string() };
        let cap_add = if self.needs_bind_cap() {
            "    cap_add: [\"NET_BIND_SERVICE\"]".to_string()
        } else {
            "    # cap_add: [\"NET_BIND_SERVICE\"]   # only for a port below 1024".to_string()
        };
        let command = format!("[{}]", self.serve.iter().map(|s| yaml_quote(s)).collect::<Vec<_>>().join(", "));
        let values = BTreeMap::from([
            ("SERVICE", SERVICE.to_string()),
            ("IMAGE", IMAGE.to_string()),
            ("NETWORK", network),
            ("UID", CONTAINER_UID.to_string()),
            ("GID", CONTAINER_GID.to_string()),
            ("CAP_ADD", cap_add),
            ("COMMAND", command),
            ("CONFIG_DIR", p(&paths.config_dir)),
            ("LOG_DIR", p(&paths.log_dir)),
            ("DATA_DIR", p(&paths.data_dir)),
        ]);
        render("compose-service.yml", COMPOSE_SERVICE, &values)
    }
}

fn yaml_quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

pub fn logrotate(paths: &Paths, owner: u32, group: u32) -> Result<String, TemplateError> {
    let values = BTreeMap::from([("LOG_DIR", p(&paths.log_dir)), ("OWNER", owner.to_string()), ("GROUP", group.to_string())]);
    render("logrotate.conf", LOGROTATE, &values)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mtproxy_proto::SecretKind;

    fn paths() -> Paths {
        Paths {
            install_dir: "/usr/local/bin".into(),
            config_dir: "/opt/vless/config/mtproxy".into(),
            log_dir: "/opt/vless/logs/mtproxy".into(),
            data_dir: "/opt/vless/data/mtproxy".into(),
            unit_dir: "/etc/systemd/system".into(),
            logrotate_dir: "/etc/logrotate.d".into(),
            vless_compose: "/opt/vless/docker-compose.yml".into(),
        }
    }

    #[test]
    fn render_refuses_unfilled_placeholders() {
        let v = BTreeMap::from([("A", "1".to_string())]);
        assert_eq!(render("t", "x{{A}}y", &v).unwrap(), "x1y");
        assert_eq!(render("t", "{{B}}", &v), Err(TemplateError::Unfilled { template: "t", name: "B".into() }));
    }

    #[test]
    fn unit_capability_only_below_1024() {
        let mut a = Answers { kind: SecretKind::Padded, ..Answers::default() };
        let high = unit(&paths(), &a, &[]).unwrap();
        assert!(high.contains("\nCapabilityBoundingSet=\n"), "{high}");
        assert!(high.contains(
            "ExecStart=/usr/local/bin/vless-mtproxy --config /opt/vless/config/mtproxy/config.toml serve --log-file /opt/vless/logs/mtproxy/proxy.log\n"
        ));
        assert!(high.contains("NoNewPrivileges=yes") && high.contains("ProtectSystem=strict") && high.contains("Restart=always"));
        a.port = 443;
        let low = unit(&paths(), &a, &["--dc-override".into(), "*=127.0.0.1:5000".into()]).unwrap();
        assert!(low.contains("\nCapabilityBoundingSet=CAP_NET_BIND_SERVICE\n"));
        assert!(low.contains("--dc-override *=127.0.0.1:5000"));
        assert!(systemd_quote("a b$").starts_with('"'));
    }

    #[test]
    fn container_run_and_compose() {
        let a = Answers::default();
        let host = ContainerSpec::new(&a, false, &[]);
        let args = host.run_args(&paths(), "abc");
        assert!(args.windows(2).any(|w| w == ["--network", "host"]));
        assert!(!args.contains(&"--cap-add".to_string()));
        assert!(args.contains(&"/opt/vless/config/mtproxy:/etc/vless-mtproxy:ro".to_string()));
        let published = ContainerSpec::new(&Answers { port: 443, ..a }, true, &[]);
        let args = published.run_args(&paths(), "abc");
        assert!(args.windows(2).any(|w| w == ["-p", "443:443/tcp"]));
        assert!(args.windows(2).any(|w| w == ["--cap-add", "NET_BIND_SERVICE"]));
        let svc = host.compose_service(&paths()).unwrap();
        assert!(svc.contains("  vless_mtproxy:\n") && svc.contains("network_mode: host"));
        assert!(containerfile().unwrap().contains("USER 65534:65534"));
        assert!(logrotate(&paths(), 0, 0).unwrap().contains("/opt/vless/logs/mtproxy/*.log {"));
    }
}
