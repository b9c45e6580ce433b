//! The data phase: both directions at once, re-encrypting between the client's and the DC's
//! obfuscated2 streams (docs/protocol.md §2.7) and (de)framing TLS records for fake-TLS clients.
//!
//! ```text
//! client --[TLS records]--> deframe -> AES-CTR decrypt (client key) -> encrypt (DC key) --> DC
//! client <--[TLS records]-- frame  <- encrypt (client key) <- decrypt (DC key) <---------- DC
//!                                     (fast mode: the DC already used the client key: no AES)
//! ```
//! Memory: a direction holds a buffer only while bytes move. It waits for readiness with no
//! buffer, reads what is there into a fresh one, writes it all (backpressure: nothing more is
//! read until the write completes), and frees it when the socket runs dry. The same goes for
//! the ciphers: between bursts a keystream is kept as key, IV and offset ([`LazyCtr`], 56
//! bytes), and its expanded round keys (about 1 KB each) exist only while bytes move. An idle
//! connection therefore costs its sockets and a few hundred bytes of state
//! (docs/performance.md, "idle").
//!
//! Half-close: EOF from one side shuts down writing towards the other; the other direction
//! keeps going until it ends too.
//!
//! This module is the relay machinery ([`pump`], the transforms, the compact ciphers), shared
//! by fronting and the middle-end session; [`direct`] is the relay stage of the direct route
//! (docs/design.md "data path"), the cipher splice between a client and its DC.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use mtproxy_proto::crypto::AesCtr;
use mtproxy_proto::faketls::{self, RecordReader, MAX_RECORD_PAYLOAD, RECORD_HEADER_LEN};
use mtproxy_proto::obfs2::KeyIv;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::time::Instant;

use crate::stats::ByteCounter;

pub mod direct;

pub use direct::{ClientSide, Keep, Relay};

/// Read size per chunk towards a fake-TLS client (one record's payload at most, so one chunk is
/// one record).
pub const CHUNK: usize = MAX_RECORD_PAYLOAD;
/// Read size per chunk everywhere else: larger reads mean fewer system calls per byte.
pub const BULK_CHUNK: usize = 65536;

/// An AES-256-CTR keystream at rest: key, IV and position. The working cipher (about 1 KB of
/// round keys) is made from it for one burst.
#[derive(Clone, Copy)]
pub struct LazyCtr {
    key: [u8; 32],
    iv: [u8; 16],
    offset: u64,
}

impl LazyCtr {
    /// The keystream of `k`, positioned at byte `offset`.
    pub fn new(k: &KeyIv, offset: u64) -> Self {
        LazyCtr { key: k.key, iv: k.iv, offset }
    }

    fn expand(&self) -> AesCtr {
        let mut c = AesCtr::new(&self.key, &self.iv);
        c.seek(self.offset);
        c
    }

    /// Apply the keystream to `data` once (the expanded cipher lives on this call's stack).
    pub fn apply_once(&mut self, data: &mut [u8]) {
        self.expand().apply(data);
        self.offset += data.len() as u64;
    }
}

impl std::fmt::Debug for LazyCtr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        write!(f, "LazyCtr(offset {})", self.offset)
    }
}

/// Decrypt with one keystream and encrypt with another (the proxy's two AES passes), the
/// expanded ciphers living on the heap only between [`Recrypt::apply`] and [`Recrypt::park`].
pub struct Recrypt {
    decrypt: LazyCtr,
    encrypt: LazyCtr,
    live: Option<Box<(AesCtr, AesCtr)>>,
}

impl Recrypt {
    pub fn new(decrypt: LazyCtr, encrypt: LazyCtr) -> Self {
        Recrypt { decrypt, encrypt, live: None }
    }

    #[inline]
    pub fn apply(&mut self, data: &mut [u8]) {
        let (d, e) = (&self.decrypt, &self.encrypt);
        let live = self.live.get_or_insert_with(|| Box::new((d.expand(), e.expand())));
        live.0.apply(data);
        live.1.apply(data);
        self.decrypt.offset += data.len() as u64;
        self.encrypt.offset += data.len() as u64;
    }

    /// Drop the expanded ciphers (the socket ran dry).
    pub fn park(&mut self) {
        self.live = None;
    }
}

/// Milliseconds since `origin` of the last byte in either direction: the one idle timer of
/// both relays (direct here, and `middle::session`).
pub struct Activity {
    origin: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    pub fn new() -> Self {
        Activity { origin: Instant::now(), last_ms: AtomicU64::new(0) }
    }

