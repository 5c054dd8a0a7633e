//! `/api/v1/assistants…`: create, list, count, read, replace, patch, toggle, delete assistant
//! records, and find one by phone number. Paths and shapes follow the Burki API.
//!
//! Every query is scoped by the caller's organisation: another organisation's id is a 404,
//! exactly like an id that does not exist. Records are read from the store on every request
//! (no cache), and every response masks secrets (`AssistantResponse::new` does it). Every URL
//! in a record is held to the outbound policy before it is stored (`tenant_urls`).

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, patch};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use switchboard_assistant::{
    AssistantConfig, AssistantPatch, AssistantResponse, AssistantStats, StatusUpdate, apply_patch,
    apply_provider_defaults, apply_update, check_providers, deserialize_config, is_e164,
    parse_create,
};
use switchboard_store::{AssistantRow, ms_to_datetime};
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::auth::Auth;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiJson, ApiPath, ApiQuery, parse_json};
use crate::routes::ApiResponse;
use crate::state::AppState;
use crate::tenant_urls;
use switchboard_providers::registry::Registry;

/// Default page size of `GET /api/v1/assistants`.
pub const DEFAULT_LIMIT: i64 = 100;
/// Largest page size of `GET /api/v1/assistants`.
pub const MAX_LIMIT: i64 = 1000;

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/assistants",
            get(list_assistants).post(create_assistant),
        )
        .route("/api/v1/assistants/count", get(count_assistants))
        .route(
            "/api/v1/assistants/{assistant_id}",
            get(get_assistant)
                .put(update_assistant)
                .patch(patch_assistant)
                .delete(delete_assistant),
        )
        .route(
            "/api/v1/assistants/{assistant_id}/status",
            patch(update_assistant_status),
        )
        .route(
            "/api/v1/assistants/by-phone/{phone_number}",
            get(get_assistant_by_phone),
        )
}

/// OpenAPI description of this module's paths.
#[derive(OpenApi)]
#[openapi(
    paths(
        create_assistant,
        list_assistants,
        count_assistants,
        get_assistant,
        update_assistant,
        patch_assistant,
        update_assistant_status,
        delete_assistant,
        get_assistant_by_phone
    ),
    components(schemas(AssistantCount, ApiResponse))
)]
pub struct AssistantsApi;

/// Query of `GET /api/v1/assistants`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Number of records to skip (≥ 0). Default 0.
    #[serde(default)]
    pub skip: Option<i64>,
    /// Maximum number of records to return (1 to 1000). Default 100.
    #[serde(default)]
    pub limit: Option<i64>,
    /// Only return active assistants. Default false.
    #[serde(default)]
    pub active_only: Option<bool>,
}

/// Query of `GET /api/v1/assistants/count`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CountParams {
    /// Only count active assistants. Default false.
    #[serde(default)]
    pub active_only: Option<bool>,
}

/// Answer of `GET /api/v1/assistants/count`.
#[derive(Debug, Serialize, ToSchema)]
pub struct AssistantCount {
    /// Number of assistants in the caller's organisation (matching the filter).
    pub count: i64,
}

/// Query of `PATCH /api/v1/assistants/{id}/status` (the body form `{"is_active": …}` works too).
#[derive(Debug, Deserialize)]
pub struct StatusQuery {
    /// New active flag; when absent the JSON body must carry it.
    #[serde(default)]
    pub is_active: Option<bool>,
}

/// Path parameter `{assistant_id}`.
#[derive(Debug, Deserialize)]
pub struct AssistantPath {
    /// Assistant id.
    pub assistant_id: i64,
}

fn timestamp(ms: i64) -> chrono::DateTime<chrono::Utc> {
    ms_to_datetime(ms).unwrap_or_default()
}

fn stats_from(stats: switchboard_store::AssistantStats) -> AssistantStats {
    AssistantStats {
        total_calls: Some(stats.total_calls),
        avg_call_duration: stats.avg_call_duration,
        success_rate: stats.success_rate,
    }
}

/// Parses a stored row's record. A row that no longer parses is a server-side fault (500).
pub(crate) fn stored_config(row: &AssistantRow) -> Result<AssistantConfig, ApiError> {
    deserialize_config(row.config.clone()).map_err(|err| {
        ApiError::internal(format!("stored assistant {} does not parse: {err}", row.id))
    })
}

