//! The HTTP edge: what stands between the network and the router. Connection caps and timers
//! (so slow or idle clients cannot hold connections), the client address (with forwarded
//! headers believed only from trusted proxies), the request-body deadline, security headers,
//! and memory housekeeping after connection bursts. Configuration and the reasoning behind
//! the defaults: docs/security/edge.md.

pub mod accept;
pub mod activity;
pub mod body;
pub mod client;
pub mod headers;
pub mod housekeeping;
pub mod limits;

pub use accept::{EdgeConfig, serve};
pub use client::{ClientAddr, TrustedProxies};
pub use limits::{ConnectionLimits, Refused};
