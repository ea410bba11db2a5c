//! The serving certificate: read from PEM files, handed to every new TLS handshake, and reloaded when the
//! files change.
//!
//! Kubernetes updates a mounted Secret by swapping a `..data` symlink, so modification times are not a
//! reliable signal; the reloader compares a hash of the files' contents instead. A connection keeps the
//! certificate it was established with: only handshakes after a reload see the new pair. A new pair
//! that cannot be used (unparsable, key not matching the certificate) is logged, counted and ignored,
//! and the last good pair keeps serving.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::metrics::Metrics;
use crate::{Error, Result};

/// ALPN protocols offered to clients, preferred first.
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// The certificate/key file pair and the pair currently served from them.
#[derive(Debug)]
pub struct ReloadingCert {
    cert_path: PathBuf,
    key_path: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
    /// Hash of the file contents last looked at (good or bad), so a broken pair is reported once.
    seen: Mutex<u64>,
}

impl ReloadingCert {
    /// Loads the pair, failing with an error that names the offending file.
    pub fn from_files(cert_path: impl Into<PathBuf>, key_path: impl Into<PathBuf>) -> Result<Arc<Self>> {
        let cert_path = cert_path.into();
        let key_path = key_path.into();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let (cert_pem, key_pem) = read_pair(&cert_path, &key_path)?;
        let key = certified_key(&cert_path, &key_path, &cert_pem, &key_pem, &provider)?;
        Ok(Arc::new(ReloadingCert {
            seen: Mutex::new(content_hash(&cert_pem, &key_pem)),
            cert_path,
            key_path,
            provider,
            current: RwLock::new(Arc::new(key)),
        }))
    }

    /// A rustls server configuration resolving through this pair, offering HTTP/2 and HTTP/1.1.
    pub fn server_config(self: &Arc<Self>) -> Result<rustls::ServerConfig> {
        let mut config = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(Error::TlsConfig)?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
        Ok(config)
    }

    /// The pair new handshakes get.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Re-reads the files; swaps in the new pair if they changed and are usable.
    ///
    /// Returns `Ok(true)` when a new pair was installed, `Ok(false)` when nothing changed (or the same
    /// broken content was already reported), and the error when changed content is unusable.
    pub fn reload(&self) -> Result<bool> {
        let (cert_pem, key_pem) = read_pair(&self.cert_path, &self.key_path)?;
        let hash = content_hash(&cert_pem, &key_pem);
        {
            let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
            if *seen == hash {
                return Ok(false);
            }
            *seen = hash;
        }
        let key = certified_key(
            &self.cert_path,
            &self.key_path,
            &cert_pem,
            &key_pem,
            &self.provider,
        )?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(key);
        Ok(true)
    }

    /// Polls the files every `interval` until dropped, swapping in changed pairs and counting the
    /// outcome in `metrics`.
    pub async fn watch(self: Arc<Self>, interval: Duration, metrics: Arc<Metrics>) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            match self.reload() {
                Ok(false) => {}
                Ok(true) => {
                    metrics.certificate_reloaded(true);
                    tracing::info!(cert = %self.cert_path.display(), "serving certificate reloaded");
                }
                Err(error) => {
                    // A rotation caught between its two file writes lands here too; the next poll sees
                    // changed content again and retries.
                    metrics.certificate_reloaded(false);
                    tracing::warn!(%error, "new serving certificate refused; keeping the previous one");
                }
            }
        }
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

fn read_pair(cert_path: &Path, key_path: &Path) -> Result<(Vec<u8>, Vec<u8>)> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| Error::Tls {
            path: path.into(),
            source,
        })
    };
    Ok((read(cert_path)?, read(key_path)?))
}

fn content_hash(cert_pem: &[u8], key_pem: &[u8]) -> u64 {
    let mut hasher = DefaultHasher::new();
    cert_pem.hash(&mut hasher);
    key_pem.hash(&mut hasher);
    hasher.finish()
}

fn certified_key(
    cert_path: &Path,
    key_path: &Path,
    cert_pem: &[u8],
    key_pem: &[u8],
    provider: &CryptoProvider,
) -> Result<CertifiedKey> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::TlsPem {
            path: cert_path.into(),
            reason: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(Error::TlsPem {
            path: cert_path.into(),
            reason: "no CERTIFICATE block".into(),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| Error::TlsPem {
        path: key_path.into(),
        reason: e.to_string(),
    })?;
    CertifiedKey::from_der(chain, key, provider).map_err(|source| Error::TlsPair {
        cert: cert_path.into(),
        key: key_path.into(),
        source,
    })
}
