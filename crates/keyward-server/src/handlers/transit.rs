//! Transit in Vault's shape, under `/v1/transit/`: named, versioned keys
//! (`keys/`), and `encrypt`, `decrypt`, `rewrap`, `datakey`, `sign`,
//! `verify`, `hmac` and `random`. Key material never leaves the server:
//! reading a key shows its versions and, for signing keys, public keys.
//!
//! This module reads and writes Vault's wire format (base64 fields,
//! `batch_input`, the response envelope); the operations, their access
//! checks and audit are [`keyward_service::transit`]'s.

use axum::body::Bytes;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use keyward_core::{ApiId, Environment};
use keyward_service::transit::{
    Ciphertext, KeyType, LoadedKey, Marshaling, NewTransitKey, Plaintext, Proof, SignInput,
    TransitPolicy, Versioned,
};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use time::format_description::well_known::Rfc3339;
use zeroize::Zeroizing;

use super::kv::envelope;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::AppState;
use keyward_service::Error;

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
        _ => Err(ApiError::Op(Error::NotFound("route"))),
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
    ApiError::Op(Error::InvalidRequest(message.to_owned()))
}

fn b64(field: &str, text: &str) -> Result<Zeroizing<Vec<u8>>, ApiError> {
    STANDARD
        .decode(text)
        .map(Zeroizing::new)
        .map_err(|_| ApiError::Op(Error::InvalidRequest(format!("{field} must be base64"))))
}

fn b64_context(context: Option<&str>) -> Result<Option<Zeroizing<Vec<u8>>>, ApiError> {
    context.map(|c| b64("context", c)).transpose()
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
    /// The items: `batch_input`, or the one item spelled out at the top.
    fn items(self) -> Result<(Vec<Item>, bool), ApiError> {
        match self.batch_input {
            Some(items) if items.is_empty() || items.len() > MAX_BATCH => {
                Err(bad("batch_input holds 1 to 10000 items"))
            }
            Some(items) => Ok((items, true)),
            None => Ok((
                vec![Item {
                    plaintext: self.plaintext,
                    ciphertext: self.ciphertext,
                    context: self.context,
                    key_version: self.key_version,
                }],
                false,
            )),
        }
    }
}

impl Item {
    fn plaintext(&self) -> Result<Plaintext, ApiError> {
        let plaintext = self
            .plaintext
            .as_deref()
            .ok_or_else(|| bad("plaintext is required"))?;
        Ok(Plaintext {
            plaintext: b64("plaintext", plaintext)?,
            context: b64_context(self.context.as_deref())?,
            key_version: self.key_version,
        })
    }

