//! The Organisation page (`/console/org`): the organisation's API keys (list by prefix, name,
//! role, creation and last use; create — the key is shown once —; revoke), its provider keys
//! (set, replace, clear) and its Twilio credentials (set, replace, clear). Forms that revoke or
//! clear carry a `data-confirm` question that `app.js` asks before sending them.
//!
//! Every read and change goes through the API's handlers (`routes::api_keys`,
//! `routes::organization`) with the session's key, so the roles are the API's: an admin key
//! manages keys and writes credentials; a member key is refused the key list (as
//! `GET /api/v1/api-keys` refuses it) and sees the provider keys and Twilio credentials
//! read-only. Secrets are write-only: the page only ever shows them masked, and a new API key
//! appears once, in the answer to the form that created it (`Cache-Control: no-store`, like
//! every console page).

use axum::body::to_bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::auth::{AdminAuth, Auth};
use crate::console::error::ConsoleError;
use crate::console::layout::{self, Nav, csrf_field};
use crate::console::session::ConsoleUser;
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::routes::api_keys::{ApiKeyView, CreateKeyRequest, create_key, list_keys, revoke_key};
use crate::routes::organization::{
    TelephonyRequest, delete_telephony, get_provider_keys, get_telephony, put_provider_keys,
    put_telephony,
};
use crate::state::AppState;

/// Path of the Organisation page.
pub const PATH: &str = "/console/org";
/// Largest body read back from the API's create-key answer, bytes.
const CREATED_KEY_MAX_BYTES: usize = 64 * 1024;

/// The Organisation page's routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(PATH, get(org_page))
        .route("/console/org/keys", post(create))
        .route("/console/org/keys/{key_id}/revoke", post(revoke))
        .route("/console/org/provider-keys", post(provider_key))
        .route("/console/org/telephony", post(telephony))
        .route("/console/org/telephony/clear", post(clear_telephony))
}

/// The session's key as an API admin, or the API's own refusal for a member key.
fn admin_auth(user: &ConsoleUser) -> Result<AdminAuth, ApiError> {
    if user.is_admin() {
        Ok(AdminAuth(*user.auth()))
    } else {
        Err(ApiError::Forbidden(
            "this needs an admin API key; this key's role is member".into(),
        ))
    }
}

/// The API's answer as a message to show on the page, or a page error.
fn message_of(err: ApiError) -> Result<String, ConsoleError> {
    match err {
        ApiError::Validation(list) => Ok(list
            .iter()
            .map(|e| format!("{}: {}", e.field, e.rule))
            .collect::<Vec<_>>()
            .join("; ")),
        ApiError::Forbidden(m)
        | ApiError::NotFound(m)
        | ApiError::Conflict(m)
        | ApiError::BadRequest(m)
        | ApiError::BadGateway(m) => Ok(m),
        ApiError::RateLimited { retry_after_s } => Err(ConsoleError::RateLimited { retry_after_s }),
        other => Err(ConsoleError::internal(other)),
    }
}

/// What happened on the page's last form, shown above its sections.
#[derive(Debug, Default)]
struct Notice {
    /// A key just created: its name and the secret, shown this once.
    created: Option<(String, String)>,
    /// What the API refused, in words.
    error: Option<String>,
}

/// `GET /console/org`.
async fn org_page(
    State(state): State<AppState>,
    user: ConsoleUser,
) -> Result<Markup, ConsoleError> {
    render(&state, &user, Notice::default()).await
}

