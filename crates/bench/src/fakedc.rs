//! The fake DC, run as its own process (`bench fake-dc PORT`) so that its sockets and CPU are
//! not counted against the client's file limit or the proxy's CPU.
//!
//! It accepts any obfuscated2 init without a secret (what the proxy sends a DC, docs/protocol.md §2.7),
//! then reads a 9-byte command from the decrypted stream:
//!
//! ```text
//! 'E' n      echo every later byte, decrypted and re-encrypted, forever
//! 'S' n      sink: read n more bytes, then send one encrypted byte 'K' (all arrived)
//! 'D' n      source: send n bytes, then stay quiet until the peer closes
//! ```
//! Bulk bytes in 'S' and 'D' are not passed through AES here: to the proxy they are ciphertext
//! like any other, and skipping the work keeps the benchmark's own CPU off the shared cores.

use std::io;
use std::sync::Arc;

use mtproxy_proto::obfs2::{self, HandshakeFrame, INIT_LEN};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Length of the command that follows the init.
pub const CMD_LEN: usize = 9;
/// Bulk write size of the source mode.
const CHUNK: usize = 65536;

/// Build a command.
pub fn command(op: u8, n: u64) -> [u8; CMD_LEN] {
    let mut c = [0u8; CMD_LEN];
    c[0] = op;
    c[1..].copy_from_slice(&n.to_le_bytes());
    c
}

/// Serve on `listener` until the process is killed.
pub async fn run(listener: TcpListener) {
    let mut noise = vec![0u8; CHUNK];
    rand::Rng::fill(&mut rand::thread_rng(), &mut noise[..]);
    let noise: Arc<[u8]> = noise.into();
    loop {
        match listener.accept().await {
            Ok((s, _)) => {
                let noise = noise.clone();
                tokio::spawn(async move {
                    let _ = serve_one(s, noise).await;
                });
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
        }
    }
}

async fn serve_one(mut s: TcpStream, noise: Arc<[u8]>) -> io::Result<()> {
    s.set_nodelay(true)?;
    let mut init = [0u8; INIT_LEN];
    s.read_exact(&mut init).await?;
    let acc = obfs2::accept(&HandshakeFrame(init), None).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad init"))?;
    let mut dec = acc.client_to_proxy;
    let mut enc = acc.proxy_to_client.cipher();
    let mut cmd = [0u8; CMD_LEN];
    s.read_exact(&mut cmd).await?;
    dec.apply(&mut cmd);
    let n = u64::from_le_bytes(cmd[1..].try_into().unwrap());
    match cmd[0] {
        b'E' => loop {
            // No buffer while idle: wait for readiness, then read what is there.
            s.readable().await?;
            let mut buf = Vec::with_capacity(CHUNK);
            match s.try_read_buf(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(_) => {
                    dec.apply(&mut buf);
                    enc.apply(&mut buf);
                    s.write_all(&buf).await?;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        },
        b'S' => {
            let mut left = n;
            let mut buf = vec![0u8; CHUNK];
            while left > 0 {
                let got = s.read(&mut buf).await?;
                if got == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                left = left.saturating_sub(got as u64);
            }
            let mut ack = [b'K'];
            enc.apply(&mut ack);
            s.write_all(&ack).await?;
            drain(&mut s).await
        }
        b'D' => {
            let mut left = n as usize;
            while left > 0 {
                let take = left.min(CHUNK);
                s.write_all(&noise[..take]).await?;
                left -= take;
            }
            drain(&mut s).await
        }
        _ => Err(io::Error::new(io::ErrorKind::InvalidData, "unknown command")),
    }
}

async fn drain(s: &mut TcpStream) -> io::Result<()> {
    let mut buf = [0u8; 512];
    while s.read(&mut buf).await? > 0 {}
    Ok(())
}
