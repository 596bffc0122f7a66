//! What verification enforces across requests and nodes: the credits of
//! metered keys, leased to nodes in blocks, and the rate limits all keys
//! of one owner share.

use async_trait::async_trait;
use keyward_core::limits::RateLimit;
use keyward_core::{AuditEvent, KeyId};
use time::OffsetDateTime;

use crate::Result;

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

/// Credits and owner rate limits: the state verification keeps across
/// nodes. Credits live in the keys' rows but move in leases, unaudited;
/// owner limits are set by an operator, audited.
#[async_trait]
pub trait LimitStore: Send + Sync {
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
}
