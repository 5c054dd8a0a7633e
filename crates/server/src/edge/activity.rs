//! What one HTTP connection is doing, for its timers: waiting for a request, reading a request
//! head, or serving a request. The socket wrapper [`TrackedIo`] notes the first byte of each
//! request; the per-connection service notes when a request starts and ends.
//!
//! Deadlines ([`ConnActivity::deadline`]):
//! - reading a head (from the accept, or from the first byte of a keep-alive connection's next
//!   request): `server.header_read_timeout_ms`;
//! - waiting between requests on a keep-alive connection: `server.idle_timeout_s`;
//! - serving a request: none here (its body has its own deadline, see `edge::body`).
//!
//! Once the connection is upgraded (a media-stream websocket) nobody reads these any more: the
//! socket lives as long as the call.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::limits::ConnectionPermit;

/// "No request head has started since the last response."
const NONE: u64 = u64::MAX;

/// Timer lengths of a connection.
#[derive(Debug, Clone, Copy)]
pub struct ConnTimeouts {
    /// `server.header_read_timeout_ms`.
    pub header_read: Duration,
    /// `server.idle_timeout_s`.
    pub idle: Duration,
}

/// Shared between a connection's socket wrapper, its service and its supervising task.
#[derive(Debug)]
pub struct ConnActivity {
    epoch: Instant,
    in_flight: AtomicUsize,
    /// ms after `epoch` when the connection started waiting for its next request.
    waiting_since_ms: AtomicU64,
    /// ms after `epoch` when the first byte of the next request head arrived, or [`NONE`].
    head_started_ms: AtomicU64,
    /// Wakes the supervisor when the deadline may have moved.
    changed: Notify,
}

impl ConnActivity {
    /// A connection accepted now: its first request head is due within the header timeout.
    pub fn new() -> Arc<Self> {
        Arc::new(ConnActivity {
            epoch: Instant::now(),
            in_flight: AtomicUsize::new(0),
            waiting_since_ms: AtomicU64::new(0),
            head_started_ms: AtomicU64::new(0),
            changed: Notify::new(),
        })
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(NONE - 1)
    }

    /// When the connection is to be closed if nothing changes; `None` while serving.
    pub fn deadline(&self, timeouts: ConnTimeouts) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let head = self.head_started_ms.load(Ordering::Acquire);
        Some(if head == NONE {
            let waiting = self.waiting_since_ms.load(Ordering::Acquire);
            self.epoch + Duration::from_millis(waiting) + timeouts.idle
        } else {
            self.epoch + Duration::from_millis(head) + timeouts.header_read
        })
    }

    /// Resolves after something that may move the deadline happened (a permit is kept if it
    /// happened while nobody waited, so no change is missed).
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    /// A request head was parsed and its handler starts; the guard ends it.
    pub fn begin_request(self: &Arc<Self>) -> RequestGuard {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.changed.notify_one();
        RequestGuard {
            activity: Arc::clone(self),
        }
    }

    fn end_request(&self) {
        self.waiting_since_ms
            .store(self.now_ms(), Ordering::Release);
        self.head_started_ms.store(NONE, Ordering::Release);
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.changed.notify_one();
    }

    /// Bytes arrived: if the connection was waiting for a request, a head has started.
    fn bytes_read(&self) {
        if self.head_started_ms.load(Ordering::Relaxed) == NONE
            && self.in_flight.load(Ordering::Relaxed) == 0
        {
            self.head_started_ms.store(self.now_ms(), Ordering::Release);
            self.changed.notify_one();
        }
    }
}

/// Ends its request (the connection starts waiting for the next one) when dropped.
#[derive(Debug)]
pub struct RequestGuard {
    activity: Arc<ConnActivity>,
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.activity.end_request();
    }
}

/// The accepted socket, noting request starts for the connection's timers and holding the
/// connection's slots ([`ConnectionPermit`]) for as long as the socket lives.
#[derive(Debug)]
pub struct TrackedIo {
    stream: TcpStream,
    activity: Arc<ConnActivity>,
    _permit: ConnectionPermit,
}

impl TrackedIo {
    /// Wraps an accepted socket.
    pub fn new(stream: TcpStream, activity: Arc<ConnActivity>, permit: ConnectionPermit) -> Self {
        TrackedIo {
            stream,
            activity,
            _permit: permit,
        }
    }
}

impl AsyncRead for TrackedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.stream).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.bytes_read();
        }
        result
    }
}

impl AsyncWrite for TrackedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: ConnTimeouts = ConnTimeouts {
        header_read: Duration::from_secs(10),
        idle: Duration::from_secs(60),
    };

    #[test]
    fn phases_choose_the_deadline() {
        let a = ConnActivity::new();
        // Just accepted: the head is due within the header timeout.
        assert_eq!(a.deadline(T), Some(a.epoch + T.header_read));
        let guard = a.begin_request();
        assert_eq!(a.deadline(T), None, "serving has no connection deadline");
        a.bytes_read();
        assert_eq!(a.deadline(T), None, "body bytes start no head");
        drop(guard);
        let idle = a.deadline(T).expect("waiting");
        let since = a.waiting_since_ms.load(Ordering::Relaxed);
        assert_eq!(idle, a.epoch + Duration::from_millis(since) + T.idle);
        a.bytes_read();
        let head = a.head_started_ms.load(Ordering::Relaxed);
        assert_eq!(
            a.deadline(T),
            Some(a.epoch + Duration::from_millis(head) + T.header_read)
        );
    }
}
