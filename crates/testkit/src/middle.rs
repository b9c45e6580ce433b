//! Test helpers for the middle-proxy path, shared by the in-process tests: the files that point
//! the proxy at fake middle-ends ([`MeFiles`]), and MTProto transport packets sent through it by
//! a [`Client`] (an unencrypted `req_pq_multi`, and "encrypted" packets the fake middle-end
//! echoes, see [`crate::fake_me`]).

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use mtproxy_proto::{framing, ProtoTag};

use crate::fake_me::REQ_PQ_MULTI;
use crate::Client;

/// A 128-byte proxy secret (the middle-end channel's master key) for tests.
pub fn proxy_secret() -> Vec<u8> {
    let mut s = vec![0xc4, 0xf9, 0xfa, 0xca];
    s.extend((0..124).map(|i| (i * 7 + 3) as u8));
    s
}

/// The proxy secret and `proxy-multi.conf` as local files in a temporary folder of their own, and the `[promoted_channel]` section that reads them (no fetch).
pub struct MeFiles {
    dir: tempfile::TempDir,
}

impl MeFiles {
    /// Files for DC cluster 2 served by the middle-ends at `me`.
    pub fn new(secret: &[u8], me: &[SocketAddr]) -> MeFiles {
        let files = MeFiles { dir: tempfile::tempdir().expect("a temporary folder") };
        std::fs::write(files.path("secret"), secret).unwrap();
        files.point_at(me);
        files
    }

    /// Rewrite `proxy-multi.conf` so cluster 2 is served by `me`.
    pub fn point_at(&self, me: &[SocketAddr]) {
        let mut conf = String::from("default 2;\n");
        for a in me {
            conf.push_str(&format!("proxy_for 2 {a};\n"));
        }
        std::fs::write(self.path("proxy-multi.conf"), conf).unwrap();
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The `[promoted_channel]` section: `ad_tag` when given, these files, IPv4 only,
    /// `connections_per_dc` connections per cluster.
    pub fn section(&self, ad_tag: Option<&str>, connections_per_dc: u32) -> String {
        format!(
            "[promoted_channel]\n{}proxy_secret_url = \"{}\"\nproxy_config_url = \"{}\"\nproxy_config_v6_url = \"off\"\ncache_dir = \"{}\"\nconnections_per_dc = {connections_per_dc}\n",
            ad_tag.map(|t| format!("ad_tag = \"{t}\"\n")).unwrap_or_default(),
            self.path("secret").display(),
            self.path("proxy-multi.conf").display(),
            self.path("cache").display()
        )
    }
}

/// An unencrypted req_pq_multi (auth_key_id 0, msg_id, length 20, constructor, nonce).
pub fn req_pq_multi(nonce: [u8; 16]) -> Vec<u8> {
    let mut m = vec![0u8; 8];
    m.extend_from_slice(&0x51e57ac42770964au64.to_le_bytes());
    m.extend_from_slice(&20u32.to_le_bytes());
    m.extend_from_slice(&REQ_PQ_MULTI.to_le_bytes());
    m.extend_from_slice(&nonce);
    m
}

/// An "encrypted" packet: a non-zero auth_key_id, which the fake middle-end echoes.
pub fn encrypted(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(13).wrapping_add(seed) | 1).collect()
}

/// Send one packet in `tag`'s framing (padded intermediate with 3 padding bytes).
pub async fn send_packet(c: &mut Client, tag: ProtoTag, payload: &[u8], quick_ack: bool) -> io::Result<()> {
    let mut out = Vec::new();
    let pad: &[u8] = if tag == ProtoTag::PaddedIntermediate { &[0xaa, 0xbb, 0xcc] } else { &[] };
    framing::encode_client(tag, payload, pad, quick_ack, &mut out);
    c.send(&out).await
}

/// Read one packet in `tag`'s framing (within 5 s) and return its payload; the proxy's framing
/// must be valid and exactly one packet long.
pub async fn recv_packet(c: &mut Client, tag: ProtoTag) -> io::Result<Vec<u8>> {
    let fut = async {
        let mut head = c.recv(1).await?;
        if tag != ProtoTag::Abridged || head[0] == 0x7f {
            head.extend(c.recv(3).await?);
        }
        let len = match tag {
            ProtoTag::Abridged if head[0] < 0x7f => head[0] as usize * 4,
            ProtoTag::Abridged => u32::from_le_bytes([head[1], head[2], head[3], 0]) as usize * 4,
            _ => (u32::from_le_bytes(head[..4].try_into().unwrap()) & 0x7fff_ffff) as usize,
        };
        head.extend(c.recv(len).await?);
        Ok::<_, io::Error>(head)
    };
    let bytes = tokio::time::timeout(Duration::from_secs(5), fut).await.map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no packet within 5 s"))??;
    let invalid = |m: &str| io::Error::new(io::ErrorKind::InvalidData, m.to_string());
    let (pkt, used) = framing::decode(tag, &bytes).map_err(|_| invalid("invalid framing from the proxy"))?.ok_or_else(|| invalid("not a whole packet"))?;
    if used != bytes.len() {
        return Err(invalid("bytes after the packet"));
    }
    Ok(pkt.payload)
}
