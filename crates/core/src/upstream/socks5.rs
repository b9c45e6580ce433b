//! The SOCKS5 exchange on a connected stream (wire in `mtproxy_proto::socks5`): greeting,
//! optional RFC 1929 login, CONNECT to the DC's IP. Returns the address the server bound for
//! the connection, which is what the far side sees as our address (the middle-end handshake
//! mixes it into its keys).

use std::net::SocketAddr;

use mtproxy_proto::socks5::{self, Bound, Credentials};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::{read_reply, LegError};

/// A reply is at most 4 + 1 + 255 + 2 bytes.
const MAX_REPLY: usize = 262;

pub async fn handshake(stream: &mut TcpStream, target: SocketAddr, credentials: Option<&Credentials>) -> Result<Option<SocketAddr>, LegError> {
    stream.write_all(&socks5::greeting(credentials.is_some())).await?;
    let method = read_reply(stream, MAX_REPLY, |b| socks5::parse_method_choice(b, credentials.is_some()).map_err(LegError::Socks5)).await?;
    if method == socks5::METHOD_USER_PASS {
        let c = credentials.expect("02 is only accepted when credentials were offered");
        stream.write_all(&socks5::auth_request(c).map_err(LegError::Socks5)?).await?;
        read_reply(stream, MAX_REPLY, |b| socks5::parse_auth_reply(b).map(|o| o.map(|n| ((), n))).map_err(LegError::Socks5)).await?;
    }
    stream.write_all(&socks5::connect_request(target)).await?;
    let bound = read_reply(stream, MAX_REPLY, |b| socks5::parse_connect_reply(b).map_err(LegError::Socks5)).await?;
    Ok(match bound {
        Bound::Addr(a) => Some(a),
        Bound::Name(..) => None,
    })
}
