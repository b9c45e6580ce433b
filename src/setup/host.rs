//! Facts about the host that setup and uninstall depend on: who we run as, which container
//! engine or init system is there and working, whether a port is free, whether our binary can
//! run in an empty (`FROM scratch`) image. Each missing piece is named, so the admin knows what
//! to install.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::setup::options::Runtime;

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("{0} is missing on this host: {1}")]
    Missing(&'static str, String),
    #[error("no way to run the proxy was found: install Docker or Podman, or run setup on a host booted with systemd (or pass --runtime)")]
    NoRuntime,
    #[error("{path}: {message}")]
    Binary { path: String, message: String },
}

/// True when the effective user id is 0 (read from /proc, no libc call needed).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).and_then(|l| l.split_whitespace().nth(2).map(|e| e == "0")))
        .unwrap_or(false)
}

/// Whether `program` is on PATH.
pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").map(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file())).unwrap_or(false)
}

/// Whether a command runs and succeeds within `limit` (output discarded).
pub fn succeeds(program: &str, args: &[&str], limit: Duration) -> bool {
    let Ok(mut child) = Command::new(program).args(args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn() else {
        return false;
    };
    let deadline = std::time::Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(st)) => return st.success(),
            Ok(None) if std::time::Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
        }
    }
}

/// A Docker engine that answers (a `docker` client alone is not enough).
pub fn docker_works() -> bool {
    on_path("docker") && succeeds("docker", &["info"], Duration::from_secs(10))
}

pub fn podman_present() -> bool {
    on_path("podman")
}

/// systemd is the init system (not merely installed).
pub fn systemd_running() -> bool {
    Path::new("/run/systemd/system").is_dir() && on_path("systemctl")
}

/// Check that the chosen runtime can be used, or pick one: Docker if its engine answers,
/// else Podman, else systemd.
pub fn resolve_runtime(wanted: Option<Runtime>) -> Result<Runtime, HostError> {
    match wanted {
        Some(Runtime::Docker) if !on_path("docker") => {
            Err(HostError::Missing("docker", "the `docker` command is not installed (or use --runtime podman|systemd)".into()))
        }
        Some(Runtime::Docker) if !docker_works() => {
            Err(HostError::Missing("docker engine", "`docker info` fails: start the Docker daemon (or use --runtime podman|systemd)".into()))
        }
        Some(Runtime::Podman) if !podman_present() => {
            Err(HostError::Missing("podman", "the `podman` command is not installed (apt-get install podman)".into()))
        }
        Some(Runtime::Systemd) if !systemd_running() => {
            Err(HostError::Missing("systemd", "this host was not booted with systemd (/run/systemd/system is absent); use a container runtime".into()))
        }
        Some(r) => Ok(r),
        None if docker_works() => Ok(Runtime::Docker),
        None if podman_present() => Ok(Runtime::Podman),
        None if systemd_running() => Ok(Runtime::Systemd),
        None => Err(HostError::NoRuntime),
    }
}

/// Whether something already accepts TCP connections on `port` (we try to bind it).
pub fn port_in_use(port: u16) -> bool {
    match TcpListener::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port))) {
        Ok(_) => false,
        Err(e) => e.kind() == std::io::ErrorKind::AddrInUse,
    }
}

/// A container built `FROM scratch` has no dynamic loader: the binary must be static
/// (an ELF file without a PT_INTERP program header).
pub fn check_static_binary(path: &Path) -> Result<(), HostError> {
    let err = |m: &str| HostError::Binary { path: path.display().to_string(), message: m.to_string() };
    let data = std::fs::read(path).map_err(|e| err(&format!("cannot read: {e}")))?;
    match elf_has_interpreter(&data) {
        None => Err(err("not a 64-bit little-endian ELF executable")),
        Some(true) => Err(err(
            "is dynamically linked and cannot run in the FROM scratch image; build it static: RUSTFLAGS=\"-C target-feature=+crt-static\" cargo build --release --target x86_64-unknown-linux-gnu",
        )),
        Some(false) => Ok(()),
    }
}

/// Some(true) when the ELF64 LE file has a PT_INTERP segment; None when it is not such a file.
fn elf_has_interpreter(data: &[u8]) -> Option<bool> {
    const PT_INTERP: u32 = 3;
    if data.len() < 64 || &data[..4] != b"\x7fELF" || data[4] != 2 || data[5] != 1 {
        return None;
    }
    let u16_at = |o: usize| data.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u32_at = |o: usize| data.get(o..o + 4).map(|b| u32::from_le_bytes(b.try_into().unwrap()));
    let u64_at = |o: usize| data.get(o..o + 8).map(|b| u64::from_le_bytes(b.try_into().unwrap()));
    let phoff = usize::try_from(u64_at(0x20)?).ok()?;
    let phentsize = u16_at(0x36)? as usize;
    let phnum = u16_at(0x38)? as usize;
    if phentsize < 4 {
        return None;
    }
    for i in 0..phnum {
        if u32_at(phoff.checked_add(i.checked_mul(phentsize)?)?)? == PT_INTERP {
            return Some(true);
        }
    }
    Some(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn elf(program_types: &[u32]) -> Vec<u8> {
        let mut d = vec![0u8; 64 + 56 * program_types.len()];
        d[..4].copy_from_slice(b"\x7fELF");
        d[4] = 2;
        d[5] = 1;
        d[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        d[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        d[0x38..0x3a].copy_from_slice(&(program_types.len() as u16).to_le_bytes());
        for (i, t) in program_types.iter().enumerate() {
            d[64 + 56 * i..68 + 56 * i].copy_from_slice(&t.to_le_bytes());
        }
        d
    }

    #[test]
    fn static_and_dynamic_elf() {
        assert_eq!(elf_has_interpreter(&elf(&[6, 1, 1])), Some(false));
        assert_eq!(elf_has_interpreter(&elf(&[6, 3, 1])), Some(true));
        assert_eq!(elf_has_interpreter(b"#!/bin/sh\n"), None);
        let mut truncated = elf(&[1, 1]);
        truncated.truncate(80);
        assert_eq!(elf_has_interpreter(&truncated), None);
    }

    #[test]
    fn port_probe() {
        let l = TcpListener::bind("0.0.0.0:0").unwrap();
        assert!(port_in_use(l.local_addr().unwrap().port()));
        let free = l.local_addr().unwrap().port();
        drop(l);
        assert!(!port_in_use(free));
    }
}
