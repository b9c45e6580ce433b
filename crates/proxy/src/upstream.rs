//! Direct mode upstream: connect to the client's DC and send our own obfuscated2 init
//! (reference §2.7, no secret on this leg).
//!
//! Every address for the DC is tried in order, each within the connect timeout. With fast mode
//! the init's key material is chosen so the DC encrypts its answers with the client's key, and
//! DC->client bytes need no AES pass.

use std::io;
use std::time::Duration;

use mtproxy_proto::crypto::AesCtr;
use mtproxy_proto::obfs2::{self, KeyIv, INIT_LEN};
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
    /// Encrypts client bytes towards the DC (after the init).
    pub encrypt: AesCtr,
    /// Decrypts the DC's answers; `None` in fast mode (they are already in the client's key).
    pub decrypt: Option<AesCtr>,
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
                let (init, encrypt, decrypt) = make_init(dc_id, tag, to_client, fast_mode);
                return Ok(DcLeg { stream, init, encrypt, decrypt });
            }
            Err(e) => {
                tracing::debug!(dc = dc_id, %target, error = %e, "DC address failed");
                last = format!("{target}: {e}");
            }
        }
    }
    Err(UpstreamError { dc: dc_id, last })
}

fn make_init(dc_id: i16, tag: ProtoTag, to_client: &KeyIv, fast_mode: bool) -> ([u8; INIT_LEN], AesCtr, Option<AesCtr>) {
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
        let decrypt = if fast_mode { None } else { Some(init.decrypt) };
        return (init.wire, init.encrypt, decrypt);
    }
}
