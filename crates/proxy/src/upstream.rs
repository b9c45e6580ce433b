//! Direct mode upstream: connect to the client's DC and send our own obfuscated2 init
//! (reference §2.7, no secret on this leg).
//!
//! Every address for the DC is tried in order, each within the connect timeout. With fast mode
//! the init's key material is chosen so the DC encrypts its answers with the client's key, and
//! DC->client bytes need no AES pass.

use std::io;
use std::time::Duration;

use mtproxy_proto::obfs2::{self, HandshakeFrame, KeyIv, INIT_LEN};
use mtproxy_proto::ProtoTag;
use rand::RngCore;
use tokio::net::TcpStream;

use crate::config::{DcKey, HostPort, IpPreference};
use crate::dc::{self, Target};

/// A connected DC leg.
pub struct DcLeg {
    pub stream: TcpStream,
    /// The 64 bytes to send first.
    pub init: [u8; INIT_LEN],
    /// The keystream towards the DC (the init is its first 64 bytes).
    pub to_dc: KeyIv,
    /// The DC's keystream towards us; `None` in fast mode (it is the client's).
    pub from_dc: Option<KeyIv>,
}

/// Why no DC connection could be made.
#[derive(Debug, thiserror::Error)]
#[error("no address of DC {dc} answered (last: {last})")]
pub struct UpstreamError {
    pub dc: i16,
    pub last: String,
}

async fn connect_target(t: &Target, timeout: Duration) -> io::Result<TcpStream> {
    let fut = async {
        match t {
            Target::Addr(a) => TcpStream::connect(a).await,
            Target::Name(HostPort { host, port }) => TcpStream::connect((host.as_str(), *port)).await,
        }
    };
    tokio::time::timeout(timeout, fut).await.map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))?
}

/// Connect to the DC for `dc_id` and prepare the init.
pub async fn connect(
    dc_id: i16,
    tag: ProtoTag,
    to_client: &KeyIv,
    fast_mode: bool,
    overrides: &[(DcKey, Vec<HostPort>)],
    pref: IpPreference,
    timeout: Duration,
) -> Result<DcLeg, UpstreamError> {
    let mut last = String::from("no address");
    for target in dc::targets(dc_id, overrides, pref) {
        match connect_target(&target, timeout).await {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                let (init, to_dc, from_dc) = make_init(dc_id, tag, to_client, fast_mode);
                return Ok(DcLeg { stream, init, to_dc, from_dc });
            }
            Err(e) => {
                tracing::debug!(dc = dc_id, %target, error = %e, "DC address failed");
                last = format!("{target}: {e}");
            }
        }
    }
    Err(UpstreamError { dc: dc_id, last })
}

/// The init and the keys of both directions. Keys rather than ciphers: the relay keeps them
/// compact between bursts (relay.rs).
fn make_init(dc_id: i16, tag: ProtoTag, to_client: &KeyIv, fast_mode: bool) -> ([u8; INIT_LEN], KeyIv, Option<KeyIv>) {
    let mut rng = rand::thread_rng();
    loop {
        let mut random = [0u8; INIT_LEN];
        rng.fill_bytes(&mut random);
        if fast_mode {
            random[8..56].copy_from_slice(&obfs2::fast_mode_material(to_client));
        }
        if !obfs2::is_valid_init_prefix(&random) {
            continue;
        }
        let init = obfs2::initiate(random, tag, dc_id, None);
        // Without a secret the keys are the init's plaintext bytes 8..56 (reference §2.2).
        let keys = obfs2::derive_keys(&HandshakeFrame(init.wire), None);
        let from_dc = if fast_mode { None } else { Some(keys.responder_to_initiator) };
        return (init.wire, keys.initiator_to_responder, from_dc);
    }
}
