//! A TCP proxy on 127.0.0.1 in front of a real server (PostgreSQL, Redis) that a test can cut:
//! the way to make a real database "go away" mid-test and come back, without stopping it for
//! every other test that shares it.
//!
//! While cut, every forwarded connection is closed (both sides see the connection end without
//! a goodbye, as when a database host reboots) and each new connection is accepted and closed
//! at once (counted in [`TcpProxy::refused`], so a test can wait until a client has tried
//! again). [`TcpProxy::stall`] is the other kind of outage, a host that does not answer: live
//! connections end the same way, and new ones are accepted and then held open with nothing
//! forwarded either way (counted in [`TcpProxy::stalled`]) until the restore, which closes them.
//! [`TcpProxy::restore`] forwards new connections again.
//!
//! [`TcpProxy::start_delayed`] makes a near server far: every byte is forwarded a fixed time
//! after it arrived, each way (a database across a network, measured from a loopback one).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::tcp_server::TcpFakeServer;

/// A running proxy; it stops (closing every connection) when dropped.
#[derive(Debug)]
pub struct TcpProxy {
    server: TcpFakeServer,
    /// What the proxy does now; forwarding tasks watch it and end their connections.
    mode: watch::Sender<Mode>,
    refused: Arc<AtomicU64>,
    stalled: Arc<AtomicU64>,
    forwarding: Arc<AtomicU64>,
}

/// What the proxy does with connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Forward,
    /// New connections are closed at once.
    Cut,
    /// New connections are held open, nothing forwarded.
    Stall,
}

/// The proxy's counters, shared with its forwarding tasks.
#[derive(Debug, Clone, Default)]
struct Counters {
    refused: Arc<AtomicU64>,
    stalled: Arc<AtomicU64>,
    forwarding: Arc<AtomicU64>,
}

