//! The direct route's relay stage (docs/design.md "data path": the last stage, after the upstream
//! connect): the DC gets its init and the client bytes read past the handshake, then
//! [`Relay::run`] splices the two obfuscated2 streams with the transforms of the parent module
//! (client key <-> DC key, TLS records for fake-TLS clients) until either side ends.
//!
//! [`start`] is part of the opening phase (boxed with it by `server::handle`, so its locals are
//! freed when it ends); [`Relay`] and the future of [`Relay::run`] are all an idle connection's
//! task keeps (docs/performance.md, "idle"; guarded by `crates/bench/tests/idle_state.rs`), so
//! the ciphers are kept as key + position ([`LazyCtr`]) and nothing here may be big.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mtproxy_proto::faketls::RecordReader;
use mtproxy_proto::obfs2::{KeyIv, INIT_LEN};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::{pump, Activity, ClientToDc, DcToClient, LazyCtr, Recrypt};
use crate::events::ClientAddr;
use crate::handshake::Authenticated;
use crate::limits::Slot;
use crate::server::ConnGuard;
use crate::snapshot::UserEntry;
use crate::stats::ByteCounter;
use crate::upstream::DcLeg;

/// The client's side of the splice, from the handshake: its keys, its TLS de-framer and the
/// bytes it sent past the init (decrypted). The expanded client cipher is not kept: the relay
/// works from the compact key.
pub struct ClientSide {
    pub from_client: KeyIv,
    pub to_client: KeyIv,
    pub tls: Option<RecordReader>,
    pub pending: Vec<u8>,
}

impl From<Authenticated> for ClientSide {
    fn from(auth: Authenticated) -> Self {
        let Authenticated { from_client, to_client, tls, pending, .. } = auth;
        ClientSide { from_client, to_client, tls, pending }
    }
}

/// What a relayed connection keeps to its end besides its sockets and ciphers. Fields drop in
/// declaration order: the per-user slot, then the connection's place under the cap.
pub struct Keep {
    pub peer: SocketAddr,
    pub idle: Duration,
    pub slot: Slot,
    pub entry: Arc<UserEntry>,
    /// Cancelled at the end of the drain period.
    pub close_all: CancellationToken,
    pub conn: ConnGuard,
}

/// Send the DC its init and the pending client bytes, and set up both directions. `None`: the
/// DC went away before that.
pub async fn start(client: TcpStream, leg: DcLeg, side: ClientSide, keep: Keep) -> Option<Relay> {
    let mut dc_stream = leg.stream;
    // Ciphers as key + position: expanded only while bytes move.
    let ClientSide { from_client, to_client, tls, mut pending } = side;
    let mut to_dc = LazyCtr::new(&leg.to_dc, INIT_LEN as u64);
    to_dc.apply_once(&mut pending);
    let from_client = LazyCtr::new(&from_client, (INIT_LEN + pending.len()) as u64);
    let c2d = ClientToDc { tls, recrypt: Recrypt::new(from_client, to_dc) };
    let mut first = Vec::with_capacity(INIT_LEN + pending.len());
    first.extend_from_slice(&leg.init);
    first.extend_from_slice(&pending);
    let pending_len = pending.len();
    drop(pending);
    if dc_stream.write_all(&first).await.is_err() {
        return None;
    }
    drop(first);
    let d2c = DcToClient { tls: c2d.tls.is_some(), recrypt: leg.from_dc.map(|d| Recrypt::new(LazyCtr::new(&d, 0), LazyCtr::new(&to_client, 0))) };
    let (cr, cw) = client.into_split();
    let (dr, dw) = dc_stream.into_split();
    Some(Relay { dw, dr, cw, cr, c2d, d2c, pending_len, keep })
}

/// What an authenticated, connected client keeps while its bytes are relayed: this (and the
/// futures of [`Relay::run`]) is the whole state of an idle connection, so nothing here may be
/// big. Fields drop in declaration order: the DC socket, the client socket, then [`Keep`].
pub struct Relay {
    dw: OwnedWriteHalf,
    dr: OwnedReadHalf,
    cw: OwnedWriteHalf,
    cr: OwnedReadHalf,
    c2d: ClientToDc,
    d2c: DcToClient,
    /// Client bytes relayed with the DC init (counted as uploaded).
    pending_len: usize,
    keep: Keep,
}

impl Relay {
    /// Both directions until either ends, the idle timeout, revocation, a limit cut or shutdown.
    /// (A plain fn returning an `async move` block: as an `async fn` it keeps `self` twice,
    /// 1,992 bytes instead of 1,488 for the whole task.)
    #[allow(clippy::manual_async_fn)] // deliberate, see above
    pub fn run(mut self) -> impl std::future::Future<Output = ()> + Send {
        async move {
            // Through one reference, so the block owns all of `self` (an `async move` block
            // captures only the fields it names, and the guards must live to the end).
            let this = &mut self;
            let activity = Activity::new();
            let keep = &this.keep;
            let user_stats = &keep.entry.stats;
            let stats = keep.conn.stats();
            let mut up = ByteCounter::new(&user_stats.bytes_from_client, &stats.bytes_from_client);
            let mut down = ByteCounter::new(&user_stats.bytes_to_client, &stats.bytes_to_client);
            up.add(this.pending_len);
            // The pumps borrow each direction's state: one copy of it in this task.
            let outcome = tokio::select! {
                r = async { tokio::try_join!(
                    pump(&this.cr, &mut this.dw, &mut this.c2d, &activity, &mut up, None),
                    pump(&this.dr, &mut this.cw, &mut this.d2c, &activity, &mut down, None),
                ) } => match r { Ok(_) => "closed", Err(_) => "error" },
                _ = activity.idle(keep.idle) => "idle timeout",
                _ = keep.entry.revoked.cancelled() => "user revoked",
                _ = keep.slot.lease.cut.cancelled() => "user limit reached",
                _ = keep.close_all.cancelled() => "shutdown",
            };
            tracing::debug!(client = %ClientAddr(keep.peer), user = %keep.entry.user.name, up = up.total(), down = down.total(), outcome, "connection closed");
        }
    }
}
