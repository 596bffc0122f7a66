//! API keys: issued, read, changed, rotated and revoked, each change
//! audited and written to the change feed in its transaction.

use async_trait::async_trait;
use keyward_core::limits::{Cidr, RateLimit, Refill};
use keyward_core::{
    ApiId, AuditEvent, Environment, KeyDigest, KeyId, KeyRecord, KeyState, RoleName, Scope,
};
use time::OffsetDateTime;

use crate::{Page, Result};

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
    /// Replaces the roles the key holds; each must be one its API defines
    /// when the change commits (`StoreError::UndefinedRole` otherwise).
    pub roles: Option<Vec<RoleName>>,
    /// `Some(None)` lets the key verify unsigned again; `Some(Some(_))`
    /// gives it a new signing key.
    pub signing: Option<Option<keyward_core::KeySigning>>,
}

/// New credits for a key.
#[derive(Debug, Clone, Copy)]
pub struct CreditsPatch {
    pub remaining: u64,
    pub refill: Option<Refill>,
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

/// API keys. Every change is audited; a change to a key that nodes may
/// hold in their caches also writes a change-feed entry, in the same
/// transaction.
#[async_trait]
pub trait KeyStore: Send + Sync {
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
}
