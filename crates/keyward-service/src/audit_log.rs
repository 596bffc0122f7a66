//! Reading the audit log, filtered by the actor's reach like every other
//! read: an actor limited to some APIs or environments sees only events
//! about records of those. Events about no API or environment (seal,
//! tokens, transit) are seen only by actors unlimited in that dimension.

use keyward_core::AdminScope;
pub use keyward_store::AuditEntry;
use keyward_store::AuditFilter;
use keyward_store::Page;

use crate::{Actor, Error, Service};

/// Which events a listing shows.
#[derive(Debug, Clone, Default)]
pub struct AuditListing {
    pub target: Option<String>,
    pub action: Option<String>,
}

impl Service {
    /// A page of audit events within the actor's reach, in the order they
    /// happened. A row that cannot be read back is in its place as
    /// [`AuditEntry::Unreadable`], logged here at `error`.
    pub async fn list_audit(
        &self,
        actor: &Actor,
        listing: AuditListing,
        page: &Page,
    ) -> Result<Vec<AuditEntry>, Error> {
        actor.require(AdminScope::AuditRead)?;
        // Grants of audit:read of several shapes read the union of their
        // APIs across the union of their environments.
        let reach = self.reach_of(actor, AdminScope::AuditRead).await?;
        let filter = AuditFilter {
            target: listing.target,
            action: listing.action,
            api_ids_within: reach.api_ids(),
            environments_within: reach.environments(),
        };
        let entries = self.store.list_audit(&filter, page).await?;
        for entry in &entries {
            if let AuditEntry::Unreadable { id, detail } = entry {
                tracing::error!(event = %id, error = %detail, "an audit row cannot be read back");
            }
        }
        Ok(entries)
    }
}
