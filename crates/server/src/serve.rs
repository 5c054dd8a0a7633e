//! Start, run and stop the HTTP server.
//!
//! Order at start: open the database (creating a SQLite file and its folder if needed), run
//! migrations, install the bootstrap key, bind, serve. `/healthz` is reachable only once all of
//! that is done. Order at stop ([`Server::shutdown`]): cancel `state.shutdown` (the listener
//! stops accepting, `/healthz` turns 503, the call runtime refuses new calls), then wait — at
//! most `server.drain_timeout_s` — for in-flight requests and for every task spawned on
//! `state.tasks` (live calls) to finish, then close the database pool.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use switchboard_providers::slots::{RedisSlots, SlotLimiter};
use switchboard_store::Store;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::config::{Settings, redact_url};
use crate::routes;
use crate::state::AppState;

/// Name of the organisation that `SWITCHBOARD_BOOTSTRAP_KEY` is installed for.
pub const BOOTSTRAP_ORGANIZATION: &str = "default";

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The database could not be opened, migrated or written.
    #[error("database: {0}")]
    Store(String),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address from `server.addr`.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// Redis (`redis.url`) could not be reached.
    #[error("redis: {0}")]
    Redis(String),
    /// An outgoing HTTP client could not be built (the TLS backend did not start).
    #[error("http client: {0}")]
    HttpClient(String),
    /// Another I/O failure (folder creation, socket).
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// Extra start-up actions.
#[derive(Clone, Default)]
pub struct StartOptions {
    /// API key to install for organisation `default` if it is not there yet
    /// (`SWITCHBOARD_BOOTSTRAP_KEY`). Never logged.
    pub bootstrap_key: Option<String>,
}

impl std::fmt::Debug for StartOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StartOptions")
            .field(
                "bootstrap_key",
                &self.bootstrap_key.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// How shutdown went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    /// True when every request and tracked task ended within `server.drain_timeout_s`.
    pub drained: bool,
    /// Tracked tasks (live calls) still running when the drain timeout cut them off.
    pub tasks_left: usize,
}

/// A running server. Drop it only after [`Server::shutdown`]: dropping it leaves the listener
/// task running until the runtime stops.
pub struct Server {
    addr: SocketAddr,
    state: AppState,
    http: JoinHandle<std::io::Result<()>>,
}

/// Connects to `settings.database.url` (a SQLite file and its folder are created if missing)
/// and applies pending migrations.
pub async fn open_store(settings: &Settings) -> Result<Store, ServeError> {
    let url = &settings.database.url;
    let store = Store::connect(url)
        .await
        .map_err(|err| ServeError::Store(format!("connect to {}: {err}", redact_url(url))))?;
    store
        .migrate()
        .await
        .map_err(|err| ServeError::Store(format!("migrate: {err}")))?;
    Ok(store)
}

/// Installs `key` for organisation [`BOOTSTRAP_ORGANIZATION`] (created if needed) unless it is
/// already installed. Returns whether it was newly installed.
pub async fn install_bootstrap_key(store: &Store, key: &str) -> Result<bool, ServeError> {
    let org = store
        .ensure_organization(BOOTSTRAP_ORGANIZATION)
        .await
        .map_err(|err| ServeError::Store(format!("bootstrap organisation: {err}")))?;
    store
        .install_api_key(org.id, key)
        .await
        .map_err(|err| ServeError::Store(format!("bootstrap key: {err}")))
}

/// Opens the database, runs migrations, binds `settings.server.addr` and starts serving in a
/// background task. Returns once the server accepts connections.
pub async fn start(settings: Settings, options: StartOptions) -> Result<Server, ServeError> {
    let store = open_store(&settings).await?;
    if let Some(key) = options.bootstrap_key.as_deref().map(str::trim)
        && !key.is_empty()
        && install_bootstrap_key(&store, key).await?
    {
        tracing::info!(
            organization = BOOTSTRAP_ORGANIZATION,
            "installed the bootstrap API key"
        );
    }
    let wanted = settings.server.addr;
    let listener = TcpListener::bind(wanted)
        .await
        .map_err(|source| ServeError::Bind {
            addr: wanted,
            source,
        })?;
    let addr = listener.local_addr()?;
    let slots = if settings.redis.url.trim().is_empty() {
        SlotLimiter::local()
    } else {
        let redis = RedisSlots::connect(settings.redis.url.trim(), "switchboard")
            .await
            .map_err(|e| ServeError::Redis(e.to_string()))?;
        SlotLimiter::new(std::sync::Arc::new(redis))
    };
    let state = AppState::new(store, settings, addr, slots)
        .map_err(|e| ServeError::HttpClient(e.to_string()))?;
    crate::twilio::control::spawn_subscriber(&state);
    let app = routes::router(state.clone());
    let stop = state.shutdown.clone();
    let http = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await
    });
    tracing::info!(%addr, public_url = %state.public_base_url, "listening");
    Ok(Server { addr, state, http })
}

impl Server {
    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The shared state (store, settings, shutdown token, task tracker).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `signal` completes (e.g. [`shutdown_signal`]) or something cancels
    /// `state.shutdown`, then shuts down gracefully.
    pub async fn run_until(self, signal: impl Future<Output = ()>) -> ShutdownReport {
        let token = self.state.shutdown.clone();
        tokio::select! {
            () = signal => tracing::info!("shutdown signal received"),
            () = token.cancelled() => {}
        }
        self.shutdown().await
    }

    /// Stops accepting connections, drains in-flight requests and tracked tasks (bounded by
    /// `server.drain_timeout_s`), then closes the database.
    pub async fn shutdown(self) -> ShutdownReport {
        let Server {
            state, mut http, ..
        } = self;
        state.shutdown.cancel();
        state.tasks.close();
        let timeout = Duration::from_secs(state.settings.server.drain_timeout_s);
        let drained = tokio::time::timeout(timeout, async {
            match (&mut http).await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => tracing::error!(error = %err, "HTTP server ended with an error"),
                Err(err) => tracing::error!(error = %err, "HTTP server task failed"),
            }
            state.tasks.wait().await;
        })
        .await
        .is_ok();
        let tasks_left = state.tasks.len();
        if !drained {
            tracing::warn!(
                tasks_left,
                timeout_s = timeout.as_secs(),
                "drain timeout reached; stopping anyway"
            );
            http.abort();
        }
        state.store.close().await;
        tracing::info!(drained, "server stopped");
        ShutdownReport {
            drained,
            tasks_left,
        }
    }
}

/// Completes on SIGINT (Ctrl-C) or, on Unix, SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut stream) => {
                stream.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
}
