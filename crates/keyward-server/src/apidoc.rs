//! What the OpenAPI document says beyond each handler's own annotation:
//! the error answers every route shares, and the KV v2 and transit routes,
//! which the router's fallback dispatches (their mounts are chosen at run
//! time) and which are therefore described here, one doc-only operation per
//! route.
//!
//! The shared answers: 401 on every operation that needs a token (none, a
//! malformed one, or one unknown, revoked or expired), 403 when the token
//! lacks the scope or reach; 400 for a body or query the server refuses and
//! 413 for a body over the limit. An operation's own annotation names the
//! rest (404, 409, 503) and wins where both name a status.

#![allow(dead_code)]

use serde_json::json;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::schema::{
    AllOfBuilder, AnyOf, AnyOfBuilder, ArrayItems, KnownFormat, OneOfBuilder, Schema, SchemaFormat,
    SchemaType, Type,
};
use utoipa::openapi::Required;
use utoipa::openapi::{
    ContentBuilder, ObjectBuilder, OpenApi as OpenApiDoc, Ref, RefOr, ResponseBuilder,
};
use utoipa::Number;
use utoipa::{IntoParams, Modify, ToSchema};

use keyward_proto::ErrorResponse;

/// States the range of every unsigned integer: its format (`uint32`, …)
/// is not a bound JSON Schema validators apply, so each one without a
/// `maximum` gets its type's.
pub(crate) struct IntegerBounds;

impl Modify for IntegerBounds {
    fn modify(&self, doc: &mut OpenApiDoc) {
        if let Some(components) = doc.components.as_mut() {
            components.schemas.values_mut().for_each(bound);
        }
        for item in doc.paths.paths.values_mut() {
            for operation in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                for parameter in operation.parameters.iter_mut().flatten() {
                    parameter.schema.iter_mut().for_each(bound);
                }
                if let Some(body) = operation.request_body.as_mut() {
                    for content in body.content.values_mut() {
                        content.schema.iter_mut().for_each(bound);
                    }
                }
            }
        }
    }
}

fn bound(schema: &mut RefOr<Schema>) {
    let RefOr::T(schema) = schema else {
        return;
    };
    match schema {
        Schema::Object(object) => {
            if object.maximum.is_none() {
                let max = match &object.format {
                    Some(SchemaFormat::KnownFormat(KnownFormat::UInt8)) => Some(u64::from(u8::MAX)),
                    Some(SchemaFormat::KnownFormat(KnownFormat::UInt16)) => {
                        Some(u64::from(u16::MAX))
                    }
                    Some(SchemaFormat::KnownFormat(KnownFormat::UInt32)) => {
                        Some(u64::from(u32::MAX))
                    }
                    Some(SchemaFormat::KnownFormat(KnownFormat::UInt64)) => Some(u64::MAX),
                    _ => None,
                };
                if let Some(max) = max.and_then(|m| usize::try_from(m).ok()) {
                    object.maximum = Some(Number::UInt(max));
                }
            }
            // utoipa writes these formats as `u-int8` …; the registry's
            // names are `uint8` ….
            let registered = match &object.format {
                Some(SchemaFormat::KnownFormat(KnownFormat::UInt8)) => Some("uint8"),
                Some(SchemaFormat::KnownFormat(KnownFormat::UInt16)) => Some("uint16"),
                Some(SchemaFormat::KnownFormat(KnownFormat::UInt32)) => Some("uint32"),
                Some(SchemaFormat::KnownFormat(KnownFormat::UInt64)) => Some("uint64"),
                _ => None,
            };
            if let Some(name) = registered {
                object.format = Some(SchemaFormat::Custom(name.to_owned()));
            }
            object.properties.values_mut().for_each(bound);
        }
        Schema::Array(array) => {
            if let ArrayItems::RefOrSchema(items) = &mut array.items {
                bound(items);
            }
        }
        Schema::OneOf(one) => one.items.iter_mut().for_each(bound),
        Schema::AllOf(all) => all.items.iter_mut().for_each(bound),
        Schema::AnyOf(any) => any.items.iter_mut().for_each(bound),
        _ => {}
    }
}

