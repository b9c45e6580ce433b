//! Fuzz the obfuscated2 init a server reads from every classic/`dd` client (docs/protocol.md §2.4),
//! trying the input's first 64 bytes against no secret and a few secrets as the server does, and
//! then decoding what follows in the announced framing as the middle-proxy path would (§3.5).
//!
//! Invariants checked beyond "no panic":
//! * an accepted init is reproduced byte for byte by `initiate` with the same secret, tag, DC id
//!   and the decrypted random bytes (accept and initiate agree on §2.2/§2.3);
//! * the two directions' keys differ from each other;
//! * packets decoded from the decrypted stream never claim more bytes than were given.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mtproxy_proto::framing::decode;
use mtproxy_proto::obfs2::{accept, derive_keys, initiate, is_valid_init_prefix, HandshakeFrame, INIT_LEN};
use mtproxy_proto::Secret;

const SECRETS: [[u8; 16]; 3] = [
    // The reference-vector secret (§8.1), which the committed seeds use.
    [0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff],
    [0x5e; 16],
    [0xa7, 0x01, 0x3c, 0x9d, 0x42, 0x00, 0xff, 0x10, 0x77, 0x8e, 0x21, 0x63, 0xb4, 0x05, 0xd9, 0x6a],
];

fuzz_target!(|data: &[u8]| {
    let Some(init) = data.get(..INIT_LEN) else { return };
    let frame = HandshakeFrame(init.try_into().unwrap());
    let _ = is_valid_init_prefix(&frame.0);
    let secrets = SECRETS.map(Secret::from_bytes);
    let candidates = std::iter::once(None).chain(secrets.iter().map(Some));
    for secret in candidates {
        let Some(mut acc) = accept(&frame, secret) else { continue };

        let keys = derive_keys(&frame, secret);
        assert_eq!(keys.responder_to_initiator, acc.proxy_to_client);
        assert_ne!(keys.initiator_to_responder, keys.responder_to_initiator);
        // Only bytes 56..64 are encrypted on the wire; the rest is the plaintext itself.
        let mut decrypted = frame.0;
        keys.initiator_to_responder.cipher().apply(&mut decrypted);
        let mut plain = frame.0;
        plain[56..].copy_from_slice(&decrypted[56..]);
        let again = initiate(plain, acc.tag, acc.dc, secret);
        assert_eq!(again.wire, frame.0, "initiate must reproduce an accepted init");

        // The rest of the input is the client's encrypted stream in the announced framing.
        let mut stream = data[INIT_LEN..].to_vec();
        acc.client_to_proxy.apply(&mut stream);
        let mut rest = &stream[..];
        while let Ok(Some((packet, used))) = decode(acc.tag, rest) {
            assert!(used <= rest.len() && used > packet.payload.len());
            rest = &rest[used..];
        }
    }
});
