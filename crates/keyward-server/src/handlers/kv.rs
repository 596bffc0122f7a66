//! Secrets in Vault's KV v2 shape, so Vault clients (hvac, the `vault` CLI,
//! External Secrets) work unchanged: `/v1/{mount}/data/{path}`,
//! `metadata/`, `delete/`, `undelete/`, `destroy/` and `config`.
//!
//! Every mount is bound to one environment, and a token limited to other
//! environments finds nothing there. Values are sealed by the keyring, each
//! version under its own data key bound to mount, path and version; a sealed
//! server answers `SEALED`. Every read and write is audited with the path
//! and version, never the value.
//!
//! Mount paths are chosen at run time, so these routes are dispatched from
//! the router's fallback rather than declared one by one.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequestParts, Request};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use keyward_core::Environment;
use keyward_service::secrets::{MetadataChanges, SecretRead, VersionAct, RESERVED_MOUNT_PATHS};
use keyward_service::secrets::{SecretMount, SecretVersion};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::AppState;
use keyward_service::Error;

/// Answers a request under `/v1/` that no declared route took: a KV v2
/// operation when its first segment names a mount, else `NOT_FOUND`.
pub async fn dispatch(state: Arc<AppState>, request: Request) -> Response {
    match handle(state, request).await {
        Ok(response) => response,
        Err(e) => vault_error(e),
    }
}

/// The `{"errors": [...]}` Vault clients read, beside Keyward's own
/// `{"error": {code, message}}`.
fn vault_error(e: ApiError) -> Response {
    let (status, code) = e.status_and_code();
    let message = e.message();
    let mut response = e.into_response();
    if status != StatusCode::INTERNAL_SERVER_ERROR {
        response = (
            status,
            axum::Json(json!({
                "errors": [message],
                "error": { "code": code, "message": message },
            })),
        )
            .into_response();
    }
    response
}

async fn handle(state: Arc<AppState>, request: Request) -> Result<Response, ApiError> {
    let (mut parts, body) = request.into_parts();
    let path = parts.uri.path().to_owned();
    let Some(rest) = path.strip_prefix("/v1/") else {
        return Err(ApiError::Op(Error::NotFound("route")));
    };
    let (mount_name, rest) = rest.split_once('/').unwrap_or((rest, ""));
    // A reserved first segment is one of Keyward's own resources, never a
    // mount: a path under it that no route took is simply not a route.
    if mount_name.is_empty()
        || (RESERVED_MOUNT_PATHS.contains(&mount_name) && mount_name != "transit")
    {
        return Err(ApiError::Op(Error::NotFound("route")));
    }
    let listing = parts.method.as_str() == "LIST"
        || parts
            .uri
            .query()
            .is_some_and(|q| q.split('&').any(|p| p == "list=true"));
    // The token is checked before any lookup: without a valid one, every
    // path answers the same 401, so mount names cannot be probed.
    let caller = Caller::from_request_parts(&mut parts, &state).await?;
    let mount = match mount_name {
        "transit" => None,
        name => Some(state.service.mount(&caller, name).await?),
    };
    let body = axum::body::to_bytes(body, crate::MAX_ENGINE_BODY_BYTES)
        .await
        .map_err(|_| ApiError::PayloadTooLarge)?;
    let Some(mount) = mount else {
        return super::transit::dispatch(&state, &caller, &parts.method, rest, listing, &body)
            .await;
    };
    let (operation, secret_path) = rest.split_once('/').unwrap_or((rest, ""));
    let secret_path = secret_path.trim_end_matches('/');
    let version_param = parts.uri.query().and_then(|q| {
        q.split('&')
            .find_map(|p| p.strip_prefix("version="))
            .map(str::to_owned)
    });
    let kv = Kv {
        state: &state,
        caller: &caller,
        mount: &mount,
    };
    let method = parts.method.clone();
    match (operation, method) {
        ("config", Method::GET) => kv.read_config().await,
        ("config", Method::POST | Method::PUT) => kv.write_config(&body).await,
        (_, _) if operation != "config" && secret_path.is_empty() && !listing => Err(ApiError::Op(
            Error::InvalidRequest("a secret path is required".into()),
        )),
        ("metadata", _) if listing => kv.list(secret_path).await,
        ("data", Method::GET) => kv.read(secret_path, version_param).await,
        ("data", Method::POST | Method::PUT) => kv.write(secret_path, &body).await,
        ("data", Method::PATCH) => kv.patch(secret_path, &body).await,
        ("data", Method::DELETE) => kv.delete_latest(secret_path).await,
        ("delete", Method::POST | Method::PUT) => {
            kv.act(secret_path, &body, VersionAct::Delete).await
        }
        ("undelete", Method::POST | Method::PUT) => {
            kv.act(secret_path, &body, VersionAct::Undelete).await
        }
        ("destroy", Method::POST | Method::PUT) => {
            kv.act(secret_path, &body, VersionAct::Destroy).await
        }
        ("metadata", Method::GET) => kv.read_meta(secret_path).await,
        ("metadata", Method::POST | Method::PUT) => kv.write_meta(secret_path, &body).await,
        ("metadata", Method::DELETE) => kv.delete_all(secret_path).await,
        ("data" | "delete" | "undelete" | "destroy" | "metadata" | "config", _) => {
            Err(ApiError::Op(Error::InvalidRequest(
                "this method is not supported on this path".into(),
            )))
        }
        _ => Err(ApiError::Op(Error::NotFound("route"))),
    }
}

