//! The live calls page: the shell that `live.js` fills from the server-sent event stream
//! `GET /api/v1/calls/live` (its JSON events: `snapshot`, `call_started`, `transcript`,
//! `turn`, `barge_in`, `backchannel`, `call_ended`, `lagged`). The browser connects with its
//! session cookie, which the API's `Auth` extractor accepts for GET requests.

use axum::Router;
use axum::routing::get;
use maud::{Markup, html};

use crate::console::assets;
use crate::console::layout::{self, Nav};
use crate::console::session::ConsoleUser;
use crate::state::AppState;

/// Path of the live page.
pub const PATH: &str = "/console/live";
/// The event stream the page reads.
pub const STREAM_PATH: &str = "/api/v1/calls/live";

/// `GET /console/live`.
pub fn routes() -> Router<AppState> {
    Router::new().route(PATH, get(live_page))
}

async fn live_page(user: ConsoleUser) -> Markup {
    let body = html! {
        h1 { "Live calls" }
        section #live data-stream=(STREAM_PATH) {
            p { "Stream: " span #live-status.disconnected { "connecting…" } }
            div.legend {
                span.seg-stt { "STT final (from end of caller speech)" }
                span.seg-endpoint { "endpointing" }
                span.seg-llm { "LLM first token" }
                span.seg-tts { "first TTS audio" }
                span.seg-out { "first frame out" }
            }
            p #live-empty.muted { "No calls in progress. Calls appear here as they start." }
            div #live-calls.live-calls {}
        }
    };
    layout::page("Live calls", &user, Nav::Live, &[&assets::LIVE_JS], body)
}
