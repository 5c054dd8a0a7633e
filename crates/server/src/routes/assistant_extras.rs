//! The assistant operations Burki users have beyond create/read/update/delete:
//! `GET /api/v1/assistants/export` (CSV or JSON, by ids or by search and status),
//! `POST /api/v1/assistants/{id}/duplicate` (a copy without its phone numbers and without its
//! own provider keys) and `GET /api/v1/assistants/me/organization`.
//!
//! Literal segments (`export`, `me`) are routes of their own, so they win over
//! `{assistant_id}`. Everything is scoped by the caller's organisation.

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use switchboard_assistant::{AssistantResponse, parse_create, visit_stored_secrets};
use switchboard_store::{AssistantRow, ms_to_rfc3339};
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::auth::Auth;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiPath, ApiQuery};
use crate::routes::assistants::{AssistantPath, load_assistant, stored_config, to_response};
use crate::routes::call_reports::ExportFormat;
use crate::routes::csv::{CsvRow, attachment};
use crate::state::AppState;
use crate::tenant_urls;

/// Assistants read per store query while exporting.
const PAGE: i64 = 500;
/// Most ids one selection-mode export takes.
const MAX_EXPORT_IDS: usize = 1000;

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/assistants/export", get(export_assistants))
        .route("/api/v1/assistants/me/organization", get(my_organization))
        .route(
            "/api/v1/assistants/{assistant_id}/duplicate",
            post(duplicate_assistant),
        )
}

/// OpenAPI description of this module's paths.
#[derive(OpenApi)]
#[openapi(
    paths(export_assistants, duplicate_assistant, my_organization),
    components(schemas(OrganizationInfo))
)]
pub struct AssistantExtrasApi;

/// `active`, `inactive` or `all`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StatusFilter {
    /// Active assistants only.
    Active,
    /// Inactive assistants only.
    Inactive,
    /// Both (the default).
    #[default]
    All,
}

/// Query of `GET /api/v1/assistants/export`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportAssistantsParams {
    /// `csv` (default) or `json`.
    #[serde(default)]
    #[param(value_type = Option<String>)]
    pub format: Option<ExportFormat>,
    /// Comma-separated ids (selection mode: `search` and `status` are then ignored).
    #[serde(default)]
    pub assistant_ids: Option<String>,
    /// Only assistants whose name or description contains this text (case-insensitive).
    #[serde(default)]
    pub search: Option<String>,
    /// `active`, `inactive` or `all` (default).
    #[serde(default)]
    #[param(value_type = Option<String>)]
    pub status: Option<StatusFilter>,
}

fn parse_ids(list: &str) -> Result<Vec<i64>, ApiError> {
    let ids = list
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<i64>().map_err(|_| {
                ApiError::invalid(
                    "assistant_ids",
                    format!("`{s}` is not an id: give comma-separated integers"),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if ids.len() > MAX_EXPORT_IDS {
        return Err(ApiError::invalid(
            "assistant_ids",
            format!("at most {MAX_EXPORT_IDS} ids per export"),
        ));
    }
    Ok(ids)
}

const CSV_HEADER: &[&str] = &[
    "id",
    "name",
    "description",
    "is_active",
    "llm_provider",
    "llm_model",
    "stt_provider",
    "stt_model",
    "tts_provider",
    "tts_voice_id",
    "phone_numbers",
    "created_at",
    "updated_at",
];

/// Export the caller's assistants (secrets masked) as CSV or JSON.
#[utoipa::path(
    get,
    path = "/api/v1/assistants/export",
    tag = "assistants",
    security(("bearer" = [])),
    params(ExportAssistantsParams),
    responses(
        (status = 200, description = "The assistants as a file (text/csv or application/json)"),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 422, description = "Bad query parameter", body = ErrorBody)
    )
)]
pub async fn export_assistants(
    State(state): State<AppState>,
    auth: Auth,
    ApiQuery(params): ApiQuery<ExportAssistantsParams>,
) -> Result<Response, ApiError> {
    let org = auth.organization_id;
    let selection = params
        .assistant_ids
        .as_deref()
        .map(parse_ids)
        .transpose()?
        .filter(|ids| !ids.is_empty());
    let mut rows: Vec<AssistantRow> = Vec::new();
    match selection {
        Some(ids) => {
            for id in ids {
                // Ids of other organisations are skipped exactly like ids that do not exist.
                if let Some(row) = state.store.get_assistant(org, id).await? {
                    rows.push(row);
                }
            }
        }
        None => {
            let status = params.status.unwrap_or_default();
            let needle = params
                .search
                .as_deref()
                .map(|s| s.trim().to_lowercase())
                .filter(|s| !s.is_empty());
            let mut skip = 0;
            loop {
                let page = state
                    .store
                    .list_assistants(org, skip, PAGE, status == StatusFilter::Active)
                    .await?;
                let n = page.len() as i64;
                rows.extend(page.into_iter().filter(|r| {
                    (status != StatusFilter::Inactive || !r.is_active)
                        && needle.as_deref().is_none_or(|n| matches_search(r, n))
                }));
                if n < PAGE {
                    break;
                }
                skip += PAGE;
            }
        }
    }
    let mut stats = if rows.is_empty() {
        Default::default()
    } else {
        state.store.assistant_stats_all(org).await?
    };
    let numbers = state.store.list_org_numbers(org).await?;
    let list = rows
        .iter()
        .map(|row| to_response(row, stats.remove(&row.id).unwrap_or_default()))
        .collect::<Result<Vec<_>, _>>()?;
    let mut out = Vec::with_capacity(list.len() * 512 + 64);
    match params.format.unwrap_or_default() {
        ExportFormat::Json => {
            serde_json::to_writer(&mut out, &list)
                .map_err(|e| ApiError::Internal(format!("encoding assistants: {e}")))?;
            Ok(attachment(
                "application/json",
                "assistants.json",
                Body::from(out),
            ))
        }
        ExportFormat::Csv => {
            let mut row = CsvRow::new(&mut out);
            for h in CSV_HEADER {
                row.text(h);
            }
            row.end();
            for a in &list {
                let nums: Vec<&str> = numbers
                    .iter()
                    .filter(|n| n.assistant_id == Some(a.id))
                    .map(|n| n.number.as_str())
                    .collect();
                csv_row(a, &nums.join(" "), &mut out);
            }
            Ok(attachment(
                "text/csv; charset=utf-8",
                "assistants.csv",
                Body::from(out),
            ))
        }
    }
}

