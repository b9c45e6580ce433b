//! Property tests for every parser of client bytes in `mtproxy-proto`: each encoder is paired
//! with its decoder and the round trip must hold for random inputs, also when the bytes arrive
//! split at arbitrary points (TCP gives no message boundaries). The coverage-guided fuzz targets in
//! `fuzz/` complement these on arbitrary (mostly invalid) input; see `docs/fuzzing.md`.
//!
//! Case counts are kept modest (64, or `PROPTEST_CASES`) so the whole file runs in a few seconds.

use mtproxy_proto::faketls::{
    self, parse_hello_fields, read_client_hello, server_hello, sign_client_hello, verify_server_hello, HelloAuth, HelloRead, RecordReader, ServerHelloParams,
    CHANGE_CIPHER_SPEC, MAX_HELLO_RECORDS, MAX_RECORD_PAYLOAD,
};
use mtproxy_proto::framing::{decode, encode, encode_client, Packet};
use mtproxy_proto::obfs2::{accept, initiate, HandshakeFrame, INIT_LEN};
use mtproxy_proto::secret::parse_client_secret;
use mtproxy_proto::{ProtoTag, Secret, SecretKind};
use proptest::prelude::*;

fn config() -> ProptestConfig {
    // PROPTEST_CASES raises the count for a deeper sweep (docs/fuzzing.md).
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(64);
    ProptestConfig { cases, ..ProptestConfig::default() }
}

fn tag() -> impl Strategy<Value = ProtoTag> {
    prop_oneof![Just(ProtoTag::Abridged), Just(ProtoTag::Intermediate), Just(ProtoTag::PaddedIntermediate)]
}

fn secret() -> impl Strategy<Value = Secret> {
    any::<[u8; 16]>().prop_map(Secret::from_bytes)
}

/// Cut points for splitting `len` bytes into chunks: sorted, deduplicated, inside `1..len`.
fn cuts_for(len: usize, raw: &[usize]) -> Vec<usize> {
    let mut cuts: Vec<usize> = if len > 1 { raw.iter().map(|c| 1 + c % (len - 1)).collect() } else { Vec::new() };
    cuts.sort_unstable();
    cuts.dedup();
    cuts
}

