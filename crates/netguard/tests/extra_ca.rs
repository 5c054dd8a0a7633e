//! `[tls] extra_ca_file` end to end: a server whose certificate comes from a throwaway CA is
//! refused by the guarded client and by the websocket TLS configuration while only the public
//! roots are trusted, and accepted once the CA's PEM file is added, with verification on.

use std::error::Error as _;
use std::sync::Arc;

use switchboard_netguard::{GuardedClient, OutboundPolicy, TrustRoots};
use switchboard_testkit::tls::{TestCa, TlsFront};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A plain HTTP server on 127.0.0.1 answering every request `200 ok`.
async fn plain_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = sock.read(&mut buf).await;
                let _ = sock
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                    )
                    .await;
                let _ = sock.shutdown().await;
            });
        }
    });
    format!("http://{addr}")
}

/// The CA, a TLS front over a plain server, and the CA's PEM file.
async fn setup() -> (TestCa, TlsFront, tempfile::NamedTempFile) {
    let ca = TestCa::generate().expect("ca");
    let front = TlsFront::start(&ca, &plain_server().await)
        .await
        .expect("front");
    let file = tempfile::NamedTempFile::new().expect("temp file");
    ca.write_ca_file(file.path()).expect("ca file");
    (ca, front, file)
}

fn loopback() -> OutboundPolicy {
    OutboundPolicy::new("127.0.0.1".parse().expect("allowlist"))
}

fn chain(e: &reqwest::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

#[tokio::test]
async fn the_guarded_client_trusts_the_extra_ca_only_when_configured() {
    let (_ca, front, file) = setup().await;
    let url = format!("{}/", front.base_url());

    let public_only = GuardedClient::build(loopback(), reqwest::Client::builder()).expect("client");
    let err = public_only
        .post(&url)
        .expect("allowed")
        .send()
        .await
        .expect_err("an unknown CA is refused");
    assert!(switchboard_netguard::refusal_of(&err).is_none());
    let text = chain(&err);
    assert!(text.contains("UnknownIssuer"), "{text}");

    let trust = TrustRoots::with_pem_file(file.path()).expect("bundle");
    assert_eq!(trust.extra().len(), 1);
    let trusting = GuardedClient::build(loopback().with_trust(trust), reqwest::Client::builder())
        .expect("client");
    let res = trusting
        .post(&url)
        .expect("allowed")
        .send()
        .await
        .expect("the extra CA is trusted");
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.expect("body"), "ok");
}

#[tokio::test]
async fn the_websocket_tls_configuration_trusts_the_extra_ca_only_when_configured() {
    let (_ca, front, file) = setup().await;
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
    let addr = front.addr();
    let handshake = |config: Arc<rustls::ClientConfig>| {
        let name = name.clone();
        async move {
            let tcp = TcpStream::connect(addr).await.expect("connect");
            tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await
        }
    };
    let refused = handshake(TrustRoots::default().client_config())
        .await
        .expect_err("an unknown CA is refused");
    assert!(refused.to_string().contains("UnknownIssuer"), "{refused}");
    let trust = TrustRoots::with_pem_file(file.path()).expect("bundle");
    handshake(trust.client_config())
        .await
        .expect("the extra CA is trusted");
}
