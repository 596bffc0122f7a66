//! The seal (how the master key is kept), the keyring it protects, and
//! what follows a keyring rotation: the stored envelopes a rewrap walks
//! and the uses counted per key version.

use async_trait::async_trait;
use keyward_core::AuditEvent;
use time::OffsetDateTime;

use crate::Result;

/// Where the master key lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealKind {
    File,
    Shamir,
    Pkcs11,
}
impl SealKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SealKind::File => "file",
            SealKind::Shamir => "shamir",
            SealKind::Pkcs11 => "pkcs11",
        }
    }

    pub fn parse(s: &str) -> Option<SealKind> {
        match s {
            "file" => Some(SealKind::File),
            "shamir" => Some(SealKind::Shamir),
            "pkcs11" => Some(SealKind::Pkcs11),
            _ => None,
        }
    }
}

/// The stored seal: how the master key is kept. Holds nothing secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealRecord {
    pub kind: SealKind,
    /// `shamir`: the share set's id.
    pub share_set: Option<[u8; 4]>,
    /// `shamir`: how many shares unseal.
    pub threshold: Option<u8>,
    /// `shamir`: SHA-256 digests of the issued shares, in index order.
    pub share_digests: Vec<[u8; 32]>,
    /// `pkcs11`: the master key wrapped by the HSM's key.
    pub wrapped_master: Option<Vec<u8>>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// One keyring version, wrapped by the master key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyringEntry {
    pub version: u32,
    pub wrapped_key: Vec<u8>,
    pub created_at: OffsetDateTime,
}

/// Where a stored envelope lives: a secret version or a transit key
/// version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvelopeCursor {
    Secret {
        mount: String,
        path: String,
        version: u64,
    },
    Transit {
        name: String,
        version: u32,
    },
}

/// A stored envelope and where it lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEnvelope {
    pub at: EnvelopeCursor,
    pub envelope: Vec<u8>,
}

/// A key whose encryptions are counted.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum UseTarget {
    Keyring { version: u32 },
    Transit { name: String, version: u32 },
}

/// The seal, the keyring, and the envelopes stored under the keyring's
/// keys wherever they live (secret values, transit key material).
#[async_trait]
pub trait SealStore: Send + Sync {
    /// The seal, once initialised.
    async fn seal(&self) -> Result<Option<SealRecord>>;

    /// The keyring's versions, lowest first.
    async fn keyring(&self) -> Result<Vec<KeyringEntry>>;

    /// Stores the seal and the keyring's first version; `Conflict` when the
    /// seal was initialised before (by this node or another).
    async fn init_seal(
        &self,
        seal: &SealRecord,
        first: &KeyringEntry,
        event: &AuditEvent,
    ) -> Result<()>;

    /// Adds a keyring version; `Conflict` when it exists.
    async fn add_keyring_key(&self, entry: &KeyringEntry, event: &AuditEvent) -> Result<()>;

    /// Replaces the seal and every keyring version's wrapping (a rekey: new
    /// master key, new shares) in one transaction.
    async fn rekey_seal(
        &self,
        seal: &SealRecord,
        keyring: &[KeyringEntry],
        event: &AuditEvent,
    ) -> Result<()>;

    /// Up to `limit` stored secret values after `after` (mount, path,
    /// version), in that order: what a keyring rewrap walks.
    async fn secret_envelopes(
        &self,
        after: Option<&EnvelopeCursor>,
        limit: u32,
    ) -> Result<Vec<StoredEnvelope>>;

    /// Up to `limit` transit key versions after `after` (name, version).
    async fn transit_envelopes(
        &self,
        after: Option<&EnvelopeCursor>,
        limit: u32,
    ) -> Result<Vec<StoredEnvelope>>;

    /// Replaces a stored envelope if it is still `old` (a write or destroy
    /// since it was read wins). Returns whether it was replaced.
    async fn replace_envelope(&self, at: &EnvelopeCursor, old: &[u8], new: &[u8]) -> Result<bool>;

    /// Adds `n` to the uses reserved for a keyring version or a transit key
    /// version and returns the new total; `NotFound` when it does not exist.
    async fn reserve_uses(&self, target: &UseTarget, n: u64) -> Result<u64>;
}
