//! The file learned cover flights are kept in (`[fake_tls] cover_cache`, default
//! `<config>.covers`): JSON, one entry per cover domain with where it was asked and when.
//!
//! ```text
//! {"version": 1, "covers": {"www.example.com": {"domain": ..., "target": "www.example.com:443",
//!   "learned_at": 1764800000, "variants": {"default": {"cipher": 4865, "compression": 0,
//!   "extensions": [{"supported_versions": {"version": 772}}, {"key_share": {"group": 29, "len": 32}}],
//!   "change_cipher_spec": true, "samples": [[23, 813, 281, 53], ...]}, "apple": {...}}}}}
//! ```
//! It holds no secret. Written atomically (temporary file, then rename), so a crash leaves the
//! previous copy; an unreadable or foreign file is reported and treated as empty, never fatal.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use mtproxy_proto::tlsflight::{Flight, HelloExtension, ServerHelloLayout};
use serde::{Deserialize, Serialize};

use super::Variant;

const VERSION: u32 = 1;

/// One extension of a learned ServerHello.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExtensionShape {
    KeyShare { group: u16, len: u16 },
    SupportedVersions { version: u16 },
    Other { kind: u16, body_hex: String },
}

/// What a cover answered one kind of ClientHello, over several connections.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VariantShape {
    pub cipher: u16,
    pub compression: u8,
    pub extensions: Vec<ExtensionShape>,
    pub change_cipher_spec: bool,
    /// Payload lengths of the encrypted records, one list per connection.
    pub samples: Vec<Vec<usize>>,
}

impl VariantShape {
    /// The shape of the first of `flights`, with every flight's records as samples.
    pub fn from_flights(flights: &[Flight]) -> Option<VariantShape> {
        let first = flights.first()?;
        let extensions = first
            .layout
            .extensions
            .iter()
            .map(|e| match e {
                HelloExtension::KeyShare { group, len } => ExtensionShape::KeyShare { group: *group, len: *len },
                HelloExtension::SupportedVersions(v) => ExtensionShape::SupportedVersions { version: *v },
                HelloExtension::Other { kind, body } => ExtensionShape::Other { kind: *kind, body_hex: hex::encode(body) },
            })
            .collect();
        Some(VariantShape {
            cipher: first.layout.cipher,
            compression: first.layout.compression,
            extensions,
            change_cipher_spec: first.change_cipher_spec,
            samples: flights.iter().map(|f| f.encrypted.clone()).collect(),
        })
    }

    /// The runtime form; `None` for a shape that cannot be sent (bad hex, no samples).
    pub fn to_variant(&self) -> Option<Variant> {
        let extensions = self
            .extensions
            .iter()
            .map(|e| {
                Some(match e {
                    ExtensionShape::KeyShare { group, len } => HelloExtension::KeyShare { group: *group, len: *len },
                    ExtensionShape::SupportedVersions { version } => HelloExtension::SupportedVersions(*version),
                    ExtensionShape::Other { kind, body_hex } => HelloExtension::Other { kind: *kind, body: hex::decode(body_hex).ok()? },
                })
            })
            .collect::<Option<Vec<_>>>()?;
        let layout = ServerHelloLayout { cipher: self.cipher, compression: self.compression, extensions };
        if layout.extensions_len() > 4096 {
            return None;
        }
        let app_data_lens: Vec<usize> = self.samples.iter().filter(|s| !s.is_empty()).map(|s| mtproxy_proto::tlsflight::collapsed_len(s)).collect();
        if app_data_lens.is_empty() {
            return None;
        }
        Some(Variant { layout, change_cipher_spec: self.change_cipher_spec, app_data_lens })
    }

    /// For messages: "ServerHello 122 bytes, CCS, 4 encrypted records (1,185 bytes)".
    pub fn describe(&self) -> String {
        let layout_len = self.to_variant().map(|v| v.layout.extensions_len()).unwrap_or(0);
        let records = self.samples.first().map(|s| s.len()).unwrap_or(0);
        let lens: Vec<usize> = self.samples.iter().map(|s| mtproxy_proto::tlsflight::collapsed_len(s)).collect();
        let (lo, hi) = (lens.iter().min().copied().unwrap_or(0), lens.iter().max().copied().unwrap_or(0));
        let size = if lo == hi { format!("{lo} bytes") } else { format!("{lo}-{hi} bytes") };
        format!(
            "cipher {:#06x}, ServerHello extensions {} bytes, {}{} encrypted record{} ({size})",
            self.cipher,
            layout_len,
            if self.change_cipher_spec { "ChangeCipherSpec, " } else { "no ChangeCipherSpec, " },
            records,
            if records == 1 { "" } else { "s" }
        )
    }
}

