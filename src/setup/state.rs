//! The record of what setup put on this host (`install-state.toml` in the data folder), so
//! uninstall removes exactly that: the container or the unit, the image, the compose entry,
//! the firewall rule and the fail2ban files setup added, nothing else. It holds no secret and
//! no time stamp, so running setup again with the same answers leaves it byte for byte alone.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{path}: cannot read: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: not an install record written by setup: {message}")]
    Parse { path: PathBuf, message: String },
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstallState {
    /// docker, podman or systemd.
    pub runtime: String,
    pub port: u16,
    /// Container port published (`-p`) instead of host networking.
    #[serde(default)]
    pub publish: bool,
    /// Extra `serve` arguments (such as `--dc-override`), kept for the next run.
    #[serde(default)]
    pub serve_args: Vec<String>,
    pub config_dir: PathBuf,
    pub log_dir: PathBuf,
    pub data_dir: PathBuf,
    /// Installed binary and its multi-call links.
    pub binaries: Vec<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit_file: Option<PathBuf>,
    /// A compose file of our own (removed by uninstall) ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub own_compose: Option<PathBuf>,
    /// ... or the VLESS stack's, which only loses our service block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vless_compose: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logrotate_file: Option<PathBuf>,
    /// The port whose UFW rule setup added (uninstall runs `ufw remove --port`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ufw_port: Option<u16>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ufw_args: Vec<String>,
    /// Where setup wrote the fail2ban filter and jail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail2ban_dir: Option<PathBuf>,
    /// Own-domain mode: what a second run keeps and uninstall takes back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub own_domain: Option<OwnDomainState>,
}

/// The own-domain answers and the nginx files setup wrote for them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OwnDomainState {
    pub domain: String,
    pub cert: PathBuf,
    pub key: PathBuf,
    #[serde(default)]
    pub behind_haproxy: bool,
    /// `nginx`, or the HOST:PORT of the operator's own web server.
    pub cover: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cover_port: Option<u16>,
    /// The folder or http:// address the nginx site serves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site_content: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nginx_conf: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nginx_site: Option<PathBuf>,
    /// The operator's file setup replaced (uninstall puts it back).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nginx_site_backup: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site_root_created: Option<PathBuf>,
    #[serde(default)]
    pub nginx_started: bool,
    /// The HAProxy lines setup wrote for the operator to add (behind HAProxy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub haproxy_snippet: Option<PathBuf>,
}

impl InstallState {
    pub fn to_text(&self) -> String {
        let body = toml::to_string(self).unwrap_or_default();
        format!("# Written by `vless-mtproxy setup`; read by `vless-mtproxy uninstall`. Holds no secret.\n{body}")
    }

    pub fn load(path: &Path) -> Result<Option<Self>, StateError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(StateError::Read { path: path.to_path_buf(), source }),
        };
        toml::from_str(&text).map(Some).map_err(|e| StateError::Parse { path: path.to_path_buf(), message: e.message().to_string() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let s = InstallState {
            runtime: "podman".into(),
            port: 8443,
            config_dir: "/c".into(),
            log_dir: "/l".into(),
            data_dir: "/d".into(),
            binaries: vec!["/usr/local/bin/vless-mtproxy".into()],
            container: Some("vless_mtproxy".into()),
            image: Some("vless_mtproxy:latest".into()),
            own_compose: Some("/d/docker-compose.yml".into()),
            ..Default::default()
        };
        let dir = std::env::temp_dir().join(format!("vmtp-state-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("s.toml");
        std::fs::write(&f, s.to_text()).unwrap();
        assert_eq!(InstallState::load(&f).unwrap(), Some(s));
        assert_eq!(InstallState::load(&dir.join("none")).unwrap(), None);
        std::fs::write(&f, "runtime = 3").unwrap();
        assert!(InstallState::load(&f).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
