//! The JSON shapes of the HTTP API: what requests carry and responses show,
//! shared by the server and the CLI client. They are the public contract;
//! records from the core are converted here so storage fields (digests)
//! never reach a response by accident.
//!
//! Invariant: this crate knows the wire and the core, nothing else: no
//! storage, no HTTP library, no handler.

#![forbid(unsafe_code)]

pub mod access;
pub mod errors;

use base64::Engine as _;
use keyward_core::limits::{RateLimit, Refill};
use keyward_core::{
    AdminToken, Api, ApiId, AuditEvent, Environment, KeyId, KeyRecord, KeyState, Prefix, Scope,
    TokenId, VerifyCode,
};
use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

/// A time field that distinguishes "absent" (`None`) from `null`
/// (`Some(None)`), for PATCH bodies where `null` clears a value. The field
/// also needs `default` (absent reads as `None`) and
/// `skip_serializing_if = "Option::is_none"` (`None` is written as absent).
mod double_option {
    use serde::{Deserializer, Serializer};
    use time::OffsetDateTime;

    pub fn deserialize<'de, D>(d: D) -> Result<Option<Option<OffsetDateTime>>, D::Error>
    where
        D: Deserializer<'de>,
    {
        time::serde::rfc3339::option::deserialize(d).map(Some)
    }

    /// `Some(None)` is written as `null`, a time as RFC 3339. `None` is
    /// skipped before this is called; should it not be, it is `null` too,
    /// which clears rather than keeps, so every field says
    /// `skip_serializing_if`.
    pub fn serialize<S>(value: &Option<Option<OffsetDateTime>>, s: S) -> Result<S::Ok, S::Error>
    where
        S: Serializer,
    {
        time::serde::rfc3339::option::serialize(&value.flatten(), s)
    }
}

/// Like `double_option` for any value: absent is `None`, `null` is
/// `Some(None)`. Serde writes `Some(None)` as `null` by itself, so only
/// reading needs this.
fn nullable<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// For `skip_serializing_if` on flags whose default is `false`.
fn is_false(b: &bool) -> bool {
    !*b
}

/// Usage credits as callers set them.
#[derive(Deserialize, Serialize, ToSchema, Clone, Copy)]
#[serde(deny_unknown_fields)]
pub struct CreditsInput {
    /// Credits available now, at most 2^63 − 1.
    #[schema(maximum = 9_223_372_036_854_775_807_u64)]
    pub remaining: u64,
    /// When set, credits are reset to `amount` every period.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<RefillInput>)]
    pub refill: Option<Refill>,
}

/// Usage credits as stored.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct CreditsView {
    /// Credits in storage; nodes may hold a few more leased.
    pub remaining: u64,
    pub refill: Option<Refill>,
    #[serde(with = "time::serde::rfc3339")]
    pub refilled_at: OffsetDateTime,
}

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiCreate {
    /// 1–256 characters, none a control character.
    #[schema(
        min_length = 1,
        max_length = 256,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$"
    )]
    pub name: String,
    /// 1–12 characters of a-z and 0-9; unique; `kwa` is reserved.
    #[schema(pattern = r"^(?!kwa$)[a-z0-9]{1,12}$")]
    pub prefix: String,
    /// Environments keys may be issued in; all three when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(min_items = 1)]
    pub environments: Option<Vec<Environment>>,
    /// The workspace the API belongs to, for good; `default` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = r"^[a-z0-9][a-z0-9_-]{0,62}$")]
    pub workspace: Option<String>,
    /// Key roles: each name (1–64 of `A-Z a-z 0-9 _ . : -`) stands for
    /// the scopes listed under it (at most 64), which keys holding the role
    /// carry. At most 64 roles.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schema(value_type = HashMap<RoleNameKey, Vec<ScopeName>>)]
    pub roles: BTreeMap<String, Vec<String>>,
    /// Scopes marked critical: a verify needing one needs the key owner's
    /// one-time code (`otp`), else `MFA_REQUIRED`. At most 64.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<ScopeName>, max_items = 64)]
    pub critical_scopes: Vec<String>,
    /// Which requests to the API's keys must be signed; none when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing: Option<ApiSigningBody>,
}

/// Which requests to an API's keys must be signed. A key with a signing
/// key of its own signs every request whatever this says.
#[derive(Deserialize, Serialize, ToSchema, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct ApiSigningBody {
    /// Every request, with every key: keys are issued only with a signing
    /// key.
    #[serde(default)]
    pub all: bool,
    /// Requests needing any of these scopes. At most 64.
    #[serde(default)]
    #[schema(value_type = Vec<ScopeName>, max_items = 64)]
    pub scopes: Vec<String>,
    /// A valid Ed25519 signature stands in for the owner's one-time code
    /// on a critical scope.
    #[serde(default)]
    pub ed25519_replaces_otp: bool,
}

