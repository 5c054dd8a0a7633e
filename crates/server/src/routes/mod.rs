//! Router assembly: one `.merge(module::router())` line per route module.
//!
//! # No assistant cache
//!
//! Handlers and the call runtime read assistant records from the store every time (the call
//! runtime: once at each call start). Nothing caches them in memory, so a change made over the
//! API applies to the next call that starts, with no restart, on every instance that shares the
//! database. Should a cache ever be needed, it must be invalidated on write across instances.

pub mod api_keys;
pub mod assistant_extras;
pub mod assistants;
pub mod background_sound;
pub mod call_reports;
pub mod calls;
pub mod csv;
pub mod documents;
pub mod health;
pub mod live;
pub mod number_list;
pub mod organization;
pub mod phone_numbers;
pub mod providers;
pub mod recordings;
pub mod replay;
pub mod tool_executions;

use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::Uri;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;
use utoipa::ToSchema;

use crate::edge::body::body_deadline;
use crate::edge::headers::with_security_headers;
use crate::error::ApiError;
use crate::openapi;
use crate::state::AppState;

/// Builds the complete HTTP application for `state`.
///
/// To add a module (e.g. `twilio`, `calls`): create `routes/<name>.rs` with
/// `pub fn router() -> Router<AppState>`, declare it above, and merge it below with one line;
/// list its OpenAPI struct in `openapi::document`.
///
/// Around every route: the request-body deadline (408), panic capture, tracing, and the
/// security headers (`edge::headers`; HSTS when `server.public_url` is https).
pub fn router(state: AppState) -> Router {
    let max_body_bytes = state.settings.server.max_body_bytes;
    let body_timeout = Duration::from_millis(state.settings.server.body_read_timeout_ms);
    let https = state.public_base_url.starts_with("https://");
    let app = Router::new()
        .merge(health::router())
        .merge(openapi::router())
        .merge(assistants::router())
        .merge(assistant_extras::router())
        .merge(documents::router())
        .merge(background_sound::router())
        .merge(providers::router())
        .merge(phone_numbers::router())
        .merge(number_list::router())
        .merge(calls::router())
        .merge(live::router())
        .merge(recordings::router())
        .merge(call_reports::router())
        .merge(tool_executions::router())
        .merge(replay::router())
        .merge(organization::router())
        .merge(api_keys::router())
        .merge(crate::twilio::router())
        .merge(crate::metrics::router())
        .merge(crate::console::router(state.clone()))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(middleware::from_fn_with_state(body_timeout, body_deadline))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(TraceLayer::new_for_http())
        .with_state(state);
    with_security_headers(app, https)
}

/// Burki's standard acknowledgement (`APIResponse`): returned by delete and by the phone-number
/// assign/unassign endpoints.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiResponse {
    /// Always true in a 2xx answer (failures use the error shape).
    pub success: bool,
    /// What was done, in words.
    pub message: String,
    /// The affected object, when there is one.
    #[schema(value_type = Option<Object>)]
    pub data: Option<Value>,
}

impl ApiResponse {
    /// A success acknowledgement.
    pub fn ok(message: impl Into<String>, data: Option<Value>) -> Self {
        ApiResponse {
            success: true,
            message: message.into(),
            data,
        }
    }
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::NotFound(format!("no route for {}", uri.path()))
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// A handler panic becomes a JSON 500; the panic message is logged, never returned.
fn panic_response(payload: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let detail = payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or("non-string panic payload");
    ApiError::internal(format!("handler panicked: {detail}")).into_response()
}