    #[inline]
    pub(crate) fn touch(&self) {
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
    /// Largest read per chunk.
    fn chunk(&self) -> usize {
        BULK_CHUNK
    }
    /// Turn `buf[headroom..]` (as read) into what is written; may shrink or fill the headroom.
    fn apply(&mut self, buf: &mut Vec<u8>) -> io::Result<()>;
    /// The socket ran dry: release whatever only a burst needs.
    fn park(&mut self) {}
}

/// A borrowed transform: the connection task keeps one copy of each direction's state, and
/// [`pump`] holds a reference to it (idle memory, docs/performance.md).
impl<T: Transform + ?Sized> Transform for &mut T {
    fn headroom(&self) -> usize {
        (**self).headroom()
    }
    fn chunk(&self) -> usize {
        (**self).chunk()
    }
    fn apply(&mut self, buf: &mut Vec<u8>) -> io::Result<()> {
        (**self).apply(buf)
    }
    fn park(&mut self) {
        (**self).park()
    }
}

/// Client -> DC: optional TLS de-framing, decrypt with the client key, encrypt with the DC key.
pub struct ClientToDc {
    pub tls: Option<RecordReader>,
    /// Client key -> DC key.
    pub recrypt: Recrypt,
}

impl Transform for ClientToDc {
    fn apply(&mut self, buf: &mut Vec<u8>) -> io::Result<()> {
        if let Some(r) = &mut self.tls {
            let len = buf.len();
            let n = r.deframe_in_place(buf, len).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            buf.truncate(n);
        }
        if !buf.is_empty() {
            self.recrypt.apply(buf);
        }
        Ok(())
    }
    fn park(&mut self) {
        self.recrypt.park();
    }
}

/// DC -> client: decrypt with the DC key and encrypt with the client key (skipped in fast
/// mode), then optional TLS framing.
pub struct DcToClient {
    pub tls: bool,
    /// DC key -> client key; `None` in fast mode.
    pub recrypt: Option<Recrypt>,
}

impl Transform for DcToClient {
    fn headroom(&self) -> usize {
        if self.tls {
            RECORD_HEADER_LEN
        } else {
            0
        }
    }
    fn chunk(&self) -> usize {
        if self.tls {
            CHUNK
        } else {
            BULK_CHUNK
        }
    }
    fn park(&mut self) {
        if let Some(r) = &mut self.recrypt {
            r.park();
        }
    }
    fn apply(&mut self, buf: &mut Vec<u8>) -> io::Result<()> {
        let head = self.headroom();
        if let Some(r) = &mut self.recrypt {
            r.apply(&mut buf[head..]);
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

thread_local! {
    /// Read buffers between bursts, per runtime thread (at most [`SPARE_BUFFERS`]): a burst
    /// takes one and gives it back when its socket runs dry, so a busy thread does not go to
    /// the allocator (and, when a freed 64 KB block is trimmed, to the kernel) per message. An
    /// idle connection still holds none.
    static SPARE: std::cell::RefCell<Vec<Vec<u8>>> = const { std::cell::RefCell::new(Vec::new()) };
}
const SPARE_BUFFERS: usize = 4;
/// Capacity of every read buffer: the largest chunk plus a record header.
const BUF_CAP: usize = BULK_CHUNK + RECORD_HEADER_LEN;

fn take_buffer() -> Vec<u8> {
    SPARE.with(|s| s.borrow_mut().pop()).unwrap_or_else(|| Vec::with_capacity(BUF_CAP))
}

fn give_back(mut buf: Vec<u8>) {
    if buf.capacity() == BUF_CAP {
        buf.clear();
        SPARE.with(|s| {
            let mut s = s.borrow_mut();
            if s.len() < SPARE_BUFFERS {
                s.push(buf);
            }
        });
    }
}

/// Names a lifetime an `impl Trait` return value captures (edition 2021).
pub trait Captures<'a> {}
impl<T: ?Sized> Captures<'_> for T {}

/// Move bytes from `r` to `w` through `t` until EOF (then shut down `w`) or an error.
/// `limit`: stop after this many bytes read (fronting caps).
/// (A plain fn returning an `async move` block: an `async fn` keeps a second copy of its
/// arguments in its state, and this future is part of every idle connection.)
#[allow(clippy::manual_async_fn)] // deliberate, see above
pub fn pump<'a, 'c: 'a, T: Transform + 'a>(
    r: &'a OwnedReadHalf,
    w: &'a mut OwnedWriteHalf,
    mut t: T,
    activity: &'a Activity,
    counter: &'a mut ByteCounter<'c>,
    limit: Option<&'a AtomicU64>,
) -> impl std::future::Future<Output = io::Result<()>> + Captures<'c> + 'a {
    async move {
        let head = t.headroom();
        let chunk = t.chunk();
        loop {
            // poll_read_ready keeps its waker in the socket's registration; `readable()` would
            // put a 168-byte waiter into this future, which every idle connection carries.
            std::future::poll_fn(|cx| r.as_ref().poll_read_ready(cx)).await?;
            let mut buf = take_buffer();
            loop {
                buf.clear();
                buf.resize(head, 0);
                // At most `chunk` bytes per read (one TLS record's payload towards ee clients).
                match r.try_read_buf(&mut bytes::BufMut::limit(&mut buf, chunk)) {
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
                                return Err(io::Error::other("byte limit reached"));
                            }
                        }
                        t.apply(&mut buf)?;
                        // Counted after the transform: stream bytes, without TLS record headers.
                        counter.add(buf.len() - head);
                        if buf.len() > head {
                            w.write_all(&buf).await?;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        t.park();
                        give_back(buf);
                        break;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
    }
}
