//! `GET /api/v1/calls/live`: the organisation's live calls as server-sent events, for the
//! console's live page. The events come from the call tasks through [`crate::live_feed`];
//! see there for why a viewer can never slow a call.

use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use futures::{Stream, StreamExt as _};
use utoipa::OpenApi;

use crate::auth::Auth;
use crate::error::{ApiError, ErrorBody};
use crate::live_feed::{
    FeedItem, LiveBackchannel, LiveCallEnded, LiveCallInfo, LiveLagged, LiveMoment, LiveSnapshot,
    LiveTranscript, LiveTurn, SubscribeError, Viewer,
};
use crate::state::AppState;

/// How often an idle stream sends an SSE comment, so proxies and browsers keep it open.
pub const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(15);

/// Seconds a refused viewer is told to wait before trying again (`Retry-After`).
const RETRY_AFTER_S: u64 = 5;

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/calls/live", get(live_calls))
}

/// OpenAPI paths and schemas of this module.
#[derive(OpenApi)]
#[openapi(
    paths(live_calls),
    components(schemas(
        LiveSnapshot,
        LiveCallInfo,
        LiveTranscript,
        LiveTurn,
        LiveMoment,
        LiveBackchannel,
        LiveCallEnded,
        LiveLagged
    ))
)]
pub struct LiveApi;

/// The organisation's live calls, as they happen (server-sent events): those of this instance,
/// and with Redis (`redis.url`) those of every instance sharing it.
///
/// Events (`event:` name, JSON `data:`; `*_ms` are milliseconds since the call started):
/// `snapshot` (`LiveSnapshot`, always first: the calls live on this instance at connection;
/// other instances' live calls follow as `call_started`),
/// `call_started` (`LiveCallInfo`; a call may also be in the snapshot or be announced twice:
/// key calls by `call_id`), `transcript` (`LiveTranscript`), `turn` (`LiveTurn`), `barge_in`
/// (`LiveMoment`), `backchannel` (`LiveBackchannel`), `call_ended` (`LiveCallEnded`), and
/// `lagged` (`LiveLagged`: this viewer read too slowly and lost that many events). Comments
/// keep an idle stream open. Only the key's organisation's calls are sent.
#[utoipa::path(
    get,
    path = "/api/v1/calls/live",
    tag = "calls",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "An endless stream of server-sent events (see above)",
         content_type = "text/event-stream", body = String),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 429, description = "The organisation has `calls.live_viewers_per_org` \
                                      viewers already", body = ErrorBody)
    )
)]
pub async fn live_calls(
    State(state): State<AppState>,
    auth: Auth,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let org = auth.organization_id;
    // Subscribe before reading the registry: a call starting in between is in the snapshot,
    // its `call_started` follows, and nothing is missed.
    let viewer = state.live.subscribe(org).map_err(|e| match e {
        SubscribeError::TooManyViewers { .. } => ApiError::RateLimited {
            retry_after_s: RETRY_AFTER_S,
        },
    })?;
    let mut calls: Vec<(std::time::SystemTime, LiveCallInfo)> = state
        .calls
        .iter()
        .filter(|c| c.organization_id == org)
        .map(|c| (c.started_at, c.info(c.key())))
        .collect();
    calls.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.call_id.cmp(&b.1.call_id)));
    let snapshot = LiveSnapshot {
        calls: calls.into_iter().map(|(_, c)| c).collect(),
    };
    let first = json_event("snapshot", serde_json::to_string(&snapshot).as_deref());
    let shutdown = state.shutdown.clone();
    let events = futures::stream::unfold(
        (Some(first), viewer),
        |(first, mut viewer): (Option<Event>, Viewer)| async move {
            if let Some(first) = first {
                return Some((Ok(first), (None, viewer)));
            }
            let event = match viewer.next().await? {
                FeedItem::Event(e) => json_event(e.name(), e.json()),
                FeedItem::Lagged(missed) => json_event(
                    "lagged",
                    serde_json::to_string(&LiveLagged { missed }).as_deref(),
                ),
            };
            Some((Ok(event), (None, viewer)))
        },
    )
    // The server is shutting down: end the stream so the connection can close.
    .take_until(async move { shutdown.cancelled().await });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE_INTERVAL)))
}

/// An SSE event named `name` with `data` (our event types always serialise; were one not to,
/// the viewer gets a comment instead of a broken event).
fn json_event(name: &'static str, data: Result<&str, &serde_json::Error>) -> Event {
    match data {
        Ok(data) => Event::default().event(name).data(data),
        Err(e) => {
            tracing::warn!(event = name, error = %e, "live event could not be encoded");
            Event::default().comment("event dropped")
        }
    }
}