/// Adds the shared error answers to every operation.
pub(crate) struct ErrorAnswers;

impl Modify for ErrorAnswers {
    fn modify(&self, doc: &mut OpenApiDoc) {
        for item in doc.paths.paths.values_mut() {
            for operation in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                add_shared_answers(operation);
            }
        }
    }
}

fn add_shared_answers(operation: &mut Operation) {
    let secured = operation
        .security
        .as_ref()
        .is_some_and(|requirements| !requirements.is_empty());
    let has_query = operation
        .parameters
        .iter()
        .flatten()
        .any(|p| p.parameter_in == ParameterIn::Query);
    let has_body = operation.request_body.is_some();
    let mut shared = Vec::new();
    if secured {
        shared.push((
            "401",
            "No valid admin token: none, malformed, unknown, revoked or expired",
        ));
        shared.push(("403", "The token lacks the scope or the reach this needs"));
    }
    if has_body || has_query {
        shared.push(("400", "The request is invalid"));
    }
    if has_body {
        shared.push(("413", "The request body is too large"));
    }
    for (status, description) in shared {
        operation
            .responses
            .responses
            .entry(status.to_owned())
            .or_insert_with(|| error_response(description).into());
    }
}

fn error_response(description: &str) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorResponse")))
                .build(),
        )
        .build()
}

/// Vault's response envelope: what the operation returns is in `data`.
#[derive(ToSchema)]
pub struct VaultResponse {
    pub request_id: String,
    pub lease_id: String,
    pub renewable: bool,
    pub lease_duration: u32,
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
}

/// A KV read's 404: an error, or the envelope of a deleted or destroyed
/// version (documentation only).
pub struct KvNotFound;

impl utoipa::PartialSchema for KvNotFound {
    fn schema() -> RefOr<Schema> {
        RefOr::T(Schema::OneOf(
            OneOfBuilder::new()
                .item(Ref::from_schema_name("ErrorResponse"))
                .item(Ref::from_schema_name("VaultResponse"))
                .build(),
        ))
    }
}

impl ToSchema for KvNotFound {}

/// A secrets mount and a secret's path in it.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct SecretParams {
    /// The mount, e.g. `secret` (`GET /v1/sys/mounts` lists them).
    #[param(pattern = r"^[A-Za-z0-9_-]{1,64}$")]
    pub mount: String,
    /// The secret's path, at most 512 bytes; its segments (separated by
    /// `/`) are neither empty, `.` nor `..` and hold no control character.
    #[param(pattern = r"^(?!\.\.?$)[^\u0000-\u001F\u007F-\u009F/]{1,512}$")]
    pub path: String,
}

/// A secrets mount.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct MountParams {
    /// The mount, e.g. `secret`.
    #[param(pattern = r"^[A-Za-z0-9_-]{1,64}$")]
    pub mount: String,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct VersionQuery {
    /// The version to read; the latest when absent or 0.
    pub version: Option<u64>,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// `true`: list the names under the path (Vault's `LIST`).
    #[param(value_type = String, pattern = "^true$")]
    pub list: String,
}

#[derive(ToSchema, serde::Deserialize, Default)]
pub struct WriteOptions {
    /// Check-and-set: the version the write expects to replace (0: the
    /// secret must not exist).
    pub cas: Option<u64>,
}

/// `POST /v1/{mount}/data/{path}`.
#[derive(ToSchema, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretWrite {
    /// The secret's key-value pairs.
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
    #[serde(default)]
    pub options: WriteOptions,
}

/// `PATCH /v1/{mount}/data/{path}`: pairs merged into the latest version.
#[derive(ToSchema, serde::Deserialize)]
pub struct SecretPatch {
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
    #[serde(default)]
    pub options: WriteOptions,
}

/// The versions a delete, undelete or destroy applies to.
#[derive(ToSchema, serde::Deserialize)]
pub struct SecretVersions {
    #[schema(min_items = 1)]
    pub versions: Vec<u64>,
}