struct Kv<'a> {
    state: &'a AppState,
    caller: &'a Caller,
    mount: &'a SecretMount,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WriteBody {
    data: Map<String, Value>,
    #[serde(default)]
    options: WriteOptions,
}

#[derive(Deserialize, Default)]
struct WriteOptions {
    cas: Option<u64>,
}

#[derive(Deserialize)]
struct VersionsBody {
    versions: Vec<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MetaBody {
    max_versions: Option<u32>,
    cas_required: Option<bool>,
    custom_metadata: Option<Map<String, Value>>,
    /// Accepted for compatibility; only "0s" (never) is supported.
    delete_version_after: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigBody {
    max_versions: Option<u32>,
    cas_required: Option<bool>,
    delete_version_after: Option<String>,
}

fn parse<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    super::parse_json_bytes(body)
}

fn timestamp(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_default()
}

/// Vault's response envelope around `data`.
pub(crate) fn envelope(status: StatusCode, data: Value) -> Response {
    /// Written field by field: no map is built per response.
    #[derive(serde::Serialize)]
    struct Envelope {
        request_id: &'static str,
        lease_id: &'static str,
        renewable: bool,
        lease_duration: u32,
        data: Value,
        wrap_info: Option<()>,
        warnings: Option<()>,
        auth: Option<()>,
    }
    (
        status,
        axum::Json(Envelope {
            request_id: "",
            lease_id: "",
            renewable: false,
            lease_duration: 0,
            data,
            wrap_info: None,
            warnings: None,
            auth: None,
        }),
    )
        .into_response()
}

/// Vault shows absent custom metadata as `null`.
fn custom_value(custom: Map<String, Value>) -> Value {
    if custom.is_empty() {
        Value::Null
    } else {
        Value::Object(custom)
    }
}

fn version_metadata(custom: &Map<String, Value>, v: &SecretVersion) -> Value {
    json!({
        "created_time": timestamp(v.created_at),
        "custom_metadata": custom_value(custom.clone()),
        "deletion_time": v.deleted_at.map(timestamp).unwrap_or_default(),
        "destroyed": v.destroyed,
        "version": v.version,
    })
}

impl Kv<'_> {
    async fn read(&self, path: &str, version: Option<String>) -> Result<Response, ApiError> {
        let asked: u64 = match version.as_deref() {
            None => 0,
            Some(v) => v.parse().map_err(|_| {
                ApiError::Op(Error::InvalidRequest("version must be a number".into()))
            })?,
        };
        let read = self
            .service()
            .read_secret(self.caller, self.mount, path, asked)
            .await?;
        Ok(match read {
            SecretRead::Live {
                data,
                version,
                custom,
            } => envelope(
                StatusCode::OK,
                json!({ "data": data, "metadata": version_metadata(&custom, &version) }),
            ),
            // Vault answers a deleted or destroyed version with 404 and its
            // metadata.
            SecretRead::Gone { version, custom } => envelope(
                StatusCode::NOT_FOUND,
                json!({ "data": null, "metadata": version_metadata(&custom, &version) }),
            ),
        })
    }

    fn service(&self) -> &keyward_service::Service {
        &self.state.service
    }

    async fn write(&self, path: &str, body: &Bytes) -> Result<Response, ApiError> {
        self.caller
            .require(keyward_core::AdminScope::SecretsWrite)?;
        let body: WriteBody = parse(body)?;
        let written = self
            .service()
            .write_secret(self.caller, self.mount, path, body.data, body.options.cas)
            .await?;
        Ok(written_view(written))
    }

    async fn patch(&self, path: &str, body: &Bytes) -> Result<Response, ApiError> {
        self.caller
            .require(keyward_core::AdminScope::SecretsWrite)?;
        let body: WriteBody = parse(body)?;
        let written = self
            .service()
            .patch_secret(self.caller, self.mount, path, body.data, body.options.cas)
            .await?;
        Ok(written_view(written))
    }

    async fn delete_latest(&self, path: &str) -> Result<Response, ApiError> {
        self.service()
            .delete_current_version(self.caller, self.mount, path)
            .await?;
        Ok(StatusCode::NO_CONTENT.into_response())
    }

    async fn act(&self, path: &str, body: &Bytes, act: VersionAct) -> Result<Response, ApiError> {
        self.caller
            .require(keyward_core::AdminScope::SecretsWrite)?;
        let body: VersionsBody = parse(body)?;
        self.service()
            .act_on_versions(self.caller, self.mount, path, &body.versions, act)
            .await?;
        Ok(StatusCode::NO_CONTENT.into_response())
    }

