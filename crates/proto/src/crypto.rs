//! The one cipher of the data path: AES-256 in CTR mode with a 128-bit big-endian counter
//! (docs/protocol.md §0; OpenSSL `EVP_aes_256_ctr`). One keystream per direction lives for the whole
//! connection and is applied to bytes in arrival order, whatever the packet or record boundaries.

use aes::cipher::{KeyIvInit, StreamCipher, StreamCipherSeek};

/// AES-256-CTR keystream, 128-bit big-endian counter. CTR only ever runs the block cipher
/// forwards, so this is the encrypt-only AES (`Aes256Enc`): its key schedule skips the
/// decryption round keys `aes::Aes256` also derives, about 30 % of the cost of a fresh cipher,
/// which the proxy makes per handshake candidate and per relayed burst (docs/performance.md).
pub struct AesCtr(ctr::Ctr128BE<aes::Aes256Enc>);

impl AesCtr {
    /// A keystream at offset 0.
    pub fn new(key: &[u8; 32], iv: &[u8; 16]) -> Self {
        AesCtr(ctr::Ctr128BE::<aes::Aes256Enc>::new(key.into(), iv.into()))
    }

    /// XOR the next `data.len()` keystream bytes into `data` (encrypt and decrypt are the same).
    #[inline]
    pub fn apply(&mut self, data: &mut [u8]) {
        self.0.apply_keystream(data);
    }

    /// Move to an absolute keystream offset.
    pub fn seek(&mut self, offset: u64) {
        self.0.seek(offset);
    }
}

impl std::fmt::Debug for AesCtr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.write_str("AesCtr(..)")
    }
}
