//! The APIs keys are issued for; each names its key prefix and the
//! environments it serves.

use async_trait::async_trait;
use keyward_core::{Api, ApiId, AuditEvent};

use crate::Result;

/// The provider's APIs. An API is created once; keys name the API they
/// belong to.
#[async_trait]
pub trait ApiStore: Send + Sync {
    async fn create_api(&self, api: &Api, event: &AuditEvent) -> Result<()>;

    async fn get_api(&self, id: &ApiId) -> Result<Option<Api>>;

    async fn list_apis(&self) -> Result<Vec<Api>>;
}
