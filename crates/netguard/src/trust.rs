//! Which certificate authorities outbound TLS trusts: the public roots (webpki-roots, as
//! reqwest and tokio-tungstenite use them) plus the operator's extra CA bundle (`[tls]
//! extra_ca_file`), for providers behind a private CA and for the load harness's throwaway CA.
//! Trust is only ever added to; there is no way to turn certificate verification off.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// Why an extra CA bundle could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// The file could not be read or holds a malformed PEM section.
    #[error("cannot read CA bundle {path}: {message}")]
    Read {
        /// The bundle's path.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The file holds no `CERTIFICATE` section.
    #[error("CA bundle {0} holds no PEM certificate")]
    Empty(PathBuf),
    /// A certificate is not one a root store accepts (not a parsable X.509 CA certificate).
    #[error("CA bundle {path}: certificate {index} is not usable as a trust anchor: {message}")]
    BadCertificate {
        /// The bundle's path.
        path: PathBuf,
        /// Position of the certificate in the bundle, from 0.
        index: usize,
        /// Why it was refused.
        message: String,
    },
}

/// The roots outbound TLS trusts. Cheap to clone; the websocket TLS configuration is built
/// once, on first use, and shared by every connection (which also shares its session cache,
/// so reconnects to a provider can resume TLS sessions).
#[derive(Clone, Default)]
pub struct TrustRoots {
    extra: Arc<[CertificateDer<'static>]>,
    client_config: Arc<OnceLock<Arc<rustls::ClientConfig>>>,
}

impl std::fmt::Debug for TrustRoots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustRoots")
            .field("extra_cas", &self.extra.len())
            .finish()
    }
}

impl PartialEq for TrustRoots {
    fn eq(&self, other: &TrustRoots) -> bool {
        self.extra == other.extra
    }
}

impl Eq for TrustRoots {}

impl TrustRoots {
    /// The public roots plus every certificate of the PEM bundle at `path`; each must be a
    /// usable trust anchor.
    pub fn with_pem_file(path: &Path) -> Result<TrustRoots, TrustError> {
        let read = |message: String| TrustError::Read {
            path: path.to_owned(),
            message,
        };
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| read(e.to_string()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| read(e.to_string()))?;
        if certs.is_empty() {
            return Err(TrustError::Empty(path.to_owned()));
        }
        for (index, cert) in certs.iter().enumerate() {
            webpki_anchor(cert).map_err(|message| TrustError::BadCertificate {
                path: path.to_owned(),
                index,
                message,
            })?;
        }
        Ok(TrustRoots {
            extra: certs.into(),
            client_config: Arc::default(),
        })
    }

    /// The operator's extra CA certificates (DER), on top of the public roots.
    pub fn extra(&self) -> &[CertificateDer<'static>] {
        &self.extra
    }

    /// `builder` trusting the extra CAs too (reqwest keeps its public roots).
    pub fn apply(&self, mut builder: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
        for cert in self.extra.iter() {
            // `from_der` only wraps the bytes (checked in `with_pem_file`); it cannot fail here,
            // and a certificate rustls refuses anyway makes `build()` fail, not skip it.
            if let Ok(cert) = reqwest::Certificate::from_der(cert) {
                builder = builder.add_root_certificate(cert);
            }
        }
        builder
    }

    /// The TLS client configuration of outbound websockets: public roots plus the extra CAs,
    /// ring provider, default protocol versions, certificates verified.
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        Arc::clone(self.client_config.get_or_init(|| {
            let mut roots = rustls::RootCertStore::empty();
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            // Checked in `with_pem_file`.
            let (_added, _ignored) = roots.add_parsable_certificates(self.extra.iter().cloned());
            let config = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .expect("the ring provider supports the default protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
            Arc::new(config)
        }))
    }
}

/// Whether `cert` can be a root of a rustls root store (its message when not).
fn webpki_anchor(cert: &CertificateDer<'static>) -> Result<(), String> {
    let mut store = rustls::RootCertStore::empty();
    store.add(cert.clone()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_empty_bundle_is_a_typed_error() {
        let dir = std::env::temp_dir().join(format!("netguard-trust-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let missing = dir.join("missing.pem");
        assert!(matches!(
            TrustRoots::with_pem_file(&missing),
            Err(TrustError::Read { .. })
        ));
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "no pem here\n").expect("write");
        assert!(matches!(
            TrustRoots::with_pem_file(&empty),
            Err(TrustError::Empty(_))
        ));
        let garbage = dir.join("garbage.pem");
        std::fs::write(
            &garbage,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .expect("write");
        assert!(matches!(
            TrustRoots::with_pem_file(&garbage),
            Err(TrustError::BadCertificate { index: 0, .. })
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_default_trusts_the_public_roots_only() {
        let roots = TrustRoots::default();
        assert!(roots.extra().is_empty());
        let config = roots.client_config();
        assert!(Arc::ptr_eq(&config, &roots.clone().client_config()));
    }
}
