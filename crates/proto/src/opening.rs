//! What the first bytes of a connection can still become: the classifier behind instant
//! fronting.
//!
//! A prober learns the most from *when* a server answers. A real web site answers a plain
//! `GET /` at once; a proxy that waits for a 64-byte obfuscated2 init before it gives up holds
//! the same request for its whole handshake timeout, and that delay alone tells it apart. So
//! every read is classified as soon as it arrives:
//!
//! ```text
//! bytes so far            accepted kinds        verdict
//! 16 03 01 ..             fake-TLS              FakeTls (the ClientHello reader rejects the
//!                                               rest of a bad record as soon as it is read)
//! prefix of 16 03 01      fake-TLS              NeedMore
//! anything else           fake-TLS only         Front
//! >= 64 bytes             obfuscated2           Obfuscated2 (the decode decides)
//! < 64, a forbidden       obfuscated2           Front: an opening no obfuscated2 client
//!   opening (§2.1) or an                        generates (0xef, HEAD/POST/GET /OPTI, the
//!   HTTP request line                           tags, 16 03 01 02, zero bytes 4..8) or text
//! < 64, anything else     obfuscated2           NeedMore (until the handshake timeout)
//! anything                nothing               Front
//! ```
//!
//! Why a forbidden opening is only judged below 64 bytes: iOS clients test the forbidden list
//! against the encrypted first word, so a real iOS init can start with one (docs/protocol.md §2.1).
//! Real clients write the whole 64-byte init at once, so it arrives in one segment and is
//! decoded before anything is fronted; only a short opening is judged by its first bytes.

use crate::obfs2::INIT_LEN;

/// Which handshakes the configuration accepts right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepts {
    /// Some enabled user can connect through fake-TLS.
    pub fake_tls: bool,
    /// Some enabled user can connect through plain obfuscated2 (classic or dd).
    pub obfuscated2: bool,
}

/// Why an opening cannot be a handshake of any accepted kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotAHandshake {
    /// The configuration accepts no handshake at all (no enabled user).
    NothingAccepted,
    /// Not a TLS record, and only fake-TLS is accepted.
    NotTls,
    /// An opening that obfuscated2 clients never generate (docs/protocol.md §2.1).
    ForbiddenOpening,
    /// A plain-text request line (`GET /`, `CONNECT host:443 HTTP/1.1`, ...).
    PlainText,
}

/// The verdict on the bytes read so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opening {
    /// Could still become a valid handshake: read more.
    NeedMore,
    /// A TLS ClientHello record starts here.
    FakeTls,
    /// A whole obfuscated2 init is here: try every secret on it.
    Obfuscated2,
    /// Cannot become a valid handshake: hand it to the mask host now.
    Front(NotAHandshake),
}

const TLS_HELLO_PREFIX: [u8; 3] = [0x16, 0x03, 0x01];

/// First words an obfuscated2 generator must reject (docs/protocol.md §2.1), little-endian.
const FORBIDDEN_FIRST_WORDS: [u32; 7] = [0x4441_4548, 0x5453_4f50, 0x2054_4547, 0x4954_504f, 0xdddd_dddd, 0xeeee_eeee, 0x0201_0316];

/// Classify the first bytes of a connection for a configuration that accepts `accepts`.
pub fn classify(first: &[u8], accepts: Accepts) -> Opening {
    if first.is_empty() {
        return Opening::NeedMore;
    }
    if !accepts.fake_tls && !accepts.obfuscated2 {
        return Opening::Front(NotAHandshake::NothingAccepted);
    }
    let n = first.len().min(TLS_HELLO_PREFIX.len());
    let tls_so_far = first[..n] == TLS_HELLO_PREFIX[..n];
    if accepts.fake_tls && tls_so_far {
        return if n == TLS_HELLO_PREFIX.len() { Opening::FakeTls } else { Opening::NeedMore };
    }
    if !accepts.obfuscated2 {
        return Opening::Front(NotAHandshake::NotTls);
    }
    if first.len() >= INIT_LEN {
        return Opening::Obfuscated2;
    }
    if is_forbidden_opening(first) {
        return Opening::Front(NotAHandshake::ForbiddenOpening);
    }
    if looks_like_request_line(first) {
        return Opening::Front(NotAHandshake::PlainText);
    }
    Opening::NeedMore
}

/// True when the bytes so far already show an opening no obfuscated2 client generates.
pub fn is_forbidden_opening(first: &[u8]) -> bool {
    if first.first() == Some(&0xef) {
        return true;
    }
    if first.len() >= 4 {
        let word = u32::from_le_bytes(first[..4].try_into().unwrap());
        if FORBIDDEN_FIRST_WORDS.contains(&word) {
            return true;
        }
    }
    first.len() >= 8 && first[4..8] == [0, 0, 0, 0]
}

