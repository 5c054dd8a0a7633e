//! One outbound-URL policy for every URL a tenant sets (webhooks, custom tools, provider base
//! URLs): tenants must never make the engine reach inside our network.
//!
//! A URL passes when its scheme is http, https, ws or wss and its host is a public address,
//! unless the operator allowlisted the host name or the address (`outbound.allow_hosts`:
//! host names, IP addresses and CIDRs). Refused address classes are listed in
//! [`AddressClass`]; IPv4-mapped, NAT64 and 6to4 IPv6 forms are judged by the IPv4 address
//! they carry.
//!
//! The policy is enforced twice:
//! - **at save time**, [`OutboundPolicy::check_url`] looks at the URL alone (scheme, literal
//!   addresses, names such as `localhost` that always mean this machine or a local network),
//!   so a bad URL is refused with a clear message before it is stored;
//! - **at connect time**, on the addresses actually connected to, so a DNS name cannot be
//!   rebound to an internal address after it was saved: [`GuardedClient`] (reqwest with a
//!   filtering resolver, checked redirects, no proxy, and a check of literal addresses before
//!   each request) and [`OutboundPolicy::connect_tcp`] (resolve, filter, connect, for
//!   websockets).
//!
//! The policy also carries the CA roots outbound TLS is verified against ([`TrustRoots`]):
//! the public ones plus the operator's `[tls] extra_ca_file`; the guarded client and the
//! websocket handshakes use them, and verification cannot be switched off.

mod address;
mod allow;
mod http;
mod policy;
mod trust;

pub use address::{AddressClass, forbidden_class};
pub use allow::{AllowList, AllowListError};
pub use http::{GuardedClient, MAX_REDIRECTS, refusal_of};
pub use policy::{ConnectError, NotAllowed, OutboundPolicy};
pub use trust::{TrustError, TrustRoots};
