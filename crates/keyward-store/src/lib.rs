//! Keyward's storage: one trait per area, [`Store`] over all of them, and
//! its two implementations, [`SqliteStore`] (the embedded default) and
//! [`PgStore`] (the multi-node store). [`open`] picks one by the database
//! URL's scheme.
//!
//! Each area's module holds its trait and the records it reads and writes:
//! [`system`] (ping, bootstrap), [`apis`], [`keys`], [`limits`] (credits and
//! owner rate limits), [`usage`], [`tokens`], [`audit`], [`seal`] (with the
//! keyring and the envelopes a rewrap walks), [`secrets`], [`transit`] and
//! [`changes`] (the change feed) and [`access`] (users, workspaces, roles). Everything is re-exported here. Callers
//! hold an `Arc<dyn Store>`, on which every area's methods resolve; code
//! that holds a backend itself imports [`prelude`].
//!
//! Only this crate knows SQL. Each backend keeps its own migrations under
//! `migrations/<backend>/` and applies them on open. Every mutation that the
//! audit log must record takes its audit events and writes them in the same
//! transaction, so a change is never acknowledged without its audit entry.

#![forbid(unsafe_code)]

pub mod access;
pub mod apis;
pub mod audit;
pub mod changes;
mod common;
pub mod keys;
pub mod limits;
mod postgres;
pub mod seal;
pub mod secrets;
pub mod signing;
mod sqlite;
pub mod system;
pub mod tokens;
pub mod transit;
pub mod usage;

use std::path::Path;
use std::sync::Arc;

use keyward_core::EventId;
use time::OffsetDateTime;

pub use access::{AccessStore, Factor, StoredUser, UserPatch, UserSecrets};
pub use apis::{ApiPatch, ApiStore};
pub use audit::{AuditEntry, AuditFilter, AuditKey, AuditStore, CommitFeed, Committed};
pub use changes::{Change, ChangeEntry, ChangeStore};
pub use keys::{BulkRevokeFilter, CreditsPatch, KeyFilter, KeyPatch, KeyStore, Rotation};
pub use limits::{CreditLease, LimitStore};
pub use postgres::PgStore;
pub use seal::{
    EnvelopeColumn, EnvelopeCursor, KeyringEntry, SealKind, SealRecord, SealStore, StoredEnvelope,
    UseTarget,
};
pub use secrets::{
    SecretMeta, SecretMetaPatch, SecretMount, SecretStore, SecretVersion, SecretWrite,
    VersionAction,
};
pub use signing::{OwnerFactor, SigningStore};
pub use sqlite::SqliteStore;
pub use system::SystemStore;
pub use tokens::{LastFullToken, RevokedToken, TokenStore};
pub use transit::{TransitKey, TransitKeyVersion, TransitStore};
pub use usage::{UsageRow, UsageStore};

