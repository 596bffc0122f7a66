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

use keyward_core::AuditAction;
use std::collections::BTreeSet;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequestParts, Request};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use keyward_core::{AdminScope, Environment};
use keyward_crypto::RecordIdentity;
use keyward_store::{
    SecretMeta, SecretMetaPatch, SecretMount, SecretVersion, SecretWrite, StoreError, VersionAction,
};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::{audit_event, now};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::AppState;
use keyward_service::records::{metadata_identity, secret_identity};

/// Versions kept when neither the secret nor its mount says.
const DEFAULT_MAX_VERSIONS: u32 = 10;
/// Largest secret path accepted.
const MAX_PATH: usize = 512;
/// First path segments that name Keyward's own routes (or transit), so no
/// mount may take them.
const RESERVED_MOUNT_PATHS: [&str; 8] = [
    "sys",
    "keys",
    "apis",
    "tokens",
    "audit",
    "owners",
    "transit",
    "openapi.json",
];

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
        return Err(ApiError::NotFound("route"));
    };
    let (mount_name, rest) = rest.split_once('/').unwrap_or((rest, ""));
    // A reserved first segment is one of Keyward's own resources, never a
    // mount: a path under it that no route took is simply not a route.
    if mount_name.is_empty()
        || (RESERVED_MOUNT_PATHS.contains(&mount_name) && mount_name != "transit")
    {
        return Err(ApiError::NotFound("route"));
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
        name => Some(
            state
                .store
                .get_mount(name)
                .await?
                .ok_or(ApiError::NoMount)?,
        ),
    };
    let body = axum::body::to_bytes(body, crate::MAX_ENGINE_BODY_BYTES)
        .await
        .map_err(|_| ApiError::PayloadTooLarge)?;
    let Some(mount) = mount else {
        return super::transit::dispatch(&state, &caller, &parts.method, rest, listing, &body)
            .await;
    };
    // A mount outside the token's environments looks absent.
    if !caller.reaches_environment(mount.environment) {
        return Err(ApiError::NoMount);
    }
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
        (_, _) if operation != "config" && secret_path.is_empty() && !listing => {
            Err(ApiError::InvalidRequest("a secret path is required".into()))
        }
        ("metadata", _) if listing => kv.list(secret_path).await,
        ("data", Method::GET) => kv.read(checked(secret_path)?, version_param).await,
        ("data", Method::POST | Method::PUT) => kv.write(checked(secret_path)?, &body).await,
        ("data", Method::PATCH) => kv.patch(checked(secret_path)?, &body).await,
        ("data", Method::DELETE) => kv.delete_latest(checked(secret_path)?).await,
        ("delete", Method::POST | Method::PUT) => {
            kv.act(checked(secret_path)?, &body, Act::Delete).await
        }
        ("undelete", Method::POST | Method::PUT) => {
            kv.act(checked(secret_path)?, &body, Act::Undelete).await
        }
        ("destroy", Method::POST | Method::PUT) => {
            kv.act(checked(secret_path)?, &body, Act::Destroy).await
        }
        ("metadata", Method::GET) => kv.read_meta(checked(secret_path)?).await,
        ("metadata", Method::POST | Method::PUT) => {
            kv.write_meta(checked(secret_path)?, &body).await
        }
        ("metadata", Method::DELETE) => kv.delete_all(checked(secret_path)?).await,
        ("data" | "delete" | "undelete" | "destroy" | "metadata" | "config", _) => Err(
            ApiError::InvalidRequest("this method is not supported on this path".into()),
        ),
        _ => Err(ApiError::NotFound("route")),
    }
}

/// A failure to open a stored envelope: `TAMPERED` when it fails
/// authentication, the seal's answer otherwise.
pub(crate) fn sealed_or_tampered(e: keyward_service::seal::SealError) -> ApiError {
    match e {
        keyward_service::seal::SealError::Crypto(e) => e.into(),
        other => other.into(),
    }
}

