//! Start, run and stop the HTTP server.
//!
//! Order at start: open the database (creating a SQLite file and its folder if needed), run
//! migrations, install the bootstrap key, bind (the main listener, and `metrics.addr` when
//! set), close the calls a stopped process left open (`call::recovery`), serve. `/healthz` is
//! reachable only once all of that is done. Order at stop ([`Server::shutdown`]): cancel
//! `state.shutdown` (`/healthz` turns 503, the voice webhook turns new calls away), keep
//! accepting for `server.drain_grace_s`, stop accepting, then wait (at most
//! `server.drain_timeout_s`) for in-flight requests and for every task spawned on
//! `state.tasks` (live calls) to finish, then close the database pool.
//!
//! Connections are served by `edge::serve`, which enforces the connection caps and timers of
//! `[server]` (docs/security/edge.md).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use switchboard_providers::slots::{RedisSlots, SlotLimiter};
use switchboard_store::Store;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{Settings, SettingsError, redact_url};
use crate::edge::activity::ConnTimeouts;
use crate::edge::{self, ConnectionLimits, EdgeConfig, TrustedProxies};
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
    /// The secret key (`SWITCHBOARD_SECRET_KEY`, `[secrets] key_file`) could not be loaded.
    #[error("secret key: {0}")]
    SecretKey(#[from] switchboard_store::SecretError),
    /// Redis (`redis.url`) could not be reached.
    #[error("redis: {0}")]
    Redis(String),
    /// The settings contradict themselves (settings built in code, not via `Settings::load`).
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// An outgoing HTTP client could not be built (the TLS backend did not start).
    #[error("http client: {0}")]
    HttpClient(String),
    /// The recordings storage (`[recordings]`, e.g. its S3 bucket) could not be set up.
    #[error("recordings storage: {0}")]
    Recordings(String),
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
    metrics_addr: Option<SocketAddr>,
    state: AppState,
    /// Cancelled when the listeners stop accepting: at the end of the drain grace
    /// (`server.drain_grace_s`), which cancelling it ends early.
    accepting: CancellationToken,
    http: JoinHandle<std::io::Result<()>>,
    metrics_http: Option<JoinHandle<std::io::Result<()>>>,
}

/// Connects to `settings.database.url` (a SQLite file and its folder are created if missing)
/// with its pool tuning, with the secret key that encrypts stored secrets (`[secrets]`), and
/// applies pending migrations.
pub async fn open_store(settings: &Settings) -> Result<Store, ServeError> {
    let url = &settings.database.url;
    let secrets = crate::secret_key::load_secret_box(&settings.secrets)?;
    let store = Store::connect_with(url, settings.database.store_options())
        .await
        .map_err(|err| ServeError::Store(format!("connect to {}: {err}", redact_url(url))))?
        .with_secrets(secrets);
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
    crate::metrics::recorder::install();
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
    let trusted = Arc::new(TrustedProxies::new(settings.server.trusted_proxy_nets()?));
    let listener = bind(settings.server.addr).await?;
    let addr = listener.local_addr()?;
    let metrics_listener = match settings.metrics.addr {
        Some(wanted) => Some(bind(wanted).await?),
        None => None,
    };
    let slots = if settings.redis.url.trim().is_empty() {
        SlotLimiter::local()
    } else {
        let redis = RedisSlots::connect(settings.redis.url.trim(), "switchboard")
            .await
            .map_err(|e| ServeError::Redis(e.to_string()))?;
        SlotLimiter::new(std::sync::Arc::new(redis))
    };
    let recordings =
        crate::recording_storage::RecordingStorage::from_settings(&settings.recordings)
            .map_err(|e| ServeError::Recordings(e.to_string()))?;
    let state = AppState::new(store, settings, addr, slots, recordings)
        .map_err(|e| ServeError::HttpClient(e.to_string()))?;
    let redis_url = state.settings.redis.url.trim();
    if !redis_url.is_empty() && state.settings.twilio.stream_token_secret.trim().is_empty() {
        // Several instances: a stream may land on another instance than the webhook's, which
        // cannot check a token signed with this process's random key.
        tracing::warn!(
            "redis.url is set but twilio.stream_token_secret is empty: give every instance the \
             same secret, or streams that reach another instance than their webhook are refused"
        );
    }
    let server = &state.settings.server;
    if !redis_url.is_empty() && (server.rate_limit_per_s > 0 || server.auth_fail_limit > 0) {
        let redis = crate::shared_rate_limit::SharedRedis::connect(redis_url, "switchboard")
            .await
            .map_err(|e| ServeError::Redis(e.to_string()))?;
        if server.rate_limit_per_s > 0 {
            let shared = crate::shared_rate_limit::RedisRateLimit::new(redis.clone());
            state.rate_limiter.share_through(shared);
        }
        if server.auth_fail_limit > 0 {
            let shared = crate::shared_auth_failures::RedisAuthFailures::new(redis);
            state.auth_failures.share_through(shared);
        }
    }
    crate::call::recovery::start(&state).await;
    crate::retention::spawn(&state);
    crate::knowledge::requeue_interrupted(&state).await;
    crate::knowledge::spawn_claim_sweep(&state);
    crate::twilio::control::spawn_subscriber(&state);
    crate::twilio::status_deferred::spawn_refresh(&state);
    crate::live_relay::spawn(&state);
    let edge = edge_config(&state, trusted);
    let accepting = CancellationToken::new();
    tokio::spawn(edge::housekeeping::run(
        Arc::clone(&edge.limits),
        Arc::clone(state.auth_failures.local()),
        state.shutdown.clone(),
    ));
    let http = tokio::spawn(edge::serve(
        listener,
        routes::router(state.clone()),
        edge.clone(),
        accepting.clone(),
    ));
    let mut metrics_addr = None;
    let metrics_http = match metrics_listener {
        Some(listener) => {
            metrics_addr = Some(listener.local_addr()?);
            // Its own caps: a flood on the main listener must not lock out the scraper.
            let own = EdgeConfig {
                limits: Arc::new(ConnectionLimits::new(
                    state.settings.server.max_connections,
                    state.settings.server.max_connections_per_ip,
                    Arc::clone(&edge.trusted),
                )),
                ..edge
            };
            Some(tokio::spawn(edge::serve(
                listener,
                crate::metrics::listener_router(state.clone()),
                own,
                accepting.clone(),
            )))
        }
        None => None,
    };
    tracing::info!(%addr, metrics_addr = ?metrics_addr, public_url = %state.public_base_url, "listening");
    Ok(Server {
        addr,
        metrics_addr,
        state,
        accepting,
        http,
        metrics_http,
    })
}

