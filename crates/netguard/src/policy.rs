//! The policy itself: the URL check used at save time and before each request, and the
//! resolve-filter-connect used at connect time.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use tokio::net::TcpStream;
use url::{Host, Url};

use crate::address::{AddressClass, forbidden_class};
use crate::allow::AllowList;
use crate::trust::TrustRoots;

/// Schemes a tenant URL may use.
const SCHEMES: &[&str] = &["http", "https", "ws", "wss"];

/// Why a tenant URL or address is refused. The message says what is not allowed and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotAllowed {
    /// The text is not an absolute URL.
    #[error("not a valid URL: {0}")]
    InvalidUrl(String),
    /// Only http, https, ws and wss are allowed.
    #[error("scheme `{0}` is not allowed (use http, https, ws or wss)")]
    Scheme(String),
    /// The URL names no host.
    #[error("the URL has no host")]
    NoHost,
    /// The host name always means this machine or a local network (`localhost`,
    /// `*.localhost`, `*.local`, `*.internal`, …).
    #[error("host `{0}` is a local name and is not allowed")]
    LocalName(String),
    /// The address (literal in the URL) is not a public one.
    #[error("address {addr} is not allowed ({class})")]
    Address {
        /// The refused address.
        addr: IpAddr,
        /// Why.
        class: AddressClass,
    },
    /// Every address the host name resolved to was refused.
    #[error("`{host}` resolves to {addr}, which is not allowed ({class})")]
    Resolved {
        /// The host name looked up.
        host: String,
        /// The first refused address.
        addr: IpAddr,
        /// Why it was refused.
        class: AddressClass,
    },
}

/// Why [`OutboundPolicy::connect_tcp`] did not produce a connection.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The policy refused the URL or every address it resolved to.
    #[error(transparent)]
    NotAllowed(#[from] NotAllowed),
    /// The host name could not be resolved.
    #[error("could not resolve `{host}`: {source}")]
    Resolve {
        /// The host name.
        host: String,
        /// The resolver's error.
        source: io::Error,
    },
    /// No allowed address accepted the connection.
    #[error("could not connect to {addr}: {source}")]
    Connect {
        /// The last address tried.
        addr: SocketAddr,
        /// The socket error.
        source: io::Error,
    },
}

/// Names that always mean this machine or a local network, whatever DNS says: exact names,
/// then suffixes (`.localhost` covers `a.localhost`).
const LOCAL_NAMES: &[&str] = &[
    "localhost",
    "localhost.localdomain",
    "ip6-localhost",
    "ip6-loopback",
];
const LOCAL_SUFFIXES: &[&str] = &[
    ".localhost",
    ".localdomain",
    ".local",
    ".internal",
    ".home.arpa",
];

fn is_local_name(host: &str) -> bool {
    let host = host.trim_end_matches('.');
    LOCAL_NAMES.iter().any(|n| host.eq_ignore_ascii_case(n))
        || LOCAL_SUFFIXES.iter().any(|s| {
            host.len() > s.len()
                && host.is_char_boundary(host.len() - s.len())
                && host[host.len() - s.len()..].eq_ignore_ascii_case(s)
        })
}

/// Where tenant URLs may go, and which CAs their TLS is verified against. Cheap to clone (two
/// `Arc`s); the default allows no private address at all and trusts the public roots only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboundPolicy {
    allow: Arc<AllowList>,
    trust: TrustRoots,
}

impl OutboundPolicy {
    /// A policy that refuses non-public addresses except those in `allow`.
    pub fn new(allow: AllowList) -> OutboundPolicy {
        OutboundPolicy {
            allow: Arc::new(allow),
            trust: TrustRoots::default(),
        }
    }

    /// This policy, its connections' TLS trusting `trust` (public roots plus extra CAs).
    pub fn with_trust(self, trust: TrustRoots) -> OutboundPolicy {
        OutboundPolicy { trust, ..self }
    }

