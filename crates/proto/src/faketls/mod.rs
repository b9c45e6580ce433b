//! Fake-TLS (`ee` secrets): ClientHello reading and authentication, the ServerHello flight,
//! and TLS record (de)framing of the data phase (docs/protocol.md §4).
//!
//! ```text
//! client                                   proxy
//!   16 03 01 LL LL 01 ... random(32) ...  ->   HMAC-SHA256(S, hello with random zeroed)
//!                                              XOR random = 28 zero bytes || u32le(timestamp)
//!   <- 16 03 03 00 7a 02 ... server random ... | 14 03 03 00 01 01 | 17 03 03 NN <N random bytes>
//!   14 03 03 00 01 01 | 17 03 03 len <obfuscated2 stream> ...  <->  17 03 03 len <stream> ...
//! ```
//! Hellos of any real size are accepted, also when split over several handshake records; the
//! HMAC is then computed over the canonical single-record form the client signed (§4.2).
//!
//! The parts differ in who runs them and on what bytes, so each is a module of its own (all
//! re-exported here, `faketls::...` is the one path callers use):
//! * `client_hello`: the proxy's side of the client's first flight, untrusted bytes from anyone
//!   (reassembly, the fields the proxy reads, the HMAC check against every secret); fuzzed.
//! * `server_hello`: the proxy's signed answer, shaped by the cover layout it is given.
//! * `records`: the data phase's record framing, on the hot path of every `ee` connection.
//! * `client`: what a client does (sign a hello, check the answer), for the test clients, the
//!   benchmark and the cover prober; the proxy never runs it on a client's connection.

use hmac::Hmac;
use sha2::Sha256;

mod client;
mod client_hello;
mod records;
mod server_hello;

pub use client::{build_client_hello, client_hello_record, sign_client_hello, verify_server_hello};
pub use client_hello::{
    looks_like_tls, parse_hello_fields, read_client_hello, HelloAuth, HelloError, HelloFields, HelloRead, MAX_HELLO_LEN, MAX_HELLO_RECORDS,
};
pub use records::{app_data_header, RecordError, RecordReader};
pub use server_hello::{server_hello, ServerHelloParams};

type HmacSha256 = Hmac<Sha256>;

/// TLS record header length.
pub const RECORD_HEADER_LEN: usize = 5;
/// The largest record payload we send: the TLS plaintext limit, 2^14 bytes.
pub const MAX_RECORD_PAYLOAD: usize = 16384;
/// Offset and length of the random field in a (canonical) hello record, the ServerHello's too.
const RANDOM_OFFSET: usize = 11;
const RANDOM_LEN: usize = 32;

/// The dummy ChangeCipherSpec record both sides send once.
pub const CHANGE_CIPHER_SPEC: [u8; 6] = [0x14, 0x03, 0x03, 0x00, 0x01, 0x01];

