//! What the two SQL backends share: row shapes, their conversion to records,
//! and the implementation of every area's trait, written once as macros
//! over the sqlx database type.
//!
//! Both schemas use the same column types as sqlx sees them (64-bit integers
//! for times, text for JSON, bytes for digests) and both drivers accept `$N`
//! placeholders, so one body of SQL serves both. The few statements that
//! differ come from the backend's [`Dialect`].
//!
//! Each area's module holds its rows and a macro implementing its trait.
//! `impl_store!` expands all of them into the backend's module, after the
//! imports and helpers they share, so the areas call each other's helpers
//! (a key rotation inserts a key, a bootstrap a token) as plain functions.
//!
//! Every audited write goes through one helper, `audited` (in [`audit`]):
//! it begins the transaction, runs the write's statements, inserts the
//! audit events the write returns and the change-feed entries after them,
//! and commits. Nothing else inserts audit events.

pub(crate) mod access;
pub(crate) mod apis;
pub(crate) mod audit;
pub(crate) mod changes;
pub(crate) mod keys;
pub(crate) mod limits;
pub(crate) mod seal;
pub(crate) mod secrets;
pub(crate) mod signing;
pub(crate) mod system;
pub(crate) mod tokens;
pub(crate) mod transit;
pub(crate) mod usage;

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;

use keyward_core::AuditEvent;
use time::OffsetDateTime;

use crate::{Change, StoreError};

/// SQL that differs between backends.
pub(crate) struct Dialect {
    /// Opens a condition "the JSON array column `scopes` contains the value
    /// bound next"; [`Dialect::scope_match_close`] closes it.
    pub scope_match_open: &'static str,
    pub scope_match_close: &'static str,
    /// Like [`Dialect::scope_match_open`] for the key's `roles` column;
    /// closed by [`Dialect::scope_match_close`].
    pub role_match_open: &'static str,
    /// Appended to a SELECT whose rows the transaction will update. SQLite
    /// needs none: its single writer connection serializes transactions.
    pub for_update: &'static str,
    /// Appended to a SELECT whose rows must not change before the
    /// transaction ends, while other readers may share them. SQLite needs
    /// none, for the same reason.
    pub for_share: &'static str,
    /// Run in a transaction that wrote change-feed entries, to wake the
    /// other nodes' followers at commit; empty when the backend has no
    /// notifications (followers then poll on their interval).
    pub notify_changes: &'static str,
    /// Follows a key id taken from bound values when it is compared with a
    /// stored id, so the comparison can use the id's index.
    pub id_collation: &'static str,
    /// Usage of key `$1` in the minutes `$2` to `$3`: one lookup by
    /// (minute, key) per minute of the span, so the cost follows the span
    /// and not the table.
    pub usage_of_key: &'static str,
    /// The chain's rows after sequence number `$1`, at most `$2`, as one
    /// JSON array of arrays in `CHAIN_PAGE_COLUMNS` order (hashes in hex):
    /// one value per page instead of one per row, which is most of the cost
    /// of reading a long chain.
    pub chain_page: &'static str,
}

/// Converts rows, stopping at the first corrupt one.
pub(crate) fn convert<R, T>(rows: Vec<R>) -> Result<Vec<T>, StoreError>
where
    T: TryFrom<R, Error = StoreError>,
{
    rows.into_iter().map(T::try_from).collect()
}

/// The statements of an audited write, run by `audited` in its transaction.
/// Boxed, since the future borrows that transaction while it runs.
pub(crate) type WriteFuture<'t, T> =
    Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 't>>;

/// How an audited write ends once its statements ran; `audited` finishes
/// it. A write that fails with an error instead is rolled back as its
/// transaction is dropped.
pub(crate) enum Outcome<'a, T> {
    /// Keep the write: insert `events`, then the change-feed entries, in
    /// its transaction, commit, and answer `value`.
    Commit {
        value: T,
        events: Cow<'a, [AuditEvent]>,
        /// Entries for other nodes' caches, and the time they carry; `None`
        /// when no cached record changed.
        changes: Option<(Vec<Change>, OffsetDateTime)>,
    },
    /// Roll back, record nothing, and answer this: an `Ok` when the write
    /// found nothing to do, an `Err` when it refused.
    Rollback(Result<T, StoreError>),
}

