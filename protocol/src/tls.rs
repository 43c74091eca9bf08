//! TLS server configuration shared by the gateway and the bridge (feature `tls`): the
//! certificate chain and key from PEM files, TLS 1.2 and 1.3 only, ALPN `http/1.1`, and a
//! [`TlsSource`] that loads them again on SIGHUP.
//!
//! Each TLS accept takes the newest configuration (an uncontended lock and a reference
//! count, next to a handshake's hundreds of microseconds). Handshakes after a reload use the
//! new certificate; open connections keep theirs. A reload that fails (a missing file, a key
//! that does not match) keeps the old certificate.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("certificate chain {path}: {why}")]
    Chain { path: PathBuf, why: String },
    #[error("private key {path}: {why}")]
    Key { path: PathBuf, why: String },
    #[error("certificate and key: {0}")]
    Config(String),
}

/// The first byte of every TLS connection: a handshake record.
pub const HANDSHAKE_RECORD: u8 = 0x16;

/// Reads the chain and the key and builds a server configuration.
pub fn load(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<_, _>>())
        .map_err(|e| TlsError::Chain {
            path: cert.into(),
            why: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::Chain {
            path: cert.into(),
            why: "no certificate in the file".into(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
        path: key.into(),
        why: e.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The current configuration, shared by the signal thread (which reloads it) and the
/// shards (which read it at TLS accepts).
#[derive(Debug)]
pub struct TlsSource {
    cert: PathBuf,
    key: PathBuf,
    current: Mutex<Arc<ServerConfig>>,
}

impl TlsSource {
    pub fn open(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        Ok(Self {
            cert: cert.into(),
            key: key.into(),
            current: Mutex::new(load(cert, key)?),
        })
    }

    /// Loads the files again; on success new handshakes use them.
    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = load(&self.cert, &self.key)?;
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = fresh;
        Ok(())
    }

    /// The newest configuration.
    pub fn current(&self) -> Arc<ServerConfig> {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}
