//! The organisation's number list, Burki's way: `GET /api/v1/assistants/organization/phone-numbers`
//! (`include_assigned`, `include_unassigned`, `include_inactive`), `…/available`, `…/sync` (import
//! from the organisation's Twilio account), `PATCH …/{phone_number_id}` (name, assignment,
//! allowed countries), and per assistant `available-phone-numbers`, `phone-numbers/{id}/assign`,
//! `…/unassign` and `phone-numbers/bulk-assign`.
//!
//! Numbers enter the list only from the organisation's own Twilio account (sync, or assignment
//! by number, which asks Twilio), so assignment by id never needs to ask Twilio again. By id, a
//! number held by another assistant is a 409 (Burki's rule); `PATCH` moves it. Conversation
//! flows and SIP trunks do not exist here: `flow_id` and `sip_trunk_id` other than "none" are
//! refused (422) rather than stored and ignored. `allowed_country_codes` is enforced by the voice
//! webhook (`<Reject/>` for a caller from another country).

use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::routing::{get, patch, post};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use switchboard_store::{
    NumberAssignment, NumberPatch, PhoneNumberRow, StoreError, SyncedNumber, ms_to_rfc3339,
};
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::auth::Auth;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiJson, ApiPath};
use crate::routes::ApiResponse;
use crate::routes::assistants::{AssistantPath, load_assistant};
use crate::state::AppState;

/// Most numbers one bulk assignment takes.
const MAX_BULK: usize = 500;

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/assistants/organization/phone-numbers",
            get(list_org_numbers),
        )
        .route(
            "/api/v1/assistants/organization/phone-numbers/available",
            get(list_available),
        )
        .route(
            "/api/v1/assistants/organization/phone-numbers/sync",
            post(sync_numbers),
        )
        .route(
            "/api/v1/assistants/organization/phone-numbers/{phone_number_id}",
            patch(update_number),
        )
        .route(
            "/api/v1/assistants/{assistant_id}/available-phone-numbers",
            get(available_for_assistant),
        )
        .route(
            "/api/v1/assistants/{assistant_id}/phone-numbers/{phone_number_id}/assign",
            post(assign_by_id),
        )
        .route(
            "/api/v1/assistants/{assistant_id}/phone-numbers/{phone_number_id}/unassign",
            post(unassign_by_id),
        )
        .route(
            "/api/v1/assistants/{assistant_id}/phone-numbers/bulk-assign",
            post(bulk_assign),
        )
}

/// OpenAPI description of this module's paths.
#[derive(OpenApi)]
#[openapi(
    paths(
        list_org_numbers,
        list_available,
        sync_numbers,
        update_number,
        available_for_assistant,
        assign_by_id,
        unassign_by_id,
        bulk_assign
    ),
    components(schemas(
        OrganizationPhoneNumber,
        AssistantInfo,
        SyncResponse,
        UpdatePhoneNumberRequest,
        UpdatePhoneNumberResponse
    ))
)]
pub struct NumberListApi;

/// The assistant a number routes to, as the list shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct AssistantInfo {
    /// Assistant id.
    pub id: i64,
    /// Its name.
    pub name: String,
    /// Whether it takes calls.
    pub is_active: bool,
}

/// One number of the organisation (Burki's `OrganizationPhoneNumberResponse`).
#[derive(Debug, Serialize, ToSchema)]
pub struct OrganizationPhoneNumber {
    /// Number id.
    pub id: i64,
    /// E.164.
    pub phone_number: String,
    /// Display name.
    pub friendly_name: Option<String>,
    /// Always `twilio`.
    pub provider: String,
    /// Twilio's `PN…` SID (empty until known from Twilio).
    pub twilio_sid: String,
    /// Whether the number was in the Twilio account at the last sync.
    pub is_active: bool,
    /// Always false: verified caller ids are not numbers that can take calls.
    pub is_verified_caller_id: bool,
    /// Twilio's capabilities (`voice`, `sms`, `mms`, `fax`).
    #[schema(value_type = Object)]
    pub capabilities: Value,
    /// Always `null` (SIP trunks are not supported).
    pub sip_trunk_id: Option<String>,
    /// Countries allowed to call; `null` = all.
    pub allowed_country_codes: Option<Vec<String>>,
    /// The assistant it routes to.
    pub assistant: Option<AssistantInfo>,
    /// Always `null` (conversation flows are not supported).
    #[schema(value_type = Option<Object>)]
    pub flow: Option<Value>,
    /// Creation time (RFC 3339).
    pub created_at: String,
    /// Last change (RFC 3339).
    pub updated_at: Option<String>,
}