impl From<keyward_core::ApiSigning> for ApiSigningBody {
    fn from(s: keyward_core::ApiSigning) -> Self {
        ApiSigningBody {
            all: s.all,
            scopes: s.scopes.into_iter().map(String::from).collect(),
            ed25519_replaces_otp: s.ed25519_replaces_otp,
        }
    }
}

/// A key's signing key as given at create or update.
#[derive(Deserialize, Serialize, ToSchema, Clone)]
#[serde(deny_unknown_fields)]
pub struct SigningBody {
    /// `hmac-sha256`: the server makes a secret and shows it once as
    /// `signing_secret`. `ed25519`: the customer registers `public_key`.
    pub algorithm: keyward_core::SigningAlgorithm,
    /// How far a request's signing time may lie from the server's clock,
    /// in milliseconds (1–300000; 5000 when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 300_000)]
    pub window_ms: Option<u64>,
    /// Ed25519 only: the customer's public key, base64 of its 32 bytes or
    /// PEM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 1024)]
    pub public_key: Option<String>,
}

/// A key's signing key as shown: never its secret.
#[derive(Deserialize, Serialize, ToSchema, Clone)]
pub struct SigningView {
    pub algorithm: keyward_core::SigningAlgorithm,
    pub window_ms: u64,
    /// Ed25519: the public key, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
}

/// `PATCH /v1/apis/{id}`: fields left out stay as they are.
#[derive(Deserialize, Serialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct ApiUpdate {
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(
        min_length = 1,
        max_length = 256,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$"
    )]
    pub name: Option<String>,
    /// Replaces every role; `{}` removes them all. Every key holding a role
    /// carries its new scopes at its next verify, on every node. A role
    /// left out that unrevoked keys still hold is refused with 409
    /// `CONFLICT`, which says how many hold it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<HashMap<RoleNameKey, Vec<ScopeName>>>)]
    pub roles: Option<BTreeMap<String, Vec<String>>>,
    /// Replaces the critical scopes; `[]` removes them.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<ScopeName>>, max_items = 64)]
    pub critical_scopes: Option<Vec<String>>,
    /// Replaces the signing rules; `{}` removes them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signing: Option<ApiSigningBody>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct ApiView {
    pub id: ApiId,
    pub name: String,
    pub prefix: Prefix,
    pub environments: Vec<Environment>,
    pub workspace: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Key roles and the scopes each stands for.
    #[serde(default)]
    pub roles: BTreeMap<String, Vec<String>>,
    /// Scopes marked critical.
    #[serde(default)]
    pub critical_scopes: Vec<String>,
    /// Which requests must be signed.
    #[serde(default)]
    pub signing: ApiSigningBody,
}

impl From<Api> for ApiView {
    fn from(a: Api) -> Self {
        ApiView {
            id: a.id,
            name: a.name,
            prefix: a.prefix,
            environments: a.environments,
            workspace: a.workspace,
            created_at: a.created_at,
            roles: a
                .roles
                .into_iter()
                .map(|(name, scopes)| {
                    (
                        String::from(name),
                        scopes.into_iter().map(String::from).collect(),
                    )
                })
                .collect(),
            critical_scopes: a.critical_scopes.into_iter().map(String::from).collect(),
            signing: a.signing.into(),
        }
    }
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct ApiList {
    pub apis: Vec<ApiView>,
}

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyCreate {
    /// An API id; one that does not exist (or is out of reach) is 404.
    #[schema(pattern = r"^api_[0-6][0-9A-Za-z]{21}$")]
    pub api_id: String,
    /// One of the API's environments.
    pub environment: Environment,
    /// A label for people; defaults to the owner.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(
        min_length = 1,
        max_length = 256,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$"
    )]
    pub name: Option<String>,
    /// The identity the key belongs to (the provider's customer).
    #[schema(
        min_length = 1,
        max_length = 256,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$"
    )]
    pub owner: String,
    /// At most 64 scopes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<ScopeName>, max_items = 64)]
    pub scopes: Vec<String>,
    /// A JSON object returned by every verify of this key, at most 16 KiB
    /// serialized.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
    /// In the future.
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(example = "2100-01-01T00:00:00Z")]
    pub expires_at: Option<OffsetDateTime>,
    /// Defaults to true.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Named rate limits, all enforced on every verify; at most 8, names
    /// unique.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(max_items = 8)]
    pub ratelimits: Vec<RateLimit>,
    /// Usage credits; unmetered when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credits: Option<CreditsInput>,
    /// IPv4/IPv6 addresses or CIDR ranges the key may be used from; at most
    /// 256.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<IpRange>, max_items = 256)]
    pub ip_allowlist: Vec<String>,
    /// Roles of the API the key holds; it carries their scopes besides its
    /// own. Each must be one the API defines. At most 64.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<RoleNameKey>, max_items = 64)]
    pub roles: Vec<String>,
    /// When set, every request with the key must be signed with this key
    /// (`SIGNATURE_REQUIRED` otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing: Option<SigningBody>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct KeyView {
    pub id: KeyId,
    pub api_id: ApiId,
    pub environment: Environment,
    pub name: String,
    pub owner: String,
    /// The key's own scopes; verify also counts those of its roles.
    pub scopes: Vec<String>,
    /// Roles of its API the key holds.
    #[serde(default)]
    pub roles: Vec<String>,
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
    /// The first characters of the key, for telling keys apart.
    pub start: String,
    pub enabled: bool,
    /// The state now: active, disabled, expired or revoked.
    pub state: KeyState,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
    pub revoke_reason: Option<String>,
    pub rotated_from: Option<KeyId>,
    pub rotated_to: Option<KeyId>,
    pub ratelimits: Vec<RateLimit>,
    pub credits: Option<CreditsView>,
    pub ip_allowlist: Vec<String>,
    /// When a verify last found the key, to within an hour (written in
    /// batches; `GET /v1/keys/{id}/usage` has per-minute counts).
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_used_at: Option<OffsetDateTime>,
    /// The key's signing key, when its requests must be signed.
    #[serde(default)]
    pub signing: Option<SigningView>,
}