/// `POST /v1/{mount}/metadata/{path}`.
#[derive(ToSchema, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretMetadataWrite {
    /// Versions kept; 0 means the mount's setting.
    pub max_versions: Option<u32>,
    pub cas_required: Option<bool>,
    /// At most 64 keys, each mapped to a string.
    #[schema(value_type = Option<Object>)]
    pub custom_metadata: Option<serde_json::Value>,
    /// Only `0s` (never) is supported.
    #[schema(pattern = "^(0s|0)?$")]
    pub delete_version_after: Option<String>,
}

/// `POST /v1/{mount}/config`.
#[derive(ToSchema, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MountConfig {
    pub max_versions: Option<u32>,
    pub cas_required: Option<bool>,
    /// Only `0s` (never) is supported.
    #[schema(pattern = "^(0s|0)?$")]
    pub delete_version_after: Option<String>,
}

/// Reads a secret's latest version, or the one `version` names.
#[utoipa::path(get, path = "/v1/{mount}/data/{path}", tag = "secrets",
    params(SecretParams, VersionQuery),
    responses((status = 200, body = VaultResponse),
              (status = 404, body = KvNotFound,
               description = "No such secret, or the version is deleted or destroyed \
                   (then, as Vault does, its metadata in the envelope)"),
              (status = 503, body = ErrorResponse)),
    security(("admin_token" = ["secrets:read"])))]
pub fn kv_read() {}

/// Writes a new version of a secret.
#[utoipa::path(post, path = "/v1/{mount}/data/{path}", tag = "secrets",
    params(SecretParams), request_body = SecretWrite,
    responses((status = 200, body = VaultResponse), (status = 404, body = ErrorResponse),
              (status = 409, body = ErrorResponse), (status = 503, body = ErrorResponse)),
    security(("admin_token" = ["secrets:write"])))]
pub fn kv_write() {}

/// Writes a new version: the latest merged with `data`.
#[utoipa::path(patch, path = "/v1/{mount}/data/{path}", tag = "secrets",
    params(SecretParams), request_body(content = SecretPatch,
        content_type = "application/merge-patch+json"),
    responses((status = 200, body = VaultResponse), (status = 404, body = ErrorResponse),
              (status = 409, body = ErrorResponse), (status = 503, body = ErrorResponse)),
    security(("admin_token" = ["secrets:write"])))]
pub fn kv_patch() {}

/// Deletes (soft) the latest version.
#[utoipa::path(delete, path = "/v1/{mount}/data/{path}", tag = "secrets",
    params(SecretParams),
    responses((status = 204), (status = 404, body = ErrorResponse)),
    security(("admin_token" = ["secrets:write"])))]
pub fn kv_delete_latest() {}

/// Deletes (soft) the given versions.
#[utoipa::path(post, path = "/v1/{mount}/delete/{path}", tag = "secrets",
    params(SecretParams), request_body = SecretVersions,
    responses((status = 204), (status = 404, body = ErrorResponse)),
    security(("admin_token" = ["secrets:write"])))]
pub fn kv_delete() {}

/// Restores soft-deleted versions.
#[utoipa::path(post, path = "/v1/{mount}/undelete/{path}", tag = "secrets",
    params(SecretParams), request_body = SecretVersions,
    responses((status = 204), (status = 404, body = ErrorResponse)),
    security(("admin_token" = ["secrets:write"])))]
pub fn kv_undelete() {}

/// Destroys the given versions' values for good.
#[utoipa::path(post, path = "/v1/{mount}/destroy/{path}", tag = "secrets",
    params(SecretParams), request_body = SecretVersions,
    responses((status = 204), (status = 404, body = ErrorResponse)),
    security(("admin_token" = ["secrets:write"])))]
pub fn kv_destroy() {}

/// Reads a secret's metadata and versions; with `list=true`, lists the
/// names under the path instead.
#[utoipa::path(get, path = "/v1/{mount}/metadata/{path}", tag = "secrets",
    params(SecretParams),
    responses((status = 200, body = VaultResponse), (status = 404, body = ErrorResponse)),
    security(("admin_token" = ["secrets:read"])))]
pub fn kv_read_metadata() {}