/// Split `data` at `cuts` (as produced by [`cuts_for`]).
fn split_at_cuts<'a>(data: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut prev = 0;
    for &c in cuts.iter().chain(std::iter::once(&data.len())) {
        out.push(&data[prev..c]);
        prev = c;
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Framing (docs/protocol.md §3)
// ---------------------------------------------------------------------------------------------

/// One client packet as generated: payload (multiple of 4), quick-ACK bit, padding (`dd` only).
#[derive(Debug, Clone)]
struct Sent {
    payload: Vec<u8>,
    quick_ack: bool,
    padding: Vec<u8>,
}

fn sent_packet(tag: ProtoTag) -> impl Strategy<Value = Sent> {
    // Mostly short packets, some past the abridged 1-byte header limit (0x7f words = 508 bytes).
    let words = prop_oneof![3 => 0usize..0x90, 1 => 0x7e_usize..0x200];
    let pad = if tag == ProtoTag::PaddedIntermediate { 0usize..16 } else { 0usize..1 };
    (words, any::<bool>(), pad, any::<u8>()).prop_map(|(words, quick_ack, pad, seed)| Sent {
        payload: (0..words * 4).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect(),
        quick_ack,
        padding: (0..pad).map(|i| 0xa0 ^ i as u8 ^ seed).collect(),
    })
}

fn framed_stream() -> impl Strategy<Value = (ProtoTag, Vec<Sent>)> {
    tag().prop_flat_map(|t| (Just(t), prop::collection::vec(sent_packet(t), 1..8)))
}

/// What the receiver must see for a sent packet: padded intermediate keeps `body[..total & !3]`
/// (docs/protocol.md §3.3), so 4..15 padding bytes leave whole words of padding in the payload.
fn expected(tag: ProtoTag, s: &Sent) -> Packet {
    let payload = if tag == ProtoTag::PaddedIntermediate {
        let mut body = s.payload.clone();
        body.extend_from_slice(&s.padding);
        body.truncate(body.len() & !3);
        body
    } else {
        s.payload.clone()
    };
    Packet { payload, quick_ack: s.quick_ack }
}

/// A streaming decoder as the proxy would run it: append what arrived, take whole packets.
fn decode_stream(tag: ProtoTag, chunks: &[&[u8]]) -> Vec<Packet> {
    let mut buf = Vec::new();
    let mut out = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        while let Some((pkt, used)) = decode(tag, &buf).expect("valid framing must decode") {
            assert!(used <= buf.len());
            buf.drain(..used);
            out.push(pkt);
        }
    }
    assert!(buf.is_empty(), "{} bytes left undecoded", buf.len());
    out
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn framing_round_trip_in_arbitrary_chunks(
        (tag, sent) in framed_stream(),
        raw_cuts in prop::collection::vec(any::<usize>(), 0..24),
    ) {
        let mut wire = Vec::new();
        for s in &sent {
            encode_client(tag, &s.payload, &s.padding, s.quick_ack, &mut wire);
        }
        let want: Vec<Packet> = sent.iter().map(|s| expected(tag, s)).collect();
        prop_assert_eq!(&decode_stream(tag, &[&wire]), &want);
        let cuts = cuts_for(wire.len(), &raw_cuts);
        prop_assert_eq!(&decode_stream(tag, &split_at_cuts(&wire, &cuts)), &want);
    }

    #[test]
    fn framing_every_byte_boundary(tag in tag(), s in (0usize..0x90, any::<bool>(), 0usize..16)) {
        let (words, quick_ack, pad) = s;
        let payload: Vec<u8> = (0..words * 4).map(|i| i as u8).collect();
        let padding: Vec<u8> = if tag == ProtoTag::PaddedIntermediate { vec![0x5a; pad] } else { Vec::new() };
        let sent = Sent { payload, quick_ack, padding };
        let mut wire = Vec::new();
        encode_client(tag, &sent.payload, &sent.padding, quick_ack, &mut wire);
        // A second packet behind the first must not change what the first decodes to.
        let mut two = wire.clone();
        encode_client(tag, &[1, 2, 3, 4], &[], false, &mut two);
        for cut in 0..wire.len() {
            prop_assert_eq!(decode(tag, &wire[..cut]), Ok(None), "cut {}", cut);
        }
        let want = expected(tag, &sent);
        prop_assert_eq!(decode(tag, &wire), Ok(Some((want.clone(), wire.len()))));
        prop_assert_eq!(decode(tag, &two), Ok(Some((want, wire.len()))));
        // One byte at a time through the streaming decoder.
        let singles: Vec<&[u8]> = two.chunks(1).collect();
        prop_assert_eq!(decode_stream(tag, &singles).len(), 2);
    }

    /// Server->client encoding (no quick-ACK bit) decodes to the same payload.
    #[test]
    fn framing_server_encode_decodes(tag in tag(), words in 0usize..0x200) {
        let payload: Vec<u8> = (0..words * 4).map(|i| (i * 7) as u8).collect();
        let mut wire = Vec::new();
        encode(tag, &payload, &[], &mut wire);
        prop_assert_eq!(decode(tag, &wire), Ok(Some((Packet { payload, quick_ack: false }, wire.len()))));
    }

    /// Arbitrary bytes never panic and never claim more than they were given.
    #[test]
    fn framing_decode_arbitrary_bytes(tag in tag(), bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        if let Ok(Some((pkt, used))) = decode(tag, &bytes) {
            prop_assert!(used <= bytes.len());
            prop_assert!(pkt.payload.len() < used);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// obfuscated2 (docs/protocol.md §2)
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config())]

    #[test]
    fn obfs2_initiate_accept_round_trip(
        random in prop::collection::vec(any::<u8>(), INIT_LEN),
        tag in tag(),
        dc in any::<i16>(),
        secret in prop::option::of(secret()),
        wrong in secret(),
        data in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        let random: [u8; INIT_LEN] = random.try_into().unwrap();
        let mut client = initiate(random, tag, dc, secret.as_ref());
        let frame = HandshakeFrame(client.wire);
        let mut acc = accept(&frame, secret.as_ref()).expect("the right secret is accepted");
        prop_assert_eq!(acc.tag, tag);
        prop_assert_eq!(acc.dc, dc);
        // The init's plaintext part travels as is.
        prop_assert_eq!(&client.wire[..56], &random[..56]);

        // client -> proxy
        let mut c2p = data.clone();
        client.encrypt.apply(&mut c2p);
        acc.client_to_proxy.apply(&mut c2p);
        prop_assert_eq!(&c2p, &data);
        // proxy -> client
        let mut p2c = data.clone();
        acc.proxy_to_client.cipher().apply(&mut p2c);
        client.decrypt.apply(&mut p2c);
        prop_assert_eq!(&p2c, &data);

        // A different secret (or none where one was used) does not match. The tag check lets a
        // wrong key through with probability 3 / 2^32 per try: negligible for these case counts.
        if secret != Some(wrong) {
            prop_assert!(accept(&frame, Some(&wrong)).is_none());
        }
        if secret.is_some() {
            prop_assert!(accept(&frame, None).is_none());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Fake-TLS (docs/protocol.md §4)
// ---------------------------------------------------------------------------------------------

/// A syntactically complete single-record ClientHello of exactly `total` bytes, random zeroed,
/// with a session id, cipher suites (GREASE first), an SNI extension and a padding extension
/// that brings it to size (as real browsers' hellos are padded).
fn build_hello(total: usize, sid: &[u8], sni: &str) -> Vec<u8> {
    let suites: [u16; 4] = [0x0a0a, 0x1301, 0x1302, 0xc02b];
    let mut body = vec![0x03, 0x03];
    body.extend_from_slice(&[0u8; 32]);
    body.push(sid.len() as u8);
    body.extend_from_slice(sid);
    body.extend_from_slice(&((suites.len() * 2) as u16).to_be_bytes());
    for s in suites {
        body.extend_from_slice(&s.to_be_bytes());
    }
    body.extend_from_slice(&[0x01, 0x00]);
    let mut ext = Vec::new();
    let name = sni.as_bytes();
    ext.extend_from_slice(&[0x00, 0x00]);
    ext.extend_from_slice(&((name.len() + 5) as u16).to_be_bytes());
    ext.extend_from_slice(&((name.len() + 3) as u16).to_be_bytes());
    ext.push(0);
    ext.extend_from_slice(&(name.len() as u16).to_be_bytes());
    ext.extend_from_slice(name);
    let fixed = 5 + 4 + body.len() + 2 + ext.len() + 4;
    assert!(total >= fixed, "hello of {total} bytes cannot hold the fixed part ({fixed})");
    let pad = total - fixed;
    ext.extend_from_slice(&[0x00, 0x15]);
    ext.extend_from_slice(&(pad as u16).to_be_bytes());
    ext.resize(ext.len() + pad, 0);
    body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    body.extend_from_slice(&ext);
    let mut out = vec![0x16, 0x03, 0x01];
    out.extend_from_slice(&((body.len() + 4) as u16).to_be_bytes());
    out.push(0x01);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    out.extend_from_slice(&body);
    assert_eq!(out.len(), total);
    out
}

/// Re-frame a single-record hello's handshake message into several records of the given sizes
/// (the last record takes the rest). Later records use a random legal minor version.
fn fragment(hello: &[u8], sizes: &[usize], minor: u8) -> Vec<u8> {
    let msg = &hello[5..];
    let mut wire = Vec::new();
    let mut pos = 0;
    for (i, &want) in sizes.iter().enumerate() {
        if pos == msg.len() {
            break;
        }
        let last = i + 1 == sizes.len();
        let n = if last { msg.len() - pos } else { want.clamp(1, msg.len() - pos) };
        wire.extend_from_slice(&[0x16, 0x03, if i == 0 { 0x01 } else { minor }]);
        wire.extend_from_slice(&(n as u16).to_be_bytes());
        wire.extend_from_slice(&msg[pos..pos + n]);
        pos += n;
    }
    assert_eq!(pos, msg.len());
    wire
}

fn domain() -> impl Strategy<Value = String> {
    "[a-z0-9]{1,20}(\\.[a-z0-9-]{1,12}){1,3}"
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn client_hello_sign_read_check_round_trip(
        total in 517usize..16000,
        sid in prop::collection::vec(any::<u8>(), 0..=32),
        sni in domain(),
        secret in secret(),
        wrong in secret(),
        timestamp in any::<u32>(),
        record_sizes in prop::collection::vec(1usize..4000, 1..=MAX_HELLO_RECORDS),
        minor in 0u8..=4,
        raw_cuts in prop::collection::vec(any::<usize>(), 0..12),
        trailing in prop::collection::vec(any::<u8>(), 0..40),
    ) {
        let mut hello = build_hello(total, &sid, &sni);
        sign_client_hello(&mut hello, &secret, timestamp);
        // (hellos below 16000 bytes fit one record, so a single "size" is the unfragmented case)
        let wire = fragment(&hello, &record_sizes, minor);
        let mut stream = wire.clone();
        stream.extend_from_slice(&trailing);

        // Every TCP split point before the end of the hello reads as incomplete ...
        for cut in cuts_for(wire.len(), &raw_cuts) {
            prop_assert_eq!(read_client_hello(&stream[..cut]), Ok(HelloRead::Incomplete), "cut {}", cut);
        }
        // ... and the whole hello, with anything after it, is complete and canonical.
        let read = read_client_hello(&stream).unwrap();
        let HelloRead::Complete { consumed, canonical } = read else {
            return Err(TestCaseError::fail("complete hello expected"));
        };
        prop_assert_eq!(consumed, wire.len());
        prop_assert_eq!(&canonical, &hello);

        let auth = HelloAuth::new(&canonical);
        prop_assert_eq!(auth.check(&secret), Some(timestamp));
        if wrong != secret {
            prop_assert_eq!(auth.check(&wrong), None);
        }
        let fields = parse_hello_fields(&canonical).unwrap();
        prop_assert_eq!(&fields.random, auth.client_random());
        prop_assert_eq!(&fields.session_id, &sid);
        prop_assert_eq!(fields.first_cipher, Some(0x1301));
        prop_assert_eq!(fields.sni.as_deref(), Some(sni.as_str()));
    }

    /// Changing any single byte of a signed hello's message either breaks the framing or the
    /// HMAC: it never authenticates with the same timestamp.
    #[test]
    fn client_hello_tampering_is_detected(
        total in 517usize..2000,
        secret in secret(),
        timestamp in any::<u32>(),
        pos in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let mut hello = build_hello(total, &[7; 32], "www.example.com");
        sign_client_hello(&mut hello, &secret, timestamp);
        let i = pos.index(hello.len());
        hello[i] ^= flip;
        match read_client_hello(&hello) {
            Ok(HelloRead::Complete { canonical, .. }) => {
                // Flipping the low bits of the timestamp word changes only the timestamp.
                let got = HelloAuth::new(&canonical).check(&secret);
                if (39..43).contains(&i) {
                    prop_assert!(got.is_some() && got != Some(timestamp));
                } else {
                    prop_assert_eq!(got, None);
                }
            }
            Ok(HelloRead::Incomplete) | Err(_) => {}
        }
    }

    #[test]
    fn server_hello_flight_verifies(
        secret in secret(),
        wrong in secret(),
        client_random in any::<[u8; 32]>(),
        sid in prop::collection::vec(any::<u8>(), 0..=32),
        cipher in any::<u16>(),
        key_share in any::<[u8; 32]>(),
        app_data in prop::collection::vec(any::<u8>(), 0..4700),
        trailing in prop::collection::vec(any::<u8>(), 0..32),
        flip_at in any::<prop::sample::Index>(),
    ) {
        let layout = mtproxy_proto::tlsflight::ServerHelloLayout::generic(cipher);
        let params = ServerHelloParams { client_random: &client_random, session_id: &sid, layout: &layout, cipher, key_share: &key_share, app_data: &app_data };
        let flight = server_hello(&secret, &params);
        prop_assert_eq!(verify_server_hello(&secret, &client_random, &flight), Some(flight.len()));
        let mut longer = flight.clone();
        longer.extend_from_slice(&trailing);
        prop_assert_eq!(verify_server_hello(&secret, &client_random, &longer), Some(flight.len()));
        for cut in [0, 5, flight.len() / 2, flight.len() - 1] {
            prop_assert_eq!(verify_server_hello(&secret, &client_random, &flight[..cut]), None);
        }
        if wrong != secret {
            prop_assert_eq!(verify_server_hello(&wrong, &client_random, &flight), None);
        }
        let mut other_random = client_random;
        other_random[0] ^= 1;
        prop_assert_eq!(verify_server_hello(&secret, &other_random, &flight), None);
        let mut bad = flight.clone();
        let at = flip_at.index(bad.len());
        bad[at] ^= 0x40;
        prop_assert_eq!(verify_server_hello(&secret, &client_random, &bad), None);
    }
}

/// One record of the client's data phase.
#[derive(Debug, Clone)]
enum Record {
    AppData(Vec<u8>),
    ChangeCipherSpec,
}

fn record() -> impl Strategy<Value = Record> {
    prop_oneof![
        6 => prop::collection::vec(any::<u8>(), 0..600).prop_map(Record::AppData),
        1 => prop::collection::vec(any::<u8>(), 15000..=MAX_RECORD_PAYLOAD).prop_map(Record::AppData),
        1 => Just(Record::ChangeCipherSpec),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn record_reader_any_split_yields_the_payloads(
        records in prop::collection::vec(record(), 0..12),
        raw_cuts in prop::collection::vec(any::<usize>(), 0..40),
        slack in 0usize..8,
    ) {
        let mut wire = Vec::new();
        let mut want = Vec::new();
        for r in &records {
            match r {
                Record::AppData(p) => {
                    wire.extend_from_slice(&faketls::app_data_header(p.len()));
                    wire.extend_from_slice(p);
                    want.extend_from_slice(p);
                }
                Record::ChangeCipherSpec => wire.extend_from_slice(&CHANGE_CIPHER_SPEC),
            }
        }
        let cuts = cuts_for(wire.len(), &raw_cuts);
        let mut reader = RecordReader::new();
        let mut got = Vec::new();
        for part in split_at_cuts(&wire, &cuts) {
            // The read buffer may be larger than what arrived; bytes past `len` are untouched.
            let mut buf = part.to_vec();
            buf.resize(buf.len() + slack, 0xee);
            let n = reader.deframe_in_place(&mut buf, part.len()).unwrap();
            prop_assert!(n <= part.len());
            prop_assert!(buf[part.len()..].iter().all(|b| *b == 0xee));
            got.extend_from_slice(&buf[..n]);
        }
        prop_assert_eq!(got, want);
    }
}

// ---------------------------------------------------------------------------------------------
// Secrets (docs/protocol.md §1)
// ---------------------------------------------------------------------------------------------

fn kind() -> impl Strategy<Value = SecretKind> {
    prop_oneof![
        Just(SecretKind::Classic),
        Just(SecretKind::Padded),
        domain().prop_map(|domain| SecretKind::FakeTls { domain }),
        // Any non-empty UTF-8 survives the hex form.
        "\\PC{1,30}".prop_map(|domain| SecretKind::FakeTls { domain }),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn client_secret_form_round_trips(secret in secret(), kind in kind(), upper in any::<bool>()) {
        let form = secret.client_form(&kind);
        prop_assert_eq!(parse_client_secret(&form), Ok((secret, kind.clone())));
        let shouted = if upper { form.to_ascii_uppercase() } else { format!("  {form}\n") };
        prop_assert_eq!(parse_client_secret(&shouted), Ok((secret, kind)));
        prop_assert_eq!(Secret::from_hex(&secret.to_hex()), Ok(secret));
    }

    #[test]
    fn client_secret_arbitrary_text_never_panics(text in "\\PC{0,80}") {
        if let Ok((s, kind)) = parse_client_secret(&text) {
            prop_assert_eq!(parse_client_secret(&s.client_form(&kind)), Ok((s, kind)));
        }
    }
}

/// A ServerHello layout as a cover site might send it: key_share and supported_versions in
/// either order, other extensions around them, a key share of any group and length.
fn layout() -> impl Strategy<Value = mtproxy_proto::tlsflight::ServerHelloLayout> {
    use mtproxy_proto::tlsflight::{HelloExtension, ServerHelloLayout, TLS13};
    (
        any::<u16>(),
        any::<u8>(),
        any::<u16>(),
        1u16..1200,
        any::<bool>(),
        prop::collection::vec((0x0100u16..0x0200, prop::collection::vec(any::<u8>(), 0..40)), 0..3),
    )
        .prop_map(|(cipher, compression, group, len, versions_first, others)| {
            let ks = HelloExtension::KeyShare { group, len };
            let sv = HelloExtension::SupportedVersions(TLS13);
            let mut extensions = if versions_first { vec![sv, ks] } else { vec![ks, sv] };
            for (kind, body) in others {
                extensions.push(HelloExtension::Other { kind, body });
            }
            ServerHelloLayout { cipher, compression, extensions }
        })
}

proptest! {
    #![proptest_config(config())]

    /// What the proxy sends in a learned layout is read back as that layout by the same parser
    /// that learns covers, with one encrypted record, and verifies as a client verifies it.
    #[test]
    fn a_shaped_flight_reads_back_as_its_layout(
        layout in layout(),
        secret in secret(),
        client_random in any::<[u8; 32]>(),
        app_len in 0usize..16640,
        cut in any::<prop::sample::Index>(),
    ) {
        let (_, share_len) = layout.key_share().unwrap();
        let share = vec![0x5au8; share_len as usize];
        let app = vec![0xa5u8; app_len];
        let flight = server_hello(&secret, &ServerHelloParams { client_random: &client_random, session_id: &[7; 32], layout: &layout, cipher: layout.cipher, key_share: &share, app_data: &app });
        let parsed = mtproxy_proto::tlsflight::parse_flight(&flight).unwrap();
        prop_assert_eq!(&parsed.layout, &layout);
        prop_assert!(parsed.change_cipher_spec);
        prop_assert_eq!(parsed.encrypted, vec![app_len]);
        prop_assert_eq!(parsed.session_id_len, 32);
        prop_assert_eq!(verify_server_hello(&secret, &client_random, &flight), Some(flight.len()));
        // A flight still arriving never reads as more than it is.
        if let Ok(part) = mtproxy_proto::tlsflight::parse_flight(&flight[..cut.index(flight.len())]) {
            prop_assert_eq!(part.layout, layout);
            prop_assert!(part.encrypted.is_empty());
        }
    }

    /// The opening classifier never panics and waits only while an init can still arrive.
    #[test]
    fn openings_are_classified_without_waiting_past_an_init(
        data in prop::collection::vec(any::<u8>(), 0..200),
        tls in any::<bool>(),
        obfs in any::<bool>(),
    ) {
        use mtproxy_proto::opening::{classify, Accepts, Opening};
        let verdict = classify(&data, Accepts { fake_tls: tls, obfuscated2: obfs });
        if verdict == Opening::NeedMore {
            prop_assert!(data.len() < INIT_LEN || data.is_empty());
        }
        if !tls && !obfs && !data.is_empty() {
            prop_assert!(matches!(verdict, Opening::Front(_)));
        }
    }
}