impl KeyView {
    pub fn new(k: KeyRecord, now: OffsetDateTime) -> Self {
        let state = k.state(now);
        KeyView {
            id: k.id,
            api_id: k.api_id,
            environment: k.environment,
            name: k.name,
            owner: k.owner,
            scopes: k.scopes.into_iter().map(String::from).collect(),
            roles: k.roles.into_iter().map(String::from).collect(),
            metadata: k.metadata,
            start: k.start,
            enabled: k.enabled,
            state,
            created_at: k.created_at,
            updated_at: k.updated_at,
            expires_at: k.expires_at,
            revoked_at: k.revoked_at,
            revoke_reason: k.revoke_reason,
            rotated_from: k.rotated_from,
            rotated_to: k.rotated_to,
            ratelimits: k.ratelimits,
            credits: k.credits.map(|c| CreditsView {
                remaining: c.remaining,
                refill: c.refill,
                refilled_at: c.refilled_at,
            }),
            ip_allowlist: k.ip_allowlist.iter().map(ToString::to_string).collect(),
            last_used_at: k.last_used_at,
            signing: k.signing.map(|s| SigningView {
                algorithm: s.algorithm,
                window_ms: s.window_ms,
                public_key: s
                    .public_key
                    .map(|k| base64::engine::general_purpose::STANDARD.encode(k)),
            }),
        }
    }
}

/// A key record with its plaintext, returned once at creation and rotation.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct IssuedKey {
    #[serde(flatten)]
    pub record: KeyView,
    /// The plaintext key. Shown only in this response; store it now.
    pub key: String,
    /// For an `hmac-sha256` signing key: the signing secret, shown only in
    /// this response. The HMAC key is the UTF-8 bytes of this text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_secret: Option<String>,
}

/// A key changed, with the new signing secret when the change gave it an
/// `hmac-sha256` signing key (shown only in this response).
#[derive(Serialize, Deserialize, ToSchema)]
pub struct UpdatedKey {
    #[serde(flatten)]
    pub record: KeyView,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_secret: Option<String>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct KeyList {
    pub keys: Vec<KeyView>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct KeyQuery {
    #[param(pattern = r"^api_[0-6][0-9A-Za-z]{21}$")]
    pub api_id: Option<String>,
    pub owner: Option<String>,
    pub environment: Option<Environment>,
    pub state: Option<KeyState>,
    pub cursor: Option<String>,
    /// 1–1000, default 100.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyUpdate {
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(
        min_length = 1,
        max_length = 256,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$"
    )]
    pub name: Option<String>,
    /// Replaces the scopes; at most 64.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<ScopeName>>, max_items = 64)]
    pub scopes: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
    /// A new expiry in the future, or `null` to remove it.
    #[serde(
        default,
        with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>, format = DateTime, example = "2100-01-01T00:00:00Z")]
    pub expires_at: Option<Option<OffsetDateTime>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Replaces all rate limits; `[]` removes them. At most 8, names unique.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(max_items = 8)]
    pub ratelimits: Option<Vec<RateLimit>>,
    /// New credits, or `null` to make the key unmetered.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<CreditsInput>)]
    pub credits: Option<Option<CreditsInput>>,
    /// Replaces the allowlist; `[]` allows any address. At most 256.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<IpRange>>, max_items = 256)]
    pub ip_allowlist: Option<Vec<String>>,
    /// Replaces the roles the key holds; `[]` removes them. Each must be
    /// one its API defines. At most 64.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<RoleNameKey>>, max_items = 64)]
    pub roles: Option<Vec<String>>,
    /// A new signing key (for `hmac-sha256`, a new secret, shown once), or
    /// `null` to let the key verify unsigned again.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<SigningBody>)]
    pub signing: Option<Option<SigningBody>>,
}

#[derive(Deserialize, Serialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct RevokeRequest {
    /// Why the key is revoked; kept with the key and in the audit log.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(
        min_length = 1,
        max_length = 1024,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$"
    )]
    pub reason: Option<String>,
}

