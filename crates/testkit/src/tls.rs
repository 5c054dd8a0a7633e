//! TLS for the fakes: a throwaway certificate authority generated at run time (rcgen, nothing
//! committed), and a TLS front that serves any fake as `https`/`wss` on its own 127.0.0.1 port.
//!
//! The engine under test is told to trust the CA through its configuration (`[tls]
//! extra_ca_file`), so its connections verify certificates exactly as they do in production;
//! nothing here asks a client to skip verification. The front terminates TLS and relays the
//! plain bytes to the fake over loopback TCP, so every fake gets TLS without knowing about it
//! (each relayed connection costs the harness one more loopback socket pair and a copy).

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use crate::tcp_server::TcpFakeServer;

/// Why a throwaway CA or a TLS front could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TlsFakeError {
    /// Key or certificate generation failed.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    /// rustls refused the generated certificate or key.
    #[error("TLS configuration failed: {0}")]
    Config(#[from] rustls::Error),
    /// Binding the front or writing the CA file failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// A throwaway CA and one leaf certificate it signed for `127.0.0.1`, `::1` and `localhost`
/// (what the fakes listen on). Lives as long as the test or load run; its key never leaves
/// this process.
pub struct TestCa {
    ca_pem: String,
    server_config: Arc<rustls::ServerConfig>,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").finish_non_exhaustive()
    }
}

impl TestCa {
    /// Generates the CA (ECDSA P-256, the default key of rcgen) and the leaf.
    pub fn generate() -> Result<TestCa, TlsFakeError> {
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "switchboard testkit throwaway CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca_params, ca_key);

        let leaf_key = KeyPair::generate()?;
        let mut leaf_params = CertificateParams::new(vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
            "::1".to_owned(),
        ])?;
        leaf_params
            .distinguished_name
            .push(DnType::CommonName, "switchboard testkit fake");
        leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let leaf = leaf_params.signed_by(&leaf_key, &issuer)?;

        let chain = vec![leaf.der().clone(), ca_cert.der().clone()];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
        let mut server_config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
        server_config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TestCa {
            ca_pem: ca_cert.pem(),
            server_config: Arc::new(server_config),
        })
    }

    /// The CA certificate (PEM): what a client is told to trust.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The CA certificate (DER).
    pub fn ca_der(&self) -> CertificateDer<'static> {
        use rustls::pki_types::pem::PemObject;
        CertificateDer::from_pem_slice(self.ca_pem.as_bytes())
            .expect("rcgen writes a well-formed PEM certificate")
    }

    /// Writes the CA certificate to `path` (PEM), for `[tls] extra_ca_file`.
    pub fn write_ca_file(&self, path: &Path) -> Result<(), TlsFakeError> {
        let mut file = std::fs::File::create(path)?;
        file.write_all(self.ca_pem.as_bytes())?;
        Ok(())
    }

    /// The server side of the leaf: what a TLS front serves.
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        Arc::clone(&self.server_config)
    }
}

/// A fake served over TLS: accepts TLS on its own 127.0.0.1 port and relays each connection's
/// plain bytes to the fake. Stops with the value.
#[derive(Debug)]
pub struct TlsFront {
    server: TcpFakeServer,
    path: String,
}

impl TlsFront {
    /// Serves the fake whose plain base URL is `plain_base` (`http://127.0.0.1:<port>[/path]`,
    /// what the fakes' `base_url()` return) over TLS with `ca`'s leaf certificate.
    pub async fn start(ca: &TestCa, plain_base: &str) -> Result<TlsFront, TlsFakeError> {
        let url = url::Url::parse(plain_base).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{plain_base}: {e}"),
            )
        })?;
        let backend = url
            .socket_addrs(|| None)?
            .into_iter()
            .next()
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "no address"))?;
        let acceptor = TlsAcceptor::from(ca.server_config());
        let server =
            TcpFakeServer::start(move |stream| relay(acceptor.clone(), stream, backend)).await?;
        Ok(TlsFront {
            server,
            path: url.path().trim_end_matches('/').to_owned(),
        })
    }

    /// The front's address.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// The fake's base URL over TLS: `https://127.0.0.1:<port>` and the plain base URL's path
    /// (`wss` for its websockets: the adapters derive it from `https`).
    pub fn base_url(&self) -> String {
        format!("https://{}{}", self.server.addr(), self.path)
    }
}

/// One connection: TLS handshake, then bytes both ways until either side closes. A failed
/// handshake (a client that does not trust the CA) just ends the connection.
async fn relay(acceptor: TlsAcceptor, stream: TcpStream, backend: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let Ok(mut tls) = acceptor.accept(stream).await else {
        return;
    };
    let Ok(mut plain) = TcpStream::connect(backend).await else {
        return;
    };
    let _ = plain.set_nodelay(true);
    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A client that trusts `roots` only.
    fn connector(roots: &[CertificateDer<'static>]) -> tokio_rustls::TlsConnector {
        let mut store = rustls::RootCertStore::empty();
        for r in roots {
            store.add(r.clone()).expect("root");
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(store)
        .with_no_client_auth();
        tokio_rustls::TlsConnector::from(Arc::new(config))
    }

    /// An echo server on 127.0.0.1 (the "fake" behind the front).
    async fn echo() -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn the_front_relays_for_a_client_trusting_the_ca_and_refuses_others() {
        let ca = TestCa::generate().expect("ca");
        let front = TlsFront::start(&ca, &format!("http://{}/v1/", echo().await))
            .await
            .expect("front");
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");

        let tcp = TcpStream::connect(front.addr()).await.expect("connect");
        let mut tls = connector(&[ca.ca_der()])
            .connect(name.clone(), tcp)
            .await
            .expect("a client trusting the CA completes the handshake");
        tls.write_all(b"ping").await.expect("write");
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await.expect("read");
        assert_eq!(&buf, b"ping");

        let other = TestCa::generate().expect("other ca");
        let tcp = TcpStream::connect(front.addr()).await.expect("connect");
        let refused = connector(&[other.ca_der()]).connect(name, tcp).await;
        assert!(
            refused.is_err(),
            "a client trusting another CA refuses the certificate"
        );
        assert_eq!(
            front.base_url(),
            format!("https://127.0.0.1:{}/v1", front.addr().port())
        );
    }
}
