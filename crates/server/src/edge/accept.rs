//! The accept loop: admits each connection against the caps ([`ConnectionLimits`]), serves it
//! with hyper's HTTP/1 (upgrades allowed, for the media-stream websocket) and supervises its
//! timers ([`ConnActivity`]). On shutdown it stops accepting, closes connections that are not
//! serving a request, lets the others answer their current request and close, and returns
//! once they all have.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt as _;

use super::activity::{ConnActivity, ConnTimeouts, TrackedIo};
use super::client::TrustedProxies;
use super::limits::ConnectionLimits;

/// Pause after an accept error that is not about one connection (e.g. out of file
/// descriptors), so the loop does not spin while the condition lasts.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_secs(1);

/// Everything one listener needs besides its socket and application.
#[derive(Debug, Clone)]
pub struct EdgeConfig {
    /// Connection timers.
    pub timeouts: ConnTimeouts,
    /// Connection caps, shared by every connection of the listener.
    pub limits: Arc<ConnectionLimits>,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted: Arc<TrustedProxies>,
}

/// Serves `app` on `listener` until `shutdown` is cancelled, then drains: returns once every
/// connection (not the websockets they were upgraded to: those belong to the call runtime)
/// has closed.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    edge: EdgeConfig,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let connections = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(err) if is_per_connection(&err) => continue,
            Err(err) => {
                tracing::error!(error = %err, "accept failed; pausing");
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(ACCEPT_ERROR_PAUSE) => continue,
                }
            }
        };
        let permit = match edge.limits.admit(peer.ip()) {
            Ok(permit) => permit,
            Err(refused) => {
                tracing::debug!(%peer, %refused, "connection refused at accept");
                drop(stream);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let activity = ConnActivity::new();
        let io = TrackedIo::new(stream, Arc::clone(&activity), permit);
        connections.spawn(serve_connection(
            io,
            peer,
            activity,
            app.clone(),
            edge.clone(),
            shutdown.clone(),
        ));
    }
    drop(listener);
    connections.close();
    connections.wait().await;
    Ok(())
}

/// Errors that concern only the connection being accepted.
fn is_per_connection(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Runs one connection until it ends, is upgraded, or misses a deadline.
async fn serve_connection(
    io: TrackedIo,
    peer: SocketAddr,
    activity: Arc<ConnActivity>,
    app: Router,
    edge: EdgeConfig,
    shutdown: CancellationToken,
) {
    let service = ConnService {
        app,
        peer,
        activity: Arc::clone(&activity),
        trusted: Arc::clone(&edge.trusted),
    };
    let mut builder = http1::Builder::new();
    // Our own timers below replace hyper's (whose header timer also runs between keep-alive
    // requests, which is the idle timeout's job).
    builder.header_read_timeout(None).keep_alive(true);
    let mut conn = pin!(
        builder
            .serve_connection(TokioIo::new(io), service)
            .with_upgrades()
    );
    let mut draining = false;
    loop {
        let deadline = activity.deadline(edge.timeouts);
        if draining && deadline.is_some() {
            // Shutting down and not serving a request (idle, or a head still arriving):
            // nothing to finish, so do not let a slow client hold up the drain.
            return;
        }
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(err) = result {
                    tracing::trace!(%peer, error = %err, "connection ended with an error");
                }
                return;
            }
            () = activity.changed() => {}
            () = sleep_until(deadline) => {
                if activity
                    .deadline(edge.timeouts)
                    .is_some_and(|d| d <= tokio::time::Instant::now())
                {
                    tracing::debug!(%peer, "closing a connection past its header or idle deadline");
                    return;
                }
            }
            () = shutdown.cancelled(), if !draining => {
                // The current request (if any) is answered, then the connection closes.
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The per-connection service: marks the request's start and end for the timers, records the
/// client address, and hands the request to the router.
#[derive(Clone)]
struct ConnService {
    app: Router,
    peer: SocketAddr,
    activity: Arc<ConnActivity>,
    trusted: Arc<TrustedProxies>,
}

impl hyper::service::Service<Request<Incoming>> for ConnService {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        let guard = self.activity.begin_request();
        let client = self.trusted.client_of(self.peer, req.headers());
        req.extensions_mut().insert(client);
        req.extensions_mut().insert(ConnectInfo(self.peer));
        let app = self.app.clone();
        Box::pin(async move {
            let response = app.oneshot(req).await;
            drop(guard);
            response
        })
    }
}