async fn render(
    state: &AppState,
    user: &ConsoleUser,
    notice: Notice,
) -> Result<Markup, ConsoleError> {
    let keys: Result<Vec<ApiKeyView>, String> = match admin_auth(user) {
        Ok(admin) => match list_keys(State(state.clone()), admin).await {
            Ok(list) => Ok(list.0.items),
            Err(err) => Err(message_of(err)?),
        },
        Err(err) => Err(message_of(err)?),
    };
    let auth = Auth(*user.auth());
    let provider_keys = get_provider_keys(State(state.clone()), auth.clone())
        .await
        .map_err(|e| ConsoleError::internal(e.to_string()))?
        .0;
    let telephony = get_telephony(State(state.clone()), auth)
        .await
        .map_err(|e| ConsoleError::internal(e.to_string()))?
        .0;
    let admin = user.is_admin();
    let body = html! {
        h1 { "Organisation" }
        @if let Some(error) = &notice.error {
            p.error #org-error role="alert" { (error) }
        }
        @if let Some((name, key)) = &notice.created {
            div.panel #created-key role="status" {
                p { "New key " strong { (name) } " — copy it now, it will not be shown again:" }
                p { code #new-key { (key) } }
            }
        }
        section.panel #api-keys {
            h2 { "API keys" }
            @match &keys {
                Err(refusal) => p.muted #keys-refused { (refusal) }
                Ok(keys) => {
                    table {
                        thead { tr {
                            th { "Prefix" } th { "Name" } th { "Role" } th { "Created" }
                            th { "Last used" } th { "Status" } th { "" }
                        } }
                        tbody {
                            @for k in keys {
                                tr data-key-id=(k.id) {
                                    td { code { (k.prefix) "…" } }
                                    td { (k.name.as_deref().unwrap_or("")) }
                                    td { (k.role) }
                                    td { (k.created_at) }
                                    td { (k.last_used_at.as_deref().unwrap_or("never")) }
                                    td {
                                        @if let Some(at) = &k.revoked_at { "revoked " (at) }
                                        @else if k.id == user.auth().api_key_id { "active (this session)" }
                                        @else { "active" }
                                    }
                                    td {
                                        @if k.active {
                                            form.inline method="post" action=(format!("/console/org/keys/{}/revoke", k.id))
                                                data-confirm=(format!("Revoke the key {}\u{2026}? Every request and console session using it fails at once.", k.prefix)) {
                                                (csrf_field(user))
                                                button.secondary type="submit" { "Revoke" }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                    form.inline #create-key method="post" action="/console/org/keys" {
                        (csrf_field(user))
                        label for="key-name" { "Name " }
                        input #key-name name="name" type="text" required maxlength="100";
                        " "
                        label for="key-role" { "Role " }
                        select #key-role name="role" {
                            option value="member" selected { "member" }
                            option value="admin" { "admin" }
                        }
                        " "
                        button type="submit" { "Create key" }
                    }
                }
            }
        }
        section.panel #provider-keys {
            h2 { "Provider keys" }
            p.muted { "Used by calls whose assistant has no key of its own. Write-only: shown masked." }
            @if provider_keys.is_empty() { p.muted { "None set." } }
            @else {
                table { tbody {
                    @for (name, value) in &provider_keys {
                        tr data-provider-key=(name) {
                            td { code { (name) } }
                            td { code { (shown(value)) } }
                            @if admin {
                                td {
                                    form.inline method="post" action="/console/org/provider-keys"
                                        data-confirm=(format!("Clear the provider key {name}? Calls whose assistant has no key of its own lose it.")) {
                                        (csrf_field(user))
                                        input type="hidden" name="name" value=(name);
                                        input type="hidden" name="action" value="clear";
                                        button.secondary type="submit" { "Clear" }
                                    }
                                }
                            }
                        }
                    }
                } }
            }
            @if admin {
                form.inline #set-provider-key method="post" action="/console/org/provider-keys" {
                    (csrf_field(user))
                    input type="hidden" name="action" value="set";
                    label for="provider-key-name" { "Name " }
                    input #provider-key-name name="name" type="text" required placeholder="deepgram_api_key";
                    " "
                    label for="provider-key-value" { "Key " }
                    input #provider-key-value name="value" type="password" autocomplete="off" required;
                    " "
                    button type="submit" { "Set or replace" }
                }
                p.muted { "A provider object (e.g. " code { "{\"api_key\": …, \"base_url\": …}" }
                    ") may be entered as JSON in the key field." }
            }
        }
        section.panel #telephony {
            h2 { "Twilio credentials" }
            dl.facts {
                dt { "Source" } dd { (telephony.source) }
                dt { "Account SID" } dd { (telephony.account_sid.as_deref().unwrap_or("—")) }
                dt { "Auth token" } dd { (telephony.auth_token.as_deref().unwrap_or("—")) }
            }
            @if admin {
                form.inline #set-telephony method="post" action="/console/org/telephony" {
                    (csrf_field(user))
                    label for="account_sid" { "Account SID " }
                    input #account_sid name="account_sid" type="text" required
                        value=(telephony.account_sid.as_deref().filter(|_| telephony.configured).unwrap_or(""));
                    " "
                    label for="auth_token" { "Auth token " }
                    input #auth_token name="auth_token" type="password" autocomplete="off"
                        placeholder=(if telephony.configured { "leave blank to keep" } else { "" });
                    " "
                    button type="submit" { "Verify with Twilio and save" }
                }
                @if telephony.configured {
                    form.inline #clear-telephony method="post" action="/console/org/telephony/clear"
                        data-confirm="Clear the organisation's Twilio credentials? Its webhooks are refused and its Twilio calls fail until new ones are set." {
                        (csrf_field(user))
                        button.secondary type="submit" { "Clear credentials" }
                    }
                }
            }
        }
    };
    Ok(layout::page(
        "Organisation",
        user,
        Nav::Organisation,
        &[],
        body,
    ))
}

