//! `/api/v1/organization/…`: the caller's organisation's Twilio credentials and provider keys.
//!
//! Both hold secrets, so both are write-only in effect: a read shows the Twilio account SID and
//! masked values (`abc…wxyz`), never a token or key in clear. A masked value sent back in a
//! `PUT` keeps the stored secret, so a client can round-trip what it read.
//!
//! The Twilio credentials sign the organisation's webhooks (`X-Twilio-Signature`) and
//! authenticate its REST calls (hang-up, transfer, SMS, outbound calls), so they are stored only
//! after Twilio accepted them ([`crate::twilio_account`]). Without them, organisation `default`
//! uses `TWILIO_ACCOUNT_SID` / `TWILIO_AUTH_TOKEN`.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use switchboard_assistant::{is_masked, mask};
use switchboard_telephony::rest::Credentials;
use utoipa::{OpenApi, ToSchema};

use crate::auth::Auth;
use crate::error::{ApiError, ErrorBody};
use crate::extract::ApiJson;
use crate::state::AppState;

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/organization/telephony",
            get(get_telephony).put(put_telephony),
        )
        .route(
            "/api/v1/organization/provider-keys",
            get(get_provider_keys).put(put_provider_keys),
        )
}

/// OpenAPI description of this module's paths.
#[derive(OpenApi)]
#[openapi(
    paths(get_telephony, put_telephony, get_provider_keys, put_provider_keys),
    components(schemas(TelephonyRequest, TelephonyResponse)),
    tags((name = "organization", description = "Organisation credentials (write-only secrets)"))
)]
pub struct OrganizationApi;

/// Body of `PUT /api/v1/organization/telephony`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TelephonyRequest {
    /// Twilio account SID: `AC` followed by 32 hex digits.
    pub account_sid: String,
    /// Twilio auth token (write-only); its masked form keeps the stored token.
    pub auth_token: String,
}

/// The organisation's Twilio credentials as the API shows them.
#[derive(Debug, Serialize, ToSchema)]
pub struct TelephonyResponse {
    /// Whether the organisation has credentials of its own.
    pub configured: bool,
    /// Twilio account SID, when configured.
    pub account_sid: Option<String>,
    /// The auth token, masked (`abc…wxyz`), when configured.
    pub auth_token: Option<String>,
    /// Where the credentials in use come from: `organization`, `environment` (organisation
    /// `default` falling back to `TWILIO_ACCOUNT_SID`/`TWILIO_AUTH_TOKEN`) or `none`.
    pub source: String,
}

fn is_account_sid(s: &str) -> bool {
    s.len() == 34 && s.starts_with("AC") && s[2..].bytes().all(|b| b.is_ascii_hexdigit())
}

async fn telephony_response(state: &AppState, org: i64) -> Result<TelephonyResponse, ApiError> {
    let own = state.store.get_org_telephony(org).await?;
    if let Some(t) = own {
        return Ok(TelephonyResponse {
            configured: true,
            account_sid: Some(t.account_sid.clone()),
            auth_token: Some(mask(&t.auth_token)),
            source: "organization".to_owned(),
        });
    }
    let env = &state.settings.twilio;
    let from_env = state.default_org_id().await == Some(org)
        && env.account_sid.as_deref().is_some_and(|s| !s.is_empty())
        && env.auth_token.as_deref().is_some_and(|s| !s.is_empty());
    Ok(TelephonyResponse {
        configured: false,
        account_sid: if from_env {
            env.account_sid.clone()
        } else {
            None
        },
        auth_token: None,
        source: if from_env { "environment" } else { "none" }.to_owned(),
    })
}

/// The organisation's Twilio credentials (token masked).
#[utoipa::path(
    get,
    path = "/api/v1/organization/telephony",
    tag = "organization",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Credentials, token masked", body = TelephonyResponse),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody)
    )
)]
pub async fn get_telephony(
    State(state): State<AppState>,
    auth: Auth,
) -> Result<Json<TelephonyResponse>, ApiError> {
    Ok(Json(
        telephony_response(&state, auth.organization_id).await?,
    ))
}

/// Set the organisation's Twilio credentials (replacing any), once Twilio has accepted them: a
/// token nobody verified would let an organisation sign webhooks for numbers it does not own.
#[utoipa::path(
    put,
    path = "/api/v1/organization/telephony",
    tag = "organization",
    security(("bearer" = [])),
    request_body = TelephonyRequest,
    responses(
        (status = 200, description = "Verified with Twilio and stored; token masked", body = TelephonyResponse),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 422, description = "Invalid SID, empty token, or Twilio rejected the credentials; nothing stored", body = ErrorBody),
        (status = 502, description = "Twilio failed or could not be reached; nothing stored", body = ErrorBody)
    )
)]
pub async fn put_telephony(
    State(state): State<AppState>,
    auth: Auth,
    ApiJson(body): ApiJson<TelephonyRequest>,
) -> Result<Json<TelephonyResponse>, ApiError> {
    let org = auth.organization_id;
    let sid = body.account_sid.trim();
    if !is_account_sid(sid) {
        return Err(ApiError::invalid(
            "account_sid",
            "must be AC followed by 32 hex digits",
        ));
    }
    let token = if is_masked(&body.auth_token) {
        match state.store.get_org_telephony(org).await? {
            Some(stored) if mask(&stored.auth_token) == body.auth_token => stored.auth_token,
            _ => {
                return Err(ApiError::invalid(
                    "auth_token",
                    "is a masked value that does not match the stored token",
                ));
            }
        }
    } else {
        body.auth_token.trim().to_owned()
    };
    if token.is_empty() {
        return Err(ApiError::invalid("auth_token", "must not be empty"));
    }
    crate::twilio_account::verify_credentials(&state, Credentials::new(sid, token.as_str()))
        .await?;
    state.store.set_org_telephony(org, sid, &token).await?;
    tracing::info!(
        organization_id = org,
        "Twilio credentials verified and updated"
    );
    Ok(Json(telephony_response(&state, org).await?))
}

