//! Keyward's storage: the [`Store`] trait and its two implementations,
//! [`SqliteStore`] (the embedded default) and [`PgStore`] (the multi-node
//! store). [`open`] picks one by the database URL's scheme.
//!
//! Only this crate knows SQL. Each backend keeps its own migrations under
//! `migrations/<backend>/` and applies them on open. Every mutation that the
//! audit log must record takes its [`AuditEvent`]s and writes them in the same
//! transaction, so a change is never acknowledged without its audit entry.

#![forbid(unsafe_code)]

mod common;
mod postgres;
mod sqlite;

use std::ops::RangeInclusive;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use keyward_core::limits::{Cidr, RateLimit, Refill};
use keyward_core::{
    AdminToken, Api, ApiId, AuditEvent, Environment, EventId, KeyDigest, KeyId, KeyRecord,
    KeyState, Scope, TokenId,
};
use time::OffsetDateTime;

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

/// A storage failure. Callers map `Conflict` and `NotFound` to client errors
/// and log everything else as an internal error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A uniqueness rule was broken, e.g. an API prefix already in use.
    #[error("conflict: {0}")]
    Conflict(&'static str),
    /// The record acted on does not exist.
    #[error("record not found")]
    NotFound,
    /// A guarded token revocation would leave no usable admin token that
    /// can grant every scope.
    #[error("this would revoke the last usable full-access admin token")]
    LastFullToken,
    /// A stored row could not be read back into a record; the database was
    /// changed outside Keyward or is corrupt.
    #[error("corrupt row in {table}: {detail}")]
    Corrupt { table: &'static str, detail: String },
    /// The database URL names no supported backend.
    #[error("unsupported database URL scheme (use sqlite:// or postgres://)")]
    UnsupportedUrl,
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Which keys a listing returns. Every field narrows; `None` does not.
#[derive(Debug, Clone, Default)]
pub struct KeyFilter {
    pub api_id: Option<ApiId>,
    pub owner: Option<String>,
    pub environment: Option<Environment>,
    /// The state at `now`.
    pub state: Option<KeyState>,
    /// Restricts the listing to these APIs (an admin token's reach).
    pub api_ids_within: Option<Vec<ApiId>>,
    /// Restricts the listing to these environments (an admin token's reach).
    pub environments_within: Option<Vec<Environment>>,
}

/// One page of a listing in id order.
#[derive(Debug, Clone)]
pub struct Page {
    /// Return only records with ids after this one.
    pub after: Option<String>,
    pub limit: u32,
}

/// Which keys a bulk revocation hits. At least one of the caller's criteria
/// must be set; the `*_within` fields only restrict to the caller's reach.
#[derive(Debug, Clone, Default)]
pub struct BulkRevokeFilter {
    pub owner: Option<String>,
    pub api_id: Option<ApiId>,
    pub environment: Option<Environment>,
    pub created_before: Option<OffsetDateTime>,
    pub scope: Option<Scope>,
    pub api_ids_within: Option<Vec<ApiId>>,
    pub environments_within: Option<Vec<Environment>>,
}

impl BulkRevokeFilter {
    /// Whether the caller named any criterion. An empty filter would revoke
    /// every key the caller can reach, which is never what an incident needs.
    pub fn has_criteria(&self) -> bool {
        self.owner.is_some()
            || self.api_id.is_some()
            || self.environment.is_some()
            || self.created_before.is_some()
            || self.scope.is_some()
    }
}

/// A change to a key's mutable attributes; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct KeyPatch {
    pub name: Option<String>,
    pub scopes: Option<Vec<Scope>>,
    pub metadata: Option<serde_json::Value>,
    /// `Some(None)` removes the expiry.
    pub expires_at: Option<Option<OffsetDateTime>>,
    pub enabled: Option<bool>,
    pub ratelimits: Option<Vec<RateLimit>>,
    /// `Some(None)` makes the key unmetered; `Some(Some(_))` sets its credits
    /// (and starts a new refill period now).
    pub credits: Option<Option<CreditsPatch>>,
    pub ip_allowlist: Option<Vec<Cidr>>,
}

/// New credits for a key.
#[derive(Debug, Clone, Copy)]
pub struct CreditsPatch {
    pub remaining: u64,
    pub refill: Option<Refill>,
}

/// Credits taken out of storage by one node, to hand out from memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CreditLease {
    /// Credits granted by this lease (0 when none are left).
    pub granted: u64,
    /// Credits left in storage after it.
    pub remaining: u64,
    /// The refill period the credits belong to; a lease from an older period
    /// is worthless once a refill happened.
    pub period: OffsetDateTime,
}

