//! `/v1/sys/…`: the seal. Status and unseal need no token — shares are the
//! credential, as in Vault; initialising, sealing and rotating need
//! `sys:write`.
//!
//! Initialising, sealing, rekeying, rotating and rewrapping act on the whole
//! node, every API and environment at once, so they also need a token
//! without API or environment limits: `sys:write` on a token limited to
//! `test` does not seal `live` too, nor receive the shares of a fresh seal.

use keyward_core::AuditAction;
use std::sync::Arc;

use axum::extract::State;
use keyward_core::AdminScope;
use serde_json::json;

use super::{audit_event, now, Json};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::AppState;
use keyward_proto::{
    ErrorResponse, KeyringRotated, SealInit, SealInitResult, SealStatusView, UnsealRequest,
};

/// The seal's state and unseal progress.
#[utoipa::path(get, path = "/v1/sys/seal-status", tag = "sys",
    responses((status = 200, body = SealStatusView)))]
pub async fn seal_status(State(state): State<Arc<AppState>>) -> Json<SealStatusView> {
    Json(status_view(state.barrier.status()))
}

/// Refuses a token limited to some APIs or environments: what follows acts
/// on the whole node.
fn require_node_wide(caller: &Caller) -> Result<(), ApiError> {
    if caller.is_restricted() {
        return Err(ApiError::Forbidden(
            "this acts on the whole node: it needs a token without API or environment limits",
        ));
    }
    Ok(())
}

/// Initialises a `shamir` seal and returns its shares, once.
#[utoipa::path(post, path = "/v1/sys/init", tag = "sys", request_body = SealInit,
    responses((status = 200, body = SealInitResult), (status = 400, body = ErrorResponse),
              (status = 403, body = ErrorResponse), (status = 409, body = ErrorResponse)),
    security(("admin_token" = ["sys:write"])))]
pub async fn init(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Json(body): Json<SealInit>,
) -> Result<Json<SealInitResult>, ApiError> {
    caller.require(AdminScope::SysWrite)?;
    require_node_wide(&caller)?;
    check_split(body.secret_shares, body.secret_threshold)?;
    let set = state
        .barrier
        .init(body.secret_shares, body.secret_threshold, &caller)
        .await?;
    Ok(Json(shown_once(
        &set,
        body.secret_shares,
        body.secret_threshold,
    )))
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
        return Ok(Json(status_view(state.barrier.status())));
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
            AuditAction::SealUnseal,
            "seal",
            json!({ "seal": status.kind.as_str() }),
            now(),
        )?;
        state.store.append_audit(&[event]).await?;
        tracing::info!("unsealed");
    }
    Ok(Json(status_view(status)))
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
    require_node_wide(&caller)?;
    let event = audit_event(
        Some(&caller),
        AuditAction::SealSeal,
        "seal",
        json!({}),
        now(),
    )?;
    state.store.append_audit(&[event]).await?;
    state.barrier.seal().await?;
    tracing::warn!("sealed by an operator");
    Ok(Json(status_view(state.barrier.status())))
}

/// Adds a keyring version; new data is encrypted under it.
#[utoipa::path(post, path = "/v1/sys/rotate", tag = "sys",
    responses((status = 200, body = KeyringRotated), (status = 403, body = ErrorResponse),
              (status = 503, body = ErrorResponse)),
    security(("admin_token" = ["sys:write"])))]
