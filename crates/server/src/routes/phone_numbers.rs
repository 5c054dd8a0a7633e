//! `/api/v1/assistants/{id}/phone-numbers…`: route phone numbers to assistants.
//!
//! A number belongs to one organisation and, within it, to at most one assistant at a time:
//! assigning it to another assistant of the same organisation moves it; assigning a number that
//! another organisation holds is a 409 (the store enforces this in one statement, so two
//! organisations racing for a number cannot both win). Numbers must be E.164, and must be in the
//! organisation's own Twilio account (asked of Twilio at each assignment,
//! [`crate::twilio_account`]): otherwise any organisation could claim a number it does not own
//! and lock its real owner out.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use switchboard_assistant::is_e164;
use switchboard_store::{PhoneNumberRow, SyncedNumber, ms_to_rfc3339};
use utoipa::{OpenApi, ToSchema};

use crate::auth::Auth;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiJson, ApiPath};
use crate::routes::ApiResponse;
use crate::routes::assistants::{AssistantPath, load_assistant};
use crate::state::AppState;

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/assistants/{assistant_id}/phone-numbers",
            get(list_phone_numbers),
        )
        .route(
            "/api/v1/assistants/{assistant_id}/phone-numbers/assign-by-number",
            post(assign_by_number),
        )
        .route(
            "/api/v1/assistants/{assistant_id}/phone-numbers/unassign-by-number",
            post(unassign_by_number),
        )
}

/// OpenAPI description of this module's paths.
#[derive(OpenApi)]
#[openapi(
    paths(list_phone_numbers, assign_by_number, unassign_by_number),
    components(schemas(
        PhoneNumberResponse,
        PhoneNumberAssignRequest,
        PhoneNumberUnassignRequest
    ))
)]
pub struct PhoneNumbersApi;

/// Body of `POST …/phone-numbers/assign-by-number`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PhoneNumberAssignRequest {
    /// Number in E.164 form, e.g. `+14155550100`.
    pub phone_number: String,
    /// Display name to store with the number (else Twilio's).
    #[serde(default)]
    pub friendly_name: Option<String>,
    /// Accepted for Burki compatibility: the number is always looked up in the organisation's
    /// Twilio account (that proves ownership), so it is always "synced".
    #[serde(default)]
    pub auto_sync: Option<bool>,
}

/// Body of `POST …/phone-numbers/unassign-by-number`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PhoneNumberUnassignRequest {
    /// Number in E.164 form.
    pub phone_number: String,
}

/// A phone number of the organisation.
#[derive(Debug, Serialize, ToSchema)]
pub struct PhoneNumberResponse {
    /// Database id.
    pub id: i64,
    /// The number, E.164.
    pub phone_number: String,
    /// Owning organisation.
    pub organization_id: i64,
    /// Assistant the number is routed to; `null` when unassigned.
    pub assistant_id: Option<i64>,
    /// Creation time (RFC 3339).
    pub created_at: String,
    /// Last change (RFC 3339).
    pub updated_at: String,
}

impl From<&PhoneNumberRow> for PhoneNumberResponse {
    fn from(row: &PhoneNumberRow) -> Self {
        PhoneNumberResponse {
            id: row.id,
            phone_number: row.number.clone(),
            organization_id: row.organization_id,
            assistant_id: row.assistant_id,
            created_at: ms_to_rfc3339(row.created_at_ms),
            updated_at: ms_to_rfc3339(row.updated_at_ms),
        }
    }
}

fn e164(raw: &str) -> Result<&str, ApiError> {
    let number = raw.trim();
    if is_e164(number) {
        Ok(number)
    } else {
        Err(ApiError::invalid(
            "phone_number",
            "must be an E.164 number like +14155550100",
        ))
    }
}

fn to_data(row: &PhoneNumberRow) -> Result<serde_json::Value, ApiError> {
    serde_json::to_value(PhoneNumberResponse::from(row)).map_err(ApiError::internal)
}