    /// The roots outbound TLS is verified against ([`GuardedClient`](crate::GuardedClient)
    /// and websocket handshakes over [`OutboundPolicy::connect_tcp`]).
    pub fn trust(&self) -> &TrustRoots {
        &self.trust
    }

    /// The operator's allowlist.
    pub fn allow_list(&self) -> &AllowList {
        &self.allow
    }

    /// Parses `url` and checks it as [`OutboundPolicy::check_url`] does.
    pub fn check_url_str(&self, url: &str) -> Result<Url, NotAllowed> {
        let parsed = Url::parse(url.trim()).map_err(|e| NotAllowed::InvalidUrl(e.to_string()))?;
        self.check_url(&parsed)?;
        Ok(parsed)
    }

    /// The save-time check: the scheme, a literal address, and host names that always mean
    /// this machine or a local network. It does not resolve names (DNS may change before the
    /// URL is used): connections are checked again on the resolved addresses.
    pub fn check_url(&self, url: &Url) -> Result<(), NotAllowed> {
        self.check_target(url)?;
        if let Some(Host::Domain(name)) = url.host()
            && !self.allow.allows_host(name)
            && is_local_name(name)
        {
            return Err(NotAllowed::LocalName(name.to_owned()));
        }
        Ok(())
    }

    /// The check before each connection: the scheme and a literal address. A host name is
    /// left to the connect path ([`OutboundPolicy::resolve`], the resolver of
    /// [`crate::GuardedClient`]), which judges the addresses it actually resolves to.
    pub fn check_target(&self, url: &Url) -> Result<(), NotAllowed> {
        if !SCHEMES.contains(&url.scheme()) {
            return Err(NotAllowed::Scheme(url.scheme().to_owned()));
        }
        match url.host() {
            None => Err(NotAllowed::NoHost),
            Some(Host::Domain("")) => Err(NotAllowed::NoHost),
            Some(Host::Domain(_)) => Ok(()),
            Some(Host::Ipv4(v4)) => self.check_ip(IpAddr::V4(v4)),
            Some(Host::Ipv6(v6)) => self.check_ip(IpAddr::V6(v6)),
        }
    }

