//! Fuzz the fake-TLS ClientHello path the server runs on the first bytes of a connection
//! (docs/protocol.md §4.1-§4.2): `read_client_hello`, then `parse_hello_fields` and `HelloAuth::check`
//! on the canonical form.
//!
//! Invariants checked beyond "no panic":
//! * `consumed` never exceeds the input, and the canonical form is a well-formed single record
//!   (`16 03 01`, record length = handshake length + 4, type ClientHello);
//! * the canonical form of a hello that fits one record reads back as itself (fixed point);
//! * the verdict is monotone in the input: a cut just before the end of a complete hello, or any
//!   prefix of an incomplete one, is `Incomplete`; more bytes never turn an error into something
//!   else, and never change a complete result;
//! * a hello that authenticates with a secret is exactly what `sign_client_hello` produces for
//!   that secret and timestamp (the seeds are signed with the first secret below);
//! * parsed fields agree with the bytes (random at offset 11, session id at most 32 bytes).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mtproxy_proto::faketls::{parse_hello_fields, read_client_hello, sign_client_hello, HelloAuth, HelloRead, MAX_RECORD_PAYLOAD};
use mtproxy_proto::Secret;

const SECRETS: [[u8; 16]; 3] = [
    // The reference-vector secret (§8), which the committed seeds are signed with.
    [0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff],
    [0x5e; 16],
    [0xa7, 0x01, 0x3c, 0x9d, 0x42, 0x00, 0xff, 0x10, 0x77, 0x8e, 0x21, 0x63, 0xb4, 0x05, 0xd9, 0x6a],
];

fuzz_target!(|data: &[u8]| {
    // The parser of the canonical form is public too: it must survive arbitrary bytes.
    let _ = parse_hello_fields(data);

    let verdict = read_client_hello(data);
    match &verdict {
        Ok(HelloRead::Complete { consumed, canonical }) => {
            let (consumed, canonical) = (*consumed, canonical.clone());
            assert!(consumed <= data.len());
            assert_eq!(canonical[..3], [0x16, 0x03, 0x01]);
            assert_eq!(u16::from_be_bytes([canonical[3], canonical[4]]) as usize, canonical.len() - 5);
            assert_eq!(canonical[5], 0x01);
            let hs_len = u32::from_be_bytes([0, canonical[6], canonical[7], canonical[8]]) as usize;
            assert_eq!(hs_len + 9, canonical.len());
            assert!(canonical.len() >= 44);

            // Cutting the last byte leaves the last record unfinished.
            assert_eq!(read_client_hello(&data[..consumed - 1]), Ok(HelloRead::Incomplete));
            // What follows the hello does not matter.
            assert_eq!(read_client_hello(&data[..consumed]), verdict);
            if canonical.len() - 5 <= MAX_RECORD_PAYLOAD {
                assert_eq!(read_client_hello(&canonical), Ok(HelloRead::Complete { consumed: canonical.len(), canonical: canonical.clone() }));
            }

            let auth = HelloAuth::new(&canonical);
            assert_eq!(auth.client_random()[..], canonical[11..43]);
            for s in SECRETS.map(Secret::from_bytes) {
                if let Some(ts) = auth.check(&s) {
                    let mut resigned = canonical.clone();
                    sign_client_hello(&mut resigned, &s, ts);
                    assert_eq!(resigned, canonical, "a hello that authenticates must be the signed one");
                }
            }
            if let Ok(fields) = parse_hello_fields(&canonical) {
                assert_eq!(&fields.random, auth.client_random());
                assert!(fields.session_id.len() <= 32);
                if let Some(c) = fields.first_cipher {
                    assert!(!((c & 0x0f0f) == 0x0a0a && (c >> 8) == (c & 0xff)), "GREASE picked as cipher");
                }
            }
        }
        Ok(HelloRead::Incomplete) => {
            assert_eq!(read_client_hello(&data[..data.len() / 2]), Ok(HelloRead::Incomplete));
        }
        Err(e) => {
            let mut longer = data.to_vec();
            longer.extend_from_slice(&[0x16, 0x03, 0x01, 0x00, 0x10]);
            assert_eq!(read_client_hello(&longer), Err(*e), "more bytes changed an error");
        }
    }
});
