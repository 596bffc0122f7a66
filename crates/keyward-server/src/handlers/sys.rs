//! `/v1/sys/…`: the seal. Status and unseal need no token — shares are the
//! credential, as in Vault; initialising, sealing and rotating need
//! `sys:write`.
//!
//! Initialising, sealing, rekeying, rotating and rewrapping act on the whole
//! node, every API and environment at once, so they also need a token
//! without API or environment limits: `sys:write` on a token limited to
//! `test` does not seal `live` too, nor receive the shares of a fresh seal.

use std::sync::Arc;

use axum::extract::State;
use keyward_core::AdminScope;
use serde_json::json;

use super::Json;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::AppState;
use keyward_proto::{
    ErrorResponse, KeyringRotated, RekeyRequest, RewrapCounts, RewrapResult, SealInit,
    SealInitResult, SealStatusView, UnsealRequest,
};
use keyward_service::Error;

/// The seal's state and unseal progress.
#[utoipa::path(get, path = "/v1/sys/seal-status", tag = "sys",
    responses((status = 200, body = SealStatusView)))]
pub async fn seal_status(State(state): State<Arc<AppState>>) -> Json<SealStatusView> {
    Json(status_view(state.service.seal_status()))
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
    let (shares, threshold) = (body.secret_shares, body.secret_threshold);
    let set = state.service.init_seal(&caller, shares, threshold).await?;
    Ok(Json(shown_once(&set, shares, threshold)))
}

/// Whether the seal is initialised, in Vault's shape (`GET /v1/sys/init`,
/// hvac's `is_initialized`). Needs no token, as the seal status does not.
#[utoipa::path(get, path = "/v1/sys/init", tag = "sys",
    responses((status = 200, body = VaultInitStatus)))]
pub async fn init_status(State(state): State<Arc<AppState>>) -> Json<VaultInitStatus> {
    Json(VaultInitStatus {
        initialized: state.service.seal_status().initialized,
    })
}

/// Vault's answer to `GET /v1/sys/init`.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct VaultInitStatus {
    initialized: bool,
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
        return Ok(Json(status_view(state.service.reset_unseal())));
    }
    let Some(key) = body.key else {
        return Err(ApiError::Op(Error::InvalidRequest(
            "give `key` or `reset`".into(),
        )));
    };
    let status = state.service.unseal(&key).await?;
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
    let status = state.service.seal(&caller).await?;
    Ok(Json(status_view(status)))
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
    let version = state.service.rotate_keyring(&caller).await?;
    Ok(Json(KeyringRotated {
        keyring_version: version,
    }))
}

/// Moves every stored data key to the keyring's newest version now, and
/// says how many moved.
#[utoipa::path(post, path = "/v1/sys/rewrap", tag = "sys",
    responses((status = 200, body = RewrapResult), (status = 403, body = ErrorResponse),
              (status = 503, body = ErrorResponse)),
    security(("admin_token" = ["sys:write"])))]
pub async fn rewrap(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Json<RewrapResult>, ApiError> {
    let report = state.service.rewrap(&caller).await?;
    Ok(Json(RewrapResult {
        data: RewrapCounts {
            moved: report.moved,
            current: report.current,
            failed: report.failed,
        },
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
        .filter(|m| caller.sees_environment(m.environment))
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
        `A-Z a-z 0-9 _ -`, not a name the API uses (`sys`, `auth`, `keys`, `apis`, `tokens`, \
        `audit`, `owners`, `transit`)",
        pattern = r"^(?!(sys|auth|keys|apis|tokens|audit|owners|transit)$)[A-Za-z0-9_-]{1,64}$")),
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
    let split = body.secret_shares.zip(body.secret_threshold);
    match state.service.rekey(&caller, &body.keys, split).await? {
        Some(set) => {
            let (shares, threshold) = split.unwrap_or_default();
            Ok(Json(shown_once(&set, shares, threshold)))
        }
        None => Ok(Json(SealInitResult {
            keys: Vec::new(),
            secret_shares: 0,
            secret_threshold: 0,
        })),
    }
}

/// The answer that shows a new set of shares, once.
fn shown_once(set: &keyward_service::sys::ShareSet, shares: u8, threshold: u8) -> SealInitResult {
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
        kind: s.kind.as_str().to_owned(),
        initialized: s.initialized,
        sealed: s.sealed,
        t: s.threshold,
        n: s.shares,
        progress: s.progress,
        keyring_version: s.keyring_version,
    }
}

/// `GET /v1/sys/health` in Vault's shape, for Vault-aware load balancers
/// and probes. Every Keyward node is active (there are no standbys), so
/// the answer is `activecode` (200) once initialised and unsealed,
/// `sealedcode` (503) while sealed and `uninitcode` (501) before a
/// `shamir` seal is initialised. The codes are Vault's query parameters;
/// `standbyok`, `perfstandbyok` and the standby codes are read, checked and
/// never apply.
#[utoipa::path(get, path = "/v1/sys/health", tag = "sys", params(VaultHealthQuery),
    responses((status = 200, body = VaultHealth, description = "initialised, unsealed and active"),
              (status = 501, body = VaultHealth, description = "not initialised"),
              (status = 503, body = VaultHealth, description = "sealed"),
              (status = 400, body = VaultErrors, description = "a malformed parameter"),
              (status = "default", body = VaultHealth,
               description = "the code a parameter asked for")))]