#[derive(Deserialize, Serialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct RotateRequest {
    /// How long the old key keeps working; 0 (the default) stops it now.
    /// At most 30 days.
    #[serde(default)]
    #[schema(maximum = 2_592_000)]
    pub grace_period_seconds: u64,
    /// Expiry of the successor, in the future; by default it keeps the old
    /// key's expiry.
    #[serde(
        default,
        with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>, format = DateTime, example = "2100-01-01T00:00:00Z")]
    pub expires_at: Option<Option<OffsetDateTime>>,
}

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkRevokeRequest {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(pattern = r"^api_[0-6][0-9A-Za-z]{21}$")]
    pub api_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment: Option<Environment>,
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub created_before: Option<OffsetDateTime>,
    /// Keys carrying this scope.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<ScopeName>)]
    pub scope: Option<String>,
    #[schema(
        min_length = 1,
        max_length = 1024,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$"
    )]
    pub reason: String,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct BulkRevokeResult {
    /// How many keys this call revoked.
    pub revoked: u64,
}

/// `POST /v1/leaks` from `keyward scan --report`: keys found where they
/// should not be. (GitHub's signed partner reports reach the same endpoint
/// in GitHub's own shape, which the server reads itself.)
#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LeakReport {
    /// At most 1000.
    #[schema(max_items = 1000)]
    pub leaks: Vec<Leak>,
}

/// One leaked key as `keyward scan` reports it.
#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Leak {
    /// The key as found.
    pub key: String,
    /// Where it was found: `path:line`, a URL. At most 2048 bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// The commit that first brought it in, in history scans. At most 2048
    /// bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// What found it; `keyward scan` when absent. At most 2048 bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// What the server did with a leak report, without telling which keys
/// exist.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct LeakReceipt {
    /// Leaks in the report.
    pub received: usize,
    /// Leaks that were not well-formed Keyward keys (bad shape or checksum).
    pub malformed: usize,
    pub message: String,
}

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    /// The key the caller presented.
    pub key: String,
    /// Scopes the key must all carry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<ScopeName>)]
    pub scopes: Vec<String>,
    /// The environment the key must belong to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment: Option<Environment>,
    /// The address of the client that presented the key, for IP allowlists.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<IpAddress>)]
    pub ip: Option<String>,
    /// Units this request counts against rate limits and credits (default
    /// 1, at most 1,000,000).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(maximum = 1_000_000)]
    pub cost: Option<u64>,
    /// The request the key came with, for a key or API that requires
    /// signed requests: its signature is checked here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<RequestParts>,
    /// The key owner's one-time code (six digits), for a critical scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 16)]
    pub otp: Option<String>,
}

/// A signed request as the provider's server received it.
#[derive(Deserialize, Serialize, ToSchema, Clone)]
#[serde(deny_unknown_fields)]
pub struct RequestParts {
    /// `rfc9421` (HTTP Message Signatures: `Signature-Input` and
    /// `Signature` headers) or `binance` (`signature`, `timestamp` and
    /// `recvWindow` parameters). Found from the request when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<SignatureScheme>,
    /// The method, e.g. `POST`.
    #[schema(pattern = r"^[A-Za-z]{1,32}$")]
    pub method: String,
    /// `http` or `https` (`https` when absent): how the client reached
    /// the provider's server, for `@target-uri` and `@scheme`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = r"^(http|https)$")]
    pub url_scheme: Option<String>,
    /// The `Host` the client sent; the `host` header's when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 512)]
    pub authority: Option<String>,
    /// The path as sent, e.g. `/api/v3/order`.
    #[schema(pattern = r"^/", max_length = 8192)]
    pub path: String,
    /// The query as sent, without its `?`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 16384)]
    pub query: Option<String>,
    /// The request's headers, each `[name, value]`, in the order sent.
    #[serde(default)]
    #[schema(value_type = Vec<HeaderLine>, max_items = 100)]
    pub headers: Vec<(String, String)>,
    /// The body as sent (text), when the signature covers it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// The body's SHA-256 in hex, in place of the body (RFC 9421 only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = r"^[0-9a-fA-F]{64}$")]
    pub body_sha256: Option<String>,
}

/// A header as `[name, value]` (documentation only).
pub struct HeaderLine;

impl utoipa::PartialSchema for HeaderLine {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ArrayBuilder::new()
            .items(
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::Type::String)
                    .build(),
            )
            .min_items(Some(2))
            .max_items(Some(2))
            .description(Some("A header line: its name, then its value."))
            .build()
            .into()
    }
}

impl ToSchema for HeaderLine {}

/// A signature scheme.
#[derive(Deserialize, Serialize, ToSchema, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "lowercase")]
pub enum SignatureScheme {
    Rfc9421,
    Binance,
}