/// Lists the names directly under the mount's root; folders end in `/`.
#[utoipa::path(get, path = "/v1/{mount}/metadata", tag = "secrets",
    params(MountParams, ListQuery),
    responses((status = 200, body = VaultResponse), (status = 404, body = ErrorResponse)),
    security(("admin_token" = ["secrets:read"])))]
pub fn kv_list() {}

/// Sets a secret's metadata.
#[utoipa::path(post, path = "/v1/{mount}/metadata/{path}", tag = "secrets",
    params(SecretParams), request_body = SecretMetadataWrite,
    responses((status = 204), (status = 404, body = ErrorResponse)),
    security(("admin_token" = ["secrets:write"])))]
pub fn kv_write_metadata() {}

/// Deletes a secret with all its versions and metadata.
#[utoipa::path(delete, path = "/v1/{mount}/metadata/{path}", tag = "secrets",
    params(SecretParams),
    responses((status = 204), (status = 404, body = ErrorResponse)),
    security(("admin_token" = ["secrets:write"])))]
pub fn kv_delete_all() {}

/// Reads the mount's settings.
#[utoipa::path(get, path = "/v1/{mount}/config", tag = "secrets",
    params(MountParams),
    responses((status = 200, body = VaultResponse), (status = 404, body = ErrorResponse)),
    security(("admin_token" = ["secrets:read"])))]
pub fn kv_read_config() {}

/// Changes the mount's settings.
#[utoipa::path(post, path = "/v1/{mount}/config", tag = "secrets",
    params(MountParams), request_body = MountConfig,
    responses((status = 204), (status = 404, body = ErrorResponse)),
    security(("admin_token" = ["sys:write"])))]
pub fn kv_write_config() {}

/// A transit key's name.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct KeyName {
    /// 1–128 of `A-Z a-z 0-9 . _ -`, not `.` or `..`.
    #[param(pattern = r"^(?!\.\.?$)[A-Za-z0-9._-]{1,128}$")]
    pub name: String,
}

/// The kind of key a transit key is.
#[derive(ToSchema)]
pub enum TransitKeyType {
    #[schema(rename = "aes256-gcm96")]
    Aes256Gcm96,
    #[schema(rename = "chacha20-poly1305")]
    ChaCha20Poly1305,
    #[schema(rename = "ed25519")]
    Ed25519,
    #[schema(rename = "ecdsa-p256")]
    EcdsaP256,
    #[schema(rename = "ecdsa-secp256k1")]
    EcdsaSecp256k1,
    #[schema(rename = "hmac")]
    Hmac,
}

/// `false`, the only value supported (documentation only).
pub struct OnlyFalse;

impl utoipa::PartialSchema for OnlyFalse {
    fn schema() -> RefOr<Schema> {
        enum_schema("Only `false` is supported.", [json!(false)])
    }
}

impl ToSchema for OnlyFalse {}

/// `0`, `"0"` or `"0s"`: Keyward does not rotate keys by itself
/// (documentation only).
pub struct NoAutoRotation;

impl utoipa::PartialSchema for NoAutoRotation {
    fn schema() -> RefOr<Schema> {
        enum_schema(
            "Only no automatic rotation: rotate with `keys/{name}/rotate`.",
            [json!(0), json!("0"), json!("0s")],
        )
    }
}

impl ToSchema for NoAutoRotation {}

/// The sizes of a data key (documentation only).
pub struct DataKeyBits;

impl utoipa::PartialSchema for DataKeyBits {
    fn schema() -> RefOr<Schema> {
        enum_schema(
            "Bits of the data key: 128, 256 (default) or 512.",
            [json!(128), json!(256), json!(512)],
        )
    }
}

impl ToSchema for DataKeyBits {}

fn enum_schema<const N: usize>(description: &str, values: [serde_json::Value; N]) -> RefOr<Schema> {
    RefOr::T(Schema::Object(
        ObjectBuilder::new()
            .description(Some(description))
            .enum_values(Some(values))
            .build(),
    ))
}

