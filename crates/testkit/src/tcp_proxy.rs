//! A TCP proxy on 127.0.0.1 in front of a real server (PostgreSQL, Redis) that a test can cut:
//! the way to make a real database "go away" mid-test and come back, without stopping it for
//! every other test that shares it.
//!
//! While cut, every forwarded connection is closed (both sides see the connection end without
//! a goodbye, as when a database host reboots) and each new connection is accepted and closed
//! at once (counted in [`TcpProxy::refused`], so a test can wait until a client has tried
//! again). [`TcpProxy::restore`] forwards new connections again.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::tcp_server::TcpFakeServer;

/// A running proxy; it stops (closing every connection) when dropped.
#[derive(Debug)]
pub struct TcpProxy {
    server: TcpFakeServer,
    /// `true` while cut; forwarding tasks watch it and end their connections.
    cut: watch::Sender<bool>,
    refused: Arc<AtomicU64>,
    forwarding: Arc<AtomicU64>,
}

impl TcpProxy {
    /// Listens on 127.0.0.1 (any port) and forwards each connection to `target`.
    pub async fn start(target: SocketAddr) -> std::io::Result<TcpProxy> {
        let (cut, cut_rx) = watch::channel(false);
        let refused = Arc::new(AtomicU64::new(0));
        let forwarding = Arc::new(AtomicU64::new(0));
        let counters = (refused.clone(), forwarding.clone());
        let server = TcpFakeServer::start(move |client| {
            forward(client, target, cut_rx.clone(), counters.clone())
        })
        .await?;
        Ok(TcpProxy {
            server,
            cut,
            refused,
            forwarding,
        })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// Closes every forwarded connection and refuses new ones until [`TcpProxy::restore`].
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    /// Forwards new connections again.
    pub fn restore(&self) {
        self.cut.send_replace(false);
    }

    /// Connections accepted and closed at once while cut, since the start.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Connections being forwarded now (0 soon after a cut: wait for it before counting on the
    /// cut having reached every client).
    pub fn forwarding(&self) -> u64 {
        self.forwarding.load(Ordering::Relaxed)
    }
}

/// Counts a forwarded connection while it lives.
struct Forwarding(Arc<AtomicU64>);

impl Forwarding {
    fn new(count: &Arc<AtomicU64>) -> Forwarding {
        count.fetch_add(1, Ordering::Relaxed);
        Forwarding(count.clone())
    }
}

impl Drop for Forwarding {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn forward(
    mut client: TcpStream,
    target: SocketAddr,
    mut cut: watch::Receiver<bool>,
    (refused, forwarding): (Arc<AtomicU64>, Arc<AtomicU64>),
) {
    if *cut.borrow_and_update() {
        refused.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let _live = Forwarding::new(&forwarding);
    let Ok(mut server) = TcpStream::connect(target).await else {
        return;
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        _ = cut.wait_for(|cut| *cut) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// An echo server: what a connection sends comes back.
    async fn echo() -> SocketAddr {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.expect("bind");
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

    async fn round_trip(s: &mut TcpStream) -> std::io::Result<[u8; 4]> {
        s.write_all(b"ping").await?;
        let mut buf = [0; 4];
        s.read_exact(&mut buf).await?;
        Ok(buf)
    }

    #[tokio::test]
    async fn a_cut_ends_live_connections_and_refuses_new_ones_until_restored() {
        let proxy = TcpProxy::start(echo().await).await.expect("proxy");
        let mut live = TcpStream::connect(proxy.addr()).await.expect("connect");
        assert_eq!(&round_trip(&mut live).await.expect("echo"), b"ping");

        proxy.cut();
        let mut rest = Vec::new();
        let n = live.read_to_end(&mut rest).await.unwrap_or(0);
        assert_eq!(n, 0, "the live connection ends");
        while proxy.forwarding() > 0 {
            tokio::task::yield_now().await;
        }
        let mut refused = TcpStream::connect(proxy.addr()).await.expect("accepted");
        assert!(round_trip(&mut refused).await.is_err(), "and is closed");
        assert_eq!(proxy.refused(), 1);

        proxy.restore();
        let mut again = TcpStream::connect(proxy.addr()).await.expect("connect");
        assert_eq!(&round_trip(&mut again).await.expect("echo"), b"ping");
        assert_eq!(proxy.refused(), 1);
    }
}
