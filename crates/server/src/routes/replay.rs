//! `GET /api/v1/calls/{call_id}/replay?set=path=value&set=…`: the call's flight recording
//! replayed exactly, and with other turn-taking settings when `set` parameters are given; both
//! timelines as JSON for a console to draw (see [`crate::replay`]). Scoped by organisation: another
//! organisation's call is a 404, like a call that does not exist.

use axum::Json;
use axum::Router;
use axum::extract::{RawQuery, State};
use axum::routing::get;
use utoipa::OpenApi;

use crate::auth::Auth;
use crate::error::{ApiError, ErrorBody};
use crate::extract::ApiPath;
use crate::replay::{ReplayError, ReplayReport, SettingChange, parse_set, replay_call};
use crate::routes::calls::{CallIdPath, load_call};
use crate::state::AppState;

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/calls/{call_id}/replay", get(get_replay))
}

/// OpenAPI description of this module's paths.
#[derive(OpenApi)]
#[openapi(paths(get_replay), components(schemas(ReplayReport, SettingChange)))]
pub struct ReplayApi;

/// Replay a recorded call through the call core: exactly (the stored decisions must be
/// reproduced), and with each `set=path=value` applied to its turn-taking settings (validated
/// like the assistant record) for a what-if timeline beside the original.
#[utoipa::path(
    get,
    path = "/api/v1/calls/{call_id}/replay",
    tag = "calls",
    security(("bearer" = [])),
    params(
        ("call_id" = i64, Path, description = "Call id"),
        ("set" = Option<Vec<String>>, Query, description = "Repeatable `path=value`, e.g. \
          `interruption_settings.tail_protection_ms=800`; any turn-taking setting of the record")
    ),
    responses(
        (status = 200, description = "Both timelines", body = ReplayReport),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 404, description = "No such call in your organisation, or it has no flight \
          recording (recording_settings.enabled was off)", body = ErrorBody),
        (status = 422, description = "A change is malformed, not a turn-taking setting, or \
          invalid for the record; names the field", body = ErrorBody)
    )
)]
pub async fn get_replay(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(path): ApiPath<CallIdPath>,
    RawQuery(query): RawQuery,
) -> Result<Json<ReplayReport>, ApiError> {
    let call = load_call(&state, &auth, path.call_id).await?;
    let mut sets = Vec::new();
    for (key, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        if key != "set" {
            return Err(ApiError::invalid(
                key.into_owned(),
                "unknown query parameter",
            ));
        }
        sets.push(parse_set(&value).map_err(replay_error)?);
    }
    let report = replay_call(
        &state.store,
        &state.recordings,
        auth.organization_id,
        call.id,
        sets,
    )
    .await
    .map_err(replay_error)?;
    Ok(Json(report))
}

fn replay_error(e: ReplayError) -> ApiError {
    match e {
        ReplayError::NoTrace(_) | ReplayError::TraceGone(_) => ApiError::NotFound(e.to_string()),
        ReplayError::Invalid(errors) => ApiError::from(errors),
        other => ApiError::internal(other),
    }
}
