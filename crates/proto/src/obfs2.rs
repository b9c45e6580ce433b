//! obfuscated2: the 64-byte init and the AES-256-CTR stream keys (docs/protocol.md §2).
//!
//! ```text
//! offset  0      8                      40           56    60   62   64
//!         | rand | key seed (c->s, 32)   | iv (c->s)  | tag | dc | rnd |
//!         '---------- plaintext on the wire ----------'------ encrypted -----'
//! key_cs = SHA256(P[8:40] || S)   iv_cs = P[40:56]            (no SHA step without a secret)
//! R = rev(P[8:56]);  key_sc = SHA256(R[0:32] || S)   iv_sc = R[32:48]
//! ```
//! The tag is the only authenticator: a server tries every secret until the decrypted
//! `P[56:60]` is one of the three known tags.

use crate::crypto::AesCtr;
use crate::secret::Secret;
use sha2::{Digest, Sha256};

/// Length of the init packet.
pub const INIT_LEN: usize = 64;

/// The MTProto transport framing a connection uses, announced by the init's tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProtoTag {
    /// `ef ef ef ef`
    Abridged,
    /// `ee ee ee ee`
    Intermediate,
    /// `dd dd dd dd`
    PaddedIntermediate,
}

impl ProtoTag {
    pub fn from_bytes(b: [u8; 4]) -> Option<Self> {
        match b {
            [0xef, 0xef, 0xef, 0xef] => Some(ProtoTag::Abridged),
            [0xee, 0xee, 0xee, 0xee] => Some(ProtoTag::Intermediate),
            [0xdd, 0xdd, 0xdd, 0xdd] => Some(ProtoTag::PaddedIntermediate),
            _ => None,
        }
    }

    pub fn to_bytes(self) -> [u8; 4] {
        match self {
            ProtoTag::Abridged => [0xef; 4],
            ProtoTag::Intermediate => [0xee; 4],
            ProtoTag::PaddedIntermediate => [0xdd; 4],
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ProtoTag::Abridged => "abridged",
            ProtoTag::Intermediate => "intermediate",
            ProtoTag::PaddedIntermediate => "padded",
        }
    }
}

/// The 64 bytes of an init packet, as received or as built, with named fields.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct HandshakeFrame(pub [u8; INIT_LEN]);

impl HandshakeFrame {
    /// `P[8:40]`: the client->server key seed.
    pub fn key_seed(&self) -> &[u8; 32] {
        self.0[8..40].try_into().unwrap()
    }
    /// `P[40:56]`: the client->server IV.
    pub fn iv(&self) -> &[u8; 16] {
        self.0[40..56].try_into().unwrap()
    }
    /// `P[8:56]`: the 48 random bytes that make each connection's keys unique (the replay key).
    pub fn key_material(&self) -> &[u8; 48] {
        self.0[8..56].try_into().unwrap()
    }
    /// `rev(P[8:56])`, whose `[0:32]` and `[32:48]` seed the server->client direction.
    fn reversed_material(&self) -> [u8; 48] {
        let mut r = *self.key_material();
        r.reverse();
        r
    }
}

impl std::fmt::Debug for HandshakeFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HandshakeFrame(..)")
    }
}

/// Key and IV of one direction.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct KeyIv {
    pub key: [u8; 32],
    pub iv: [u8; 16],
}

impl KeyIv {
    pub fn cipher(&self) -> AesCtr {
        AesCtr::new(&self.key, &self.iv)
    }
}

impl std::fmt::Debug for KeyIv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyIv(..)")
    }
}

/// Both directions' keys: `initiator_to_responder` is client->server (the init sender encrypts,
/// the receiver decrypts), `responder_to_initiator` the reverse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamKeys {
    pub initiator_to_responder: KeyIv,
    pub responder_to_initiator: KeyIv,
}

/// Derive both directions' keys from an init (docs/protocol.md §2.2). `secret` is `None` between the
/// proxy and a DC.
pub fn derive_keys(frame: &HandshakeFrame, secret: Option<&Secret>) -> StreamKeys {
    let r = frame.reversed_material();
    let key_for = |seed: &[u8]| -> [u8; 32] {
        match secret {
            Some(s) => {
                let mut h = Sha256::new();
                h.update(seed);
                h.update(s.as_bytes());
                h.finalize().into()
            }
            None => seed.try_into().unwrap(),
        }
    };
    StreamKeys {
        initiator_to_responder: KeyIv { key: key_for(frame.key_seed()), iv: *frame.iv() },
        responder_to_initiator: KeyIv { key: key_for(&r[..32]), iv: r[32..48].try_into().unwrap() },
    }
}

