//! The compose entry of the proxy: a file of our own, or one service block added to the VLESS
//! stack's compose file.
//!
//! The VLESS file belongs to the admin and runs their VPN, so it is changed only through text
//! surgery that keeps every other byte (comments, order, quoting), after a dated backup, and
//! the result is validated before it stays: parsed as YAML, every other service and top-level
//! key must be exactly what it was, and our service exactly what we meant. When `docker
//! compose` is installed, `docker compose config -q` must accept the file too. A failed
//! validation puts the backup back.

use std::path::{Path, PathBuf};

use serde_yaml::Value;

use crate::setup::files::{self, FileError};
use crate::setup::templates::SERVICE;

#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error("{path}: {message}; the file was left unchanged")]
    Refused { path: PathBuf, message: String },
    #[error("{path}: the edited file failed validation ({message}); the backup {backup} was put back")]
    Invalid { path: PathBuf, message: String, backup: PathBuf },
}

/// What happened to a compose file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Unchanged,
    Written { backup: Option<PathBuf> },
}

/// Lines of our block in `text`: the header comments of the template and the service key,
/// through the last line indented deeper than the key.
fn find_block(lines: &[&str], indent: usize, header: &[&str]) -> Option<(usize, usize)> {
    let key = format!("{}{SERVICE}:", " ".repeat(indent));
    let at = lines.iter().position(|l| l.trim_end() == key)?;
    let mut start = at;
    for h in header.iter().rev() {
        if start > 0 && lines[start - 1].trim() == h.trim() {
            start -= 1;
        }
    }
    let mut end = at + 1;
    while end < lines.len() {
        let l = lines[end];
        let ind = l.len() - l.trim_start().len();
        if !l.trim().is_empty() && ind <= indent {
            break;
        }
        end += 1;
    }
    while end > at + 1 && lines[end - 1].trim().is_empty() {
        end -= 1;
    }
    Some((start, end))
}

/// The indentation the file uses for the children of `services:` (2 when it has none yet).
fn services_section(lines: &[&str]) -> Option<(usize, usize, usize)> {
    let s = lines.iter().position(|l| l.trim_end() == "services:")?;
    let mut end = s + 1;
    let mut indent = None;
    while end < lines.len() {
        let l = lines[end];
        let t = l.trim_start();
        if !t.is_empty() && !t.starts_with('#') {
            let ind = l.len() - t.len();
            if ind == 0 {
                break;
            }
            indent.get_or_insert(ind);
        }
        end += 1;
    }
    while end > s + 1 && lines[end - 1].trim().is_empty() {
        end -= 1;
    }
    Some((s, end, indent.unwrap_or(2)))
}

/// Re-indent a block written with 2 spaces per level to `unit` spaces per level.
fn reindent(block: &str, unit: usize) -> Vec<String> {
    block
        .lines()
        .map(|l| {
            let ind = l.len() - l.trim_start().len();
            format!("{}{}", " ".repeat(ind / 2 * unit), l.trim_start())
        })
        .collect()
}

fn header_lines(block: &str) -> Vec<&str> {
    block.lines().take_while(|l| l.trim_start().starts_with('#')).collect()
}

/// The text of `current` with our block put in (replacing an older one); None when it is
/// already there exactly.
fn with_service(current: &str, block: &str) -> Result<Option<String>, String> {
    let lines: Vec<&str> = current.lines().collect();
    let (s, end, unit) = services_section(&lines).ok_or("it has no top-level `services:` key")?;
    let new_block = reindent(block, unit);
    let header = header_lines(block);
    let mut out: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    match find_block(&lines, unit, &header) {
        Some((bs, be)) if bs > s && be <= end => {
            if lines[bs..be].iter().map(|l| l.trim_end()).eq(new_block.iter().map(|l| l.trim_end())) {
                return Ok(None);
            }
            out.splice(bs..be, new_block);
        }
        Some(_) => return Err(format!("a `{SERVICE}:` key exists outside the services section")),
        None => {
            let mut insert = Vec::new();
            if end > s + 1 {
                insert.push(String::new());
            }
            insert.extend(new_block);
            out.splice(end..end, insert);
        }
    }
    let mut text = out.join("\n");
    text.push('\n');
    Ok(Some(text))
}

