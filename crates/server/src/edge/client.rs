//! Which address a request comes from: the TCP peer, or — only when the peer is a configured
//! trusted proxy (`server.trusted_proxies`) — the client that proxy names in
//! `X-Forwarded-For`.
//!
//! `X-Forwarded-For` is a list each proxy appends its peer to, so only its right end can be
//! believed: we walk it from the right, skipping entries that are themselves trusted proxies,
//! and take the first one that is not. A header from an untrusted peer is ignored entirely
//! (anyone can send one), so a client cannot dodge per-address limits by inventing addresses.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use axum::http::HeaderMap;
use ipnet::IpNet;

/// Name of the forwarded-for header proxies append the client address to.
const X_FORWARDED_FOR: &str = "x-forwarded-for";

/// The client of one request, inserted into every request's extensions by the accept loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr {
    /// The client's address: the peer, or the one a trusted proxy forwarded.
    pub ip: IpAddr,
    /// The TCP peer of the connection (a proxy's address when behind one).
    pub peer: SocketAddr,
}

/// The proxies whose `X-Forwarded-For` is believed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
}

impl TrustedProxies {
    /// Trusts these networks (a single host is a /32 or /128).
    pub fn new(nets: Vec<IpNet>) -> Self {
        TrustedProxies { nets }
    }

    /// Whether `ip` is one of the trusted proxies.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.nets.iter().any(|net| net.contains(&ip))
    }

    /// The client of a request that arrived from `peer` with these headers.
    pub fn client_of(&self, peer: SocketAddr, headers: &HeaderMap) -> ClientAddr {
        let peer_ip = canonical(peer.ip());
        let mut ip = peer_ip;
        if self.contains(peer_ip) {
            // Every header line, in order, as one comma-separated list, read from the right.
            let hops: Vec<&str> = headers
                .get_all(X_FORWARDED_FOR)
                .iter()
                .filter_map(|value| value.to_str().ok())
                .flat_map(|value| value.split(','))
                .collect();
            for hop in hops.iter().rev() {
                // An unreadable entry was written by whoever sent the request to the last
                // trusted hop: stop there and keep that hop as the client.
                let Some(hop_ip) = parse_hop(hop) else { break };
                ip = hop_ip;
                if !self.contains(hop_ip) {
                    break;
                }
            }
        }
        ClientAddr { ip, peer }
    }
}

/// One `X-Forwarded-For` entry: an address, possibly with a port (`1.2.3.4:5`, `[::1]:5`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    hop.parse::<IpAddr>()
        .or_else(|_| hop.parse::<SocketAddr>().map(|s| s.ip()))
        .ok()
        .map(canonical)
}

/// An IPv4 address written as IPv6 (`::ffff:1.2.3.4`, how a dual-stack socket reports it) is
/// the IPv4 address.
pub fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

/// The key per-address limits count under: an IPv4 address, or an IPv6 address's /64 (one
/// IPv6 client usually holds a whole /64, so counting single addresses would not limit it).
pub fn limit_key(ip: IpAddr) -> IpAddr {
    match canonical(ip) {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(prefix))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn proxies(list: &[&str]) -> TrustedProxies {
        TrustedProxies::new(list.iter().map(|s| s.parse().expect("net")).collect())
    }

    fn headers(xff: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in xff {
            h.append(X_FORWARDED_FOR, HeaderValue::from_str(v).expect("value"));
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn untrusted_peer_is_the_client_whatever_it_forwards() {
        let t = proxies(&["10.0.0.0/8"]);
        let peer: SocketAddr = "203.0.113.7:4000".parse().expect("addr");
        let c = t.client_of(peer, &headers(&["198.51.100.1"]));
        assert_eq!(c.ip, ip("203.0.113.7"));
        assert_eq!(c.peer, peer);
        assert_eq!(
            TrustedProxies::default()
                .client_of(peer, &headers(&["1.1.1.1"]))
                .ip,
            peer.ip()
        );
    }

    #[test]
    fn trusted_peer_forwards_the_rightmost_untrusted_hop() {
        let t = proxies(&["10.0.0.0/8", "192.0.2.1/32"]);
        let peer: SocketAddr = "10.1.2.3:4000".parse().expect("addr");
        // The client forged the left entry; the proxies appended the real one.
        let c = t.client_of(peer, &headers(&["6.6.6.6, 198.51.100.9", "192.0.2.1"]));
        assert_eq!(c.ip, ip("198.51.100.9"));
        // No header: the proxy itself.
        assert_eq!(t.client_of(peer, &HeaderMap::new()).ip, ip("10.1.2.3"));
        // Garbage before a trusted hop: the last trusted hop.
        assert_eq!(
            t.client_of(peer, &headers(&["nonsense, 192.0.2.1"])).ip,
            ip("192.0.2.1")
        );
        // Ports and IPv4-mapped IPv6 are understood.
        assert_eq!(
            t.client_of(peer, &headers(&["198.51.100.9:5555"])).ip,
            ip("198.51.100.9")
        );
        let mapped: SocketAddr = "[::ffff:10.0.0.1]:80".parse().expect("addr");
        assert_eq!(
            t.client_of(mapped, &headers(&["[2001:db8::1]:443"])).ip,
            ip("2001:db8::1")
        );
    }

    #[test]
    fn ipv6_clients_are_limited_per_64() {
        assert_eq!(limit_key(ip("2001:db8:1:2:3:4:5:6")), ip("2001:db8:1:2::"));
        assert_eq!(limit_key(ip("::ffff:1.2.3.4")), ip("1.2.3.4"));
        assert_eq!(limit_key(ip("1.2.3.4")), ip("1.2.3.4"));
    }
}
