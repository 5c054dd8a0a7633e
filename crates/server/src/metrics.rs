//! Process-wide counters of the call path, served in Prometheus text format at `GET /metrics`.
//!
//! Plain atomics: incrementing one is a single relaxed add, cheap enough for the per-frame
//! path.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

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

/// `GET /metrics`.
pub fn router() -> Router<AppState> {
    Router::new().route("/metrics", get(render))
}

async fn render(State(state): State<AppState>) -> impl IntoResponse {
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
