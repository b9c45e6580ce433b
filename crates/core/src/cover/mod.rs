//! Cover-site emulation: the fake-TLS ServerHello flight shaped like the real cover site's.
//!
//! A passive observer of an `ee` session sees the server's first flight; an active prober can
//! ask the cover site itself for one with the same ClientHello and compare. So for every cover
//! domain the proxy learns what the site answers to Telegram-like hellos (`learn`), keeps it in
//! a small file next to the configuration (`cache`), asks again periodically and whenever the
//! domain set or the mask host changes (`refresh`), and builds each flight from it:
//!
//! ```text
//!                       learned from the cover           what the proxy sends
//! ServerHello           cipher, compression,             the same layout; cipher chosen as the
//!                       extension order, key_share       cover chooses (its preference or the
//!                       group and length                 client's); a fresh well-formed share
//! ChangeCipherSpec      sent or not                      always (clients require it)
//! encrypted records     lengths, per connection          one record of the same total length,
//!                                                        picked from the totals the cover showed
//! ```
//! Clients verify the HMAC over exactly ServerHello, ChangeCipherSpec and one ApplicationData
//! record (docs/protocol.md §4.7), which is why the encrypted part is one record (`tlsflight`).
//! A domain that was never learned (unreachable, `emulate_cover = false`) gets the generic
//! flight of docs/protocol.md §4.7, as before.

pub mod cache;
pub mod learn;
pub mod refresh;

use std::collections::HashMap;
use std::sync::Arc;

use mtproxy_proto::tlsflight::{self, ProbeHello, ServerHelloLayout, GROUP_X25519, GROUP_X25519_MLKEM768};
use rand::{Rng, RngCore};

pub use cache::{CoverCache, CoverCacheError, CoverProfile, VariantShape};

/// Size range of the ApplicationData record of the generic flight (no cover learned): the range
/// real certificate chains of common sites fall in (docs/protocol.md §4.7).
const GENERIC_APP_DATA: std::ops::Range<usize> = 2500..4700;

/// One learned answer, ready to build flights from.
#[derive(Debug, Clone, PartialEq)]
pub struct Variant {
    pub layout: ServerHelloLayout,
    pub change_cipher_spec: bool,
    /// Lengths of the one record standing for the cover's encrypted records, one per sample.
    pub app_data_lens: Vec<usize>,
}

/// What the proxy knows of one cover domain.
#[derive(Debug, Clone, PartialEq)]
pub struct Emulation {
    variants: Vec<(ProbeHello, Variant)>,
    /// The cover picks the client's first TLS 1.3 suite (it answered two hellos with different
    /// orders with their own first suites); otherwise it picks by its own preference.
    follows_client_order: bool,
}

impl Emulation {
    /// The emulation for a learned profile; `None` when it holds no usable answer.
    pub fn from_profile(p: &CoverProfile) -> Option<Emulation> {
        let variants: Vec<(ProbeHello, Variant)> =
            ProbeHello::ALL.iter().filter_map(|k| p.variants.get(k.name()).and_then(|v| v.to_variant()).map(|v| (*k, v))).collect();
        if variants.is_empty() {
            return None;
        }
        let follows_client_order = variants.iter().all(|(k, v)| v.layout.cipher == k.tls13_ciphers()[0]);
        Some(Emulation { variants, follows_client_order })
    }

    /// The learned answer closest to a client hello that does (or does not) offer HTTP/2.
    pub fn variant(&self, offers_h2: bool) -> &Variant {
        let want = ProbeHello::closest(offers_h2);
        self.variants.iter().find(|(k, _)| *k == want).map(|(_, v)| v).unwrap_or(&self.variants[0].1)
    }
}

/// The emulations in force, by cover domain. Swapped whole when a domain is (re)learned.
#[derive(Debug, Default, Clone)]
pub struct CoverBook {
    by_domain: HashMap<String, Arc<Emulation>>,
}

impl CoverBook {
    pub fn from_cache(cache: &CoverCache) -> CoverBook {
        let by_domain = cache.covers.iter().filter_map(|(d, p)| Emulation::from_profile(p).map(|e| (d.clone(), Arc::new(e)))).collect();
        CoverBook { by_domain }
    }

    pub fn get(&self, domain: &str) -> Option<&Emulation> {
        self.by_domain.get(domain).map(|e| e.as_ref())
    }

    pub fn len(&self) -> usize {
        self.by_domain.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_domain.is_empty()
    }
}

/// What the client's hello says that the flight depends on.
#[derive(Debug, Clone, Copy)]
pub struct ClientOffer {
    /// First non-GREASE cipher suite.
    pub first_cipher: Option<u16>,
    pub offers_h2: bool,
}

/// Everything of one connection's flight but the secret and the randoms it is signed with.
#[derive(Debug, Clone)]
pub struct FlightPlan {
    pub layout: ServerHelloLayout,
    pub cipher: u16,
    pub key_share: Vec<u8>,
    pub app_data_len: usize,
}

/// Plan the flight for a client of a cover domain (`emulation` as learned, or `None`).
pub fn plan(emulation: Option<&Emulation>, offer: ClientOffer, rng: &mut impl RngCore) -> FlightPlan {
    let clients_suite = offer.first_cipher.filter(|c| (0x1301..=0x1303).contains(c)).unwrap_or(0x1301);
    let Some(e) = emulation else {
        let layout = ServerHelloLayout::generic(clients_suite);
        return FlightPlan { key_share: key_share(GROUP_X25519, 32, rng), cipher: clients_suite, app_data_len: rng.gen_range(GENERIC_APP_DATA), layout };
    };
    let v = e.variant(offer.offers_h2);
    let cipher = if e.follows_client_order { clients_suite } else { v.layout.cipher };
    let (group, len) = v.layout.key_share().unwrap_or((GROUP_X25519, 32));
    let app_data_len = pick_len(&v.app_data_lens, rng);
    FlightPlan { layout: v.layout.clone(), cipher, key_share: key_share(group, len, rng), app_data_len }
}

