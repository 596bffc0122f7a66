//! What verification records: counts per key, minute and result code,
//! flushed in batches, and when each key was last used.

use std::ops::RangeInclusive;

use async_trait::async_trait;
use keyward_core::KeyId;
use time::OffsetDateTime;

use crate::Result;

/// Verifications of one key in one minute with one result code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRow {
    pub key_id: KeyId,
    /// Minutes since the Unix epoch.
    pub minute: i64,
    pub code: String,
    pub count: u64,
}

/// Usage counts and last-used times, written in batches, unaudited.
#[async_trait]
pub trait UsageStore: Send + Sync {
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
}
