//! `serve --log-file PATH`: every log line goes to stderr (for `docker logs` / the journal)
//! and is appended to PATH, where host tools such as fail2ban read it.
//!
//! The file is opened in append mode, so logrotate's `copytruncate` is safe (the next line
//! lands at the new end), and it is reopened on SIGHUP, so a rotation that moves the file away
//! works too. A failed reopen keeps the old handle and says so.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tracing_subscriber::fmt::MakeWriter;

/// A log writer: stderr, and the log file when one is configured.
#[derive(Clone)]
pub struct LogWriter {
    file: Option<(PathBuf, Arc<Mutex<File>>)>,
}

fn open(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).mode(0o640).open(path)
}

impl LogWriter {
    pub fn new(path: Option<&Path>) -> io::Result<Self> {
        let file = match path {
            Some(p) => Some((p.to_path_buf(), Arc::new(Mutex::new(open(p).map_err(|e| io::Error::new(e.kind(), format!("log file {}: {e}", p.display())))?)))),
            None => None,
        };
        Ok(LogWriter { file })
    }

    pub fn has_file(&self) -> bool {
        self.file.is_some()
    }

    /// Open the path again (after a rotation moved the file away).
    pub fn reopen(&self) -> io::Result<()> {
        if let Some((path, slot)) = &self.file {
            let fresh = open(path)?;
            *slot.lock().unwrap_or_else(|p| p.into_inner()) = fresh;
        }
        Ok(())
    }
}

/// Reopen the log file on every SIGHUP (the same signal reloads the configuration).
pub async fn reopen_on_hup(writer: LogWriter) {
    if !writer.has_file() {
        return;
    }
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else { return };
    while hup.recv().await.is_some() {
        match writer.reopen() {
            Ok(()) => tracing::info!("log file reopened"),
            Err(e) => tracing::error!("log file not reopened, still writing to the old one: {e}"),
        }
    }
}

pub struct Tee<'a>(&'a LogWriter);

impl Write for Tee<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let _ = io::stderr().write_all(buf);
        if let Some((_, f)) = &self.0.file {
            f.lock().unwrap_or_else(|p| p.into_inner()).write_all(buf)?;
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LogWriter {
    type Writer = Tee<'a>;
    fn make_writer(&'a self) -> Self::Writer {
        Tee(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_survives_truncation_and_reopens() {
        let dir = std::env::temp_dir().join(format!("vmtp-log-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("proxy.log");
        let w = LogWriter::new(Some(&p)).unwrap();
        w.make_writer().write_all(b"one\n").unwrap();
        // copytruncate: the next line lands at the start of the emptied file, not at an offset.
        std::fs::OpenOptions::new().write(true).open(&p).unwrap().set_len(0).unwrap();
        w.make_writer().write_all(b"two\n").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "two\n");
        // rename + reopen: new lines go to a new file at the path.
        std::fs::rename(&p, dir.join("proxy.log.1")).unwrap();
        w.reopen().unwrap();
        w.make_writer().write_all(b"three\n").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "three\n");
        assert_eq!(std::fs::read_to_string(dir.join("proxy.log.1")).unwrap(), "two\n");
        assert!(LogWriter::new(Some(&dir.join("no/such/dir.log"))).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
