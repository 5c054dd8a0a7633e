//! The OpenAPI 3 document served at `GET /api/openapi.json`, generated from the handlers'
//! `#[utoipa::path]` attributes and the record types' `ToSchema` derives.
//!
//! To add a module: give it a `#[derive(OpenApi)]` struct listing its paths and merge it in
//! [`document`] with one line.

use std::sync::OnceLock;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::error::{ErrorBody, ErrorDetail, FieldError};
use crate::routes::{assistants, calls, health, organization, phone_numbers, providers};
use crate::state::AppState;

/// Top-level document: title, security scheme, shared schemas.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Switchboard API",
        description = "Real-time voice call engine. Paths follow the Burki API. \
                       Authenticate with `Authorization: Bearer <api key>`."
    ),
    components(schemas(ErrorBody, ErrorDetail, FieldError)),
    modifiers(&BearerAuth),
    tags(
        (name = "assistants", description = "Assistant records"),
        (name = "phone-numbers", description = "Numbers routed to assistants"),
        (name = "health", description = "Liveness")
    )
)]
pub struct ApiDoc;

/// Adds the `bearer` security scheme every authenticated path refers to.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The full document: every module's paths merged into [`ApiDoc`].
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.merge(health::HealthApi::openapi());
    doc.merge(assistants::AssistantsApi::openapi());
    doc.merge(providers::ProvidersApi::openapi());
    doc.merge(phone_numbers::PhoneNumbersApi::openapi());
    doc.merge(crate::routes::number_list::NumberListApi::openapi());
    doc.merge(calls::CallsApi::openapi());
    doc.merge(crate::routes::live::LiveApi::openapi());
    doc.merge(crate::routes::recordings::RecordingsApi::openapi());
    doc.merge(crate::routes::call_reports::CallReportsApi::openapi());
    doc.merge(crate::routes::replay::ReplayApi::openapi());
    doc.merge(crate::routes::assistant_extras::AssistantExtrasApi::openapi());
    doc.merge(organization::OrganizationApi::openapi());
    doc.merge(crate::routes::documents::DocumentsApi::openapi());
    doc.merge(crate::routes::background_sound::BackgroundSoundApi::openapi());
    doc.merge(crate::routes::api_keys::ApiKeysApi::openapi());
    doc.merge(crate::routes::tool_executions::ToolExecutionsApi::openapi());
    doc
}

fn document_json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| {
        document()
            .to_json()
            .unwrap_or_else(|err| format!("{{\"error\":\"openapi serialisation failed: {err}\"}}"))
    })
}

/// `GET /api/openapi.json` (public: the API's shape is no secret).
pub fn router() -> Router<AppState> {
    Router::new().route("/api/openapi.json", get(openapi_json))
}

async fn openapi_json() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        document_json(),
    )
}
