//! `/v1/sys/…`: the seal. Status and unseal need no token — shares are the
//! credential, as in Vault; initialising, sealing and rotating need
//! `sys:write`.

use std::sync::Arc;

use axum::extract::State;
use keyward_core::AdminScope;
use serde_json::json;

use super::{audit_event, now, Json};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::wire::{
    ErrorResponse, KeyringRotated, SealInit, SealInitResult, SealStatusView, UnsealRequest,
};
use crate::AppState;

/// The seal's state and unseal progress.
#[utoipa::path(get, path = "/v1/sys/seal-status", tag = "sys",
    responses((status = 200, body = SealStatusView)))]
pub async fn seal_status(State(state): State<Arc<AppState>>) -> Json<SealStatusView> {
    Json(state.barrier.status().into())
}

/// Initialises a `shamir` seal and returns its shares, once.
#[utoipa::path(post, path = "/v1/sys/init", tag = "sys", request_body = SealInit,
    responses((status = 200, body = SealInitResult), (status = 400, body = ErrorResponse),
              (status = 409, body = ErrorResponse)),
    security(("admin_token" = ["sys:write"])))]
pub async fn init(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Json(body): Json<SealInit>,
) -> Result<Json<SealInitResult>, ApiError> {
    caller.require(AdminScope::SysWrite)?;
    if body.secret_threshold < 2 || body.secret_shares < body.secret_threshold {
        return Err(ApiError::InvalidRequest(
            "need 2 <= secret_threshold <= secret_shares <= 255".into(),
        ));
    }
    let set = state
        .barrier
        .init(body.secret_shares, body.secret_threshold, &caller)
        .await?;
    Ok(Json(SealInitResult {
        keys: set
            .shares
            .iter()
            .map(|share| share.to_text().as_str().to_owned())
            .collect(),
        secret_shares: body.secret_shares,
        secret_threshold: body.secret_threshold,
    }))
}

/// Gives one unseal share (or resets the progress).
#[utoipa::path(post, path = "/v1/sys/unseal", tag = "sys", request_body = UnsealRequest,
    responses((status = 200, body = SealStatusView), (status = 400, body = ErrorResponse),
              (status = 409, body = ErrorResponse)))]
pub async fn unseal(
    State(state): State<Arc<AppState>>,
    Json(body): Json<UnsealRequest>,
) -> Result<Json<SealStatusView>, ApiError> {
    if body.reset {
        state.barrier.reset_unseal();
        return Ok(Json(state.barrier.status().into()));
    }
    let Some(key) = body.key else {
        return Err(ApiError::InvalidRequest("give `key` or `reset`".into()));
    };
    let status = match state.barrier.unseal(&key).await {
        Ok(status) => status,
        Err(e) => {
            tracing::warn!(error = %e, "an unseal share was refused");
            return Err(e.into());
        }
    };
    if !status.sealed {
        let event = audit_event(
            None,
            "seal.unseal",
            "seal",
            json!({ "seal": status.kind.as_str() }),
            now(),
        )?;
        state.store.append_audit(&[event]).await?;
        tracing::info!("unsealed");
    }
    Ok(Json(status.into()))
}

/// Seals this node: the master key and keyring leave its memory.
#[utoipa::path(post, path = "/v1/sys/seal", tag = "sys",
    responses((status = 200, body = SealStatusView), (status = 403, body = ErrorResponse)),
    security(("admin_token" = ["sys:write"])))]
pub async fn seal(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Json<SealStatusView>, ApiError> {
    caller.require(AdminScope::SysWrite)?;
    let event = audit_event(Some(&caller), "seal.seal", "seal", json!({}), now())?;
    state.store.append_audit(&[event]).await?;
    state.barrier.seal().await?;
    tracing::warn!("sealed by an operator");
    Ok(Json(state.barrier.status().into()))
}

/// Adds a keyring version; new data is encrypted under it.
#[utoipa::path(post, path = "/v1/sys/rotate", tag = "sys",
    responses((status = 200, body = KeyringRotated), (status = 503, body = ErrorResponse)),
    security(("admin_token" = ["sys:write"])))]
pub async fn rotate(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Json<KeyringRotated>, ApiError> {
    caller.require(AdminScope::SysWrite)?;
    let event = audit_event(Some(&caller), "keyring.rotate", "keyring", json!({}), now())?;
    let version = state.barrier.rotate(&event).await?;
    Ok(Json(KeyringRotated {
        keyring_version: version,
    }))
}

/// The secrets mounts and their environments.
#[utoipa::path(get, path = "/v1/sys/mounts", tag = "sys",
    responses((status = 200, body = Object)),
    security(("admin_token" = ["secrets:read"])))]
pub async fn list_mounts(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(AdminScope::SecretsRead)?;
    let mounts = state.store.list_mounts().await?;
    let data: serde_json::Map<String, serde_json::Value> = mounts
        .iter()
        .filter(|m| {
            caller
                .token
                .environments
                .as_ref()
                .is_none_or(|envs| envs.contains(&m.environment))
        })
        .map(|m| {
            (
                format!("{}/", m.path),
                json!({
                    "type": "kv",
                    "options": { "version": "2", "environment": m.environment.as_str() },
                }),
            )
        })
        .collect();
    Ok(Json(json!({ "data": data })))
}

/// Mounts a KV v2 secrets store bound to one environment
/// (`options.environment`, default `live`), in Vault's request shape.
#[utoipa::path(post, path = "/v1/sys/mounts/{path}", tag = "sys",
    params(("path" = String, Path, description = "The mount's path, e.g. secret-test")),
    request_body = Object,
    responses((status = 204), (status = 400, body = ErrorResponse), (status = 409, body = ErrorResponse)),
    security(("admin_token" = ["sys:write"])))]
pub async fn mount(
    State(state): State<Arc<AppState>>,
    axum::extract::Path(path): axum::extract::Path<String>,
    caller: Caller,
    Json(body): Json<crate::handlers::kv::MountBody>,
) -> Result<axum::http::StatusCode, ApiError> {
    crate::handlers::kv::create_mount(&state, &caller, &path, body).await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}
