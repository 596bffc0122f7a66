//! Events: what changed, announced once its write has committed, for the
//! parts of Keyward that act on changes (webhooks, playbooks) to follow.
//!
//! Every audited write is announced by the store's one `audited` helper
//! after its transaction commits, so no operation can change stored state
//! without its event. The events are those of the audit log, in commit
//! order; a follower that falls behind is told how many it missed and can
//! read them back from the audit log, which holds them all.
//!
//! Invariant: an event is never announced for a write that did not commit.

use keyward_core::{AuditAction, AuditEvent};
use tokio::sync::broadcast::error::RecvError;

use crate::Service;

/// One change, as recorded in the audit log.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// What was done; `None` for an action this build does not know (an
    /// event written by a newer node).
    pub action: Option<AuditAction>,
    pub record: AuditEvent,
}

/// What a follower reads next.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    Event(Event),
    /// The follower fell this many writes behind and they were dropped
    /// from the feed; the audit log holds them.
    Missed(u64),
}

/// A follower of this node's committed changes.
pub struct Events {
    feed: keyward_store::Committed,
    pending: std::collections::VecDeque<AuditEvent>,
}

impl Events {
    /// The next event, waiting for one; `None` once the store is gone.
    pub async fn next(&mut self) -> Option<Next> {
        loop {
            if let Some(record) = self.pending.pop_front() {
                let action = AuditAction::parse(&record.action);
                return Some(Next::Event(Event { action, record }));
            }
            match self.feed.recv().await {
                Ok(events) => self.pending.extend(events.iter().cloned()),
                Err(RecvError::Lagged(missed)) => return Some(Next::Missed(missed)),
                Err(RecvError::Closed) => return None,
            }
        }
    }
}

impl Service {
    /// Follows every change committed on this node from now on.
    pub fn events(&self) -> Events {
        Events {
            feed: self.store.committed(),
            pending: Default::default(),
        }
    }
}
