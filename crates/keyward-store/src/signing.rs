//! What signed requests and owners' second factors need across nodes: the
//! signed requests seen inside their window, so a replay at any node is
//! refused, and each key owner's TOTP secret with the last step accepted.

use async_trait::async_trait;
use keyward_core::AuditEvent;
use time::OffsetDateTime;

use crate::Result;

/// A key owner's second factor as stored. The secrets are keyring
/// envelopes; only a node holding the keyring opens them.
#[derive(Clone, PartialEq, Eq)]
pub struct OwnerFactor {
    pub owner: String,
    /// The confirmed TOTP secret.
    pub totp_secret: Option<Vec<u8>>,
    /// A secret enrolled and not yet confirmed by a first code.
    pub totp_pending: Option<Vec<u8>>,
    /// The last step a code was accepted for: no code of it or an earlier
    /// step is accepted again.
    pub totp_last_step: Option<i64>,
    pub updated_at: OffsetDateTime,
}

impl std::fmt::Debug for OwnerFactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnerFactor")
            .field("owner", &self.owner)
            .field("confirmed", &self.totp_secret.is_some())
            .field("pending", &self.totp_pending.is_some())
            .field("totp_last_step", &self.totp_last_step)
            .finish()
    }
}

/// Seen signed requests and owners' second factors.
#[async_trait]
pub trait SigningStore: Send + Sync {
    /// Records that the request `nonce` (a digest) of key `key_id` was seen,
    /// to be remembered until `expires_at`. `false` when it was seen
    /// before and is still remembered: the request is a replay. Expired
    /// entries do not count, so a nonce may come back once its window has
    /// passed (a request that old is refused by its time anyway).
    async fn remember_nonce(
        &self,
        key_id: &str,
        nonce: &[u8; 32],
        expires_at: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<bool>;

    /// Forgets seen requests whose window passed; returns how many.
    async fn prune_nonces(&self, now: OffsetDateTime) -> Result<u64>;

    async fn get_owner_factor(&self, owner: &str) -> Result<Option<OwnerFactor>>;

    /// Stores a new TOTP secret for `owner`, pending until confirmed; a
    /// confirmed one stays in force until then.
    async fn set_owner_totp_pending(
        &self,
        owner: &str,
        sealed: &[u8],
        now: OffsetDateTime,
        event: &AuditEvent,
    ) -> Result<()>;

    /// Makes the pending secret the owner's, with `step` as the last one
    /// accepted. `Conflict` when nothing is pending or the step was used.
    async fn confirm_owner_totp(
        &self,
        owner: &str,
        step: i64,
        now: OffsetDateTime,
        event: &AuditEvent,
    ) -> Result<()>;

    /// Removes the owner's second factor; `NotFound` when there is none.
    async fn remove_owner_totp(&self, owner: &str, event: &AuditEvent) -> Result<()>;

    /// Spends `step` of the owner's confirmed secret: `true` when it is
    /// later than the last step accepted (and is now the last), `false`
    /// when it was used or there is no confirmed secret. Atomic: two
    /// verifies racing with one code cannot both win, on any node.
    async fn spend_owner_step(&self, owner: &str, step: i64) -> Result<bool>;
}