pub async fn rotate(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Json<KeyringRotated>, ApiError> {
    caller.require(AdminScope::SysWrite)?;
    require_node_wide(&caller)?;
    let event = audit_event(
        Some(&caller),
        AuditAction::KeyringRotate,
        "keyring",
        json!({}),
        now(),
    )?;
    let version = state.barrier.rotate(&event).await?;
    // Stored data keys move to the new version in the background; the
    // old versions keep opening them meanwhile.
    let barrier = Arc::clone(&state.barrier);
    let store = Arc::clone(&state.store);
    tokio::spawn(async move {
        match barrier.rewrap().await {
            Ok(report) => {
                tracing::info!(
                    moved = report.moved,
                    failed = report.failed,
                    "keyring rewrap done"
                );
                if let Ok(event) = audit_event(
                    None,
                    AuditAction::KeyringRewrap,
                    "keyring",
                    rewrap_details(&report),
                    now(),
                ) {
                    if let Err(e) = store.append_audit(&[event]).await {
                        tracing::error!(error = %e, "cannot audit the rewrap");
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "keyring rewrap stopped"),
        }
    });
    Ok(Json(KeyringRotated {
        keyring_version: version,
    }))
}

fn rewrap_details(report: &keyward_service::seal::RewrapReport) -> serde_json::Value {
    json!({ "moved": report.moved, "current": report.current, "failed": report.failed })
}

/// Moves every stored data key to the keyring's newest version now, and
/// says how many moved.
#[utoipa::path(post, path = "/v1/sys/rewrap", tag = "sys",
    responses((status = 200, body = Object), (status = 403, body = ErrorResponse),
              (status = 503, body = ErrorResponse)),
    security(("admin_token" = ["sys:write"])))]
pub async fn rewrap(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(AdminScope::SysWrite)?;
    require_node_wide(&caller)?;
    let report = state.barrier.rewrap().await?;
    let details = rewrap_details(&report);
    let event = audit_event(
        Some(&caller),
        AuditAction::KeyringRewrap,
        "keyring",
        details.clone(),
        now(),
    )?;
    state.store.append_audit(&[event]).await?;
    Ok(Json(json!({ "data": details })))
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
        .filter(|m| caller.reaches_environment(m.environment))
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
    params(("path" = String, Path, description = "The mount's path, e.g. secret-test: 1–64 of \
        `A-Z a-z 0-9 _ -`, not a name the API uses (`sys`, `keys`, `apis`, `tokens`, `audit`, \
        `owners`, `transit`)",
        pattern = r"^(?!(sys|keys|apis|tokens|audit|owners|transit)$)[A-Za-z0-9_-]{1,64}$")),
    request_body = crate::apidoc::MountCreate,
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

/// `POST /v1/sys/rekey`: current shares, and the new split.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RekeyRequest {
    /// `shamir`: at least the threshold of the current shares.
    #[serde(default)]
    pub keys: Vec<String>,
    /// `shamir`: the new split, 2–255 shares. A `pkcs11` rekey takes no
    /// fields.
    #[schema(minimum = 2, maximum = 255)]
    pub secret_shares: Option<u8>,
    /// `shamir`: shares needed to unseal, 2..=secret_shares.
    #[schema(minimum = 2, maximum = 255)]
    pub secret_threshold: Option<u8>,
}

/// Replaces the master key. `shamir`: needs the threshold of the current
/// shares and returns new shares, once. `pkcs11`: the HSM wraps a new
/// master key, and `keys` is empty. Needs `sys:write`.
#[utoipa::path(post, path = "/v1/sys/rekey", tag = "sys", request_body = RekeyRequest,
    responses((status = 200, body = SealInitResult), (status = 400, body = ErrorResponse),
              (status = 403, body = ErrorResponse), (status = 409, body = ErrorResponse),
              (status = 503, body = ErrorResponse)),
    security(("admin_token" = ["sys:write"])))]
pub async fn rekey(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Json(body): Json<RekeyRequest>,
) -> Result<Json<SealInitResult>, ApiError> {
    caller.require(AdminScope::SysWrite)?;
    require_node_wide(&caller)?;
    let invalid = |e| match e {
        keyward_service::seal::SealError::Invalid(message) => {
            ApiError::InvalidRequest(message.into())
        }
        other => other.into(),
    };
    if state.barrier.kind() == keyward_store::SealKind::Pkcs11 {
        state.barrier.rekey_hsm(&caller).await.map_err(invalid)?;
        tracing::warn!("the master key was replaced and wrapped by the HSM");
        return Ok(Json(SealInitResult {
            keys: Vec::new(),
            secret_shares: 0,
            secret_threshold: 0,
        }));
    }
    let (Some(shares), Some(threshold)) = (body.secret_shares, body.secret_threshold) else {
        return Err(ApiError::InvalidRequest(
            "secret_shares and secret_threshold are required".into(),
        ));
    };
    check_split(shares, threshold)?;
    let set = state
        .barrier
        .rekey(&body.keys, shares, threshold, &caller)
        .await
        .map_err(invalid)?;
    tracing::warn!("the master key was replaced; the old shares no longer unseal");
    Ok(Json(shown_once(&set, shares, threshold)))
}

fn check_split(shares: u8, threshold: u8) -> Result<(), ApiError> {
    if threshold < 2 || shares < threshold {
        return Err(ApiError::InvalidRequest(
            "need 2 <= secret_threshold <= secret_shares <= 255".into(),
        ));
    }
    Ok(())
}

/// The answer that shows a new set of shares, once.
fn shown_once(set: &keyward_crypto::shamir::ShareSet, shares: u8, threshold: u8) -> SealInitResult {
    SealInitResult {
        keys: set
            .shares
            .iter()
            .map(|share| share.to_text().as_str().to_owned())
            .collect(),
        secret_shares: shares,
        secret_threshold: threshold,
    }
}

/// The seal's state as Vault's `sys/seal-status` answers it.
fn status_view(s: keyward_service::seal::SealStatus) -> SealStatusView {
    SealStatusView {
        kind: s.kind.as_str(),
        initialized: s.initialized,
        sealed: s.sealed,
        t: s.threshold,
        n: s.shares,
        progress: s.progress,
        keyring_version: s.keyring_version,
    }
}