/// An accepted init: what the client asked for and the ciphers to continue with.
#[derive(Debug)]
pub struct Accepted {
    pub tag: ProtoTag,
    /// Signed DC id (negative: media; 10000+n: test DC; 0: unspecified), docs/protocol.md §2.5.
    pub dc: i16,
    /// Decrypts what the client sends next (already at keystream offset 64).
    pub client_to_proxy: AesCtr,
    /// The keys the proxy encrypts towards the client with, from offset 0.
    pub proxy_to_client: KeyIv,
}

/// Try to accept an init with one secret (docs/protocol.md §2.4). `None` when the decrypted tag is not
/// one of the three known tags, i.e. the secret does not match.
pub fn accept(frame: &HandshakeFrame, secret: Option<&Secret>) -> Option<Accepted> {
    // Derive only the client->server key first: most candidates fail the tag check, and each
    // costs one SHA-256 and one AES block that way.
    let key = match secret {
        Some(s) => {
            let mut h = Sha256::new();
            h.update(frame.key_seed());
            h.update(s.as_bytes());
            h.finalize().into()
        }
        None => *frame.key_seed(),
    };
    let mut dec = AesCtr::new(&key, frame.iv());
    // Decrypt only the 8 encrypted trailing bytes: seek to keystream offset 56.
    let mut tail: [u8; 8] = frame.0[56..64].try_into().unwrap();
    dec.seek(56);
    dec.apply(&mut tail);
    let tag = ProtoTag::from_bytes(tail[0..4].try_into().unwrap())?;
    let dc = i16::from_le_bytes([tail[4], tail[5]]);
    let keys = derive_keys(frame, secret);
    Some(Accepted { tag, dc, client_to_proxy: dec, proxy_to_client: keys.responder_to_initiator })
}

/// True when 64 random bytes may start an init on plain TCP (docs/protocol.md §2.1 generator rules).
pub fn is_valid_init_prefix(p: &[u8; INIT_LEN]) -> bool {
    if p[0] == 0xef {
        return false;
    }
    let first = u32::from_le_bytes(p[0..4].try_into().unwrap());
    const FORBIDDEN: [u32; 7] = [0x44414548, 0x54534f50, 0x20544547, 0x4954504f, 0xdddddddd, 0xeeeeeeee, 0x02010316];
    if FORBIDDEN.contains(&first) {
        return false;
    }
    p[4..8] != [0, 0, 0, 0]
}

/// An init we send (towards a DC, or as a test client) and the ciphers for the stream after it.
#[derive(Debug)]
pub struct Initiated {
    /// The 64 bytes to put on the wire.
    pub wire: [u8; INIT_LEN],
    /// Encrypts what we send after the init (keystream offset 64).
    pub encrypt: AesCtr,
    /// Decrypts what the other side sends (offset 0).
    pub decrypt: AesCtr,
}

/// Build an init (docs/protocol.md §2.3). `random` must satisfy [`is_valid_init_prefix`] (callers draw
/// again when it does not); the tag and DC id are written into it.
pub fn initiate(random: [u8; INIT_LEN], tag: ProtoTag, dc: i16, secret: Option<&Secret>) -> Initiated {
    let mut p = random;
    p[56..60].copy_from_slice(&tag.to_bytes());
    p[60..62].copy_from_slice(&dc.to_le_bytes());
    let frame = HandshakeFrame(p);
    let keys = derive_keys(&frame, secret);
    let mut encrypt = keys.initiator_to_responder.cipher();
    let mut c = p;
    encrypt.apply(&mut c);
    let mut wire = p;
    wire[56..64].copy_from_slice(&c[56..64]);
    Initiated { wire, encrypt, decrypt: keys.responder_to_initiator.cipher() }
}

