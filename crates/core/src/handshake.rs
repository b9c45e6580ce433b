//! Client handshake: classify the first bytes, authenticate against every user's secret,
//! check the transport, the clock, the SNI and the replay cache (docs/design.md "data path").
//!
//! ```text
//! every read            -> opening::classify: can these bytes still become an accepted
//!                          handshake? No: fronted at once (instant fronting).
//! first bytes 16 03 01 ..  -> fake-TLS: ClientHello (any size, any split) -> HMAC per secret
//!                             -> timestamp window -> SNI -> replay -> ServerHello flight
//!                             shaped like the user's cover site (`cover`)
//!                             -> records until 64 bytes of obfuscated2 init -> tag check
//! anything else            -> obfuscated2: 64-byte init -> tag per secret -> replay
//! ```
//! Every byte read is kept in [`HandshakeState::consumed`] until the client is authenticated,
//! so a failed or probing connection can be handed to the mask host unchanged. Secrets are
//! tried in [`Snapshot::search_order`]: the one the client's address used last first (`hints`).
//!
//! The stage (docs/design.md "data path": after `admit`, before `limits`) is [`run`]: the
//! handshake under the deadline it shares with the PROXY header, ended early by shutdown. It
//! takes what it reads and nothing more: the snapshot, the replay cache and cover shapes
//! ([`Guards`]), the client and the hints ([`Origin`]), and the wall clock and randomness as
//! arguments (like `limits`), so a test can fix both.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use mtproxy_proto::crypto::AesCtr;
use mtproxy_proto::faketls::{self, HelloAuth, HelloRead, RecordReader, ServerHelloParams};
use mtproxy_proto::obfs2::{self, HandshakeFrame, KeyIv, INIT_LEN};
use mtproxy_proto::opening::{self, Opening};
use mtproxy_proto::{ProtoTag, SecretKind};
use rand::RngCore;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::cover::{self, ClientOffer, CoverBook};
use crate::events::{ClientAddr, FailReason};
use crate::hints::SecretHints;
use crate::replay::ReplayCache;
use crate::snapshot::{Candidate, Snapshot, UserEntry};

/// The most bytes a handshake may read before it must have succeeded.
const MAX_HANDSHAKE_BYTES: usize = 64 * 1024;

/// A client that passed the handshake.
pub struct Authenticated {
    pub entry: Arc<UserEntry>,
    pub tag: ProtoTag,
    pub dc: i16,
    /// Decrypts the client's stream (positioned after the init). Boxed: the expanded cipher is
    /// 1 KB, and a connection task that keeps its handshake result would carry it for life.
    pub client_decrypt: Box<AesCtr>,
    /// The key of the client's stream (for the relay's compact cipher state).
    pub from_client: KeyIv,
    /// Keys for what we send to the client, from keystream offset 0.
    pub to_client: KeyIv,
    /// `Some` for fake-TLS: the record de-framer, mid-stream.
    pub tls: Option<RecordReader>,
    /// Client bytes already read past the init, decrypted.
    pub pending: Vec<u8>,
}

/// What the handshake has done so far; survives a timeout so the caller can front.
#[derive(Default)]
pub struct HandshakeState {
    /// Every byte read from the client, in order.
    pub consumed: Vec<u8>,
    /// We answered (ServerHello sent): the connection can no longer be fronted.
    pub replied: bool,
}

/// A failed handshake.
#[derive(Debug)]
pub enum Failure {
    Rejected(FailReason),
    /// The client went away or the socket failed.
    Io(io::Error),
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        Failure::Io(e)
    }
}

/// Whether `tag` is an allowed transport for `kind` (docs/protocol.md §2.6; by default each kind only
/// through its own transport).
fn transport_allowed(kind: &SecretKind, tag: ProtoTag, in_tls: bool, allow_any: bool) -> bool {
    if allow_any {
        return true;
    }
    match (kind, in_tls) {
        (SecretKind::Classic, false) => matches!(tag, ProtoTag::Abridged | ProtoTag::Intermediate),
        (SecretKind::Padded, false) => tag == ProtoTag::PaddedIntermediate,
        (SecretKind::FakeTls { .. }, true) => tag == ProtoTag::PaddedIntermediate,
        _ => false,
    }
}

