//! Transit in Vault's shape, under `/v1/transit/`: named, versioned keys
//! (`keys/`), and `encrypt`, `decrypt`, `rewrap`, `datakey`, `sign`,
//! `verify`, `hmac` and `random`. Key material never leaves the server:
//! reading a key shows its versions and, for signing keys, public keys.
//!
//! Each version's material is stored as an envelope of the keyring bound to
//! the key's name and version. Loaded keys are kept in memory for
//! [`CACHE_TTL`] (so a rotation or `min_decryption_version` made on another
//! node applies within it) and dropped when the server is sealed. Key
//! management is audited; the cryptographic operations are not, since one
//! audit row per encrypt would be a database write per request.
//!
//! Every key belongs to one environment (`live` unless its creator chose
//! another) and, when its creator chose, to some APIs. Every operation on a
//! key, and the listing, sees only keys within the token's reach: a key
//! outside it answers exactly as a key that does not exist.

use keyward_core::AuditAction;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use keyward_core::{AdminScope, ApiId, Environment};
use keyward_crypto::transit::{self, KeyType, KeyVersion, Marshaling, TransitError};
use keyward_crypto::{CryptoError, Keyring};
use keyward_store::{StoreError, TransitKey, TransitKeyVersion};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use subtle::ConstantTimeEq;
use time::format_description::well_known::Rfc3339;
use zeroize::Zeroizing;

use super::kv::envelope;
use super::{audit_event, now};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::AppState;
use keyward_service::records::identity;
use keyward_service::transit::{LoadedKey, TransitCache};

/// How long a loaded key is used before it is read again.
pub const CACHE_TTL: Duration = Duration::from_secs(1);
/// Most items in one `batch_input`.
const MAX_BATCH: usize = 10_000;

pub async fn dispatch(
    state: &AppState,
    caller: &Caller,
    method: &Method,
    rest: &str,
    listing: bool,
    body: &Bytes,
) -> Result<Response, ApiError> {
    let segments: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
    let t = Transit { state, caller };
    match (method, segments.as_slice()) {
        (_, ["keys"] | ["keys", ""]) if listing => t.list().await,
        (&Method::POST | &Method::PUT, ["keys", name]) => t.create(name, body).await,
        (&Method::GET, ["keys", name]) => t.read(name).await,
        (&Method::DELETE, ["keys", name]) => t.delete(name).await,
        (&Method::POST | &Method::PUT, ["keys", name, "rotate"]) => t.rotate(name).await,
        (&Method::POST | &Method::PUT, ["keys", name, "config"]) => t.config(name, body).await,
        (&Method::POST | &Method::PUT, ["encrypt", name]) => t.encrypt(name, body).await,
        (&Method::POST | &Method::PUT, ["decrypt", name]) => t.decrypt(name, body).await,
        (&Method::POST | &Method::PUT, ["rewrap", name]) => t.rewrap(name, body).await,
        (&Method::POST | &Method::PUT, ["datakey", kind, name]) => {
            t.datakey(kind, name, body).await
        }
        (&Method::POST | &Method::PUT, ["sign", name] | ["sign", name, _]) => {
            t.sign(name, body).await
        }
        (&Method::POST | &Method::PUT, ["verify", name] | ["verify", name, _]) => {
            t.verify(name, body).await
        }
        (&Method::POST | &Method::PUT, ["hmac", name]) => t.hmac(name, None, body).await,
        (&Method::POST | &Method::PUT, ["hmac", name, algorithm]) => {
            t.hmac(name, Some(algorithm), body).await
        }
        (&Method::POST | &Method::PUT, ["random"]) => t.random(None, body).await,
        (&Method::POST | &Method::PUT, ["random", bytes]) => t.random(Some(bytes), body).await,
        _ => Err(ApiError::NotFound("route")),
    }
}

struct Transit<'a> {
    state: &'a AppState,
    caller: &'a Caller,
}

/// A JSON body; an empty one (or `null`) is `{}`, as Vault clients send for
/// actions without parameters.
fn parse<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) || body.trim_ascii() == b"null" {
        return super::parse_json_bytes(b"{}");
    }
    super::parse_json_bytes(body)
}