    fn ciphertext(&self) -> Result<Ciphertext, ApiError> {
        let ciphertext = self
            .ciphertext
            .clone()
            .ok_or_else(|| bad("ciphertext is required"))?;
        Ok(Ciphertext {
            ciphertext,
            context: b64_context(self.context.as_deref())?,
            key_version: self.key_version,
        })
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

impl SignBody {
    fn input(&self) -> Result<SignInput, ApiError> {
        Ok(SignInput {
            input: b64("input", &self.input)?,
            prehashed: self.prehashed,
            marshaling: marshaling(self.marshaling_algorithm.as_deref())?,
            key_version: self.key_version,
        })
    }
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

fn marshaling(name: Option<&str>) -> Result<Marshaling, ApiError> {
    match name.unwrap_or("asn1") {
        "asn1" => Ok(Marshaling::Asn1),
        "jws" | "raw" => Ok(Marshaling::Raw),
        "recoverable" => Ok(Marshaling::Recoverable),
        _ => Err(bad("marshaling_algorithm is asn1, jws or recoverable")),
    }
}

fn sha512(algorithm: Option<&str>) -> Result<bool, ApiError> {
    match algorithm.unwrap_or("sha2-256") {
        "sha2-256" => Ok(false),
        "sha2-512" => Ok(true),
        _ => Err(bad("algorithm is sha2-256 or sha2-512")),
    }
}

/// A key as Vault shows it: settings, versions and public keys.
fn key_view(key: &LoadedKey) -> Response {
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
    envelope(
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
    )
}

fn sealed_view(sealed: Versioned) -> Value {
    json!({ "ciphertext": sealed.text, "key_version": sealed.key_version })
}

/// Runs `op` over the items that could be read, and answers each item in
/// its place: a single item's failure is the request's; in a batch, each
/// failure is that item's `error`.
async fn per_item<I, O, F>(
    items: Vec<Result<I, ApiError>>,
    batch: bool,
    op: F,
    view: fn(O) -> Value,
) -> Result<Response, ApiError>
where
    F: AsyncFnOnce(&[I]) -> Result<Vec<Result<O, keyward_service::Error>>, ApiError>,
{
    let mut read = Vec::with_capacity(items.len());
    let mut unread = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        match item {
            Ok(item) => read.push(item),
            Err(e) => unread.push((i, e)),
        }
    }
    let mut done = op(&read).await?.into_iter();
    let mut unread = unread.into_iter().peekable();
    let total = read.len() + unread.len();
    let mut results = Vec::with_capacity(total);
    for i in 0..total {
        let answer: Result<O, ApiError> = match unread.next_if(|(at, _)| *at == i) {
            Some((_, e)) => Err(e),
            None => match done.next() {
                Some(result) => result.map_err(ApiError::from),
                None => Err(ApiError::internal(std::io::Error::other(
                    "an operation answered fewer items than it was given",
                ))),
            },
        };
        if !batch {
            return Ok(envelope(StatusCode::OK, view(answer?)));
        }
        results.push(match answer {
            Ok(value) => view(value),
            Err(e) => json!({ "error": e.to_string() }),
        });
    }
    Ok(envelope(
        StatusCode::OK,
        json!({ "batch_results": results }),
    ))
}

impl Transit<'_> {
    async fn create(&self, name: &str, body: &Bytes) -> Result<Response, ApiError> {
        self.caller
            .require(keyward_core::AdminScope::TransitWrite)?;
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
        let new = NewTransitKey {
            name: name.to_owned(),
            kind,
            derived: body.derived,
            environment: body.environment,
            api_ids: body.api_ids,
        };
        self.state
            .service
            .create_transit_key(self.caller, new)
            .await?;
        Ok(StatusCode::NO_CONTENT.into_response())
    }

    async fn read(&self, name: &str) -> Result<Response, ApiError> {
        let key = self.state.service.transit_key(self.caller, name).await?;
        Ok(key_view(&key))
    }

    async fn list(&self) -> Result<Response, ApiError> {
        let names = self.state.service.transit_key_names(self.caller).await?;
        Ok(envelope(StatusCode::OK, json!({ "keys": names })))
    }

    async fn delete(&self, name: &str) -> Result<Response, ApiError> {
        self.state
            .service
            .delete_transit_key(self.caller, name)
            .await?;
        Ok(StatusCode::NO_CONTENT.into_response())
    }

    async fn rotate(&self, name: &str) -> Result<Response, ApiError> {
        let key = self
            .state
            .service
            .rotate_transit_key(self.caller, name)
            .await?;
        Ok(key_view(&key))
    }

    async fn config(&self, name: &str, body: &Bytes) -> Result<Response, ApiError> {
        self.caller
            .require(keyward_core::AdminScope::TransitWrite)?;
        let body: ConfigBody = parse(body)?;
        let policy = TransitPolicy {
            min_decryption_version: body.min_decryption_version,
            min_encryption_version: body.min_encryption_version,
            deletion_allowed: body.deletion_allowed,
        };
        let key = self
            .state
            .service
            .configure_transit_key(self.caller, name, policy)
            .await?;
        Ok(key_view(&key))
    }

    /// The items of an encrypt, decrypt or rewrap body; the access check
    /// comes first, so a token without the scope learns nothing of its body.
    fn items(&self, body: &Bytes) -> Result<(Vec<Item>, bool), ApiError> {
        self.caller.require(keyward_core::AdminScope::TransitUse)?;
        parse::<BatchBody>(body)?.items()
    }

    async fn encrypt(&self, name: &str, body: &Bytes) -> Result<Response, ApiError> {
        let (items, batch) = self.items(body)?;
        let items = items.iter().map(Item::plaintext).collect();
        let service = &self.state.service;
        let run = async |items: &[Plaintext]| {
            Ok(service.transit_encrypt(self.caller, name, items).await?)
        };
        per_item(items, batch, run, sealed_view).await
    }

    async fn decrypt(&self, name: &str, body: &Bytes) -> Result<Response, ApiError> {
        let (items, batch) = self.items(body)?;
        let items = items.iter().map(Item::ciphertext).collect();
        let service = &self.state.service;
        let run = async |items: &[Ciphertext]| {
            Ok(service.transit_decrypt(self.caller, name, items).await?)
        };
        let view =
            |plaintext: Zeroizing<Vec<u8>>| json!({ "plaintext": STANDARD.encode(&*plaintext) });
        per_item(items, batch, run, view).await
    }

    async fn rewrap(&self, name: &str, body: &Bytes) -> Result<Response, ApiError> {
        let (items, batch) = self.items(body)?;
        let items = items.iter().map(Item::ciphertext).collect();
        let service = &self.state.service;
        let run = async |items: &[Ciphertext]| {
            Ok(service.transit_rewrap(self.caller, name, items).await?)
        };
        per_item(items, batch, run, sealed_view).await
    }

    async fn datakey(&self, kind: &str, name: &str, body: &Bytes) -> Result<Response, ApiError> {
        self.caller.require(keyward_core::AdminScope::TransitUse)?;
        let show = match kind {
            "plaintext" => true,
            "wrapped" => false,
            _ => return Err(ApiError::Op(Error::NotFound("route"))),
        };
        let body: DataKeyBody = parse(body)?;
        let context = b64_context(body.context.as_deref())?;
        let (data_key, sealed) = self
            .state
            .service
            .transit_data_key(self.caller, name, body.bits.unwrap_or(256), context)
            .await?;
        let mut result = sealed_view(sealed);
        if show {
            result["plaintext"] = json!(STANDARD.encode(&*data_key));
        }
        Ok(envelope(StatusCode::OK, result))
    }

    async fn sign(&self, name: &str, body: &Bytes) -> Result<Response, ApiError> {
        self.caller.require(keyward_core::AdminScope::TransitUse)?;
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
        let signed = self
            .state
            .service
            .transit_sign(self.caller, name, &body.input()?)
            .await?;
        Ok(envelope(
            StatusCode::OK,
            json!({ "signature": signed.text, "key_version": signed.key_version }),
        ))
    }

    async fn verify(&self, name: &str, body: &Bytes) -> Result<Response, ApiError> {
        self.caller.require(keyward_core::AdminScope::TransitUse)?;
        let body: SignBody = parse(body)?;
        let (input, proof) = match (&body.signature, &body.hmac) {
            (Some(s), None) => (body.input()?, Proof::Signature(s)),
            // A MAC has no marshaling: the field is not read.
            (None, Some(h)) => {
                let input = SignInput {
                    input: b64("input", &body.input)?,
                    prehashed: body.prehashed,
                    marshaling: Marshaling::Asn1,
                    key_version: body.key_version,
                };
                let sha512 = sha512(body.algorithm.as_deref())?;
                (input, Proof::Hmac { text: h, sha512 })
            }
            _ => return Err(bad("give either signature or hmac")),
        };
        let valid = self
            .state
            .service
            .transit_verify(self.caller, name, &input, proof)
            .await?;
        Ok(envelope(StatusCode::OK, json!({ "valid": valid })))
    }

    async fn hmac(
        &self,
        name: &str,
        algorithm: Option<&str>,
        body: &Bytes,
    ) -> Result<Response, ApiError> {
        self.caller.require(keyward_core::AdminScope::TransitUse)?;
        let body: SignBody = parse(body)?;
        let sha512 = sha512(algorithm.or(body.algorithm.as_deref()))?;
        let input = b64("input", &body.input)?;
        let mac = self
            .state
            .service
            .transit_hmac(self.caller, name, &input, sha512, body.key_version)
            .await?;
        Ok(envelope(
            StatusCode::OK,
            json!({ "hmac": mac.text, "key_version": mac.key_version }),
        ))
    }

    async fn random(&self, bytes: Option<&str>, body: &Bytes) -> Result<Response, ApiError> {
        self.caller.require(keyward_core::AdminScope::TransitUse)?;
        let body: RandomBody = parse(body)?;
        let count = match bytes {
            Some(b) => b.parse().map_err(|_| bad("bytes must be a number"))?,
            None => body.bytes.unwrap_or(32),
        };
        let format = body.format.as_deref().unwrap_or("base64");
        if !matches!(format, "base64" | "hex") {
            return Err(bad("format is base64 or hex"));
        }
        let out = self.state.service.random_bytes(self.caller, count)?;
        let text = match format {
            "hex" => base16ct::lower::encode_string(&out),
            _ => STANDARD.encode(&*out),
        };
        Ok(envelope(StatusCode::OK, json!({ "random_bytes": text })))
    }
}