/// Verifications of one key in one minute with one result code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRow {
    pub key_id: KeyId,
    /// Minutes since the Unix epoch.
    pub minute: i64,
    pub code: String,
    pub count: u64,
}

/// How a rotation changes the old key and what it issues.
#[derive(Debug, Clone)]
pub struct Rotation {
    pub old: KeyId,
    /// When the old key stops verifying: now plus the grace period, or its
    /// own earlier expiry.
    pub old_expires_at: OffsetDateTime,
    pub successor: KeyRecord,
}

/// What a change-feed entry says changed, for nodes to drop from caches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The key with this digest changed (updated, revoked, rotated).
    Key(KeyDigest),
    /// The admin token with this digest was revoked.
    Token(KeyDigest),
    /// The owner's rate limits changed.
    Owner(String),
}

/// One entry of the change feed. Sequence numbers increase with each entry
/// written; on PostgreSQL, concurrent transactions may make them visible out
/// of order, and a rolled-back one leaves a gap for good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeEntry {
    pub seq: i64,
    pub change: Change,
}

/// The audit log filter for listings.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub target: Option<String>,
    pub action: Option<String>,
    /// Restricts the listing to events about records of these APIs (an
    /// admin token's reach). Events about no API, or whose API is not
    /// known, are then left out.
    pub api_ids_within: Option<Vec<ApiId>>,
    /// Restricts the listing to events about records of these environments
    /// (an admin token's reach); events of no known environment are then
    /// left out.
    pub environments_within: Option<Vec<Environment>>,
}

/// One row of an audit listing: the event, or a row that could not be read
/// back (the database was changed outside Keyward), reported rather than
/// skipped so that a listing never hides a row or fails for one.
#[derive(Debug, Clone, PartialEq)]
pub enum AuditEntry {
    Event(AuditEvent),
    Unreadable {
        /// The row's id as stored, which is also its place in the listing.
        id: String,
        /// What could not be read, for the log; never shown to clients.
        detail: String,
    },
}

impl AuditEntry {
    /// The row's id as stored: the listing's cursor.
    pub fn id(&self) -> &str {
        match self {
            AuditEntry::Event(e) => e.id.as_str(),
            AuditEntry::Unreadable { id, .. } => id,
        }
    }
}

/// Whether a token revocation may take the last usable admin token that can
/// grant every scope with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LastFullToken {
    /// Refuse with [`StoreError::LastFullToken`]: the admin API, so that no
    /// caller locks the install out.
    Keep,
    /// Revoke anyway: a leaked token must stop working whatever it leaves.
    Revoke,
}

/// A token a revocation took with it, for caches to drop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedToken {
    pub id: TokenId,
    pub digest: KeyDigest,
}

/// Where the master key lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealKind {
    File,
    Shamir,
    Pkcs11,
}

impl SealKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SealKind::File => "file",
            SealKind::Shamir => "shamir",
            SealKind::Pkcs11 => "pkcs11",
        }
    }

    pub fn parse(s: &str) -> Option<SealKind> {
        match s {
            "file" => Some(SealKind::File),
            "shamir" => Some(SealKind::Shamir),
            "pkcs11" => Some(SealKind::Pkcs11),
            _ => None,
        }
    }
}

