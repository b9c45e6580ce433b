//! AES-256-CBC for the RPC channel with the IV carried across packets for the connection's
//! lifetime (docs/protocol.md §5.4: one state per direction, IV carried across packets). Callers pass whole
//! 16-byte blocks; the framing layer pads each flush with `04 00 00 00` words first.

use aes::cipher::{BlockDecrypt, BlockEncrypt, KeyInit};
use aes::{Aes256, Block};

use super::keys::ChannelKey;

pub const BLOCK: usize = 16;

/// Encrypting direction.
pub struct CbcEncrypt {
    cipher: Aes256,
    iv: [u8; 16],
}

/// Decrypting direction.
pub struct CbcDecrypt {
    cipher: Aes256,
    iv: [u8; 16],
}

impl CbcEncrypt {
    pub fn new(k: &ChannelKey) -> Self {
        CbcEncrypt { cipher: Aes256::new(&k.key.into()), iv: k.iv }
    }

    /// Encrypt `data` in place; `data.len()` must be a multiple of 16 (checked: the rest is
    /// left untouched and reported by the return value, which is the number of bytes processed).
    pub fn encrypt(&mut self, data: &mut [u8]) -> usize {
        let whole = data.len() / BLOCK * BLOCK;
        for chunk in data[..whole].chunks_exact_mut(BLOCK) {
            for (b, v) in chunk.iter_mut().zip(self.iv.iter()) {
                *b ^= v;
            }
            let block = Block::from_mut_slice(chunk);
            self.cipher.encrypt_block(block);
            self.iv.copy_from_slice(chunk);
        }
        whole
    }
}

impl CbcDecrypt {
    pub fn new(k: &ChannelKey) -> Self {
        CbcDecrypt { cipher: Aes256::new(&k.key.into()), iv: k.iv }
    }

    /// Decrypt the whole blocks at the front of `data` in place; returns how many bytes that was.
    pub fn decrypt(&mut self, data: &mut [u8]) -> usize {
        let whole = data.len() / BLOCK * BLOCK;
        for chunk in data[..whole].chunks_exact_mut(BLOCK) {
            let mut next_iv = [0u8; 16];
            next_iv.copy_from_slice(chunk);
            self.cipher.decrypt_block(Block::from_mut_slice(chunk));
            for (b, v) in chunk.iter_mut().zip(self.iv.iter()) {
                *b ^= v;
            }
            self.iv = next_iv;
        }
        whole
    }
}

impl std::fmt::Debug for CbcEncrypt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CbcEncrypt(..)")
    }
}

impl std::fmt::Debug for CbcDecrypt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CbcDecrypt(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// NIST SP 800-38A F.2.5 (CBC-AES256.Encrypt), blocks 1-2, processed in two calls to show
    /// the IV is carried from one call to the next.
    #[test]
    fn nist_sp800_38a_carried_iv() {
        let k = ChannelKey {
            key: hex::decode("603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4").unwrap().try_into().unwrap(),
            iv: hex::decode("000102030405060708090a0b0c0d0e0f").unwrap().try_into().unwrap(),
        };
        let plain = hex::decode("6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51").unwrap();
        let mut enc = CbcEncrypt::new(&k);
        let mut data = plain.clone();
        assert_eq!(enc.encrypt(&mut data[..16]), 16);
        assert_eq!(enc.encrypt(&mut data[16..]), 16);
        assert_eq!(hex::encode(&data), "f58c4c04d6e5f1ba779eabfb5f7bfbd69cfc4e967edb808d679f777bc6702c7d");
        let mut dec = CbcDecrypt::new(&k);
        assert_eq!(dec.decrypt(&mut data[..16]), 16);
        assert_eq!(dec.decrypt(&mut data[16..]), 16);
        assert_eq!(data, plain);
        // A partial block is left alone.
        let mut short = [1u8; 20];
        assert_eq!(enc.encrypt(&mut short), 16);
        assert_eq!(short[16..], [1, 1, 1, 1]);
    }
}