fn matches_search(row: &AssistantRow, needle: &str) -> bool {
    let description = row
        .config
        .get("description")
        .and_then(Value::as_str)
        .unwrap_or("");
    row.name.to_lowercase().contains(needle) || description.to_lowercase().contains(needle)
}

fn csv_row(a: &AssistantResponse, numbers: &str, out: &mut Vec<u8>) {
    let c = &a.config;
    let mut row = CsvRow::new(out);
    row.num(a.id);
    row.text(&c.name);
    row.text(c.description.as_deref().unwrap_or(""));
    row.text(if c.active() { "true" } else { "false" });
    row.text(c.llm_provider.as_deref().unwrap_or(""));
    row.text(c.llm_provider_config.model.as_deref().unwrap_or(""));
    row.text(c.stt_settings.provider.as_deref().unwrap_or("deepgram"));
    row.text(&c.stt_settings.model);
    row.text(&c.tts_settings.provider);
    row.text(&c.tts_settings.voice_id);
    row.text(numbers);
    row.text(&a.created_at.to_rfc3339());
    row.text(&a.updated_at.to_rfc3339());
    row.end();
}

/// Copy an assistant: the whole configuration under a new name, active like the original,
/// without its phone numbers or calls, and without the provider keys set on the assistant
/// itself (the copy uses the organisation's keys). Custom tools keep their headers: they are
/// the tools' configuration, and the copy stays in the same organisation.
#[utoipa::path(
    post,
    path = "/api/v1/assistants/{assistant_id}/duplicate",
    tag = "assistants",
    security(("bearer" = [])),
    params(("assistant_id" = i64, Path, description = "Assistant to copy")),
    responses(
        (status = 201, description = "The copy", body = AssistantResponse),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 404, description = "No such assistant in your organisation", body = ErrorBody)
    )
)]
pub async fn duplicate_assistant(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(path): ApiPath<AssistantPath>,
) -> Result<(StatusCode, Json<AssistantResponse>), ApiError> {
    let source = load_assistant(&state, &auth, path.assistant_id).await?;
    let config = stored_config(&source)?;
    let mut body = serde_json::to_value(&config).map_err(ApiError::internal)?;
    drop_provider_keys(&mut body);
    if let Some(map) = body.as_object_mut() {
        map.insert("name".into(), Value::String(copy_name(&config.name)));
    }
    let copy = parse_create(body)?;
    tenant_urls::check(&state.outbound, &copy)?;
    let stored = copy.to_stored_json().map_err(ApiError::internal)?;
    let row = state
        .store
        .create_assistant(
            auth.organization_id,
            auth.user_id,
            &copy.name,
            copy.active(),
            &stored,
        )
        .await?;
    tracing::info!(
        assistant_id = row.id,
        source_id = source.id,
        organization_id = row.organization_id,
        "assistant duplicated"
    );
    let stats = state
        .store
        .assistant_stats(row.organization_id, row.id)
        .await?;
    Ok((StatusCode::CREATED, Json(to_response(&row, stats)?)))
}