/// A length within what the cover itself showed: uniform between the smallest and the largest
/// sample (the cover's own run-to-run variation; one value when it never varied).
fn pick_len(samples: &[usize], rng: &mut impl RngCore) -> usize {
    let (Some(lo), Some(hi)) = (samples.iter().min(), samples.iter().max()) else { return rng.gen_range(GENERIC_APP_DATA) };
    rng.gen_range(*lo..=*hi).min(tlsflight::MAX_CIPHERTEXT_RECORD)
}

/// A fresh, well-formed server key share for `group`: a real x25519 public key (a random string
/// is off the curve half the time, which an observer can test), for the hybrid group a random
/// ML-KEM ciphertext (every byte string is one) before it, and for any other group random bytes
/// of the cover's length.
pub fn key_share(group: u16, len: u16, rng: &mut impl RngCore) -> Vec<u8> {
    let mut x25519 = || {
        let mut scalar = [0u8; 32];
        rng.fill_bytes(&mut scalar);
        curve25519_dalek::MontgomeryPoint::mul_base_clamped(scalar).to_bytes()
    };
    match (group, len) {
        (GROUP_X25519, 32) => x25519().to_vec(),
        (GROUP_X25519_MLKEM768, l) if l as usize > 32 => {
            let pk = x25519();
            let mut v = vec![0u8; l as usize - 32];
            rng.fill_bytes(&mut v);
            v.extend_from_slice(&pk);
            v
        }
        (_, l) => {
            let mut v = vec![0u8; l as usize];
            rng.fill_bytes(&mut v);
            if matches!(l, 65 | 97 | 133) {
                v[0] = 0x04; // an uncompressed NIST curve point
            }
            v
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mtproxy_proto::tlsflight::HelloExtension;
    use std::collections::BTreeMap;

    fn profile(ciphers: [u16; 2]) -> CoverProfile {
        let shape = |cipher: u16, samples: Vec<Vec<usize>>| VariantShape {
            cipher,
            compression: 0,
            extensions: vec![cache::ExtensionShape::SupportedVersions { version: 0x0304 }, cache::ExtensionShape::KeyShare { group: 0x001d, len: 32 }],
            change_cipher_spec: true,
            samples,
        };
        let mut variants = BTreeMap::new();
        variants.insert("default".to_string(), shape(ciphers[0], vec![vec![23, 813, 281, 53], vec![23, 813, 282, 53]]));
        variants.insert("apple".to_string(), shape(ciphers[1], vec![vec![17, 813, 281, 53]]));
        CoverProfile { domain: "cover.test".into(), target: "127.0.0.1:443".into(), learned_at: 1, variants }
    }

    #[test]
    fn a_cover_that_follows_the_client_gets_the_clients_suite() {
        let e = Emulation::from_profile(&profile([0x1301, 0x1302])).unwrap();
        assert!(e.follows_client_order);
        let mut rng = rand::thread_rng();
        let p = plan(Some(&e), ClientOffer { first_cipher: Some(0x1303), offers_h2: true }, &mut rng);
        assert_eq!(p.cipher, 0x1303);
        assert_eq!(p.layout.extensions[0], HelloExtension::SupportedVersions(0x0304));
        assert!((1185..=1186).contains(&p.app_data_len), "{}", p.app_data_len);
        let apple = plan(Some(&e), ClientOffer { first_cipher: Some(0x1302), offers_h2: false }, &mut rng);
        assert_eq!(apple.app_data_len, 17 + 813 + 281 + 53 + 15);
    }

    #[test]
    fn a_cover_with_its_own_preference_gets_its_suite() {
        let e = Emulation::from_profile(&profile([0x1302, 0x1302])).unwrap();
        assert!(!e.follows_client_order);
        let p = plan(Some(&e), ClientOffer { first_cipher: Some(0x1301), offers_h2: true }, &mut rand::thread_rng());
        assert_eq!(p.cipher, 0x1302);
    }

    #[test]
    fn no_cover_gives_the_generic_flight() {
        let p = plan(None, ClientOffer { first_cipher: Some(0x1302), offers_h2: true }, &mut rand::thread_rng());
        assert_eq!(p.layout, ServerHelloLayout::generic(0x1302));
        assert!(GENERIC_APP_DATA.contains(&p.app_data_len));
        assert_eq!(p.key_share.len(), 32);
    }

    #[test]
    fn key_shares_are_well_formed() {
        let mut rng = rand::thread_rng();
        let x = key_share(GROUP_X25519, 32, &mut rng);
        assert_eq!(x.len(), 32);
        assert_eq!(x[31] & 0x80, 0, "a canonical x25519 u-coordinate");
        assert_ne!(x, key_share(GROUP_X25519, 32, &mut rng), "fresh for every connection");
        assert_eq!(key_share(GROUP_X25519_MLKEM768, 1120, &mut rng).len(), 1120);
        let p256 = key_share(0x0017, 65, &mut rng);
        assert_eq!((p256.len(), p256[0]), (65, 0x04));
    }
}