/// Query of the organisation's number list.
#[derive(Debug, Deserialize, IntoParams)]
pub struct ListQuery {
    /// Include numbers routed to an assistant (default true).
    #[serde(default = "yes")]
    pub include_assigned: bool,
    /// Include numbers routed to no assistant (default true).
    #[serde(default = "yes")]
    pub include_unassigned: bool,
    /// Include numbers no longer in the Twilio account (default false).
    #[serde(default)]
    pub include_inactive: bool,
}

fn yes() -> bool {
    true
}

/// Answer of the sync.
#[derive(Debug, Serialize, ToSchema)]
pub struct SyncResponse {
    /// True when Twilio answered.
    pub success: bool,
    /// What happened, in words (numbers held by another organisation are named).
    pub message: String,
    /// Numbers added to the list.
    pub synced_count: usize,
}

/// Body of `PATCH …/organization/phone-numbers/{id}`; absent fields are left as they are.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdatePhoneNumberRequest {
    /// New display name (`null` or empty clears it; at most 64 characters).
    #[serde(default, deserialize_with = "present")]
    pub friendly_name: Option<Option<String>>,
    /// Assistant to route to; `null` or 0 unassigns.
    #[serde(default, deserialize_with = "present")]
    pub assistant_id: Option<Option<i64>>,
    /// Only `null` or 0 (conversation flows are not supported).
    #[serde(default, deserialize_with = "present")]
    pub flow_id: Option<Option<i64>>,
    /// Only `null` or empty (SIP trunks are not supported).
    #[serde(default, deserialize_with = "present")]
    pub sip_trunk_id: Option<Option<String>>,
    /// ISO 3166-1 alpha-2 codes allowed to call (`null` or empty = all).
    #[serde(default, deserialize_with = "present")]
    pub allowed_country_codes: Option<Option<Vec<String>>>,
}

/// Tells "absent" (`None`) from "`null`" (`Some(None)`).
fn present<'de, T, D>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    T: Deserialize<'de>,
    D: serde::Deserializer<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// Answer of the `PATCH`.
#[derive(Debug, Serialize, ToSchema)]
pub struct UpdatePhoneNumberResponse {
    /// Always true in a 2xx answer.
    pub success: bool,
    /// What changed.
    pub message: String,
    /// The number as listed.
    #[schema(value_type = Option<Object>)]
    pub phone_number: Option<Value>,
}

/// Path of the per-number endpoints under an assistant.
#[derive(Debug, Deserialize)]
pub struct AssistantNumberPath {
    /// Assistant id.
    pub assistant_id: i64,
    /// Number id.
    pub phone_number_id: i64,
}

/// Path of `PATCH …/organization/phone-numbers/{phone_number_id}`.
#[derive(Debug, Deserialize)]
pub struct NumberPath {
    /// Number id.
    pub phone_number_id: i64,
}

/// The organisation's numbers with their assistants, in number order.
async fn listed(state: &AppState, org: i64) -> Result<Vec<OrganizationPhoneNumber>, ApiError> {
    let rows = state.store.list_org_numbers(org).await?;
    let assistants = state.store.list_assistant_names(org).await?;
    Ok(rows
        .iter()
        .map(|row| view(row, assistant_info(&assistants, row.assistant_id)))
        .collect())
}

/// The assistant `id` among the organisation's `(id, name, is_active)` list, as a number shows it.
fn assistant_info(assistants: &[(i64, String, bool)], id: Option<i64>) -> Option<AssistantInfo> {
    let id = id?;
    let (id, name, is_active) = assistants.iter().find(|(a, _, _)| *a == id)?;
    Some(AssistantInfo {
        id: *id,
        name: name.clone(),
        is_active: *is_active,
    })
}

fn view(row: &PhoneNumberRow, assistant: Option<AssistantInfo>) -> OrganizationPhoneNumber {
    OrganizationPhoneNumber {
        id: row.id,
        phone_number: row.number.clone(),
        friendly_name: row.friendly_name.clone(),
        provider: "twilio".to_owned(),
        twilio_sid: row.twilio_sid.clone().unwrap_or_default(),
        is_active: row.is_active,
        is_verified_caller_id: false,
        capabilities: row.capabilities.clone(),
        sip_trunk_id: None,
        allowed_country_codes: row.allowed_country_codes.clone(),
        assistant,
        flow: None,
        created_at: ms_to_rfc3339(row.created_at_ms),
        updated_at: Some(ms_to_rfc3339(row.updated_at_ms)),
    }
}