fn bad(message: &str) -> ApiError {
    ApiError::InvalidRequest(message.to_owned())
}

fn b64(field: &str, text: &str) -> Result<Zeroizing<Vec<u8>>, ApiError> {
    STANDARD
        .decode(text)
        .map(Zeroizing::new)
        .map_err(|_| ApiError::InvalidRequest(format!("{field} must be base64")))
}

fn valid_name(name: &str) -> Result<&str, ApiError> {
    if !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        Ok(name)
    } else {
        Err(bad("a key name is 1-128 of [A-Za-z0-9._-]"))
    }
}

/// Associated data of a transit ciphertext: the key's name and version.
fn aad(name: &str, version: u32) -> Vec<u8> {
    let mut aad = b"keyward/transit/v1/".to_vec();
    aad.extend_from_slice(name.as_bytes());
    aad.push(0);
    aad.extend_from_slice(&version.to_be_bytes());
    aad
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    derived: bool,
    #[serde(default)]
    exportable: bool,
    #[serde(default)]
    allow_plaintext_backup: bool,
    /// Accepted for Vault clients; only `false` is supported.
    #[serde(default)]
    convergent_encryption: bool,
    /// Accepted for Vault clients; only `0` (no automatic rotation).
    auto_rotate_period: Option<Value>,
    /// The environment the key serves; `live` when left out.
    environment: Option<Environment>,
    /// The APIs the key serves; left out, those the token is limited to
    /// (none in particular for a token without API limits).
    api_ids: Option<Vec<ApiId>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigBody {
    min_decryption_version: Option<u32>,
    min_encryption_version: Option<u32>,
    deletion_allowed: Option<bool>,
}

#[derive(Deserialize, Default)]
struct Item {
    plaintext: Option<String>,
    ciphertext: Option<String>,
    context: Option<String>,
    key_version: Option<u32>,
}

/// One item's fields, or `batch_input` (fields spelled out rather than
/// flattened: serde's flatten buffers the whole body first).
#[derive(Deserialize)]
struct BatchBody {
    plaintext: Option<String>,
    ciphertext: Option<String>,
    context: Option<String>,
    key_version: Option<u32>,
    batch_input: Option<Vec<Item>>,
}

impl BatchBody {
    fn take_single(&mut self) -> Item {
        Item {
            plaintext: self.plaintext.take(),
            ciphertext: self.ciphertext.take(),
            context: self.context.take(),
            key_version: self.key_version,
        }
    }
}

#[derive(Deserialize)]
struct SignBody {
    input: String,
    #[serde(default)]
    prehashed: bool,
    marshaling_algorithm: Option<String>,
    hash_algorithm: Option<String>,
    key_version: Option<u32>,
    signature: Option<String>,
    hmac: Option<String>,
    algorithm: Option<String>,
}

#[derive(Deserialize)]
struct DataKeyBody {
    context: Option<String>,
    bits: Option<u32>,
}

#[derive(Deserialize)]
struct RandomBody {
    bytes: Option<usize>,
    format: Option<String>,
}

/// Whether `key` is within the caller's reach: its environment is one the
/// token reaches and, when the key serves some APIs, the token reaches all
/// of them (a key serving no API in particular is reached, as a secrets
/// mount is, by every token of its environment).
fn reaches(caller: &Caller, key: &TransitKey) -> bool {
    caller.reaches_environment(key.environment)
        && (key.api_ids.is_none() || super::within(&key.api_ids, &caller.token.api_ids))
}

/// The answer for a key that does not exist, or is out of the token's reach.
fn absent() -> ApiError {
    ApiError::NotFound("transit key")
}

fn marshaling(name: Option<&str>) -> Result<Marshaling, ApiError> {
    match name.unwrap_or("asn1") {
        "asn1" => Ok(Marshaling::Asn1),
        "jws" | "raw" => Ok(Marshaling::Raw),
        "recoverable" => Ok(Marshaling::Recoverable),
        _ => Err(bad("marshaling_algorithm is asn1, jws or recoverable")),
    }
}

impl Transit<'_> {
    fn keyring(&self) -> Result<Arc<Keyring>, ApiError> {
        Ok(self.state.barrier.keyring()?)
    }

    fn cache(&self) -> &TransitCache {
        self.state.barrier.transit_cache()
    }

    fn forget(&self, name: &str) {
        self.cache().remove(name);
    }

    async fn audit_event(
        &self,
        action: AuditAction,
        name: &str,
        details: Value,
    ) -> Result<keyward_core::AuditEvent, ApiError> {
        audit_event(
            Some(self.caller),
            action,
            &format!("transit/{name}"),
            details,
            now(),
        )
    }

    /// The key, from memory when loaded within [`CACHE_TTL`].
    async fn load(&self, name: &str) -> Result<Arc<LoadedKey>, ApiError> {
        self.keyring()?;
        if let Some(entry) = self.cache().get(name) {
            if entry.0.elapsed() < CACHE_TTL {
                if !reaches(self.caller, &entry.1.meta) {
                    return Err(absent());
                }
                return Ok(Arc::clone(&entry.1));
            }
        }
        let (meta, stored) = self.stored(name).await?;
        let kind = KeyType::parse(&meta.key_type).ok_or_else(|| {
            ApiError::internal(StoreError::Corrupt {
                table: "transit_keys",
                detail: "unknown key type".into(),
            })
        })?;
        let mut versions = BTreeMap::new();
        for version in stored {
            let material = self
                .state
                .barrier
                .open_envelope(&identity(name, version.version), &version.material)
                .await
                .map_err(super::kv::sealed_or_tampered)?;
            let opened = KeyVersion::from_material(kind, material)?;
            versions.insert(version.version, (opened, version));
        }
        let loaded = Arc::new(LoadedKey {
            meta,
            kind,
            versions,
        });
        // Not kept if the server was sealed meanwhile.
        if self.state.barrier.keyring().is_ok() {
            self.cache()
                .insert(name.to_owned(), (Instant::now(), Arc::clone(&loaded)));
        }
        Ok(loaded)
    }

    /// The key's settings and stored versions, when it exists within the
    /// token's reach.
    async fn stored(&self, name: &str) -> Result<(TransitKey, Vec<TransitKeyVersion>), ApiError> {
        self.state
            .store
            .get_transit_key(name)
            .await?
            .filter(|(meta, _)| reaches(self.caller, meta))
            .ok_or_else(absent)
    }

    /// Where a new key belongs: the environment and APIs asked for, which
    /// must be within the token's reach.
    async fn placement(
        &self,
        environment: Option<Environment>,
        api_ids: Option<Vec<ApiId>>,
    ) -> Result<(Environment, Option<Vec<ApiId>>), ApiError> {
        let environment = environment.unwrap_or(Environment::Live);
        if !self.caller.reaches_environment(environment) {
            return Err(ApiError::Forbidden(
                "this token cannot reach the key's environment (live unless `environment` says \
                 otherwise): name an environment it is limited to",
            ));
        }
        let api_ids = match api_ids {
            None => self.caller.token.api_ids.clone(),
            Some(ids) if ids.is_empty() => {
                return Err(bad("api_ids names at least one API, or is left out"));
            }
            Some(mut ids) => {
                ids.sort();
                ids.dedup();
                for id in &ids {
                    let reached = self
                        .caller
                        .token
                        .api_ids
                        .as_ref()
                        .is_none_or(|own| own.contains(id));
                    let exists = reached && self.state.store.get_api(id).await?.is_some();
                    if !exists {
                        return Err(bad(
                            "api_ids names an API that does not exist or is outside this \
                             token's reach: name APIs listed by GET /v1/apis",
                        ));
                    }
                }
                Some(ids)
            }
        };
        Ok((environment, api_ids))
    }

    async fn create(&self, name: &str, body: &Bytes) -> Result<Response, ApiError> {
        self.caller.require(AdminScope::TransitWrite)?;
        let name = valid_name(name)?;
        let body: CreateBody = parse(body)?;
        if body.exportable || body.allow_plaintext_backup {
            return Err(bad("transit keys are never exportable"));
        }
        if body.convergent_encryption {
            return Err(bad("convergent encryption is not supported"));
        }
        if body
            .auto_rotate_period
            .as_ref()
            .is_some_and(|p| p != &json!(0) && p != &json!("0") && p != &json!("0s"))
        {
            return Err(bad(
                "automatic rotation is not supported; rotate with keys/NAME/rotate",
            ));
        }
        let kind = match body.kind.as_deref() {
            None => KeyType::Aes256Gcm96,
            Some(t) => KeyType::parse(t).ok_or_else(|| {
                bad("type is aes256-gcm96, chacha20-poly1305, ed25519, ecdsa-p256, ecdsa-secp256k1 or hmac")
            })?,
        };
        if body.derived && !kind.encrypts() {
            return Err(bad("only encryption keys can be derived"));
        }
        let (environment, api_ids) = self.placement(body.environment, body.api_ids).await?;
        let keyring = self.keyring()?;
        self.state.barrier.spend_keyring(1).await?;
        let generated = KeyVersion::generate(kind)?;
        let at = now();
        let first = TransitKeyVersion {
            version: 1,
            material: keyring.encrypt(&identity(name, 1), generated.material())?,
            public_key: generated.public_key(),
            created_at: at,
        };
        let key = TransitKey {
            name: name.to_owned(),
            key_type: kind.as_str().to_owned(),
            derived: body.derived,
            latest_version: 1,
            min_decryption_version: 1,
            min_encryption_version: 0,
            deletion_allowed: false,
            environment,
            api_ids,
            created_at: at,
            updated_at: at,
        };
        let event = self
            .audit_event(
                AuditAction::TransitCreate,
                name,
                json!({
                    "type": kind.as_str(),
                    "environment": key.environment.as_str(),
                    "api_ids": key.api_ids,
                }),
            )
            .await?;
        match self
            .state
            .store
            .create_transit_key(&key, &first, &event)
            .await
        {
            Ok(()) => Ok(StatusCode::NO_CONTENT.into_response()),
            Err(StoreError::Conflict(_)) => {
                Err(ApiError::Conflict("a transit key with this name exists"))
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn read(&self, name: &str) -> Result<Response, ApiError> {
        self.caller.require(AdminScope::TransitUse)?;
        let key = self.load(name).await?;
        let keys: Map<String, Value> = key
            .versions
            .iter()
            .map(|(version, (_, stored))| {
                let created = stored.created_at.format(&Rfc3339).unwrap_or_default();
                let value = match &stored.public_key {
                    Some(public) => json!({
                        "creation_time": created,
                        "public_key": STANDARD.encode(public),
                        "name": key.kind.as_str(),
                    }),
                    None => json!(stored.created_at.unix_timestamp()),
                };
                (version.to_string(), value)
            })
            .collect();
        Ok(envelope(
            StatusCode::OK,
            json!({
                "name": key.meta.name,
                "type": key.kind.as_str(),
                "derived": key.meta.derived,
                "exportable": false,
                "allow_plaintext_backup": false,
                "deletion_allowed": key.meta.deletion_allowed,
                "latest_version": key.meta.latest_version,
                "min_available_version": 0,
                "min_decryption_version": key.meta.min_decryption_version,
                "min_encryption_version": key.meta.min_encryption_version,
                "supports_encryption": key.kind.encrypts(),
                "supports_decryption": key.kind.encrypts(),
                "supports_derivation": key.kind.encrypts(),
                "supports_signing": key.kind.signs(),
                "environment": key.meta.environment.as_str(),
                "api_ids": key.meta.api_ids,
                "keys": keys,
            }),
        ))
    }

    async fn list(&self) -> Result<Response, ApiError> {
        self.caller.require(AdminScope::TransitUse)?;
        let names: Vec<String> = self
            .state
            .store
            .list_transit_keys()
            .await?
            .into_iter()
            .filter(|key| reaches(self.caller, key))
            .map(|key| key.name)
            .collect();
        if names.is_empty() {
            return Err(absent());
        }
        Ok(envelope(StatusCode::OK, json!({ "keys": names })))
    }

    async fn delete(&self, name: &str) -> Result<Response, ApiError> {
        self.caller.require(AdminScope::TransitWrite)?;
        self.stored(name).await?;
        let event = self
            .audit_event(AuditAction::TransitDelete, name, json!({}))
            .await?;
        match self.state.store.delete_transit_key(name, &event).await {
            Ok(()) => {}
            Err(StoreError::NotFound) => return Err(absent()),
            Err(e) => return Err(e.into()),
        }
        self.forget(name);
        Ok(StatusCode::NO_CONTENT.into_response())
    }

    async fn rotate(&self, name: &str) -> Result<Response, ApiError> {
        self.caller.require(AdminScope::TransitWrite)?;
        self.stored(name).await?;
        rotate_key(self.state, name, Some(self.caller), "requested").await?;
        self.read(name).await
    }

    async fn config(&self, name: &str, body: &Bytes) -> Result<Response, ApiError> {
        self.caller.require(AdminScope::TransitWrite)?;
        let body: ConfigBody = parse(body)?;
        let (meta, _) = self.stored(name).await?;
        let min_decryption = body
            .min_decryption_version
            .unwrap_or(meta.min_decryption_version);
        let min_encryption = body
            .min_encryption_version
            .unwrap_or(meta.min_encryption_version);
        if min_decryption == 0 || min_decryption > meta.latest_version {
            return Err(bad(
                "min_decryption_version must be between 1 and the latest version",
            ));
        }
        if min_encryption > meta.latest_version
            || (min_encryption != 0 && min_encryption < min_decryption)
        {
            return Err(bad(
                "min_encryption_version must be 0, or between min_decryption_version and the latest version",
            ));
        }
        let deletion_allowed = body.deletion_allowed.unwrap_or(meta.deletion_allowed);
        let event = self
            .audit_event(
                AuditAction::TransitConfig,
                name,
                json!({
                    "min_decryption_version": min_decryption,
                    "min_encryption_version": min_encryption,
                    "deletion_allowed": deletion_allowed,
                }),
            )
            .await?;
        self.state
            .store
            .configure_transit_key(
                name,
                min_decryption,
                min_encryption,
                deletion_allowed,
                &event,
            )
            .await?;
        self.forget(name);
        self.read(name).await
    }

    fn encryption_version(&self, key: &LoadedKey, asked: Option<u32>) -> Result<u32, ApiError> {
        let latest = key.meta.latest_version;
        let version = match asked {
            Some(0) | None => latest,
            Some(v) => v,
        };
        let floor = key
            .meta
            .min_encryption_version
            .max(key.meta.min_decryption_version);
        if version > latest || version < floor || !key.versions.contains_key(&version) {
            return Err(bad("this key version cannot encrypt"));
        }
        Ok(version)
    }

    fn encrypt_one(&self, key: &LoadedKey, item: &Item) -> Result<Value, ApiError> {
        let plaintext = b64(
            "plaintext",
            item.plaintext
                .as_deref()
                .ok_or_else(|| bad("plaintext is required"))?,
        )?;
        let context = item
            .context
            .as_deref()
            .map(|c| b64("context", c))
            .transpose()?;
        let version = self.encryption_version(key, item.key_version)?;
        let (opened, _) = &key.versions[&version];
        let sealed = opened.encrypt(
            &aad(&key.meta.name, version),
            key.meta.derived,
            context.as_deref().map(|c| c.as_slice()),
            &plaintext,
        )?;
        Ok(json!({ "ciphertext": transit::encode(version, &sealed), "key_version": version }))
    }

    fn open_one(
        &self,
        key: &LoadedKey,
        ciphertext: &str,
        context: Option<&str>,
    ) -> Result<(u32, Zeroizing<Vec<u8>>), ApiError> {
        let (version, sealed, opened) = decodable(key, ciphertext)?;
        let context = context.map(|c| b64("context", c)).transpose()?;
        let plaintext = opened.decrypt(
            &aad(&key.meta.name, version),
            key.meta.derived,
            context.as_deref().map(|c| c.as_slice()),
            &sealed,
        )?;
        Ok((version, plaintext))
    }

    fn decrypt_one(&self, key: &LoadedKey, item: &Item) -> Result<Value, ApiError> {
        let ciphertext = item
            .ciphertext
            .as_deref()
            .ok_or_else(|| bad("ciphertext is required"))?;
        let (_, plaintext) = self.open_one(key, ciphertext, item.context.as_deref())?;
        Ok(json!({ "plaintext": STANDARD.encode(&*plaintext) }))
    }

    fn rewrap_one(&self, key: &LoadedKey, item: &Item) -> Result<Value, ApiError> {
        let ciphertext = item
            .ciphertext
            .as_deref()
            .ok_or_else(|| bad("ciphertext is required"))?;
        let (_, plaintext) = self.open_one(key, ciphertext, item.context.as_deref())?;
        let again = Item {
            plaintext: Some(STANDARD.encode(&*plaintext)),
            context: item.context.clone(),
            key_version: item.key_version,
            ciphertext: None,
        };
        self.encrypt_one(key, &again)
    }

    /// Counts the encryptions `items` will make against the key versions
    /// they will use, and rotates a latest version that reached the limit.
    async fn spend_encryptions(&self, key: &LoadedKey, items: &[&Item]) -> Result<(), ApiError> {
        let mut per_version: BTreeMap<u32, u64> = BTreeMap::new();
        for item in items {
            if let Ok(version) = self.encryption_version(key, item.key_version) {
                *per_version.entry(version).or_default() += 1;
            }
        }
        for (version, n) in per_version {
            let target = keyward_store::UseTarget::Transit {
                name: key.meta.name.clone(),
                version,
            };
            if self.state.barrier.spend(target, n).await? && version == key.meta.latest_version {
                match rotate_key(self.state, &key.meta.name, None, "usage limit").await {
                    // Another request rotated it first.
                    Ok(_) | Err(ApiError::Conflict(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    /// One item, or each of `batch_input` (errors reported per item).
    async fn batch(
        &self,
        name: &str,
        body: &Bytes,
        one: fn(&Self, &LoadedKey, &Item) -> Result<Value, ApiError>,
        encrypts: bool,
    ) -> Result<Response, ApiError> {
        self.caller.require(AdminScope::TransitUse)?;
        let mut body: BatchBody = parse(body)?;
        let single = body.take_single();
        let key = self.load(name).await?;
        if !key.kind.encrypts() {
            return Err(bad("this key type cannot encrypt or decrypt"));
        }
        let items: Vec<&Item> = match &body.batch_input {
            Some(items) => items.iter().collect(),
            None => vec![&single],
        };
        if encrypts {
            self.spend_encryptions(&key, &items).await?;
        }
        match body.batch_input {
            Some(items) => {
                if items.is_empty() || items.len() > MAX_BATCH {
                    return Err(bad("batch_input holds 1 to 10000 items"));
                }
                let results: Vec<Value> = items
                    .iter()
                    .map(|item| match one(self, &key, item) {
                        Ok(value) => value,
                        Err(e) => json!({ "error": e.to_string() }),
                    })
                    .collect();
                Ok(envelope(
                    StatusCode::OK,
                    json!({ "batch_results": results }),
                ))
            }
            None => Ok(envelope(StatusCode::OK, one(self, &key, &single)?)),
        }
    }

    async fn encrypt(&self, name: &str, body: &Bytes) -> Result<Response, ApiError> {
        self.batch(name, body, Self::encrypt_one, true).await
    }

    async fn decrypt(&self, name: &str, body: &Bytes) -> Result<Response, ApiError> {
        self.batch(name, body, Self::decrypt_one, false).await
    }

    async fn rewrap(&self, name: &str, body: &Bytes) -> Result<Response, ApiError> {
        self.batch(name, body, Self::rewrap_one, true).await
    }

    async fn datakey(&self, kind: &str, name: &str, body: &Bytes) -> Result<Response, ApiError> {
        self.caller.require(AdminScope::TransitUse)?;
        let show = match kind {
            "plaintext" => true,
            "wrapped" => false,
            _ => return Err(ApiError::NotFound("route")),
        };
        let body: DataKeyBody = parse(body)?;
        let bits = body.bits.unwrap_or(256);
        if !matches!(bits, 128 | 256 | 512) {
            return Err(bad("bits is 128, 256 or 512"));
        }
        let key = self.load(name).await?;
        if !key.kind.encrypts() {
            return Err(bad("this key type cannot make data keys"));
        }
        let mut data_key = Zeroizing::new(vec![0u8; bits as usize / 8]);
        keyward_crypto::secret::fill_random(&mut data_key)?;
        let item = Item {
            plaintext: Some(STANDARD.encode(&*data_key)),
            context: body.context,
            key_version: None,
            ciphertext: None,
        };
        self.spend_encryptions(&key, &[&item]).await?;
        let mut result = self.encrypt_one(&key, &item)?;
        if show {
            result["plaintext"] = json!(STANDARD.encode(&*data_key));
        }
        Ok(envelope(StatusCode::OK, result))
    }

    async fn sign(&self, name: &str, body: &Bytes) -> Result<Response, ApiError> {
        self.caller.require(AdminScope::TransitUse)?;
        let body: SignBody = parse(body)?;
        if body
            .hash_algorithm
            .as_deref()
            .is_some_and(|h| h != "sha2-256")
        {
            return Err(bad(
                "hash_algorithm is sha2-256 (or sign a prehashed input)",
            ));
        }
        let key = self.load(name).await?;
        if !key.kind.signs() {
            return Err(bad("this key type cannot sign"));
        }
        let (version, opened) = usable(&key, body.key_version)?;
        let input = b64("input", &body.input)?;
        let signature = opened.sign(
            &input,
            body.prehashed,
            marshaling(body.marshaling_algorithm.as_deref())?,
        )?;
        Ok(envelope(
            StatusCode::OK,
            json!({ "signature": transit::encode(version, &signature), "key_version": version }),
        ))
    }

    async fn verify(&self, name: &str, body: &Bytes) -> Result<Response, ApiError> {
        self.caller.require(AdminScope::TransitUse)?;
        let body: SignBody = parse(body)?;
        let key = self.load(name).await?;
        let input = b64("input", &body.input)?;
        let (text, is_hmac) = match (&body.signature, &body.hmac) {
            (Some(s), None) => (s.as_str(), false),
            (None, Some(h)) => (h.as_str(), true),
            _ => return Err(bad("give either signature or hmac")),
        };
        let (_, bytes, opened) = decodable(&key, text)?;
        let valid = if is_hmac {
            let sha512 = sha512(body.algorithm.as_deref())?;
            let expected = opened.hmac(sha512, &input)?;
            bool::from(expected.ct_eq(&bytes))
        } else {
            if !key.kind.signs() {
                return Err(bad("this key type cannot verify signatures"));
            }
            opened.verify(
                &input,
                body.prehashed,
                marshaling(body.marshaling_algorithm.as_deref())?,
                &bytes,
            )?
        };
        Ok(envelope(StatusCode::OK, json!({ "valid": valid })))
    }

    async fn hmac(
        &self,
        name: &str,
        algorithm: Option<&str>,
        body: &Bytes,
    ) -> Result<Response, ApiError> {
        self.caller.require(AdminScope::TransitUse)?;
        let body: SignBody = parse(body)?;
        let sha512 = sha512(algorithm.or(body.algorithm.as_deref()))?;
        let key = self.load(name).await?;
        let (version, opened) = usable(&key, body.key_version)?;
        let input = b64("input", &body.input)?;
        let mac = opened.hmac(sha512, &input)?;
        Ok(envelope(
            StatusCode::OK,
            json!({ "hmac": transit::encode(version, &mac), "key_version": version }),
        ))
    }

    async fn random(&self, bytes: Option<&str>, body: &Bytes) -> Result<Response, ApiError> {
        self.caller.require(AdminScope::TransitUse)?;
        let body: RandomBody = parse(body)?;
        let count = match bytes {
            Some(b) => b.parse().map_err(|_| bad("bytes must be a number"))?,
            None => body.bytes.unwrap_or(32),
        };
        if count == 0 || count > 1024 * 1024 {
            return Err(bad("bytes is 1 to 1048576"));
        }
        let mut out = Zeroizing::new(vec![0u8; count]);
        keyward_crypto::secret::fill_random(&mut out)?;
        let text = match body.format.as_deref().unwrap_or("base64") {
            "base64" => STANDARD.encode(&*out),
            "hex" => out.iter().map(|b| format!("{b:02x}")).collect(),
            _ => return Err(bad("format is base64 or hex")),
        };
        Ok(envelope(StatusCode::OK, json!({ "random_bytes": text })))
    }
}

/// The version `asked` (0 or none: the latest) to sign or MAC with, if
/// policy still allows it.
fn usable(key: &LoadedKey, asked: Option<u32>) -> Result<(u32, &KeyVersion), ApiError> {
    let version = match asked {
        None | Some(0) => key.meta.latest_version,
        Some(v) => v,
    };
    key.versions
        .get(&version)
        .filter(|_| version >= key.meta.min_decryption_version)
        .map(|(opened, _)| (version, opened))
        .ok_or_else(|| bad("this key version cannot be used"))
}

/// The version, bytes and key version of a `kw:v…` text, if policy still
/// lets that version decrypt or verify.
fn decodable<'k>(
    key: &'k LoadedKey,
    text: &str,
) -> Result<(u32, Vec<u8>, &'k KeyVersion), ApiError> {
    let (version, bytes) = transit::decode(text)?;
    if version < key.meta.min_decryption_version {
        return Err(bad(
            "ciphertext or signature version is disallowed by policy (min_decryption_version)",
        ));
    }
    let (opened, _) = key
        .versions
        .get(&version)
        .ok_or_else(|| bad("no such key version"))?;
    Ok((version, bytes, opened))
}

/// Adds a version to a transit key. `reason` is audited: `requested`, or
/// `usage limit` when the latest version has made enough encryptions.
async fn rotate_key(
    state: &AppState,
    name: &str,
    actor: Option<&Caller>,
    reason: &str,
) -> Result<u32, ApiError> {
    let keyring = state.barrier.keyring()?;
    let (meta, _) = state
        .store
        .get_transit_key(name)
        .await?
        .ok_or_else(absent)?;
    let kind = KeyType::parse(&meta.key_type)
        .ok_or_else(|| ApiError::internal(CryptoError::Malformed("unknown key type")))?;
    let version = meta.latest_version + 1;
    state.barrier.spend_keyring(1).await?;
    let generated = KeyVersion::generate(kind)?;
    let stored = TransitKeyVersion {
        version,
        material: keyring.encrypt(&identity(name, version), generated.material())?,
        public_key: generated.public_key(),
        created_at: now(),
    };
    let event = audit_event(
        actor,
        AuditAction::TransitRotate,
        &format!("transit/{name}"),
        json!({ "version": version, "reason": reason }),
        now(),
    )?;
    state
        .store
        .add_transit_key_version(name, &stored, &event)
        .await?;
    state.barrier.transit_cache().remove(name);
    Ok(version)
}

fn sha512(algorithm: Option<&str>) -> Result<bool, ApiError> {
    match algorithm.unwrap_or("sha2-256") {
        "sha2-256" => Ok(false),
        "sha2-512" => Ok(true),
        _ => Err(bad("algorithm is sha2-256 or sha2-512")),
    }
}

impl From<TransitError> for ApiError {
    fn from(e: TransitError) -> Self {
        ApiError::InvalidRequest(e.to_string())
    }
}