async fn bind(wanted: SocketAddr) -> Result<TcpListener, ServeError> {
    TcpListener::bind(wanted)
        .await
        .map_err(|source| ServeError::Bind {
            addr: wanted,
            source,
        })
}

/// The connection caps and timers of `[server]`.
fn edge_config(state: &AppState, trusted: Arc<TrustedProxies>) -> EdgeConfig {
    let server = &state.settings.server;
    EdgeConfig {
        timeouts: ConnTimeouts {
            header_read: Duration::from_millis(server.header_read_timeout_ms),
            idle: Duration::from_secs(server.idle_timeout_s),
        },
        limits: Arc::new(ConnectionLimits::new(
            server.max_connections,
            server.max_connections_per_ip,
            Arc::clone(&trusted),
        )),
        trusted,
    }
}

impl Server {
    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address of the `metrics.addr` listener, when one is configured.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The shared state (store, settings, shutdown token, task tracker).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `signal` completes (e.g. [`shutdown_signal`]) or something cancels
    /// `state.shutdown`, then shuts down gracefully; a second `signal()` during the drain
    /// grace ends the grace at once.
    pub async fn run_until<F: Future<Output = ()> + Send + 'static>(
        self,
        signal: impl Fn() -> F,
    ) -> ShutdownReport {
        let token = self.state.shutdown.clone();
        tokio::select! {
            () = signal() => tracing::info!("shutdown signal received"),
            () = token.cancelled() => {}
        }
        let accepting = self.stop_accepting_handle();
        let again = signal();
        let second = tokio::spawn(async move {
            again.await;
            tracing::info!("second shutdown signal: closing the listeners now");
            accepting.cancel();
        });
        let report = self.shutdown().await;
        second.abort();
        report
    }

    /// A handle that, cancelled, makes the listeners stop accepting now: ends the drain grace
    /// (`server.drain_grace_s`) early.
    pub fn stop_accepting_handle(&self) -> CancellationToken {
        self.accepting.clone()
    }

    /// Drains: `state.shutdown` is cancelled at once (`/healthz` turns 503, new calls are
    /// turned away), the listeners keep accepting for `server.drain_grace_s` (so that a
    /// balancer learning of the drain from its health checks sends nothing to a closed port)
    /// and then stop; in-flight requests and tracked tasks get `server.drain_timeout_s` more;
    /// then the database is closed.
    pub async fn shutdown(self) -> ShutdownReport {
        let Server {
            state,
            accepting,
            mut http,
            metrics_http,
            ..
        } = self;
        state.shutdown.cancel();
        state.tasks.close();
        let grace = Duration::from_secs(state.settings.server.drain_grace_s);
        if !grace.is_zero() {
            tracing::info!(
                grace_s = grace.as_secs(),
                "draining: still accepting while the balancer learns"
            );
            tokio::select! {
                () = tokio::time::sleep(grace) => {}
                () = accepting.cancelled() => {}
            }
        }
        accepting.cancel();
        let timeout = Duration::from_secs(state.settings.server.drain_timeout_s);
        let mut metrics_http = metrics_http;
        let drained = tokio::time::timeout(timeout, async {
            for listener in std::iter::once(&mut http).chain(metrics_http.as_mut()) {
                match listener.await {
                    Ok(Ok(())) => {}
                    Ok(Err(err)) => {
                        tracing::error!(error = %err, "HTTP server ended with an error")
                    }
                    Err(err) => tracing::error!(error = %err, "HTTP server task failed"),
                }
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
            if let Some(metrics_http) = &metrics_http {
                metrics_http.abort();
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `database.max_connections` and `acquire_timeout_ms` size the pool the server opens.
    #[tokio::test]
    async fn the_store_is_opened_with_the_configured_pool() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut settings = Settings::defaults().expect("defaults");
        settings.database.url = format!("sqlite://{}", dir.path().join("pool.db").display());
        settings.secrets.key_file = dir.path().join("secret.key").display().to_string();
        settings.database.max_connections = 3;
        settings.database.acquire_timeout_ms = 1_500;
        let store = open_store(&settings).await.expect("opened");
        let options = store.pool().options();
        assert_eq!(options.get_max_connections(), 3);
        assert_eq!(
            options.get_acquire_timeout(),
            std::time::Duration::from_millis(1_500)
        );
        store.close().await;
    }
}
