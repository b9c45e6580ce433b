//! The receiving side of one RPC connection as a sans-I/O state machine: bytes in, frames out.
//!
//! Both ends of the middle-proxy channel read the same way (docs/protocol.md §5.3, §5.4): plain
//! frames until the nonce exchange, then AES-256-CBC over whole 16-byte blocks with the IV
//! carried across packets, and the frames inside. The proxy's middle-end connection and the test
//! tree's fake middle-end both drive this one type from their socket loops, so the decryption
//! and the buffering exist once.
//!
//! ```text
//! socket bytes -> push() -> [cipher on? whole blocks decrypted, the rest kept] -> plain
//!                 next_frame() <- FrameReader::decode(plain)
//! ```

use super::cbc::{CbcDecrypt, BLOCK};
use super::frame::{FrameError, FrameReader};

/// Received bytes of one connection, decrypted once a key is set, cut into frames.
#[derive(Default)]
pub struct FrameInput {
    /// Decrypted (or still plain) bytes not yet consumed by a frame.
    plain: Vec<u8>,
    /// Encrypted bytes short of a whole block.
    raw: Vec<u8>,
    cipher: Option<CbcDecrypt>,
    frames: FrameReader,
}

impl FrameInput {
    /// The next whole frame's payload, or `Ok(None)` until more bytes are pushed.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        Ok(self.frames.decode(&self.plain)?.map(|(payload, used)| {
            self.plain.drain(..used);
            payload
        }))
    }

    /// Bytes as read from the socket.
    pub fn push(&mut self, bytes: &[u8]) {
        match &mut self.cipher {
            None => self.plain.extend_from_slice(bytes),
            Some(dec) => {
                self.raw.extend_from_slice(bytes);
                let whole = self.raw.len() / BLOCK * BLOCK;
                dec.decrypt(&mut self.raw[..whole]);
                self.plain.extend_from_slice(&self.raw[..whole]);
                self.raw.drain(..whole);
            }
        }
    }

    /// From now on every pushed byte is CBC-encrypted (after the nonce exchange). Bytes already
    /// pushed stay as they were: the peer encrypts only what it sends after its nonce.
    pub fn decrypt_with(&mut self, cipher: CbcDecrypt) {
        self.cipher = Some(cipher);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpc::cbc::CbcEncrypt;
    use crate::rpc::frame::{pad_to_block, FrameWriter};
    use crate::rpc::keys::ChannelKey;

    #[test]
    fn plain_then_encrypted_frames_in_any_split() {
        let key = ChannelKey { key: [7; 32], iv: [9; 16] };
        let mut w = FrameWriter::default();
        let mut wire = Vec::new();
        w.write(b"nonce-paylod", &mut wire);
        let plain_len = wire.len();
        let mut enc_part = Vec::new();
        w.write(b"handshake-rq", &mut enc_part);
        w.write(&[0x5a; 100], &mut enc_part);
        pad_to_block(&mut enc_part, 0);
        CbcEncrypt::new(&key).encrypt(&mut enc_part);
        wire.extend_from_slice(&enc_part);

        for step in [1, 3, 16, 17, wire.len()] {
            let mut input = FrameInput::default();
            let mut got = Vec::new();
            let mut feed = |input: &mut FrameInput, part: &[u8]| {
                for chunk in part.chunks(step) {
                    input.push(chunk);
                    while let Some(p) = input.next_frame().unwrap() {
                        got.push(p);
                    }
                }
            };
            feed(&mut input, &wire[..plain_len]);
            // Both ends set the key once the plain nonce frame was read.
            input.decrypt_with(CbcDecrypt::new(&key));
            feed(&mut input, &wire[plain_len..]);
            assert_eq!(got, vec![b"nonce-paylod".to_vec(), b"handshake-rq".to_vec(), vec![0x5a; 100]], "step {step}");
        }
    }

    #[test]
    fn broken_framing_is_an_error_not_a_wait() {
        let mut input = FrameInput::default();
        input.push(&[0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0]);
        assert!(matches!(input.next_frame(), Err(FrameError::BadLength(_))));
    }
}
