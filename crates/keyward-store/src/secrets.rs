//! The KV v2 secrets store: mounts, each bound to one environment, and
//! versioned secrets whose values are opaque envelopes to the store.

use async_trait::async_trait;
use keyward_core::{AuditEvent, Environment};
use time::OffsetDateTime;

use crate::Result;

/// A secrets mount: a KV v2 store bound to one environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretMount {
    pub path: String,
    pub environment: Environment,
    /// Versions kept per secret unless the secret says otherwise (0 = 10).
    pub max_versions: u32,
    /// Whether every write must name the version it replaces.
    pub cas_required: bool,
    pub created_at: OffsetDateTime,
}

/// A secret's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretMeta {
    pub mount: String,
    pub path: String,
    /// The newest version (0 before the first write).
    pub current_version: u64,
    /// The oldest version still kept.
    pub oldest_version: u64,
    /// 0 = the mount's setting.
    pub max_versions: u32,
    pub cas_required: bool,
    /// String keys to string values, as stored in the clear before
    /// metadata was sealed; empty once `custom_metadata_sealed` is set.
    pub custom_metadata: serde_json::Map<String, serde_json::Value>,
    /// The custom metadata as a keyring envelope (the server seals it).
    pub custom_metadata_sealed: Option<Vec<u8>>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// One version of a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretVersion {
    pub version: u64,
    /// The envelope; `None` once destroyed.
    pub value: Option<Vec<u8>>,
    pub created_at: OffsetDateTime,
    pub deleted_at: Option<OffsetDateTime>,
    pub destroyed: bool,
}

/// A new version of a secret, written only if the secret's current version
/// is still `replaces` (0: the secret does not exist yet).
#[derive(Debug, Clone)]
pub struct SecretWrite {
    pub mount: String,
    pub path: String,
    pub version: u64,
    pub replaces: u64,
    pub value: Vec<u8>,
    /// Versions to keep, the effective setting; older ones are removed.
    pub keep: u32,
    pub at: OffsetDateTime,
}

/// What happens to some versions of a secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionAction {
    /// Soft delete: the value stays, reads answer "deleted".
    Delete(OffsetDateTime),
    Undelete,
    /// The value is removed for good.
    Destroy,
}

/// A change to a secret's metadata; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct SecretMetaPatch {
    pub max_versions: Option<u32>,
    pub cas_required: Option<bool>,
    /// Stores metadata in the clear and drops any sealed metadata.
    pub custom_metadata: Option<serde_json::Map<String, serde_json::Value>>,
    /// Stores the metadata's envelope and empties the clear column; wins
    /// over `custom_metadata` when both are given.
    pub custom_metadata_sealed: Option<Vec<u8>>,
}

/// Secrets mounts and their versioned secrets. Every write is audited
/// here; the server audits reads with `AuditStore::append_audit`.
#[async_trait]
pub trait SecretStore: Send + Sync {
    /// Creates a secrets mount; `Conflict` when the path is taken.
    async fn create_mount(&self, mount: &SecretMount, event: &AuditEvent) -> Result<()>;

    async fn get_mount(&self, path: &str) -> Result<Option<SecretMount>>;

    async fn list_mounts(&self) -> Result<Vec<SecretMount>>;

    /// Changes a mount's defaults.
    async fn configure_mount(
        &self,
        path: &str,
        max_versions: u32,
        cas_required: bool,
        event: &AuditEvent,
    ) -> Result<()>;

    async fn secret_meta(&self, mount: &str, path: &str) -> Result<Option<SecretMeta>>;

    /// Every kept version, oldest first.
    async fn secret_versions(&self, mount: &str, path: &str) -> Result<Vec<SecretVersion>>;

    /// Writes a version; `Conflict` when the current version is no longer
    /// `write.replaces` (another write came first).
    async fn write_secret(&self, write: &SecretWrite, event: &AuditEvent) -> Result<()>;

    /// Deletes, undeletes or destroys versions of a secret. Versions that do
    /// not exist (or are destroyed, for undelete) are skipped.
    async fn act_on_versions(
        &self,
        mount: &str,
        path: &str,
        versions: &[u64],
        action: VersionAction,
        event: &AuditEvent,
    ) -> Result<()>;

    /// Writes metadata, creating an empty secret when there is none.
    async fn patch_secret_meta(
        &self,
        mount: &str,
        path: &str,
        patch: &SecretMetaPatch,
        at: OffsetDateTime,
        event: &AuditEvent,
    ) -> Result<()>;

    /// Removes a secret with all its versions; `false` when there was none.
    async fn delete_secret(&self, mount: &str, path: &str, event: &AuditEvent) -> Result<bool>;

    /// Paths of a mount that start with `prefix`, in order.
    async fn secret_paths(&self, mount: &str, prefix: &str) -> Result<Vec<String>>;
}
