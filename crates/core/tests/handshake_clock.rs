//! The handshake reads the wall clock and randomness only through its arguments
//! (`handshake::handshake`'s `now` and `rng`), so what it does is a function of the bytes, the
//! clock and the seed.

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mtproxy_core::config::parse_str;
use mtproxy_core::cover::CoverBook;
use mtproxy_core::events::FailReason;
use mtproxy_core::handshake::{handshake, Failure, Guards, HandshakeState, Origin};
use mtproxy_core::hints::SecretHints;
use mtproxy_core::replay::ReplayCache;
use mtproxy_core::snapshot::Snapshot;
use mtproxy_core::stats::Stats;
use mtproxy_proto::faketls;
use mtproxy_proto::Secret;
use mtproxy_testkit::{client_hello, three_users, S_EE};
use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SIGNED_AT: u32 = 1_750_000_000;

fn snapshot() -> Snapshot {
    let text = format!("[server]\nlisten = [\"127.0.0.1:1\"]\n{}", three_users());
    Snapshot::build(parse_str(&text, Path::new("/test.toml")).unwrap(), None, &Stats::default(), &[])
}

/// A fake-TLS hello signed at `SIGNED_AT`, answered at `now` with randomness from `seed`: what
/// the server wrote, and how the handshake ended (the client sends nothing after its hello).
async fn answer(snap: &Snapshot, hello: &[u8], now: SystemTime, seed: u64) -> (Vec<u8>, Failure) {
    let (mut client, mut server) = tokio::io::duplex(1 << 16);
    client.write_all(hello).await.unwrap();
    client.shutdown().await.unwrap();
    let replay = Mutex::new(ReplayCache::new(16, Duration::from_secs(600)));
    let (covers, hints) = (CoverBook::default(), SecretHints::default());
    let guards = Guards { replay: &replay, covers: &covers };
    let origin = Origin { peer: "192.0.2.7:40000".parse().unwrap(), hints: &hints };
    let mut st = HandshakeState::default();
    let ended = handshake(&mut server, &mut st, snap, guards, origin, now, &mut StdRng::seed_from_u64(seed)).await;
    let Err(failure) = ended else { panic!("no init was sent, yet the handshake succeeded") };
    drop(server);
    let mut written = Vec::new();
    client.read_to_end(&mut written).await.unwrap();
    (written, failure)
}

#[tokio::test]
async fn the_flight_follows_the_clock_and_the_seed() {
    let snap = snapshot();
    let mut hello = client_hello(Some("cover.test"), 600);
    faketls::sign_client_hello(&mut hello, &Secret::from_hex(S_EE).unwrap(), SIGNED_AT);
    let signed = UNIX_EPOCH + Duration::from_secs(SIGNED_AT.into());

    let (a, fa) = answer(&snap, &hello, signed, 7).await;
    let (b, _) = answer(&snap, &hello, signed + Duration::from_secs(30), 7).await;
    let (c, _) = answer(&snap, &hello, signed, 8).await;
    assert!(matches!(fa, Failure::Io(_)), "answered, then the client went away: {fa:?}");
    assert_eq!(&a[..3], [0x16, 0x03, 0x03], "a ServerHello");
    assert_eq!(a, b, "same hello and seed, clock within the window: the same flight");
    assert_ne!(a, c, "another seed: another flight");

    let late = signed + snap.config.fake_tls.max_clock_skew + Duration::from_secs(60);
    let (written, failure) = answer(&snap, &hello, late, 7).await;
    assert!(matches!(failure, Failure::Rejected(FailReason::ClockSkew)), "{failure:?}");
    assert!(written.is_empty(), "nothing answered outside the clock window");
}