/// Builds the response (secrets masked) for a row with its stats.
pub(crate) fn to_response(
    row: &AssistantRow,
    stats: switchboard_store::AssistantStats,
) -> Result<AssistantResponse, ApiError> {
    let config = stored_config(row)?;
    Ok(AssistantResponse::new(
        row.id,
        row.organization_id,
        row.user_id,
        timestamp(row.created_at_ms),
        timestamp(row.updated_at_ms),
        config,
        stats_from(stats),
    ))
}

/// Loads the caller's assistant `id` (404 when absent or another organisation's).
pub(crate) async fn load_assistant(
    state: &AppState,
    auth: &Auth,
    id: i64,
) -> Result<AssistantRow, ApiError> {
    state
        .store
        .get_assistant(auth.organization_id, id)
        .await?
        .ok_or_else(|| not_found(id))
}

fn not_found(id: i64) -> ApiError {
    ApiError::NotFound(format!("assistant {id} not found"))
}

async fn respond(state: &AppState, row: &AssistantRow) -> Result<AssistantResponse, ApiError> {
    let stats = state
        .store
        .assistant_stats(row.organization_id, row.id)
        .await?;
    to_response(row, stats)
}

/// The record as the store keeps it: with its secret bindings (the store encrypts the secrets).
fn record_json(config: &AssistantConfig) -> Result<Value, ApiError> {
    config.to_stored_json().map_err(ApiError::internal)
}

/// Create an assistant in the caller's organisation. Only `name` is required; every other
/// field takes its default, and the response shows the full record.
#[utoipa::path(
    post,
    path = "/api/v1/assistants",
    tag = "assistants",
    security(("bearer" = [])),
    request_body = AssistantConfig,
    responses(
        (status = 201, description = "Created", body = AssistantResponse),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 422, description = "Validation failed", body = ErrorBody)
    )
)]
pub async fn create_assistant(
    State(state): State<AppState>,
    auth: Auth,
    ApiJson(body): ApiJson<Value>,
) -> Result<(StatusCode, Json<AssistantResponse>), ApiError> {
    let mut config = parse_create(body)?;
    apply_provider_defaults(&mut config, &Registry);
    check_providers(&config, &Registry)?;
    tenant_urls::check(&state.outbound, &config)?;
    let row = state
        .store
        .create_assistant(
            auth.organization_id,
            auth.user_id,
            &config.name,
            config.active(),
            &record_json(&config)?,
        )
        .await?;
    tracing::info!(
        assistant_id = row.id,
        organization_id = row.organization_id,
        "assistant created"
    );
    Ok((StatusCode::CREATED, Json(respond(&state, &row).await?)))
}

/// List the caller's assistants, ordered by id, with their stats.
#[utoipa::path(
    get,
    path = "/api/v1/assistants",
    tag = "assistants",
    security(("bearer" = [])),
    params(ListParams),
    responses(
        (status = 200, description = "A page of assistants", body = Vec<AssistantResponse>),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 422, description = "Bad query parameter", body = ErrorBody)
    )
)]
pub async fn list_assistants(
    State(state): State<AppState>,
    auth: Auth,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Json<Vec<AssistantResponse>>, ApiError> {
    let skip = params.skip.unwrap_or(0);
    if skip < 0 {
        return Err(ApiError::invalid("skip", "must be at least 0"));
    }
    let limit = params.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::invalid(
            "limit",
            format!("must be between 1 and {MAX_LIMIT}"),
        ));
    }
    let org = auth.organization_id;
    let rows = state
        .store
        .list_assistants(org, skip, limit, params.active_only.unwrap_or(false))
        .await?;
    let mut stats = if rows.is_empty() {
        Default::default()
    } else {
        state.store.assistant_stats_all(org).await?
    };
    let list = rows
        .iter()
        .map(|row| to_response(row, stats.remove(&row.id).unwrap_or_default()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Json(list))
}

