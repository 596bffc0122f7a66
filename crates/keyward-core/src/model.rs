//! The records Keyward keeps: APIs, keys, admin tokens and audit events, and
//! the small validated values they are made of.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::id::{ApiId, EventId, KeyId, TokenId, UserId};
use crate::key::{Environment, KeyDigest, Prefix};
use crate::limits::{Cidr, Credits, RateLimit};

// Defined with core's other errors; named here too, where it always was.
pub use crate::error::ValueError;

/// A permission a key carries and a verify may require, e.g. `orders:write`.
/// Matching is exact: least privilege has no implicit wildcards.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Scope(String);

impl Scope {
    pub fn parse(s: &str) -> Result<Self, ValueError> {
        let ok = !s.is_empty()
            && s.len() <= 128
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.:/*-".contains(&b));
        if !ok {
            Err(ValueError::Scope)
        } else if crate::key::contains_key(s) {
            // Scopes are shown in every listing and verify answer.
            Err(ValueError::KeyShaped { field: "a scope" })
        } else {
            Ok(Scope(s.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Scope {
    type Error = ValueError;
    fn try_from(s: String) -> Result<Self, ValueError> {
        Scope::parse(&s)
    }
}

impl From<Scope> for String {
    fn from(s: Scope) -> String {
        s.0
    }
}

/// Sorts and deduplicates scopes so stored sets compare and display stably.
pub fn normalize_scopes(mut scopes: Vec<Scope>) -> Vec<Scope> {
    scopes.sort();
    scopes.dedup();
    scopes
}

/// The name of one of an API's key roles, e.g. `trader`: a set of scopes
/// keys carry by naming it. Bounded and plain like a scope, so it can be
/// shown in every listing and audit event.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RoleName(String);

impl RoleName {
    /// Longest role name accepted.
    pub const MAX_LEN: usize = 64;

    pub fn parse(s: &str) -> Result<Self, ValueError> {
        let ok = !s.is_empty()
            && s.len() <= Self::MAX_LEN
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.:-".contains(&b));
        if !ok {
            Err(ValueError::RoleName)
        } else if crate::key::contains_key(s) {
            Err(ValueError::KeyShaped {
                field: "a role name",
            })
        } else {
            Ok(RoleName(s.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for RoleName {
    type Error = ValueError;
    fn try_from(s: String) -> Result<Self, ValueError> {
        RoleName::parse(&s)
    }
}

impl From<RoleName> for String {
    fn from(r: RoleName) -> String {
        r.0
    }
}

impl fmt::Display for RoleName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An API's key roles: each name stands for the scopes listed under it.
pub type KeyRoles = BTreeMap<RoleName, Vec<Scope>>;

/// Most roles one API may define, and most scopes one role may stand for.
pub const MAX_ROLES: usize = 64;

/// The scopes a key carries in effect: its own and those of each role it
/// holds, as `roles` (its API's roles now) defines them, sorted and without
/// duplicates. A role the API does not define adds nothing, so a key
/// naming a role removed since cannot gain by it.
pub fn effective_scopes(own: &[Scope], held: &[RoleName], roles: &KeyRoles) -> Vec<Scope> {
    let mut scopes = own.to_vec();
    for role in held {
        if let Some(granted) = roles.get(role) {
            scopes.extend(granted.iter().cloned());
        }
    }
    normalize_scopes(scopes)
}

/// A permission of an admin token on the admin API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum AdminScope {
    ApisRead,
    ApisWrite,
    KeysRead,
    KeysWrite,
    KeysVerify,
    TokensRead,
    TokensWrite,
    AuditRead,
    /// Seal operations: initialise, seal, rotate the keyring; mounts.
    SysWrite,
    /// Read secrets (KV v2) in the environments the token reaches.
    SecretsRead,
    /// Write, delete and destroy secrets.
    SecretsWrite,
    /// Use transit keys: encrypt, decrypt, sign, verify, HMAC, data keys.
    TransitUse,
    /// Create, rotate, configure and delete transit keys.
    TransitWrite,
    /// Report leaked keys found by a scanner, which revokes them; grants
    /// nothing else, so it is safe to hand to CI.
    LeaksReport,
    /// Read admin users, roles, workspaces and the access review.
    UsersRead,
    /// Create and change admin users, their grants, custom roles and
    /// workspaces.
    UsersWrite,
}

impl AdminScope {
    pub const ALL: [AdminScope; 16] = [
        AdminScope::ApisRead,
        AdminScope::ApisWrite,
        AdminScope::KeysRead,
        AdminScope::KeysWrite,
        AdminScope::KeysVerify,
        AdminScope::TokensRead,
        AdminScope::TokensWrite,
        AdminScope::AuditRead,
        AdminScope::SysWrite,
        AdminScope::SecretsRead,
        AdminScope::SecretsWrite,
        AdminScope::TransitUse,
        AdminScope::TransitWrite,
        AdminScope::LeaksReport,
        AdminScope::UsersRead,
        AdminScope::UsersWrite,
    ];

    /// Every admin scope's name, in the order of [`AdminScope::ALL`].
    pub const NAMES: [&'static str; AdminScope::ALL.len()] = {
        let mut names = [""; AdminScope::ALL.len()];
        let mut i = 0;
        while i < names.len() {
            names[i] = AdminScope::ALL[i].as_str();
            i += 1;
        }
        names
    };

    pub const fn as_str(self) -> &'static str {
        match self {
            AdminScope::ApisRead => "apis:read",
            AdminScope::ApisWrite => "apis:write",
            AdminScope::KeysRead => "keys:read",
            AdminScope::KeysWrite => "keys:write",
            AdminScope::KeysVerify => "keys:verify",
            AdminScope::TokensRead => "tokens:read",
            AdminScope::TokensWrite => "tokens:write",
            AdminScope::AuditRead => "audit:read",
            AdminScope::SysWrite => "sys:write",
            AdminScope::SecretsRead => "secrets:read",
            AdminScope::SecretsWrite => "secrets:write",
            AdminScope::TransitUse => "transit:use",
            AdminScope::TransitWrite => "transit:write",
            AdminScope::LeaksReport => "leaks:report",
            AdminScope::UsersRead => "users:read",
            AdminScope::UsersWrite => "users:write",
        }
    }

    pub fn parse(s: &str) -> Result<Self, ValueError> {
        AdminScope::ALL
            .into_iter()
            .find(|scope| scope.as_str() == s)
            .ok_or(ValueError::AdminScope {
                known: &AdminScope::NAMES,
            })
    }

    /// Whether a session needs a fresh second factor to create a token
    /// holding this scope: the scopes that seal the server, change who may
    /// do what, or mint more credentials.
    pub const fn is_critical(self) -> bool {
        matches!(
            self,
            AdminScope::SysWrite | AdminScope::UsersWrite | AdminScope::TokensWrite
        )
    }

    /// Every admin scope, comma-separated, for messages.
    pub fn names() -> String {
        AdminScope::NAMES.join(", ")
    }
}

impl TryFrom<String> for AdminScope {
    type Error = ValueError;
    fn try_from(s: String) -> Result<Self, ValueError> {
        AdminScope::parse(&s)
    }
}

impl From<AdminScope> for String {
    fn from(s: AdminScope) -> String {
        s.as_str().to_owned()
    }
}

impl fmt::Display for AdminScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Checks free text given by a caller (names, owners, reasons): bounded,
/// without control characters, and holding no key or admin token.
pub fn check_text(field: &'static str, value: &str, max: usize) -> Result<(), ValueError> {
    if value.is_empty() || value.chars().count() > max || value.chars().any(char::is_control) {
        Err(ValueError::Text { field, max })
    } else if crate::key::contains_key(value) {
        Err(ValueError::KeyShaped { field })
    } else {
        Ok(())
    }
}

/// Largest metadata object accepted, serialized.
pub const MAX_METADATA_BYTES: usize = 16 * 1024;

/// Checks a key's metadata: a JSON object of bounded size.
pub fn check_metadata(metadata: &serde_json::Value) -> Result<(), ValueError> {
    let size = serde_json::to_vec(metadata)
        .map(|v| v.len())
        .unwrap_or(usize::MAX);
    if !metadata.is_object() || size > MAX_METADATA_BYTES {
        Err(ValueError::Metadata {
            max: MAX_METADATA_BYTES,
        })
    } else if contains_key_anywhere(metadata) {
        // Metadata comes back in every verify answer.
        Err(ValueError::KeyShaped { field: "metadata" })
    } else {
        Ok(())
    }
}

/// Whether any string in `value`, object keys included, holds a key.
fn contains_key_anywhere(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::String(s) => crate::key::contains_key(s),
        serde_json::Value::Array(items) => items.iter().any(contains_key_anywhere),
        serde_json::Value::Object(map) => map
            .iter()
            .any(|(k, v)| crate::key::contains_key(k) || contains_key_anywhere(v)),
        _ => false,
    }
}

/// An API of the provider: the surface a set of keys opens, with the key
/// prefix that makes its keys recognisable.
#[derive(Debug, Clone, PartialEq)]
pub struct Api {
    pub id: ApiId,
    pub name: String,
    /// Unique across APIs, so a key's text names its API.
    pub prefix: Prefix,
    /// The environments keys may be issued in.
    pub environments: Vec<Environment>,
    /// The workspace the API belongs to; fixed at creation.
    pub workspace: String,
    pub created_at: OffsetDateTime,
    /// Named sets of scopes that keys of this API carry by naming them;
    /// a change reaches every key holding the role at its next verify.
    pub roles: KeyRoles,
    /// Scopes whose use needs the key owner's second factor at verify: a
    /// TOTP code, or an Ed25519 signature where `signing` allows it.
    pub critical_scopes: Vec<Scope>,
    /// Which requests to the API's keys must be signed.
    pub signing: ApiSigning,
}

/// Which requests to an API's keys must carry a signature. A key that
/// has a signing key of its own always needs one, whatever this says.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSigning {
    /// Every request with every key of the API: keys are issued only with
    /// a signing key.
    #[serde(default)]
    pub all: bool,
    /// Requests that need any of these scopes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<Scope>,
    /// A valid Ed25519 signature stands in for the owner's TOTP code on a
    /// critical scope: only the customer holds the private key, so the
    /// signature is a second factor the provider cannot make.
    #[serde(default)]
    pub ed25519_replaces_otp: bool,
}

impl ApiSigning {
    /// Whether a request needing `scopes` must be signed.
    pub fn requires(&self, scopes: &[Scope]) -> bool {
        self.all || scopes.iter().any(|s| self.scopes.contains(s))
    }

    /// Whether the API asks anything of signatures.
    pub fn is_empty(&self) -> bool {
        !self.all && self.scopes.is_empty() && !self.ed25519_replaces_otp
    }
}

/// How a key's requests are signed.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SigningAlgorithm {
    /// HMAC-SHA256 with a secret the server makes and keeps sealed.
    #[serde(rename = "hmac-sha256")]
    HmacSha256,
    /// Ed25519 with a public key the customer registers; the server never
    /// holds the private half.
    #[serde(rename = "ed25519")]
    Ed25519,
}

impl SigningAlgorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            SigningAlgorithm::HmacSha256 => "hmac-sha256",
            SigningAlgorithm::Ed25519 => "ed25519",
        }
    }
}

/// The signing key of a key whose every request must be signed.
#[derive(Clone, PartialEq, Eq)]
pub struct KeySigning {
    pub algorithm: SigningAlgorithm,
    /// How far a request's signing time may lie from the verifier's clock,
    /// in milliseconds; a replay inside it is refused by its nonce.
    pub window_ms: u64,
    /// The customer's Ed25519 public key.
    pub public_key: Option<[u8; 32]>,
    /// The HMAC secret as a keyring envelope; `None` for Ed25519.
    pub sealed_secret: Option<Vec<u8>>,
}

impl std::fmt::Debug for KeySigning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySigning")
            .field("algorithm", &self.algorithm)
            .field("window_ms", &self.window_ms)
            .field("public_key", &self.public_key.is_some())
            .field("sealed_secret", &self.sealed_secret.is_some())
            .finish()
    }
}

impl KeySigning {
    /// The window when a key asks for none: five seconds, Binance's default
    /// `recvWindow`.
    pub const DEFAULT_WINDOW_MS: u64 = 5_000;
    /// The widest window a key may have: five minutes. Seen nonces are
    /// kept this long at most.
    pub const MAX_WINDOW_MS: u64 = 300_000;

    /// Checks a window given at create or update.
    pub fn check_window(window_ms: u64) -> Result<u64, ValueError> {
        if (1..=Self::MAX_WINDOW_MS).contains(&window_ms) {
            Ok(window_ms)
        } else {
            Err(ValueError::Invalid {
                field: "signing.window_ms",
                expected: "between 1 and 300000 milliseconds",
            })
        }
    }
}

/// A stored API key. The plaintext is never part of it.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyRecord {
    pub id: KeyId,
    pub api_id: ApiId,
    pub environment: Environment,
    pub name: String,
    /// The identity the key belongs to: the provider's customer.
    pub owner: String,
    pub scopes: Vec<Scope>,
    /// Roles of its API the key holds; verify checks the key's own scopes
    /// together with those the roles stand for (`effective_scopes`).
    pub roles: Vec<RoleName>,
    /// Caller-defined JSON object returned by verify.
    pub metadata: serde_json::Value,
    pub digest: KeyDigest,
    /// The first characters of the key, for display.
    pub start: String,
    pub enabled: bool,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    pub expires_at: Option<OffsetDateTime>,
    pub revoked_at: Option<OffsetDateTime>,
    pub revoke_reason: Option<String>,
    /// The key this one replaced by rotation.
    pub rotated_from: Option<KeyId>,
    /// The successor issued when this key was rotated; set at most once.
    pub rotated_to: Option<KeyId>,
    /// Named rate limits, all enforced on every verify.
    pub ratelimits: Vec<RateLimit>,
    /// Usage credits; `None` means unmetered.
    pub credits: Option<Credits>,
    /// Addresses the key may be used from; empty means any.
    pub ip_allowlist: Vec<Cidr>,
    /// When a verify last found the key (flushed in batches, so a little behind).
    pub last_used_at: Option<OffsetDateTime>,
    /// When set, every request with the key must be signed with this.
    pub signing: Option<KeySigning>,
}

impl KeyRecord {
    /// A new, enabled key of `api_id` in `environment` for the key
    /// `plaintext`: named after its owner, with no scopes, empty metadata, no
    /// expiry and no limits. Callers set what they need on the result.
    pub fn new(
        api_id: ApiId,
        environment: Environment,
        owner: String,
        plaintext: &crate::PlaintextKey,
        now: OffsetDateTime,
    ) -> Result<Self, getrandom::Error> {
        Ok(KeyRecord {
            id: KeyId::generate(now)?,
            api_id,
            environment,
            name: owner.clone(),
            owner,
            scopes: Vec::new(),
            roles: Vec::new(),
            metadata: serde_json::Value::Object(serde_json::Map::new()),
            digest: plaintext.digest(),
            start: plaintext.display_start(),
            enabled: true,
            created_at: now,
            updated_at: now,
            expires_at: None,
            revoked_at: None,
            revoke_reason: None,
            rotated_from: None,
            rotated_to: None,
            ratelimits: Vec::new(),
            credits: None,
            ip_allowlist: Vec::new(),
            last_used_at: None,
            signing: None,
        })
    }
}

/// The lifecycle state of a key at a moment, derived from its fields.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyState {
    Active,
    Disabled,
    Expired,
    Revoked,
}

impl KeyState {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Active => "active",
            KeyState::Disabled => "disabled",
            KeyState::Expired => "expired",
            KeyState::Revoked => "revoked",
        }
    }
}

impl KeyRecord {
    /// Revocation outranks expiry, which outranks being disabled: the state
    /// names the most final reason the key does not work.
    pub fn state(&self, now: OffsetDateTime) -> KeyState {
        if self.revoked_at.is_some() {
            KeyState::Revoked
        } else if self.expires_at.is_some_and(|at| at <= now) {
            KeyState::Expired
        } else if !self.enabled {
            KeyState::Disabled
        } else {
            KeyState::Active
        }
    }
}

/// A token for the admin API. Tokens are Keyward keys with the `kwa` prefix;
/// like keys, only their digest is stored.
#[derive(Debug, Clone, PartialEq)]
pub struct AdminToken {
    pub id: TokenId,
    pub name: String,
    pub digest: KeyDigest,
    pub start: String,
    pub scopes: Vec<AdminScope>,
    /// When set, the token sees only keys of these APIs; others look absent.
    pub api_ids: Option<Vec<ApiId>>,
    /// When set, the token sees only keys of these environments.
    pub environments: Option<Vec<Environment>>,
    /// The token that created this one; `None` for the root token.
    pub created_by: Option<TokenId>,
    pub created_at: OffsetDateTime,
    pub expires_at: Option<OffsetDateTime>,
    pub revoked_at: Option<OffsetDateTime>,
    /// When set, the token reaches only APIs of these workspaces.
    pub workspaces: Option<Vec<String>>,
    /// For a session (`kws` prefix): the user who signed in. `None` for a
    /// service token.
    pub user_id: Option<UserId>,
    /// A session's grants: its user's roles as they are now, each expanded
    /// to its scopes. A service token has none; its own scopes and limits
    /// are its one grant.
    pub grants: Vec<Grant>,
    /// When the session's user last gave a second factor.
    pub stepped_up_at: Option<OffsetDateTime>,
    /// The client certificate of mutual TLS the token is bound to (SHA-256
    /// of its DER): without it on the connection, the token authenticates
    /// nothing.
    pub client_cert: Option<[u8; 32]>,
    /// When the token was last used, to within an hour (written at most
    /// hourly per node).
    pub last_used_at: Option<OffsetDateTime>,
}

impl AdminToken {
    pub fn is_usable(&self, now: OffsetDateTime) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|at| at > now)
    }

    /// Whether this is a signed-in user's session rather than a service
    /// token.
    pub fn is_session(&self) -> bool {
        self.user_id.is_some()
    }

    /// Whether some grant of the token holds `scope`, wherever it reaches.
    pub fn has_scope(&self, scope: AdminScope) -> bool {
        self.scopes.contains(&scope)
    }

    /// Whether the token can grant everything: every admin scope and no API
    /// or environment limit (a root token). Usability is asked apart.
    pub fn is_full_access(&self) -> bool {
        !self.is_session()
            && self.api_ids.is_none()
            && self.environments.is_none()
            && self.workspaces.is_none()
            && AdminScope::ALL.iter().all(|s| self.has_scope(*s))
    }

    /// Whether `f` holds for some grant of the token: a session's grants,
    /// or a service token's own scopes and limits.
    pub fn any_grant(&self, mut f: impl FnMut(GrantView<'_>) -> bool) -> bool {
        if self.is_session() {
            self.grants.iter().any(|g| f(g.view()))
        } else {
            f(GrantView {
                scopes: &self.scopes,
                workspaces: self.workspaces.as_deref(),
                api_ids: self.api_ids.as_deref(),
                environments: self.environments.as_deref(),
            })
        }
    }

    /// Whether a grant holding `scope` reaches records of `api` (in
    /// `workspace`, when known) in `environment`.
    pub fn reaches(
        &self,
        scope: AdminScope,
        api: &ApiId,
        workspace: Option<&str>,
        environment: Environment,
    ) -> bool {
        self.any_grant(|g| g.has(scope) && g.reaches(api, workspace, environment))
    }

    /// Whether a grant holding `scope` reaches `environment` outside any
    /// API (secrets mounts, transit keys of no API).
    pub fn reaches_environment(&self, scope: AdminScope, environment: Environment) -> bool {
        self.any_grant(|g| g.has(scope) && g.reaches_environment(environment))
    }

    /// Whether some grant is limited to workspaces: only then does its reach
    /// depend on an API's workspace.
    pub fn has_workspace_limits(&self) -> bool {
        self.any_grant(|g| g.workspaces.is_some())
    }

    /// Whether a grant holding `scope` has no API, workspace or environment
    /// limit: the reach operations on the whole node need.
    pub fn is_node_wide(&self, scope: AdminScope) -> bool {
        self.any_grant(|g| g.has(scope) && g.is_unlimited())
    }
}

/// One grant of a token: scopes over a reach. `None` limits nothing.
#[derive(Debug, Clone, Copy)]
pub struct GrantView<'a> {
    pub scopes: &'a [AdminScope],
    pub workspaces: Option<&'a [String]>,
    pub api_ids: Option<&'a [ApiId]>,
    pub environments: Option<&'a [Environment]>,
}

impl GrantView<'_> {
    pub fn has(&self, scope: AdminScope) -> bool {
        self.scopes.contains(&scope)
    }

    /// Whether the grant reaches `api` in `workspace` and `environment`. A
    /// grant limited to workspaces reaches nothing whose workspace is not
    /// known.
    pub fn reaches(&self, api: &ApiId, workspace: Option<&str>, environment: Environment) -> bool {
        self.api_ids.is_none_or(|ids| ids.contains(api))
            && self
                .workspaces
                .is_none_or(|names| workspace.is_some_and(|w| names.iter().any(|n| n == w)))
            && self.reaches_environment(environment)
    }

    pub fn reaches_environment(&self, environment: Environment) -> bool {
        self.environments
            .is_none_or(|envs| envs.contains(&environment))
    }

    pub fn is_unlimited(&self) -> bool {
        self.api_ids.is_none() && self.workspaces.is_none() && self.environments.is_none()
    }
}

/// A user's role in a workspace (or every workspace), expanded to the
/// scopes the role holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub role: String,
    pub scopes: Vec<AdminScope>,
    /// `None`: every workspace.
    pub workspace: Option<String>,
    /// `None`: every environment the role allows.
    pub environments: Option<Vec<Environment>>,
}

impl Grant {
    pub fn view(&self) -> GrantView<'_> {
        GrantView {
            scopes: &self.scopes,
            workspaces: self.workspace.as_ref().map(std::slice::from_ref),
            api_ids: None,
            environments: self.environments.as_deref(),
        }
    }
}

/// One entry of the audit log: who did what to which record, when. It never
/// holds a key or token plaintext.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent {
    pub id: EventId,
    pub at: OffsetDateTime,
    /// The admin token that acted; `None` for the server itself.
    pub actor: Option<TokenId>,
    /// What happened, e.g. `key.create`, `key.revoke`.
    pub action: String,
    /// The id of the record acted on.
    pub target: String,
    /// Further facts as a JSON object, free of secrets.
    pub details: serde_json::Value,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names_are_plain_and_bounded() {
        for good in ["trader", "read-only", "v2.admin", "a:b_c", &"r".repeat(64)] {
            assert!(RoleName::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "has space",
            "tab\t",
            "slash/",
            "star*",
            "é",
            &"r".repeat(65),
        ] {
            assert_eq!(RoleName::parse(bad), Err(ValueError::RoleName), "{bad}");
        }
    }

    #[test]
    fn a_key_carries_its_scopes_and_its_roles_scopes_and_nothing_for_an_undefined_role() {
        let s = |v: &str| Scope::parse(v).unwrap();
        let r = |v: &str| RoleName::parse(v).unwrap();
        let roles: KeyRoles = [
            (r("trader"), vec![s("prices:read"), s("orders:write")]),
            (r("viewer"), vec![s("prices:read")]),
        ]
        .into();
        assert_eq!(
            effective_scopes(
                &[s("me:read")],
                &[r("trader"), r("viewer"), r("gone")],
                &roles
            ),
            vec![s("me:read"), s("orders:write"), s("prices:read")]
        );
        assert_eq!(effective_scopes(&[], &[r("gone")], &roles), vec![]);
    }

    #[test]
    fn an_unknown_admin_scope_is_refused_with_every_scope_named() {
        let refused = AdminScope::parse("keys:everything").unwrap_err();
        assert_eq!(
            refused.to_string(),
            "unknown admin scope; admin scopes are apis:read, apis:write, keys:read, \
             keys:write, keys:verify, tokens:read, tokens:write, audit:read, sys:write, \
             secrets:read, secrets:write, transit:use, transit:write, leaks:report, users:read, users:write"
        );
        assert_eq!(AdminScope::names(), AdminScope::NAMES.join(", "));
        for scope in AdminScope::ALL {
            assert_eq!(AdminScope::parse(scope.as_str()), Ok(scope));
        }
    }
}
