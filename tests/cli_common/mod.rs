//! Helpers shared by the CLI integration tests: run the real binary against a config file in
//! a temporary directory.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use mtproxy_core::config::{parse_str, Config};

pub const BIN: &str = env!("CARGO_BIN_EXE_vless-mtproxy");

pub struct Env {
    pub dir: tempfile::TempDir,
    pub cfg: PathBuf,
}

impl Env {
    pub fn new(initial: Option<&str>) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("proxy.toml");
        if let Some(text) = initial {
            std::fs::write(&cfg, text).unwrap();
        }
        Env { dir, cfg }
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.arg("--config").arg(&self.cfg).args(args).env_remove("VLESS_MTPROXY_CONFIG").env_remove("RUST_LOG");
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// Run in a network namespace of its own with no interface up (`unshare --net`, needs
    /// root): commands that would use the network (DNS, connects) cannot reach any other host.
    pub fn run_offline(&self, args: &[&str]) -> Output {
        let inner = self.cmd(args);
        let mut c = Command::new("unshare");
        c.arg("--net").arg("--").arg(inner.get_program()).args(inner.get_args());
        c.env_remove("VLESS_MTPROXY_CONFIG").env_remove("RUST_LOG");
        c.output().expect("unshare (util-linux) runs the command")
    }

    /// Run; it must succeed. Returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(o.status.success(), "{args:?} failed:\n{}\n{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap()
    }

    /// Run; it must fail with a message and leave the file byte-for-byte as it was. Returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let before = std::fs::read(&self.cfg).ok();
        let o = self.run(args);
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        assert!(!o.status.success(), "{args:?} should fail; stdout:\n{}", String::from_utf8_lossy(&o.stdout));
        assert!(!err.trim().is_empty(), "{args:?}: a failure must say why");
        assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
        assert_eq!(std::fs::read(&self.cfg).ok(), before, "{args:?} changed the file");
        err
    }

    pub fn text(&self) -> String {
        std::fs::read_to_string(&self.cfg).unwrap()
    }

    pub fn config(&self) -> Config {
        parse_str(&self.text(), Path::new("t.toml")).unwrap()
    }

    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        serde_json::from_str(&self.ok(args)).unwrap()
    }
}

/// A config with two users whose secrets share a 6-character prefix.
pub const BASE: &str = r#"# Admin's comment at the top: keep me.
[server]
listen = ["127.0.0.1:18443"]  # trailing comment
public_host = "proxy.example.org"

# Alice is my sister.
[users.alice]
secret = "aaaaaa00112233445566778899aabbcc"
kind = "dd"

[users.bob]
secret = "aaaaaa11112233445566778899aabbcc"
kind = "ee"
domain = "www.example.com"
"#;

/// SIGTERM `child` and wait for it to exit: SIGKILL after 10 s.
pub fn terminate(mut child: std::process::Child) {
    let pid = rustix::process::Pid::from_raw(child.id() as i32).expect("a child has a pid");
    let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