    async fn read_meta(&self, path: &str) -> Result<Response, ApiError> {
        let found = self
            .service()
            .secret_metadata(self.caller, self.mount, path)
            .await?;
        let versions: Map<String, Value> = found
            .versions
            .iter()
            .map(|v| {
                (
                    v.version.to_string(),
                    json!({
                        "created_time": timestamp(v.created_at),
                        "deletion_time": v.deleted_at.map(timestamp).unwrap_or_default(),
                        "destroyed": v.destroyed,
                    }),
                )
            })
            .collect();
        let meta = found.meta;
        Ok(envelope(
            StatusCode::OK,
            json!({
                "cas_required": meta.cas_required,
                "created_time": timestamp(meta.created_at),
                "current_version": meta.current_version,
                "custom_metadata": custom_value(found.custom),
                "delete_version_after": "0s",
                "max_versions": meta.max_versions,
                "oldest_version": meta.oldest_version,
                "updated_time": timestamp(meta.updated_at),
                "versions": versions,
            }),
        ))
    }

    async fn write_meta(&self, path: &str, body: &Bytes) -> Result<Response, ApiError> {
        self.caller
            .require(keyward_core::AdminScope::SecretsWrite)?;
        let body: MetaBody = parse(body)?;
        never_expires(body.delete_version_after.as_deref())?;
        let changes = MetadataChanges {
            max_versions: body.max_versions,
            cas_required: body.cas_required,
            custom_metadata: body.custom_metadata,
        };
        self.service()
            .write_secret_metadata(self.caller, self.mount, path, changes)
            .await?;
        Ok(StatusCode::NO_CONTENT.into_response())
    }

    async fn delete_all(&self, path: &str) -> Result<Response, ApiError> {
        self.service()
            .destroy_secret(self.caller, self.mount, path)
            .await?;
        Ok(StatusCode::NO_CONTENT.into_response())
    }

    async fn list(&self, prefix: &str) -> Result<Response, ApiError> {
        let keys = self
            .service()
            .secret_names(self.caller, self.mount, prefix)
            .await?;
        Ok(envelope(StatusCode::OK, json!({ "keys": keys })))
    }

    async fn read_config(&self) -> Result<Response, ApiError> {
        let mount = self.service().mount_settings(self.caller, self.mount)?;
        Ok(envelope(
            StatusCode::OK,
            json!({
                "max_versions": mount.max_versions,
                "cas_required": mount.cas_required,
                "delete_version_after": "0s",
                "environment": mount.environment.as_str(),
            }),
        ))
    }

    async fn write_config(&self, body: &Bytes) -> Result<Response, ApiError> {
        self.caller.require(keyward_core::AdminScope::SysWrite)?;
        let body: ConfigBody = parse(body)?;
        never_expires(body.delete_version_after.as_deref())?;
        self.service()
            .configure_mount(
                self.caller,
                self.mount,
                body.max_versions,
                body.cas_required,
            )
            .await?;
        Ok(StatusCode::NO_CONTENT.into_response())
    }
}

/// The answer to a write: the new version's metadata.
fn written_view(written: keyward_service::secrets::Written) -> Response {
    envelope(
        StatusCode::OK,
        json!({
            "created_time": timestamp(written.created_at),
            "custom_metadata": custom_value(written.custom),
            "deletion_time": "",
            "destroyed": false,
            "version": written.version,
        }),
    )
}

fn never_expires(after: Option<&str>) -> Result<(), ApiError> {
    match after {
        None | Some("0s") | Some("0") | Some("") => Ok(()),
        Some(_) => Err(ApiError::Op(Error::InvalidRequest(
            "delete_version_after is not supported; versions are kept until deleted".into(),
        ))),
    }
}

/// `POST /v1/sys/mounts/{path}`: a KV v2 mount bound to an environment
/// (`options.environment`, default `live`), in the body Vault clients send.
#[derive(Deserialize)]
pub struct MountBody {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub options: Map<String, Value>,
    #[serde(default)]
    pub environment: Option<Environment>,
}

pub async fn create_mount(
    state: &AppState,
    caller: &Caller,
    path: &str,
    body: MountBody,
) -> Result<(), ApiError> {
    caller.require(keyward_core::AdminScope::SysWrite)?;
    // `options.version`, when given, is the string "2"; `kv` needs it.
    let version = body.options.get("version");
    let version_ok = match version {
        None => body.kind == "kv-v2",
        Some(v) => v.as_str() == Some("2"),
    };
    if !((body.kind == "kv-v2" || body.kind == "kv") && version_ok) {
        return Err(ApiError::Op(Error::InvalidRequest(
            "only KV version 2 mounts are supported (type kv, options.version 2)".into(),
        )));
    }
    let in_options = match body.options.get("environment") {
        None => None,
        Some(Value::String(s)) => Some(s.parse::<Environment>().map_err(|_| {
            ApiError::Op(Error::InvalidRequest(
                "environment must be live, test or dev".into(),
            ))
        })?),
        Some(_) => {
            return Err(ApiError::Op(Error::InvalidRequest(
                "options.environment must be live, test or dev".into(),
            )))
        }
    };
    state
        .service
        .create_mount(caller, path, body.environment.or(in_options))
        .await?;
    Ok(())
}