pub async fn vault_health(
    State(state): State<Arc<AppState>>,
    uri: axum::http::Uri,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let codes = match HealthCodes::parse(uri.query().unwrap_or_default()) {
        Ok(codes) => codes,
        Err(message) => {
            return (
                axum::http::StatusCode::BAD_REQUEST,
                Json(VaultErrors {
                    errors: vec![message],
                }),
            )
                .into_response()
        }
    };
    let seal = state.service.seal_status();
    let code = if !seal.initialized {
        codes.uninit
    } else if seal.sealed {
        codes.sealed
    } else {
        codes.active
    };
    let status = axum::http::StatusCode::from_u16(code)
        .unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
    let body = VaultHealth {
        initialized: seal.initialized,
        sealed: seal.sealed,
        standby: false,
        performance_standby: false,
        replication_performance_mode: "disabled",
        replication_dr_mode: "disabled",
        server_time_utc: time::OffsetDateTime::now_utc().unix_timestamp(),
        version: env!("CARGO_PKG_VERSION"),
        cluster_name: "keyward",
        cluster_id: "",
    };
    (status, Json(body)).into_response()
}

/// Vault's health answer.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct VaultHealth {
    initialized: bool,
    sealed: bool,
    /// Always false: every Keyward node serves.
    standby: bool,
    performance_standby: bool,
    /// Always `disabled`: Keyward nodes share one database instead.
    replication_performance_mode: &'static str,
    replication_dr_mode: &'static str,
    /// Unix time in seconds.
    server_time_utc: i64,
    /// Keyward's version.
    version: &'static str,
    cluster_name: &'static str,
    /// Empty: Keyward nodes form no Vault cluster.
    cluster_id: &'static str,
}

/// Vault's error answer.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct VaultErrors {
    errors: Vec<String>,
}

/// Vault's health query parameters. Documentation only: the handler reads
/// the query itself, as Vault does, so a flag without a value counts.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct VaultHealthQuery {
    /// Answer `activecode` on a standby (Keyward has none).
    standbyok: Option<bool>,
    /// Answer `activecode` on a performance standby (Keyward has none).
    perfstandbyok: Option<bool>,
    /// Status when initialised, unsealed and active; default 200.
    #[param(minimum = 200, maximum = 599)]
    activecode: Option<u16>,
    /// Status on a standby; default 429.
    #[param(minimum = 200, maximum = 599)]
    standbycode: Option<u16>,
    /// Status on a DR secondary; default 472.
    #[param(minimum = 200, maximum = 599)]
    drsecondarycode: Option<u16>,
    /// Status on a performance standby; default 473.
    #[param(minimum = 200, maximum = 599)]
    performancestandbycode: Option<u16>,
    /// Status while sealed; default 503.
    #[param(minimum = 200, maximum = 599)]
    sealedcode: Option<u16>,
    /// Status before the seal is initialised; default 501.
    #[param(minimum = 200, maximum = 599)]
    uninitcode: Option<u16>,
}

/// The status codes a health request asks for.
struct HealthCodes {
    active: u16,
    sealed: u16,
    uninit: u16,
}

impl HealthCodes {
    /// Reads Vault's parameters; other parameters are ignored, as Vault
    /// ignores them. The message of a bad one names the parameter only.
    /// Codes are final statuses, 200 to 599: an informational 1xx cannot end
    /// an HTTP exchange.
    fn parse(query: &str) -> Result<Self, String> {
        let mut codes = HealthCodes {
            active: 200,
            sealed: 503,
            uninit: 501,
        };
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            let code = |value: &str| {
                value
                    .parse::<u16>()
                    .ok()
                    .filter(|c| (200..=599).contains(c))
                    .ok_or_else(|| {
                        format!("bad value for {name} parameter: a status code of 200 to 599")
                    })
            };
            match &*name {
                "activecode" => codes.active = code(&value)?,
                "sealedcode" => codes.sealed = code(&value)?,
                "uninitcode" => codes.uninit = code(&value)?,
                // Checked as Vault checks them; no Keyward node is in the
                // state they are for.
                "standbycode"
                | "drsecondarycode"
                | "performancestandbycode"
                | "haunhealthycode"
                | "removedcode" => {
                    code(&value)?;
                }
                // A flag without a value counts as set.
                "standbyok" | "perfstandbyok"
                    if !value.is_empty() && parse_go_bool(&value).is_none() =>
                {
                    return Err(format!("bad value for {name} parameter: true or false"));
                }
                _ => {}
            }
        }
        Ok(codes)
    }
}

/// A boolean as Go's `strconv.ParseBool` reads it, which Vault uses.
fn parse_go_bool(value: &str) -> Option<bool> {
    match value {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}