/// `POST /v1/transit/keys/{name}`; every field is optional.
#[derive(ToSchema, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransitKeyCreate {
    /// `aes256-gcm96` when absent.
    #[serde(rename = "type")]
    #[schema(value_type = Option<TransitKeyType>)]
    pub kind: Option<String>,
    /// Derive a key per `context` (encryption key types only).
    #[serde(default)]
    pub derived: bool,
    /// Only `false`: key material never leaves the server.
    #[serde(default)]
    #[schema(value_type = OnlyFalse)]
    pub exportable: bool,
    #[serde(default)]
    #[schema(value_type = OnlyFalse)]
    pub allow_plaintext_backup: bool,
    #[serde(default)]
    #[schema(value_type = OnlyFalse)]
    pub convergent_encryption: bool,
    #[schema(value_type = Option<NoAutoRotation>)]
    pub auto_rotate_period: Option<u32>,
}

/// `POST /v1/transit/keys/{name}/config`.
#[derive(ToSchema, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransitKeyConfig {
    /// The oldest version that may still decrypt, at most the latest.
    #[schema(minimum = 1)]
    pub min_decryption_version: Option<u32>,
    /// The oldest version that may encrypt; 0 means the latest.
    pub min_encryption_version: Option<u32>,
    /// Whether the key may be deleted.
    pub deletion_allowed: Option<bool>,
}

/// One item of an encrypt, decrypt or rewrap. Each item is checked on its
/// own: a malformed one gets its error in its `batch_results` entry.
#[derive(ToSchema, serde::Deserialize)]
pub struct TransitItem {
    /// Base64 plaintext (encrypt).
    pub plaintext: Option<String>,
    /// `kw:vN:…` ciphertext (decrypt, rewrap).
    pub ciphertext: Option<String>,
    /// Base64 context, for derived keys.
    pub context: Option<String>,
    /// The version to encrypt with; the latest when absent.
    pub key_version: Option<u32>,
}

/// One item's fields, or `batch_input` with up to 10,000 items (then the
/// single fields are not read). A malformed single item is refused (400).
#[derive(ToSchema, serde::Deserialize)]
pub struct TransitBatch {
    /// Base64 plaintext (encrypt).
    pub plaintext: Option<String>,
    /// `kw:vN:…` ciphertext (decrypt, rewrap).
    pub ciphertext: Option<String>,
    /// Base64 context, for derived keys.
    pub context: Option<String>,
    pub key_version: Option<u32>,
    #[schema(max_items = 10_000)]
    pub batch_input: Option<Vec<TransitItem>>,
}

/// A sign, verify or HMAC request.
#[derive(ToSchema, serde::Deserialize)]
pub struct TransitSign {
    /// Base64 input.
    #[schema(pattern = r"^([A-Za-z0-9+/]{4})*([A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$")]
    pub input: String,
    #[serde(default)]
    pub prehashed: bool,
    /// `asn1` (default), `jws` or `recoverable`.
    #[schema(pattern = "^(asn1|jws|raw|recoverable)$")]
    pub marshaling_algorithm: Option<String>,
    /// Only `sha2-256`.
    #[schema(pattern = "^sha2-256$")]
    pub hash_algorithm: Option<String>,
    pub key_version: Option<u32>,
    /// To verify: a `kw:vN:…` signature.
    pub signature: Option<String>,
    /// To verify: a `kw:vN:…` HMAC.
    pub hmac: Option<String>,
    /// HMAC: `sha2-256` (default) or `sha2-512`.
    #[schema(pattern = "^sha2-(256|512)$")]
    pub algorithm: Option<String>,
}

/// `POST /v1/transit/datakey/{kind}/{name}`.
#[derive(ToSchema, serde::Deserialize)]
pub struct TransitDataKey {
    /// Base64 context, for derived keys.
    pub context: Option<String>,
    #[schema(value_type = Option<DataKeyBits>)]
    pub bits: Option<u32>,
}

/// `POST /v1/transit/random`.
#[derive(ToSchema, serde::Deserialize)]
pub struct TransitRandom {
    /// 1 to 1,048,576; 32 when absent.
    #[schema(minimum = 1, maximum = 1_048_576)]
    pub bytes: Option<u32>,
    /// `base64` (default) or `hex`.
    #[schema(pattern = "^(base64|hex)$")]
    pub format: Option<String>,
}

