//! HTTPS on the statistics listener (`[stats] tls_cert` / `tls_key`, docs/stats.md): rustls with
//! the ring provider (no system OpenSSL: the static binary keeps working), TLS 1.2 and 1.3.
//!
//! The configuration check ([`server_config`] at load) and the listener use the same function,
//! so a file the proxy accepted is one the listener can serve. The listener keeps the
//! `ServerConfig` built from the PEM texts of the live configuration and builds a new one when a
//! reload brings other texts (a renewed certificate takes effect at `vless-mtproxy reload`).

use std::sync::{Arc, Mutex};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;

use crate::config::StatsTls;

/// What is wrong with a certificate / key pair (never quotes the key).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsFileError {
    #[error("no PEM certificate (-----BEGIN CERTIFICATE-----) in the file")]
    NoCertificate,
    #[error("no PEM private key (PKCS#8, PKCS#1 or SEC1) in the file")]
    NoKey,
    #[error("the private key does not belong to the certificate ({0})")]
    Mismatch(String),
}

/// The ring provider, the one rustls build this crate allows.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificate chain in a PEM text.
pub fn certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsFileError> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem).filter_map(Result::ok).collect();
    if certs.is_empty() {
        return Err(TlsFileError::NoCertificate);
    }
    Ok(certs)
}

/// A server configuration from PEM texts: TLS 1.2 and 1.3, HTTP/1.1 by ALPN.
pub fn server_config(cert_pem: &[u8], key_pem: &[u8]) -> Result<ServerConfig, TlsFileError> {
    let certs = certificates(cert_pem)?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|_| TlsFileError::NoKey)?;
    let mut cfg = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsFileError::Mismatch(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| TlsFileError::Mismatch(e.to_string()))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

/// The listener's acceptor, rebuilt when the configuration's PEM texts change.
#[derive(Default)]
pub(super) struct Acceptors {
    current: Mutex<Option<(StatsTls, tokio_rustls::TlsAcceptor)>>,
}

impl Acceptors {
    /// The acceptor for `tls` (the live configuration's); `None` when it cannot be built (the
    /// configuration check makes that a file changed on disk between load and now: logged).
    pub(super) fn get(&self, tls: &StatsTls) -> Option<tokio_rustls::TlsAcceptor> {
        let mut cur = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((k, a)) = cur.as_ref() {
            if k == tls {
                return Some(a.clone());
            }
        }
        match server_config(&tls.cert_pem, &tls.key_pem) {
            Ok(cfg) => {
                let a = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
                tracing::info!(cert = %tls.cert_path.display(), "statistics listener: TLS certificate loaded");
                *cur = Some((tls.clone(), a.clone()));
                Some(a)
            }
            Err(e) => {
                tracing::warn!(cert = %tls.cert_path.display(), error = %e, "statistics listener: cannot use the TLS certificate");
                None
            }
        }
    }
}

/// A client connector for the CLI's commands that read this listener (`stats`, `status`,
/// `health`): it trusts exactly the certificate of the configuration (the listener is on the
/// same host, and the file is the one it serves), whatever names it holds or whoever issued it.
/// The handshake signature is still checked against that certificate's key.
pub fn pinned_connector(cert_pem: &[u8]) -> Result<tokio_rustls::TlsConnector, TlsFileError> {
    let leaf = certificates(cert_pem)?.swap_remove(0);
    let provider = provider();
    let verifier = Arc::new(Pinned { leaf, algs: provider.signature_verification_algorithms });
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsFileError::Mismatch(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(cfg)))
}

#[derive(Debug)]
struct Pinned {
    leaf: CertificateDer<'static>,
    algs: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl rustls::client::danger::ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.leaf.as_ref() {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General("the listener's certificate is not the one in [stats] tls_cert".into()))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algs.supported_schemes()
    }
}
