//! `/api/v1/organization/…`: the caller's organisation's Twilio credentials (read, set, clear)
//! and provider keys.
//!
//! Both hold secrets, so both are write-only in effect: a read shows the Twilio account SID and
//! masked values (`abc…wxyz`), never a token or key in clear. A masked value sent back in a
//! `PUT` keeps the stored secret, so a client can round-trip what it read. Both are stored
//! encrypted (the store seals them).
//!
//! Provider keys are `<provider>_api_key` → key (sent only to the provider's public host) or
//! `<provider>` → `{"api_key", "base_url"}` (sent only to that base URL's host). A masked key
//! sent back with another `base_url` is refused: the key must be sent again.
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
use switchboard_assistant::{
    RESEND_RULE, host_of_url, is_masked, mask, visit_provider_key_secrets,
};
use switchboard_telephony::rest::Credentials;
use utoipa::{OpenApi, ToSchema};

use crate::auth::{AdminAuth, Auth};
use crate::error::{ApiError, ErrorBody};
use crate::extract::ApiJson;
use crate::state::AppState;

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/organization/telephony",
            get(get_telephony)
                .put(put_telephony)
                .delete(delete_telephony),
        )
        .route(
            "/api/v1/organization/provider-keys",
            get(get_provider_keys).put(put_provider_keys),
        )
}

/// OpenAPI description of this module's paths.
#[derive(OpenApi)]
#[openapi(
    paths(
        get_telephony,
        put_telephony,
        delete_telephony,
        get_provider_keys,
        put_provider_keys
    ),
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
        (status = 403, description = "The key is not an admin key", body = ErrorBody),
        (status = 422, description = "Invalid SID, empty token, or Twilio rejected the credentials; nothing stored", body = ErrorBody),
        (status = 502, description = "Twilio failed or could not be reached; nothing stored", body = ErrorBody)
    )
)]
pub async fn put_telephony(
    State(state): State<AppState>,
    auth: AdminAuth,
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

/// Clear the organisation's Twilio credentials: its webhooks are no longer accepted and its
/// REST calls (hang-up, transfer, SMS, outbound calls) fail until new ones are set, except that
/// organisation `default` falls back to `TWILIO_ACCOUNT_SID` / `TWILIO_AUTH_TOKEN`. Clearing
/// credentials that were never set is not an error. Answers what is in use afterwards.
#[utoipa::path(
    delete,
    path = "/api/v1/organization/telephony",
    tag = "organization",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Cleared; the credentials in use now (`configured: false`)", body = TelephonyResponse),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 403, description = "The key is not an admin key", body = ErrorBody)
    )
)]
pub async fn delete_telephony(
    State(state): State<AppState>,
    auth: AdminAuth,
) -> Result<Json<TelephonyResponse>, ApiError> {
    let org = auth.organization_id;
    state.store.clear_org_telephony(org).await?;
    tracing::info!(organization_id = org, "Twilio credentials cleared");
    Ok(Json(telephony_response(&state, org).await?))
}

/// The provider keys with every secret masked: each string member (a key) and, in a provider
/// object, its `api_key` and any other secret the schema rules find (see
/// `switchboard_assistant::visit_provider_key_secrets`).
fn masked_keys(keys: &Map<String, Value>) -> Map<String, Value> {
    let mut masked = keys.clone();
    visit_provider_key_secrets(&mut masked, &mut |_, value| *value = mask(value));
    masked
}

/// Members a provider object may have.
const PROVIDER_OBJECT_FIELDS: [&str; 2] = ["api_key", "base_url"];

/// Checks the shape of a provider-keys body: each member is a key (string) or a provider object
/// `{"api_key": string, "base_url": http(s)/ws(s) URL (optional)}`.
fn check_provider_keys(body: &Map<String, Value>) -> Result<(), ApiError> {
    for (name, value) in body {
        if name.trim().is_empty() {
            return Err(ApiError::invalid("body", "key names must not be empty"));
        }
        match value {
            Value::String(_) => {}
            Value::Object(entry) => {
                for (field, inner) in entry {
                    if !PROVIDER_OBJECT_FIELDS.contains(&field.as_str()) {
                        return Err(ApiError::invalid(
                            format!("{name}.{field}"),
                            "unknown field; expected `api_key` or `base_url`",
                        ));
                    }
                    if !inner.is_string() {
                        return Err(ApiError::invalid(
                            format!("{name}.{field}"),
                            "must be a string",
                        ));
                    }
                }
                if !entry.contains_key("api_key") {
                    return Err(ApiError::invalid(format!("{name}.api_key"), "is required"));
                }
                if let Some(url) = entry.get("base_url").and_then(Value::as_str) {
                    let ok = url::Url::parse(url).ok().filter(|u| {
                        matches!(u.scheme(), "http" | "https" | "ws" | "wss")
                            && u.host_str().is_some_and(|h| !h.is_empty())
                    });
                    if ok.is_none() {
                        return Err(ApiError::invalid(
                            format!("{name}.base_url"),
                            "must be an absolute URL with scheme http, https, ws or wss",
                        ));
                    }
                }
            }
            _ => {
                return Err(ApiError::invalid(
                    name.clone(),
                    "must be a key (string) or a provider config (object)",
                ));
            }
        }
    }
    Ok(())
}

