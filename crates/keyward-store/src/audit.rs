//! The audit log. Events are written by the change they record, in its
//! transaction; only events that record no change of stored state are
//! appended on their own.

use std::sync::Arc;

use async_trait::async_trait;
use keyward_core::chain::{ChainHead, ChainRow, Checkpoint};
use keyward_core::{ApiId, AuditEvent, Environment};
use tokio::sync::broadcast;

use crate::{Page, Result};

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

/// The Ed25519 key that signs the audit chain's checkpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditKey {
    pub id: String,
    pub public_key: Vec<u8>,
    /// The private half as a keyring envelope.
    pub private_key: Vec<u8>,
    pub created_at: time::OffsetDateTime,
}

/// The audit log: read back in id order, each entry with the API and
/// environment of its record.
#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Audit events in id order. Each event records the API and environment
    /// of the record it is about, derived on write from that record (a
    /// key, an API, a secret's mount); the reach filters use them.
    async fn list_audit(&self, filter: &AuditFilter, page: &Page) -> Result<Vec<AuditEntry>>;

    /// Appends events that record no change of stored state (an unseal, a
    /// seal).
    async fn append_audit(&self, events: &[AuditEvent]) -> Result<()>;

    /// The hash chain's head as stored; `None` when its row is gone.
    async fn chain_head(&self) -> Result<Option<ChainHead>>;

    /// Up to `limit` rows of the chain after sequence number `after`, in
    /// sequence order, every field as stored.
    async fn chain_rows(&self, after: u64, limit: u32) -> Result<Vec<ChainRow>>;

    /// Where the first event outside the chain (one with no sequence
    /// number, which only a write around Keyward leaves) would stand: one
    /// more than the chained events before it in id order.
    async fn first_unchained(&self) -> Result<Option<u64>>;

    /// The key that signs checkpoints, if one was made.
    async fn audit_key(&self) -> Result<Option<AuditKey>>;

    /// Stores `key` unless a key of its id exists, and returns the key
    /// stored under that id: of two nodes making one at once, one wins.
    async fn put_audit_key(&self, key: &AuditKey) -> Result<AuditKey>;

    /// Stores a checkpoint; one of a sequence number already checkpointed
    /// (another node's) changes nothing.
    async fn put_checkpoint(&self, checkpoint: &Checkpoint) -> Result<()>;

    /// Up to `limit` checkpoints after sequence number `after`, in order.
    async fn checkpoints(&self, after: u64, limit: u32) -> Result<Vec<Checkpoint>>;

    /// The checkpoint of the highest sequence number.
    async fn last_checkpoint(&self) -> Result<Option<Checkpoint>>;

    /// The events of every audited write this store commits from now on,
    /// each write's together, in commit order: the feed the service turns
    /// into its events.
    fn committed(&self) -> Committed;
}

/// A subscription to the events of committed writes. It holds at most
/// [`CommitFeed::CAPACITY`] writes unread; past that it reports how many it
/// skipped (`RecvError::Lagged`), and the audit log holds them all.
pub type Committed = broadcast::Receiver<Arc<[AuditEvent]>>;

/// Where a store announces its committed writes; subscribers that read
/// nothing cost the writer nothing.
#[derive(Debug)]
pub struct CommitFeed(broadcast::Sender<Arc<[AuditEvent]>>);

impl CommitFeed {
    /// Writes kept for a subscriber that has not read them yet.
    pub const CAPACITY: usize = 4096;

    pub fn new() -> Self {
        CommitFeed(broadcast::channel(Self::CAPACITY).0)
    }

    /// Announces the events of a write that committed.
    pub fn publish(&self, events: &[AuditEvent]) {
        if !events.is_empty() && self.0.receiver_count() > 0 {
            // No subscriber left is not a failure: nobody is listening.
            let _ = self.0.send(events.into());
        }
    }

    pub fn subscribe(&self) -> Committed {
        self.0.subscribe()
    }
}

impl Default for CommitFeed {
    fn default() -> Self {
        CommitFeed::new()
    }
}