/// The stored seal: how the master key is kept. Holds nothing secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealRecord {
    pub kind: SealKind,
    /// `shamir`: the share set's id.
    pub share_set: Option<[u8; 4]>,
    /// `shamir`: how many shares unseal.
    pub threshold: Option<u8>,
    /// `shamir`: SHA-256 digests of the issued shares, in index order.
    pub share_digests: Vec<[u8; 32]>,
    /// `pkcs11`: the master key wrapped by the HSM's key.
    pub wrapped_master: Option<Vec<u8>>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// One keyring version, wrapped by the master key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyringEntry {
    pub version: u32,
    pub wrapped_key: Vec<u8>,
    pub created_at: OffsetDateTime,
}

/// A secrets mount: a KV v2 store bound to one environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretMount {
    pub path: String,
    pub environment: Environment,
    /// Versions kept per secret unless the secret says otherwise (0 = 10).
    pub max_versions: u32,
    /// Whether every write must name the version it replaces.
    pub cas_required: bool,
    pub created_at: OffsetDateTime,
}

/// A secret's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretMeta {
    pub mount: String,
    pub path: String,
    /// The newest version (0 before the first write).
    pub current_version: u64,
    /// The oldest version still kept.
    pub oldest_version: u64,
    /// 0 = the mount's setting.
    pub max_versions: u32,
    pub cas_required: bool,
    /// String keys to string values, as stored in the clear before
    /// metadata was sealed; empty once `custom_metadata_sealed` is set.
    pub custom_metadata: serde_json::Map<String, serde_json::Value>,
    /// The custom metadata as a keyring envelope (the server seals it).
    pub custom_metadata_sealed: Option<Vec<u8>>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// One version of a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretVersion {
    pub version: u64,
    /// The envelope; `None` once destroyed.
    pub value: Option<Vec<u8>>,
    pub created_at: OffsetDateTime,
    pub deleted_at: Option<OffsetDateTime>,
    pub destroyed: bool,
}

/// A new version of a secret, written only if the secret's current version
/// is still `replaces` (0: the secret does not exist yet).
#[derive(Debug, Clone)]
pub struct SecretWrite {
    pub mount: String,
    pub path: String,
    pub version: u64,
    pub replaces: u64,
    pub value: Vec<u8>,
    /// Versions to keep, the effective setting; older ones are removed.
    pub keep: u32,
    pub at: OffsetDateTime,
}

/// What happens to some versions of a secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionAction {
    /// Soft delete: the value stays, reads answer "deleted".
    Delete(OffsetDateTime),
    Undelete,
    /// The value is removed for good.
    Destroy,
}

/// A change to a secret's metadata; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct SecretMetaPatch {
    pub max_versions: Option<u32>,
    pub cas_required: Option<bool>,
    /// Stores metadata in the clear and drops any sealed metadata.
    pub custom_metadata: Option<serde_json::Map<String, serde_json::Value>>,
    /// Stores the metadata's envelope and empties the clear column; wins
    /// over `custom_metadata` when both are given.
    pub custom_metadata_sealed: Option<Vec<u8>>,
}

/// A transit key's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransitKey {
    pub name: String,
    /// `aes256-gcm96`, `ed25519`, … (the server parses it).
    pub key_type: String,
    pub derived: bool,
    pub latest_version: u32,
    /// Older versions no longer decrypt or verify.
    pub min_decryption_version: u32,
    /// 0: encrypt with the latest version.
    pub min_encryption_version: u32,
    pub deletion_allowed: bool,
    /// The environment the key serves; tokens limited to others do not
    /// reach it.
    pub environment: Environment,
    /// When set, the APIs the key serves; a token limited to APIs reaches
    /// it only when it reaches all of them.
    pub api_ids: Option<Vec<ApiId>>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// One version of a transit key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransitKeyVersion {
    pub version: u32,
    /// The key material as an envelope of the keyring.
    pub material: Vec<u8>,
    /// The public key of a signing key.
    pub public_key: Option<Vec<u8>>,
    pub created_at: OffsetDateTime,
}