/// The text of `current` without our block; None when it has none.
fn without_service(current: &str, block_header: &[&str]) -> Option<String> {
    let lines: Vec<&str> = current.lines().collect();
    let (s, end, unit) = services_section(&lines)?;
    let (bs, mut be) = find_block(&lines, unit, block_header).filter(|(bs, be)| *bs > s && *be <= end)?;
    let mut bs = bs;
    // Take one separating blank line with the block.
    if bs > 0 && lines[bs - 1].trim().is_empty() {
        bs -= 1;
    } else if be < lines.len() && lines[be].trim().is_empty() {
        be += 1;
    }
    let mut out: Vec<&str> = lines[..bs].to_vec();
    out.extend_from_slice(&lines[be..]);
    let mut text = out.join("\n");
    text.push('\n');
    Some(text)
}

fn parse(text: &str) -> Result<serde_yaml::Mapping, String> {
    match serde_yaml::from_str::<Value>(text).map_err(|e| e.to_string())? {
        Value::Mapping(m) => Ok(m),
        _ => Err("the top level is not a mapping".into()),
    }
}

/// The edited file keeps everything else exactly and has our service as meant (or none).
fn validate(before: &str, after: &str, ours: Option<&str>) -> Result<(), String> {
    let key = Value::String("services".into());
    let name = Value::String(SERVICE.into());
    let mut b = parse(before)?;
    let mut a = parse(after)?;
    let mut bs = b.remove(&key).and_then(|v| v.as_mapping().cloned()).unwrap_or_default();
    let mut as_ = a.remove(&key).and_then(|v| v.as_mapping().cloned()).ok_or("the services mapping is gone")?;
    if a != b {
        return Err("a top-level key other than services changed".into());
    }
    bs.remove(&name);
    let got = as_.remove(&name);
    if as_ != bs {
        return Err("another service changed".into());
    }
    match ours {
        Some(block) => {
            let want = parse(&format!("services:\n{block}"))?.remove(&key).and_then(|v| v.as_mapping().cloned()).and_then(|mut m| m.remove(&name));
            if got.is_none() || got != want {
                return Err(format!("the `{SERVICE}` service does not read back as written"));
            }
        }
        None if got.is_some() => return Err(format!("the `{SERVICE}` service is still there")),
        None => {}
    }
    Ok(())
}

/// `docker compose config -q` when Docker's compose plugin is installed.
fn external_check(path: &Path) -> Result<(), String> {
    if !crate::setup::host::on_path("docker") {
        return Ok(());
    }
    let out = std::process::Command::new("docker").args(["compose", "version"]).output();
    if !out.map(|o| o.status.success()).unwrap_or(false) {
        return Ok(());
    }
    let out = std::process::Command::new("docker").arg("compose").arg("-f").arg(path).args(["config", "-q"]).output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("docker compose config: {}", String::from_utf8_lossy(&out.stderr).trim()))
    }
}

fn write_checked(path: &Path, before: &str, after: &str, ours: Option<&str>, backup_dir: &Path) -> Result<Outcome, ComposeError> {
    validate(before, after, ours)
        .map_err(|message| ComposeError::Refused { path: path.to_path_buf(), message: format!("the edit would not be valid: {message}") })?;
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(path).map_err(|source| FileError::Io { path: path.to_path_buf(), action: "reading", source })?.permissions(),
    ) & 0o7777;
    let backup = files::backup(path, backup_dir)?;
    files::write_if_changed(path, after.as_bytes(), mode, None)?;
    if let Err(message) = external_check(path) {
        let saved = std::fs::read(&backup).map_err(|source| FileError::Io { path: backup.clone(), action: "reading the backup", source })?;
        files::write_if_changed(path, &saved, mode, None)?;
        return Err(ComposeError::Invalid { path: path.to_path_buf(), message, backup });
    }
    Ok(Outcome::Written { backup: Some(backup) })
}