/// The organisation's numbers (active ones by default) with their assignment.
#[utoipa::path(
    get,
    path = "/api/v1/assistants/organization/phone-numbers",
    tag = "phone-numbers",
    security(("bearer" = [])),
    params(ListQuery),
    responses(
        (status = 200, description = "The numbers", body = Vec<OrganizationPhoneNumber>),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody)
    )
)]
pub async fn list_org_numbers(
    State(state): State<AppState>,
    auth: Auth,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<OrganizationPhoneNumber>>, ApiError> {
    let all = listed(&state, auth.organization_id).await?;
    Ok(Json(
        all.into_iter()
            .filter(|n| q.include_inactive || n.is_active)
            .filter(|n| {
                if n.assistant.is_some() {
                    q.include_assigned
                } else {
                    q.include_unassigned
                }
            })
            .collect(),
    ))
}

/// Active numbers routed to no assistant: what can be assigned.
async fn available(state: &AppState, org: i64) -> Result<Vec<OrganizationPhoneNumber>, ApiError> {
    Ok(listed(state, org)
        .await?
        .into_iter()
        .filter(|n| n.is_active && n.assistant.is_none())
        .collect())
}

/// Numbers that can be assigned (active, routed to no assistant).
#[utoipa::path(
    get,
    path = "/api/v1/assistants/organization/phone-numbers/available",
    tag = "phone-numbers",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Unassigned active numbers", body = Vec<OrganizationPhoneNumber>),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody)
    )
)]
pub async fn list_available(
    State(state): State<AppState>,
    auth: Auth,
) -> Result<Json<Vec<OrganizationPhoneNumber>>, ApiError> {
    Ok(Json(available(&state, auth.organization_id).await?))
}

/// Numbers the assistant could be given (the organisation's unassigned active numbers).
#[utoipa::path(
    get,
    path = "/api/v1/assistants/{assistant_id}/available-phone-numbers",
    tag = "phone-numbers",
    security(("bearer" = [])),
    params(("assistant_id" = i64, Path, description = "Assistant id")),
    responses(
        (status = 200, description = "Unassigned active numbers", body = Vec<OrganizationPhoneNumber>),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 404, description = "No such assistant in your organisation", body = ErrorBody)
    )
)]
pub async fn available_for_assistant(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(path): ApiPath<AssistantPath>,
) -> Result<Json<Vec<OrganizationPhoneNumber>>, ApiError> {
    load_assistant(&state, &auth, path.assistant_id).await?;
    Ok(Json(available(&state, auth.organization_id).await?))
}

/// Import the numbers of the organisation's Twilio account: new ones are added unassigned,
/// known ones refreshed, and numbers no longer in the account marked inactive.
#[utoipa::path(
    post,
    path = "/api/v1/assistants/organization/phone-numbers/sync",
    tag = "phone-numbers",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Synced", body = SyncResponse),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 422, description = "No Twilio credentials, or Twilio refuses them", body = ErrorBody),
        (status = 502, description = "Twilio failed or could not be reached; nothing changed", body = ErrorBody)
    )
)]
pub async fn sync_numbers(
    State(state): State<AppState>,
    auth: Auth,
) -> Result<Json<SyncResponse>, ApiError> {
    let org = auth.organization_id;
    let listed: Vec<SyncedNumber> = crate::twilio_account::list_account_numbers(&state, org)
        .await?
        .into_iter()
        .map(|n| SyncedNumber {
            number: n.phone_number,
            twilio_sid: n.sid,
            friendly_name: n.friendly_name,
            capabilities: n.capabilities.unwrap_or_else(|| json!({})),
        })
        .collect();
    let (added, elsewhere, deactivated) = state.store.sync_numbers(org, &listed).await?;
    let mut message = format!(
        "{} numbers in the Twilio account: {added} added, {deactivated} no longer in the account",
        listed.len()
    );
    if !elsewhere.is_empty() {
        message.push_str(&format!(
            "; held by another organisation here, not imported: {}",
            elsewhere.join(", ")
        ));
    }
    tracing::info!(
        organization_id = org,
        added,
        deactivated,
        "phone numbers synced"
    );
    Ok(Json(SyncResponse {
        success: true,
        message,
        synced_count: added,
    }))
}

