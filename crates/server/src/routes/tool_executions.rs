//! `GET /api/v1/calls/{id}/tool-executions`: every tool the LLM ran in a call (built-in or
//! custom), in the order they started, a page at a time (`items` + `total`, `skip`/`limit` as
//! `GET /api/v1/calls`). Another organisation's call is a 404, like a call that does not exist.
//! The same rows go into the end-of-call webhook's `toolExecutions` ([`execution_json`]).

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use switchboard_store::{ToolExecutionRow, ToolExecutionStatus, ms_to_rfc3339};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::auth::Auth;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiPath, ApiQuery};
use crate::routes::calls::{CallIdPath, DEFAULT_LIMIT, MAX_LIMIT, load_call};
use crate::state::AppState;

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new().route(
        "/api/v1/calls/{call_id}/tool-executions",
        get(list_tool_executions),
    )
}

/// OpenAPI description of this module's paths.
#[derive(OpenApi)]
#[openapi(
    paths(list_tool_executions),
    components(schemas(ToolExecutionResponse, PaginatedToolExecutionsResponse))
)]
pub struct ToolExecutionsApi;

/// One tool execution.
#[derive(Debug, Serialize, ToSchema)]
pub struct ToolExecutionResponse {
    /// Database id.
    pub id: i64,
    /// The call it ran in.
    pub call_id: i64,
    /// The LLM's id of the tool call, which the tool result answered.
    pub tool_call_id: String,
    /// The tool's name as the LLM called it (`end_call`, `send_sms`, a custom tool's `name`…).
    pub tool_name: String,
    /// The arguments the LLM gave (JSON; its raw text as a string when it was not JSON).
    #[schema(value_type = Object)]
    pub arguments: Value,
    /// The result the LLM got, at most 4096 bytes; `null` when cancelled.
    pub result: Option<String>,
    /// The result was longer than 4096 bytes and was cut.
    pub result_truncated: bool,
    /// How it ended: `ok`, `error`, `timeout` or `cancelled` (barge-in, the reply or the call
    /// ended while it ran).
    #[schema(schema_with = status_schema)]
    pub status: ToolExecutionStatus,
    /// What went wrong (`error`, `timeout`).
    pub error: Option<String>,
    /// When it started (RFC 3339).
    pub started_at: String,
    /// How long it ran, ms (for `cancelled`: until it was stopped).
    pub duration_ms: i64,
}

fn status_schema() -> utoipa::openapi::Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(ToolExecutionStatus::KNOWN.iter().map(|s| s.as_str())))
        .build()
}

impl From<&ToolExecutionRow> for ToolExecutionResponse {
    fn from(r: &ToolExecutionRow) -> Self {
        ToolExecutionResponse {
            id: r.id,
            call_id: r.call_id,
            tool_call_id: r.tool_call_id.clone(),
            tool_name: r.tool_name.clone(),
            arguments: r.arguments.clone(),
            result: r.result.clone(),
            result_truncated: r.result_truncated,
            status: r.status,
            error: r.error.clone(),
            started_at: ms_to_rfc3339(r.started_at_ms),
            duration_ms: r.duration_ms,
        }
    }
}

/// A page of a call's tool executions.
#[derive(Debug, Serialize, ToSchema)]
pub struct PaginatedToolExecutionsResponse {
    /// The executions of this page, in the order they started.
    pub items: Vec<ToolExecutionResponse>,
    /// Executions of the call, over all pages.
    pub total: i64,
    /// Executions skipped before this page.
    pub skip: i64,
    /// Page size asked for.
    pub limit: i64,
}

/// Query of `GET /api/v1/calls/{id}/tool-executions`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ToolExecutionParams {
    /// Executions to skip (default 0).
    #[serde(default)]
    pub skip: Option<i64>,
    /// Page size, 1..=1000 (default 100).
    #[serde(default)]
    pub limit: Option<i64>,
}

/// A call's tool executions, in the order they started.
#[utoipa::path(
    get,
    path = "/api/v1/calls/{call_id}/tool-executions",
    tag = "calls",
    security(("bearer" = [])),
    params(("call_id" = i64, Path, description = "Call id"), ToolExecutionParams),
    responses(
        (status = 200, description = "A page of tool executions", body = PaginatedToolExecutionsResponse),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 404, description = "No such call in your organisation", body = ErrorBody),
        (status = 422, description = "Bad skip or limit", body = ErrorBody)
    )
)]
pub async fn list_tool_executions(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(path): ApiPath<CallIdPath>,
    ApiQuery(params): ApiQuery<ToolExecutionParams>,
) -> Result<Json<PaginatedToolExecutionsResponse>, ApiError> {
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
    let call = load_call(&state, &auth, path.call_id).await?;
    let org = auth.organization_id;
    let rows = state
        .store
        .list_tool_executions(org, call.id, skip, limit)
        .await?;
    let total = state.store.count_tool_executions(org, call.id).await?;
    Ok(Json(PaginatedToolExecutionsResponse {
        items: rows.iter().map(ToolExecutionResponse::from).collect(),
        total,
        skip,
        limit,
    }))
}

/// One execution as the end-of-call webhook carries it (camelCase, like the rest of its body).
pub fn execution_json(r: &ToolExecutionRow) -> Value {
    json!({
        "toolCallId": r.tool_call_id,
        "name": r.tool_name,
        "arguments": r.arguments,
        "result": r.result,
        "resultTruncated": r.result_truncated,
        "status": r.status,
        "error": r.error,
        "startedAt": ms_to_rfc3339(r.started_at_ms),
        "durationMs": r.duration_ms,
    })
}