/// Replaces each masked secret of `new` by the stored secret it masks (same place in `stored`),
/// and refuses a kept key whose provider object points at another `base_url` than the one it
/// was stored with: a key is only sent where it was set for, so it must be sent again with a
/// new base URL.
fn keep_masked(new: &mut Map<String, Value>, stored: &Map<String, Value>) -> Result<(), ApiError> {
    let mut stored_secrets = std::collections::BTreeMap::new();
    let mut stored_copy = stored.clone();
    visit_provider_key_secrets(&mut stored_copy, &mut |path, value| {
        stored_secrets.insert(path.to_owned(), value.clone());
    });
    let mut kept = Vec::new();
    visit_provider_key_secrets(new, &mut |path, value| {
        if let Some(old) = stored_secrets.get(path)
            && is_masked(value)
            && mask(old) == *value
        {
            value.clone_from(old);
            kept.push(path.to_owned());
        }
    });
    for path in kept {
        let Some((name, _)) = path.split_once('.') else {
            continue;
        };
        let base = |keys: &Map<String, Value>| {
            keys.get(name)
                .and_then(|e| e.get("base_url"))
                .and_then(Value::as_str)
                .and_then(host_of_url)
        };
        if base(new) != base(stored) {
            return Err(ApiError::invalid(path, RESEND_RULE));
        }
    }
    Ok(())
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
        (status = 403, description = "The key is not an admin key", body = ErrorBody),
        (status = 422, description = "A value is neither a key nor a provider object `{api_key, base_url}`, a masked key matches nothing stored, or a kept key would follow a new base_url", body = ErrorBody)
    )
)]
pub async fn put_provider_keys(
    State(state): State<AppState>,
    auth: AdminAuth,
    ApiJson(body): ApiJson<Map<String, Value>>,
) -> Result<Json<Map<String, Value>>, ApiError> {
    let org = auth.organization_id;
    check_provider_keys(&body)?;
    let stored = state.store.get_org_provider_keys(org).await?;
    let mut new = body;
    keep_masked(&mut new, &stored)?;
    let leftover = {
        let mut copy = new.clone();
        let mut found = None;
        visit_provider_key_secrets(&mut copy, &mut |path, value| {
            if found.is_none() && is_masked(value) {
                found = Some(path.to_owned());
            }
        });
        found
    };
    if let Some(path) = leftover {
        return Err(ApiError::invalid(
            path,
            "is a masked value that does not match the stored key; send the real value",
        ));
    }
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
            "azure": {"api_key": "abcdefghijklmnopq", "base_url": "https://x.example"}
        });
        let Value::Object(m) = keys else { panic!() };
        let masked = Value::Object(masked_keys(&m));
        assert_eq!(masked["openai_api_key"], "sk-…mnop");
        assert_eq!(masked["azure"]["api_key"], "abc…nopq");
        assert_eq!(masked["azure"]["base_url"], "https://x.example");
    }

    fn map(v: Value) -> Map<String, Value> {
        let Value::Object(m) = v else {
            panic!("object")
        };
        m
    }

    #[test]
    fn masked_values_keep_the_stored_secret() {
        let stored = map(
            json!({"openai_api_key": "sk-abcdefghijklmnop", "x": {"api_key": "0123456789abc"}}),
        );
        let mut new = map(
            json!({"openai_api_key": "sk-…mnop", "x": {"api_key": "012…9abc"}, "y": "new-key-1234567"}),
        );
        keep_masked(&mut new, &stored).expect("kept");
        assert_eq!(new["openai_api_key"], "sk-abcdefghijklmnop");
        assert_eq!(new["x"]["api_key"], "0123456789abc");
        assert_eq!(new["y"], "new-key-1234567");
    }

    #[test]
    fn a_kept_key_cannot_follow_a_new_base_url() {
        let stored = map(
            json!({"deepgram": {"api_key": "dg-0123456789abc", "base_url": "wss://dg.example.com"}}),
        );
        let mut moved = map(
            json!({"deepgram": {"api_key": "dg-…9abc", "base_url": "wss://attacker.example.net"}}),
        );
        let err = keep_masked(&mut moved, &stored).expect_err("refused");
        assert!(err.to_string().contains("validation"), "{err}");
        let mut resent = map(
            json!({"deepgram": {"api_key": "dg-new-0123456789", "base_url": "wss://attacker.example.net"}}),
        );
        keep_masked(&mut resent, &stored).expect("a key sent again may go anywhere");
    }

    #[test]
    fn provider_objects_are_checked() {
        assert!(check_provider_keys(&map(json!({"a": "k", "b": {"api_key": "k"}}))).is_ok());
        assert!(
            check_provider_keys(&map(json!({"b": {"api_key": "k", "endpoint": "x"}}))).is_err()
        );
        assert!(
            check_provider_keys(&map(json!({"b": {"base_url": "https://x.example"}}))).is_err()
        );
        assert!(
            check_provider_keys(&map(json!({"b": {"api_key": "k", "base_url": "ftp://x"}})))
                .is_err()
        );
        assert!(check_provider_keys(&map(json!({"a": 42}))).is_err());
    }

    #[test]
    fn account_sid_shape() {
        assert!(is_account_sid("AC0123456789abcdef0123456789abcdef"));
        assert!(!is_account_sid("AC123"));
        assert!(!is_account_sid("XX0123456789abcdef0123456789abcdef"));
    }
}
