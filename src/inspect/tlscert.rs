//! The certificate a TLS server presents for a name, and what it says (names, validity).
//!
//! An "own domain" deployment stands or falls with its certificate: a prober that sends the
//! domain's SNI to port 443 must get a certificate for that domain, from a trusted CA, not near
//! expiry, exactly as from any real site. `doctor` checks what the cover (the mask host) really
//! presents, and setup checks the certificate and key files it is given before it writes an
//! nginx site around them.
//!
//! To see the certificate we need a real TLS handshake (in TLS 1.3 it travels encrypted). We do
//! it with rustls, already in the build through ureq (ring provider, no system OpenSSL, so it
//! works in the static binary), and a verifier that records the chain without judging it: the
//! point is to report what the server sends, including an expired or wrong-name certificate,
//! not to refuse the connection. The handshake signature itself is still verified, so the
//! server proved it holds the certificate's key. Names are matched by rustls-webpki (the same
//! rules browsers use, wildcards included); dates and the SAN list come from x509-parser.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{ring as provider, CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

#[derive(Debug, thiserror::Error)]
pub enum TlsCertError {
    #[error("{addr}: cannot connect: {source}")]
    Connect { addr: SocketAddr, source: std::io::Error },
    #[error("{addr}: TLS handshake failed: {message}")]
    Handshake { addr: SocketAddr, message: String },
    #[error("`{0}` is not a host name usable as SNI")]
    BadName(String),
    #[error("the server sent no certificate")]
    NoCertificate,
    #[error("the certificate cannot be parsed: {0}")]
    Parse(String),
}

/// What a completed handshake showed.
#[derive(Debug, Clone)]
pub struct Presented {
    /// "TLSv1.3", "TLSv1.2".
    pub version: String,
    /// The key exchange group ("X25519", "secp256r1", ...).
    pub group: Option<String>,
    /// Leaf first, as sent.
    pub chain: Vec<CertificateDer<'static>>,
}

/// The fields of a certificate that matter to a prober.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub subject: String,
    pub issuer: String,
    /// DNS names of the subjectAltName extension.
    pub dns_names: Vec<String>,
    /// Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
    /// Whether the certificate is valid for the domain it was checked against (SAN rules).
    pub matches: bool,
}

impl CertInfo {
    /// Whole days left until `not_after` (negative once expired).
    pub fn days_left(&self, now: i64) -> i64 {
        (self.not_after - now).div_euclid(86_400)
    }

    /// The SAN list for messages ("a.example, b.example" or "(no DNS names)").
    pub fn names(&self) -> String {
        if self.dns_names.is_empty() {
            format!("(no DNS names; subject {})", self.subject)
        } else {
            self.dns_names.join(", ")
        }
    }
}

/// Records the chain, judges nothing about it; handshake signatures are verified for real.
#[derive(Debug)]
struct Recorder {
    seen: Mutex<Vec<CertificateDer<'static>>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.clear();
        seen.push(end_entity.clone().into_owned());
        seen.extend(intermediates.iter().map(|c| c.clone().into_owned()));
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(&self, message: &[u8], cert: &CertificateDer<'_>, dss: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(&self, message: &[u8], cert: &CertificateDer<'_>, dss: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

fn crypto() -> CryptoProvider {
    provider::default_provider()
}

/// Connect to `addr`, shake hands for `sni` (TLS 1.3 or 1.2, ALPN h2 and http/1.1 as a browser
/// offers), and return what the server presented. Blocking; every step bounded by `timeout`.
pub fn fetch(addr: SocketAddr, sni: &str, timeout: Duration) -> Result<Presented, TlsCertError> {
    let name = ServerName::try_from(sni.to_string()).map_err(|_| TlsCertError::BadName(sni.to_string()))?;
    let p = crypto();
    let recorder = Arc::new(Recorder { seen: Mutex::new(Vec::new()), algorithms: p.signature_verification_algorithms });
    let mut cfg = ClientConfig::builder_with_provider(Arc::new(p))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsCertError::Handshake { addr, message: e.to_string() })?
        .dangerous()
        .with_custom_certificate_verifier(recorder.clone())
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let mut conn = ClientConnection::new(Arc::new(cfg), name).map_err(|e| TlsCertError::Handshake { addr, message: e.to_string() })?;
    let mut sock = TcpStream::connect_timeout(&addr, timeout).map_err(|source| TlsCertError::Connect { addr, source })?;
    let _ = sock.set_read_timeout(Some(timeout));
    let _ = sock.set_write_timeout(Some(timeout));
    let deadline = std::time::Instant::now() + timeout;
    while conn.is_handshaking() {
        if std::time::Instant::now() > deadline {
            return Err(TlsCertError::Handshake { addr, message: format!("no complete handshake within {} ms", timeout.as_millis()) });
        }
        match conn.complete_io(&mut sock) {
            Ok((0, 0)) if conn.is_handshaking() && !conn.wants_write() => {
                return Err(TlsCertError::Handshake { addr, message: "the server closed the connection during the handshake".into() });
            }
            Ok(_) => {}
            Err(e) => {
                let message = match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                    Some(rustls::Error::AlertReceived(a)) => format!("the server answered with the alert {a:?}"),
                    Some(other) => other.to_string(),
                    None if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {
                        format!("no answer within {} ms", timeout.as_millis())
                    }
                    None => e.to_string(),
                };
                return Err(TlsCertError::Handshake { addr, message });
            }
        }
    }
    let version = conn.protocol_version();
    let group = conn.negotiated_key_exchange_group().map(|g| group_label(g.name()));
    conn.send_close_notify();
    let _ = conn.write_tls(&mut sock);
    let _ = sock.flush();
    let chain = std::mem::take(&mut *recorder.seen.lock().unwrap_or_else(|e| e.into_inner()));
    if chain.is_empty() {
        return Err(TlsCertError::NoCertificate);
    }
    Ok(Presented { version: version.map(|v| v.as_str().unwrap_or("unknown").replace("TLSv1_", "TLSv1.")).unwrap_or_else(|| "unknown".into()), group, chain })
}

