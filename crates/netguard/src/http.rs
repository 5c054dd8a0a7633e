//! A reqwest client that only reaches what the policy allows: its resolver drops refused
//! addresses, each redirect hop is checked, system proxies are ignored (a proxy would resolve
//! the tenant's host where we cannot check it), and literal addresses — which reqwest connects
//! to without asking the resolver — are checked before each request.

use std::error::Error as StdError;
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::{Method, RequestBuilder, redirect};

use crate::policy::{ConnectError, NotAllowed, OutboundPolicy};

/// Most redirects a guarded request follows (each hop is checked).
pub const MAX_REDIRECTS: usize = 5;

/// The policy as a reqwest resolver: resolves with the system, keeps allowed addresses.
struct PolicyResolver {
    policy: OutboundPolicy,
}

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            // Port 0: reqwest puts the URL's port on the addresses it gets back.
            match policy.resolve(name.as_str(), 0).await {
                Ok(addrs) => Ok(Box::new(addrs.into_iter()) as Addrs),
                Err(ConnectError::NotAllowed(refused)) => Err(refused.into()),
                Err(other) => Err(other.into()),
            }
        })
    }
}

/// An HTTP client for tenant URLs, inseparable from its [`OutboundPolicy`]: every request
/// starts with a check of its URL ([`GuardedClient::request`]) and every connection goes
/// through the policy's resolver. Cheap to clone (pooled connections are shared).
#[derive(Debug, Clone)]
pub struct GuardedClient {
    client: reqwest::Client,
    policy: OutboundPolicy,
}

impl GuardedClient {
    /// Builds the client from `builder` (timeouts, pool settings…) with the policy's resolver,
    /// redirect check, trusted roots and no proxy.
    pub fn build(
        policy: OutboundPolicy,
        builder: reqwest::ClientBuilder,
    ) -> Result<GuardedClient, reqwest::Error> {
        let hops = policy.clone();
        let client = policy
            .trust()
            .apply(builder)
            .no_proxy()
            .dns_resolver(Arc::new(PolicyResolver {
                policy: policy.clone(),
            }))
            .redirect(redirect::Policy::custom(move |attempt| {
                if attempt.previous().len() >= MAX_REDIRECTS {
                    return attempt.error(format!("more than {MAX_REDIRECTS} redirects"));
                }
                match hops.check_target(attempt.url()) {
                    Ok(()) => attempt.follow(),
                    Err(refused) => attempt.error(refused),
                }
            }))
            .build()?;
        Ok(GuardedClient { client, policy })
    }

    /// The policy this client enforces (also used for websocket connections).
    pub fn policy(&self) -> &OutboundPolicy {
        &self.policy
    }

    /// A request to `url`, or why the policy refuses it before anything is sent. Host names
    /// are judged on their resolved addresses when the connection is made.
    pub fn request(&self, method: Method, url: &str) -> Result<RequestBuilder, NotAllowed> {
        let parsed =
            url::Url::parse(url.trim()).map_err(|e| NotAllowed::InvalidUrl(e.to_string()))?;
        self.policy.check_target(&parsed)?;
        Ok(self.client.request(method, parsed))
    }

    /// A POST to `url` (see [`GuardedClient::request`]).
    pub fn post(&self, url: &str) -> Result<RequestBuilder, NotAllowed> {
        self.request(Method::POST, url)
    }
}

/// The policy refusal behind a failed request (resolver or redirect), if that is why it
/// failed; `None` for ordinary network or HTTP errors.
pub fn refusal_of(err: &reqwest::Error) -> Option<&NotAllowed> {
    let mut cur: Option<&(dyn StdError + 'static)> = err.source();
    while let Some(e) = cur {
        if let Some(refused) = e.downcast_ref::<NotAllowed>() {
            return Some(refused);
        }
        cur = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    fn client(allow: &str) -> GuardedClient {
        let policy = OutboundPolicy::new(allow.parse().expect("allowlist"));
        GuardedClient::build(
            policy,
            reqwest::Client::builder().timeout(Duration::from_secs(10)),
        )
        .expect("client builds")
    }

    /// An HTTP server on 127.0.0.1 answering every request with `reply`; counts connections.
    async fn server(reply: String) -> (u16, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&accepted);
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let mut buf = [0u8; 4096];
                let _ = sock.read(&mut buf).await;
                let _ = sock.write_all(reply.as_bytes()).await;
                let _ = sock.shutdown().await;
            }
        });
        (port, accepted)
    }

    const OK: &str = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok";

    #[tokio::test]
    async fn literal_addresses_are_refused_before_sending() {
        let c = client("");
        for url in [
            "http://127.0.0.1:1/",
            "http://[::ffff:127.0.0.1]:1/",
            "http://169.254.169.254/",
            "ftp://example.com/",
        ] {
            let err = c.post(url).expect_err(url);
            assert!(err.to_string().contains("not allowed"), "{url}: {err}");
        }
    }

    #[tokio::test]
    async fn a_name_resolving_to_loopback_is_refused_at_connect_time() {
        let (port, accepted) = server(OK.to_owned()).await;
        let err = client("")
            .post(&format!("http://localhost:{port}/"))
            .expect("a name passes the pre-request check")
            .send()
            .await
            .expect_err("the resolver refuses");
        let refused = refusal_of(&err).expect("a policy refusal");
        assert!(matches!(refused, NotAllowed::Resolved { .. }), "{refused}");
        assert!(refused.to_string().contains("not allowed"));
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            0,
            "nothing reached the listener"
        );
    }

    #[tokio::test]
    async fn allowlisted_loopback_is_reached() {
        let (port, _server) = server(OK.to_owned()).await;
        let c = client("127.0.0.1,::1");
        for url in [
            format!("http://127.0.0.1:{port}/"),
            format!("http://localhost:{port}/"),
        ] {
            let res = c.post(&url).expect(&url).send().await.expect("delivered");
            assert_eq!(res.text().await.expect("body"), "ok");
        }
    }

    #[tokio::test]
    async fn a_redirect_to_a_refused_address_is_not_followed() {
        let (target_port, target_hits) = server(OK.to_owned()).await;
        let redirect = format!(
            "HTTP/1.1 307 Temporary Redirect\r\nlocation: http://127.0.0.1:{target_port}/\r\n\
             content-length: 0\r\nconnection: close\r\n\r\n"
        );
        let (port, redirector_hits) = server(redirect).await;
        // The redirector is reachable by name (allowlisted); the hop's literal address is not.
        let err = client("localhost")
            .post(&format!("http://localhost:{port}/"))
            .expect("allowed")
            .send()
            .await
            .expect_err("the hop is refused");
        let refused = refusal_of(&err).expect("a policy refusal");
        assert!(matches!(refused, NotAllowed::Address { .. }), "{refused}");
        assert_eq!(redirector_hits.load(Ordering::SeqCst), 1);
        assert_eq!(
            target_hits.load(Ordering::SeqCst),
            0,
            "the hop never connected"
        );
    }
}