/// The tightest rate limit after a verify, for `X-RateLimit-*` headers.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct RateLimitView {
    pub limit: u64,
    pub remaining: u64,
    /// Unix time in milliseconds when the limit is replenished.
    pub reset: i64,
}

/// The answer to a verify, serialized straight from the cached key: nothing
/// is copied per request.
#[derive(Serialize, ToSchema)]
pub struct VerifyResult<'a> {
    pub valid: bool,
    pub code: VerifyCode,
    /// Why a request's proof was refused (`SIGNATURE_*`, `REPLAYED`,
    /// `MFA_REQUIRED`): what an honest client should fix.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub reason: Option<&'a str>,
    /// Present whenever the key exists and is within the caller's reach.
    #[schema(value_type = Option<String>)]
    pub key_id: Option<&'a str>,
    pub owner: Option<&'a str>,
    pub environment: Option<Environment>,
    #[schema(value_type = Option<Vec<String>>)]
    #[serde(serialize_with = "scope_strings")]
    pub scopes: Option<&'a [Scope]>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<&'a serde_json::value::RawValue>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    /// Present when the key or its owner has rate limits.
    pub ratelimit: Option<RateLimitView>,
    /// Present when the key is metered.
    pub credits_remaining: Option<u64>,
    /// The key's scopes its API marks critical; absent when none.
    #[schema(value_type = Option<Vec<String>>)]
    #[serde(serialize_with = "scope_strings", skip_serializing_if = "no_scopes")]
    pub critical_scopes: Option<&'a [Scope]>,
}

/// For `skip_serializing_if` on scope lists that are absent when empty.
fn no_scopes(scopes: &Option<&[Scope]>) -> bool {
    scopes.is_none_or(|s| s.is_empty())
}

fn scope_strings<S: serde::Serializer>(
    scopes: &Option<&[Scope]>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match scopes {
        Some(scopes) => serializer.collect_seq(scopes.iter().map(Scope::as_str)),
        None => serializer.serialize_none(),
    }
}

/// The answer to a verify as a client reads it: [`VerifyResult`] with
/// every field owned. The server writes `VerifyResult`, which borrows from
/// its cache and so cannot be read back; this type holds the same fields
/// under the same names, and a test in `tests/wire.rs` reads every answer
/// `VerifyResult` writes through it.
#[derive(Serialize, Deserialize)]
pub struct VerifyAnswer {
    pub valid: bool,
    pub code: VerifyCode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub key_id: Option<KeyId>,
    pub owner: Option<String>,
    pub environment: Option<Environment>,
    pub scopes: Option<Vec<String>>,
    pub metadata: Option<serde_json::Value>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    pub ratelimit: Option<RateLimitView>,
    pub credits_remaining: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub critical_scopes: Option<Vec<String>>,
}

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OwnerRateLimits {
    /// Limits shared by all keys of the owner; `[]` removes them. At most
    /// 8, names unique.
    #[schema(max_items = 8)]
    pub ratelimits: Vec<RateLimit>,
}

#[derive(Serialize, ToSchema)]
pub struct UsageView {
    /// Unix time in seconds of the minute's start.
    pub minute: i64,
    pub code: String,
    pub count: u64,
}

#[derive(Serialize, ToSchema)]
pub struct UsageList {
    pub usage: Vec<UsageView>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UsageQuery {
    /// Unix time in seconds: minutes from the one holding it. Default: a
    /// day before `until`; at most 7 days before it and not after it.
    #[param(minimum = 0)]
    pub since: Option<i64>,
    /// Unix time in seconds: minutes up to the one holding it. Default: now.
    #[param(minimum = 0)]
    pub until: Option<i64>,
}

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenCreate {
    #[schema(
        min_length = 1,
        max_length = 256,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$"
    )]
    pub name: String,
    /// Admin scopes, each also held by the creating token; at least one.
    #[schema(value_type = Vec<AdminScopeName>, min_items = 1, example = json!(["keys:verify"]))]
    pub scopes: Vec<String>,
    /// Limit the token to these APIs (within the creator's reach).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<ApiIdText>>)]
    pub api_ids: Option<Vec<String>>,
    /// Limit the token to these environments (within the creator's reach).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environments: Option<Vec<Environment>>,
    /// Limit the token to the APIs of these workspaces (within the
    /// creator's reach).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<WorkspaceName>>)]
    pub workspaces: Option<Vec<String>>,
    /// Bind the token to a client certificate of mutual TLS: its SHA-256
    /// fingerprint (64 hex digits, colons allowed). A bound token
    /// authenticates only on a connection that presented that
    /// certificate. A bound token's children are bound to its certificate
    /// unless they name another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = r"^(sha256:)?([0-9A-Fa-f]{64}|([0-9A-Fa-f]{2}:){31}[0-9A-Fa-f]{2})$")]
    pub client_cert: Option<String>,
    /// When the token stops working, in the future; never later than the creating token's
    /// own expiry, to which a later one (or none) is capped.
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(example = "2100-01-01T00:00:00Z")]
    pub expires_at: Option<OffsetDateTime>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct TokenView {
    pub id: TokenId,
    pub name: String,
    pub start: String,
    #[schema(value_type = Vec<String>)]
    pub scopes: Vec<String>,
    pub api_ids: Option<Vec<ApiId>>,
    pub environments: Option<Vec<Environment>>,
    #[serde(default)]
    pub workspaces: Option<Vec<String>>,
    /// The SHA-256 fingerprint (hex) of the client certificate the token
    /// is bound to.
    #[serde(default)]
    pub client_cert: Option<String>,
    /// The token that created this one, when that token is within the
    /// caller's reach (`null` otherwise, and for the root token).
    pub created_by: Option<TokenId>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
    /// When the token was last used, to within an hour.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub last_used_at: Option<OffsetDateTime>,
}