/// A masked provider key as shown: the string itself, or an object as JSON.
fn shown(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

async fn page_with(
    state: &AppState,
    user: &ConsoleUser,
    status: StatusCode,
    notice: Notice,
) -> Result<Response, ConsoleError> {
    Ok((status, render(state, user, notice).await?).into_response())
}

async fn refused(
    state: &AppState,
    user: &ConsoleUser,
    err: ApiError,
) -> Result<Response, ConsoleError> {
    let status = err.status();
    let notice = Notice {
        error: Some(message_of(err)?),
        ..Notice::default()
    };
    page_with(state, user, status, notice).await
}

/// Form of "Create key".
#[derive(Debug, Deserialize)]
struct CreateForm {
    /// The key's name.
    #[serde(default)]
    name: String,
    /// `admin` or `member`.
    #[serde(default)]
    role: Option<String>,
}

/// `POST /console/org/keys`: the API's create; the page shows the new key once.
async fn create(
    State(state): State<AppState>,
    user: ConsoleUser,
    Form(form): Form<CreateForm>,
) -> Result<Response, ConsoleError> {
    let admin = match admin_auth(&user) {
        Ok(admin) => admin,
        Err(err) => return refused(&state, &user, err).await,
    };
    let request = CreateKeyRequest {
        name: form.name,
        role: form.role.filter(|r| !r.is_empty()),
    };
    let answer = match create_key(State(state.clone()), admin, ApiJson(request)).await {
        Ok(answer) => answer,
        Err(err) => return refused(&state, &user, err).await,
    };
    let bytes = to_bytes(answer.into_body(), CREATED_KEY_MAX_BYTES)
        .await
        .map_err(ConsoleError::internal)?;
    let created: Value = serde_json::from_slice(&bytes).map_err(ConsoleError::internal)?;
    let (Some(name), Some(key)) = (
        created.get("name").and_then(Value::as_str),
        created.get("key").and_then(Value::as_str),
    ) else {
        return Err(ConsoleError::internal(
            "create-key answer without name or key",
        ));
    };
    let notice = Notice {
        created: Some((name.to_owned(), key.to_owned())),
        error: None,
    };
    page_with(&state, &user, StatusCode::CREATED, notice).await
}

/// `POST /console/org/keys/{id}/revoke`: the API's revoke (the last admin key is refused).
async fn revoke(
    State(state): State<AppState>,
    user: ConsoleUser,
    Path(key_id): Path<i64>,
) -> Result<Response, ConsoleError> {
    let admin = match admin_auth(&user) {
        Ok(admin) => admin,
        Err(err) => return refused(&state, &user, err).await,
    };
    match revoke_key(State(state.clone()), admin, Path(key_id)).await {
        // The session's own key revoked: the session ends with it, so this goes to sign-in.
        Ok(_) => Ok(Redirect::to(PATH).into_response()),
        Err(err) => refused(&state, &user, err).await,
    }
}

/// Form of the provider-key buttons.
#[derive(Debug, Deserialize)]
struct ProviderKeyForm {
    /// `set` (add or replace) or `clear`.
    action: ProviderKeyAction,
    /// The key's name (`deepgram_api_key`, `azure`, …).
    name: String,
    /// The new key (for `set`): a string, or a provider object as JSON.
    #[serde(default)]
    value: String,
}

/// What a provider-key form does.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum ProviderKeyAction {
    /// Add the key or replace its value.
    Set,
    /// Remove the key.
    Clear,
}