/// Masks every string in `v` (nested objects and arrays included).
fn mask_value(v: &Value) -> Value {
    match v {
        Value::String(s) => Value::String(mask(s)),
        Value::Array(a) => Value::Array(a.iter().map(mask_value).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, v)| {
                    // Inside a provider's config object only secret-named fields are masked.
                    let masked = match v {
                        Value::String(s) if switchboard_assistant::is_secret_key(k) => {
                            Value::String(mask(s))
                        }
                        Value::String(_) | Value::Number(_) | Value::Bool(_) | Value::Null => {
                            v.clone()
                        }
                        other => mask_nested(other),
                    };
                    (k.clone(), masked)
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

fn mask_nested(v: &Value) -> Value {
    match v {
        Value::Object(_) => mask_value(v),
        Value::Array(a) => Value::Array(a.iter().map(mask_nested).collect()),
        other => other.clone(),
    }
}

fn masked_keys(keys: &Map<String, Value>) -> Map<String, Value> {
    keys.iter()
        .map(|(k, v)| (k.clone(), mask_value(v)))
        .collect()
}

/// Replaces masked strings in `new` by the stored value they mask (same place in `stored`).
fn keep_masked(new: &mut Value, stored: Option<&Value>) {
    match new {
        Value::String(s) if is_masked(s) => {
            if let Some(Value::String(old)) = stored
                && mask(old) == *s
            {
                *s = old.clone();
            }
        }
        Value::Object(o) => {
            for (k, v) in o.iter_mut() {
                keep_masked(v, stored.and_then(|s| s.get(k)));
            }
        }
        Value::Array(a) => {
            for (i, v) in a.iter_mut().enumerate() {
                keep_masked(v, stored.and_then(|s| s.get(i)));
            }
        }
        _ => {}
    }
}

/// The organisation's provider keys (`openai_api_key`, `deepgram_api_key`, … or provider config
/// objects), masked.
#[utoipa::path(
    get,
    path = "/api/v1/organization/provider-keys",
    tag = "organization",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Provider keys, masked", body = Object),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody)
    )
)]
pub async fn get_provider_keys(
    State(state): State<AppState>,
    auth: Auth,
) -> Result<Json<Map<String, Value>>, ApiError> {
    let keys = state
        .store
        .get_org_provider_keys(auth.organization_id)
        .await?;
    Ok(Json(masked_keys(&keys)))
}

/// Replace the organisation's provider keys. Used by calls whose assistant has no key of its
/// own; masked values keep the stored key.
#[utoipa::path(
    put,
    path = "/api/v1/organization/provider-keys",
    tag = "organization",
    security(("bearer" = [])),
    request_body = Object,
    responses(
        (status = 200, description = "Stored; keys masked", body = Object),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 422, description = "A value is neither a string nor an object", body = ErrorBody)
    )
)]
pub async fn put_provider_keys(
    State(state): State<AppState>,
    auth: Auth,
    ApiJson(body): ApiJson<Map<String, Value>>,
) -> Result<Json<Map<String, Value>>, ApiError> {
    let org = auth.organization_id;
    for (k, v) in &body {
        if k.trim().is_empty() {
            return Err(ApiError::invalid("body", "key names must not be empty"));
        }
        if !(v.is_string() || v.is_object()) {
            return Err(ApiError::invalid(
                k.clone(),
                "must be a key (string) or a provider config (object)",
            ));
        }
    }
    let stored = Value::Object(state.store.get_org_provider_keys(org).await?);
    let mut new = Value::Object(body);
    keep_masked(&mut new, Some(&stored));
    let Value::Object(new) = new else {
        return Err(ApiError::internal("provider keys lost their shape"));
    };
    state.store.set_org_provider_keys(org, &new).await?;
    tracing::info!(
        organization_id = org,
        count = new.len(),
        "provider keys updated"
    );
    Ok(Json(masked_keys(&new)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn masks_strings_and_secret_fields_only() {
        let keys = json!({
            "openai_api_key": "sk-abcdefghijklmnop",
            "azure": {"api_key": "abcdefghijklmnopq", "endpoint": "https://x.example"}
        });
        let Value::Object(m) = keys else { panic!() };
        let masked = Value::Object(masked_keys(&m));
        assert_eq!(masked["openai_api_key"], "sk-…mnop");
        assert_eq!(masked["azure"]["api_key"], "abc…nopq");
        assert_eq!(masked["azure"]["endpoint"], "https://x.example");
    }

    #[test]
    fn masked_values_keep_the_stored_secret() {
        let stored =
            json!({"openai_api_key": "sk-abcdefghijklmnop", "x": {"token": "0123456789abc"}});
        let mut new = json!({"openai_api_key": "sk-…mnop", "x": {"token": "012…9abc"}, "y": "new-key-1234567"});
        keep_masked(&mut new, Some(&stored));
        assert_eq!(new["openai_api_key"], "sk-abcdefghijklmnop");
        assert_eq!(new["x"]["token"], "0123456789abc");
        assert_eq!(new["y"], "new-key-1234567");
    }

    #[test]
    fn account_sid_shape() {
        assert!(is_account_sid("AC0123456789abcdef0123456789abcdef"));
        assert!(!is_account_sid("AC123"));
        assert!(!is_account_sid("XX0123456789abcdef0123456789abcdef"));
    }
}
