//! Health, readiness and the OpenAPI document; none needs a token.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;

use super::Json;
use crate::AppState;
use keyward_proto::{Health, Readiness};

/// What `/ready` says while no admin token can grant every scope: the
/// admin API can then no longer be administered in full.
pub const NO_FULL_TOKEN: &str = "no usable full-access admin token remains (the last one was \
     revoked, e.g. as leaked, or expired); run `keyward operator root-token` to issue a new one";

/// Liveness: the process answers HTTP.
#[utoipa::path(get, path = "/health", tag = "health",
    responses((status = 200, body = Health)))]
pub async fn health() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// Readiness: the store answers, so requests can be served. `warnings`
/// names what an operator must fix although the node serves.
#[utoipa::path(get, path = "/ready", tag = "health",
    responses((status = 200, body = Readiness), (status = 503, body = Readiness)))]
pub async fn ready(State(state): State<Arc<AppState>>) -> (StatusCode, Json<Readiness>) {
    if let Err(e) = state.store.ping().await {
        tracing::warn!(error = %e, "store not ready");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Readiness {
                status: "unavailable",
                warnings: Vec::new(),
            }),
        );
    }
    let mut warnings = Vec::new();
    match state.store.has_full_token(super::now()).await {
        Ok(true) => {}
        Ok(false) => warnings.push(NO_FULL_TOKEN),
        Err(e) => tracing::warn!(error = %e, "could not check for a full-access admin token"),
    }
    (
        StatusCode::OK,
        Json(Readiness {
            status: "ready",
            warnings,
        }),
    )
}