async fn read_more<S: AsyncRead + Unpin>(stream: &mut S, st: &mut HandshakeState) -> Result<(), Failure> {
    if st.consumed.len() >= MAX_HANDSHAKE_BYTES {
        return Err(Failure::Rejected(FailReason::Malformed));
    }
    st.consumed.reserve(4096);
    let n = stream.read_buf(&mut st.consumed).await?;
    if n == 0 {
        return Err(Failure::Io(io::ErrorKind::UnexpectedEof.into()));
    }
    Ok(())
}

fn unix_secs(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    }
}

/// The client's address and the table of the secrets addresses used last.
#[derive(Clone, Copy)]
pub struct Origin<'a> {
    pub peer: SocketAddr,
    pub hints: &'a SecretHints,
}

/// What a handshake reads besides the configuration: the replay cache and the cover shapes.
#[derive(Clone, Copy)]
pub struct Guards<'a> {
    pub replay: &'a Mutex<ReplayCache>,
    pub covers: &'a CoverBook,
}

impl Origin<'_> {
    fn matched(&self, cand: &Candidate) {
        self.hints.remember(self.peer.ip(), cand.secret);
    }

    /// The secret search of every path: the first candidate, in [`Snapshot::search_order`] for
    /// this address, that `matches` accepts, with what it returned; `bad_secret` when none does.
    fn find<'s, T>(&self, snap: &'s Snapshot, mut matches: impl FnMut(&Candidate) -> Option<T>) -> Result<(&'s Candidate, T), FailReason> {
        snap.search_order(self.hints.get(self.peer.ip())).find_map(|c| matches(c).map(|t| (c, t))).ok_or(FailReason::BadSecret)
    }
}

/// When the handshake stage runs: the wall clock at its start, the deadline it shares with the
/// PROXY header, and the token that ends it at shutdown.
#[derive(Clone, Copy)]
pub struct When<'a> {
    pub now: SystemTime,
    pub deadline: tokio::time::Instant,
    pub close_all: &'a CancellationToken,
}

/// How a handshake stage ended without a client to relay.
pub enum Ended {
    /// Shutdown, or the client left before sending a byte: counted as closed early.
    Quiet,
    /// Failed (the connection is fronted unless the server already answered).
    Failed(FailReason),
}

/// The handshake stage: [`handshake`] within `when.deadline`, ended by `when.close_all`.
pub async fn run<R: RngCore + Send>(
    stream: &mut TcpStream,
    st: &mut HandshakeState,
    snap: &Snapshot,
    guards: Guards<'_>,
    origin: Origin<'_>,
    when: When<'_>,
    rng: &mut R,
) -> Result<Authenticated, Ended> {
    let result = tokio::select! {
        r = tokio::time::timeout_at(when.deadline, handshake(stream, st, snap, guards, origin, when.now, rng)) => r,
        _ = when.close_all.cancelled() => return Err(Ended::Quiet),
    };
    match result {
        Ok(Ok(auth)) => Ok(auth),
        Ok(Err(Failure::Io(e))) if st.consumed.is_empty() => {
            tracing::debug!(client = %ClientAddr(origin.peer), error = %e, "closed before sending anything");
            Err(Ended::Quiet)
        }
        Ok(Err(Failure::Rejected(r))) => Err(Ended::Failed(r)),
        Ok(Err(Failure::Io(_))) => Err(Ended::Failed(FailReason::Malformed)),
        Err(_) => Err(Ended::Failed(FailReason::Timeout)),
    }
}

/// Randomness from the thread's generator, drawn call by call: `rand::thread_rng()` cannot be
/// held across an `.await` in a task that may move between threads, this handle can (it is
/// empty). What the server passes to [`run`].
#[derive(Clone, Copy, Default)]
pub struct ThreadRandom;

