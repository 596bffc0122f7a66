//! The change feed (`cache_changes`), from which nodes learn what to drop
//! from their caches. A change writes its entries in its own transaction;
//! this area only reads and prunes them.

use async_trait::async_trait;
use keyward_core::{ApiId, KeyDigest};
use time::OffsetDateTime;

use crate::Result;

/// What a change-feed entry says changed, for nodes to drop from caches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The key with this digest changed (updated, revoked, rotated).
    Key(KeyDigest),
    /// The admin token with this digest was revoked.
    Token(KeyDigest),
    /// The owner's rate limits changed.
    Owner(String),
    /// The API's key roles or critical scopes changed: every key of the
    /// API may carry other scopes now, so nodes drop its cached keys. One
    /// entry however many keys hold a role.
    Api(ApiId),
}

/// One entry of the change feed. Sequence numbers increase with each entry
/// written; on PostgreSQL, concurrent transactions may make them visible out
/// of order, and a rolled-back one leaves a gap for good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeEntry {
    pub seq: i64,
    pub change: Change,
}

/// The change feed, read by every node's follower.
#[async_trait]
pub trait ChangeStore: Send + Sync {
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
