//! Fuzz the replies of upstream proxies (SOCKS5 method choice, RFC 1929 status, CONNECT reply;
//! HTTP CONNECT response head): no input may panic, a complete reply never claims more bytes
//! than were given, and its strict prefixes are "incomplete", never an error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mtproxy_proto::{http_connect, socks5};

fuzz_target!(|data: &[u8]| {
    let _ = socks5::parse_method_choice(data, true);
    let _ = socks5::parse_method_choice(data, false);
    let _ = socks5::parse_auth_reply(data);
    if let Ok(Some((_, used))) = socks5::parse_connect_reply(data) {
        assert!(used <= data.len());
        for cut in 0..used {
            assert_eq!(socks5::parse_connect_reply(&data[..cut]), Ok(None));
        }
    }
    if let Ok(Some((_, used))) = http_connect::parse_response(data) {
        assert!(used <= data.len());
        for cut in 0..used {
            assert_eq!(http_connect::parse_response(&data[..cut]), Ok(None));
        }
    }
});