impl From<AdminToken> for TokenView {
    fn from(t: AdminToken) -> Self {
        TokenView {
            id: t.id,
            name: t.name,
            start: t.start,
            scopes: t.scopes.iter().map(|s| s.as_str().to_owned()).collect(),
            api_ids: t.api_ids,
            environments: t.environments,
            workspaces: t.workspaces,
            client_cert: t
                .client_cert
                .map(|c| c.iter().map(|b| format!("{b:02x}")).collect()),
            created_by: t.created_by,
            created_at: t.created_at,
            expires_at: t.expires_at,
            revoked_at: t.revoked_at,
            last_used_at: t.last_used_at,
        }
    }
}

/// A token record with its plaintext, returned once at creation.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct IssuedToken {
    #[serde(flatten)]
    pub record: TokenView,
    /// The plaintext token. Shown only in this response.
    pub token: String,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct TokenList {
    pub tokens: Vec<TokenView>,
    pub next_cursor: Option<String>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    pub cursor: Option<String>,
    /// 1–1000, default 100.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Events about this record id.
    pub target: Option<String>,
    /// Events of this action, e.g. `key.revoke`.
    pub action: Option<String>,
    pub cursor: Option<String>,
    /// 1–1000, default 100.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

#[derive(Serialize, ToSchema)]
pub struct AuditView {
    pub id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub actor: Option<TokenId>,
    pub action: String,
    pub target: String,
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
}

impl From<AuditEvent> for AuditView {
    fn from(e: AuditEvent) -> Self {
        AuditView {
            id: e.id.to_string(),
            at: e.at,
            actor: e.actor,
            action: e.action,
            target: e.target,
            details: e.details,
        }
    }
}

/// A row of the audit log that could not be read back (the database was
/// changed outside Keyward): listed in its place so that nothing is skipped
/// silently; the server logs what was wrong with it.
#[derive(Serialize, ToSchema)]
pub struct UnreadableAuditView {
    pub id: String,
    /// Always `unreadable`.
    #[schema(example = "unreadable")]
    pub error: &'static str,
}

/// One entry of an audit listing.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum AuditEntryView {
    Event(AuditView),
    Unreadable(UnreadableAuditView),
}

#[derive(Serialize, ToSchema)]
pub struct AuditList {
    pub events: Vec<AuditEntryView>,
    pub next_cursor: Option<String>,
}

/// The audit chain's last sequence number and hash.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ChainHeadView {
    pub sequence: u64,
    /// SHA-256, hex.
    pub hash: String,
}

impl From<keyward_core::chain::ChainHead> for ChainHeadView {
    fn from(head: keyward_core::chain::ChainHead) -> Self {
        ChainHeadView {
            sequence: head.sequence,
            hash: keyward_core::chain::to_hex(&head.hash),
        }
    }
}

/// The first place where the audit chain was found changed.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TamperView {
    pub sequence: u64,
    /// `edited`, `deleted`, `inserted`, `reordered`, `truncated` or
    /// `bad_signature`.
    #[schema(example = "edited")]
    pub kind: String,
    pub detail: String,
}

/// A check of the whole audit chain.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ChainCheckView {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub intact: bool,
    /// Events read.
    pub events: u64,
    /// Signed checkpoints checked.
    pub checkpoints: u64,
    pub first_bad: Option<TamperView>,
}

/// One event of the audit chain as exported: every field the chain covers,
/// exactly as stored, with its sequence number and hashes, so that an
/// export can be verified on its own (`keyward audit verify --export`).
/// One per line in `keyward audit export`'s JSON Lines.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ExportedEvent {
    pub sequence: u64,
    pub id: String,
    /// The time, for people.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// The time as chained: milliseconds since the Unix epoch.
    pub at_ms: i64,
    pub actor: Option<String>,
    pub action: String,
    pub target: String,
    /// The details object; chained as its compact JSON text with keys in
    /// order.
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
    /// The API and environment of the record the event is about.
    pub api_id: Option<String>,
    pub environment: Option<String>,
    /// SHA-256 of the event before, hex (zeros for the first).
    pub prev_hash: String,
    /// SHA-256 of `prev_hash` and the event's canonical bytes, hex.
    pub hash: String,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditExportQuery {
    /// Events after this sequence number (default 0: from the first).
    pub since: Option<u64>,
    /// 1–1000, default 100.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

/// `GET /v1/audit/events`: a page of the chain in sequence order.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditExport {
    pub events: Vec<ExportedEvent>,
    /// The `since` of the next page; `null` at the chain's end.
    pub next: Option<u64>,
}

