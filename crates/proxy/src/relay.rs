//! The data phase: both directions at once, re-encrypting between the client's and the DC's
//! obfuscated2 streams (reference §2.7) and (de)framing TLS records for fake-TLS clients.
//!
//! ```text
//! client --[TLS records]--> deframe -> AES-CTR decrypt (client key) -> encrypt (DC key) --> DC
//! client <--[TLS records]-- frame  <- encrypt (client key) <- decrypt (DC key) <---------- DC
//!                                     (fast mode: the DC already used the client key: no AES)
//! ```
//! Memory: a direction holds a buffer only while bytes move. It waits for readiness with no
//! buffer, reads what is there into a fresh one, writes it all (backpressure: nothing more is
//! read until the write completes), and frees it when the socket runs dry. An idle connection
//! therefore costs its sockets and a few hundred bytes of state.
//!
//! Half-close: EOF from one side shuts down writing towards the other; the other direction
//! keeps going until it ends too.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use mtproxy_proto::crypto::AesCtr;
use mtproxy_proto::faketls::{self, RecordReader, MAX_RECORD_PAYLOAD, RECORD_HEADER_LEN};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::time::Instant;

use crate::stats::ByteCounter;

/// Read size per chunk (one TLS record's payload at most, so one chunk is one record).
pub const CHUNK: usize = MAX_RECORD_PAYLOAD;

/// Milliseconds since `origin` of the last byte in either direction.
pub struct Activity {
    origin: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    pub fn new() -> Self {
        Activity { origin: Instant::now(), last_ms: AtomicU64::new(0) }
    }

    #[inline]
    fn touch(&self) {
        self.last_ms.store(self.origin.elapsed().as_millis() as u64, Relaxed);
    }

    /// Resolves once nothing moved for `idle`.
    pub async fn idle(&self, idle: Duration) {
        loop {
            let last = self.origin + Duration::from_millis(self.last_ms.load(Relaxed));
            let deadline = last + idle;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

impl Default for Activity {
    fn default() -> Self {
        Self::new()
    }
}

/// What happens to bytes in one direction.
pub trait Transform {
    /// Bytes to leave free before the data (for a record header).
    fn headroom(&self) -> usize {
        0
    }
    /// Turn `buf[headroom..]` (as read) into what is written; may shrink or fill the headroom.
    fn apply(&mut self, buf: &mut Vec<u8>) -> io::Result<()>;
}

/// Client -> DC: optional TLS de-framing, decrypt with the client key, encrypt with the DC key.
pub struct ClientToDc {
    pub tls: Option<RecordReader>,
    pub client_decrypt: AesCtr,
    pub dc_encrypt: AesCtr,
}

impl Transform for ClientToDc {
    fn apply(&mut self, buf: &mut Vec<u8>) -> io::Result<()> {
        if let Some(r) = &mut self.tls {
            let len = buf.len();
            let n = r.deframe_in_place(buf, len).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            buf.truncate(n);
        }
        self.client_decrypt.apply(buf);
        self.dc_encrypt.apply(buf);
        Ok(())
    }
}

/// DC -> client: decrypt with the DC key and encrypt with the client key (skipped in fast
/// mode), then optional TLS framing.
pub struct DcToClient {
    pub tls: bool,
    /// `None` in fast mode.
    pub recrypt: Option<(AesCtr, AesCtr)>,
}

impl Transform for DcToClient {
    fn headroom(&self) -> usize {
        if self.tls {
            RECORD_HEADER_LEN
        } else {
            0
        }
    }
    fn apply(&mut self, buf: &mut Vec<u8>) -> io::Result<()> {
        let head = self.headroom();
        if let Some((dc_decrypt, client_encrypt)) = &mut self.recrypt {
            dc_decrypt.apply(&mut buf[head..]);
            client_encrypt.apply(&mut buf[head..]);
        }
        if self.tls {
            let h = faketls::app_data_header(buf.len() - head);
            buf[..RECORD_HEADER_LEN].copy_from_slice(&h);
        }
        Ok(())
    }
}

/// Bytes unchanged (fronting).
pub struct Identity;

impl Transform for Identity {
    fn apply(&mut self, _: &mut Vec<u8>) -> io::Result<()> {
        Ok(())
    }
}

/// Move bytes from `r` to `w` through `t` until EOF (then shut down `w`) or an error.
/// `limit`: stop after this many bytes read (fronting caps).
pub async fn pump<T: Transform>(
    r: &OwnedReadHalf,
    w: &mut OwnedWriteHalf,
    mut t: T,
    activity: &Activity,
    counter: &mut ByteCounter<'_>,
    limit: Option<&AtomicU64>,
) -> io::Result<()> {
    let head = t.headroom();
    loop {
        r.readable().await?;
        let mut buf: Vec<u8> = Vec::with_capacity(head + CHUNK);
        loop {
            buf.clear();
            buf.resize(head, 0);
            match r.try_read_buf(&mut buf) {
                Ok(0) if buf.len() == head => {
                    let _ = w.shutdown().await;
                    return Ok(());
                }
                Ok(_) => {
                    let n = buf.len() - head;
                    activity.touch();
                    if let Some(l) = limit {
                        let before = l.fetch_update(Relaxed, Relaxed, |v| Some(v.saturating_sub(n as u64))).unwrap_or(0);
                        if before <= n as u64 {
                            return Err(io::Error::new(io::ErrorKind::Other, "byte limit reached"));
                        }
                    }
                    t.apply(&mut buf)?;
                    // Counted after the transform: stream bytes, without TLS record headers.
                    counter.add(buf.len() - head);
                    if buf.len() > head {
                        w.write_all(&buf).await?;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
    }
}