/// "Fast mode" material (docs/protocol.md §2.7): the `P[8:56]` that makes a DC encrypt its answers with
/// exactly `towards_client`, so DC->client bytes can be forwarded without re-encryption.
pub fn fast_mode_material(towards_client: &KeyIv) -> [u8; 48] {
    let mut m = [0u8; 48];
    m[..32].copy_from_slice(&towards_client.key);
    m[32..].copy_from_slice(&towards_client.iv);
    m.reverse();
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s.split_whitespace().collect::<String>()).unwrap()
    }

    fn vector_a_random() -> [u8; 64] {
        let mut r = [0u8; 64];
        for (i, b) in r.iter_mut().enumerate() {
            *b = 0x10 + i as u8;
        }
        r
    }

    #[test]
    fn vector_a_client_init_keys_and_frames() {
        let secret = Secret::from_hex("00112233445566778899aabbccddeeff").unwrap();
        let init = initiate(vector_a_random(), ProtoTag::PaddedIntermediate, 2, Some(&secret));
        assert_eq!(
            init.wire.to_vec(),
            h("101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f
               303132333435363738393a3b3c3d3e3f40414243444546476301d3a574f041e5")
        );
        let keys = derive_keys(&HandshakeFrame(init.wire), Some(&secret));
        assert_eq!(keys.initiator_to_responder.key.to_vec(), h("f09ba711d8b8d612f93461cbb5fa9139ede7594555bf05ddde68348290f3186b"));
        assert_eq!(keys.responder_to_initiator.key.to_vec(), h("0fbea166674b18e0442d08dfe3aa5a92ff18374f1b7d4d17dbf13dd1a357f5b4"));
        assert_eq!(keys.responder_to_initiator.iv.to_vec(), h("27262524232221201f1e1d1c1b1a1918"));

        // Server side accepts the wire bytes and decrypts the first frame (offset 64).
        let mut acc = accept(&HandshakeFrame(init.wire), Some(&secret)).unwrap();
        assert_eq!(acc.tag, ProtoTag::PaddedIntermediate);
        assert_eq!(acc.dc, 2);
        let mut frame = h("297b88835b4f58473d212b94ef49716dc40e8153338f72b1f6b86076c5483bbc64b637487583924dcf0c7363680eff");
        acc.client_to_proxy.apply(&mut frame);
        assert_eq!(frame, h("2b00000000000000000000004a967027c47ae55114000000f18e7ebe3e0549828cca27e966b301a48fece2fcaabbcc"));

        // Proxy -> client, S->C stream from offset 0.
        let mut out = h("28000000404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f6061626364656667");
        acc.proxy_to_client.cipher().apply(&mut out);
        assert_eq!(out, h("349b9bcde17ad54dddec790402cdbb009ff47568b3979bdb68fae026cf0414f4f50b157f358aa6ef5b48d82d"));
    }

    #[test]
    fn vector_b_proxy_to_dc_init() {
        let mut r = [0u8; 64];
        for (i, b) in r.iter_mut().enumerate() {
            *b = 0x80 + i as u8;
        }
        let mut init = initiate(r, ProtoTag::PaddedIntermediate, 2, None);
        assert_eq!(
            init.wire.to_vec(),
            h("808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f
               a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7d6b446450fd75d00")
        );
        let mut frame = h("2b00000000000000000000004a967027c47ae55114000000f18e7ebe3e0549828cca27e966b301a48fece2fcaabbcc");
        init.encrypt.apply(&mut frame);
        assert_eq!(frame, h("f30f5da6dd8c0d0a7a6b355c38a47d9a8244fc648f8571d38f7b12aa4b2c8c6eda175cd53f2e4cd3bfc2d93d616ac7"));
        let keys = derive_keys(&HandshakeFrame(init.wire), None);
        assert_eq!(keys.responder_to_initiator.key.to_vec(), h("b7b6b5b4b3b2b1b0afaeadacabaaa9a8a7a6a5a4a3a2a1a09f9e9d9c9b9a9998"));
    }

    #[test]
    fn wrong_secret_is_not_accepted() {
        let secret = Secret::from_hex("00112233445566778899aabbccddeeff").unwrap();
        let other = Secret::from_hex("ffeeddccbbaa99887766554433221100").unwrap();
        let init = initiate(vector_a_random(), ProtoTag::Abridged, -3, Some(&secret));
        assert!(accept(&HandshakeFrame(init.wire), Some(&other)).is_none());
        let acc = accept(&HandshakeFrame(init.wire), Some(&secret)).unwrap();
        assert_eq!((acc.tag, acc.dc), (ProtoTag::Abridged, -3));
    }

    #[test]
    fn fast_mode_makes_dc_use_client_keys() {
        let secret = Secret::from_hex("00112233445566778899aabbccddeeff").unwrap();
        let client = initiate(vector_a_random(), ProtoTag::Intermediate, 2, Some(&secret));
        let acc = accept(&HandshakeFrame(client.wire), Some(&secret)).unwrap();
        let mut r = [0x55u8; 64];
        r[8..56].copy_from_slice(&fast_mode_material(&acc.proxy_to_client));
        let dc_init = initiate(r, ProtoTag::Intermediate, 2, None);
        let dc_keys = derive_keys(&HandshakeFrame(dc_init.wire), None);
        assert_eq!(dc_keys.responder_to_initiator, acc.proxy_to_client);
    }

    #[test]
    fn generator_rules() {
        let mut p = [1u8; 64];
        assert!(is_valid_init_prefix(&p));
        p[0] = 0xef;
        assert!(!is_valid_init_prefix(&p));
        p[0..4].copy_from_slice(b"GET ");
        assert!(!is_valid_init_prefix(&p));
        p[0..4].copy_from_slice(&[0x16, 0x03, 0x01, 0x02]);
        assert!(!is_valid_init_prefix(&p));
        p[0..4].copy_from_slice(&[1, 2, 3, 4]);
        p[4..8].copy_from_slice(&[0; 4]);
        assert!(!is_valid_init_prefix(&p));
    }
}