/// Count the caller's assistants.
#[utoipa::path(
    get,
    path = "/api/v1/assistants/count",
    tag = "assistants",
    security(("bearer" = [])),
    params(CountParams),
    responses(
        (status = 200, description = "The count", body = AssistantCount),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody)
    )
)]
pub async fn count_assistants(
    State(state): State<AppState>,
    auth: Auth,
    ApiQuery(params): ApiQuery<CountParams>,
) -> Result<Json<AssistantCount>, ApiError> {
    let count = state
        .store
        .count_assistants(auth.organization_id, params.active_only.unwrap_or(false))
        .await?;
    Ok(Json(AssistantCount { count }))
}

/// Read one assistant (secrets masked).
#[utoipa::path(
    get,
    path = "/api/v1/assistants/{assistant_id}",
    tag = "assistants",
    security(("bearer" = [])),
    params(("assistant_id" = i64, Path, description = "Assistant id")),
    responses(
        (status = 200, description = "The assistant", body = AssistantResponse),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 404, description = "No such assistant in your organisation", body = ErrorBody)
    )
)]
pub async fn get_assistant(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(path): ApiPath<AssistantPath>,
) -> Result<Json<AssistantResponse>, ApiError> {
    let row = load_assistant(&state, &auth, path.assistant_id).await?;
    Ok(Json(respond(&state, &row).await?))
}

/// Replace an assistant's whole configuration (`name` required; absent fields return to their
/// defaults). Secrets sent back in their masked form keep the stored value.
#[utoipa::path(
    put,
    path = "/api/v1/assistants/{assistant_id}",
    tag = "assistants",
    security(("bearer" = [])),
    params(("assistant_id" = i64, Path, description = "Assistant id")),
    request_body = AssistantConfig,
    responses(
        (status = 200, description = "Updated", body = AssistantResponse),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 404, description = "No such assistant in your organisation", body = ErrorBody),
        (status = 422, description = "Validation failed", body = ErrorBody)
    )
)]
pub async fn update_assistant(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(path): ApiPath<AssistantPath>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Json<AssistantResponse>, ApiError> {
    let id = path.assistant_id;
    let row = load_assistant(&state, &auth, id).await?;
    let stored = stored_config(&row)?;
    let mut config = apply_update(&stored, body)?;
    apply_provider_defaults(&mut config, &Registry);
    check_providers(&config, &Registry)?;
    tenant_urls::check(&state.outbound, &config)?;
    save(&state, &auth, id, &config).await
}

/// Change some fields of an assistant; nested settings objects merge with the stored ones.
/// Secrets sent back in their masked form keep the stored value.
#[utoipa::path(
    patch,
    path = "/api/v1/assistants/{assistant_id}",
    tag = "assistants",
    security(("bearer" = [])),
    params(("assistant_id" = i64, Path, description = "Assistant id")),
    request_body = AssistantPatch,
    responses(
        (status = 200, description = "Updated", body = AssistantResponse),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 404, description = "No such assistant in your organisation", body = ErrorBody),
        (status = 409, description = "The assistant kept changing concurrently; retry", body = ErrorBody),
        (status = 422, description = "Validation failed", body = ErrorBody)
    )
)]
pub async fn patch_assistant(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(path): ApiPath<AssistantPath>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Json<AssistantResponse>, ApiError> {
    let id = path.assistant_id;
    // Read-merge-write with a version check: if another update lands between our read and our
    // write, read again and re-apply this patch on top of it, so neither change is lost.
    for _ in 0..PATCH_ATTEMPTS {
        let row = load_assistant(&state, &auth, id).await?;
        let stored = stored_config(&row)?;
        let mut config = apply_patch(&stored, &body)?;
        apply_provider_defaults(&mut config, &Registry);
        check_providers(&config, &Registry)?;
        tenant_urls::check(&state.outbound, &config)?;
        let updated = state
            .store
            .update_assistant_if_unchanged(
                auth.organization_id,
                id,
                row.updated_at_ms,
                &config.name,
                config.active(),
                &record_json(&config)?,
            )
            .await?;
        if let Some(row) = updated {
            tracing::info!(assistant_id = id, "assistant patched");
            return Ok(Json(respond(&state, &row).await?));
        }
    }
    Err(ApiError::Conflict(format!(
        "assistant {id} kept changing while this patch was applied; retry"
    )))
}

/// How many times a PATCH re-reads and re-applies itself when a concurrent update won the race.
const PATCH_ATTEMPTS: usize = 8;

async fn save(
    state: &AppState,
    auth: &Auth,
    id: i64,
    config: &AssistantConfig,
) -> Result<Json<AssistantResponse>, ApiError> {
    let row = state
        .store
        .update_assistant(
            auth.organization_id,
            id,
            &config.name,
            config.active(),
            &record_json(config)?,
        )
        .await?
        .ok_or_else(|| not_found(id))?;
    tracing::info!(assistant_id = id, "assistant updated");
    Ok(Json(respond(state, &row).await?))
}

/// Activate or deactivate an assistant: `?is_active=true|false` (Burki's form) or a JSON body
/// `{"is_active": …}`.
#[utoipa::path(
    patch,
    path = "/api/v1/assistants/{assistant_id}/status",
    tag = "assistants",
    security(("bearer" = [])),
    params(("assistant_id" = i64, Path, description = "Assistant id"), StatusUpdate),
    request_body(
        content = Option<StatusUpdate>,
        description = "Optional alternative to the `is_active` query parameter",
        content_type = "application/json"
    ),
    responses(
        (status = 200, description = "Updated", body = AssistantResponse),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 404, description = "No such assistant in your organisation", body = ErrorBody),
        (status = 422, description = "is_active missing or not a boolean", body = ErrorBody)
    )
)]
pub async fn update_assistant_status(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(path): ApiPath<AssistantPath>,
    ApiQuery(query): ApiQuery<StatusQuery>,
    body: Bytes,
) -> Result<Json<AssistantResponse>, ApiError> {
    let id = path.assistant_id;
    let is_active = match query.is_active {
        Some(value) => value,
        None if !body.iter().all(u8::is_ascii_whitespace) => {
            parse_json::<StatusUpdate>(&body)?.is_active
        }
        None => return Err(ApiError::invalid("is_active", "is required")),
    };
    let row = state
        .store
        .set_assistant_active(auth.organization_id, id, is_active)
        .await?
        .ok_or_else(|| not_found(id))?;
    tracing::info!(assistant_id = id, is_active, "assistant status changed");
    Ok(Json(respond(&state, &row).await?))
}

