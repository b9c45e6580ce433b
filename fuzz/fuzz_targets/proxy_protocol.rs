//! Fuzz the PROXY protocol v1/v2 parser: no input may panic, a complete header never claims
//! more bytes than were given, and feeding the same bytes in two pieces never turns a valid
//! header into an error (the I/O layer parses again after every read).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mtproxy_proto::proxy_protocol::{parse, Parsed};

fuzz_target!(|data: &[u8]| {
    let whole = parse(data);
    if let Ok(Parsed::Complete { len, .. }) = whole {
        assert!(len <= data.len());
        // Every strict prefix of a complete header is incomplete, never an error.
        for cut in 0..len {
            assert_eq!(parse(&data[..cut]), Ok(Parsed::Incomplete), "prefix of {cut} bytes");
        }
    }
});