/// Lists the transit keys (Vault's `LIST`).
#[utoipa::path(get, path = "/v1/transit/keys", tag = "transit", params(ListQuery),
    responses((status = 200, body = VaultResponse), (status = 404, body = ErrorResponse)),
    security(("admin_token" = ["transit:use"])))]
pub fn transit_list() {}

/// Creates a transit key.
#[utoipa::path(post, path = "/v1/transit/keys/{name}", tag = "transit", params(KeyName),
    request_body(content = Option<TransitKeyCreate>),
    responses((status = 204), (status = 409, body = ErrorResponse),
              (status = 503, body = ErrorResponse)),
    security(("admin_token" = ["transit:write"])))]
pub fn transit_create() {}

/// Reads a transit key: its versions and, for signing keys, public keys.
#[utoipa::path(get, path = "/v1/transit/keys/{name}", tag = "transit", params(KeyName),
    responses((status = 200, body = VaultResponse), (status = 404, body = ErrorResponse),
              (status = 503, body = ErrorResponse)),
    security(("admin_token" = ["transit:use"])))]
pub fn transit_read() {}

/// Deletes a transit key whose `deletion_allowed` is set.
#[utoipa::path(delete, path = "/v1/transit/keys/{name}", tag = "transit", params(KeyName),
    responses((status = 204), (status = 404, body = ErrorResponse),
              (status = 409, body = ErrorResponse)),
    security(("admin_token" = ["transit:write"])))]
pub fn transit_delete() {}

/// Adds a version to a transit key; new encryptions use it.
#[utoipa::path(post, path = "/v1/transit/keys/{name}/rotate", tag = "transit", params(KeyName),
    responses((status = 200, body = VaultResponse), (status = 204),
              (status = 404, body = ErrorResponse), (status = 503, body = ErrorResponse)),
    security(("admin_token" = ["transit:write"])))]
pub fn transit_rotate() {}

/// Changes a transit key's version policy and deletion setting.
#[utoipa::path(post, path = "/v1/transit/keys/{name}/config", tag = "transit", params(KeyName),
    request_body(content = Option<TransitKeyConfig>),
    responses((status = 200, body = VaultResponse), (status = 204),
              (status = 404, body = ErrorResponse), (status = 503, body = ErrorResponse)),
    security(("admin_token" = ["transit:write"])))]
pub fn transit_config() {}

/// Encrypts base64 plaintexts.
#[utoipa::path(post, path = "/v1/transit/encrypt/{name}", tag = "transit", params(KeyName),
    request_body = TransitBatch,
    responses((status = 200, body = VaultResponse), (status = 404, body = ErrorResponse),
              (status = 503, body = ErrorResponse)),
    security(("admin_token" = ["transit:use"])))]
pub fn transit_encrypt() {}

/// Decrypts ciphertexts.
#[utoipa::path(post, path = "/v1/transit/decrypt/{name}", tag = "transit", params(KeyName),
    request_body = TransitBatch,
    responses((status = 200, body = VaultResponse), (status = 404, body = ErrorResponse),
              (status = 503, body = ErrorResponse)),
    security(("admin_token" = ["transit:use"])))]
pub fn transit_decrypt() {}

/// Re-encrypts ciphertexts under the latest version.
#[utoipa::path(post, path = "/v1/transit/rewrap/{name}", tag = "transit", params(KeyName),
    request_body = TransitBatch,
    responses((status = 200, body = VaultResponse), (status = 404, body = ErrorResponse),
              (status = 503, body = ErrorResponse)),
    security(("admin_token" = ["transit:use"])))]
pub fn transit_rewrap() {}

/// The kind of data key and the transit key that wraps it.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct DataKeyParams {
    /// `plaintext` (the key and its wrapped form) or `wrapped` (only the
    /// wrapped form).
    #[param(pattern = "^(plaintext|wrapped)$")]
    pub kind: String,
    #[param(pattern = r"^(?!\.\.?$)[A-Za-z0-9._-]{1,128}$")]
    pub name: String,
}