/// Put our service block into the VLESS compose file (backup + validation).
pub fn add_to_existing(path: &Path, block: &str, backup_dir: &Path) -> Result<Outcome, ComposeError> {
    let before = std::fs::read_to_string(path).map_err(|source| FileError::Io { path: path.to_path_buf(), action: "reading", source })?;
    match with_service(&before, block).map_err(|message| ComposeError::Refused { path: path.to_path_buf(), message })? {
        None => Ok(Outcome::Unchanged),
        Some(after) => write_checked(path, &before, &after, Some(block), backup_dir),
    }
}

/// Take our service block out of the VLESS compose file (backup + validation).
pub fn remove_from_existing(path: &Path, backup_dir: &Path) -> Result<Outcome, ComposeError> {
    let before = std::fs::read_to_string(path).map_err(|source| FileError::Io { path: path.to_path_buf(), action: "reading", source })?;
    let header: Vec<&str> = header_lines(crate::setup::templates::COMPOSE_SERVICE);
    match without_service(&before, &header) {
        None => Ok(Outcome::Unchanged),
        Some(after) => write_checked(path, &before, &after, None, backup_dir),
    }
}

/// Our own compose file, holding only the proxy.
pub fn write_own(path: &Path, block: &str) -> Result<Outcome, ComposeError> {
    let text =
        format!("# Compose file of vless-mtproxy, written by `vless-mtproxy setup`.\n# Start: docker compose -f {} up -d\nservices:\n{block}", path.display());
    parse(&text).map_err(|message| ComposeError::Refused { path: path.to_path_buf(), message })?;
    Ok(if files::write_if_changed(path, text.as_bytes(), 0o644, None)? { Outcome::Written { backup: None } } else { Outcome::Unchanged })
}

#[cfg(test)]
mod tests {
    use super::*;

    const BLOCK: &str = "  # vless-mtproxy (Telegram MTProto proxy), added by `vless-mtproxy setup`; removed by\n  # `vless-mtproxy uninstall`.\n  vless_mtproxy:\n    image: vless_mtproxy:latest\n    network_mode: host\n    command: [\"serve\"]\n";

    const VLESS: &str = "# VLESS stack\nversion: \"3.8\"\nservices:\n    xray:\n        image: teddysun/xray  # the VPN\n        network_mode: host\n\n    haproxy:\n        image: haproxy:2.8\nnetworks:\n    default: {}\n";

    #[test]
    fn adds_replaces_and_removes_keeping_the_rest() {
        let added = with_service(VLESS, BLOCK).unwrap().unwrap();
        validate(VLESS, &added, Some(BLOCK)).unwrap();
        assert!(added.contains("        image: teddysun/xray  # the VPN\n"), "comments kept");
        assert!(added.contains("\n    vless_mtproxy:\n        image: vless_mtproxy:latest\n"), "re-indented to the file's 4 spaces:\n{added}");
        assert!(added.ends_with("networks:\n    default: {}\n"));
        assert_eq!(with_service(&added, BLOCK).unwrap(), None, "second run changes nothing");
        let changed = BLOCK.replace("host", "bridge");
        let replaced = with_service(&added, &changed).unwrap().unwrap();
        validate(&added, &replaced, Some(&changed)).unwrap();
        assert_eq!(replaced.matches("vless_mtproxy:\n").count(), 1);
        let removed = without_service(&replaced, &header_lines(BLOCK)).unwrap();
        assert_eq!(removed, VLESS, "removal restores the original bytes");
        validate(&replaced, &removed, None).unwrap();
    }

    #[test]
    fn refuses_files_it_cannot_edit() {
        assert!(with_service("version: '3'\n", BLOCK).is_err());
        assert!(validate(VLESS, &VLESS.replace("haproxy:2.8", "haproxy:2.9"), None).unwrap_err().contains("another service"));
        assert!(validate(VLESS, "services: [", None).is_err());
    }
}
