//! Process-wide series of the call path (counters and histograms through the `metrics`
//! facade, [`names`] lists them), served in Prometheus text format at `GET /metrics`.
//!
//! The series are totals of this process: no assistant or number appears in them, and no
//! organisation unless `metrics.per_organization` is set (then only on the ended-calls counter
//! and the turn-latency histogram), so one tenant's traffic is not read per tenant from them by
//! default. Calls record per turn and at their end, never per 20 ms frame ([`call`]).
//!
//! # Access (`[metrics]`)
//!
//! They still reveal traffic, so they are not public by default. On the main listener
//! `/metrics` needs `Authorization: Bearer <metrics.token>` when a token is set, is open when
//! `metrics.public = true` (and no token is set), and otherwise answers 404 like an unknown
//! path. `metrics.addr` adds a listener serving only `/metrics` (token required there too
//! when set). Wrong tokens count as failed authentications of the client address, like wrong
//! API keys.

use std::time::Instant;

use axum::Extension;
use axum::Router;
use axum::extract::State;
use axum::http::header::{self, AUTHORIZATION};
use axum::http::{HeaderMap, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use subtle::ConstantTimeEq;

use crate::auth::{bearer_token, record_failure, refuse_if_throttled};
use crate::edge::ClientAddr;
use crate::edge::headers::with_security_headers;
use crate::error::ApiError;
use crate::state::AppState;

pub mod call;
pub mod names;
pub mod recorder;

/// `org_id` when `metrics.per_organization` lets it label series, else `None`.
pub fn org_label(state: &AppState, org_id: i64) -> Option<i64> {
    state.settings.metrics.per_organization.then_some(org_id)
}

/// Counts one webhook delivery's final outcome (`delivered`, `failed`) for its event.
pub fn webhook_delivery(event: &'static str, outcome: &'static str) {
    ::metrics::counter!(names::WEBHOOK_DELIVERIES, "event" => event, "outcome" => outcome)
        .increment(1);
}

/// The current value of a counter without labels, read from the rendered series (0 when it
/// is not there); for tests and diagnostics, not the hot path.
pub fn counter_value(name: &str) -> u64 {
    recorder::render()
        .lines()
        .find_map(|l| {
            l.strip_prefix(name)?
                .strip_prefix(' ')?
                .trim()
                .parse::<f64>()
                .ok()
        })
        .map_or(0, |v| v as u64)
}

/// Adds one to a counter without labels (the call path's rare events: refusals, bad messages).
pub fn count(name: &'static str) {
    ::metrics::counter!(name).increment(1);
}

/// `GET /metrics` on the main listener.
pub fn router() -> Router<AppState> {
    Router::new().route("/metrics", get(main_listener))
}

/// The application of the `metrics.addr` listener: `/metrics` only, with the same security
/// headers as the main listener.
pub fn listener_router(state: AppState) -> Router {
    let https = state.public_base_url.starts_with("https://");
    let app = Router::new()
        .route("/metrics", get(own_listener))
        .with_state(state);
    with_security_headers(app, https)
}

/// Who may read the metrics on a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// Anyone.
    Open,
    /// Holders of `metrics.token`.
    Token,
    /// Nobody: the path does not exist here.
    Hidden,
}

async fn main_listener(
    State(state): State<AppState>,
    client: Option<Extension<ClientAddr>>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let settings = &state.settings.metrics;
    let access = if !settings.token.is_empty() {
        Access::Token
    } else if settings.public {
        Access::Open
    } else {
        Access::Hidden
    };
    serve(&state, access, client.map(|c| c.0), &headers, &uri).await
}

async fn own_listener(
    State(state): State<AppState>,
    client: Option<Extension<ClientAddr>>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let access = if state.settings.metrics.token.is_empty() {
        Access::Open
    } else {
        Access::Token
    };
    serve(&state, access, client.map(|c| c.0), &headers, &uri).await
}

async fn serve(
    state: &AppState,
    access: Access,
    client: Option<ClientAddr>,
    headers: &HeaderMap,
    uri: &Uri,
) -> Response {
    match access {
        Access::Open => render(state).into_response(),
        Access::Hidden => {
            ApiError::NotFound(format!("no route for {}", uri.path())).into_response()
        }
        Access::Token => match check_token(state, client, headers).await {
            Ok(()) => render(state).into_response(),
            Err(err) => err.into_response(),
        },
    }
}

/// The bearer token against `metrics.token`, in constant time, behind the per-address
/// failed-authentication throttle.
async fn check_token(
    state: &AppState,
    client: Option<ClientAddr>,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    let now = Instant::now();
    refuse_if_throttled(state, client, now).await?;
    let expected = state.settings.metrics.token.as_bytes();
    let presented = headers
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(bearer_token);
    match presented {
        Some(token) if bool::from(token.as_bytes().ct_eq(expected)) => Ok(()),
        Some(_) => {
            record_failure(state, client, now).await;
            Err(ApiError::Unauthorized("invalid metrics token".into()))
        }
        None => Err(ApiError::Unauthorized(
            "missing Authorization: Bearer <metrics token> header".into(),
        )),
    }
}

fn render(state: &AppState) -> impl IntoResponse + use<> {
    ::metrics::gauge!(names::LIVE_CALLS).set(state.calls.len() as f64);
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        ::metrics::gauge!(names::RUNTIME_ALIVE_TASKS)
            .set(runtime.metrics().num_alive_tasks() as f64);
    }
    let pool = state.store.pool();
    let (open, idle) = (pool.size() as usize, pool.num_idle());
    ::metrics::gauge!(names::DB_POOL_CONNECTIONS, "state" => "in_use")
        .set(open.saturating_sub(idle) as f64);
    ::metrics::gauge!(names::DB_POOL_CONNECTIONS, "state" => "idle").set(idle as f64);
    ::metrics::gauge!(names::DB_POOL_MAX).set(f64::from(pool.options().get_max_connections()));
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        ::metrics::gauge!(names::OPEN_FDS).set(fds.count() as f64);
    }
    let out = recorder::render();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}