    /// Whether a tenant URL may reach `ip`: a public address, or an allowlisted one.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), NotAllowed> {
        if self.allow.allows_ip(ip) {
            return Ok(());
        }
        match forbidden_class(ip) {
            Some(class) => Err(NotAllowed::Address { addr: ip, class }),
            None => Ok(()),
        }
    }

    /// Keeps the addresses of `host` a tenant URL may reach. All of them when the host name
    /// is allowlisted; refused when none is left (the message names the first refused one).
    pub fn filter_resolved(
        &self,
        host: &str,
        addrs: impl IntoIterator<Item = SocketAddr>,
    ) -> Result<Vec<SocketAddr>, NotAllowed> {
        let host_allowed = self.allow.allows_host(host);
        let mut kept = Vec::new();
        let mut first_refused = None;
        for addr in addrs {
            if host_allowed {
                kept.push(addr);
                continue;
            }
            match self.check_ip(addr.ip()) {
                Ok(()) => kept.push(addr),
                Err(NotAllowed::Address { addr, class }) => {
                    first_refused.get_or_insert((addr, class));
                }
                Err(_) => {}
            }
        }
        match (kept.is_empty(), first_refused) {
            (true, Some((addr, class))) => Err(NotAllowed::Resolved {
                host: host.to_owned(),
                addr,
                class,
            }),
            _ => Ok(kept),
        }
    }

    /// Resolves `host` (a name or a literal address) and keeps the addresses a tenant URL may
    /// reach, with `port`.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, ConnectError> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>() {
            self.check_ip(ip)?;
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        let found = tokio::net::lookup_host((host, port))
            .await
            .map_err(|source| ConnectError::Resolve {
                host: host.to_owned(),
                source,
            })?;
        let kept = self.filter_resolved(host, found)?;
        if kept.is_empty() {
            return Err(ConnectError::Resolve {
                host: host.to_owned(),
                source: io::Error::new(io::ErrorKind::NotFound, "no addresses"),
            });
        }
        Ok(kept)
    }

    /// Opens a TCP connection (Nagle off) to `url`'s host and port after checking the URL
    /// and every resolved address, trying the allowed ones in order. The caller runs TLS and
    /// the websocket handshake over it (`tokio_tungstenite::client_async_tls_with_config`), so
    /// the address connected to is the one that was checked: no second lookup can rebind it.
    pub async fn connect_tcp(&self, url: &Url) -> Result<TcpStream, ConnectError> {
        self.check_target(url)?;
        let host = url.host_str().ok_or(NotAllowed::NoHost)?;
        let port = url
            .port_or_known_default()
            .ok_or_else(|| NotAllowed::Scheme(url.scheme().to_owned()))?;
        let mut last = None;
        for addr in self.resolve(host, port).await? {
            match TcpStream::connect(addr).await {
                Ok(stream) => {
                    // Nagle off: every provider message is latency-critical.
                    let _ = stream.set_nodelay(true);
                    return Ok(stream);
                }
                Err(source) => last = Some(ConnectError::Connect { addr, source }),
            }
        }
        Err(last.unwrap_or_else(|| ConnectError::Resolve {
            host: host.to_owned(),
            source: io::Error::new(io::ErrorKind::NotFound, "no addresses"),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strict() -> OutboundPolicy {
        OutboundPolicy::default()
    }

    fn allowing(entries: &str) -> OutboundPolicy {
        OutboundPolicy::new(entries.parse().expect("allowlist parses"))
    }

    fn sock(s: &str) -> SocketAddr {
        s.parse().expect("test socket address parses")
    }

    #[test]
    fn the_urls_of_the_finding_are_refused() {
        for url in [
            "http://127.0.0.1:8080/hook",
            "http://169.254.169.254/latest/meta-data/",
            "http://10.0.0.1/",
            "http://localhost:3000/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::1]:9000/",
            "http://2130706433/",
            "http://0x7f.1/",
            "http://0/",
            "https://api.localhost/",
            "http://LOCALHOST./",
            "ws://metadata.google.internal/",
            "wss://printer.local/",
        ] {
            let err = strict().check_url_str(url).expect_err(url);
            assert!(err.to_string().contains("not allowed"), "{url}: {err}");
        }
    }

    #[test]
    fn public_urls_pass() {
        for url in [
            "https://api.openai.com/v1",
            "wss://api.deepgram.com",
            "https://hooks.example.com/switchboard",
            "http://8.8.8.8/",
            "https://[2606:4700:4700::1111]/",
        ] {
            strict().check_url_str(url).expect(url);
        }
    }

    #[test]
    fn only_web_schemes_are_allowed() {
        for url in [
            "ftp://example.com/",
            "file:///etc/passwd",
            "gopher://example.com/",
        ] {
            assert!(
                matches!(strict().check_url_str(url), Err(NotAllowed::Scheme(_))),
                "{url}"
            );
        }
        assert!(matches!(
            strict().check_url_str("not a url"),
            Err(NotAllowed::InvalidUrl(_))
        ));
    }

    #[test]
    fn the_allowlist_lets_addresses_networks_and_names_through() {
        let p = allowing("127.0.0.1,::1,10.1.0.0/16,localhost,llm.internal");
        p.check_url_str("http://127.0.0.1:8080/")
            .expect("allowed address");
        p.check_url_str("http://[::ffff:127.0.0.1]/")
            .expect("mapped form");
        p.check_url_str("http://[::1]:9000/").expect("v6 loopback");
        p.check_url_str("http://10.1.2.3/").expect("in the network");
        p.check_url_str("http://localhost:3000/")
            .expect("allowed name");
        p.check_url_str("https://llm.internal/v1")
            .expect("allowed name");
        assert!(p.check_url_str("http://127.0.0.2/").is_err());
        assert!(p.check_url_str("http://10.2.0.1/").is_err());
        assert!(p.check_url_str("http://169.254.169.254/").is_err());
        assert!(p.check_url_str("http://other.internal/").is_err());
    }

    #[test]
    fn connect_time_check_leaves_names_to_the_resolver() {
        let url = Url::parse("http://localhost:1/").expect("url");
        assert!(strict().check_target(&url).is_ok());
        assert!(strict().check_url(&url).is_err());
    }

    #[test]
    fn filtering_drops_refused_addresses_and_refuses_when_none_is_left() {
        let p = strict();
        let kept = p
            .filter_resolved(
                "mixed.example",
                [
                    sock("127.0.0.1:80"),
                    sock("93.184.215.14:80"),
                    sock("[fd00::1]:80"),
                ],
            )
            .expect("one public address");
        assert_eq!(kept, vec![sock("93.184.215.14:80")]);
        let err = p
            .filter_resolved("rebound.example", [sock("169.254.169.254:80")])
            .expect_err("only metadata");
        assert_eq!(
            err,
            NotAllowed::Resolved {
                host: "rebound.example".into(),
                addr: "169.254.169.254".parse().expect("ip"),
                class: AddressClass::LinkLocal,
            }
        );
        assert!(err.to_string().contains("not allowed"), "{err}");
        let err = p
            .filter_resolved("mapped.example", [sock("[::ffff:10.0.0.1]:80")])
            .expect_err("mapped private");
        assert!(matches!(
            err,
            NotAllowed::Resolved {
                class: AddressClass::Private,
                ..
            }
        ));
    }

    #[test]
    fn filtering_keeps_everything_for_an_allowlisted_name_and_allowlisted_addresses() {
        let p = allowing("db.lan,127.0.0.1");
        let all = [sock("10.0.0.5:80"), sock("127.0.0.1:80")];
        assert_eq!(
            p.filter_resolved("DB.LAN.", all).expect("name allowed"),
            all
        );
        assert_eq!(
            p.filter_resolved("other.lan", all)
                .expect("address allowed"),
            vec![sock("127.0.0.1:80")]
        );
    }

    #[tokio::test]
    async fn the_resolver_refuses_a_name_that_resolves_to_loopback() {
        let err = strict()
            .resolve("localhost", 80)
            .await
            .expect_err("loopback");
        assert!(
            matches!(
                err,
                ConnectError::NotAllowed(NotAllowed::Resolved {
                    class: AddressClass::Loopback,
                    ..
                })
            ),
            "{err}"
        );
        let ok = allowing("127.0.0.1,::1")
            .resolve("localhost", 80)
            .await
            .expect("allowlisted");
        assert!(ok.iter().all(|a| a.ip().is_loopback() && a.port() == 80));
    }

    #[tokio::test]
    async fn connect_tcp_refuses_then_connects_when_allowlisted() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        for url in [
            format!("ws://127.0.0.1:{port}/"),
            format!("ws://[::ffff:127.0.0.1]:{port}/"),
            format!("ws://localhost:{port}/"),
        ] {
            let url = Url::parse(&url).expect("url");
            let err = strict().connect_tcp(&url).await.expect_err("refused");
            assert!(matches!(err, ConnectError::NotAllowed(_)), "{url}: {err}");
        }
        let url = Url::parse(&format!("ws://127.0.0.1:{port}/")).expect("url");
        let stream = allowing("127.0.0.1")
            .connect_tcp(&url)
            .await
            .expect("allowlisted connect");
        let (accepted, _) = listener.accept().await.expect("accepted");
        assert_eq!(
            accepted.peer_addr().expect("peer"),
            stream.local_addr().expect("local")
        );
    }
}