/// Makes a random data key wrapped by a transit key.
#[utoipa::path(post, path = "/v1/transit/datakey/{kind}/{name}", tag = "transit",
    params(DataKeyParams), request_body(content = Option<TransitDataKey>),
    responses((status = 200, body = VaultResponse), (status = 404, body = ErrorResponse),
              (status = 503, body = ErrorResponse)),
    security(("admin_token" = ["transit:use"])))]
pub fn transit_datakey() {}

/// Signs base64 input with a signing key.
#[utoipa::path(post, path = "/v1/transit/sign/{name}", tag = "transit", params(KeyName),
    request_body = TransitSign,
    responses((status = 200, body = VaultResponse), (status = 404, body = ErrorResponse),
              (status = 503, body = ErrorResponse)),
    security(("admin_token" = ["transit:use"])))]
pub fn transit_sign() {}

/// Verifies a signature or an HMAC.
#[utoipa::path(post, path = "/v1/transit/verify/{name}", tag = "transit", params(KeyName),
    request_body = TransitSign,
    responses((status = 200, body = VaultResponse), (status = 404, body = ErrorResponse),
              (status = 503, body = ErrorResponse)),
    security(("admin_token" = ["transit:use"])))]
pub fn transit_verify() {}

/// Computes an HMAC of base64 input.
#[utoipa::path(post, path = "/v1/transit/hmac/{name}", tag = "transit", params(KeyName),
    request_body = TransitSign,
    responses((status = 200, body = VaultResponse), (status = 404, body = ErrorResponse),
              (status = 503, body = ErrorResponse)),
    security(("admin_token" = ["transit:use"])))]
pub fn transit_hmac() {}

/// Random bytes from the server's generator.
#[utoipa::path(post, path = "/v1/transit/random", tag = "transit",
    request_body(content = Option<TransitRandom>),
    responses((status = 200, body = VaultResponse)),
    security(("admin_token" = ["transit:use"])))]
pub fn transit_random() {}

/// `POST /v1/sys/mounts/{path}`: a KV version 2 mount, in the body Vault
/// clients send (documentation only).
pub struct MountCreate;

impl utoipa::PartialSchema for MountCreate {
    fn schema() -> RefOr<Schema> {
        let environment = || {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(["live", "test", "dev"]))
        };
        // `kv` names its version in `options.version`; `kv-v2` already
        // says it, and may leave `options.version` out.
        let options = |version_required: bool| {
            let mut options = ObjectBuilder::new()
                .schema_type(Type::Object)
                .property(
                    "version",
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .enum_values(Some(["2"])),
                )
                .property("environment", environment());
            if version_required {
                options = options.required("version");
            }
            options
        };
        let form = |kind: &str, version_required: bool| {
            let mut form = ObjectBuilder::new()
                .schema_type(Type::Object)
                .property(
                    "type",
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .enum_values(Some([kind])),
                )
                .property("options", options(version_required))
                .property(
                    "environment",
                    ObjectBuilder::new()
                        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
                        .enum_values(Some([
                            json!("live"),
                            json!("test"),
                            json!("dev"),
                            json!(null),
                        ])),
                )
                .required("type");
            if version_required {
                form = form.required("options");
            }
            form
        };
        RefOr::T(Schema::OneOf(
            OneOfBuilder::new()
                .description(Some(
                    "`type` `kv-v2`, or `kv` with `options.version` `2`. The environment \
                     (`environment` or `options.environment`) is `live` by default.",
                ))
                .item(form("kv-v2", false))
                .item(form("kv", true))
                .build(),
        ))
    }
}

impl ToSchema for MountCreate {}

/// Rules of the request shapes that no single field states: the filters
/// of a bulk revocation, the two forms of an unseal, the share counts of a
/// rekey, the names and number of an API's key roles, and the bodies an
/// action may leave out.
pub(crate) struct Constraints;

