//! Micro-benchmarks of the data path's hot functions (docs/performance.md): the AES-256-CTR
//! transform, TLS record framing and de-framing, and the handshake match over N users
//! (obfuscated2 tag check and fake-TLS HMAC check, the matching user last: the worst case).

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use mtproxy_proto::crypto::AesCtr;
use mtproxy_proto::faketls::{self, HelloAuth, RecordReader, MAX_RECORD_PAYLOAD};
use mtproxy_proto::obfs2::{self, HandshakeFrame, INIT_LEN};
use mtproxy_proto::{ProtoTag, Secret};

fn secrets(n: usize) -> Vec<Secret> {
    (0..n)
        .map(|i| {
            let mut b = [0u8; 16];
            b[..8].copy_from_slice(&(i as u64 * 0x9e37_79b9_7f4a_7c15).to_le_bytes());
            b[8..].copy_from_slice(&(i as u64 ^ 0x5555).to_le_bytes());
            Secret::from_bytes(b)
        })
        .collect()
}

fn ctr(c: &mut Criterion) {
    let mut g = c.benchmark_group("aes256_ctr");
    for size in [64usize, 1024, 16384] {
        let mut buf = vec![0u8; size];
        let mut cipher = AesCtr::new(&[1; 32], &[2; 16]);
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::from_parameter(size), &size, |b, _| b.iter(|| cipher.apply(black_box(&mut buf))));
    }
    // What a relayed burst or a handshake candidate pays before its first byte: the key schedule
    // (the relay keeps ciphers as key + offset between bursts), a seek, one block.
    let mut block = [0u8; 16];
    g.bench_function("new_seek_16", |b| {
        b.iter(|| {
            let mut c = AesCtr::new(black_box(&[1; 32]), black_box(&[2; 16]));
            c.seek(black_box(4096));
            c.apply(&mut block);
        })
    });
    g.finish();
}

fn records(c: &mut Criterion) {
    let payload = vec![0xabu8; 4 * MAX_RECORD_PAYLOAD];
    let mut framed = Vec::new();
    for chunk in payload.chunks(MAX_RECORD_PAYLOAD) {
        framed.extend_from_slice(&faketls::app_data_header(chunk.len()));
        framed.extend_from_slice(chunk);
    }
    let mut g = c.benchmark_group("tls_records");
    g.throughput(Throughput::Bytes(payload.len() as u64));
    let mut work = framed.clone();
    g.bench_function("deframe_64k", |b| {
        b.iter(|| {
            work.copy_from_slice(&framed);
            let mut r = RecordReader::new();
            let len = work.len();
            black_box(r.deframe_in_place(&mut work, len).unwrap())
        })
    });
    // Framing as the relay does it: a header in front of each read of up to one record.
    let mut out = vec![0u8; 5 + MAX_RECORD_PAYLOAD];
    g.bench_function("frame_64k", |b| {
        b.iter(|| {
            for chunk in payload.chunks(MAX_RECORD_PAYLOAD) {
                out[..5].copy_from_slice(&faketls::app_data_header(chunk.len()));
                out[5..5 + chunk.len()].copy_from_slice(chunk);
                black_box(&out);
            }
        })
    });
    g.finish();
}

fn handshake_match(c: &mut Criterion) {
    let mut g = c.benchmark_group("handshake_match");
    g.sample_size(20);
    for n in [1usize, 100, 1000] {
        let list = secrets(n);
        let target = *list.last().unwrap();
        let mut random = [7u8; INIT_LEN];
        random[0] = 0x11;
        let frame = HandshakeFrame(obfs2::initiate(random, ProtoTag::PaddedIntermediate, 2, Some(&target)).wire);
        g.bench_with_input(BenchmarkId::new("obfs2", n), &n, |b, _| {
            b.iter(|| list.iter().find_map(|s| obfs2::accept(black_box(&frame), Some(s))).expect("the last secret matches"))
        });
        let mut hello = mtproxy_hello(517);
        faketls::sign_client_hello(&mut hello, &target, 1_700_000_000);
        let canonical = match faketls::read_client_hello(&hello).unwrap() {
            faketls::HelloRead::Complete { canonical, .. } => canonical,
            faketls::HelloRead::Incomplete => unreachable!(),
        };
        g.bench_with_input(BenchmarkId::new("faketls_517B", n), &n, |b, _| {
            b.iter(|| {
                let auth = HelloAuth::new(black_box(&canonical));
                list.iter().find_map(|s| auth.check(s)).expect("the last secret matches")
            })
        });
    }
    g.finish();
}

/// A ClientHello of `size` bytes (SNI, supported_versions, padding), random to be signed.
fn mtproxy_hello(size: usize) -> Vec<u8> {
    mtproxy_proto::faketls::build_client_hello(Some("bench.example.com"), &[0x42; 32], size)
}

criterion_group!(benches, ctr, records, handshake_match);
criterion_main!(benches);
