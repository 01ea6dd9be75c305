//! The resident worker's TLS server configuration (ring provider), loaded
//! from PEM files.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Loading the certificate or key failed.
#[derive(Debug, thiserror::Error)]
#[error("TLS setup: {0}")]
pub struct TlsSetupError(String);

/// A TLS server configuration from a PEM certificate chain (leaf first) and
/// a PEM private key (PKCS#8, PKCS#1 or SEC1).
pub fn server_config(
    cert_pem: &[u8],
    key_pem: &[u8],
) -> Result<Arc<rustls::ServerConfig>, TlsSetupError> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsSetupError(format!("cannot read the certificate PEM: {e}")))?;
    if chain.is_empty() {
        return Err(TlsSetupError(
            "the certificate file holds no CERTIFICATE block".into(),
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| TlsSetupError(format!("cannot read the private key PEM: {e}")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsSetupError(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| {
            TlsSetupError(format!(
                "the certificate and key do not form a usable pair: {e}"
            ))
        })?;
    Ok(Arc::new(config))
}

/// Root certificates (DER) from a PEM file's CERTIFICATE blocks, for a
/// client's `extra_root_certs`.
pub fn root_certs(pem: &[u8]) -> Result<Vec<Vec<u8>>, TlsSetupError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .map(|c| c.map(|c| c.to_vec()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsSetupError(format!("cannot read the CA certificate PEM: {e}")))?;
    if certs.is_empty() {
        return Err(TlsSetupError(
            "the CA file holds no CERTIFICATE block".into(),
        ));
    }
    Ok(certs)
}