/// A storage failure. Callers map `Conflict` and `NotFound` to client errors
/// and log everything else as an internal error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A uniqueness rule was broken, e.g. an API prefix already in use.
    #[error("conflict: {0}")]
    Conflict(&'static str),
    /// The record acted on does not exist.
    #[error("record not found")]
    NotFound,
    /// An API change would remove a role that unrevoked keys still hold.
    #[error("the role {role} is held by {keys} unrevoked keys")]
    RoleInUse {
        role: keyward_core::RoleName,
        keys: u64,
    },
    /// A key names a role its API does not define (any more): a role was
    /// removed between the caller's check and the key's write.
    #[error("the API does not define a role this key names")]
    UndefinedRole,
    /// A guarded token revocation would leave no usable admin token that
    /// can grant every scope.
    #[error("this would revoke the last usable full-access admin token")]
    LastFullToken,
    /// A stored row could not be read back into a record; the database was
    /// changed outside Keyward or is corrupt.
    #[error("corrupt row in {table}: {detail}")]
    Corrupt { table: &'static str, detail: String },
    /// The database URL names no supported backend.
    #[error("unsupported database URL scheme (use sqlite:// or postgres://)")]
    UnsupportedUrl,
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// One page of a listing in id order.
#[derive(Debug, Clone)]
pub struct Page {
    /// Return only records with ids after this one.
    pub after: Option<String>,
    pub limit: u32,
}

/// Everything Keyward persists: all the areas together, as the server holds
/// them (`Arc<dyn Store>`). Implementations must make every method that
/// returns `Ok` durable before returning.
///
/// It adds nothing to the areas: every type that implements them all is a
/// `Store`.
pub trait Store:
    SystemStore
    + ApiStore
    + KeyStore
    + LimitStore
    + UsageStore
    + TokenStore
    + AuditStore
    + SealStore
    + SecretStore
    + TransitStore
    + ChangeStore
    + AccessStore
    + SigningStore
    + 'static
{
}

impl<S> Store for S where
    S: SystemStore
        + ApiStore
        + KeyStore
        + LimitStore
        + UsageStore
        + TokenStore
        + AuditStore
        + SealStore
        + SecretStore
        + TransitStore
        + ChangeStore
        + AccessStore
        + SigningStore
        + 'static
{
}

/// The area traits, for calling their methods on a backend's own type
/// (`SqliteStore`, `PgStore`). On a `dyn Store`, or a type bound by
/// `Store`, they resolve without it; on a concrete type Rust finds a
/// trait's methods only where the trait is in scope.
/// `use keyward_store::prelude::*;` brings every area in, one line
/// whichever areas a file uses, and brings no names (`as _`), so it never
/// clashes with a name of the importing module.
pub mod prelude {
    pub use crate::{
        AccessStore as _, ApiStore as _, AuditStore as _, ChangeStore as _, KeyStore as _,
        LimitStore as _, SealStore as _, SecretStore as _, SigningStore as _, SystemStore as _,
        TokenStore as _, TransitStore as _, UsageStore as _,
    };
}

/// Opens the store a database URL names: `sqlite://PATH` or `postgres://…`
/// (also `postgresql://`), and applies pending migrations.
pub async fn open(url: &str) -> Result<Arc<dyn Store>> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PgStore::connect(url, None).await?))
    } else if let Some(path) = url.strip_prefix("sqlite://") {
        Ok(Arc::new(SqliteStore::open(Path::new(path)).await?))
    } else {
        Err(StoreError::UnsupportedUrl)
    }
}

/// Builds an audit event id, failing only if the OS has no randomness.
pub fn event_id(now: OffsetDateTime) -> Result<EventId> {
    EventId::generate(now).map_err(|e| StoreError::Io(std::io::Error::other(e)))
}

/// Helpers shared by both backends for reading rows back into records.
pub(crate) mod rows {
    use super::StoreError;
    use keyward_core::{Environment, KeyDigest};
    use time::OffsetDateTime;

    pub fn corrupt(table: &'static str, detail: impl ToString) -> StoreError {
        StoreError::Corrupt {
            table,
            detail: detail.to_string(),
        }
    }

    pub fn millis(at: OffsetDateTime) -> i64 {
        (at.unix_timestamp_nanos() / 1_000_000) as i64
    }

    pub fn from_millis(table: &'static str, ms: i64) -> Result<OffsetDateTime, StoreError> {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
            .map_err(|e| corrupt(table, e))
    }

    pub fn opt_from_millis(
        table: &'static str,
        ms: Option<i64>,
    ) -> Result<Option<OffsetDateTime>, StoreError> {
        ms.map(|m| from_millis(table, m)).transpose()
    }

    pub fn environment(table: &'static str, s: &str) -> Result<Environment, StoreError> {
        s.parse().map_err(|e| corrupt(table, e))
    }

    pub fn digest(table: &'static str, bytes: &[u8]) -> Result<KeyDigest, StoreError> {
        KeyDigest::from_slice(bytes).ok_or_else(|| corrupt(table, "digest is not 32 bytes"))
    }

    pub fn json<T: serde::de::DeserializeOwned>(
        table: &'static str,
        text: &str,
    ) -> Result<T, StoreError> {
        serde_json::from_str(text).map_err(|e| corrupt(table, e))
    }

    pub fn to_json<T: serde::Serialize>(value: &T) -> String {
        // Serializing plain data (strings, lists, JSON values) cannot fail.
        serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned())
    }
}
