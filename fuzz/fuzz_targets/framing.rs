//! Fuzz the MTProto transport framings (docs/protocol.md §3) the middle-proxy path cuts the decrypted
//! client stream with. The first input byte picks the framing; the rest is the stream, decoded
//! packet after packet until it needs more bytes or is refused.
//!
//! Invariants checked beyond "no panic":
//! * every decoded packet consumes at least its header and payload and at most what is there;
//! * re-encoding a decoded packet (with its quick-ACK bit and, for padded intermediate, the
//!   padding that followed the payload) gives back exactly the consumed bytes: the decoder
//!   accepts only the canonical encoding;
//! * a packet decodes the same whatever follows it; an error stays the same error when more
//!   bytes arrive; "need more" stays "need more" for a shorter cut.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mtproxy_proto::framing::{decode, encode_client, MAX_PACKET};
use mtproxy_proto::ProtoTag;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, mut rest)) = data.split_first() else { return };
    let tag = match selector % 3 {
        0 => ProtoTag::Abridged,
        1 => ProtoTag::Intermediate,
        _ => ProtoTag::PaddedIntermediate,
    };
    let mut packets = 0usize;
    loop {
        match decode(tag, rest) {
            Ok(Some((packet, used))) => {
                assert!(used <= rest.len());
                assert!(used > packet.payload.len(), "a packet has a header");
                assert!(packet.payload.len() <= MAX_PACKET);
                assert_eq!(packet.payload.len() % 4, 0);
                let header = if tag == ProtoTag::Abridged && packet.payload.len() < 0x7f * 4 { 1 } else { 4 };
                let padding = &rest[header + packet.payload.len()..used];
                if tag != ProtoTag::PaddedIntermediate {
                    assert!(padding.is_empty());
                }
                let mut again = Vec::new();
                encode_client(tag, &packet.payload, padding, packet.quick_ack, &mut again);
                assert_eq!(again, rest[..used], "re-encoding must be byte-identical");
                assert_eq!(decode(tag, &rest[..used]), Ok(Some((packet, used))));
                rest = &rest[used..];
                packets += 1;
            }
            Ok(None) => {
                assert_eq!(decode(tag, &rest[..rest.len() / 2]), Ok(None));
                break;
            }
            Err(e) => {
                let mut longer = rest.to_vec();
                longer.extend_from_slice(&[0u8; 8]);
                assert_eq!(decode(tag, &longer), Err(e));
                break;
            }
        }
    }
    assert!(packets <= data.len());
});
