//! `GET /healthz`: liveness and readiness for load balancers and scripts.
//!
//! The listener is bound only after migrations ran, so any answer means the schema is ready.
//! It also pings the database, so an instance that lost its database reports unhealthy. Once
//! shutdown starts it answers 503 so balancers stop sending new work while calls drain.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

use crate::state::AppState;

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new().route("/healthz", get(healthz))
}

/// OpenAPI description of this module's paths.
#[derive(OpenApi)]
#[openapi(paths(healthz), components(schemas(Health)))]
pub struct HealthApi;

/// Health answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok` when serving, `draining` during shutdown, `database_unavailable` when the database
    /// does not answer.
    pub status: &'static str,
}

/// Health check: 200 `{"status":"ok"}` when ready; 503 with `draining` while shutting down or
/// `database_unavailable` when the database does not answer.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "health",
    responses(
        (status = 200, description = "Ready", body = Health),
        (status = 503, description = "Shutting down or database unavailable", body = Health)
    )
)]
pub async fn healthz(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    if state.shutdown.is_cancelled() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Health { status: "draining" }),
        )
    } else {
        match state.store.ping().await {
            Ok(()) => (StatusCode::OK, Json(Health { status: "ok" })),
            Err(err) => {
                tracing::warn!(error = %err, "health check: database ping failed");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    Json(Health {
                        status: "database_unavailable",
                    }),
                )
            }
        }
    }
}
