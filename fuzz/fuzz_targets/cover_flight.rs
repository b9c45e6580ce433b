//! Fuzz what cover-site emulation reads from the network and from the first bytes of a client
//! (crates/proto/src/tlsflight.rs, opening.rs): a real site's TLS flight, and the verdict on a
//! connection's opening.
//!
//! Invariants checked beyond "no panic":
//! * a flight that parses can be rebuilt: the fake-TLS flight built with its ServerHello layout
//!   (`faketls::server_hello`) parses back to the same layout, with a ChangeCipherSpec and one
//!   encrypted record of the collapsed length, and verifies as a client verifies it;
//! * the collapsed length never exceeds the TLS record limit;
//! * `opening::classify`: a verdict of `FakeTls` stays `FakeTls` whatever follows, 64 bytes or
//!   more are never `NeedMore` unless they start like a TLS record, and nothing accepted means
//!   every non-empty opening is fronted.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mtproxy_proto::faketls::{server_hello, verify_server_hello, ServerHelloParams};
use mtproxy_proto::opening::{classify, Accepts, Opening};
use mtproxy_proto::tlsflight::{parse_flight, MAX_CIPHERTEXT_RECORD};
use mtproxy_proto::Secret;

fuzz_target!(|data: &[u8]| {
    if let Ok(flight) = parse_flight(data) {
        let collapsed = flight.collapsed_len();
        assert!(collapsed <= MAX_CIPHERTEXT_RECORD);
        if flight.layout.extensions_len() <= 8192 {
            let share = vec![0x42u8; flight.layout.key_share().map(|(_, l)| l as usize).unwrap_or(0)];
            let app = vec![0u8; collapsed];
            let secret = Secret::from_bytes([9; 16]);
            let random = [3u8; 32];
            let built = server_hello(
                &secret,
                &ServerHelloParams {
                    client_random: &random,
                    session_id: &[1; 32],
                    layout: &flight.layout,
                    cipher: flight.layout.cipher,
                    key_share: &share,
                    app_data: &app,
                },
            );
            if built.len() <= 5 + 0xffff {
                let again = parse_flight(&built).expect("a flight we build parses");
                assert_eq!(again.layout, flight.layout);
                assert!(again.change_cipher_spec);
                assert_eq!(again.encrypted, vec![collapsed]);
                assert_eq!(verify_server_hello(&secret, &random, &built), Some(built.len()));
            }
        }
    }
    for accepts in [
        Accepts { fake_tls: true, obfuscated2: true },
        Accepts { fake_tls: true, obfuscated2: false },
        Accepts { fake_tls: false, obfuscated2: true },
        Accepts { fake_tls: false, obfuscated2: false },
    ] {
        let verdict = classify(data, accepts);
        if verdict == Opening::FakeTls {
            let mut longer = data.to_vec();
            longer.extend_from_slice(b"more bytes");
            assert_eq!(classify(&longer, accepts), Opening::FakeTls);
        }
        if data.len() >= 64 && verdict == Opening::NeedMore {
            panic!("64 bytes and still waiting: {:02x?}", &data[..8]);
        }
        if !accepts.fake_tls && !accepts.obfuscated2 && !data.is_empty() {
            assert!(matches!(verdict, Opening::Front(_)));
        }
    }
});