/// A display name as stored: trimmed, `None` when empty; 422 when longer than 64 characters
/// or holding control characters.
pub(crate) fn friendly_name(raw: &str) -> Result<Option<String>, ApiError> {
    let name = raw.trim();
    if name.chars().count() > 64 || name.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "friendly_name",
            "must be at most 64 characters, without control characters",
        ));
    }
    Ok((!name.is_empty()).then(|| name.to_owned()))
}

/// Checks a PATCH body and turns it into the store's patch.
fn check_patch(body: UpdatePhoneNumberRequest) -> Result<NumberPatch, ApiError> {
    if let Some(Some(flow)) = body.flow_id
        && flow != 0
    {
        return Err(ApiError::invalid(
            "flow_id",
            "conversation flows are not supported; numbers route to assistants",
        ));
    }
    if let Some(Some(trunk)) = &body.sip_trunk_id
        && !trunk.is_empty()
    {
        return Err(ApiError::invalid(
            "sip_trunk_id",
            "SIP trunks are not supported; numbers come from the Twilio account",
        ));
    }
    let friendly_name = match body.friendly_name {
        Some(Some(name)) => Some(friendly_name(&name)?),
        other => other,
    };
    let allowed_country_codes = match body.allowed_country_codes {
        Some(Some(codes)) => {
            let mut upper = Vec::with_capacity(codes.len());
            for code in codes {
                let code = code.trim().to_ascii_uppercase();
                if code.len() != 2 || !code.bytes().all(|b| b.is_ascii_uppercase()) {
                    return Err(ApiError::invalid(
                        "allowed_country_codes",
                        format!("{code:?} is not an ISO 3166-1 alpha-2 code like US or GB"),
                    ));
                }
                if !upper.contains(&code) {
                    upper.push(code);
                }
            }
            Some((!upper.is_empty()).then_some(upper))
        }
        other => other,
    };
    Ok(NumberPatch {
        friendly_name,
        assistant_id: body.assistant_id.map(|a| a.filter(|id| *id != 0)),
        allowed_country_codes,
    })
}

/// Change a number's display name, assistant (moving it) or allowed countries.
#[utoipa::path(
    patch,
    path = "/api/v1/assistants/organization/phone-numbers/{phone_number_id}",
    tag = "phone-numbers",
    security(("bearer" = [])),
    params(("phone_number_id" = i64, Path, description = "Number id")),
    request_body = UpdatePhoneNumberRequest,
    responses(
        (status = 200, description = "Updated", body = UpdatePhoneNumberResponse),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 404, description = "No such number or assistant in your organisation", body = ErrorBody),
        (status = 422, description = "A field breaks a rule (flows and SIP trunks are not supported)", body = ErrorBody)
    )
)]
pub async fn update_number(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(path): ApiPath<NumberPath>,
    ApiJson(body): ApiJson<UpdatePhoneNumberRequest>,
) -> Result<Json<UpdatePhoneNumberResponse>, ApiError> {
    let org = auth.organization_id;
    let patch = check_patch(body)?;
    let row = match state
        .store
        .update_number(org, path.phone_number_id, &patch)
        .await
    {
        Ok(row) => row,
        Err(StoreError::NotFound) => {
            return Err(ApiError::NotFound(format!(
                "no phone number {} (or no such assistant) in your organisation",
                path.phone_number_id
            )));
        }
        Err(e) => return Err(e.into()),
    };
    let assistants = state.store.list_assistant_names(org).await?;
    let shown = view(&row, assistant_info(&assistants, row.assistant_id));
    let shown = Some(serde_json::to_value(shown).map_err(ApiError::internal)?);
    Ok(Json(UpdatePhoneNumberResponse {
        success: true,
        message: format!("phone number {} updated", row.number),
        phone_number: shown,
    }))
}

/// Route one of the organisation's numbers to the assistant; 409 when another assistant has
/// it.
#[utoipa::path(
    post,
    path = "/api/v1/assistants/{assistant_id}/phone-numbers/{phone_number_id}/assign",
    tag = "phone-numbers",
    security(("bearer" = [])),
    params(
        ("assistant_id" = i64, Path, description = "Assistant id"),
        ("phone_number_id" = i64, Path, description = "Number id")
    ),
    responses(
        (status = 200, description = "Assigned", body = ApiResponse),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 404, description = "No such assistant or number in your organisation", body = ErrorBody),
        (status = 409, description = "Another assistant has the number", body = ErrorBody)
    )
)]
pub async fn assign_by_id(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(path): ApiPath<AssistantNumberPath>,
) -> Result<Json<ApiResponse>, ApiError> {
    let assistant = load_assistant(&state, &auth, path.assistant_id).await?;
    let row = assign_one(
        &state,
        auth.organization_id,
        assistant.id,
        path.phone_number_id,
    )
    .await?;
    Ok(Json(ApiResponse::ok(
        format!(
            "phone number {} assigned to assistant {}",
            row.number, assistant.id
        ),
        Some(json!({"id": row.id, "phone_number": row.number, "assistant_id": assistant.id})),
    )))
}