impl ChainCheckView {
    /// What a check run at `at` found.
    pub fn of(at: OffsetDateTime, report: &keyward_core::chain::ChainReport) -> Self {
        ChainCheckView {
            at,
            intact: report.finding.is_none(),
            events: report.rows,
            checkpoints: report.checkpoints,
            first_bad: report.finding.as_ref().map(|f| TamperView {
                sequence: f.sequence,
                kind: f.kind.as_str().to_owned(),
                detail: f.detail.to_owned(),
            }),
        }
    }
}

/// `GET /v1/audit/status`: the chain's head and this node's last check.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditStatusView {
    /// `null` when the head is missing from the store.
    pub head: Option<ChainHeadView>,
    /// `null` until this node has checked the chain.
    pub last_verification: Option<ChainCheckView>,
    /// `null` until a checkpoint was signed.
    pub last_checkpoint: Option<CheckpointView>,
    /// The audit key's public half, base64; `null` until one was made.
    pub public_key: Option<String>,
}

/// A signed checkpoint of the audit chain.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CheckpointView {
    pub sequence: u64,
    /// SHA-256, hex.
    pub hash: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// The seal's state, in the shape of Vault's `sys/seal-status`.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct SealStatusView {
    /// `file`, `shamir` or `pkcs11`.
    #[serde(rename = "type")]
    pub kind: String,
    pub initialized: bool,
    pub sealed: bool,
    /// Shares needed to unseal (`shamir`).
    pub t: u8,
    /// Shares issued (`shamir`).
    pub n: u8,
    /// Shares given since the last unseal or reset.
    pub progress: u8,
    /// The keyring's newest version, when unsealed.
    pub keyring_version: Option<u32>,
}

/// `POST /v1/sys/init` (Vault's names).
#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SealInit {
    /// Shares to issue, 2–255.
    #[schema(minimum = 2, maximum = 255)]
    pub secret_shares: u8,
    /// Shares needed to unseal, 2..=secret_shares.
    #[schema(minimum = 2, maximum = 255)]
    pub secret_threshold: u8,
}

/// The shares, shown once.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct SealInitResult {
    /// Each share, to be given to a different operator.
    pub keys: Vec<String>,
    pub secret_shares: u8,
    pub secret_threshold: u8,
}

/// `POST /v1/sys/unseal`: one share, or `reset` to forget those given.
#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UnsealRequest {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub reset: bool,
}

/// `POST /v1/sys/rekey`: current shares, and the new split.
#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RekeyRequest {
    /// `shamir`: at least the threshold of the current shares.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<String>,
    /// `shamir`: the new split, 2–255 shares. A `pkcs11` rekey takes no
    /// fields.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 2, maximum = 255)]
    pub secret_shares: Option<u8>,
    /// `shamir`: shares needed to unseal, 2..=secret_shares.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 2, maximum = 255)]
    pub secret_threshold: Option<u8>,
}

/// `POST /v1/sys/rotate`'s answer.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct KeyringRotated {
    pub keyring_version: u32,
}

/// `POST /v1/sys/rewrap`'s answer, in Vault's `data` envelope.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct RewrapResult {
    pub data: RewrapCounts,
}

/// What a rewrap did to the stored data keys.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct RewrapCounts {
    /// Data keys moved to the newest keyring version.
    pub moved: u64,
    /// Data keys already under it.
    pub current: u64,
    /// Data keys that could not be opened; the server logs why.
    pub failed: u64,
}

#[derive(Serialize, ToSchema)]
pub struct Health {
    pub status: &'static str,
}

/// `/ready`: whether the node can serve, and what an operator must fix
/// although it does.
#[derive(Serialize, ToSchema)]
pub struct Readiness {
    /// `ready` or `unavailable`.
    pub status: &'static str,
    /// E.g. that no full-access admin token remains. Left out when there is
    /// nothing to fix.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<&'static str>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct ErrorResponse {
    pub error: ErrorDetail,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine code, e.g. `UNAUTHENTICATED`, `FORBIDDEN`, `NOT_FOUND`,
    /// `INVALID_REQUEST`, `CONFLICT`, `LAST_ROOT_TOKEN`, `EMPTY_FILTER`.
    pub code: String,
    pub message: String,
}

