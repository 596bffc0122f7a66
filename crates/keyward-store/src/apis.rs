//! The APIs keys are issued for; each names its key prefix and the
//! environments it serves.

use async_trait::async_trait;
use keyward_core::{Api, ApiId, AuditEvent, KeyRoles, Scope};
use time::OffsetDateTime;

use crate::Result;

/// A change to an API; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct ApiPatch {
    pub name: Option<String>,
    /// Replaces every role. A role left out that unrevoked keys still hold
    /// refuses the whole change (`StoreError::RoleInUse`).
    pub roles: Option<KeyRoles>,
    pub critical_scopes: Option<Vec<Scope>>,
    pub signing: Option<keyward_core::ApiSigning>,
}

/// The provider's APIs. An API is created once; keys name the API they
/// belong to.
#[async_trait]
pub trait ApiStore: Send + Sync {
    async fn create_api(&self, api: &Api, event: &AuditEvent) -> Result<()>;

    async fn get_api(&self, id: &ApiId) -> Result<Option<Api>>;

    async fn list_apis(&self) -> Result<Vec<Api>>;

    /// Applies `patch` atomically; `NotFound` if the API does not exist.
    /// A change of roles or critical scopes writes an `api` change-feed
    /// entry, so every node drops the API's cached keys. Removing a role
    /// that unrevoked keys hold is refused with `RoleInUse`, counted in the
    /// same transaction; key writes naming roles read the API's roles under
    /// a lock in theirs, so neither can slip past the other.
    async fn update_api(
        &self,
        id: &ApiId,
        patch: &ApiPatch,
        now: OffsetDateTime,
        event: &AuditEvent,
    ) -> Result<Api>;
}
