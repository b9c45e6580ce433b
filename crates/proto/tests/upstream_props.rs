//! Property tests for the upstream proxies' reply parsers (`socks5`, `http_connect`): any bytes
//! a misbehaving upstream may send give a value, "incomplete" or a named error, never a panic;
//! a reply that parses claims no more bytes than it was given, and every strict prefix of it is
//! "incomplete" (TCP delivers it in pieces). The fuzz target `upstream_reply` covers the same
//! parsers with coverage guidance.

use mtproxy_proto::http_connect::{self, parse_response};
use mtproxy_proto::socks5::{connect_request, parse_auth_reply, parse_connect_reply, parse_method_choice, Bound};
use proptest::prelude::*;
use std::net::SocketAddr;

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256);
    ProptestConfig { cases, ..ProptestConfig::default() }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn socks5_parsers_never_panic(data in proptest::collection::vec(any::<u8>(), 0..64), creds in any::<bool>()) {
        let _ = parse_method_choice(&data, creds);
        let _ = parse_auth_reply(&data);
        if let Ok(Some((_, used))) = parse_connect_reply(&data) {
            prop_assert!(used <= data.len());
            for cut in 0..used {
                prop_assert_eq!(parse_connect_reply(&data[..cut]), Ok(None));
            }
        }
    }

    #[test]
    fn socks5_success_reply_round_trips(addr in any::<SocketAddr>(), tail in proptest::collection::vec(any::<u8>(), 0..8)) {
        // The wire carries no IPv6 scope or flow label.
        let addr = SocketAddr::new(addr.ip(), addr.port());
        // A reply is a request with CMD replaced by REP 00: reuse the encoder for the layout.
        let mut reply = connect_request(addr);
        reply[1] = 0;
        let len = reply.len();
        reply.extend_from_slice(&tail);
        prop_assert_eq!(parse_connect_reply(&reply), Ok(Some((Bound::Addr(addr), len))));
    }

    #[test]
    fn http_parser_never_panics(data in proptest::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(Some((code, used))) = parse_response(&data) {
            prop_assert!((200..300).contains(&code));
            prop_assert!(used <= data.len());
        }
    }

    #[test]
    fn http_head_split_anywhere(code in 200u16..300, reason in "[A-Za-z ]{0,20}", headers in proptest::collection::vec("[A-Za-z-]{1,10}: [a-z0-9]{0,10}", 0..4), cut in any::<usize>()) {
        let mut head = format!("HTTP/1.1 {code} {reason}\r\n");
        for h in &headers {
            head.push_str(h);
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        let b = head.as_bytes();
        let cut = cut % b.len();
        prop_assert_eq!(parse_response(&b[..cut]), Ok(None));
        prop_assert_eq!(parse_response(b), Ok(Some((code, b.len()))));
        prop_assert!(b.len() <= http_connect::MAX_RESPONSE_HEAD);
    }
}