/// Test vector C (docs/protocol.md §8): both sides of the handshake, each checked against the other.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;
    use crate::tlsflight::ServerHelloLayout;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s.split_whitespace().collect::<String>()).unwrap()
    }

    fn vector_c_zeroed_hello() -> Vec<u8> {
        let mut v = h("1603010200010001fc0303000000000000000000000000000000000000000000000000000000000000000020a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3
b4b5b6b7b8b9babbbcbdbebf00220a0a130113021303c02bc02fc02cc030cca9cca8c013c014009c009d002f0035000a010001912a2a000000000010000e0000
0b6578616d706c652e636f6d00170000ff01000100000a000a00084a4a001d00170018000b00020100002300000010000e000c02683208687474702f312e3100
0500050100000000000d00140012040308040401050308050501080606010201001200000033002b00294a4a000100001d0020d1113d0b4f3e212592c15e04c5
faa219054065b05658b8a7e9c22499252003e0002d00020101002b000b0a6a6a0304030303020301001b00030200023a3a000100001500cd");
        v.resize(517, 0);
        v
    }

    fn secret() -> Secret {
        Secret::from_hex("00112233445566778899aabbccddeeff").unwrap()
    }

    #[test]
    fn vector_c_client_hello_signs_and_verifies() {
        let mut hello = vector_c_zeroed_hello();
        sign_client_hello(&mut hello, &secret(), 1_700_000_000);
        assert_eq!(hello[11..43].to_vec(), h("a934d5ec78bc3fddbf0e2e14d27e06607f748580cbc551965399331ebb661bab"));
        let HelloRead::Complete { consumed, canonical } = read_client_hello(&hello).unwrap() else { panic!("complete hello expected") };
        assert_eq!(consumed, 517);
        assert_eq!(canonical, hello);
        assert_eq!(HelloAuth::new(&canonical).check(&secret()), Some(1_700_000_000));
        let other = Secret::from_hex("00112233445566778899aabbccddeefe").unwrap();
        assert_eq!(HelloAuth::new(&canonical).check(&other), None);
        let f = parse_hello_fields(&canonical).unwrap();
        assert_eq!(f.sni.as_deref(), Some("example.com"));
        assert_eq!(f.first_cipher, Some(0x1301));
        assert_eq!(f.session_id, h("a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf"));
    }

    #[test]
    fn vector_c_server_hello_flight() {
        let client_random: [u8; 32] = h("a934d5ec78bc3fddbf0e2e14d27e06607f748580cbc551965399331ebb661bab").try_into().unwrap();
        let sha = |s: &str| -> [u8; 32] {
            use sha2::Digest;
            sha2::Sha256::digest(s.as_bytes()).into()
        };
        let mut app = sha("appdata0").to_vec();
        app.extend_from_slice(&sha("appdata1"));
        let sid = h("a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf");
        let flight = server_hello(
            &secret(),
            &ServerHelloParams {
                client_random: &client_random,
                session_id: &sid,
                layout: &ServerHelloLayout::generic(0x1301),
                cipher: 0x1301,
                key_share: &sha("server x25519"),
                app_data: &app,
            },
        );
        let expected = h("160303007a020000760303394d7d037cbf3ff4cacec5c6f6048b82c97044bd37c181158d63641dfbbc863120a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3
b4b5b6b7b8b9babbbcbdbebf130100002e00330024001d002041906d290d146223410a694aea54c58babf388ef889965833476cd352dd83a2a002b0002030414
030300010117030300409fc62a6aeaccfc4ebbe039fc7865c74c8e8b30c7bdcfb25e9d658413ce5cd529feb9ebf757dd3cbb334640398cd502c449f013b25379
913c742d76e4b960b085");
        assert_eq!(flight, expected);
        assert_eq!(verify_server_hello(&secret(), &client_random, &flight), Some(flight.len()));
        let mut bad = flight.clone();
        bad[200] ^= 1;
        assert_eq!(verify_server_hello(&secret(), &client_random, &bad), None);
    }

    #[test]
    fn fragmented_hello_uses_canonical_form() {
        let mut hello = vector_c_zeroed_hello();
        sign_client_hello(&mut hello, &secret(), 1_700_000_000);
        // Split the 512-byte handshake message into records of 100, 300 and 112 bytes.
        let msg = &hello[5..];
        let mut wire = Vec::new();
        for part in [&msg[..100], &msg[100..400], &msg[400..]] {
            wire.extend_from_slice(&[0x16, 0x03, 0x01]);
            wire.extend_from_slice(&(part.len() as u16).to_be_bytes());
            wire.extend_from_slice(part);
        }
        wire.extend_from_slice(&CHANGE_CIPHER_SPEC);
        for cut in 0..wire.len() - 6 {
            assert_eq!(read_client_hello(&wire[..cut]).unwrap(), HelloRead::Incomplete, "cut {cut}");
        }
        let HelloRead::Complete { consumed, canonical } = read_client_hello(&wire).unwrap() else { panic!() };
        assert_eq!(consumed, wire.len() - 6);
        assert_eq!(canonical, hello);
    }
}