impl RngCore for ThreadRandom {
    fn next_u32(&mut self) -> u32 {
        rand::thread_rng().next_u32()
    }
    fn next_u64(&mut self) -> u64 {
        rand::thread_rng().next_u64()
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        rand::thread_rng().fill_bytes(dest)
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand::Error> {
        rand::thread_rng().try_fill_bytes(dest)
    }
}

/// Run the server side of the handshake on `stream` for a client at `origin`; `now` is the
/// wall clock the user's state and the fake-TLS timestamp are checked against.
pub async fn handshake<S: AsyncRead + AsyncWrite + Unpin, R: RngCore>(
    stream: &mut S,
    st: &mut HandshakeState,
    snap: &Snapshot,
    guards: Guards<'_>,
    origin: Origin<'_>,
    now: SystemTime,
    rng: &mut R,
) -> Result<Authenticated, Failure> {
    loop {
        match opening::classify(&st.consumed, snap.accepts) {
            Opening::NeedMore => read_more(stream, st).await?,
            Opening::Front(why) => return Err(Failure::Rejected(fronted_reason(why, st, snap, origin, now))),
            Opening::FakeTls => return fake_tls(stream, st, snap, guards, origin, now, rng).await,
            Opening::Obfuscated2 => break,
        }
    }
    let frame = HandshakeFrame(st.consumed[..INIT_LEN].try_into().unwrap());
    let (cand, accepted) = origin.find(snap, |c| obfs2::accept(&frame, Some(&c.secret))).map_err(Failure::Rejected)?;
    origin.matched(cand);
    let key: [u8; 16] = frame.key_material()[..16].try_into().unwrap();
    let checks = Checks { transport: Some((accepted.tag, false)), replay: Some((guards.replay, key)), ..Checks::default() };
    vet_match(cand, checks, snap, now).map_err(Failure::Rejected)?;
    let pending = st.consumed[INIT_LEN..].to_vec();
    Ok(authenticated(cand, &frame, accepted, None, pending))
}

/// The log reason for an opening fronted at once. It never delays the fronting by more than
/// the secret search: when a whole obfuscated2 init arrived at a fake-TLS-only configuration
/// (an `ee` user's client that dropped the fake-TLS layer, like Telethon, or an old classic link),
/// the secrets are tried so that a right secret is logged as `bad_transport` (or the user's own
/// state), which fail2ban does not ban, and not as `malformed`, which it does.
fn fronted_reason(why: opening::NotAHandshake, st: &HandshakeState, snap: &Snapshot, origin: Origin<'_>, now: SystemTime) -> FailReason {
    if why != opening::NotAHandshake::NotTls || st.consumed.len() < INIT_LEN {
        return FailReason::Malformed;
    }
    let frame = HandshakeFrame(st.consumed[..INIT_LEN].try_into().unwrap());
    match origin.find(snap, |c| obfs2::accept(&frame, Some(&c.secret))) {
        // Fronted, so not remembered in the replay cache. A configuration that fronts a whole
        // init accepts no plain obfuscated2 transport, so the transport check always fails.
        Ok((cand, accepted)) => {
            let checks = Checks { transport: Some((accepted.tag, false)), ..Checks::default() };
            vet_match(cand, checks, snap, now).err().unwrap_or(FailReason::BadTransport)
        }
        Err(_) => FailReason::Malformed,
    }
}

/// What [`vet_match`] checks once a secret matched, besides the user's own state; `None` skips a check.
#[derive(Default)]
struct Checks<'a> {
    /// fake-TLS: the timestamp the hello was signed with and the SNI it names.
    hello: Option<(u32, Option<&'a str>)>,
    /// The transport the obfuscated2 init asks for, and whether it came inside fake-TLS.
    transport: Option<(ProtoTag, bool)>,
    /// The replay cache and the key to check and remember in it (only once every check before
    /// it passed).
    replay: Option<(&'a Mutex<ReplayCache>, [u8; 16])>,
}

/// The checks after a secret matched, in the one order every path uses, so that each path
/// logs the same [`FailReason`] for the same fault (fail2ban and the stats key on it):
///
/// ```text
/// the user's state (disabled, retired secret)  -> user_disabled / rotated_secret
/// fake-TLS: timestamp window, then SNI         -> clock_skew / bad_sni
/// transport allowed for the secret's kind      -> bad_transport
/// replay cache (checked and inserted)          -> replay
/// ```
/// fake-TLS calls it twice: for the hello (its transport is only known from the inner init,
/// after the ServerHello was sent) and for that init (the user's state passes again: same
/// candidate, same `now`).
fn vet_match(cand: &Candidate, checks: Checks<'_>, snap: &Snapshot, now: SystemTime) -> Result<(), FailReason> {
    cand.usable(now)?;
    if let Some((timestamp, sni)) = checks.hello {
        let skew = (unix_secs(now) - timestamp as i64).unsigned_abs();
        if skew > snap.config.fake_tls.max_clock_skew.as_secs() {
            return Err(FailReason::ClockSkew);
        }
        if sni.is_some_and(|sni| !snap.serves_domain(sni)) {
            return Err(FailReason::BadSni);
        }
    }
    if let Some((tag, in_tls)) = checks.transport {
        if !transport_allowed(&cand.entry.user.kind, tag, in_tls, snap.config.allow_any_transport) {
            return Err(FailReason::BadTransport);
        }
    }
    if let Some((replay, key)) = checks.replay {
        if !replay.lock().unwrap().check_and_insert(key, Instant::now()) {
            return Err(FailReason::Replay);
        }
    }
    Ok(())
}

/// The authenticated client: `pending` (stream bytes read past the init) is decrypted here.
fn authenticated(cand: &Candidate, frame: &HandshakeFrame, accepted: obfs2::Accepted, tls: Option<RecordReader>, mut pending: Vec<u8>) -> Authenticated {
    let mut client_decrypt = accepted.client_to_proxy;
    client_decrypt.apply(&mut pending);
    Authenticated {
        entry: cand.entry.clone(),
        tag: accepted.tag,
        dc: accepted.dc,
        client_decrypt: Box::new(client_decrypt),
        from_client: obfs2::derive_keys(frame, Some(&cand.secret)).initiator_to_responder,
        to_client: accepted.proxy_to_client,
        tls,
        pending,
    }
}

async fn fake_tls<S: AsyncRead + AsyncWrite + Unpin, R: RngCore>(
    stream: &mut S,
    st: &mut HandshakeState,
    snap: &Snapshot,
    guards: Guards<'_>,
    origin: Origin<'_>,
    now: SystemTime,
    rng: &mut R,
) -> Result<Authenticated, Failure> {
    let malformed = || Failure::Rejected(FailReason::Malformed);
    let (hello_len, canonical) = loop {
        match faketls::read_client_hello(&st.consumed).map_err(|_| malformed())? {
            HelloRead::Complete { consumed, canonical } => break (consumed, canonical),
            HelloRead::Incomplete => read_more(stream, st).await?,
        }
    };
    let fields = faketls::parse_hello_fields(&canonical).map_err(|_| malformed())?;
    let auth = HelloAuth::new(&canonical);
    let allow_any = snap.config.allow_any_transport;
    let (cand, timestamp) = origin
        .find(snap, |c| if allow_any || matches!(c.entry.user.kind, SecretKind::FakeTls { .. }) { auth.check(&c.secret) } else { None })
        .map_err(Failure::Rejected)?;
    origin.matched(cand);
    let key: [u8; 16] = auth.client_random()[..16].try_into().unwrap();
    let checks = Checks { hello: Some((timestamp, fields.sni.as_deref())), replay: Some((guards.replay, key)), ..Checks::default() };
    vet_match(cand, checks, snap, now).map_err(Failure::Rejected)?;

    let flight = {
        // The user's own cover domain decides the shape; a user of another kind let in through
        // fake-TLS (`allow_any_transport`) gets the shape of the domain its hello names.
        let domain = match &cand.entry.user.kind {
            SecretKind::FakeTls { domain } => Some(domain.as_str()),
            _ => fields.sni.as_deref(),
        };
        let emulation = domain.and_then(|d| guards.covers.get(d));
        let plan = cover::plan(emulation, ClientOffer { first_cipher: fields.first_cipher, offers_h2: fields.offers_h2 }, rng);
        let mut app_data = vec![0u8; plan.app_data_len];
        rng.fill_bytes(&mut app_data);
        faketls::server_hello(
            &cand.secret,
            &ServerHelloParams {
                client_random: auth.client_random(),
                session_id: &fields.session_id,
                layout: &plan.layout,
                cipher: plan.cipher,
                key_share: &plan.key_share,
                app_data: &app_data,
            },
        )
    };
    st.replied = true;
    stream.write_all(&flight).await?;

    // Data phase: de-frame records until the 64-byte obfuscated2 init is complete.
    let mut reader = RecordReader::new();
    let mut payload = st.consumed.split_off(hello_len);
    let len = payload.len();
    let n = reader.deframe_in_place(&mut payload, len).map_err(|_| malformed())?;
    payload.truncate(n);
    while payload.len() < INIT_LEN {
        let mut chunk = Vec::with_capacity(4096);
        if stream.read_buf(&mut chunk).await? == 0 {
            return Err(Failure::Io(io::ErrorKind::UnexpectedEof.into()));
        }
        let len = chunk.len();
        let n = reader.deframe_in_place(&mut chunk, len).map_err(|_| malformed())?;
        payload.extend_from_slice(&chunk[..n]);
        if payload.len() > MAX_HANDSHAKE_BYTES {
            return Err(malformed());
        }
    }
    let frame = HandshakeFrame(payload[..INIT_LEN].try_into().unwrap());
    let accepted = obfs2::accept(&frame, Some(&cand.secret)).ok_or_else(malformed)?;
    let checks = Checks { transport: Some((accepted.tag, true)), ..Checks::default() };
    vet_match(cand, checks, snap, now).map_err(Failure::Rejected)?;
    let pending = payload.split_off(INIT_LEN);
    Ok(authenticated(cand, &frame, accepted, Some(reader), pending))
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use super::*;
    use crate::config::parse_str;
    use crate::stats::Stats;

    const USERS: &str = "[users.classic]\nsecret = \"00112233445566778899aabbccddeeff\"\nkind = \"classic\"\n\
                         [users.off]\nsecret = \"33112233445566778899aabbccddeeff\"\nkind = \"classic\"\nenabled = false\n\
                         [users.ee]\nsecret = \"22112233445566778899aabbccddeeff\"\nkind = \"ee\"\ndomain = \"cover.test\"\n";
    const SIGNED_AT: u32 = 1_750_000_000;

    fn snapshot(server: &str) -> Snapshot {
        let text = format!("[server]\nlisten = [\"127.0.0.1:1\"]\n{server}{USERS}");
        Snapshot::build(parse_str(&text, Path::new("/test.toml")).unwrap(), None, &Stats::default(), &[])
    }

    fn user<'s>(snap: &'s Snapshot, name: &str) -> &'s Candidate {
        snap.search_order(None).find(|c| c.entry.user.name == name).unwrap()
    }

