//! Ask a cover site for its TLS 1.3 first flight, the way a prober would: connect, send a
//! Telegram-like ClientHello (`tlsflight::probe_client_hello`), record every record until the
//! site stops and waits for the client, close. Each kind of hello is asked [`SAMPLES`] times, so
//! the site's own run-to-run variation (signature lengths, ticket sizes) is known.
//!
//! Nothing is decrypted and no key exchange is completed: only record types and lengths are
//! kept, which is all an observer of the wire sees.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mtproxy_proto::tlsflight::{self, Flight, FlightError, ProbeHello};
use rand::RngCore;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::cache::{CoverProfile, VariantShape};
use crate::config::HostPort;

/// Connections per kind of hello.
pub const SAMPLES: usize = 3;
/// The site is done with its flight when it sends nothing for this long.
const QUIET: Duration = Duration::from_millis(400);
/// The most bytes of a flight we keep reading.
const MAX_FLIGHT: usize = 128 * 1024;

/// Why a cover could not be learned.
#[derive(Debug, thiserror::Error)]
pub enum LearnError {
    #[error("cannot resolve {0}")]
    Resolve(String),
    #[error("cannot connect to {addr}: {source}")]
    Connect { addr: SocketAddr, source: std::io::Error },
    #[error("{addr} did not answer within {secs} s")]
    Silent { addr: SocketAddr, secs: u64 },
    #[error("{addr}: {source}")]
    Answer { addr: SocketAddr, source: FlightError },
    #[error("{addr}: {source}")]
    Io { addr: SocketAddr, source: std::io::Error },
}

/// Learn `domain` from `target` (the mask host, or the domain on 443). Each network step is
/// bounded by `timeout`.
pub async fn learn(domain: &str, target: &HostPort, timeout: Duration) -> Result<CoverProfile, LearnError> {
    let addr = resolve(target, timeout).await?;
    let mut variants = BTreeMap::new();
    // The first failure ends the lesson (a site that does not answer one hello will not answer
    // the next either, and every step costs up to `timeout`); what was learned before is kept.
    'kinds: for kind in ProbeHello::ALL {
        let mut flights = Vec::new();
        for _ in 0..SAMPLES {
            match ask(addr, domain, kind, timeout).await {
                Ok(f) => flights.push(f),
                Err(e) if variants.is_empty() && flights.is_empty() => return Err(e),
                Err(_) => {
                    if let Some(shape) = VariantShape::from_flights(&flights) {
                        variants.insert(kind.name().to_string(), shape);
                    }
                    break 'kinds;
                }
            }
        }
        if let Some(shape) = VariantShape::from_flights(&flights) {
            variants.insert(kind.name().to_string(), shape);
        }
    }
    let learned_at = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    Ok(CoverProfile { domain: domain.to_string(), target: target.to_string(), learned_at, variants })
}

async fn resolve(target: &HostPort, timeout: Duration) -> Result<SocketAddr, LearnError> {
    let lookup = tokio::net::lookup_host((target.host.as_str(), target.port));
    match tokio::time::timeout(timeout, lookup).await {
        Ok(Ok(mut addrs)) => addrs.next().ok_or_else(|| LearnError::Resolve(target.to_string())),
        _ => Err(LearnError::Resolve(target.to_string())),
    }
}

/// One connection: the flight `addr` answers a `kind` hello for `domain` with.
pub async fn ask(addr: SocketAddr, domain: &str, kind: ProbeHello, timeout: Duration) -> Result<Flight, LearnError> {
    let hello = {
        let mut rng = rand::thread_rng();
        let share = super::key_share(tlsflight::GROUP_X25519, 32, &mut rng);
        let share: [u8; 32] = share.try_into().expect("32-byte x25519 share");
        tlsflight::probe_client_hello(domain, kind, &share, &mut |b: &mut [u8]| rng.fill_bytes(b))
    };
    let mut s = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(source)) => return Err(LearnError::Connect { addr, source }),
        Err(_) => return Err(LearnError::Connect { addr, source: std::io::ErrorKind::TimedOut.into() }),
    };
    let io = |source| LearnError::Io { addr, source };
    let _ = s.set_nodelay(true);
    s.write_all(&hello).await.map_err(io)?;
    let deadline = tokio::time::Instant::now() + timeout;
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        // Wait the full deadline for the first bytes, then only `QUIET` for each next read.
        let wait_until = if buf.is_empty() { deadline } else { (tokio::time::Instant::now() + QUIET).min(deadline) };
        match tokio::time::timeout_at(wait_until, s.read(&mut chunk)).await {
            Ok(Ok(0)) => break,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Ok(Err(e)) if buf.is_empty() => return Err(io(e)),
            Ok(Err(_)) => break,
            Err(_) if buf.is_empty() => return Err(LearnError::Silent { addr, secs: timeout.as_secs().max(1) }),
            Err(_) => break,
        }
        if buf.len() >= MAX_FLIGHT || tokio::time::Instant::now() >= deadline {
            break;
        }
    }
    tlsflight::parse_flight(&buf).map_err(|source| LearnError::Answer { addr, source })
}
