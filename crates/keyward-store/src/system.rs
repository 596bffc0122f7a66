//! The store as a whole: whether it answers, and its bootstrap, which
//! happens once in a store's life, on whichever node starts first.

use async_trait::async_trait;
use keyward_core::{AdminToken, AuditEvent};

use crate::Result;

/// The store as a whole rather than one of its areas.
#[async_trait]
pub trait SystemStore: Send + Sync {
    /// Checks that the database answers.
    async fn ping(&self) -> Result<()>;

    /// Stores the root admin token unless the store was bootstrapped before.
    /// Returns whether this call did it; safe when several nodes start at once.
    async fn bootstrap(&self, root: &AdminToken, event: &AuditEvent) -> Result<bool>;
}
