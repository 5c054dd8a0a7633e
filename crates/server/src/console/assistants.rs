//! The Assistants pages (`/console/assistants`): the organisation's assistants; create,
//! duplicate, delete; edit every setting of the record; the assistant's phone numbers.
//!
//! The form's fields are derived from the record and its OpenAPI schema ([`fields`]). Every
//! change goes through the API's own handlers (`routes::assistants`, `routes::assistant_extras`,
//! `routes::number_list`), called with the session's key: the same parsing, validation, provider
//! checks, outbound-URL policy and organisation scoping as the JSON API. A validation error names
//! its field path and is shown at that field. Secrets are write-only: a secret input is always
//! empty (its masked value is the placeholder), and left blank it keeps the stored secret.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::Value;
use switchboard_assistant::{AssistantResponse, mask_secrets};

use crate::auth::Auth;
use crate::console::error::ConsoleError;
use crate::console::fields::{self, Field, FieldKind, field_for_error};
use crate::console::layout::{self, Nav, csrf_field};
use crate::console::session::ConsoleUser;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::routes::assistant_extras::duplicate_assistant;
use crate::routes::assistants::{
    AssistantPath, ListParams, create_assistant, delete_assistant, get_assistant, list_assistants,
    update_assistant,
};
use crate::routes::number_list::{
    AssistantNumberPath, assign_by_id, available_for_assistant, unassign_by_id,
};
use crate::routes::phone_numbers::list_phone_numbers;
use crate::state::AppState;

/// Path of the assistants list.
pub const PATH: &str = "/console/assistants";
/// Path of the new-assistant form.
pub const NEW_PATH: &str = "/console/assistants/new";
/// Most assistants the list shows (the API's largest page).
const LIST_LIMIT: i64 = crate::routes::assistants::MAX_LIMIT;

/// The Assistants pages' routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(PATH, get(list_page).post(create))
        .route(NEW_PATH, get(new_page))
        .route(
            "/console/assistants/{assistant_id}",
            get(edit_page).post(save),
        )
        .route(
            "/console/assistants/{assistant_id}/duplicate",
            post(duplicate),
        )
        .route("/console/assistants/{assistant_id}/delete", post(delete))
        .route(
            "/console/assistants/{assistant_id}/numbers/assign",
            post(assign_number),
        )
        .route(
            "/console/assistants/{assistant_id}/numbers/unassign",
            post(unassign_number),
        )
}

/// The API caller a console request acts as (the session's key, with its role).
fn api_auth(user: &ConsoleUser) -> Auth {
    Auth(*user.auth())
}

/// An API error on a page that has no form to show it at: mapped to the console's pages.
fn page_error(err: ApiError) -> ConsoleError {
    match err {
        ApiError::NotFound(m) => ConsoleError::NotFound(m),
        ApiError::Forbidden(m) => ConsoleError::Forbidden(m),
        ApiError::Validation(list) => ConsoleError::BadRequest(
            list.iter()
                .map(|e| format!("{}: {}", e.field, e.rule))
                .collect::<Vec<_>>()
                .join("; "),
        ),
        ApiError::BadRequest(m) | ApiError::Conflict(m) => ConsoleError::BadRequest(m),
        ApiError::RateLimited { retry_after_s } => ConsoleError::RateLimited { retry_after_s },
        other => ConsoleError::internal(other),
    }
}

fn assistant_url(id: i64) -> String {
    format!("{PATH}/{id}")
}