/// Delete an assistant. Its phone numbers stay with the organisation, unassigned; its call
/// records stay.
#[utoipa::path(
    delete,
    path = "/api/v1/assistants/{assistant_id}",
    tag = "assistants",
    security(("bearer" = [])),
    params(("assistant_id" = i64, Path, description = "Assistant id")),
    responses(
        (status = 200, description = "Deleted", body = ApiResponse),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 404, description = "No such assistant in your organisation", body = ErrorBody)
    )
)]
pub async fn delete_assistant(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(path): ApiPath<AssistantPath>,
) -> Result<Json<ApiResponse>, ApiError> {
    let id = path.assistant_id;
    if !state
        .store
        .delete_assistant(auth.organization_id, id)
        .await?
    {
        return Err(not_found(id));
    }
    tracing::info!(assistant_id = id, "assistant deleted");
    Ok(Json(ApiResponse::ok(
        format!("assistant {id} deleted"),
        None,
    )))
}

/// The assistant a phone number (E.164, e.g. `+14155550100`) of the caller's organisation is
/// routed to.
#[utoipa::path(
    get,
    path = "/api/v1/assistants/by-phone/{phone_number}",
    tag = "assistants",
    security(("bearer" = [])),
    params(("phone_number" = String, Path, description = "E.164 number, e.g. +14155550100")),
    responses(
        (status = 200, description = "The assistant", body = AssistantResponse),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 404, description = "No assistant of your organisation has this number", body = ErrorBody),
        (status = 422, description = "Not an E.164 number", body = ErrorBody)
    )
)]
pub async fn get_assistant_by_phone(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(phone_number): ApiPath<String>,
) -> Result<Json<AssistantResponse>, ApiError> {
    let number = phone_number.trim();
    if !is_e164(number) {
        return Err(ApiError::invalid(
            "phone_number",
            "must be an E.164 number like +14155550100",
        ));
    }
    let row = state
        .store
        .assistant_by_number_in_org(auth.organization_id, number)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no assistant has the number {number}")))?;
    Ok(Json(respond(&state, &row).await?))
}