    fn obfs2(tag: ProtoTag, replay: &Mutex<ReplayCache>, key: u8) -> Checks<'_> {
        Checks { transport: Some((tag, false)), replay: Some((replay, [key; 16])), ..Checks::default() }
    }

    #[test]
    fn vet_match_names_the_first_failing_check_and_remembers_only_what_passed() {
        let snap = snapshot("");
        let replay = Mutex::new(ReplayCache::new(16, Duration::from_secs(600)));
        let now = UNIX_EPOCH + Duration::from_secs(SIGNED_AT.into());
        let check = |cand: &Candidate, checks: Checks<'_>| vet_match(cand, checks, &snap, now);
        let (classic, off, ee) = (user(&snap, "classic"), user(&snap, "off"), user(&snap, "ee"));
        let retired = Candidate { retired_until: Some(now), ..classic.clone() };
        let skew = snap.config.fake_tls.max_clock_skew.as_secs() as u32;
        let hello = |timestamp: u32, sni: Option<&'static str>, key: u8| Checks {
            hello: Some((timestamp, sni)),
            replay: Some((&replay, [key; 16])),
            ..Checks::default()
        };

        // The user's state comes first, whatever else is wrong.
        assert_eq!(check(off, obfs2(ProtoTag::PaddedIntermediate, &replay, 1)), Err(FailReason::UserDisabled));
        assert_eq!(check(&retired, obfs2(ProtoTag::PaddedIntermediate, &replay, 1)), Err(FailReason::RotatedSecret));
        assert_eq!(
            check(&Candidate { retired_until: Some(now + Duration::from_secs(1)), ..classic.clone() }, obfs2(ProtoTag::Intermediate, &replay, 9)),
            Ok(())
        );
        // Then the hello's clock, then its SNI.
        assert_eq!(check(ee, hello(SIGNED_AT - skew - 1, Some("other.test"), 2)), Err(FailReason::ClockSkew));
        assert_eq!(check(ee, hello(SIGNED_AT + skew + 1, None, 2)), Err(FailReason::ClockSkew));
        assert_eq!(check(ee, hello(SIGNED_AT + skew, Some("other.test"), 2)), Err(FailReason::BadSni));
        let all = Checks { hello: Some((SIGNED_AT, Some("other.test"))), transport: Some((ProtoTag::Abridged, true)), replay: Some((&replay, [2; 16])) };
        assert_eq!(check(ee, all), Err(FailReason::BadSni), "the hello before the transport");
        // Then the transport: each kind through its own.
        assert_eq!(check(classic, obfs2(ProtoTag::PaddedIntermediate, &replay, 1)), Err(FailReason::BadTransport));
        assert_eq!(check(ee, obfs2(ProtoTag::PaddedIntermediate, &replay, 1)), Err(FailReason::BadTransport));
        assert_eq!(check(ee, Checks { transport: Some((ProtoTag::Intermediate, true)), ..Checks::default() }), Err(FailReason::BadTransport));
        assert_eq!(check(ee, Checks { transport: Some((ProtoTag::PaddedIntermediate, true)), ..Checks::default() }), Ok(()));
        // Last the replay cache: none of the failures above remembered key 1 or 2.
        assert_eq!(check(classic, obfs2(ProtoTag::Intermediate, &replay, 1)), Ok(()));
        assert_eq!(check(classic, obfs2(ProtoTag::Abridged, &replay, 1)), Err(FailReason::Replay));
        assert_eq!(check(ee, hello(SIGNED_AT - skew, Some("Cover.Test"), 2)), Ok(()));
        assert_eq!(check(ee, hello(SIGNED_AT, None, 2)), Err(FailReason::Replay));
        // A check left out is not made.
        assert_eq!(check(classic, Checks::default()), Ok(()));
        assert_eq!(check(off, Checks::default()), Err(FailReason::UserDisabled));
    }

    #[test]
    fn allow_any_transport_lets_every_kind_through_every_transport() {
        let snap = snapshot("allow_any_transport = true\n");
        let now = UNIX_EPOCH + Duration::from_secs(SIGNED_AT.into());
        for (name, in_tls) in [("classic", true), ("ee", false)] {
            let checks = Checks { transport: Some((ProtoTag::PaddedIntermediate, in_tls)), ..Checks::default() };
            assert_eq!(vet_match(user(&snap, name), checks, &snap, now), Ok(()), "{name}");
        }
    }
}