/// What was learned of one cover domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoverProfile {
    pub domain: String,
    /// The HOST:PORT that was asked (the mask host, or the domain on 443).
    pub target: String,
    /// Unix seconds.
    pub learned_at: u64,
    /// By `ProbeHello::name`.
    pub variants: BTreeMap<String, VariantShape>,
}

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoverCache {
    pub version: u32,
    pub covers: BTreeMap<String, CoverProfile>,
}

#[derive(Debug, thiserror::Error)]
pub enum CoverCacheError {
    #[error("{path}: cannot read: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: not a cover cache ({source}); it will be rewritten when a cover is next learned")]
    Parse { path: PathBuf, source: serde_json::Error },
    #[error("{path}: cannot write: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

impl CoverCache {
    /// Read the file; a missing file is an empty cache.
    pub fn load(path: &Path) -> Result<CoverCache, CoverCacheError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(CoverCache::default()),
            Err(source) => return Err(CoverCacheError::Read { path: path.into(), source }),
        };
        serde_json::from_str(&text).map_err(|source| CoverCacheError::Parse { path: path.into(), source })
    }

    pub fn get(&self, domain: &str) -> Option<&CoverProfile> {
        self.covers.get(domain)
    }

    pub fn insert(&mut self, profile: CoverProfile) {
        self.covers.insert(profile.domain.clone(), profile);
    }

    /// Write the file atomically: a temporary file beside it, then a rename.
    pub fn save(&self, path: &Path) -> Result<(), CoverCacheError> {
        let werr = |source| CoverCacheError::Write { path: path.into(), source };
        let mut copy = self.clone();
        copy.version = VERSION;
        let text = serde_json::to_string_pretty(&copy).expect("plain data serializes");
        let tmp = super::super::config::beside(path, "tmp");
        let mut f = std::fs::File::create(&tmp).map_err(werr)?;
        f.write_all(text.as_bytes()).and_then(|_| f.sync_all()).map_err(werr)?;
        std::fs::rename(&tmp, path).map_err(werr)
    }

    /// Load, put `profile` in, save: what the CLI does after learning a domain.
    pub fn update(path: &Path, profile: CoverProfile) -> Result<(), CoverCacheError> {
        let mut cache = CoverCache::load(path).unwrap_or_default();
        cache.insert(profile);
        cache.save(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mtproxy_proto::tlsflight::TLS13;

    fn flight(records: Vec<usize>) -> Flight {
        Flight {
            layout: ServerHelloLayout {
                cipher: 0x1302,
                compression: 0,
                extensions: vec![
                    HelloExtension::SupportedVersions(TLS13),
                    HelloExtension::KeyShare { group: 29, len: 32 },
                    HelloExtension::Other { kind: 41, body: vec![0, 0] },
                ],
            },
            session_id_len: 32,
            change_cipher_spec: true,
            encrypted: records,
        }
    }

    #[test]
    fn round_trips_through_the_file_and_back_to_the_same_layout() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml.covers");
        let shape = VariantShape::from_flights(&[flight(vec![23, 813, 281, 53]), flight(vec![23, 813, 282, 53])]).unwrap();
        let mut variants = BTreeMap::new();
        variants.insert("default".into(), shape.clone());
        CoverCache::update(&path, CoverProfile { domain: "cover.test".into(), target: "127.0.0.1:8443".into(), learned_at: 7, variants }).unwrap();
        let back = CoverCache::load(&path).unwrap();
        assert_eq!(back.version, VERSION);
        let p = back.get("cover.test").unwrap();
        assert_eq!(p.learned_at, 7);
        assert_eq!(p.variants["default"], shape);
        let v = shape.to_variant().unwrap();
        assert_eq!(v.layout, flight(vec![]).layout);
        assert_eq!(v.app_data_lens, vec![1185, 1186]);
        assert!(shape.describe().contains("4 encrypted records (1185-1186 bytes)"), "{}", shape.describe());
        assert!(!dir.path().join("c.toml.covers.tmp").exists());
    }

    #[test]
    fn a_missing_file_is_empty_and_a_foreign_one_is_named() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(CoverCache::load(&dir.path().join("none")).unwrap(), CoverCache::default());
        let bad = dir.path().join("bad");
        std::fs::write(&bad, "not json").unwrap();
        let e = CoverCache::load(&bad).unwrap_err().to_string();
        assert!(e.contains("not a cover cache"), "{e}");
    }
}