/// Where a stored envelope lives: a secret version or a transit key
/// version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvelopeCursor {
    Secret {
        mount: String,
        path: String,
        version: u64,
    },
    Transit {
        name: String,
        version: u32,
    },
}

/// A key whose encryptions are counted.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum UseTarget {
    Keyring { version: u32 },
    Transit { name: String, version: u32 },
}

/// A stored envelope and where it lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEnvelope {
    pub at: EnvelopeCursor,
    pub envelope: Vec<u8>,
}

/// Everything Keyward persists. Implementations must make every method that
/// returns `Ok` durable before returning.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Checks that the database answers.
    async fn ping(&self) -> Result<()>;

    /// Stores the root admin token unless the store was bootstrapped before.
    /// Returns whether this call did it; safe when several nodes start at once.
    async fn bootstrap(&self, root: &AdminToken, event: &AuditEvent) -> Result<bool>;

    async fn create_api(&self, api: &Api, event: &AuditEvent) -> Result<()>;
    async fn get_api(&self, id: &ApiId) -> Result<Option<Api>>;
    async fn list_apis(&self) -> Result<Vec<Api>>;

    async fn create_key(&self, key: &KeyRecord, event: &AuditEvent) -> Result<()>;
    /// Stores many keys and their events in one transaction: all or none.
    async fn create_keys(&self, keys: &[KeyRecord], events: &[AuditEvent]) -> Result<()>;
    async fn get_key(&self, id: &KeyId) -> Result<Option<KeyRecord>>;
    async fn find_key_by_digest(&self, digest: &KeyDigest) -> Result<Option<KeyRecord>>;
    async fn list_keys(
        &self,
        filter: &KeyFilter,
        page: &Page,
        now: OffsetDateTime,
    ) -> Result<Vec<KeyRecord>>;
    /// Applies `patch` atomically; `NotFound` if the key does not exist.
    async fn update_key(
        &self,
        id: &KeyId,
        patch: &KeyPatch,
        now: OffsetDateTime,
        event: &AuditEvent,
    ) -> Result<KeyRecord>;
    /// Revokes the key unless it already is; returns the record and whether
    /// this call revoked it (the event is written only then).
    async fn revoke_key(
        &self,
        id: &KeyId,
        reason: &str,
        now: OffsetDateTime,
        event: &AuditEvent,
    ) -> Result<(KeyRecord, bool)>;
    /// Marks the old key rotated and stores the successor in one transaction.
    /// `Conflict` if the old key is revoked or was rotated before.
    async fn rotate_key(&self, rotation: &Rotation, events: &[AuditEvent]) -> Result<()>;
    /// Revokes every unrevoked key matching `filter` in one transaction, with
    /// one audit event per key: a copy of `template` with a fresh id and the
    /// key as target. Returns the digests of the keys it revoked, so caches
    /// can drop them.
    async fn bulk_revoke(
        &self,
        filter: &BulkRevokeFilter,
        reason: &str,
        now: OffsetDateTime,
        template: &AuditEvent,
    ) -> Result<Vec<KeyDigest>>;

    /// Takes up to `want` credits of a metered key out of storage, refilling
    /// first when a refill period began. `None` when the key does not exist
    /// or is unmetered.
    async fn lease_credits(
        &self,
        id: &KeyId,
        want: u64,
        now: OffsetDateTime,
    ) -> Result<Option<CreditLease>>;
    /// Gives back credits of a lease that were not used, unless a refill
    /// happened since (then they are void).
    async fn return_credits(&self, id: &KeyId, amount: u64, period: OffsetDateTime) -> Result<()>;
    /// Adds usage counts and moves `last_used_at` forward, in one transaction.
    async fn record_usage(
        &self,
        rows: &[UsageRow],
        last_used: &[(KeyId, OffsetDateTime)],
    ) -> Result<()>;
    /// Usage of one key in the minutes of `minutes` (minutes since the Unix
    /// epoch, both ends included), oldest first. Usage is stored by minute,
    /// so the cost follows the length of the span, not the table's size.
    async fn key_usage(&self, id: &KeyId, minutes: RangeInclusive<i64>) -> Result<Vec<UsageRow>>;
    /// Deletes the usage of the oldest stored minute when that minute is
    /// before `before` (minutes since the Unix epoch), and returns how many
    /// rows went: 0 when nothing is that old.
    async fn prune_usage(&self, before: i64) -> Result<u64>;

    /// The rate limits shared by all keys of `owner` (empty when none).
    async fn owner_ratelimits(&self, owner: &str) -> Result<Vec<RateLimit>>;
    /// Every owner that has rate limits, with them. Owners with limits are
    /// few next to keys, so nodes hold them all.
    async fn all_owner_ratelimits(&self) -> Result<Vec<(String, Vec<RateLimit>)>>;
    async fn set_owner_ratelimits(
        &self,
        owner: &str,
        limits: &[RateLimit],
        now: OffsetDateTime,
        event: &AuditEvent,
    ) -> Result<()>;

    /// Stores a token. When it names the token that created it, that token
    /// must still be unrevoked (checked in the same transaction, so a
    /// revocation of the creator either sees the new token or refuses it):
    /// `Conflict` otherwise.
    async fn create_token(&self, token: &AdminToken, event: &AuditEvent) -> Result<()>;
    async fn get_token(&self, id: &TokenId) -> Result<Option<AdminToken>>;
    async fn find_token_by_digest(&self, digest: &KeyDigest) -> Result<Option<AdminToken>>;
    async fn list_tokens(&self, page: &Page) -> Result<Vec<AdminToken>>;
    /// Revokes the token unless it already is, with every token it minted,
    /// as [`Store::revoke_token_tree`] does without a guard; returns whether
    /// this call revoked the token itself.
    async fn revoke_token(
        &self,
        id: &TokenId,
        now: OffsetDateTime,
        event: &AuditEvent,
    ) -> Result<bool>;
    /// Revokes the token and every unrevoked token it minted, transitively,
    /// in one transaction: `event` for the token itself, and for each other
    /// one a copy with a fresh id, that token as target and `cascade_from`
    /// (the origin's id) added to its details; a change-feed entry for each.
    /// Returns what it revoked, the token itself first when it was still
    /// unrevoked. `NotFound` when there is no such token; with
    /// [`LastFullToken::Keep`], `LastFullToken` when no usable full-access
    /// token would remain (then nothing changes).
    async fn revoke_token_tree(
        &self,
        id: &TokenId,
        now: OffsetDateTime,
        event: &AuditEvent,
        last: LastFullToken,
    ) -> Result<Vec<RevokedToken>>;
    /// Whether some token is usable at `now`, unlimited in APIs and
    /// environments, and holds every admin scope: one that can grant all.
    async fn has_full_token(&self, now: OffsetDateTime) -> Result<bool>;
    /// Makes `to` the creator of every unrevoked token `from` created, with
    /// `event`, in one transaction; returns how many moved. Recovery hands
    /// a lost root's tokens to its successor this way, so revoking the old
    /// root does not take every service's token with it. `to` must bound
    /// them as their old creator did (the new root: every scope, no limit,
    /// no expiry).
    async fn adopt_tokens(&self, from: &TokenId, to: &TokenId, event: &AuditEvent) -> Result<u64>;

    /// Audit events in id order. Each event records the API and environment
    /// of the record it is about, derived on write from that record (a
    /// key, an API, a secret's mount); the reach filters use them.
    async fn list_audit(&self, filter: &AuditFilter, page: &Page) -> Result<Vec<AuditEntry>>;

    /// The seal, once initialised.
    async fn seal(&self) -> Result<Option<SealRecord>>;
    /// The keyring's versions, lowest first.
    async fn keyring(&self) -> Result<Vec<KeyringEntry>>;
    /// Stores the seal and the keyring's first version; `Conflict` when the
    /// seal was initialised before (by this node or another).
    async fn init_seal(
        &self,
        seal: &SealRecord,
        first: &KeyringEntry,
        event: &AuditEvent,
    ) -> Result<()>;
    /// Adds a keyring version; `Conflict` when it exists.
    async fn add_keyring_key(&self, entry: &KeyringEntry, event: &AuditEvent) -> Result<()>;
    /// Replaces the seal and every keyring version's wrapping (a rekey: new
    /// master key, new shares) in one transaction.
    async fn rekey_seal(
        &self,
        seal: &SealRecord,
        keyring: &[KeyringEntry],
        event: &AuditEvent,
    ) -> Result<()>;
    /// Appends events that record no change of stored state (an unseal, a
    /// seal).
    async fn append_audit(&self, events: &[AuditEvent]) -> Result<()>;

    /// Creates a secrets mount; `Conflict` when the path is taken.
    async fn create_mount(&self, mount: &SecretMount, event: &AuditEvent) -> Result<()>;
    async fn get_mount(&self, path: &str) -> Result<Option<SecretMount>>;
    async fn list_mounts(&self) -> Result<Vec<SecretMount>>;
    /// Changes a mount's defaults.
    async fn configure_mount(
        &self,
        path: &str,
        max_versions: u32,
        cas_required: bool,
        event: &AuditEvent,
    ) -> Result<()>;
    async fn secret_meta(&self, mount: &str, path: &str) -> Result<Option<SecretMeta>>;
    /// Every kept version, oldest first.
    async fn secret_versions(&self, mount: &str, path: &str) -> Result<Vec<SecretVersion>>;
    /// Writes a version; `Conflict` when the current version is no longer
    /// `write.replaces` (another write came first).
    async fn write_secret(&self, write: &SecretWrite, event: &AuditEvent) -> Result<()>;
    /// Deletes, undeletes or destroys versions of a secret. Versions that do
    /// not exist (or are destroyed, for undelete) are skipped.
    async fn act_on_versions(
        &self,
        mount: &str,
        path: &str,
        versions: &[u64],
        action: VersionAction,
        event: &AuditEvent,
    ) -> Result<()>;
    /// Writes metadata, creating an empty secret when there is none.
    async fn patch_secret_meta(
        &self,
        mount: &str,
        path: &str,
        patch: &SecretMetaPatch,
        at: OffsetDateTime,
        event: &AuditEvent,
    ) -> Result<()>;
    /// Removes a secret with all its versions; `false` when there was none.
    async fn delete_secret(&self, mount: &str, path: &str, event: &AuditEvent) -> Result<bool>;
    /// Paths of a mount that start with `prefix`, in order.
    async fn secret_paths(&self, mount: &str, prefix: &str) -> Result<Vec<String>>;

    /// Creates a transit key with its first version; `Conflict` when the
    /// name is taken.
    async fn create_transit_key(
        &self,
        key: &TransitKey,
        first: &TransitKeyVersion,
        event: &AuditEvent,
    ) -> Result<()>;
    /// A transit key and its versions, oldest first.
    async fn get_transit_key(
        &self,
        name: &str,
    ) -> Result<Option<(TransitKey, Vec<TransitKeyVersion>)>>;
    /// Every transit key's settings (without versions), by name.
    async fn list_transit_keys(&self) -> Result<Vec<TransitKey>>;
    /// Adds the next version; `Conflict` unless it follows the latest.
    async fn add_transit_key_version(
        &self,
        name: &str,
        version: &TransitKeyVersion,
        event: &AuditEvent,
    ) -> Result<()>;
    async fn configure_transit_key(
        &self,
        name: &str,
        min_decryption_version: u32,
        min_encryption_version: u32,
        deletion_allowed: bool,
        event: &AuditEvent,
    ) -> Result<()>;
    /// Deletes a key whose deletion is allowed: `NotFound` when there is
    /// none, `Conflict` when deletion is not allowed.
    async fn delete_transit_key(&self, name: &str, event: &AuditEvent) -> Result<()>;

    /// Up to `limit` stored secret values after `after` (mount, path,
    /// version), in that order: what a keyring rewrap walks.
    async fn secret_envelopes(
        &self,
        after: Option<&EnvelopeCursor>,
        limit: u32,
    ) -> Result<Vec<StoredEnvelope>>;
    /// Up to `limit` transit key versions after `after` (name, version).
    async fn transit_envelopes(
        &self,
        after: Option<&EnvelopeCursor>,
        limit: u32,
    ) -> Result<Vec<StoredEnvelope>>;
    /// Replaces a stored envelope if it is still `old` (a write or destroy
    /// since it was read wins). Returns whether it was replaced.
    async fn replace_envelope(&self, at: &EnvelopeCursor, old: &[u8], new: &[u8]) -> Result<bool>;

    /// Adds `n` to the uses reserved for a keyring version or a transit key
    /// version and returns the new total; `NotFound` when it does not exist.
    async fn reserve_uses(&self, target: &UseTarget, n: u64) -> Result<u64>;

    /// The newest change-feed sequence number (0 for an empty feed): where a
    /// node that starts with empty caches begins reading.
    async fn latest_change(&self) -> Result<i64>;
    /// Up to `limit` change-feed entries with `seq > after`, in order.
    async fn changes_after(&self, after: i64, limit: u32) -> Result<Vec<ChangeEntry>>;
    /// Returns when a change may have been written (woken by the backend's
    /// notifications where it has them), or after `timeout`. A hint only:
    /// callers read the feed after it either way.
    async fn wait_for_change(&self, timeout: std::time::Duration);
    /// Deletes change-feed entries written before `before`; returns how many.
    async fn prune_changes(&self, before: OffsetDateTime) -> Result<u64>;
}