/// Numbers routed to the assistant, ordered by number.
#[utoipa::path(
    get,
    path = "/api/v1/assistants/{assistant_id}/phone-numbers",
    tag = "phone-numbers",
    security(("bearer" = [])),
    params(("assistant_id" = i64, Path, description = "Assistant id")),
    responses(
        (status = 200, description = "The assistant's numbers", body = Vec<PhoneNumberResponse>),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 404, description = "No such assistant in your organisation", body = ErrorBody)
    )
)]
pub async fn list_phone_numbers(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(path): ApiPath<AssistantPath>,
) -> Result<Json<Vec<PhoneNumberResponse>>, ApiError> {
    let assistant = load_assistant(&state, &auth, path.assistant_id).await?;
    let rows = state
        .store
        .list_numbers(auth.organization_id, assistant.id)
        .await?;
    Ok(Json(rows.iter().map(PhoneNumberResponse::from).collect()))
}

/// Route a number to the assistant (moving it from another assistant of the organisation if
/// needed). The number must be in the organisation's Twilio account (422 otherwise); 409 when
/// another organisation holds the number.
#[utoipa::path(
    post,
    path = "/api/v1/assistants/{assistant_id}/phone-numbers/assign-by-number",
    tag = "phone-numbers",
    security(("bearer" = [])),
    params(("assistant_id" = i64, Path, description = "Assistant id")),
    request_body = PhoneNumberAssignRequest,
    responses(
        (status = 200, description = "Assigned; `data` is the number", body = ApiResponse),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 404, description = "No such assistant in your organisation", body = ErrorBody),
        (status = 409, description = "Another organisation holds the number", body = ErrorBody),
        (status = 422, description = "Not an E.164 number, no Twilio credentials, or the number is not in the organisation's Twilio account", body = ErrorBody),
        (status = 502, description = "Twilio failed or could not be reached; nothing changed", body = ErrorBody)
    )
)]
pub async fn assign_by_number(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(path): ApiPath<AssistantPath>,
    ApiJson(body): ApiJson<PhoneNumberAssignRequest>,
) -> Result<Json<ApiResponse>, ApiError> {
    let number = e164(&body.phone_number)?;
    let assistant = load_assistant(&state, &auth, path.assistant_id).await?;
    let found =
        crate::twilio_account::require_number_in_account(&state, auth.organization_id, number)
            .await?;
    let friendly_name = body
        .friendly_name
        .as_deref()
        .map(crate::routes::number_list::friendly_name)
        .transpose()?
        .flatten();
    let row = state
        .store
        .assign_number(auth.organization_id, assistant.id, number)
        .await?;
    let details = SyncedNumber {
        number: found.phone_number,
        twilio_sid: found.sid,
        friendly_name: found.friendly_name,
        capabilities: found.capabilities.unwrap_or_else(|| serde_json::json!({})),
    };
    state
        .store
        .set_number_twilio_details(
            auth.organization_id,
            number,
            &details,
            friendly_name.as_deref(),
        )
        .await?;
    tracing::info!(assistant_id = assistant.id, "phone number assigned");
    Ok(Json(ApiResponse::ok(
        format!(
            "phone number {number} assigned to assistant {}",
            assistant.id
        ),
        Some(to_data(&row)?),
    )))
}

/// Stop routing a number to the assistant; the organisation keeps the number.
#[utoipa::path(
    post,
    path = "/api/v1/assistants/{assistant_id}/phone-numbers/unassign-by-number",
    tag = "phone-numbers",
    security(("bearer" = [])),
    params(("assistant_id" = i64, Path, description = "Assistant id")),
    request_body = PhoneNumberUnassignRequest,
    responses(
        (status = 200, description = "Unassigned", body = ApiResponse),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 404, description = "No such assistant, or the number is not assigned to it", body = ErrorBody),
        (status = 422, description = "Not an E.164 number", body = ErrorBody)
    )
)]
pub async fn unassign_by_number(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(path): ApiPath<AssistantPath>,
    ApiJson(body): ApiJson<PhoneNumberUnassignRequest>,
) -> Result<Json<ApiResponse>, ApiError> {
    let number = e164(&body.phone_number)?;
    let assistant = load_assistant(&state, &auth, path.assistant_id).await?;
    if !state
        .store
        .unassign_number(auth.organization_id, assistant.id, number)
        .await?
    {
        return Err(ApiError::NotFound(format!(
            "phone number {number} is not assigned to assistant {}",
            assistant.id
        )));
    }
    tracing::info!(assistant_id = assistant.id, "phone number unassigned");
    Ok(Json(ApiResponse::ok(
        format!(
            "phone number {number} unassigned from assistant {}",
            assistant.id
        ),
        None,
    )))
}
