//! Caps on open connections, checked at accept: `server.max_connections` in total and
//! `server.max_connections_per_ip` per client address. A connection over either cap is closed
//! at once, before any byte of it is read, so a flood of connections costs a socket each and
//! nothing more.
//!
//! A [`ConnectionPermit`] holds both slots for as long as the socket lives — also after an
//! upgrade to a websocket, since the permit travels with the socket. The per-address count
//! uses the TCP peer (forwarded headers are not read yet at accept); trusted proxies are
//! exempt from it, as each of their connections carries many clients.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use dashmap::DashMap;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::client::{TrustedProxies, limit_key};

/// Why a connection was refused at accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// `server.max_connections` connections are open.
    #[error("the server's connection limit is reached")]
    ServerFull,
    /// `server.max_connections_per_ip` connections are open from this address.
    #[error("this address's connection limit is reached")]
    AddressFull,
}

/// The connection caps of one listener. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct ConnectionLimits {
    max_total: usize,
    total: Arc<Semaphore>,
    max_per_ip: usize,
    per_ip: Arc<DashMap<IpAddr, usize>>,
    trusted: Arc<TrustedProxies>,
    /// Highest number of open connections since [`ConnectionLimits::take_peak`] last ran.
    peak: AtomicUsize,
}

impl ConnectionLimits {
    /// Caps of `max_total` connections, `max_per_ip` per address (trusted proxies exempt).
    pub fn new(max_total: usize, max_per_ip: usize, trusted: Arc<TrustedProxies>) -> Self {
        let max_total = max_total.clamp(1, Semaphore::MAX_PERMITS);
        ConnectionLimits {
            max_total,
            total: Arc::new(Semaphore::new(max_total)),
            max_per_ip: max_per_ip.max(1),
            per_ip: Arc::new(DashMap::new()),
            trusted,
            peak: AtomicUsize::new(0),
        }
    }

    /// Takes a slot for a connection from `peer`, or says which cap is reached.
    pub fn admit(&self, peer: IpAddr) -> Result<ConnectionPermit, Refused> {
        let total = Arc::clone(&self.total)
            .try_acquire_owned()
            .map_err(|_| Refused::ServerFull)?;
        let per_ip = if self.trusted.contains(peer) {
            None
        } else {
            let key = limit_key(peer);
            let mut count = self.per_ip.entry(key).or_insert(0);
            if *count >= self.max_per_ip {
                return Err(Refused::AddressFull);
            }
            *count += 1;
            Some(AddressSlot {
                key,
                counts: Arc::clone(&self.per_ip),
            })
        };
        self.peak.fetch_max(self.open(), Ordering::Relaxed);
        Ok(ConnectionPermit {
            _total: total,
            _per_ip: per_ip,
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.max_total - self.total.available_permits()
    }

    /// The highest count of open connections since the last call, and starts a new period
    /// from the current count (the memory housekeeping's "has a burst ended?").
    pub fn take_peak(&self) -> usize {
        self.peak.swap(self.open(), Ordering::Relaxed)
    }

    /// Client addresses (or IPv6 /64s) with at least one connection open.
    pub fn addresses(&self) -> usize {
        self.per_ip.len()
    }
}

/// One connection's slots; dropping it frees them.
#[derive(Debug)]
pub struct ConnectionPermit {
    _total: OwnedSemaphorePermit,
    _per_ip: Option<AddressSlot>,
}

#[derive(Debug)]
struct AddressSlot {
    key: IpAddr,
    counts: Arc<DashMap<IpAddr, usize>>,
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        self.counts.remove_if_mut(&self.key, |_, count| {
            *count = count.saturating_sub(1);
            *count == 0
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn per_address_and_total_caps() {
        let trusted = Arc::new(TrustedProxies::new(vec![
            "10.0.0.1/32".parse().expect("net"),
        ]));
        let limits = ConnectionLimits::new(4, 2, trusted);
        let a1 = limits.admit(ip("1.1.1.1")).expect("first");
        let _a2 = limits.admit(ip("1.1.1.1")).expect("second");
        assert_eq!(
            limits.admit(ip("1.1.1.1")).err(),
            Some(Refused::AddressFull)
        );
        // The refused attempt took no slot.
        assert_eq!(limits.open(), 2);
        // A trusted proxy is not capped per address, only in total.
        let _p1 = limits.admit(ip("10.0.0.1")).expect("proxy");
        let _p2 = limits.admit(ip("10.0.0.1")).expect("proxy");
        assert_eq!(limits.admit(ip("2.2.2.2")).err(), Some(Refused::ServerFull));
        drop(a1);
        let _a3 = limits.admit(ip("1.1.1.1")).expect("slot freed");
        assert_eq!(limits.take_peak(), 4);
    }

    #[test]
    fn ipv6_slash_64_shares_a_cap_and_counts_are_removed_at_zero() {
        let limits = ConnectionLimits::new(10, 1, Arc::default());
        let first = limits.admit(ip("2001:db8::1")).expect("first");
        assert_eq!(
            limits.admit(ip("2001:db8::2")).err(),
            Some(Refused::AddressFull)
        );
        assert!(limits.admit(ip("2001:db8:0:1::1")).is_ok(), "another /64");
        assert_eq!(limits.addresses(), 1, "the other /64's slot was dropped");
        drop(first);
        assert_eq!(limits.addresses(), 0);
    }
}