impl<'a, T> Outcome<'a, T> {
    /// Keeps a write that no cache holds, recorded by `events`.
    pub(crate) fn commit(value: T, events: impl Into<Cow<'a, [AuditEvent]>>) -> Self {
        Outcome::Commit {
            value,
            events: events.into(),
            changes: None,
        }
    }

    /// Keeps a write recorded by `events` that changed what `changes` name,
    /// at `at`.
    pub(crate) fn commit_with_changes(
        value: T,
        events: impl Into<Cow<'a, [AuditEvent]>>,
        changes: Vec<Change>,
        at: OffsetDateTime,
    ) -> Self {
        Outcome::Commit {
            value,
            events: events.into(),
            changes: Some((changes, at)),
        }
    }
}

/// Implements every area's trait for a backend type with inherent methods
/// `reader()` and `writer()` returning its pools,
/// `wait_for_notification(timeout)`, and a `DIALECT` constant. The SQL is
/// shared; see the module documentation.
macro_rules! impl_store {
    ($store:ty, $db:ty) => {
        use async_trait::async_trait;
        use keyward_core::limits::{RateLimit, Refill};
        use keyward_core::{
            AdminToken, Api, ApiId, AuditEvent, KeyDigest, KeyId, KeyRecord, KeyState, TokenId,
        };
        use sqlx::QueryBuilder;
        use time::OffsetDateTime;

        use $crate::common::apis::{ApiRow, API_COLUMNS};
        use $crate::common::audit::{
            checkpoint, event_reach_sql, parse_chain_page, stored_hash, EventRow, CHAIN_COLUMNS,
            UNREADABLE,
        };
        use $crate::common::keys::{KeyRow, KEY_COLUMNS};
        use $crate::common::seal::{seal_from_row, SealRow};
        use $crate::common::secrets::{meta_from_row, mount_from_row, MetaRow};
        use $crate::common::tokens::{cascade_details, is_full_token, TokenRow, TOKEN_COLUMNS};
        use $crate::common::transit::{TransitKeyRow, TRANSIT_KEY_COLUMNS};
        use $crate::common::{convert, Outcome, WriteFuture};
        use $crate::rows::{corrupt, millis, to_json};
        use $crate::{
            ApiPatch, ApiStore, AuditEntry, AuditFilter, AuditStore, BulkRevokeFilter, Change,
            ChangeEntry, ChangeStore, CreditLease, EnvelopeCursor, KeyFilter, KeyPatch, KeyStore,
            KeyringEntry, LastFullToken, LimitStore, Page, Result, RevokedToken, Rotation,
            SealRecord, SealStore, SecretMeta, SecretMetaPatch, SecretMount, SecretStore,
            SecretVersion, SecretWrite, StoreError, StoredEnvelope, SystemStore, TokenStore,
            TransitKey, TransitKeyVersion, TransitStore, UsageRow, UsageStore, UseTarget,
            VersionAction,
        };

        /// Most rows one multi-row INSERT carries, well under both drivers'
        /// bind-parameter limits.
        const EVENTS_PER_INSERT: usize = 500;

        /// Maps a unique-constraint failure to `Conflict` with `what`.
        fn unique_violation(what: &'static str) -> impl Fn(sqlx::Error) -> StoreError {
            move |e| match &e {
                sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(what),
                _ => StoreError::Database(e),
            }
        }

        $crate::common::audit::impl_audit_store!($store, $db);
        $crate::common::changes::impl_change_store!($store, $db);
        $crate::common::system::impl_system_store!($store, $db);
        $crate::common::apis::impl_api_store!($store, $db);
        $crate::common::keys::impl_key_store!($store, $db);
        $crate::common::limits::impl_limit_store!($store, $db);
        $crate::common::usage::impl_usage_store!($store, $db);
        $crate::common::tokens::impl_token_store!($store, $db);
        $crate::common::seal::impl_seal_store!($store, $db);
        $crate::common::secrets::impl_secret_store!($store, $db);
        $crate::common::transit::impl_transit_store!($store, $db);
        $crate::common::access::impl_access_store!($store, $db);
        $crate::common::signing::impl_signing_store!($store, $db);
    };
}

pub(crate) use impl_store;