async fn assign_one(
    state: &AppState,
    org: i64,
    assistant: i64,
    number_id: i64,
) -> Result<PhoneNumberRow, ApiError> {
    match state
        .store
        .assign_number_by_id(org, assistant, number_id)
        .await?
    {
        NumberAssignment::Assigned(row) => Ok(row),
        NumberAssignment::NotFound => Err(ApiError::NotFound(format!(
            "no phone number {number_id} in your organisation"
        ))),
        NumberAssignment::HeldByOtherAssistant(other) => Err(ApiError::Conflict(format!(
            "phone number {number_id} is assigned to assistant {other}; unassign it first"
        ))),
    }
}

/// Stop routing one of the organisation's numbers to the assistant.
#[utoipa::path(
    post,
    path = "/api/v1/assistants/{assistant_id}/phone-numbers/{phone_number_id}/unassign",
    tag = "phone-numbers",
    security(("bearer" = [])),
    params(
        ("assistant_id" = i64, Path, description = "Assistant id"),
        ("phone_number_id" = i64, Path, description = "Number id")
    ),
    responses(
        (status = 200, description = "Unassigned", body = ApiResponse),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 404, description = "No such assistant, or the number is not assigned to it", body = ErrorBody)
    )
)]
pub async fn unassign_by_id(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(path): ApiPath<AssistantNumberPath>,
) -> Result<Json<ApiResponse>, ApiError> {
    let assistant = load_assistant(&state, &auth, path.assistant_id).await?;
    if !state
        .store
        .unassign_number_by_id(auth.organization_id, assistant.id, path.phone_number_id)
        .await?
    {
        return Err(ApiError::NotFound(format!(
            "phone number {} is not assigned to assistant {}",
            path.phone_number_id, assistant.id
        )));
    }
    Ok(Json(ApiResponse::ok(
        format!(
            "phone number {} unassigned from assistant {}",
            path.phone_number_id, assistant.id
        ),
        None,
    )))
}

/// Route several of the organisation's numbers to the assistant. Each is tried on its own:
/// `success` is true only if all were assigned; `data.failed` says why the others were not.
#[utoipa::path(
    post,
    path = "/api/v1/assistants/{assistant_id}/phone-numbers/bulk-assign",
    tag = "phone-numbers",
    security(("bearer" = [])),
    params(("assistant_id" = i64, Path, description = "Assistant id")),
    request_body(content = Vec<i64>, description = "Number ids"),
    responses(
        (status = 200, description = "`data.assigned` and `data.failed` (`id`, `error`)", body = ApiResponse),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 404, description = "No such assistant in your organisation", body = ErrorBody),
        (status = 422, description = "Empty list, or more than 500 ids", body = ErrorBody)
    )
)]
pub async fn bulk_assign(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(path): ApiPath<AssistantPath>,
    ApiJson(ids): ApiJson<Vec<i64>>,
) -> Result<Json<ApiResponse>, ApiError> {
    if ids.is_empty() || ids.len() > MAX_BULK {
        return Err(ApiError::invalid(
            "phone_number_ids",
            format!("must hold 1 to {MAX_BULK} number ids"),
        ));
    }
    let assistant = load_assistant(&state, &auth, path.assistant_id).await?;
    let mut assigned = Vec::new();
    let mut failed = Vec::new();
    for id in ids {
        if assigned.contains(&id) {
            continue;
        }
        match assign_one(&state, auth.organization_id, assistant.id, id).await {
            Ok(_) => assigned.push(id),
            Err(e @ (ApiError::NotFound(_) | ApiError::Conflict(_))) => {
                failed.push(json!({"id": id, "error": e.to_string()}));
            }
            Err(e) => return Err(e),
        }
    }
    let all = failed.is_empty();
    let mut response = ApiResponse::ok(
        format!(
            "{} of {} phone numbers assigned to assistant {}",
            assigned.len(),
            assigned.len() + failed.len(),
            assistant.id
        ),
        Some(json!({"assigned": assigned, "failed": failed})),
    );
    response.success = all;
    Ok(Json(response))
}
