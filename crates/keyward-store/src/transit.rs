//! Transit keys: named and versioned, their material kept as keyring
//! envelopes.

use async_trait::async_trait;
use keyward_core::{ApiId, AuditEvent, Environment};
use time::OffsetDateTime;

use crate::Result;

/// A transit key's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransitKey {
    pub name: String,
    /// `aes256-gcm96`, `ed25519`, … (the server parses it).
    pub key_type: String,
    pub derived: bool,
    pub latest_version: u32,
    /// Older versions no longer decrypt or verify.
    pub min_decryption_version: u32,
    /// 0: encrypt with the latest version.
    pub min_encryption_version: u32,
    pub deletion_allowed: bool,
    /// The environment the key serves; tokens limited to others do not
    /// reach it.
    pub environment: Environment,
    /// When set, the APIs the key serves; a token limited to APIs reaches
    /// it only when it reaches all of them.
    pub api_ids: Option<Vec<ApiId>>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// One version of a transit key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransitKeyVersion {
    pub version: u32,
    /// The key material as an envelope of the keyring.
    pub material: Vec<u8>,
    /// The public key of a signing key.
    pub public_key: Option<Vec<u8>>,
    pub created_at: OffsetDateTime,
}

/// Transit keys and their versions. Every change is audited.
#[async_trait]
pub trait TransitStore: Send + Sync {
    /// Creates a transit key with its first version; `Conflict` when the
    /// name is taken.
    async fn create_transit_key(
        &self,
        key: &TransitKey,
        first: &TransitKeyVersion,
        event: &AuditEvent,
    ) -> Result<()>;

    /// A transit key and its versions, oldest first.
    async fn get_transit_key(
        &self,
        name: &str,
    ) -> Result<Option<(TransitKey, Vec<TransitKeyVersion>)>>;

    /// Every transit key's settings (without versions), by name.
    async fn list_transit_keys(&self) -> Result<Vec<TransitKey>>;

    /// Adds the next version; `Conflict` unless it follows the latest.
    async fn add_transit_key_version(
        &self,
        name: &str,
        version: &TransitKeyVersion,
        event: &AuditEvent,
    ) -> Result<()>;

    async fn configure_transit_key(
        &self,
        name: &str,
        min_decryption_version: u32,
        min_encryption_version: u32,
        deletion_allowed: bool,
        event: &AuditEvent,
    ) -> Result<()>;

    /// Deletes a key whose deletion is allowed: `NotFound` when there is
    /// none, `Conflict` when deletion is not allowed.
    async fn delete_transit_key(&self, name: &str, event: &AuditEvent) -> Result<()>;
}