/// `GET /console/assistants`: the organisation's assistants.
async fn list_page(
    State(state): State<AppState>,
    user: ConsoleUser,
) -> Result<Markup, ConsoleError> {
    let params = ListParams {
        skip: Some(0),
        limit: Some(LIST_LIMIT),
        active_only: Some(false),
    };
    let list = list_assistants(State(state), api_auth(&user), ApiQuery(params))
        .await
        .map_err(page_error)?
        .0;
    let body = html! {
        h1 { "Assistants" }
        p { a #new-assistant href=(NEW_PATH) { "New assistant" } }
        @if list.is_empty() {
            p.muted { "No assistants yet." }
        } @else {
            table #assistants {
                thead { tr {
                    th.num { "Id" } th { "Name" } th { "Active" } th { "LLM" }
                    th.num { "Calls" } th { "Updated" } th { "" }
                } }
                tbody {
                    @for a in &list {
                        tr data-assistant-id=(a.id) {
                            td.num { (a.id) }
                            td { a href=(assistant_url(a.id)) { (a.config.name) } }
                            td { (if a.config.active() { "yes" } else { "no" }) }
                            td {
                                (a.config.llm_provider.as_deref().unwrap_or("openai")) " "
                                span.muted { (a.config.llm_provider_config.model.as_deref().unwrap_or("")) }
                            }
                            td.num { (a.stats.total_calls.unwrap_or(0)) }
                            td { (a.updated_at.format("%Y-%m-%d %H:%M")) }
                            td {
                                form.inline method="post" action=(format!("{}/duplicate", assistant_url(a.id))) {
                                    (csrf_field(&user))
                                    button.secondary type="submit" { "Duplicate" }
                                }
                                " "
                                form.inline method="post" action=(format!("{}/delete", assistant_url(a.id)))
                                    data-confirm=(format!("Delete the assistant \u{201c}{}\u{201d}? This cannot be undone.", a.config.name)) {
                                    (csrf_field(&user))
                                    button.secondary type="submit" { "Delete" }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(layout::page(
        "Assistants",
        &user,
        Nav::Assistants,
        &[],
        body,
    ))
}

/// The record's JSON as the form shows it: secrets masked (the API's response masks them).
fn masked_json(response: &AssistantResponse) -> Value {
    serde_json::to_value(&response.config).unwrap_or(Value::Null)
}

/// `GET /console/assistants/new`: the form with every field at its default.
async fn new_page(user: ConsoleUser) -> Markup {
    let mut config = switchboard_assistant::AssistantConfig::new("");
    mask_secrets(&mut config);
    let record = serde_json::to_value(&config).unwrap_or(Value::Null);
    let form = FormState {
        values: fields::form_values(&record),
        masked: record,
        errors: BTreeMap::new(),
        general: Vec::new(),
    };
    render_form(&user, None, &form, None, false)
}

/// What the form shows: field texts, the masked record (for secret placeholders), errors.
struct FormState {
    /// Field path → the text its input shows.
    values: BTreeMap<String, String>,
    /// The stored record with secrets masked (placeholders of the secret inputs).
    masked: Value,
    /// Field path → what is wrong with it.
    errors: BTreeMap<String, Vec<String>>,
    /// Errors that belong to no field.
    general: Vec<String>,
}

impl FormState {
    /// Adds an error at `path`'s field (or to the general list).
    fn push_error(&mut self, path: &str, rule: &str) {
        match field_for_error(path) {
            Some(field) if field == path => self
                .errors
                .entry(field.to_owned())
                .or_default()
                .push(rule.to_owned()),
            Some(field) => self
                .errors
                .entry(field.to_owned())
                .or_default()
                .push(format!("{path}: {rule}")),
            None if path.is_empty() || path == "body" => self.general.push(rule.to_owned()),
            None => self.general.push(format!("{path}: {rule}")),
        }
    }
}

/// The posted form: field path → text (the CSRF token and unknown names are ignored).
fn posted(pairs: Vec<(String, String)>) -> BTreeMap<String, String> {
    pairs.into_iter().collect()
}

/// Renders the assistant form; `id` is `None` for a new assistant.
fn render_form(
    user: &ConsoleUser,
    id: Option<i64>,
    form: &FormState,
    numbers: Option<Markup>,
    saved: bool,
) -> Markup {
    let (title, action) = match id {
        Some(id) => (format!("Assistant {id}"), assistant_url(id)),
        None => ("New assistant".to_owned(), PATH.to_owned()),
    };
    let has_errors = !form.errors.is_empty() || !form.general.is_empty();
    let body = html! {
        h1 { (title) }
        @if saved { p.ok #saved role="status" { "Saved." } }
        p { a href=(PATH) { "← All assistants" } }
        @if has_errors {
            div.panel.error #form-errors role="alert" {
                p { "The assistant was not saved: "
                    (form.errors.len() + form.general.len()) " problem(s), shown at their fields." }
                @for message in &form.general { p { (message) } }
            }
        }
        form #assistant-form method="post" action=(action) novalidate {
            (csrf_field(user))
            @for group in fields::groups() {
                fieldset.panel data-group=(group.path) {
                    legend { @if group.path.is_empty() { "General" } @else { (group.path) } }
                    @if let Some(help) = &group.help { p.muted { (help) } }
                    @for field in &group.fields {
                        (render_field(field, form))
                    }
                }
            }
            button #save type="submit" { @if id.is_some() { "Save" } @else { "Create assistant" } }
        }
        @if let Some(numbers) = numbers { (numbers) }
    };
    layout::page(&title, user, Nav::Assistants, &[], body)
}

fn render_field(field: &Field, form: &FormState) -> Markup {
    let id = field.html_id();
    let value = form
        .values
        .get(&field.path)
        .map(String::as_str)
        .unwrap_or("");
    let errors = form.errors.get(&field.path);
    let invalid = errors.is_some().then_some("true");
    let help_id = format!("{id}-help");
    html! {
        div.field.invalid[errors.is_some()] data-field=(field.path) {
            label for=(id) { (field.name()) }
            @match &field.kind {
                FieldKind::Text { multiline: true } | FieldKind::Json => {
                    textarea id=(id) name=(field.path) rows="4" aria-invalid=[invalid]
                        aria-describedby=(help_id) { (value) }
                }
                FieldKind::Text { multiline: false } => {
                    input id=(id) name=(field.path) type="text" value=(value)
                        aria-invalid=[invalid] aria-describedby=(help_id);
                }
                FieldKind::Integer | FieldKind::Number => {
                    input id=(id) name=(field.path) type="text" inputmode="decimal" value=(value)
                        aria-invalid=[invalid] aria-describedby=(help_id);
                }
                FieldKind::Bool => {
                    select id=(id) name=(field.path) aria-invalid=[invalid] aria-describedby=(help_id) {
                        @if field.nullable { option value="" selected[value.is_empty()] { "(unset)" } }
                        option value="true" selected[value == "true"] { "true" }
                        option value="false" selected[value == "false"] { "false" }
                    }
                }
                FieldKind::Choice(options) => {
                    select id=(id) name=(field.path) aria-invalid=[invalid] aria-describedby=(help_id) {
                        @if field.nullable { option value="" selected[value.is_empty()] { "(unset)" } }
                        @for option in options {
                            option value=(option) selected[value == option] { (option) }
                        }
                    }
                }
                FieldKind::Secret => {
                    @let masked = fields::value_at(&form.masked, &field.path)
                        .and_then(Value::as_str).unwrap_or("");
                    input id=(id) name=(field.path) type="password" value="" autocomplete="off"
                        placeholder=(if masked.is_empty() { "not set" } else { masked })
                        aria-invalid=[invalid] aria-describedby=(help_id);
                }
            }
            small.muted id=(help_id) {
                @if let Some(help) = &field.help { (help) " " }
                @if let Some(range) = field.range() { "Range: " (range) ". " }
                @if field.kind == FieldKind::Secret { "Write-only: leave blank to keep the stored value." }
                @if field.kind == FieldKind::Json { "JSON." }
            }
            @if let Some(errors) = errors {
                @for message in errors {
                    p.error.field-error role="alert" { (message) }
                }
            }
        }
    }
}

/// Turns the API's answer to a save into the form's errors, or the page error it is.
fn form_with_api_error(mut form: FormState, err: ApiError) -> Result<FormState, ConsoleError> {
    match err {
        ApiError::Validation(list) => {
            for e in &list {
                form.push_error(&e.field, &e.rule);
            }
            Ok(form)
        }
        ApiError::BadRequest(m) | ApiError::Conflict(m) => {
            form.general.push(m);
            Ok(form)
        }
        other => Err(page_error(other)),
    }
}

/// The form state for re-showing what was posted, with `masked` for secret placeholders.
fn resubmitted(posted: &BTreeMap<String, String>, masked: Value) -> FormState {
    FormState {
        values: posted
            .iter()
            .filter(|(k, _)| {
                fields::all_fields().any(|f| &f.path == *k && f.kind != FieldKind::Secret)
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        masked,
        errors: BTreeMap::new(),
        general: Vec::new(),
    }
}

fn unprocessable(markup: Markup) -> Response {
    (StatusCode::UNPROCESSABLE_ENTITY, markup).into_response()
}

/// `POST /console/assistants`: creates an assistant from the form (the API's create).
async fn create(
    State(state): State<AppState>,
    user: ConsoleUser,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Result<Response, ConsoleError> {
    let posted = posted(pairs);
    let mut blank = switchboard_assistant::AssistantConfig::new("");
    mask_secrets(&mut blank);
    let mut form = resubmitted(&posted, serde_json::to_value(&blank).unwrap_or(Value::Null));
    let body = match fields::parse_form(&posted) {
        Ok(body) => body,
        Err(errors) => {
            for e in errors {
                form.push_error(&e.field, &e.rule);
            }
            return Ok(unprocessable(render_form(&user, None, &form, None, false)));
        }
    };
    match create_assistant(State(state), api_auth(&user), ApiJson(body)).await {
        Ok((_, created)) => {
            Ok(Redirect::to(&format!("{}?saved=1", assistant_url(created.0.id))).into_response())
        }
        Err(err) => {
            let form = form_with_api_error(form, err)?;
            Ok(unprocessable(render_form(&user, None, &form, None, false)))
        }
    }
}

/// Query of the edit page.
#[derive(Debug, Default, Deserialize)]
struct EditQuery {
    /// Set after a successful save or create (shows a confirmation).
    #[serde(default)]
    saved: Option<String>,
}

async fn load(
    state: &AppState,
    user: &ConsoleUser,
    id: i64,
) -> Result<AssistantResponse, ConsoleError> {
    Ok(get_assistant(
        State(state.clone()),
        api_auth(user),
        ApiPath(AssistantPath { assistant_id: id }),
    )
    .await
    .map_err(page_error)?
    .0)
}

/// `GET /console/assistants/{id}`: the edit form and the phone numbers.
async fn edit_page(
    State(state): State<AppState>,
    user: ConsoleUser,
    Path(id): Path<i64>,
    Query(query): Query<EditQuery>,
) -> Result<Markup, ConsoleError> {
    let assistant = load(&state, &user, id).await?;
    let masked = masked_json(&assistant);
    let form = FormState {
        values: fields::form_values(&masked),
        masked,
        errors: BTreeMap::new(),
        general: Vec::new(),
    };
    let numbers = numbers_section(&state, &user, id).await?;
    Ok(render_form(
        &user,
        Some(id),
        &form,
        Some(numbers),
        query.saved.is_some(),
    ))
}

/// `POST /console/assistants/{id}`: saves the whole form (the API's full update). Blank
/// secrets are sent back in their masked form, which keeps the stored secret.
async fn save(
    State(state): State<AppState>,
    user: ConsoleUser,
    Path(id): Path<i64>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Result<Response, ConsoleError> {
    let posted = posted(pairs);
    let current = load(&state, &user, id).await?;
    let masked = masked_json(&current);
    let mut form = resubmitted(&posted, masked.clone());
    let mut body = match fields::parse_form(&posted) {
        Ok(body) => body,
        Err(errors) => {
            for e in errors {
                form.push_error(&e.field, &e.rule);
            }
            let numbers = numbers_section(&state, &user, id).await?;
            return Ok(unprocessable(render_form(
                &user,
                Some(id),
                &form,
                Some(numbers),
                false,
            )));
        }
    };
    for field in fields::all_fields().filter(|f| f.kind == FieldKind::Secret) {
        let blank = posted.get(&field.path).is_none_or(|v| v.trim().is_empty());
        if blank && let Some(kept) = fields::value_at(&masked, &field.path) {
            fields::set_at(&mut body, &field.path, kept.clone());
        }
    }
    match update_assistant(
        State(state.clone()),
        api_auth(&user),
        ApiPath(AssistantPath { assistant_id: id }),
        ApiJson(body),
    )
    .await
    {
        Ok(_) => Ok(Redirect::to(&format!("{}?saved=1", assistant_url(id))).into_response()),
        Err(err) => {
            let form = form_with_api_error(form, err)?;
            let numbers = numbers_section(&state, &user, id).await?;
            Ok(unprocessable(render_form(
                &user,
                Some(id),
                &form,
                Some(numbers),
                false,
            )))
        }
    }
}

/// `POST /console/assistants/{id}/duplicate`: the API's duplicate; goes to the copy.
async fn duplicate(
    State(state): State<AppState>,
    user: ConsoleUser,
    Path(id): Path<i64>,
) -> Result<Redirect, ConsoleError> {
    let (_, copy) = duplicate_assistant(
        State(state),
        api_auth(&user),
        ApiPath(AssistantPath { assistant_id: id }),
    )
    .await
    .map_err(page_error)?;
    Ok(Redirect::to(&format!(
        "{}?saved=1",
        assistant_url(copy.0.id)
    )))
}

/// `POST /console/assistants/{id}/delete`: the API's delete; back to the list.
async fn delete(
    State(state): State<AppState>,
    user: ConsoleUser,
    Path(id): Path<i64>,
) -> Result<Redirect, ConsoleError> {
    let _deleted = delete_assistant(
        State(state),
        api_auth(&user),
        ApiPath(AssistantPath { assistant_id: id }),
    )
    .await
    .map_err(page_error)?;
    Ok(Redirect::to(PATH))
}

/// The assistant's numbers (with unassign buttons) and the organisation's free numbers (with
/// assign buttons), from the API's phone-number handlers.
async fn numbers_section(
    state: &AppState,
    user: &ConsoleUser,
    id: i64,
) -> Result<Markup, ConsoleError> {
    let path = || ApiPath(AssistantPath { assistant_id: id });
    let assigned = list_phone_numbers(State(state.clone()), api_auth(user), path())
        .await
        .map_err(page_error)?
        .0;
    let free = available_for_assistant(State(state.clone()), api_auth(user), path())
        .await
        .map_err(page_error)?
        .0;
    let base = assistant_url(id);
    Ok(html! {
        section.panel #phone-numbers {
            h2 { "Phone numbers" }
            @if assigned.is_empty() {
                p.muted { "No number routes to this assistant." }
            } @else {
                table { tbody {
                    @for n in &assigned {
                        tr data-number=(n.phone_number) {
                            td { (n.phone_number) }
                            td {
                                form.inline method="post" action=(format!("{base}/numbers/unassign")) {
                                    (csrf_field(user))
                                    input type="hidden" name="phone_number_id" value=(n.id);
                                    button.secondary type="submit" { "Unassign" }
                                }
                            }
                        }
                    }
                } }
            }
            @if !free.is_empty() {
                form.inline #assign-number method="post" action=(format!("{base}/numbers/assign")) {
                    (csrf_field(user))
                    label for="phone_number_id" { "Assign a free number " }
                    select #phone_number_id name="phone_number_id" {
                        @for n in &free {
                            option value=(n.id) {
                                (n.phone_number)
                                @if let Some(name) = &n.friendly_name { " (" (name) ")" }
                            }
                        }
                    }
                    " "
                    button type="submit" { "Assign" }
                }
            }
        }
    })
}

/// Form of the assign/unassign buttons.
#[derive(Debug, Deserialize)]
struct NumberForm {
    /// The phone number's id in the organisation.
    phone_number_id: i64,
}

/// `POST /console/assistants/{id}/numbers/assign`: the API's assign-by-id.
async fn assign_number(
    State(state): State<AppState>,
    user: ConsoleUser,
    Path(id): Path<i64>,
    Form(form): Form<NumberForm>,
) -> Result<Redirect, ConsoleError> {
    let path = number_path(id, &form);
    let _assigned = assign_by_id(State(state), api_auth(&user), path)
        .await
        .map_err(page_error)?;
    Ok(Redirect::to(&assistant_url(id)))
}

/// `POST /console/assistants/{id}/numbers/unassign`: the API's unassign-by-id.
async fn unassign_number(
    State(state): State<AppState>,
    user: ConsoleUser,
    Path(id): Path<i64>,
    Form(form): Form<NumberForm>,
) -> Result<Redirect, ConsoleError> {
    let path = number_path(id, &form);
    let _unassigned = unassign_by_id(State(state), api_auth(&user), path)
        .await
        .map_err(page_error)?;
    Ok(Redirect::to(&assistant_url(id)))
}

/// The API path of assistant `id`'s number in `form`.
fn number_path(id: i64, form: &NumberForm) -> ApiPath<AssistantNumberPath> {
    ApiPath(AssistantNumberPath {
        assistant_id: id,
        phone_number_id: form.phone_number_id,
    })
}