/// A secret path: segments of printable characters, no `..`, bounded.
fn checked(path: &str) -> Result<&str, ApiError> {
    let ok = !path.is_empty()
        && path.len() <= MAX_PATH
        && !path.starts_with('/')
        && path
            .split('/')
            .all(|s| !s.is_empty() && s != "." && s != "..")
        && path.chars().all(|c| !c.is_control());
    if !ok {
        Err(ApiError::InvalidRequest(
            "a secret path is 1 to 512 characters of segments separated by /, without \
             control characters or . and .. segments"
                .into(),
        ))
    } else if keyward_core::key::contains_key(path) {
        // Paths are written to the audit log and shown in listings.
        Err(ApiError::InvalidRequest(
            "a secret path must not contain an API key or admin token".into(),
        ))
    } else {
        Ok(path)
    }
}

enum Act {
    Delete,
    Undelete,
    Destroy,
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
    fn key(&self, path: &str) -> String {
        format!("{}/{}", self.mount.path, path)
    }

    fn identity<'a>(&self, id: &'a str, version: u64) -> RecordIdentity<'a> {
        secret_identity(id, version)
    }

    /// The custom metadata of `meta`: opened with the keyring when sealed,
    /// as stored when written before metadata was sealed.
    async fn custom_metadata(
        &self,
        path: &str,
        meta: &SecretMeta,
    ) -> Result<Map<String, Value>, ApiError> {
        let Some(envelope) = &meta.custom_metadata_sealed else {
            return Ok(meta.custom_metadata.clone());
        };
        let id = self.key(path);
        let plaintext = self
            .state
            .barrier
            .open_envelope(&metadata_identity(&id), envelope)
            .await
            .map_err(sealed_or_tampered)?;
        serde_json::from_slice(&plaintext).map_err(ApiError::internal)
    }

    /// `custom` as the envelope stored for the secret at `path`.
    async fn seal_metadata(
        &self,
        path: &str,
        custom: &Map<String, Value>,
    ) -> Result<Vec<u8>, ApiError> {
        let keyring = self.state.barrier.keyring()?;
        let plaintext =
            zeroize::Zeroizing::new(serde_json::to_vec(custom).map_err(ApiError::internal)?);
        self.state.barrier.spend_keyring(1).await?;
        let id = self.key(path);
        keyring
            .encrypt(&metadata_identity(&id), &plaintext)
            .map_err(ApiError::internal)
    }

    /// Seals metadata still stored in the clear from before metadata was
    /// sealed, on a write to its secret.
    async fn seal_clear_metadata(
        &self,
        path: &str,
        meta: Option<&SecretMeta>,
    ) -> Result<(), ApiError> {
        let Some(meta) =
            meta.filter(|m| m.custom_metadata_sealed.is_none() && !m.custom_metadata.is_empty())
        else {
            return Ok(());
        };
        let patch = SecretMetaPatch {
            custom_metadata_sealed: Some(self.seal_metadata(path, &meta.custom_metadata).await?),
            ..SecretMetaPatch::default()
        };
        let event = self.event(AuditAction::SecretMetadata, path, json!({ "sealed": true }))?;
        self.state
            .store
            .patch_secret_meta(&self.mount.path, path, &patch, now(), &event)
            .await?;
        Ok(())
    }

    async fn audit(&self, action: AuditAction, path: &str, details: Value) -> Result<(), ApiError> {
        let event = audit_event(Some(self.caller), action, &self.key(path), details, now())?;
        self.state.store.append_audit(&[event]).await?;
        Ok(())
    }

    fn event(
        &self,
        action: AuditAction,
        path: &str,
        details: Value,
    ) -> Result<keyward_core::AuditEvent, ApiError> {
        audit_event(Some(self.caller), action, &self.key(path), details, now())
    }

    fn keep(&self, meta: Option<&SecretMeta>) -> u32 {
        [meta.map_or(0, |m| m.max_versions), self.mount.max_versions]
            .into_iter()
            .find(|v| *v > 0)
            .unwrap_or(DEFAULT_MAX_VERSIONS)
    }

    async fn read(&self, path: &str, version: Option<String>) -> Result<Response, ApiError> {
        self.caller.require(AdminScope::SecretsRead)?;
        let asked: u64 = match version.as_deref() {
            None => 0,
            Some(v) => v
                .parse()
                .map_err(|_| ApiError::InvalidRequest("version must be a number".into()))?,
        };
        // Sealed answers before any storage is read.
        self.state.barrier.keyring()?;
        let meta = self
            .state
            .store
            .secret_meta(&self.mount.path, path)
            .await?
            .ok_or(ApiError::NotFound("secret"))?;
        let wanted = if asked == 0 {
            meta.current_version
        } else {
            asked
        };
        let versions = self
            .state
            .store
            .secret_versions(&self.mount.path, path)
            .await?;
        let found = versions
            .iter()
            .find(|v| v.version == wanted)
            .ok_or(ApiError::NotFound("secret version"))?;
        let custom = self.custom_metadata(path, &meta).await?;
        let metadata = version_metadata(&custom, found);
        let value = match (&found.value, found.deleted_at) {
            (Some(value), None) if !found.destroyed => value,
            // Vault answers a deleted or destroyed version with 404 and its
            // metadata.
            _ => {
                return Ok(envelope(
                    StatusCode::NOT_FOUND,
                    json!({ "data": null, "metadata": metadata }),
                ))
            }
        };
        let id = self.key(path);
        let plaintext = self
            .state
            .barrier
            .open_envelope(&self.identity(&id, found.version), value)
            .await
            .map_err(sealed_or_tampered)?;
        let data: Value = serde_json::from_slice(&plaintext).map_err(ApiError::internal)?;
        self.audit(
            AuditAction::SecretRead,
            path,
            json!({ "version": found.version }),
        )
        .await?;
        Ok(envelope(
            StatusCode::OK,
            json!({ "data": data, "metadata": metadata }),
        ))
    }

    async fn write(&self, path: &str, body: &Bytes) -> Result<Response, ApiError> {
        self.caller.require(AdminScope::SecretsWrite)?;
        let body: WriteBody = parse(body)?;
        self.put(path, body.data, body.options.cas).await
    }

    /// A JSON merge patch of the latest version, written as a new version
    /// only if nobody wrote in between.
    async fn patch(&self, path: &str, body: &Bytes) -> Result<Response, ApiError> {
        self.caller.require(AdminScope::SecretsWrite)?;
        self.caller.require(AdminScope::SecretsRead)?;
        let body: WriteBody = parse(body)?;
        self.state.barrier.keyring()?;
        let meta = self
            .state
            .store
            .secret_meta(&self.mount.path, path)
            .await?
            .filter(|m| m.current_version > 0)
            .ok_or(ApiError::NotFound("secret"))?;
        let versions = self
            .state
            .store
            .secret_versions(&self.mount.path, path)
            .await?;
        let latest = versions
            .iter()
            .find(|v| v.version == meta.current_version && v.deleted_at.is_none() && !v.destroyed)
            .and_then(|v| v.value.as_ref())
            .ok_or(ApiError::NotFound("secret"))?;
        let id = self.key(path);
        let plaintext = self
            .state
            .barrier
            .open_envelope(&self.identity(&id, meta.current_version), latest)
            .await
            .map_err(sealed_or_tampered)?;
        let mut current: Map<String, Value> =
            serde_json::from_slice(&plaintext).map_err(ApiError::internal)?;
        for (k, v) in body.data {
            if v.is_null() {
                current.remove(&k);
            } else {
                current.insert(k, v);
            }
        }
        let cas = body.options.cas.or(Some(meta.current_version));
        self.put(path, current, cas).await
    }

    async fn put(
        &self,
        path: &str,
        data: Map<String, Value>,
        cas: Option<u64>,
    ) -> Result<Response, ApiError> {
        let keyring = self.state.barrier.keyring()?;
        let plaintext = zeroize::Zeroizing::new(
            serde_json::to_vec(&Value::Object(data)).map_err(ApiError::internal)?,
        );
        let id = self.key(path);
        // Without check-and-set, a lost race is retried on the new version.
        for _ in 0..5 {
            let meta = self.state.store.secret_meta(&self.mount.path, path).await?;
            let current = meta.as_ref().map_or(0, |m| m.current_version);
            let cas_required =
                self.mount.cas_required || meta.as_ref().is_some_and(|m| m.cas_required);
            match cas {
                None if cas_required => {
                    return Err(ApiError::InvalidRequest(
                        "check-and-set parameter required for this call".into(),
                    ))
                }
                Some(expected) if expected != current => {
                    return Err(ApiError::InvalidRequest(
                        "check-and-set parameter did not match the current version".into(),
                    ))
                }
                _ => {}
            }
            let version = current + 1;
            self.state.barrier.spend_keyring(1).await?;
            let value = keyring
                .encrypt(&self.identity(&id, version), &plaintext)
                .map_err(ApiError::internal)?;
            let at = now();
            let write = SecretWrite {
                mount: self.mount.path.clone(),
                path: path.to_owned(),
                version,
                replaces: current,
                value,
                keep: self.keep(meta.as_ref()),
                at,
            };
            let event = self.event(
                AuditAction::SecretWrite,
                path,
                json!({ "version": version }),
            )?;
            match self.state.store.write_secret(&write, &event).await {
                Ok(()) => {
                    let custom = match &meta {
                        Some(meta) => self.custom_metadata(path, meta).await?,
                        None => Map::new(),
                    };
                    // The version is written: a failure to seal old clear
                    // metadata must not read as a failed write (a retry
                    // would add a version). The next write tries again.
                    if let Err(e) = self.seal_clear_metadata(path, meta.as_ref()).await {
                        tracing::warn!(error = %e, "could not seal a secret's clear metadata");
                    }
                    return Ok(envelope(
                        StatusCode::OK,
                        json!({
                            "created_time": timestamp(at),
                            "custom_metadata": custom_value(custom),
                            "deletion_time": "",
                            "destroyed": false,
                            "version": version,
                        }),
                    ));
                }
                Err(StoreError::Conflict(_)) if cas.is_none() => continue,
                Err(StoreError::Conflict(_)) => {
                    return Err(ApiError::InvalidRequest(
                        "check-and-set parameter did not match the current version".into(),
                    ))
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(ApiError::Conflict(
            "the secret is being written by others; try again",
        ))
    }

    async fn delete_latest(&self, path: &str) -> Result<Response, ApiError> {
        self.caller.require(AdminScope::SecretsWrite)?;
        let meta = self
            .state
            .store
            .secret_meta(&self.mount.path, path)
            .await?
            .ok_or(ApiError::NotFound("secret"))?;
        self.apply(path, &[meta.current_version], Act::Delete).await
    }

    async fn act(&self, path: &str, body: &Bytes, act: Act) -> Result<Response, ApiError> {
        self.caller.require(AdminScope::SecretsWrite)?;
        let body: VersionsBody = parse(body)?;
        if body.versions.is_empty() {
            return Err(ApiError::InvalidRequest("no versions given".into()));
        }
        self.apply(path, &body.versions, act).await
    }

    /// Deletes, undeletes or destroys `versions`, audited.
    async fn apply(&self, path: &str, versions: &[u64], act: Act) -> Result<Response, ApiError> {
        let (action, name) = match act {
            Act::Delete => (VersionAction::Delete(now()), AuditAction::SecretDelete),
            Act::Undelete => (VersionAction::Undelete, AuditAction::SecretUndelete),
            Act::Destroy => (VersionAction::Destroy, AuditAction::SecretDestroy),
        };
        let event = self.event(name, path, json!({ "versions": versions }))?;
        self.state
            .store
            .act_on_versions(&self.mount.path, path, versions, action, &event)
            .await?;
        Ok(StatusCode::NO_CONTENT.into_response())
    }

    async fn read_meta(&self, path: &str) -> Result<Response, ApiError> {
        self.caller.require(AdminScope::SecretsRead)?;
        // Custom metadata is sealed like the values, so a sealed server
        // answers `SEALED` here too, before any storage is read.
        self.state.barrier.keyring()?;
        let meta = self
            .state
            .store
            .secret_meta(&self.mount.path, path)
            .await?
            .ok_or(ApiError::NotFound("secret"))?;
        let versions = self
            .state
            .store
            .secret_versions(&self.mount.path, path)
            .await?;
        let versions: Map<String, Value> = versions
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
        let custom = self.custom_metadata(path, &meta).await?;
        Ok(envelope(
            StatusCode::OK,
            json!({
                "cas_required": meta.cas_required,
                "created_time": timestamp(meta.created_at),
                "current_version": meta.current_version,
                "custom_metadata": custom_value(custom),
                "delete_version_after": "0s",
                "max_versions": meta.max_versions,
                "oldest_version": meta.oldest_version,
                "updated_time": timestamp(meta.updated_at),
                "versions": versions,
            }),
        ))
    }

    async fn write_meta(&self, path: &str, body: &Bytes) -> Result<Response, ApiError> {
        self.caller.require(AdminScope::SecretsWrite)?;
        let body: MetaBody = parse(body)?;
        never_expires(body.delete_version_after.as_deref())?;
        if let Some(custom) = &body.custom_metadata {
            if custom.len() > 64 || custom.values().any(|v| !v.is_string()) {
                return Err(ApiError::InvalidRequest(
                    "custom_metadata maps at most 64 keys to strings".into(),
                ));
            }
        }
        // New metadata is sealed; metadata left as it is but still in the
        // clear from before metadata was sealed is sealed with this write.
        let custom = match body.custom_metadata {
            Some(custom) => Some(custom),
            None => self
                .state
                .store
                .secret_meta(&self.mount.path, path)
                .await?
                .filter(|m| m.custom_metadata_sealed.is_none() && !m.custom_metadata.is_empty())
                .map(|m| m.custom_metadata),
        };
        let sealed = match &custom {
            Some(custom) => Some(self.seal_metadata(path, custom).await?),
            None => None,
        };
        let patch = SecretMetaPatch {
            max_versions: body.max_versions,
            cas_required: body.cas_required,
            custom_metadata: None,
            custom_metadata_sealed: sealed,
        };
        let event = self.event(AuditAction::SecretMetadata, path, json!({}))?;
        self.state
            .store
            .patch_secret_meta(&self.mount.path, path, &patch, now(), &event)
            .await?;
        Ok(StatusCode::NO_CONTENT.into_response())
    }

    async fn delete_all(&self, path: &str) -> Result<Response, ApiError> {
        self.caller.require(AdminScope::SecretsWrite)?;
        let event = self.event(AuditAction::SecretDestroyAll, path, json!({}))?;
        self.state
            .store
            .delete_secret(&self.mount.path, path, &event)
            .await?;
        Ok(StatusCode::NO_CONTENT.into_response())
    }

    /// The names directly under `prefix`; folders end in `/`.
    async fn list(&self, prefix: &str) -> Result<Response, ApiError> {
        self.caller.require(AdminScope::SecretsRead)?;
        let prefix = if prefix.is_empty() {
            String::new()
        } else {
            format!("{prefix}/")
        };
        let paths = self
            .state
            .store
            .secret_paths(&self.mount.path, &prefix)
            .await?;
        let keys: BTreeSet<String> = paths
            .iter()
            .filter_map(|p| p.strip_prefix(prefix.as_str()))
            .map(|rest| match rest.split_once('/') {
                Some((folder, _)) => format!("{folder}/"),
                None => rest.to_owned(),
            })
            .collect();
        if keys.is_empty() {
            return Err(ApiError::NotFound("secret"));
        }
        Ok(envelope(StatusCode::OK, json!({ "keys": keys })))
    }

    async fn read_config(&self) -> Result<Response, ApiError> {
        self.caller.require(AdminScope::SecretsRead)?;
        Ok(envelope(
            StatusCode::OK,
            json!({
                "max_versions": self.mount.max_versions,
                "cas_required": self.mount.cas_required,
                "delete_version_after": "0s",
                "environment": self.mount.environment.as_str(),
            }),
        ))
    }

    async fn write_config(&self, body: &Bytes) -> Result<Response, ApiError> {
        self.caller.require(AdminScope::SysWrite)?;
        let body: ConfigBody = parse(body)?;
        never_expires(body.delete_version_after.as_deref())?;
        let event = self.event(
            AuditAction::MountConfig,
            "",
            json!({
                "max_versions": body.max_versions, "cas_required": body.cas_required,
            }),
        )?;
        self.state
            .store
            .configure_mount(
                &self.mount.path,
                body.max_versions.unwrap_or(self.mount.max_versions),
                body.cas_required.unwrap_or(self.mount.cas_required),
                &event,
            )
            .await?;
        Ok(StatusCode::NO_CONTENT.into_response())
    }
}

fn never_expires(after: Option<&str>) -> Result<(), ApiError> {
    match after {
        None | Some("0s") | Some("0") | Some("") => Ok(()),
        Some(_) => Err(ApiError::InvalidRequest(
            "delete_version_after is not supported; versions are kept until deleted".into(),
        )),
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
    caller.require(AdminScope::SysWrite)?;
    let valid = !path.is_empty()
        && path.len() <= 64
        && path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && !RESERVED_MOUNT_PATHS.contains(&path)
        && !keyward_core::key::contains_key(path);
    if !valid {
        return Err(ApiError::InvalidRequest(
            "a mount path is 1-64 of [A-Za-z0-9_-], holds no API key or admin token, and is \
             not one of sys, keys, apis, tokens, audit, owners, transit"
                .into(),
        ));
    }
    // `options.version`, when given, is the string "2"; `kv` needs it.
    let version = body.options.get("version");
    let version_ok = match version {
        None => body.kind == "kv-v2",
        Some(v) => v.as_str() == Some("2"),
    };
    if !((body.kind == "kv-v2" || body.kind == "kv") && version_ok) {
        return Err(ApiError::InvalidRequest(
            "only KV version 2 mounts are supported (type kv, options.version 2)".into(),
        ));
    }
    let in_options = match body.options.get("environment") {
        None => None,
        Some(Value::String(s)) => Some(s.parse::<Environment>().map_err(|_| {
            ApiError::InvalidRequest("environment must be live, test or dev".into())
        })?),
        Some(_) => {
            return Err(ApiError::InvalidRequest(
                "options.environment must be live, test or dev".into(),
            ))
        }
    };
    let environment = body.environment.or(in_options).unwrap_or(Environment::Live);
    if !caller.reaches_environment(environment) {
        return Err(ApiError::Forbidden(
            "this token cannot reach that environment: mounting there needs a token limited to \
             it, or one without API or environment limits",
        ));
    }
    let at = now();
    let mount = SecretMount {
        path: path.to_owned(),
        environment,
        max_versions: 0,
        cas_required: false,
        created_at: at,
    };
    let event = audit_event(
        Some(caller),
        AuditAction::MountCreate,
        path,
        json!({ "environment": environment.as_str() }),
        at,
    )?;
    state.store.create_mount(&mount, &event).await?;
    Ok(())
}
