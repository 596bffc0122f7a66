//! Health, readiness and the OpenAPI document; none needs a token.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;

use super::Json;
use crate::wire::Health;
use crate::AppState;

/// Liveness: the process answers HTTP.
#[utoipa::path(get, path = "/health", tag = "system",
    responses((status = 200, body = Health)))]
pub async fn health() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// Readiness: the store answers, so requests can be served.
#[utoipa::path(get, path = "/ready", tag = "system",
    responses((status = 200, body = Health), (status = 503, body = Health)))]
pub async fn ready(State(state): State<Arc<AppState>>) -> (StatusCode, Json<Health>) {
    match state.store.ping().await {
        Ok(()) => (StatusCode::OK, Json(Health { status: "ready" })),
        Err(e) => {
            tracing::warn!(error = %e, "store not ready");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(Health {
                    status: "unavailable",
                }),
            )
        }
    }
}