/// The copy's name: `<name> (copy)`, kept within the record's name limit.
fn copy_name(name: &str) -> String {
    const SUFFIX: &str = " (copy)";
    let max = switchboard_assistant::NAME_MAX_CHARS.saturating_sub(SUFFIX.chars().count());
    let head: String = name.chars().take(max).collect();
    format!("{head}{SUFFIX}")
}

/// Removes every provider key of a record's JSON (LLM, fallbacks, `api_keys`, STT/TTS
/// `provider_config`), keeping custom tools' secrets.
fn drop_provider_keys(record: &mut Value) {
    const DROP: &str = "\u{0}switchboard-drop\u{0}";
    visit_stored_secrets(record, &mut |path, value| {
        if !path.starts_with("tools_settings.") {
            *value = DROP.to_owned();
        }
    });
    fn prune(v: &mut Value) {
        match v {
            Value::Object(map) => {
                map.retain(|_, v| v.as_str() != Some(DROP));
                map.values_mut().for_each(prune);
            }
            Value::Array(items) => items.iter_mut().for_each(prune),
            _ => {}
        }
    }
    prune(record);
}

/// The caller's organisation.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrganizationInfo {
    /// Organisation id.
    pub id: i64,
    /// Its unique name.
    pub name: String,
    /// When it was created (RFC 3339).
    pub created_at: String,
    /// Last change (RFC 3339).
    pub updated_at: String,
    /// Its assistants.
    pub assistant_count: i64,
    /// Its phone numbers.
    pub phone_number_count: i64,
    /// Whether Twilio credentials are set for it.
    pub telephony_configured: bool,
    /// The user the calling API key acts as.
    pub user_id: i64,
}

/// Information about the caller's organisation.
#[utoipa::path(
    get,
    path = "/api/v1/assistants/me/organization",
    tag = "assistants",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The organisation", body = OrganizationInfo),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody)
    )
)]
pub async fn my_organization(
    State(state): State<AppState>,
    auth: Auth,
) -> Result<Json<OrganizationInfo>, ApiError> {
    let org = state
        .store
        .get_organization(auth.organization_id)
        .await?
        .ok_or_else(|| ApiError::NotFound("organization not found".into()))?;
    let assistants = state.store.count_assistants(org.id, false).await?;
    let numbers = state.store.list_org_numbers(org.id).await?.len() as i64;
    let telephony = state.store.get_org_telephony(org.id).await?.is_some();
    Ok(Json(OrganizationInfo {
        id: org.id,
        name: org.name,
        created_at: ms_to_rfc3339(org.created_at_ms),
        updated_at: ms_to_rfc3339(org.updated_at_ms),
        assistant_count: assistants,
        phone_number_count: numbers,
        telephony_configured: telephony,
        user_id: auth.user_id,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn provider_keys_are_dropped_and_tool_headers_kept() {
        let mut v = json!({
            "name": "a",
            "llm_provider_config": {"api_key": "sk-1", "model": "m"},
            "api_keys": {"deepgram_api_key": "dg"},
            "tts_settings": {"provider_config": {"api_key": "el", "base_url": "https://x"}},
            "tools_settings": {"custom_tools": [{"name": "t", "headers": {"Authorization": "Bearer z"}}]}
        });
        drop_provider_keys(&mut v);
        assert_eq!(v["llm_provider_config"], json!({"model": "m"}));
        assert_eq!(v["api_keys"], json!({}));
        assert_eq!(
            v["tts_settings"]["provider_config"],
            json!({"base_url": "https://x"})
        );
        assert_eq!(
            v["tools_settings"]["custom_tools"][0]["headers"]["Authorization"],
            "Bearer z"
        );
    }

    #[test]
    fn ids_parse_and_copy_names_fit() {
        assert_eq!(parse_ids("1, 2,,3").unwrap(), vec![1, 2, 3]);
        assert!(parse_ids("1,x").is_err());
        let long = "n".repeat(switchboard_assistant::NAME_MAX_CHARS);
        assert_eq!(
            copy_name(&long).chars().count(),
            switchboard_assistant::NAME_MAX_CHARS
        );
        assert_eq!(copy_name("Front desk"), "Front desk (copy)");
    }
}
