//! What a fake-TLS flight costs to build (docs/performance.md): the plan (cipher, layout, key
//! share, length) and the signed ServerHello flight, for the generic flight and for a learned
//! cover shape (an x25519 share; the hybrid X25519MLKEM768 share of a post-quantum cover).

use std::collections::BTreeMap;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use mtproxy_core::cover::{self, cache::ExtensionShape, ClientOffer, CoverProfile, Emulation, VariantShape};
use mtproxy_proto::faketls::{self, ServerHelloParams};
use mtproxy_proto::Secret;
use rand::RngCore;

fn profile(group: u16, len: u16) -> CoverProfile {
    let shape = VariantShape {
        cipher: 0x1301,
        compression: 0,
        extensions: vec![ExtensionShape::SupportedVersions { version: 0x0304 }, ExtensionShape::KeyShare { group, len }],
        change_cipher_spec: true,
        samples: vec![vec![23, 813, 281, 53]; 3],
    };
    let mut variants = BTreeMap::new();
    variants.insert("default".to_string(), shape);
    CoverProfile { domain: "cover.test".into(), target: "127.0.0.1:443".into(), learned_at: 0, variants }
}

fn flights(c: &mut Criterion) {
    let secret = Secret::from_bytes([7; 16]);
    let offer = ClientOffer { first_cipher: Some(0x1301), offers_h2: true };
    let x25519 = Emulation::from_profile(&profile(0x001d, 32)).unwrap();
    let hybrid = Emulation::from_profile(&profile(0x11ec, 1120)).unwrap();
    let mut g = c.benchmark_group("fake_tls_flight");
    for (name, emulation) in [("generic", None), ("learned_x25519", Some(&x25519)), ("learned_x25519mlkem768", Some(&hybrid))] {
        g.bench_function(name, |b| {
            let mut rng = rand::thread_rng();
            b.iter(|| {
                let plan = cover::plan(emulation, offer, &mut rng);
                let mut app = vec![0u8; plan.app_data_len];
                rng.fill_bytes(&mut app);
                let flight = faketls::server_hello(
                    &secret,
                    &ServerHelloParams {
                        client_random: &[1; 32],
                        session_id: &[2; 32],
                        layout: &plan.layout,
                        cipher: plan.cipher,
                        key_share: &plan.key_share,
                        app_data: &app,
                    },
                );
                black_box(flight)
            })
        });
    }
    g.bench_function("x25519_share_only", |b| {
        let mut rng = rand::thread_rng();
        b.iter(|| black_box(cover::key_share(0x001d, 32, &mut rng)))
    });
    g.finish();
}

criterion_group!(benches, flights);
criterion_main!(benches);
