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

/// Where a stored envelope lives: a secret version, a transit key
/// version, a secret's custom metadata, or one of the columns holding one
/// envelope per row.
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
    Metadata {
        mount: String,
        path: String,
    },
    Row {
        column: EnvelopeColumn,
        id: String,
    },
}

/// A column holding at most one keyring envelope per row, the row named by
/// one text id. A rewrap walks each of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EnvelopeColumn {
    /// A user's confirmed TOTP secret, by user id.
    UserTotp,
    /// A user's TOTP secret waiting for its first code.
    UserTotpPending,
    /// A key's HMAC signing secret, by key id.
    KeySigning,
    /// A key owner's confirmed TOTP secret, by owner.
    OwnerTotp,
    /// A key owner's TOTP secret waiting for its first code.
    OwnerTotpPending,
    /// The private half of the key that signs audit checkpoints, by id.
    AuditKey,
}

impl EnvelopeColumn {
    pub const ALL: [EnvelopeColumn; 6] = [
        EnvelopeColumn::UserTotp,
        EnvelopeColumn::UserTotpPending,
        EnvelopeColumn::KeySigning,
        EnvelopeColumn::OwnerTotp,
        EnvelopeColumn::OwnerTotpPending,
        EnvelopeColumn::AuditKey,
    ];

    /// The table, its id column and the envelope's column.
    pub fn sql(self) -> (&'static str, &'static str, &'static str) {
        match self {
            EnvelopeColumn::UserTotp => ("users", "id", "totp_secret"),
            EnvelopeColumn::UserTotpPending => ("users", "id", "totp_pending"),
            EnvelopeColumn::KeySigning => ("keys", "id", "signing_secret"),
            EnvelopeColumn::OwnerTotp => ("owner_factors", "owner", "totp_secret"),
            EnvelopeColumn::OwnerTotpPending => ("owner_factors", "owner", "totp_pending"),
            EnvelopeColumn::AuditKey => ("audit_keys", "id", "private_key"),
        }
    }
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

    /// Up to `limit` sealed custom metadata after `after` (mount, path).
    async fn metadata_envelopes(
        &self,
        after: Option<&EnvelopeCursor>,
        limit: u32,
    ) -> Result<Vec<StoredEnvelope>>;

    /// Up to `limit` envelopes of `column` whose row's id is after `after`,
    /// in id order; rows without one are skipped.
    async fn row_envelopes(
        &self,
        column: EnvelopeColumn,
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
