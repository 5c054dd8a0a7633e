//! `/api/v1/api-keys`: an organisation's API keys, managed by its admin keys.
//!
//! A key is shown once, in the answer that creates (or rotates) it; the store keeps only its
//! SHA-256 and its first characters (`prefix`) so that operators can tell keys apart. Keys are
//! checked in the database on every request, so a revoked key fails at once on every instance.
//!
//! Roles (per key): `admin` keys may do everything, including these endpoints and writing the
//! organisation's Twilio credentials and provider keys; `member` keys may use assistants,
//! numbers, calls and reports. Keys from the CLI (`switchboard keys create`), the bootstrap key
//! and keys made before roles existed are admins; a key created here is a member unless asked
//! otherwise. The last active admin key cannot be revoked here (409), so an organisation never
//! locks itself out; the CLI can still revoke it.

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde::{Deserialize, Serialize};
use switchboard_store::{ApiKeyInfo, KeyRevocation, KeyRole, ms_to_rfc3339, opt_ms_to_rfc3339};
use utoipa::{OpenApi, ToSchema};

use crate::auth::AdminAuth;
use crate::error::{ApiError, ErrorBody};
use crate::extract::ApiJson;
use crate::routes::ApiResponse;
use crate::state::AppState;

/// Longest key name accepted, in characters.
const MAX_NAME_CHARS: usize = 100;

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/api-keys", get(list_keys).post(create_key))
        .route("/api/v1/api-keys/{key_id}", delete(revoke_key))
        .route("/api/v1/api-keys/{key_id}/rotate", post(rotate_key))
}

/// OpenAPI description of this module's paths.
#[derive(OpenApi)]
#[openapi(
    paths(list_keys, create_key, revoke_key, rotate_key),
    components(schemas(CreateKeyRequest, ApiKeyView, ApiKeyList, CreatedKey)),
    tags((name = "api-keys", description = "The organisation's API keys (admin keys only)"))
)]
pub struct ApiKeysApi;

/// Body of `POST /api/v1/api-keys`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKeyRequest {
    /// A name to tell the key apart (1-100 characters, no control characters).
    pub name: String,
    /// `admin` or `member` (default `member`).
    #[serde(default)]
    pub role: Option<String>,
}

/// A key as listed: never its secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyView {
    /// Key id (used to revoke or rotate it).
    pub id: i64,
    /// The name given at creation.
    pub name: Option<String>,
    /// The first characters of the key, e.g. `sb_AbCdE`.
    pub prefix: String,
    /// `admin` or `member`.
    pub role: String,
    /// Whether the key still authenticates.
    pub active: bool,
    /// Creation time (RFC 3339).
    pub created_at: String,
    /// Last use (RFC 3339, updated at most once a minute), if ever used.
    pub last_used_at: Option<String>,
    /// Revocation time (RFC 3339), if revoked.
    pub revoked_at: Option<String>,
}

impl From<&ApiKeyInfo> for ApiKeyView {
    fn from(k: &ApiKeyInfo) -> Self {
        ApiKeyView {
            id: k.id,
            name: k.label.clone(),
            prefix: k.prefix.clone(),
            role: k.role.as_str().to_owned(),
            active: k.revoked_at_ms.is_none(),
            created_at: ms_to_rfc3339(k.created_at_ms),
            last_used_at: opt_ms_to_rfc3339(k.last_used_at_ms),
            revoked_at: opt_ms_to_rfc3339(k.revoked_at_ms),
        }
    }
}

/// The organisation's keys, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyList {
    /// Every key, revoked ones included (for the audit trail).
    pub items: Vec<ApiKeyView>,
    /// Number of items.
    pub total: usize,
}

/// A key just created or rotated: the only answer that carries its secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedKey {
    /// The key as it will be listed.
    #[serde(flatten)]
    pub info: ApiKeyView,
    /// The key itself; shown this once, never again.
    pub key: String,
}

/// The organisation's API keys (never their secrets).
#[utoipa::path(
    get,
    path = "/api/v1/api-keys",
    tag = "api-keys",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Every key of the organisation", body = ApiKeyList),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 403, description = "The key is not an admin key", body = ErrorBody)
    )
)]
pub async fn list_keys(
    State(state): State<AppState>,
    auth: AdminAuth,
) -> Result<Json<ApiKeyList>, ApiError> {
    let keys = state.store.list_api_keys(auth.organization_id).await?;
    let items: Vec<ApiKeyView> = keys.iter().map(ApiKeyView::from).collect();
    Ok(Json(ApiKeyList {
        total: items.len(),
        items,
    }))
}