/// Opens the store a database URL names: `sqlite://PATH` or `postgres://…`
/// (also `postgresql://`), and applies pending migrations.
pub async fn open(url: &str) -> Result<Arc<dyn Store>> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PgStore::connect(url, None).await?))
    } else if let Some(path) = url.strip_prefix("sqlite://") {
        Ok(Arc::new(SqliteStore::open(Path::new(path)).await?))
    } else {
        Err(StoreError::UnsupportedUrl)
    }
}

/// Builds an audit event id, failing only if the OS has no randomness.
pub fn event_id(now: OffsetDateTime) -> Result<EventId> {
    EventId::generate(now).map_err(|e| StoreError::Io(std::io::Error::other(e)))
}

/// Helpers shared by both backends for reading rows back into records.
pub(crate) mod rows {
    use super::StoreError;
    use keyward_core::{Environment, KeyDigest};
    use time::OffsetDateTime;

    pub fn corrupt(table: &'static str, detail: impl ToString) -> StoreError {
        StoreError::Corrupt {
            table,
            detail: detail.to_string(),
        }
    }

    pub fn millis(at: OffsetDateTime) -> i64 {
        (at.unix_timestamp_nanos() / 1_000_000) as i64
    }

    pub fn from_millis(table: &'static str, ms: i64) -> Result<OffsetDateTime, StoreError> {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
            .map_err(|e| corrupt(table, e))
    }

    pub fn opt_from_millis(
        table: &'static str,
        ms: Option<i64>,
    ) -> Result<Option<OffsetDateTime>, StoreError> {
        ms.map(|m| from_millis(table, m)).transpose()
    }

    pub fn environment(table: &'static str, s: &str) -> Result<Environment, StoreError> {
        s.parse().map_err(|e| corrupt(table, e))
    }

    pub fn digest(table: &'static str, bytes: &[u8]) -> Result<KeyDigest, StoreError> {
        KeyDigest::from_slice(bytes).ok_or_else(|| corrupt(table, "digest is not 32 bytes"))
    }

    pub fn json<T: serde::de::DeserializeOwned>(
        table: &'static str,
        text: &str,
    ) -> Result<T, StoreError> {
        serde_json::from_str(text).map_err(|e| corrupt(table, e))
    }

    pub fn to_json<T: serde::Serialize>(value: &T) -> String {
        // Serializing plain data (strings, lists, JSON values) cannot fail.
        serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned())
    }
}
