//! The middle-proxy (ME) RPC protocol, docs/protocol.md §5: what the proxy speaks to Telegram's
//! middle-end servers when an ad tag is configured (the only way a promoted channel is shown).
//!
//! ```text
//! proxy                                   middle-end (ME)
//!   -- frame(seq -2, RPC_NONCE)  plain -->
//!   <-- frame(seq -2, RPC_NONCE) plain ---
//!        both derive AES-256-CBC keys from the nonces, the proxy secret and both addresses (keys)
//!   == frame(seq -1, RPC_HANDSHAKE) CBC ==>
//!   <== frame(seq -1, RPC_HANDSHAKE) CBC ==
//!   == frame(seq 0.., RPC_PROXY_REQ{conn id, flags, ad tag, client packet}) ==>
//!   <== frame(seq 0.., RPC_PROXY_ANS / RPC_SIMPLE_ACK / RPC_CLOSE_EXT / RPC_PING) ==
//! ```
//! Pure functions only (no socket, clock or randomness): [`keys`] derives the channel keys,
//! [`cbc`] is the CBC state with the IV carried across packets, [`frame`] the length/seq/CRC32
//! framing, [`msg`] the message layouts, [`conf`] the `proxy-multi.conf` parser. Both sides
//! are here, so the test tree's fake middle-end uses the same code paths as the proxy but in the
//! other role.

pub mod cbc;
pub mod conf;
pub mod frame;
pub mod input;
pub mod keys;
pub mod msg;

#[cfg(test)]
mod tests {
    use super::cbc::{CbcDecrypt, CbcEncrypt};
    use super::frame::{pad_to_block, FrameReader, FrameWriter};
    use super::keys::{self, derive, Purpose};
    use super::msg::{Handshake, HandshakeReply, Nonce, PID_PLACEHOLDER};

    /// docs/protocol.md §8.4: the proxy's RPC_NONCE frame, then its RPC_HANDSHAKE framed (seq −1),
    /// padded with one `04000000` word to 48 bytes and encrypted with the CLIENT key/IV. The
    /// expected bytes are docs/protocol.md's (independent Python implementation; the same code
    /// completed a handshake with the official binary). The middle-end side decrypts them back.
    #[test]
    fn vector_d_nonce_and_encrypted_handshake() {
        let input = keys::tests::input_v4();
        let mut w = FrameWriter::default();
        let mut out = Vec::new();
        let nonce = Nonce { key_select: [0xc4, 0xf9, 0xfa, 0xca], schema: 1, ts: input.clt_ts, nonce: input.nonce_clt };
        w.write(&nonce.encode(), &mut out);
        assert_eq!(hex::encode(&out), "2c000000feffffffaa87cb7ac4f9faca01000000ef78195b1831356fc60aebb4e6705c4e01c96a69e36670f5");

        let mut out = Vec::new();
        let hs = Handshake { flags: 0, sender_pid: PID_PLACEHOLDER, peer_pid: PID_PLACEHOLDER };
        w.write(&hs.encode(), &mut out);
        pad_to_block(&mut out, 0);
        assert_eq!(hex::encode(&out), "2c000000fffffffff5ee827600000000495049505052504454494d45495049505052504454494d4502761d8104000000");
        CbcEncrypt::new(&derive(Purpose::Client, &input)).encrypt(&mut out);
        assert_eq!(hex::encode(&out), "79fc5b766ff7ca56a8a4692ca6da2cc5c913d720601bb5c2e5130ffd64f547620e5b5d243a1d6db1f8b29c98c535d353");

        // The middle-end's view: decrypt with the same CLIENT key, read frames from seq −1.
        CbcDecrypt::new(&derive(Purpose::Client, &input)).decrypt(&mut out);
        let mut r = FrameReader::new(-1);
        let (payload, used) = r.decode(&out).unwrap().unwrap();
        assert_eq!(used, 44);
        assert_eq!(Handshake::parse(&payload).unwrap(), HandshakeReply::Ok(hs));
        assert_eq!(r.decode(&out[used..]).unwrap(), None);
    }
}