/// True for the start of a text protocol's request line: 3 to 16 upper-case letters and a space
/// (`GET `, `CONNECT `, `PRI ` of HTTP/2's preface...). A random init starts so with a chance
/// below 10^-5, and real inits arrive whole, so this never fronts a client.
fn looks_like_request_line(first: &[u8]) -> bool {
    let letters = first.iter().take_while(|b| b.is_ascii_uppercase()).count();
    (3..=16).contains(&letters) && first.get(letters) == Some(&b' ')
}

#[cfg(test)]
mod tests {
    use super::*;

    const EE_ONLY: Accepts = Accepts { fake_tls: true, obfuscated2: false };
    const OBFS_ONLY: Accepts = Accepts { fake_tls: false, obfuscated2: true };
    const BOTH: Accepts = Accepts { fake_tls: true, obfuscated2: true };

    #[test]
    fn fake_tls_only_fronts_every_non_tls_opening_at_once() {
        for probe in [&b"GET / HTTP/1.1\r\n"[..], b"\x00", b"\x17\x03\x03\x00\x10", b"\x16\x03\x03", b"\x16\x02", b"SSH-2.0-OpenSSH_9.2\r\n"] {
            assert_eq!(classify(probe, EE_ONLY), Opening::Front(NotAHandshake::NotTls), "{probe:?}");
        }
        assert_eq!(classify(b"\x16", EE_ONLY), Opening::NeedMore);
        assert_eq!(classify(b"\x16\x03", EE_ONLY), Opening::NeedMore);
        assert_eq!(classify(b"\x16\x03\x01", EE_ONLY), Opening::FakeTls);
        assert_eq!(classify(&[0x16, 0x03, 0x01, 0x02, 0x00], EE_ONLY), Opening::FakeTls);
    }

    #[test]
    fn forbidden_and_text_openings_are_fronted_in_every_configuration() {
        for accepts in [OBFS_ONLY, BOTH] {
            assert_eq!(classify(b"\xef", accepts), Opening::Front(NotAHandshake::ForbiddenOpening));
            for verb in [&b"HEAD"[..], b"POST", b"GET ", b"OPTI", b"\xdd\xdd\xdd\xdd", b"\xee\xee\xee\xee"] {
                assert_eq!(classify(verb, accepts), Opening::Front(NotAHandshake::ForbiddenOpening), "{verb:?}");
            }
            assert_eq!(classify(b"\x01\x02\x03\x04\x00\x00\x00\x00", accepts), Opening::Front(NotAHandshake::ForbiddenOpening));
            assert_eq!(classify(b"CONNECT example.com:443 HTTP/1.1\r\n\r\n", accepts), Opening::Front(NotAHandshake::PlainText));
            assert_eq!(classify(b"PUT /x HTTP/1.1\r\n", accepts), Opening::Front(NotAHandshake::PlainText));
        }
        // Without fake-TLS users a TLS record header is a forbidden opening too.
        assert_eq!(classify(b"\x16\x03\x01\x02", OBFS_ONLY), Opening::Front(NotAHandshake::ForbiddenOpening));
    }

    #[test]
    fn partial_input_that_can_still_be_an_init_waits() {
        let random = [0x5a, 0x91, 0x07, 0xc3, 0x44, 0x18, 0xfe, 0x02, 0x77];
        for n in 1..random.len() {
            assert_eq!(classify(&random[..n], BOTH), Opening::NeedMore, "{n} bytes");
        }
        // Upper-case letters without the space yet: still could be anything.
        assert_eq!(classify(b"GE", OBFS_ONLY), Opening::NeedMore);
        assert_eq!(classify(b"ABCD", OBFS_ONLY), Opening::NeedMore);
    }

    #[test]
    fn a_whole_init_is_always_decoded_even_when_it_starts_like_a_forbidden_word() {
        let mut init = [0x41u8; INIT_LEN];
        init[..4].copy_from_slice(b"GET ");
        assert_eq!(classify(&init, OBFS_ONLY), Opening::Obfuscated2);
        init[0] = 0xef;
        assert_eq!(classify(&init, BOTH), Opening::Obfuscated2);
    }

    #[test]
    fn nothing_accepted_fronts_everything() {
        let none = Accepts { fake_tls: false, obfuscated2: false };
        assert_eq!(classify(b"\x16\x03\x01", none), Opening::Front(NotAHandshake::NothingAccepted));
        assert_eq!(classify(b"", none), Opening::NeedMore);
    }
}