fn group_label(g: rustls::NamedGroup) -> String {
    match g {
        rustls::NamedGroup::X25519 => "X25519".into(),
        rustls::NamedGroup::secp256r1 => "secp256r1".into(),
        rustls::NamedGroup::secp384r1 => "secp384r1".into(),
        other => format!("{other:?}"),
    }
}

/// Read a certificate's names and dates, and whether it is valid for `domain`.
pub fn inspect(der: &CertificateDer<'_>, domain: &str) -> Result<CertInfo, TlsCertError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).map_err(|e| TlsCertError::Parse(e.to_string()))?;
    let mut dns_names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(d) = n {
                dns_names.push(d.to_string());
            }
        }
    }
    let matches = match (webpki::EndEntityCert::try_from(der), ServerName::try_from(domain.to_string())) {
        (Ok(ee), Ok(name)) => ee.verify_is_valid_for_subject_name(&name).is_ok(),
        _ => false,
    };
    Ok(CertInfo {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        dns_names,
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        matches,
    })
}

#[derive(Debug, thiserror::Error)]
pub enum PairError {
    #[error("{path}: cannot read: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}: no PEM certificate in it (expected -----BEGIN CERTIFICATE-----, e.g. certbot's fullchain.pem)")]
    NoCert { path: String },
    #[error("{path}: no PEM private key in it (expected -----BEGIN PRIVATE KEY----- or an RSA/EC key, e.g. certbot's privkey.pem)")]
    NoKey { path: String },
    #[error("{key}: this key cannot be used: {message}")]
    BadKey { key: String, message: String },
    #[error("{key} is not the key of the certificate in {cert}: give the key file that belongs to it (certbot keeps both in /etc/letsencrypt/live/DOMAIN/)")]
    Mismatch { cert: String, key: String },
}

/// Read a PEM certificate chain and a PEM private key, and check that the key belongs to the
/// chain's first certificate. Returns the chain. Never prints the key.
pub fn load_pair(cert: &Path, key: &Path) -> Result<Vec<CertificateDer<'static>>, PairError> {
    let c = cert.display().to_string();
    let k = key.display().to_string();
    let cert_pem = std::fs::read(cert).map_err(|source| PairError::Read { path: c.clone(), source })?;
    let key_pem = std::fs::read(key).map_err(|source| PairError::Read { path: k.clone(), source })?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem).filter_map(Result::ok).collect();
    if chain.is_empty() {
        return Err(PairError::NoCert { path: c });
    }
    let private = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| PairError::NoKey { path: k.clone() })?;
    match rustls::sign::CertifiedKey::from_der(chain.clone(), private, &crypto()) {
        Ok(_) => Ok(chain),
        Err(rustls::Error::InconsistentKeys(_)) => Err(PairError::Mismatch { cert: c, key: k }),
        Err(e) => Err(PairError::BadKey { key: k, message: e.to_string() }),
    }
}

/// The current time in Unix seconds.
pub fn now_unix() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_are_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let c = dir.path().join("c.pem");
        let k = dir.path().join("k.pem");
        std::fs::write(&c, "not a certificate").unwrap();
        std::fs::write(&k, "not a key").unwrap();
        assert!(matches!(load_pair(&c, &k), Err(PairError::NoCert { .. })));
        assert!(matches!(load_pair(&dir.path().join("none"), &k), Err(PairError::Read { .. })));
        // A test pair made once with openssl (valid for 100 years, SAN cover.test and *.cover.test).
        let td = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/inspect/testdata");
        std::fs::write(&k, "not a key").unwrap();
        assert!(matches!(load_pair(&td.join("cover.crt"), &k), Err(PairError::NoKey { .. })));
        let mismatch = load_pair(&td.join("cover.crt"), &td.join("other.key")).unwrap_err();
        assert!(matches!(mismatch, PairError::Mismatch { .. }), "{mismatch}");
        let chain = load_pair(&td.join("cover.crt"), &td.join("cover.key")).unwrap();
        assert_eq!(chain.len(), 1);
        let info = inspect(&chain[0], "cover.test").unwrap();
        assert!(info.matches && info.subject.contains("cover.test"), "{info:?}");
        assert_eq!(info.dns_names, ["cover.test", "*.cover.test"]);
        assert!(inspect(&chain[0], "www.cover.test").unwrap().matches, "wildcards follow the SAN rules");
        assert!(!inspect(&chain[0], "other.test").unwrap().matches);
        assert!(info.days_left(now_unix()) > 10_000);
        assert_eq!(CertInfo { not_after: 86_400, ..info.clone() }.days_left(86_400 + 1), -1);
    }
}
