//! Child processes under test: the real `vless-mtproxy serve` binary with a generated
//! configuration, the fake DC and the bare relay (this binary's own subcommands), and Debian's
//! dante SOCKS5 server as the proxy's upstream (the `socks5` scenario). Each is stopped when
//! its handle is dropped.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mtproxy_proto::{Secret, SecretKind};

pub struct Proc {
    child: Child,
    pub addr: SocketAddr,
    /// Ask it to stop (SIGTERM, so it ends its own worker processes) before SIGKILL.
    graceful: bool,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.graceful {
            let pid = self.child.id().to_string();
            let _ = Command::new("kill").args(["-TERM", &pid]).status();
            let deadline = Instant::now() + Duration::from_secs(3);
            while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        // SIGKILL our own child by its id, then reap it.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_listening(child: &mut Child, addr: SocketAddr, what: &str) -> io::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if let Some(st) = child.try_wait()? {
            return Err(io::Error::other(format!("{what} exited before listening on {addr} ({st})")));
        }
        if Instant::now() > deadline {
            return Err(io::Error::new(io::ErrorKind::TimedOut, format!("{what} did not listen on {addr} within 20 s")));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Start this binary's `fake-dc` or `bare-relay` subcommand.
pub fn start_self(args: &[String], addr: SocketAddr, what: &str) -> io::Result<Proc> {
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe).args(args).stdin(Stdio::null()).spawn()?;
    wait_listening(&mut child, addr, what)?;
    Ok(Proc { child, addr, graceful: false })
}

/// The configuration text for `users` secrets of `kind`, listening on `addr`, with more
/// sections (`extra`, e.g. `[upstream]`) before the users.
pub fn proxy_config_with(addr: SocketAddr, workers: usize, kind: &SecretKind, users: &[Secret], extra: &str) -> String {
    let mut t = format!(
        "[server]\nlisten = [\"{addr}\"]\npublic_host = \"127.0.0.1\"\nworkers = {workers}\nfast_mode = true\n\n\
         [timeouts]\nhandshake = \"30s\"\nidle = \"1h\"\n\n[fronting]\nenabled = false\n\n\
         [limits]\nmax_connections = 1000000\n\n[stats]\nlisten = \"off\"\n\n{extra}\n"
    );
    for (i, s) in users.iter().enumerate() {
        t.push_str(&format!("[users.u{i}]\nsecret = \"{}\"\nkind = \"{}\"\n", s.to_hex(), kind.name()));
        if let SecretKind::FakeTls { domain } = kind {
            t.push_str(&format!("domain = \"{domain}\"\n"));
        }
        t.push('\n');
    }
    t
}

/// Start the proxy binary with a fresh configuration in `dir`.
pub fn start_proxy(bin: &Path, dir: &Path, addr: SocketAddr, dc: SocketAddr, workers: usize, kind: &SecretKind, users: &[Secret]) -> io::Result<Proc> {
    start_proxy_with(bin, dir, addr, dc, workers, kind, users, "")
}

/// [`start_proxy`] with more configuration sections.
#[allow(clippy::too_many_arguments)] // the scenario's knobs, passed straight through
pub fn start_proxy_with(
    bin: &Path,
    dir: &Path,
    addr: SocketAddr,
    dc: SocketAddr,
    workers: usize,
    kind: &SecretKind,
    users: &[Secret],
    extra: &str,
) -> io::Result<Proc> {
    let path: PathBuf = dir.join(format!("proxy-{}.toml", addr.port()));
    let _ = std::fs::remove_file(&path);
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path)?;
        f.write_all(proxy_config_with(addr, workers, kind, users, extra).as_bytes())?;
    }
    let log = std::fs::File::create(dir.join("proxy.log"))?;
    let mut child = Command::new(bin)
        .arg("--config")
        .arg(&path)
        .args(["serve", "--log", "warn", "--dc-override"])
        .arg(format!("*={dc}"))
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("starting {}: {e}", bin.display())))?;
    wait_listening(&mut child, addr, "the proxy")?;
    Ok(Proc { child, addr, graceful: false })
}

/// Debian's dante (`danted`), if installed.
pub fn danted() -> Option<PathBuf> {
    ["/usr/sbin/danted", "/usr/bin/danted"].iter().map(PathBuf::from).find(|p| p.is_file())
}

/// dante on `addr`, no authentication, connecting out from 127.0.0.2 (the fake DC is on
/// loopback). It runs in the foreground as our child; its worker processes end with it.
pub fn start_dante(bin: &Path, dir: &Path, addr: SocketAddr) -> io::Result<Proc> {
    let conf = dir.join(format!("danted-{}.conf", addr.port()));
    std::fs::write(
        &conf,
        format!(
            "logoutput: {}\ninternal: {} port = {}\nexternal: 127.0.0.2\nsocksmethod: none\nclientmethod: none\n\
             user.privileged: root\nuser.unprivileged: nobody\n\
             client pass {{ from: 127.0.0.0/8 to: 0.0.0.0/0 }}\nsocks pass {{ from: 127.0.0.0/8 to: 0.0.0.0/0 command: connect }}\n",
            dir.join("danted.log").display(),
            addr.ip(),
            addr.port()
        ),
    )?;
    // Foreground (no -D): a child of ours. -p: its pid file, in our folder.
    let mut child = Command::new(bin)
        .arg("-f")
        .arg(&conf)
        .arg("-p")
        .arg(dir.join(format!("danted-{}.pid", addr.port())))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("starting {}: {e}", bin.display())))?;
    wait_listening(&mut child, addr, "dante")?;
    Ok(Proc { child, addr, graceful: true })
}
