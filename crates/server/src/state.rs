//! Shared state handed to every handler: cheap to clone (one `Arc`), room to grow.
//!
//! The call runtime (next issues) adds its registry of live calls here as one more field of
//! [`AppStateInner`] and spawns each call task on [`AppStateInner::tasks`], so that shutdown
//! can wait for live calls to end (see `serve::Server::shutdown`).

use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::Arc;

use switchboard_store::Store;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Settings;
use crate::rate_limit::RateLimiter;

/// Handle to the server's shared state. Derefs to [`AppStateInner`].
#[derive(Clone)]
pub struct AppState(Arc<AppStateInner>);

/// Everything handlers share. Add fields here (not globals) when a module needs shared state.
pub struct AppStateInner {
    /// Persistence. Read the assistant record from here at each call start: there is no cache,
    /// so an API change applies to the next call on every instance sharing the database.
    pub store: Store,
    /// The configuration the server started with.
    pub settings: Settings,
    /// Public base URL (no trailing slash) Twilio reaches us at: `server.public_url`, or
    /// `http://<bound addr>` when that is empty.
    pub public_base_url: String,
    /// Cancelled when shutdown starts: stop accepting new calls and finish the live ones.
    pub shutdown: CancellationToken,
    /// Long-lived work that shutdown must wait for (live calls, webhook deliveries): spawn it
    /// with `state.tasks.spawn(...)`. Shutdown closes the tracker and waits, bounded by
    /// `server.drain_timeout_s`.
    pub tasks: TaskTracker,
    /// Per-API-key request rate limit (keyed by API key id).
    pub rate_limiter: RateLimiter<i64>,
}

impl AppState {
    /// Builds the state for a server bound at `bound_addr`.
    pub fn new(store: Store, settings: Settings, bound_addr: SocketAddr) -> AppState {
        let public_base_url = settings.server.public_base_url(bound_addr);
        let rate_limiter = RateLimiter::new(
            settings.server.rate_limit_per_s,
            settings.server.rate_limit_burst,
        );
        AppState(Arc::new(AppStateInner {
            store,
            settings,
            public_base_url,
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            rate_limiter,
        }))
    }
}

impl Deref for AppState {
    type Target = AppStateInner;

    fn deref(&self) -> &AppStateInner {
        &self.0
    }
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("settings", &self.settings)
            .field("public_base_url", &self.public_base_url)
            .field("shutting_down", &self.shutdown.is_cancelled())
            .field("live_tasks", &self.tasks.len())
            .finish_non_exhaustive()
    }
}