impl TcpProxy {
    /// A proxy (with `one_way` of delay each way) in front of the server a URL names
    /// (`postgres://user@host:port/db?…`, `default_port` when it names none), and that URL
    /// pointed at the proxy, everything else in it kept. The server lives as long as the proxy.
    pub async fn in_front_of_url(
        url: &str,
        default_port: u16,
        one_way: Duration,
    ) -> std::io::Result<(TcpProxy, String)> {
        let invalid = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidInput, what);
        let mut url = url::Url::parse(url).map_err(|_| invalid("not a URL"))?;
        let host = url
            .host_str()
            .ok_or_else(|| invalid("the URL has no host"))?;
        let target = tokio::net::lookup_host((host.to_owned(), url.port().unwrap_or(default_port)))
            .await?
            .next()
            .ok_or_else(|| invalid("the URL's host has no address"))?;
        let proxy = TcpProxy::start_delayed(target, one_way).await?;
        url.set_host(Some("127.0.0.1"))
            .map_err(|_| invalid("the URL takes no host"))?;
        url.set_port(Some(proxy.addr().port()))
            .map_err(|()| invalid("the URL takes no port"))?;
        Ok((proxy, url.to_string()))
    }

    /// Listens on 127.0.0.1 (any port) and forwards each connection to `target`.
    pub async fn start(target: SocketAddr) -> std::io::Result<TcpProxy> {
        TcpProxy::start_delayed(target, Duration::ZERO).await
    }

    /// As [`TcpProxy::start`], each byte forwarded `one_way` after it arrived, in both
    /// directions: a round trip through the proxy takes at least twice `one_way` longer.
    pub async fn start_delayed(target: SocketAddr, one_way: Duration) -> std::io::Result<TcpProxy> {
        let (mode, mode_rx) = watch::channel(Mode::Forward);
        let counters = Counters::default();
        let shared = counters.clone();
        let server = TcpFakeServer::start(move |client| {
            forward(client, target, one_way, mode_rx.clone(), shared.clone())
        })
        .await?;
        Ok(TcpProxy {
            server,
            mode,
            refused: counters.refused,
            stalled: counters.stalled,
            forwarding: counters.forwarding,
        })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// Closes every forwarded connection and refuses new ones until [`TcpProxy::restore`].
    pub fn cut(&self) {
        self.mode.send_replace(Mode::Cut);
    }

    /// Closes every forwarded connection and holds new ones open, forwarding nothing, until
    /// [`TcpProxy::restore`] (which closes them): a host that does not answer.
    pub fn stall(&self) {
        self.mode.send_replace(Mode::Stall);
    }

    /// Forwards new connections again.
    pub fn restore(&self) {
        self.mode.send_replace(Mode::Forward);
    }

    /// Connections accepted and closed at once while cut, since the start.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Connections accepted and held open while stalled, since the start.
    pub fn stalled(&self) -> u64 {
        self.stalled.load(Ordering::Relaxed)
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
    one_way: Duration,
    mut mode: watch::Receiver<Mode>,
    counters: Counters,
) {
    let now = *mode.borrow_and_update();
    match now {
        Mode::Cut => {
            counters.refused.fetch_add(1, Ordering::Relaxed);
            return;
        }
        Mode::Stall => {
            counters.stalled.fetch_add(1, Ordering::Relaxed);
            let _ = mode.wait_for(|m| *m == Mode::Forward).await;
            return;
        }
        Mode::Forward => {}
    }
    let _live = Forwarding::new(&counters.forwarding);
    let Ok(mut server) = TcpStream::connect(target).await else {
        return;
    };
    if one_way.is_zero() {
        tokio::select! {
            _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
            _ = mode.wait_for(|m| *m != Mode::Forward) => {}
        }
        return;
    }
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let both_ways = async {
        tokio::join!(
            delayed_copy(client_read, server_write, one_way),
            delayed_copy(server_read, client_write, one_way),
        )
    };
    tokio::select! {
        _ = both_ways => {}
        _ = mode.wait_for(|m| *m != Mode::Forward) => {}
    }
}

/// Copies `from` to `to`, each piece written `delay` after it was read; reading goes on
/// meanwhile, so the delay adds to latency and not to a transfer's length. Ends, shutting
/// `to` down, once `from` has ended and all it sent is written.
async fn delayed_copy(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, delay: Duration) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let read = async move {
        let mut buf = vec![0u8; 16 * 1024];
        while let Ok(n @ 1..) = from.read(&mut buf).await {
            if tx
                .send((Instant::now() + delay, buf[..n].to_vec()))
                .is_err()
            {
                break;
            }
        }
    };
    let write = async move {
        while let Some((due, piece)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&piece).await.is_err() {
                break;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(read, write);
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

    /// A delayed proxy forwards everything, in order, and a round trip through it takes at
    /// least the delay each way (tokio's timers never fire early).
    #[tokio::test]
    async fn a_delayed_proxy_forwards_in_order_a_round_trip_later() {
        let one_way = Duration::from_millis(15);
        let proxy = TcpProxy::start_delayed(echo().await, one_way)
            .await
            .expect("proxy");
        let mut s = TcpStream::connect(proxy.addr()).await.expect("connect");
        let started = Instant::now();
        assert_eq!(&round_trip(&mut s).await.expect("echo"), b"ping");
        assert!(started.elapsed() >= 2 * one_way, "{:?}", started.elapsed());
        let sent: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let (mut r, mut w) = s.into_split();
        let writer = tokio::spawn(async move { w.write_all(&sent).await.map(|()| sent) });
        let mut back = vec![0u8; 100_000];
        r.read_exact(&mut back).await.expect("all of it back");
        assert_eq!(back, writer.await.expect("task").expect("written"));
    }

    #[tokio::test]
    async fn a_stall_ends_live_connections_and_holds_new_ones_silent_until_restored() {
        let proxy = TcpProxy::start(echo().await).await.expect("proxy");
        let mut live = TcpStream::connect(proxy.addr()).await.expect("connect");
        assert_eq!(&round_trip(&mut live).await.expect("echo"), b"ping");

        proxy.stall();
        let mut rest = Vec::new();
        assert_eq!(live.read_to_end(&mut rest).await.unwrap_or(0), 0, "ends");
        let mut held = TcpStream::connect(proxy.addr()).await.expect("accepted");
        held.write_all(b"ping").await.expect("written");
        while proxy.stalled() == 0 {
            tokio::task::yield_now().await;
        }
        // Nothing comes back, and the connection stays open: the read is still pending.
        let mut buf = [0; 4];
        let read = held.read(&mut buf);
        tokio::pin!(read);
        assert!(futures::poll!(read.as_mut()).is_pending());

        proxy.restore();
        assert_eq!(read.await.unwrap_or(0), 0, "closed by the restore");
        let mut again = TcpStream::connect(proxy.addr()).await.expect("connect");
        assert_eq!(&round_trip(&mut again).await.expect("echo"), b"ping");
        assert_eq!((proxy.refused(), proxy.stalled()), (0, 1));
    }
}
