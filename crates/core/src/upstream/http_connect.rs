//! The HTTP CONNECT exchange on a connected stream (wire in `mtproxy_proto::http_connect`).
//! The proxy does not tell which address it connects from, so a middle-end reached this way
//! sees an address we cannot know (see `middle::conn`).

use std::net::SocketAddr;

use mtproxy_proto::http_connect;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::{read_reply, Credentials, LegError};

pub async fn handshake(stream: &mut TcpStream, target: SocketAddr, credentials: Option<&Credentials>) -> Result<(), LegError> {
    let auth = credentials.map(|c| (c.username.as_str(), c.password.as_str()));
    stream.write_all(&http_connect::connect_request(target, auth)).await?;
    read_reply(stream, http_connect::MAX_RESPONSE_HEAD + 1, |b| http_connect::parse_response(b).map_err(LegError::Http)).await?;
    Ok(())
}