/// A key scope: 1–128 of `A-Z a-z 0-9 _ . : / * -`.
/// Documentation only: the field it describes stays a `String`.
#[derive(ToSchema)]
#[schema(pattern = r"^[A-Za-z0-9_.:/*-]{1,128}$")]
pub struct ScopeName(#[allow(dead_code)] String);

/// A key role's name: 1–64 of `A-Z a-z 0-9 _ . : -`.
/// Documentation only: the field it describes stays a `String`.
#[derive(ToSchema)]
#[schema(pattern = r"^[A-Za-z0-9_.:-]{1,64}$")]
pub struct RoleNameKey(#[allow(dead_code)] String);

/// An admin token's scope.
#[derive(ToSchema)]
pub enum AdminScopeName {
    #[schema(rename = "apis:read")]
    ApisRead,
    #[schema(rename = "apis:write")]
    ApisWrite,
    #[schema(rename = "keys:read")]
    KeysRead,
    #[schema(rename = "keys:write")]
    KeysWrite,
    #[schema(rename = "keys:verify")]
    KeysVerify,
    #[schema(rename = "tokens:read")]
    TokensRead,
    #[schema(rename = "tokens:write")]
    TokensWrite,
    #[schema(rename = "audit:read")]
    AuditRead,
    #[schema(rename = "sys:write")]
    SysWrite,
    #[schema(rename = "secrets:read")]
    SecretsRead,
    #[schema(rename = "secrets:write")]
    SecretsWrite,
    #[schema(rename = "transit:use")]
    TransitUse,
    #[schema(rename = "transit:write")]
    TransitWrite,
    #[schema(rename = "leaks:report")]
    LeaksReport,
    #[schema(rename = "users:read")]
    UsersRead,
    #[schema(rename = "users:write")]
    UsersWrite,
}

/// A workspace or role name: a lower-case slug.
/// Documentation only: the field it describes stays a `String`.
#[derive(ToSchema)]
#[schema(pattern = r"^[a-z0-9][a-z0-9_-]{0,62}$")]
pub struct WorkspaceName(#[allow(dead_code)] String);

/// An API id as this server issues them.
/// Documentation only: the field it describes stays a `String`.
#[derive(ToSchema)]
#[schema(pattern = r"^api_[0-6][0-9A-Za-z]{21}$")]
pub struct ApiIdText(#[allow(dead_code)] String);

/// An IPv4 or IPv6 address (documentation only).
pub struct IpAddress;

impl utoipa::PartialSchema for IpAddress {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        any_string_of(
            "An IPv4 or IPv6 address.",
            &[string_format("ipv4"), string_format("ipv6")],
        )
    }
}

impl ToSchema for IpAddress {}

/// An allowlist entry (documentation only).
pub struct IpRange;

impl utoipa::PartialSchema for IpRange {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        any_string_of(
            "An IPv4 or IPv6 address, or an IPv4 CIDR range such as `10.0.0.0/8`.",
            &[
                string_format("ipv4"),
                string_format("ipv6"),
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::Type::String)
                    .pattern(Some(IPV4_CIDR))
                    .build(),
            ],
        )
    }
}

impl ToSchema for IpRange {}

/// An IPv4 range: four octets without leading zeros, then `/0`–`/32`.
const IPV4_CIDR: &str = r"^((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])/(3[0-2]|[12]?[0-9])$";

fn string_format(format: &str) -> utoipa::openapi::schema::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::String)
        .format(Some(utoipa::openapi::SchemaFormat::Custom(
            format.to_owned(),
        )))
        .build()
}

fn any_string_of(
    description: &str,
    items: &[utoipa::openapi::schema::Object],
) -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    let mut any = utoipa::openapi::schema::AnyOfBuilder::new().description(Some(description));
    for item in items {
        any = any.item(item.clone());
    }
    utoipa::openapi::RefOr::T(utoipa::openapi::schema::Schema::AnyOf(any.build()))
}

/// A refill as callers set it (documentation only): daily, or monthly on a
/// day from 1 to 28.
pub struct RefillInput;

impl utoipa::PartialSchema for RefillInput {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};
        let amount = || {
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(0))
                .maximum(Some(i64::MAX))
        };
        let interval = |name: &str| {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some([name]))
        };
        let daily = ObjectBuilder::new()
            .property("interval", interval("daily"))
            .property("amount", amount())
            .required("interval")
            .required("amount")
            .additional_properties(Some(
                utoipa::openapi::schema::AdditionalProperties::FreeForm(false),
            ));
        let monthly = ObjectBuilder::new()
            .property("interval", interval("monthly"))
            .property("amount", amount())
            .property(
                "day",
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(1))
                    .maximum(Some(28)),
            )
            .required("interval")
            .required("amount")
            .additional_properties(Some(
                utoipa::openapi::schema::AdditionalProperties::FreeForm(false),
            ));
        utoipa::openapi::RefOr::T(Schema::OneOf(
            OneOfBuilder::new()
                .description(Some(
                    "Credits are set back to `amount` daily at 00:00 UTC, or monthly on \
                     `day` (1-28, default 1).",
                ))
                .item(daily)
                .item(monthly)
                .build(),
        ))
    }
}

impl ToSchema for RefillInput {}
