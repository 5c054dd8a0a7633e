//! Process-wide counters of the call path, served in Prometheus text format at `GET /metrics`.
//!
//! Plain atomics: incrementing one is a single relaxed add, cheap enough for the per-frame
//! path. The series are totals of this process: no organisation, assistant or number appears
//! in them, so one tenant's traffic cannot be read per tenant from them.
//!
//! # Access (`[metrics]`)
//!
//! They still reveal traffic, so they are not public by default. On the main listener
//! `/metrics` needs `Authorization: Bearer <metrics.token>` when a token is set, is open when
//! `metrics.public = true` (and no token is set), and otherwise answers 404 like an unknown
//! path. `metrics.addr` adds a listener serving only `/metrics` (token required there too
//! when set). Wrong tokens count as failed authentications of the client address, like wrong
//! API keys.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
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

/// A monotonically increasing counter.
#[derive(Debug)]
pub struct Counter {
    name: &'static str,
    help: &'static str,
    value: AtomicU64,
}

impl Counter {
    const fn new(name: &'static str, help: &'static str) -> Self {
        Counter {
            name,
            help,
            value: AtomicU64::new(0),
        }
    }

    /// Adds one.
    pub fn inc(&self) {
        self.value.fetch_add(1, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.value.load(Ordering::Relaxed)
    }
}

/// Media streams that passed their token check and ran an assistant.
pub static CALLS_STARTED: Counter = Counter::new(
    "switchboard_calls_started_total",
    "Calls whose media stream started.",
);
/// Calls that ended as failed.
pub static CALLS_FAILED: Counter = Counter::new(
    "switchboard_calls_failed_total",
    "Calls that ended as failed.",
);
/// Media streams closed before any assistant ran (bad or missing token, no start…).
pub static STREAMS_REFUSED: Counter = Counter::new(
    "switchboard_streams_refused_total",
    "Media streams refused before the call started.",
);
/// Malformed, unknown or out-of-place media-stream messages that were ignored.
pub static BAD_MEDIA_MESSAGES: Counter = Counter::new(
    "switchboard_bad_media_messages_total",
    "Media-stream messages ignored as malformed or unexpected.",
);
/// Outgoing webhook deliveries that failed for good.
pub static WEBHOOK_FAILURES: Counter = Counter::new(
    "switchboard_webhook_failures_total",
    "Webhook deliveries that failed after all retries.",
);

const ALL: [&Counter; 5] = [
    &CALLS_STARTED,
    &CALLS_FAILED,
    &STREAMS_REFUSED,
    &BAD_MEDIA_MESSAGES,
    &WEBHOOK_FAILURES,
];

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
    serve(&state, access, client.map(|c| c.0), &headers, &uri)
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
    serve(&state, access, client.map(|c| c.0), &headers, &uri)
}

fn serve(
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
        Access::Token => match check_token(state, client, headers) {
            Ok(()) => render(state).into_response(),
            Err(err) => err.into_response(),
        },
    }
}

/// The bearer token against `metrics.token`, in constant time, behind the per-address
/// failed-authentication throttle.
fn check_token(
    state: &AppState,
    client: Option<ClientAddr>,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    let now = Instant::now();
    refuse_if_throttled(state, client, now)?;
    let expected = state.settings.metrics.token.as_bytes();
    let presented = headers
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(bearer_token);
    match presented {
        Some(token) if bool::from(token.as_bytes().ct_eq(expected)) => Ok(()),
        Some(_) => {
            record_failure(state, client, now);
            Err(ApiError::Unauthorized("invalid metrics token".into()))
        }
        None => Err(ApiError::Unauthorized(
            "missing Authorization: Bearer <metrics token> header".into(),
        )),
    }
}

fn render(state: &AppState) -> impl IntoResponse + use<> {
    let mut out = String::with_capacity(1024);
    for c in ALL {
        let _ = writeln!(
            out,
            "# HELP {} {}\n# TYPE {} counter\n{} {}",
            c.name,
            c.help,
            c.name,
            c.name,
            c.get()
        );
    }
    let _ = writeln!(
        out,
        "# HELP switchboard_live_calls Calls live on this instance.\n# TYPE switchboard_live_calls gauge\nswitchboard_live_calls {}",
        state.calls.len()
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}
