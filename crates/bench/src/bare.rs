//! The reference relay (`bench bare-relay ADDR DC_ADDR WORKERS BUF`): tokio, copy both ways, no
//! crypto, no handshake. Whatever the proxy spends beyond this plus its two AES passes is
//! overhead. Run as its own process so its CPU and memory are read the same way as the proxy's.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};

/// `buf`: copy buffer per direction (tokio's default is 8 KB).
pub async fn run(listener: TcpListener, dc: SocketAddr, buf: usize) {
    loop {
        let Ok((mut c, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            continue;
        };
        tokio::spawn(async move {
            let _ = c.set_nodelay(true);
            let Ok(mut d) = TcpStream::connect(dc).await else { return };
            let _ = d.set_nodelay(true);
            let _ = tokio::io::copy_bidirectional_with_sizes(&mut c, &mut d, buf, buf).await;
        });
    }
}
