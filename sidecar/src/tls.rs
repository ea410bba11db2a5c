//! TLS client settings shared by the upstream client and the threat-log forwarders: the system's root
//! certificates, webpki's (Mozilla's) roots and an optional extra CA bundle, with the ring provider.

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::{Error, Result};

/// A client configuration trusting the system and webpki roots, plus `extra_ca` (a PEM bundle).
pub fn client_config(extra_ca: Option<&Path>) -> Result<rustls::ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let native = rustls_native_certs::load_native_certs();
    let (added, _ignored) = roots.add_parsable_certificates(native.certs);
    tracing::debug!(system_roots = added, "loaded TLS roots");
    if let Some(path) = extra_ca {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .map_err(|e| Error::Tls(format!("cannot read CA bundle {}: {e}", path.display())))?
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| Error::Tls(format!("CA bundle {} is not valid PEM: {e}", path.display())))?;
        if certs.is_empty() {
            return Err(Error::Tls(format!(
                "CA bundle {} holds no certificate",
                path.display()
            )));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| Error::Tls(format!("CA bundle {}: {e}", path.display())))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