/// `POST /console/org/provider-keys`: reads the masked keys, changes one, writes them back with
/// the API's replace (masked values keep the stored keys).
async fn provider_key(
    State(state): State<AppState>,
    user: ConsoleUser,
    Form(form): Form<ProviderKeyForm>,
) -> Result<Response, ConsoleError> {
    let admin = match admin_auth(&user) {
        Ok(admin) => admin,
        Err(err) => return refused(&state, &user, err).await,
    };
    let mut keys: Map<String, Value> =
        match get_provider_keys(State(state.clone()), Auth(*user.auth())).await {
            Ok(keys) => keys.0,
            Err(err) => return refused(&state, &user, err).await,
        };
    let name = form.name.trim().to_owned();
    if name.is_empty() {
        return refused(
            &state,
            &user,
            ApiError::invalid("name", "must not be empty"),
        )
        .await;
    }
    match form.action {
        ProviderKeyAction::Clear => {
            keys.remove(&name);
        }
        ProviderKeyAction::Set => {
            let value = form.value.trim();
            let value = if value.starts_with('{') {
                match serde_json::from_str::<Value>(value) {
                    Ok(v) => v,
                    Err(_) => {
                        let err = ApiError::invalid(name.as_str(), "is not a valid JSON object");
                        return refused(&state, &user, err).await;
                    }
                }
            } else {
                Value::String(value.to_owned())
            };
            keys.insert(name, value);
        }
    }
    match put_provider_keys(State(state.clone()), admin, ApiJson(keys)).await {
        Ok(_) => Ok(Redirect::to(PATH).into_response()),
        Err(err) => refused(&state, &user, err).await,
    }
}

/// Form of the Twilio credentials.
#[derive(Debug, Deserialize)]
struct TelephonyForm {
    /// `AC` + 32 hex digits.
    #[serde(default)]
    account_sid: String,
    /// The auth token; blank keeps the stored one.
    #[serde(default)]
    auth_token: String,
}

/// `POST /console/org/telephony`: the API's set (verified with Twilio first). A blank token is
/// sent as the stored token's masked form, which keeps it.
async fn telephony(
    State(state): State<AppState>,
    user: ConsoleUser,
    Form(form): Form<TelephonyForm>,
) -> Result<Response, ConsoleError> {
    let admin = match admin_auth(&user) {
        Ok(admin) => admin,
        Err(err) => return refused(&state, &user, err).await,
    };
    let mut token = form.auth_token.trim().to_owned();
    if token.is_empty() {
        let current = get_telephony(State(state.clone()), Auth(*user.auth()))
            .await
            .map_err(|e| ConsoleError::internal(e.to_string()))?;
        token = current.0.auth_token.unwrap_or_default();
    }
    let request = TelephonyRequest {
        account_sid: form.account_sid,
        auth_token: token,
    };
    match put_telephony(State(state.clone()), admin, ApiJson(request)).await {
        Ok(_) => Ok(Redirect::to(PATH).into_response()),
        Err(err) => refused(&state, &user, err).await,
    }
}

/// `POST /console/org/telephony/clear`: the API's clear (`DELETE /api/v1/organization/telephony`).
async fn clear_telephony(
    State(state): State<AppState>,
    user: ConsoleUser,
) -> Result<Response, ConsoleError> {
    let admin = match admin_auth(&user) {
        Ok(admin) => admin,
        Err(err) => return refused(&state, &user, err).await,
    };
    match delete_telephony(State(state.clone()), admin).await {
        Ok(_) => Ok(Redirect::to(PATH).into_response()),
        Err(err) => refused(&state, &user, err).await,
    }
}