/// Create a key; the answer is the only time its secret is shown.
#[utoipa::path(
    post,
    path = "/api/v1/api-keys",
    tag = "api-keys",
    security(("bearer" = [])),
    request_body = CreateKeyRequest,
    responses(
        (status = 201, description = "Created; `key` is shown this once", body = CreatedKey),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 403, description = "The key is not an admin key", body = ErrorBody),
        (status = 422, description = "Bad name or role", body = ErrorBody)
    )
)]
pub async fn create_key(
    State(state): State<AppState>,
    auth: AdminAuth,
    ApiJson(body): ApiJson<CreateKeyRequest>,
) -> Result<Response, ApiError> {
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Err(ApiError::invalid(
            "name",
            format!("must be 1 to {MAX_NAME_CHARS} characters"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "name",
            "must not contain control characters",
        ));
    }
    let role = match body.role.as_deref() {
        None => KeyRole::Member,
        Some(r) => KeyRole::parse(r)
            .ok_or_else(|| ApiError::invalid("role", "must be `admin` or `member`"))?,
    };
    let (info, key) = state
        .store
        .create_api_key_with_role(auth.organization_id, Some(name), role)
        .await?;
    tracing::info!(
        organization_id = auth.organization_id,
        api_key_id = info.id,
        by_key = auth.api_key_id,
        role = role.as_str(),
        "API key created"
    );
    Ok(created(&info, key))
}

/// Revoke a key: it fails at once on every instance.
#[utoipa::path(
    delete,
    path = "/api/v1/api-keys/{key_id}",
    tag = "api-keys",
    security(("bearer" = [])),
    params(("key_id" = i64, Path, description = "Key id")),
    responses(
        (status = 200, description = "Revoked", body = ApiResponse),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 403, description = "The key is not an admin key", body = ErrorBody),
        (status = 404, description = "No such active key in the organisation", body = ErrorBody),
        (status = 409, description = "The organisation's last active admin key", body = ErrorBody)
    )
)]
pub async fn revoke_key(
    State(state): State<AppState>,
    auth: AdminAuth,
    Path(key_id): Path<i64>,
) -> Result<Json<ApiResponse>, ApiError> {
    let org = auth.organization_id;
    match state
        .store
        .revoke_api_key_keeping_admin(org, key_id)
        .await?
    {
        KeyRevocation::Revoked => {
            tracing::info!(
                organization_id = org,
                api_key_id = key_id,
                by_key = auth.api_key_id,
                "API key revoked"
            );
            Ok(Json(ApiResponse::ok(
                format!("API key {key_id} revoked"),
                None,
            )))
        }
        KeyRevocation::NotFound => Err(ApiError::NotFound(format!("no active API key {key_id}"))),
        KeyRevocation::LastAdmin => Err(ApiError::Conflict(
            "this is the organisation's last active admin key; create another admin key first"
                .into(),
        )),
    }
}

/// Replace a key by a new one with the same name and role; the old one is revoked at once.
#[utoipa::path(
    post,
    path = "/api/v1/api-keys/{key_id}/rotate",
    tag = "api-keys",
    security(("bearer" = [])),
    params(("key_id" = i64, Path, description = "Key id")),
    responses(
        (status = 201, description = "The new key; `key` is shown this once", body = CreatedKey),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 403, description = "The key is not an admin key", body = ErrorBody),
        (status = 404, description = "No such active key in the organisation", body = ErrorBody)
    )
)]
pub async fn rotate_key(
    State(state): State<AppState>,
    auth: AdminAuth,
    Path(key_id): Path<i64>,
) -> Result<Response, ApiError> {
    let org = auth.organization_id;
    let Some((info, key)) = state.store.rotate_api_key(org, key_id).await? else {
        return Err(ApiError::NotFound(format!("no active API key {key_id}")));
    };
    tracing::info!(
        organization_id = org,
        old_key = key_id,
        api_key_id = info.id,
        by_key = auth.api_key_id,
        "API key rotated"
    );
    Ok(created(&info, key))
}

/// 201 with the new key; `Cache-Control: no-store` so no proxy or browser keeps the secret.
fn created(info: &ApiKeyInfo, key: String) -> Response {
    let mut response = (
        StatusCode::CREATED,
        Json(CreatedKey {
            info: ApiKeyView::from(info),
            key,
        }),
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