impl Modify for Constraints {
    fn modify(&self, doc: &mut OpenApiDoc) {
        if let Some(components) = doc.components.as_mut() {
            let schemas = &mut components.schemas;
            let one_of_present = |fields: &[(&str, Schema)]| {
                let mut any = AnyOfBuilder::new();
                for (field, schema) in fields {
                    any = any.item(
                        ObjectBuilder::new()
                            .property(*field, schema.clone())
                            .required(*field),
                    );
                }
                any.build()
            };
            let string = || Schema::Object(ObjectBuilder::new().schema_type(Type::String).build());
            let not_null = |t: Type| Schema::Object(ObjectBuilder::new().schema_type(t).build());
            narrow(
                schemas,
                "BulkRevokeRequest",
                "At least one of `owner`, `api_id`, `environment`, `created_before` \
                 and `scope`, not null.",
                one_of_present(&[
                    ("owner", string()),
                    ("api_id", string()),
                    ("environment", string()),
                    ("created_before", string()),
                    ("scope", string()),
                ]),
            );
            narrow(
                schemas,
                "UnsealRequest",
                "`key` (a share), or `reset` true.",
                one_of_present(&[
                    ("key", string()),
                    (
                        "reset",
                        Schema::Object(
                            ObjectBuilder::new()
                                .schema_type(Type::Boolean)
                                .enum_values(Some([true]))
                                .build(),
                        ),
                    ),
                ]),
            );
            narrow(
                schemas,
                "RekeyRequest",
                "`secret_shares` and `secret_threshold` (ignored by a pkcs11 seal).",
                one_of_present(&[("secret_shares", not_null(Type::Integer))]),
            );
            narrow(
                schemas,
                "RekeyRequest",
                "",
                one_of_present(&[("secret_threshold", not_null(Type::Integer))]),
            );
            for name in ["ApiCreate", "ApiUpdate"] {
                if let Some(RefOr::T(Schema::Object(body))) = schemas.get_mut(name) {
                    if let Some(RefOr::T(roles)) = body.properties.get_mut("roles") {
                        bound_role_map(roles);
                    }
                }
            }
        }
        for (path, item) in doc.paths.paths.iter_mut() {
            let optional = matches!(
                path.as_str(),
                "/v1/keys/{id}/revoke"
                    | "/v1/keys/{id}/rotate"
                    | "/v1/transit/keys/{name}"
                    | "/v1/transit/keys/{name}/config"
                    | "/v1/transit/datakey/{kind}/{name}"
                    | "/v1/transit/random"
            );
            if !optional {
                continue;
            }
            if let Some(body) = item.post.as_mut().and_then(|op| op.request_body.as_mut()) {
                body.required = Some(Required::False);
            }
        }
    }
}

/// States what a role map's keys may be (a role name) and how many there
/// may be, which a map's schema from its Rust type cannot say.
fn bound_role_map(schema: &mut Schema) {
    match schema {
        Schema::Object(map) => {
            map.property_names = Some(Box::new(Schema::Object(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some(r"^[A-Za-z0-9_.:-]{1,64}$"))
                    .min_length(Some(1))
                    .max_length(Some(64))
                    .build(),
            )));
            map.max_properties = Some(64);
            if let Some(utoipa::openapi::schema::AdditionalProperties::RefOr(RefOr::T(
                Schema::Array(scopes),
            ))) = map.additional_properties.as_deref_mut()
            {
                scopes.max_items = Some(64);
            }
        }
        Schema::OneOf(one) => one.items.iter_mut().for_each(|item| {
            if let RefOr::T(item) = item {
                bound_role_map(item);
            }
        }),
        Schema::AnyOf(any) => any.items.iter_mut().for_each(|item| {
            if let RefOr::T(item) = item {
                bound_role_map(item);
            }
        }),
        _ => {}
    }
}

/// Adds `rule` to the component schema `name`: a value must then match both.
fn narrow(
    schemas: &mut std::collections::BTreeMap<String, RefOr<Schema>>,
    name: &str,
    description: &str,
    rule: AnyOf,
) {
    let Some(original) = schemas.remove(name) else {
        return;
    };
    let mut all = AllOfBuilder::new()
        .item(original)
        .item(RefOr::T(Schema::AnyOf(rule)));
    if !description.is_empty() {
        all = all.description(Some(description));
    }
    schemas.insert(name.to_owned(), RefOr::T(Schema::AllOf(all.build())));
}
