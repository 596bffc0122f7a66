//! What the two SQL backends share: row shapes, their conversion to records,
//! and the [`Store`](crate::Store) implementation itself, written once as a
//! macro over the sqlx database type.
//!
//! Both schemas use the same column types as sqlx sees them (64-bit integers
//! for times, text for JSON, bytes for digests) and both drivers accept `$N`
//! placeholders, so one body of SQL serves both. The few statements that
//! differ come from the backend's [`Dialect`].

use keyward_core::limits::{Credits, Refill};
use keyward_core::{
    AdminScope, AdminToken, Api, ApiId, AuditEvent, Environment, EventId, KeyId, KeyRecord, Prefix,
    Scope, TokenId,
};

use crate::rows::{corrupt, digest, environment, from_millis, json, opt_from_millis};
use crate::{StoreError, TransitKey};

/// SQL that differs between backends.
pub(crate) struct Dialect {
    /// Opens a condition "the JSON array column `scopes` contains the value
    /// bound next"; [`Dialect::scope_match_close`] closes it.
    pub scope_match_open: &'static str,
    pub scope_match_close: &'static str,
    /// Appended to a SELECT whose rows the transaction will update. SQLite
    /// needs none: its single writer connection serializes transactions.
    pub for_update: &'static str,
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
}

pub(crate) const KEY_COLUMNS: &str = "id, api_id, environment, name, owner, scopes, metadata, \
     digest, start, enabled, created_at, updated_at, expires_at, revoked_at, revoke_reason, \
     rotated_from, rotated_to, ratelimits, credits_remaining, credits_refill, \
     credits_refilled_at, ip_allowlist, last_used_at";

pub(crate) const TOKEN_COLUMNS: &str = "id, name, digest, start, scopes, api_ids, environments, \
     created_by, created_at, expires_at, revoked_at";

#[derive(sqlx::FromRow)]
pub(crate) struct ApiRow {
    id: String,
    name: String,
    prefix: String,
    environments: String,
    created_at: i64,
}

impl TryFrom<ApiRow> for Api {
    type Error = StoreError;
    fn try_from(r: ApiRow) -> Result<Api, StoreError> {
        const T: &str = "apis";
        Ok(Api {
            id: ApiId::parse(&r.id).map_err(|e| corrupt(T, e))?,
            name: r.name,
            prefix: Prefix::parse(&r.prefix).map_err(|e| corrupt(T, e))?,
            environments: json(T, &r.environments)?,
            created_at: from_millis(T, r.created_at)?,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct KeyRow {
    id: String,
    api_id: String,
    environment: String,
    name: String,
    owner: String,
    scopes: String,
    metadata: String,
    digest: Vec<u8>,
    start: String,
    enabled: bool,
    created_at: i64,
    updated_at: i64,
    expires_at: Option<i64>,
    revoked_at: Option<i64>,
    revoke_reason: Option<String>,
    rotated_from: Option<String>,
    rotated_to: Option<String>,
    ratelimits: String,
    credits_remaining: Option<i64>,
    credits_refill: Option<String>,
    credits_refilled_at: Option<i64>,
    ip_allowlist: String,
    last_used_at: Option<i64>,
}

impl TryFrom<KeyRow> for KeyRecord {
    type Error = StoreError;
    fn try_from(r: KeyRow) -> Result<KeyRecord, StoreError> {
        const T: &str = "keys";
        let key_id = |s: &str| KeyId::parse(s).map_err(|e| corrupt(T, e));
        Ok(KeyRecord {
            id: key_id(&r.id)?,
            api_id: ApiId::parse(&r.api_id).map_err(|e| corrupt(T, e))?,
            environment: environment(T, &r.environment)?,
            name: r.name,
            owner: r.owner,
            scopes: json::<Vec<Scope>>(T, &r.scopes)?,
            metadata: json(T, &r.metadata)?,
            digest: digest(T, &r.digest)?,
            start: r.start,
            enabled: r.enabled,
            created_at: from_millis(T, r.created_at)?,
            updated_at: from_millis(T, r.updated_at)?,
            expires_at: opt_from_millis(T, r.expires_at)?,
            revoked_at: opt_from_millis(T, r.revoked_at)?,
            revoke_reason: r.revoke_reason,
            rotated_from: r.rotated_from.as_deref().map(key_id).transpose()?,
            rotated_to: r.rotated_to.as_deref().map(key_id).transpose()?,
            ratelimits: json(T, &r.ratelimits)?,
            credits: match r.credits_remaining {
                None => None,
                Some(remaining) => Some(Credits {
                    remaining: u64::try_from(remaining).map_err(|e| corrupt(T, e))?,
                    refill: r
                        .credits_refill
                        .as_deref()
                        .map(|s| json::<Refill>(T, s))
                        .transpose()?,
                    refilled_at: from_millis(T, r.credits_refilled_at.unwrap_or(r.created_at))?,
                }),
            },
            ip_allowlist: json(T, &r.ip_allowlist)?,
            last_used_at: opt_from_millis(T, r.last_used_at)?,
        })
    }
}

/// Columns of a transit key's settings, in [`TransitKeyRow`]'s order.
pub(crate) const TRANSIT_KEY_COLUMNS: &str = "name, key_type, derived, latest_version, \
    min_decryption_version, min_encryption_version, deletion_allowed, environment, api_ids, \
    created_at, updated_at";

#[derive(sqlx::FromRow)]
pub(crate) struct TransitKeyRow {
    name: String,
    key_type: String,
    derived: i64,
    latest_version: i64,
    min_decryption_version: i64,
    min_encryption_version: i64,
    deletion_allowed: i64,
    environment: String,
    api_ids: Option<String>,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<TransitKeyRow> for TransitKey {
    type Error = StoreError;
    fn try_from(r: TransitKeyRow) -> Result<TransitKey, StoreError> {
        const T: &str = "transit_keys";
        let number = |v: i64| u32::try_from(v).map_err(|_| corrupt(T, "version"));
        Ok(TransitKey {
            name: r.name,
            key_type: r.key_type,
            derived: r.derived != 0,
            latest_version: number(r.latest_version)?,
            min_decryption_version: number(r.min_decryption_version)?,
            min_encryption_version: number(r.min_encryption_version)?,
            deletion_allowed: r.deletion_allowed != 0,
            environment: environment(T, &r.environment)?,
            api_ids: r
                .api_ids
                .as_deref()
                .map(|s| json::<Vec<ApiId>>(T, s))
                .transpose()?,
            created_at: from_millis(T, r.created_at)?,
            updated_at: from_millis(T, r.updated_at)?,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct TokenRow {
    id: String,
    name: String,
    digest: Vec<u8>,
    start: String,
    scopes: String,
    api_ids: Option<String>,
    environments: Option<String>,
    created_by: Option<String>,
    created_at: i64,
    expires_at: Option<i64>,
    revoked_at: Option<i64>,
}

impl TryFrom<TokenRow> for AdminToken {
    type Error = StoreError;
    fn try_from(r: TokenRow) -> Result<AdminToken, StoreError> {
        const T: &str = "admin_tokens";
        let token_id = |s: &str| TokenId::parse(s).map_err(|e| corrupt(T, e));
        Ok(AdminToken {
            id: token_id(&r.id)?,
            name: r.name,
            digest: digest(T, &r.digest)?,
            start: r.start,
            scopes: json::<Vec<AdminScope>>(T, &r.scopes)?,
            api_ids: r
                .api_ids
                .as_deref()
                .map(|s| json::<Vec<ApiId>>(T, s))
                .transpose()?,
            environments: r
                .environments
                .as_deref()
                .map(|s| json::<Vec<Environment>>(T, s))
                .transpose()?,
            created_by: r.created_by.as_deref().map(token_id).transpose()?,
            created_at: from_millis(T, r.created_at)?,
            expires_at: opt_from_millis(T, r.expires_at)?,
            revoked_at: opt_from_millis(T, r.revoked_at)?,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct EventRow {
    pub(crate) id: String,
    pub(crate) at: i64,
    pub(crate) actor: Option<String>,
    pub(crate) action: String,
    pub(crate) target: String,
    pub(crate) details: String,
}

impl TryFrom<EventRow> for AuditEvent {
    type Error = StoreError;
    fn try_from(r: EventRow) -> Result<AuditEvent, StoreError> {
        const T: &str = "audit_events";
        Ok(AuditEvent {
            id: EventId::parse(&r.id).map_err(|e| corrupt(T, e))?,
            at: from_millis(T, r.at)?,
            actor: r
                .actor
                .as_deref()
                .map(|s| TokenId::parse(s).map_err(|e| corrupt(T, e)))
                .transpose()?,
            action: r.action,
            target: r.target,
            details: json(T, &r.details)?,
        })
    }
}

/// Whether a token can grant every scope: usable at `now`, unlimited in
/// APIs and environments, holding every admin scope.
pub(crate) fn is_full_token(token: &AdminToken, now: time::OffsetDateTime) -> bool {
    token.is_usable(now) && token.is_full_access()
}

/// The details of the event for a token a cascade revoked: the origin's
/// details with the origin named.
pub(crate) fn cascade_details(origin: &TokenId, details: &serde_json::Value) -> serde_json::Value {
    let mut details = details.clone();
    match details.as_object_mut() {
        Some(object) => {
            object.insert("cascade_from".to_owned(), origin.as_str().into());
            details
        }
        None => serde_json::json!({ "cascade_from": origin.as_str(), "origin": details }),
    }
}

/// Fills the API and environment of the audit events whose ids are bound
/// next (a list closed by the caller) from the record each is about: a key
/// (API and environment), an API (API only) or a secret's mount, named by
/// its path or by `mount/secret` (environment only). `{c}` is the dialect's
/// id collation.
pub(crate) fn derive_event_reach_sql(c: &str) -> String {
    format!(
        "UPDATE audit_events SET \
         api_id = COALESCE(\
           (SELECT k.api_id FROM keys k WHERE k.id = audit_events.target{c}), \
           (SELECT a.id FROM apis a WHERE a.id = audit_events.target{c})), \
         environment = COALESCE(\
           (SELECT k.environment FROM keys k WHERE k.id = audit_events.target{c}), \
           (SELECT m.environment FROM secret_mounts m \
            WHERE audit_events.target = m.path \
               OR substr(audit_events.target, 1, length(m.path) + 1) = m.path || '/' \
            ORDER BY length(m.path) DESC LIMIT 1)) \
         WHERE id IN ("
    )
}

/// Converts rows, stopping at the first corrupt one.
pub(crate) fn convert<R, T>(rows: Vec<R>) -> Result<Vec<T>, StoreError>
where
    T: TryFrom<R, Error = StoreError>,
{
    rows.into_iter().map(T::try_from).collect()
}
#[derive(sqlx::FromRow)]
pub(crate) struct SealRow {
    kind: String,
    share_set: Option<Vec<u8>>,
    threshold: Option<i64>,
    share_digests: Option<Vec<u8>>,
    wrapped_master: Option<Vec<u8>>,
    created_at: i64,
    updated_at: i64,
}

pub(crate) fn seal_from_row(r: SealRow) -> Result<crate::SealRecord, StoreError> {
    const T: &str = "seal";
    let kind = crate::SealKind::parse(&r.kind).ok_or_else(|| corrupt(T, "unknown seal kind"))?;
    let share_set = r
        .share_set
        .map(|s| <[u8; 4]>::try_from(s.as_slice()).map_err(|_| corrupt(T, "share set id")))
        .transpose()?;
    let threshold = r
        .threshold
        .map(|t| u8::try_from(t).map_err(|_| corrupt(T, "threshold")))
        .transpose()?;
    let digests = r.share_digests.unwrap_or_default();
    if digests.len() % 32 != 0 {
        return Err(corrupt(T, "share digests"));
    }
    let share_digests = digests
        .chunks_exact(32)
        .map(|c| {
            let mut d = [0u8; 32];
            d.copy_from_slice(c);
            d
        })
        .collect();
    Ok(crate::SealRecord {
        kind,
        share_set,
        threshold,
        share_digests,
        wrapped_master: r.wrapped_master,
        created_at: from_millis(T, r.created_at)?,
        updated_at: from_millis(T, r.updated_at)?,
    })
}
pub(crate) fn mount_from_row(
    (path, env, max_versions, cas_required, created_at): (String, String, i64, i64, i64),
) -> Result<crate::SecretMount, StoreError> {
    const T: &str = "secret_mounts";
    Ok(crate::SecretMount {
        path,
        environment: environment(T, &env)?,
        max_versions: u32::try_from(max_versions).map_err(|_| corrupt(T, "max_versions"))?,
        cas_required: cas_required != 0,
        created_at: from_millis(T, created_at)?,
    })
}

#[derive(sqlx::FromRow)]
pub(crate) struct MetaRow {
    mount: String,
    path: String,
    current_version: i64,
    oldest_version: i64,
    max_versions: i64,
    cas_required: i64,
    custom_metadata: String,
    custom_metadata_sealed: Option<Vec<u8>>,
    created_at: i64,
    updated_at: i64,
}

pub(crate) fn meta_from_row(r: MetaRow) -> Result<crate::SecretMeta, StoreError> {
    const T: &str = "secret_meta";
    Ok(crate::SecretMeta {
        mount: r.mount,
        path: r.path,
        current_version: u64::try_from(r.current_version).map_err(|_| corrupt(T, "version"))?,
        oldest_version: u64::try_from(r.oldest_version).map_err(|_| corrupt(T, "version"))?,
        max_versions: u32::try_from(r.max_versions).map_err(|_| corrupt(T, "max_versions"))?,
        cas_required: r.cas_required != 0,
        custom_metadata: json(T, &r.custom_metadata)?,
        custom_metadata_sealed: r.custom_metadata_sealed,
        created_at: from_millis(T, r.created_at)?,
        updated_at: from_millis(T, r.updated_at)?,
    })
}

/// Implements [`Store`](crate::Store) for a backend type with inherent
/// methods `reader()` and `writer()` returning its pools,
/// `wait_for_notification(timeout)`, and a `DIALECT` constant. The SQL is shared; see the module documentation.
macro_rules! impl_store {
    ($store:ty, $db:ty) => {
        use async_trait::async_trait;
        use keyward_core::{
            AdminToken, Api, ApiId, AuditEvent, KeyDigest, KeyId, KeyRecord, KeyState, TokenId,
        };
        use sqlx::QueryBuilder;
        use time::OffsetDateTime;

        use $crate::common::{
            cascade_details, convert, derive_event_reach_sql, is_full_token, ApiRow, EventRow,
            KeyRow, TokenRow, TransitKeyRow, KEY_COLUMNS, TOKEN_COLUMNS, TRANSIT_KEY_COLUMNS,
        };
        use $crate::rows::{corrupt, millis, to_json};
        use keyward_core::limits::{RateLimit, Refill};
        use $crate::{
            AuditEntry, AuditFilter, BulkRevokeFilter, LastFullToken, RevokedToken, Change, ChangeEntry, CreditLease, KeyFilter, KeyPatch,
            KeyringEntry, Page, Result, Rotation, SealRecord, SecretMeta, SecretMetaPatch,
            SecretMount, SecretVersion, SecretWrite, Store, StoreError, TransitKey, TransitKeyVersion,
            UsageRow, VersionAction, EnvelopeCursor, StoredEnvelope, UseTarget,
        };
        use $crate::common::{seal_from_row, SealRow};

        /// Most rows one multi-row INSERT carries, well under both drivers'
        /// bind-parameter limits.
        const EVENTS_PER_INSERT: usize = 500;
        /// Usage rows (four values each) or last-used times (two) one
        /// statement carries.
        const USAGE_ROWS_PER_STATEMENT: usize = 1000;

        async fn insert_transit_version(
            tx: &mut sqlx::Transaction<'_, $db>,
            name: &str,
            version: &TransitKeyVersion,
        ) -> Result<()> {
            sqlx::query(
                "INSERT INTO transit_key_versions (name, version, material, public_key, \
                 created_at) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(name)
            .bind(i64::from(version.version))
            .bind(&version.material)
            .bind(version.public_key.clone())
            .bind(millis(version.created_at))
            .execute(&mut **tx)
            .await?;
            Ok(())
        }

        async fn insert_keyring_entry(
            tx: &mut sqlx::Transaction<'_, $db>,
            entry: &KeyringEntry,
        ) -> Result<()> {
            let inserted = sqlx::query(
                "INSERT INTO keyring (version, wrapped_key, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(i64::from(entry.version))
            .bind(&entry.wrapped_key)
            .bind(millis(entry.created_at))
            .execute(&mut **tx)
            .await?
            .rows_affected();
            if inserted == 0 {
                return Err(StoreError::Conflict("this keyring version exists"));
            }
            Ok(())
        }

        async fn insert_events(
            tx: &mut sqlx::Transaction<'_, $db>,
            events: &[AuditEvent],
        ) -> Result<()> {
            for chunk in events.chunks(EVENTS_PER_INSERT) {
                let mut q: QueryBuilder<$db> = QueryBuilder::new(
                    "INSERT INTO audit_events (id, at, actor, action, target, details) ",
                );
                q.push_values(chunk, |mut row, e| {
                    row.push_bind(e.id.as_str().to_owned())
                        .push_bind(millis(e.at))
                        .push_bind(e.actor.as_ref().map(|a| a.as_str().to_owned()))
                        .push_bind(e.action.clone())
                        .push_bind(e.target.clone())
                        .push_bind(to_json(&e.details));
                });
                q.build().execute(&mut **tx).await?;
                let mut q: QueryBuilder<$db> =
                    QueryBuilder::new(derive_event_reach_sql(<$store>::DIALECT.id_collation));
                let mut ids = q.separated(", ");
                for e in chunk {
                    ids.push_bind(e.id.as_str().to_owned());
                }
                q.push(")");
                q.build().execute(&mut **tx).await?;
            }
            Ok(())
        }

        /// The tokens that `sql` (ending in an open `IN (` list) selects for
        /// the ids in `ids`, in chunks a statement can carry.
        async fn tokens_in(
            tx: &mut sqlx::Transaction<'_, $db>,
            sql: &str,
            ids: &[String],
            tail: &str,
        ) -> Result<Vec<AdminToken>> {
            let mut found = Vec::new();
            for chunk in ids.chunks(EVENTS_PER_INSERT) {
                let mut q: QueryBuilder<$db> = QueryBuilder::new(sql);
                let mut list = q.separated(", ");
                for id in chunk {
                    list.push_bind(id.clone());
                }
                q.push(")").push(tail);
                let rows: Vec<TokenRow> = q.build_query_as().fetch_all(&mut **tx).await?;
                found.extend(convert::<TokenRow, AdminToken>(rows)?);
            }
            Ok(found)
        }

        /// The usable tokens unlimited in APIs and environments; rows that
        /// cannot be read back count as none (they authenticate nothing).
        async fn unlimited_tokens(
            executor: impl sqlx::Executor<'_, Database = $db>,
        ) -> Result<Vec<AdminToken>> {
            let sql = format!(
                "SELECT {TOKEN_COLUMNS} FROM admin_tokens WHERE revoked_at IS NULL \
                 AND api_ids IS NULL AND environments IS NULL"
            );
            let rows: Vec<TokenRow> = sqlx::query_as(&sql).fetch_all(executor).await?;
            Ok(rows
                .into_iter()
                .filter_map(|r| AdminToken::try_from(r).ok())
                .collect())
        }

        /// An audit row as an entry: the event, or what made it unreadable.
        fn audit_entry(row: &<$db as sqlx::Database>::Row) -> AuditEntry {
            use sqlx::Row;
            let id: String = row.try_get("id").unwrap_or_default();
            let read = || -> std::result::Result<AuditEvent, String> {
                let event = EventRow {
                    id: id.clone(),
                    at: row.try_get("at").map_err(|e| e.to_string())?,
                    actor: row.try_get("actor").map_err(|e| e.to_string())?,
                    action: row.try_get("action").map_err(|e| e.to_string())?,
                    target: row.try_get("target").map_err(|e| e.to_string())?,
                    details: row.try_get("details").map_err(|e| e.to_string())?,
                };
                AuditEvent::try_from(event).map_err(|e| e.to_string())
            };
            match read() {
                Ok(event) => AuditEntry::Event(event),
                Err(detail) => AuditEntry::Unreadable { id, detail },
            }
        }

        /// Writes change-feed entries, in the transaction of the change.
        async fn insert_changes(
            tx: &mut sqlx::Transaction<'_, $db>,
            changes: &[Change],
            now: OffsetDateTime,
        ) -> Result<()> {
            for chunk in changes.chunks(EVENTS_PER_INSERT) {
                let mut q: QueryBuilder<$db> =
                    QueryBuilder::new("INSERT INTO cache_changes (kind, digest, owner, changed_at) ");
                q.push_values(chunk, |mut row, c| {
                    let (kind, digest, owner) = match c {
                        Change::Key(d) => ("key", Some(d.as_bytes().to_vec()), None),
                        Change::Token(d) => ("token", Some(d.as_bytes().to_vec()), None),
                        Change::Owner(o) => ("owner", None, Some(o.clone())),
                    };
                    row.push_bind(kind)
                        .push_bind(digest)
                        .push_bind(owner)
                        .push_bind(millis(now));
                });
                q.build().execute(&mut **tx).await?;
            }
            let notify = <$store>::DIALECT.notify_changes;
            if !changes.is_empty() && !notify.is_empty() {
                sqlx::query(notify).execute(&mut **tx).await?;
            }
            Ok(())
        }

        fn push_key_filter(
            q: &mut QueryBuilder<'_, $db>,
            api_ids_within: &Option<Vec<ApiId>>,
            environments_within: &Option<Vec<keyward_core::Environment>>,
        ) {
            if let Some(ids) = api_ids_within {
                if ids.is_empty() {
                    q.push(" AND FALSE");
                } else {
                    q.push(" AND api_id IN (");
                    let mut list = q.separated(", ");
                    for id in ids {
                        list.push_bind(id.as_str().to_owned());
                    }
                    q.push(")");
                }
            }
            if let Some(envs) = environments_within {
                if envs.is_empty() {
                    q.push(" AND FALSE");
                } else {
                    q.push(" AND environment IN (");
                    let mut list = q.separated(", ");
                    for env in envs {
                        list.push_bind(env.as_str());
                    }
                    q.push(")");
                }
            }
        }

        async fn insert_key(
            tx: &mut sqlx::Transaction<'_, $db>,
            key: &KeyRecord,
        ) -> Result<()> {
            let sql = format!(
                "INSERT INTO keys ({KEY_COLUMNS}) VALUES \
                 ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, \
                  $18, $19, $20, $21, $22, $23)"
            );
            sqlx::query(&sql)
                .bind(key.id.as_str())
                .bind(key.api_id.as_str())
                .bind(key.environment.as_str())
                .bind(&key.name)
                .bind(&key.owner)
                .bind(to_json(&key.scopes))
                .bind(to_json(&key.metadata))
                .bind(key.digest.as_bytes().as_slice())
                .bind(&key.start)
                .bind(key.enabled)
                .bind(millis(key.created_at))
                .bind(millis(key.updated_at))
                .bind(key.expires_at.map(millis))
                .bind(key.revoked_at.map(millis))
                .bind(key.revoke_reason.as_deref())
                .bind(key.rotated_from.as_ref().map(|k| k.as_str()))
                .bind(key.rotated_to.as_ref().map(|k| k.as_str()))
                .bind(to_json(&key.ratelimits))
                .bind(key.credits.map(|c| c.remaining.min(i64::MAX as u64) as i64))
                .bind(key.credits.and_then(|c| c.refill).map(|r| to_json(&r)))
                .bind(key.credits.map(|c| millis(c.refilled_at)))
                .bind(to_json(&key.ip_allowlist))
                .bind(key.last_used_at.map(millis))
                .execute(&mut **tx)
                .await
                .map_err(unique_violation("a key with this digest already exists"))?;
            Ok(())
        }

        /// Maps a unique-constraint failure to `Conflict` with `what`.
        fn unique_violation(what: &'static str) -> impl Fn(sqlx::Error) -> StoreError {
            move |e| match &e {
                sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(what),
                _ => StoreError::Database(e),
            }
        }

        #[async_trait]
        impl Store for $store {
            async fn ping(&self) -> Result<()> {
                sqlx::query("SELECT 1").execute(self.reader()).await?;
                Ok(())
            }

            async fn bootstrap(&self, root: &AdminToken, event: &AuditEvent) -> Result<bool> {
                let mut tx = self.writer().begin().await?;
                let claimed = sqlx::query(
                    "INSERT INTO bootstrap (singleton, at, root_token) VALUES (1, $1, $2) \
                     ON CONFLICT DO NOTHING",
                )
                .bind(millis(root.created_at))
                .bind(root.id.as_str())
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    == 1;
                if !claimed {
                    tx.rollback().await?;
                    return Ok(false);
                }
                insert_token(&mut tx, root).await?;
                insert_events(&mut tx, std::slice::from_ref(event)).await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn create_api(&self, api: &Api, event: &AuditEvent) -> Result<()> {
                let mut tx = self.writer().begin().await?;
                sqlx::query(
                    "INSERT INTO apis (id, name, prefix, environments, created_at) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(api.id.as_str())
                .bind(&api.name)
                .bind(api.prefix.as_str())
                .bind(to_json(&api.environments))
                .bind(millis(api.created_at))
                .execute(&mut *tx)
                .await
                .map_err(unique_violation("an API with this prefix already exists"))?;
                insert_events(&mut tx, std::slice::from_ref(event)).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn get_api(&self, id: &ApiId) -> Result<Option<Api>> {
                let row: Option<ApiRow> = sqlx::query_as(
                    "SELECT id, name, prefix, environments, created_at FROM apis WHERE id = $1",
                )
                .bind(id.as_str())
                .fetch_optional(self.reader())
                .await?;
                row.map(Api::try_from).transpose()
            }

            async fn list_apis(&self) -> Result<Vec<Api>> {
                let rows: Vec<ApiRow> = sqlx::query_as(
                    "SELECT id, name, prefix, environments, created_at FROM apis ORDER BY id",
                )
                .fetch_all(self.reader())
                .await?;
                convert(rows)
            }

            async fn create_key(&self, key: &KeyRecord, event: &AuditEvent) -> Result<()> {
                let mut tx = self.writer().begin().await?;
                insert_key(&mut tx, key).await?;
                insert_events(&mut tx, std::slice::from_ref(event)).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn create_keys(&self, keys: &[KeyRecord], events: &[AuditEvent]) -> Result<()> {
                let mut tx = self.writer().begin().await?;
                for key in keys {
                    insert_key(&mut tx, key).await?;
                }
                insert_events(&mut tx, events).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn get_key(&self, id: &KeyId) -> Result<Option<KeyRecord>> {
                let sql = format!("SELECT {KEY_COLUMNS} FROM keys WHERE id = $1");
                let row: Option<KeyRow> = sqlx::query_as(&sql)
                    .bind(id.as_str())
                    .fetch_optional(self.reader())
                    .await?;
                row.map(KeyRecord::try_from).transpose()
            }

            async fn find_key_by_digest(&self, digest: &KeyDigest) -> Result<Option<KeyRecord>> {
                let sql = format!("SELECT {KEY_COLUMNS} FROM keys WHERE digest = $1");
                let row: Option<KeyRow> = sqlx::query_as(&sql)
                    .bind(digest.as_bytes().as_slice())
                    .fetch_optional(self.reader())
                    .await?;
                row.map(KeyRecord::try_from).transpose()
            }

            async fn list_keys(
                &self,
                filter: &KeyFilter,
                page: &Page,
                now: OffsetDateTime,
            ) -> Result<Vec<KeyRecord>> {
                let mut q: QueryBuilder<$db> =
                    QueryBuilder::new(format!("SELECT {KEY_COLUMNS} FROM keys WHERE TRUE"));
                if let Some(api_id) = &filter.api_id {
                    q.push(" AND api_id = ").push_bind(api_id.as_str().to_owned());
                }
                if let Some(owner) = &filter.owner {
                    q.push(" AND owner = ").push_bind(owner.clone());
                }
                if let Some(env) = filter.environment {
                    q.push(" AND environment = ").push_bind(env.as_str());
                }
                if let Some(state) = filter.state {
                    let now = millis(now);
                    match state {
                        KeyState::Revoked => {
                            q.push(" AND revoked_at IS NOT NULL");
                        }
                        KeyState::Expired => {
                            q.push(" AND revoked_at IS NULL AND expires_at <= ")
                                .push_bind(now);
                        }
                        KeyState::Disabled | KeyState::Active => {
                            q.push(" AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ")
                                .push_bind(now)
                                .push(") AND enabled = ")
                                .push_bind(state == KeyState::Active);
                        }
                    }
                }
                push_key_filter(&mut q, &filter.api_ids_within, &filter.environments_within);
                if let Some(after) = &page.after {
                    q.push(" AND id > ").push_bind(after.clone());
                }
                q.push(" ORDER BY id LIMIT ").push_bind(i64::from(page.limit));
                let rows: Vec<KeyRow> = q.build_query_as().fetch_all(self.reader()).await?;
                convert(rows)
            }

            async fn update_key(
                &self,
                id: &KeyId,
                patch: &KeyPatch,
                now: OffsetDateTime,
                event: &AuditEvent,
            ) -> Result<KeyRecord> {
                let mut tx = self.writer().begin().await?;
                let sql = format!(
                    "UPDATE keys SET \
                       name = COALESCE($2, name), \
                       scopes = COALESCE($3, scopes), \
                       metadata = COALESCE($4, metadata), \
                       expires_at = CASE WHEN $5 THEN $6 ELSE expires_at END, \
                       enabled = COALESCE($7, enabled), \
                       updated_at = $8, \
                       ratelimits = COALESCE($9, ratelimits), \
                       ip_allowlist = COALESCE($10, ip_allowlist), \
                       credits_remaining = CASE WHEN $11 THEN $12 ELSE credits_remaining END, \
                       credits_refill = CASE WHEN $11 THEN $13 ELSE credits_refill END, \
                       credits_refilled_at = CASE WHEN $11 THEN $14 ELSE credits_refilled_at END \
                     WHERE id = $1 RETURNING {KEY_COLUMNS}"
                );
                let credits = patch.credits.flatten();
                let row: Option<KeyRow> = sqlx::query_as(&sql)
                    .bind(id.as_str())
                    .bind(patch.name.as_deref())
                    .bind(patch.scopes.as_ref().map(to_json))
                    .bind(patch.metadata.as_ref().map(to_json))
                    .bind(patch.expires_at.is_some())
                    .bind(patch.expires_at.flatten().map(millis))
                    .bind(patch.enabled)
                    .bind(millis(now))
                    .bind(patch.ratelimits.as_ref().map(to_json))
                    .bind(patch.ip_allowlist.as_ref().map(to_json))
                    .bind(patch.credits.is_some())
                    .bind(credits.map(|c| c.remaining.min(i64::MAX as u64) as i64))
                    .bind(credits.and_then(|c| c.refill).map(|r| to_json(&r)))
                    .bind(credits.map(|_| millis(now)))
                    .fetch_optional(&mut *tx)
                    .await?;
                let Some(row) = row else {
                    return Err(StoreError::NotFound);
                };
                let record = KeyRecord::try_from(row)?;
                insert_events(&mut tx, std::slice::from_ref(event)).await?;
                insert_changes(&mut tx, &[Change::Key(record.digest.clone())], now).await?;
                tx.commit().await?;
                Ok(record)
            }

            async fn revoke_key(
                &self,
                id: &KeyId,
                reason: &str,
                now: OffsetDateTime,
                event: &AuditEvent,
            ) -> Result<(KeyRecord, bool)> {
                let mut tx = self.writer().begin().await?;
                let sql = format!(
                    "UPDATE keys SET revoked_at = $2, revoke_reason = $3, updated_at = $2 \
                     WHERE id = $1 AND revoked_at IS NULL RETURNING {KEY_COLUMNS}"
                );
                let row: Option<KeyRow> = sqlx::query_as(&sql)
                    .bind(id.as_str())
                    .bind(millis(now))
                    .bind(reason)
                    .fetch_optional(&mut *tx)
                    .await?;
                match row {
                    Some(row) => {
                        let record = KeyRecord::try_from(row)?;
                        insert_events(&mut tx, std::slice::from_ref(event)).await?;
                        insert_changes(&mut tx, &[Change::Key(record.digest.clone())], now)
                            .await?;
                        tx.commit().await?;
                        Ok((record, true))
                    }
                    None => {
                        tx.rollback().await?;
                        let record = self.get_key(id).await?.ok_or(StoreError::NotFound)?;
                        Ok((record, false))
                    }
                }
            }

            async fn rotate_key(&self, rotation: &Rotation, events: &[AuditEvent]) -> Result<()> {
                let mut tx = self.writer().begin().await?;
                let until = millis(rotation.old_expires_at);
                let marked: Option<(Vec<u8>,)> = sqlx::query_as(
                    "UPDATE keys SET rotated_to = $2, updated_at = $3, \
                       expires_at = CASE WHEN expires_at IS NULL OR expires_at > $4 \
                                         THEN $4 ELSE expires_at END \
                     WHERE id = $1 AND revoked_at IS NULL AND rotated_to IS NULL \
                     RETURNING digest",
                )
                .bind(rotation.old.as_str())
                .bind(rotation.successor.id.as_str())
                .bind(millis(rotation.successor.created_at))
                .bind(until)
                .fetch_optional(&mut *tx)
                .await?;
                let Some((old_digest,)) = marked else {
                    tx.rollback().await?;
                    return match self.get_key(&rotation.old).await? {
                        None => Err(StoreError::NotFound),
                        Some(_) => Err(StoreError::Conflict(
                            "the key is revoked or was already rotated",
                        )),
                    };
                };
                insert_key(&mut tx, &rotation.successor).await?;
                insert_events(&mut tx, events).await?;
                let old_digest = $crate::rows::digest("keys", &old_digest)?;
                insert_changes(&mut tx, &[Change::Key(old_digest)], rotation.successor.created_at)
                    .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn bulk_revoke(
                &self,
                filter: &BulkRevokeFilter,
                reason: &str,
                now: OffsetDateTime,
                template: &AuditEvent,
            ) -> Result<Vec<KeyDigest>> {
                if !filter.has_criteria() {
                    return Err(StoreError::Conflict("a bulk revocation needs a filter"));
                }
                let mut tx = self.writer().begin().await?;
                let mut q: QueryBuilder<$db> = QueryBuilder::new("UPDATE keys SET revoked_at = ");
                q.push_bind(millis(now))
                    .push(", updated_at = ")
                    .push_bind(millis(now))
                    .push(", revoke_reason = ")
                    .push_bind(reason.to_owned())
                    .push(" WHERE revoked_at IS NULL");
                if let Some(owner) = &filter.owner {
                    q.push(" AND owner = ").push_bind(owner.clone());
                }
                if let Some(api_id) = &filter.api_id {
                    q.push(" AND api_id = ").push_bind(api_id.as_str().to_owned());
                }
                if let Some(env) = filter.environment {
                    q.push(" AND environment = ").push_bind(env.as_str());
                }
                if let Some(before) = filter.created_before {
                    q.push(" AND created_at < ").push_bind(millis(before));
                }
                if let Some(scope) = &filter.scope {
                    q.push(" AND ")
                        .push(Self::DIALECT.scope_match_open)
                        .push_bind(scope.as_str().to_owned())
                        .push(Self::DIALECT.scope_match_close);
                }
                push_key_filter(&mut q, &filter.api_ids_within, &filter.environments_within);
                q.push(" RETURNING id, digest");
                let rows: Vec<(String, Vec<u8>)> = q.build_query_as().fetch_all(&mut *tx).await?;
                let mut events = Vec::with_capacity(rows.len());
                let mut digests = Vec::with_capacity(rows.len());
                for (id, digest) in rows {
                    digests.push($crate::rows::digest("keys", &digest)?);
                    events.push(AuditEvent {
                        id: $crate::event_id(now)?,
                        target: id,
                        ..template.clone()
                    });
                }
                insert_events(&mut tx, &events).await?;
                let changes: Vec<Change> = digests.iter().cloned().map(Change::Key).collect();
                insert_changes(&mut tx, &changes, now).await?;
                tx.commit().await?;
                Ok(digests)
            }

            async fn lease_credits(
                &self,
                id: &KeyId,
                want: u64,
                now: OffsetDateTime,
            ) -> Result<Option<CreditLease>> {
                let mut tx = self.writer().begin().await?;
                let sql = format!(
                    "SELECT credits_remaining, credits_refill, credits_refilled_at, created_at \
                     FROM keys WHERE id = $1{}",
                    Self::DIALECT.for_update
                );
                let row: Option<(Option<i64>, Option<String>, Option<i64>, i64)> =
                    sqlx::query_as(&sql)
                        .bind(id.as_str())
                        .fetch_optional(&mut *tx)
                        .await?;
                let Some((Some(remaining), refill, refilled_at, created_at)) = row else {
                    tx.rollback().await?;
                    return Ok(None);
                };
                const T: &str = "keys";
                let refill = refill.as_deref().map(|s| $crate::rows::json::<Refill>(T, s)).transpose()?;
                let mut period = $crate::rows::from_millis(T, refilled_at.unwrap_or(created_at))?;
                let mut remaining = u64::try_from(remaining).unwrap_or(0);
                if let Some(refill) = refill.filter(|r| r.is_due(period, now)) {
                    remaining = refill.amount;
                    period = refill.period_start(now);
                }
                let granted = want.min(remaining);
                remaining -= granted;
                sqlx::query(
                    "UPDATE keys SET credits_remaining = $2, credits_refilled_at = $3 WHERE id = $1",
                )
                .bind(id.as_str())
                .bind(remaining as i64)
                .bind(millis(period))
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(Some(CreditLease { granted, remaining, period }))
            }

            async fn return_credits(
                &self,
                id: &KeyId,
                amount: u64,
                period: OffsetDateTime,
            ) -> Result<()> {
                sqlx::query(
                    "UPDATE keys SET credits_remaining = credits_remaining + $2 \
                     WHERE id = $1 AND credits_remaining IS NOT NULL AND credits_refilled_at = $3",
                )
                .bind(id.as_str())
                .bind(amount.min(i64::MAX as u64) as i64)
                .bind(millis(period))
                .execute(self.writer())
                .await?;
                Ok(())
            }

            async fn record_usage(
                &self,
                rows: &[UsageRow],
                last_used: &[(KeyId, OffsetDateTime)],
            ) -> Result<()> {
                // Rows travel as bound values of multi-row statements, added
                // up per (minute, key, code) first: an upsert may not meet
                // the same row twice. They are written in the table's order
                // (minute first), so a flush appends at the table's end.
                let mut counts: std::collections::HashMap<(i64, &str, &str), u64> =
                    std::collections::HashMap::with_capacity(rows.len());
                for u in rows {
                    let count = counts.entry((u.minute, u.key_id.as_str(), u.code.as_str())).or_default();
                    *count = count.saturating_add(u.count);
                }
                let mut counts: Vec<_> = counts.into_iter().collect();
                counts.sort_unstable();
                let mut latest: std::collections::HashMap<&str, i64> =
                    std::collections::HashMap::with_capacity(last_used.len());
                for (id, at) in last_used {
                    let at = millis(*at);
                    let entry = latest.entry(id.as_str()).or_insert(at);
                    *entry = (*entry).max(at);
                }
                let mut latest: Vec<_> = latest.into_iter().collect();
                latest.sort_unstable();

                let mut tx = self.writer().begin().await?;
                for chunk in counts.chunks(USAGE_ROWS_PER_STATEMENT) {
                    let mut q: QueryBuilder<$db> =
                        QueryBuilder::new("INSERT INTO key_usage (minute, key_id, code, count) ");
                    q.push_values(chunk, |mut row, ((minute, id, code), count)| {
                        row.push_bind(*minute)
                            .push_bind(*id)
                            .push_bind(*code)
                            .push_bind((*count).min(i64::MAX as u64) as i64);
                    });
                    q.push(
                        " ON CONFLICT (minute, key_id, code) \
                         DO UPDATE SET count = key_usage.count + excluded.count",
                    );
                    // Full chunks share one statement text, prepared once;
                    // the last, shorter one is not kept.
                    q.build()
                        .persistent(chunk.len() == USAGE_ROWS_PER_STATEMENT)
                        .execute(&mut *tx)
                        .await?;
                }
                for chunk in latest.chunks(USAGE_ROWS_PER_STATEMENT) {
                    let mut q: QueryBuilder<$db> =
                        QueryBuilder::new("UPDATE keys SET last_used_at = v.column2 FROM (");
                    q.push_values(chunk, |mut row, (id, at)| {
                        row.push_bind(*id).push_bind(*at);
                    });
                    q.push(") AS v WHERE keys.id = v.column1");
                    q.push(Self::DIALECT.id_collation);
                    q.push(" AND (keys.last_used_at IS NULL OR keys.last_used_at < v.column2)");
                    q.build()
                        .persistent(chunk.len() == USAGE_ROWS_PER_STATEMENT)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn key_usage(
                &self,
                id: &KeyId,
                minutes: std::ops::RangeInclusive<i64>,
            ) -> Result<Vec<UsageRow>> {
                if minutes.is_empty() {
                    return Ok(Vec::new());
                }
                let rows: Vec<(i64, String, i64)> = sqlx::query_as(Self::DIALECT.usage_of_key)
                .bind(id.as_str())
                .bind(*minutes.start())
                .bind(*minutes.end())
                .fetch_all(self.reader())
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|(minute, code, count)| UsageRow {
                        key_id: id.clone(),
                        minute,
                        code,
                        count: u64::try_from(count).unwrap_or(0),
                    })
                    .collect())
            }

            async fn prune_usage(&self, before: i64) -> Result<u64> {
                // The table is ordered by minute, so the oldest minute is
                // its first rows and goes without reading the rest.
                let deleted = sqlx::query(
                    "DELETE FROM key_usage WHERE minute < $1 \
                     AND minute = (SELECT MIN(minute) FROM key_usage)",
                )
                .bind(before)
                .execute(self.writer())
                .await?
                .rows_affected();
                Ok(deleted)
            }

            async fn owner_ratelimits(&self, owner: &str) -> Result<Vec<RateLimit>> {
                let row: Option<(String,)> =
                    sqlx::query_as("SELECT ratelimits FROM owner_ratelimits WHERE owner = $1")
                        .bind(owner)
                        .fetch_optional(self.reader())
                        .await?;
                match row {
                    Some((text,)) => $crate::rows::json("owner_ratelimits", &text),
                    None => Ok(Vec::new()),
                }
            }

            async fn all_owner_ratelimits(&self) -> Result<Vec<(String, Vec<RateLimit>)>> {
                let rows: Vec<(String, String)> =
                    sqlx::query_as("SELECT owner, ratelimits FROM owner_ratelimits")
                        .fetch_all(self.reader())
                        .await?;
                rows.into_iter()
                    .map(|(owner, text)| Ok((owner, $crate::rows::json("owner_ratelimits", &text)?)))
                    .collect()
            }

            async fn set_owner_ratelimits(
                &self,
                owner: &str,
                limits: &[RateLimit],
                now: OffsetDateTime,
                event: &AuditEvent,
            ) -> Result<()> {
                let mut tx = self.writer().begin().await?;
                sqlx::query(
                    "INSERT INTO owner_ratelimits (owner, ratelimits, updated_at) \
                     VALUES ($1, $2, $3) ON CONFLICT (owner) \
                     DO UPDATE SET ratelimits = excluded.ratelimits, updated_at = excluded.updated_at",
                )
                .bind(owner)
                .bind(to_json(&limits))
                .bind(millis(now))
                .execute(&mut *tx)
                .await?;
                insert_events(&mut tx, std::slice::from_ref(event)).await?;
                insert_changes(&mut tx, &[Change::Owner(owner.to_owned())], now).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn create_token(&self, token: &AdminToken, event: &AuditEvent) -> Result<()> {
                let mut tx = self.writer().begin().await?;
                if let Some(creator) = &token.created_by {
                    // The row lock orders this against a revocation of the
                    // creator: that one either sees the new token or
                    // happens first and is seen here.
                    let sql = format!(
                        "SELECT revoked_at FROM admin_tokens WHERE id = $1{}",
                        Self::DIALECT.for_update
                    );
                    let found: Option<(Option<i64>,)> = sqlx::query_as(&sql)
                        .bind(creator.as_str())
                        .fetch_optional(&mut *tx)
                        .await?;
                    if !matches!(found, Some((None,))) {
                        tx.rollback().await?;
                        return Err(StoreError::Conflict(
                            "the token creating this one is revoked or unknown",
                        ));
                    }
                }
                insert_token(&mut tx, token).await?;
                insert_events(&mut tx, std::slice::from_ref(event)).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn get_token(&self, id: &TokenId) -> Result<Option<AdminToken>> {
                let sql = format!("SELECT {TOKEN_COLUMNS} FROM admin_tokens WHERE id = $1");
                let row: Option<TokenRow> = sqlx::query_as(&sql)
                    .bind(id.as_str())
                    .fetch_optional(self.reader())
                    .await?;
                row.map(AdminToken::try_from).transpose()
            }

            async fn find_token_by_digest(&self, digest: &KeyDigest) -> Result<Option<AdminToken>> {
                let sql = format!("SELECT {TOKEN_COLUMNS} FROM admin_tokens WHERE digest = $1");
                let row: Option<TokenRow> = sqlx::query_as(&sql)
                    .bind(digest.as_bytes().as_slice())
                    .fetch_optional(self.reader())
                    .await?;
                row.map(AdminToken::try_from).transpose()
            }

            async fn list_tokens(&self, page: &Page) -> Result<Vec<AdminToken>> {
                let sql = format!(
                    "SELECT {TOKEN_COLUMNS} FROM admin_tokens WHERE id > $1 ORDER BY id LIMIT $2"
                );
                let rows: Vec<TokenRow> = sqlx::query_as(&sql)
                    .bind(page.after.clone().unwrap_or_default())
                    .bind(i64::from(page.limit))
                    .fetch_all(self.reader())
                    .await?;
                convert(rows)
            }

            async fn revoke_token(
                &self,
                id: &TokenId,
                now: OffsetDateTime,
                event: &AuditEvent,
            ) -> Result<bool> {
                let revoked = self
                    .revoke_token_tree(id, now, event, LastFullToken::Revoke)
                    .await?;
                Ok(revoked.first().is_some_and(|t| &t.id == id))
            }

            async fn revoke_token_tree(
                &self,
                id: &TokenId,
                now: OffsetDateTime,
                event: &AuditEvent,
                last: LastFullToken,
            ) -> Result<Vec<RevokedToken>> {
                let lock = Self::DIALECT.for_update;
                let mut tx = self.writer().begin().await?;
                if last == LastFullToken::Keep {
                    // One guarded revocation at a time: two at once could
                    // each see the other's token as the one that remains.
                    sqlx::query(&format!(
                        "SELECT singleton FROM bootstrap WHERE singleton = 1{lock}"
                    ))
                    .fetch_optional(&mut *tx)
                    .await?;
                }
                let origin = tokens_in(
                    &mut tx,
                    &format!("SELECT {TOKEN_COLUMNS} FROM admin_tokens WHERE id IN ("),
                    &[id.as_str().to_owned()],
                    lock,
                )
                .await?;
                let Some(origin) = origin.into_iter().next() else {
                    tx.rollback().await?;
                    return Err(StoreError::NotFound);
                };
                // The tree, one level per statement: each statement sees
                // what committed before it, so a token minted by one of
                // these while this ran (it waited for its creator's row
                // lock) is found at the next level.
                let mut seen = std::collections::HashSet::from([origin.id.as_str().to_owned()]);
                let mut tree = vec![origin];
                let mut level = vec![id.as_str().to_owned()];
                while !level.is_empty() {
                    let children = tokens_in(
                        &mut tx,
                        &format!("SELECT {TOKEN_COLUMNS} FROM admin_tokens WHERE created_by IN ("),
                        &level,
                        lock,
                    )
                    .await?;
                    level = Vec::new();
                    for child in children {
                        if seen.insert(child.id.as_str().to_owned()) {
                            level.push(child.id.as_str().to_owned());
                            tree.push(child);
                        }
                    }
                }
                let unrevoked: Vec<AdminToken> =
                    tree.into_iter().filter(|t| t.revoked_at.is_none()).collect();
                if unrevoked.is_empty() {
                    tx.rollback().await?;
                    return Ok(Vec::new());
                }
                let takes_full = unrevoked.iter().any(|t| is_full_token(t, now));
                let ids: Vec<String> = unrevoked.iter().map(|t| t.id.as_str().to_owned()).collect();
                for chunk in ids.chunks(EVENTS_PER_INSERT) {
                    let mut q: QueryBuilder<$db> =
                        QueryBuilder::new("UPDATE admin_tokens SET revoked_at = ");
                    q.push_bind(millis(now)).push(" WHERE revoked_at IS NULL AND id IN (");
                    let mut list = q.separated(", ");
                    for id in chunk {
                        list.push_bind(id.clone());
                    }
                    q.push(")");
                    q.build().execute(&mut *tx).await?;
                }
                if last == LastFullToken::Keep
                    && takes_full
                    && !unlimited_tokens(&mut *tx)
                        .await?
                        .iter()
                        .any(|t| is_full_token(t, now))
                {
                    tx.rollback().await?;
                    return Err(StoreError::LastFullToken);
                }
                let mut events = Vec::with_capacity(unrevoked.len());
                for token in &unrevoked {
                    if &token.id == id {
                        events.push(event.clone());
                    } else {
                        events.push(AuditEvent {
                            id: $crate::event_id(now)?,
                            target: token.id.as_str().to_owned(),
                            details: cascade_details(id, &event.details),
                            ..event.clone()
                        });
                    }
                }
                insert_events(&mut tx, &events).await?;
                let changes: Vec<Change> =
                    unrevoked.iter().map(|t| Change::Token(t.digest)).collect();
                insert_changes(&mut tx, &changes, now).await?;
                tx.commit().await?;
                Ok(unrevoked
                    .into_iter()
                    .map(|t| RevokedToken { id: t.id, digest: t.digest })
                    .collect())
            }

            async fn has_full_token(&self, now: OffsetDateTime) -> Result<bool> {
                Ok(unlimited_tokens(self.reader())
                    .await?
                    .iter()
                    .any(|t| is_full_token(t, now)))
            }

            async fn adopt_tokens(
                &self,
                from: &TokenId,
                to: &TokenId,
                event: &AuditEvent,
            ) -> Result<u64> {
                let mut tx = self.writer().begin().await?;
                let moved = sqlx::query(
                    "UPDATE admin_tokens SET created_by = $1 \
                     WHERE created_by = $2 AND revoked_at IS NULL",
                )
                .bind(to.as_str())
                .bind(from.as_str())
                .execute(&mut *tx)
                .await?
                .rows_affected();
                insert_events(&mut tx, std::slice::from_ref(event)).await?;
                tx.commit().await?;
                Ok(moved)
            }

            async fn list_audit(
                &self,
                filter: &AuditFilter,
                page: &Page,
            ) -> Result<Vec<AuditEntry>> {
                let mut q: QueryBuilder<$db> = QueryBuilder::new(
                    "SELECT id, at, actor, action, target, details FROM audit_events WHERE TRUE",
                );
                if let Some(target) = &filter.target {
                    q.push(" AND target = ").push_bind(target.clone());
                }
                if let Some(action) = &filter.action {
                    q.push(" AND action = ").push_bind(action.clone());
                }
                if let Some(ids) = &filter.api_ids_within {
                    q.push(" AND api_id IN (");
                    let mut list = q.separated(", ");
                    // An empty reach matches nothing; NULL is in no list.
                    list.push("NULL");
                    for id in ids {
                        list.push_bind(id.as_str().to_owned());
                    }
                    q.push(")");
                }
                if let Some(envs) = &filter.environments_within {
                    q.push(" AND environment IN (");
                    let mut list = q.separated(", ");
                    list.push("NULL");
                    for env in envs {
                        list.push_bind(env.as_str());
                    }
                    q.push(")");
                }
                if let Some(after) = &page.after {
                    q.push(" AND id > ").push_bind(after.clone());
                }
                q.push(" ORDER BY id LIMIT ").push_bind(i64::from(page.limit));
                let rows = q.build().fetch_all(self.reader()).await?;
                Ok(rows.iter().map(audit_entry).collect())
            }

            async fn seal(&self) -> Result<Option<SealRecord>> {
                let row: Option<SealRow> = sqlx::query_as(
                    "SELECT kind, share_set, threshold, share_digests, wrapped_master, \
                     created_at, updated_at FROM seal WHERE id = 1",
                )
                .fetch_optional(self.reader())
                .await?;
                row.map(seal_from_row).transpose()
            }

            async fn keyring(&self) -> Result<Vec<KeyringEntry>> {
                let rows: Vec<(i64, Vec<u8>, i64)> = sqlx::query_as(
                    "SELECT version, wrapped_key, created_at FROM keyring ORDER BY version",
                )
                .fetch_all(self.reader())
                .await?;
                rows.into_iter()
                    .map(|(version, wrapped_key, created_at)| {
                        Ok(KeyringEntry {
                            version: u32::try_from(version)
                                .map_err(|_| corrupt("keyring", "version out of range"))?,
                            wrapped_key,
                            created_at: $crate::rows::from_millis("keyring", created_at)?,
                        })
                    })
                    .collect()
            }

            async fn init_seal(
                &self,
                seal: &SealRecord,
                first: &KeyringEntry,
                event: &AuditEvent,
            ) -> Result<()> {
                let mut tx = self.writer().begin().await?;
                let digests: Vec<u8> = seal.share_digests.concat();
                let inserted = sqlx::query(
                    "INSERT INTO seal (id, kind, share_set, threshold, share_digests, \
                     wrapped_master, created_at, updated_at) \
                     VALUES (1, $1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
                )
                .bind(seal.kind.as_str())
                .bind(seal.share_set.map(|s| s.to_vec()))
                .bind(seal.threshold.map(i64::from))
                .bind((!digests.is_empty()).then_some(digests))
                .bind(seal.wrapped_master.clone())
                .bind(millis(seal.created_at))
                .bind(millis(seal.updated_at))
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if inserted == 0 {
                    tx.rollback().await?;
                    return Err(StoreError::Conflict("the seal is already initialised"));
                }
                insert_keyring_entry(&mut tx, first).await?;
                insert_events(&mut tx, std::slice::from_ref(event)).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn add_keyring_key(&self, entry: &KeyringEntry, event: &AuditEvent) -> Result<()> {
                let mut tx = self.writer().begin().await?;
                insert_keyring_entry(&mut tx, entry).await?;
                insert_events(&mut tx, std::slice::from_ref(event)).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn rekey_seal(
                &self,
                seal: &SealRecord,
                keyring: &[KeyringEntry],
                event: &AuditEvent,
            ) -> Result<()> {
                let mut tx = self.writer().begin().await?;
                let digests: Vec<u8> = seal.share_digests.concat();
                let updated = sqlx::query(
                    "UPDATE seal SET kind = $1, share_set = $2, threshold = $3, \
                     share_digests = $4, wrapped_master = $5, updated_at = $6 WHERE id = 1",
                )
                .bind(seal.kind.as_str())
                .bind(seal.share_set.map(|s| s.to_vec()))
                .bind(seal.threshold.map(i64::from))
                .bind((!digests.is_empty()).then_some(digests))
                .bind(seal.wrapped_master.clone())
                .bind(millis(seal.updated_at))
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if updated == 0 {
                    tx.rollback().await?;
                    return Err(StoreError::NotFound);
                }
                for entry in keyring {
                    let changed = sqlx::query("UPDATE keyring SET wrapped_key = $2 WHERE version = $1")
                        .bind(i64::from(entry.version))
                        .bind(&entry.wrapped_key)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    if changed == 0 {
                        tx.rollback().await?;
                        return Err(StoreError::Conflict(
                            "the keyring changed during the rekey",
                        ));
                    }
                }
                insert_events(&mut tx, std::slice::from_ref(event)).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn append_audit(&self, events: &[AuditEvent]) -> Result<()> {
                let mut tx = self.writer().begin().await?;
                insert_events(&mut tx, events).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn create_mount(&self, mount: &SecretMount, event: &AuditEvent) -> Result<()> {
                let mut tx = self.writer().begin().await?;
                let inserted = sqlx::query(
                    "INSERT INTO secret_mounts (path, environment, max_versions, cas_required, \
                     created_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                )
                .bind(&mount.path)
                .bind(mount.environment.as_str())
                .bind(i64::from(mount.max_versions))
                .bind(i64::from(mount.cas_required))
                .bind(millis(mount.created_at))
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if inserted == 0 {
                    tx.rollback().await?;
                    return Err(StoreError::Conflict("a mount with this path exists"));
                }
                insert_events(&mut tx, std::slice::from_ref(event)).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn get_mount(&self, path: &str) -> Result<Option<SecretMount>> {
                let row: Option<(String, String, i64, i64, i64)> = sqlx::query_as(
                    "SELECT path, environment, max_versions, cas_required, created_at \
                     FROM secret_mounts WHERE path = $1",
                )
                .bind(path)
                .fetch_optional(self.reader())
                .await?;
                row.map($crate::common::mount_from_row).transpose()
            }

            async fn list_mounts(&self) -> Result<Vec<SecretMount>> {
                let rows: Vec<(String, String, i64, i64, i64)> = sqlx::query_as(
                    "SELECT path, environment, max_versions, cas_required, created_at \
                     FROM secret_mounts ORDER BY path",
                )
                .fetch_all(self.reader())
                .await?;
                rows.into_iter().map($crate::common::mount_from_row).collect()
            }

            async fn configure_mount(
                &self,
                path: &str,
                max_versions: u32,
                cas_required: bool,
                event: &AuditEvent,
            ) -> Result<()> {
                let mut tx = self.writer().begin().await?;
                let updated = sqlx::query(
                    "UPDATE secret_mounts SET max_versions = $2, cas_required = $3 WHERE path = $1",
                )
                .bind(path)
                .bind(i64::from(max_versions))
                .bind(i64::from(cas_required))
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if updated == 0 {
                    tx.rollback().await?;
                    return Err(StoreError::NotFound);
                }
                insert_events(&mut tx, std::slice::from_ref(event)).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn secret_meta(&self, mount: &str, path: &str) -> Result<Option<SecretMeta>> {
                let row: Option<$crate::common::MetaRow> = sqlx::query_as(
                    "SELECT mount, path, current_version, oldest_version, max_versions, \
                     cas_required, custom_metadata, custom_metadata_sealed, created_at, \
                     updated_at FROM secret_meta WHERE mount = $1 AND path = $2",
                )
                .bind(mount)
                .bind(path)
                .fetch_optional(self.reader())
                .await?;
                row.map($crate::common::meta_from_row).transpose()
            }

            async fn secret_versions(&self, mount: &str, path: &str) -> Result<Vec<SecretVersion>> {
                let rows: Vec<(i64, Option<Vec<u8>>, i64, Option<i64>, i64)> = sqlx::query_as(
                    "SELECT version, value, created_at, deleted_at, destroyed \
                     FROM secret_versions WHERE mount = $1 AND path = $2 ORDER BY version",
                )
                .bind(mount)
                .bind(path)
                .fetch_all(self.reader())
                .await?;
                const T: &str = "secret_versions";
                rows.into_iter()
                    .map(|(version, value, created_at, deleted_at, destroyed)| {
                        Ok(SecretVersion {
                            version: u64::try_from(version).map_err(|_| corrupt(T, "version"))?,
                            value,
                            created_at: $crate::rows::from_millis(T, created_at)?,
                            deleted_at: $crate::rows::opt_from_millis(T, deleted_at)?,
                            destroyed: destroyed != 0,
                        })
                    })
                    .collect()
            }

            async fn write_secret(&self, write: &SecretWrite, event: &AuditEvent) -> Result<()> {
                let mut tx = self.writer().begin().await?;
                let version = i64::try_from(write.version)
                    .map_err(|_| StoreError::Conflict("version out of range"))?;
                // A first version claims the secret, or the metadata written
                // for it before any version (`current_version` 0).
                let claimed = if write.replaces == 0 {
                    sqlx::query(
                        "INSERT INTO secret_meta (mount, path, current_version, oldest_version, \
                         created_at, updated_at) VALUES ($1, $2, $3, $3, $4, $4) \
                         ON CONFLICT (mount, path) DO UPDATE SET \
                         current_version = excluded.current_version, \
                         oldest_version = excluded.oldest_version, \
                         updated_at = excluded.updated_at \
                         WHERE secret_meta.current_version = 0",
                    )
                    .bind(&write.mount)
                    .bind(&write.path)
                    .bind(version)
                    .bind(millis(write.at))
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
                } else {
                    sqlx::query(
                        "UPDATE secret_meta SET current_version = $3, updated_at = $5 \
                         WHERE mount = $1 AND path = $2 AND current_version = $4",
                    )
                    .bind(&write.mount)
                    .bind(&write.path)
                    .bind(version)
                    .bind(write.replaces as i64)
                    .bind(millis(write.at))
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
                };
                if claimed == 0 {
                    tx.rollback().await?;
                    return Err(StoreError::Conflict("the secret was changed by another write"));
                }
                sqlx::query(
                    "INSERT INTO secret_versions (mount, path, version, value, created_at) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(&write.mount)
                .bind(&write.path)
                .bind(version)
                .bind(&write.value)
                .bind(millis(write.at))
                .execute(&mut *tx)
                .await?;
                // Keep the newest `keep` versions.
                let oldest = (version - i64::from(write.keep.max(1)) + 1).max(1);
                sqlx::query(
                    "DELETE FROM secret_versions WHERE mount = $1 AND path = $2 AND version < $3",
                )
                .bind(&write.mount)
                .bind(&write.path)
                .bind(oldest)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "UPDATE secret_meta SET oldest_version = \
                     (SELECT MIN(version) FROM secret_versions WHERE mount = $1 AND path = $2) \
                     WHERE mount = $1 AND path = $2",
                )
                .bind(&write.mount)
                .bind(&write.path)
                .execute(&mut *tx)
                .await?;
                insert_events(&mut tx, std::slice::from_ref(event)).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn act_on_versions(
                &self,
                mount: &str,
                path: &str,
                versions: &[u64],
                action: VersionAction,
                event: &AuditEvent,
            ) -> Result<()> {
                let mut tx = self.writer().begin().await?;
                for version in versions {
                    let Ok(version) = i64::try_from(*version) else { continue };
                    let q = match action {
                        VersionAction::Delete(at) => sqlx::query(
                            "UPDATE secret_versions SET deleted_at = $4 WHERE mount = $1 \
                             AND path = $2 AND version = $3 AND deleted_at IS NULL",
                        )
                        .bind(mount)
                        .bind(path)
                        .bind(version)
                        .bind(millis(at)),
                        VersionAction::Undelete => sqlx::query(
                            "UPDATE secret_versions SET deleted_at = NULL WHERE mount = $1 \
                             AND path = $2 AND version = $3 AND destroyed = 0",
                        )
                        .bind(mount)
                        .bind(path)
                        .bind(version),
                        VersionAction::Destroy => sqlx::query(
                            "UPDATE secret_versions SET value = NULL, destroyed = 1 \
                             WHERE mount = $1 AND path = $2 AND version = $3",
                        )
                        .bind(mount)
                        .bind(path)
                        .bind(version),
                    };
                    q.execute(&mut *tx).await?;
                }
                insert_events(&mut tx, std::slice::from_ref(event)).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn patch_secret_meta(
                &self,
                mount: &str,
                path: &str,
                patch: &SecretMetaPatch,
                at: OffsetDateTime,
                event: &AuditEvent,
            ) -> Result<()> {
                let mut tx = self.writer().begin().await?;
                sqlx::query(
                    "INSERT INTO secret_meta (mount, path, current_version, oldest_version, \
                     created_at, updated_at) VALUES ($1, $2, 0, 0, $3, $3) ON CONFLICT DO NOTHING",
                )
                .bind(mount)
                .bind(path)
                .bind(millis(at))
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "UPDATE secret_meta SET max_versions = COALESCE($3, max_versions), \
                     cas_required = COALESCE($4, cas_required), \
                     custom_metadata = CASE WHEN $7 IS NOT NULL THEN '{}' \
                         ELSE COALESCE($5, custom_metadata) END, \
                     custom_metadata_sealed = CASE WHEN $7 IS NOT NULL THEN $7 \
                         WHEN $5 IS NOT NULL THEN NULL ELSE custom_metadata_sealed END, \
                     updated_at = $6 \
                     WHERE mount = $1 AND path = $2",
                )
                .bind(mount)
                .bind(path)
                .bind(patch.max_versions.map(i64::from))
                .bind(patch.cas_required.map(i64::from))
                .bind(patch.custom_metadata.as_ref().map(to_json))
                .bind(millis(at))
                .bind(patch.custom_metadata_sealed.as_deref())
                .execute(&mut *tx)
                .await?;
                insert_events(&mut tx, std::slice::from_ref(event)).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn delete_secret(&self, mount: &str, path: &str, event: &AuditEvent) -> Result<bool> {
                let mut tx = self.writer().begin().await?;
                sqlx::query("DELETE FROM secret_versions WHERE mount = $1 AND path = $2")
                    .bind(mount)
                    .bind(path)
                    .execute(&mut *tx)
                    .await?;
                let removed = sqlx::query("DELETE FROM secret_meta WHERE mount = $1 AND path = $2")
                    .bind(mount)
                    .bind(path)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if removed == 0 {
                    tx.rollback().await?;
                    return Ok(false);
                }
                insert_events(&mut tx, std::slice::from_ref(event)).await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn secret_paths(&self, mount: &str, prefix: &str) -> Result<Vec<String>> {
                let rows: Vec<(String,)> = sqlx::query_as(
                    "SELECT path FROM secret_meta WHERE mount = $1 \
                     AND substr(path, 1, length($2)) = $2 ORDER BY path",
                )
                .bind(mount)
                .bind(prefix)
                .fetch_all(self.reader())
                .await?;
                Ok(rows.into_iter().map(|(p,)| p).collect())
            }

            async fn create_transit_key(
                &self,
                key: &TransitKey,
                first: &TransitKeyVersion,
                event: &AuditEvent,
            ) -> Result<()> {
                let mut tx = self.writer().begin().await?;
                let inserted = sqlx::query(
                    "INSERT INTO transit_keys (name, key_type, derived, latest_version, \
                     min_decryption_version, min_encryption_version, deletion_allowed, \
                     created_at, updated_at, environment, api_ids) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
                     ON CONFLICT DO NOTHING",
                )
                .bind(&key.name)
                .bind(&key.key_type)
                .bind(i64::from(key.derived))
                .bind(i64::from(key.latest_version))
                .bind(i64::from(key.min_decryption_version))
                .bind(i64::from(key.min_encryption_version))
                .bind(i64::from(key.deletion_allowed))
                .bind(millis(key.created_at))
                .bind(millis(key.updated_at))
                .bind(key.environment.as_str())
                .bind(key.api_ids.as_ref().map(to_json))
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if inserted == 0 {
                    tx.rollback().await?;
                    return Err(StoreError::Conflict("a transit key with this name exists"));
                }
                insert_transit_version(&mut tx, &key.name, first).await?;
                insert_events(&mut tx, std::slice::from_ref(event)).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn get_transit_key(
                &self,
                name: &str,
            ) -> Result<Option<(TransitKey, Vec<TransitKeyVersion>)>> {
                let row: Option<TransitKeyRow> = sqlx::query_as(&format!(
                    "SELECT {TRANSIT_KEY_COLUMNS} FROM transit_keys WHERE name = $1"
                ))
                .bind(name)
                .fetch_optional(self.reader())
                .await?;
                let Some(row) = row else { return Ok(None) };
                let key = TransitKey::try_from(row)?;
                const T: &str = "transit_key_versions";
                let number = |v: i64| u32::try_from(v).map_err(|_| corrupt(T, "version"));
                let rows: Vec<(i64, Vec<u8>, Option<Vec<u8>>, i64)> = sqlx::query_as(
                    "SELECT version, material, public_key, created_at FROM transit_key_versions \
                     WHERE name = $1 ORDER BY version",
                )
                .bind(name)
                .fetch_all(self.reader())
                .await?;
                let versions = rows
                    .into_iter()
                    .map(|(version, material, public_key, created_at)| {
                        Ok(TransitKeyVersion {
                            version: number(version)?,
                            material,
                            public_key,
                            created_at: $crate::rows::from_millis(T, created_at)?,
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                Ok(Some((key, versions)))
            }

            async fn list_transit_keys(&self) -> Result<Vec<TransitKey>> {
                let rows: Vec<TransitKeyRow> = sqlx::query_as(&format!(
                    "SELECT {TRANSIT_KEY_COLUMNS} FROM transit_keys ORDER BY name"
                ))
                .fetch_all(self.reader())
                .await?;
                rows.into_iter().map(TransitKey::try_from).collect()
            }

            async fn add_transit_key_version(
                &self,
                name: &str,
                version: &TransitKeyVersion,
                event: &AuditEvent,
            ) -> Result<()> {
                let mut tx = self.writer().begin().await?;
                let claimed = sqlx::query(
                    "UPDATE transit_keys SET latest_version = $2, updated_at = $3 \
                     WHERE name = $1 AND latest_version = $2 - 1",
                )
                .bind(name)
                .bind(i64::from(version.version))
                .bind(millis(version.created_at))
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if claimed == 0 {
                    tx.rollback().await?;
                    return Err(StoreError::Conflict("the key was rotated by another request"));
                }
                insert_transit_version(&mut tx, name, version).await?;
                insert_events(&mut tx, std::slice::from_ref(event)).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn configure_transit_key(
                &self,
                name: &str,
                min_decryption_version: u32,
                min_encryption_version: u32,
                deletion_allowed: bool,
                event: &AuditEvent,
            ) -> Result<()> {
                let mut tx = self.writer().begin().await?;
                let updated = sqlx::query(
                    "UPDATE transit_keys SET min_decryption_version = $2, \
                     min_encryption_version = $3, deletion_allowed = $4, updated_at = $5 \
                     WHERE name = $1",
                )
                .bind(name)
                .bind(i64::from(min_decryption_version))
                .bind(i64::from(min_encryption_version))
                .bind(i64::from(deletion_allowed))
                .bind(millis(event.at))
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if updated == 0 {
                    tx.rollback().await?;
                    return Err(StoreError::NotFound);
                }
                insert_events(&mut tx, std::slice::from_ref(event)).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn delete_transit_key(&self, name: &str, event: &AuditEvent) -> Result<()> {
                let mut tx = self.writer().begin().await?;
                let allowed: Option<(i64,)> =
                    sqlx::query_as("SELECT deletion_allowed FROM transit_keys WHERE name = $1")
                        .bind(name)
                        .fetch_optional(&mut *tx)
                        .await?;
                match allowed {
                    None => {
                        tx.rollback().await?;
                        return Err(StoreError::NotFound);
                    }
                    Some((0,)) => {
                        tx.rollback().await?;
                        return Err(StoreError::Conflict(
                            "deletion is not allowed for this key (set deletion_allowed first)",
                        ));
                    }
                    Some(_) => {}
                }
                sqlx::query("DELETE FROM transit_key_versions WHERE name = $1")
                    .bind(name)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("DELETE FROM transit_keys WHERE name = $1")
                    .bind(name)
                    .execute(&mut *tx)
                    .await?;
                insert_events(&mut tx, std::slice::from_ref(event)).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn secret_envelopes(
                &self,
                after: Option<&EnvelopeCursor>,
                limit: u32,
            ) -> Result<Vec<StoredEnvelope>> {
                let (mount, path, version) = match after {
                    Some(EnvelopeCursor::Secret { mount, path, version }) => {
                        (mount.clone(), path.clone(), *version as i64)
                    }
                    _ => (String::new(), String::new(), 0),
                };
                let rows: Vec<(String, String, i64, Vec<u8>)> = sqlx::query_as(
                    "SELECT mount, path, version, value FROM secret_versions \
                     WHERE value IS NOT NULL AND (mount > $1 OR (mount = $1 AND (path > $2 \
                     OR (path = $2 AND version > $3)))) ORDER BY mount, path, version LIMIT $4",
                )
                .bind(mount)
                .bind(path)
                .bind(version)
                .bind(i64::from(limit))
                .fetch_all(self.reader())
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|(mount, path, version, envelope)| StoredEnvelope {
                        at: EnvelopeCursor::Secret {
                            mount,
                            path,
                            version: version.max(0) as u64,
                        },
                        envelope,
                    })
                    .collect())
            }

            async fn transit_envelopes(
                &self,
                after: Option<&EnvelopeCursor>,
                limit: u32,
            ) -> Result<Vec<StoredEnvelope>> {
                let (name, version) = match after {
                    Some(EnvelopeCursor::Transit { name, version }) => {
                        (name.clone(), i64::from(*version))
                    }
                    _ => (String::new(), 0),
                };
                let rows: Vec<(String, i64, Vec<u8>)> = sqlx::query_as(
                    "SELECT name, version, material FROM transit_key_versions \
                     WHERE name > $1 OR (name = $1 AND version > $2) \
                     ORDER BY name, version LIMIT $3",
                )
                .bind(name)
                .bind(version)
                .bind(i64::from(limit))
                .fetch_all(self.reader())
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|(name, version, envelope)| StoredEnvelope {
                        at: EnvelopeCursor::Transit {
                            name,
                            version: version.clamp(0, i64::from(u32::MAX)) as u32,
                        },
                        envelope,
                    })
                    .collect())
            }

            async fn replace_envelope(
                &self,
                at: &EnvelopeCursor,
                old: &[u8],
                new: &[u8],
            ) -> Result<bool> {
                let replaced = match at {
                    EnvelopeCursor::Secret { mount, path, version } => sqlx::query(
                        "UPDATE secret_versions SET value = $4 WHERE mount = $1 AND path = $2 \
                         AND version = $3 AND value = $5",
                    )
                    .bind(mount)
                    .bind(path)
                    .bind(*version as i64)
                    .bind(new)
                    .bind(old)
                    .execute(self.writer())
                    .await?
                    .rows_affected(),
                    EnvelopeCursor::Transit { name, version } => sqlx::query(
                        "UPDATE transit_key_versions SET material = $3 WHERE name = $1 \
                         AND version = $2 AND material = $4",
                    )
                    .bind(name)
                    .bind(i64::from(*version))
                    .bind(new)
                    .bind(old)
                    .execute(self.writer())
                    .await?
                    .rows_affected(),
                };
                Ok(replaced == 1)
            }

            async fn reserve_uses(&self, target: &UseTarget, n: u64) -> Result<u64> {
                let n = i64::try_from(n).map_err(|_| StoreError::Conflict("too many uses"))?;
                let total: Option<(i64,)> = match target {
                    UseTarget::Keyring { version } => sqlx::query_as(
                        "UPDATE keyring SET uses = uses + $2 WHERE version = $1 RETURNING uses",
                    )
                    .bind(i64::from(*version))
                    .bind(n)
                    .fetch_optional(self.writer())
                    .await?,
                    UseTarget::Transit { name, version } => sqlx::query_as(
                        "UPDATE transit_key_versions SET uses = uses + $3 \
                         WHERE name = $1 AND version = $2 RETURNING uses",
                    )
                    .bind(name)
                    .bind(i64::from(*version))
                    .bind(n)
                    .fetch_optional(self.writer())
                    .await?,
                };
                let (total,) = total.ok_or(StoreError::NotFound)?;
                Ok(total.max(0) as u64)
            }

            async fn latest_change(&self) -> Result<i64> {
                let (latest,): (Option<i64>,) =
                    sqlx::query_as("SELECT MAX(seq) FROM cache_changes")
                        .fetch_one(self.reader())
                        .await?;
                Ok(latest.unwrap_or(0))
            }

            async fn changes_after(&self, after: i64, limit: u32) -> Result<Vec<ChangeEntry>> {
                let rows: Vec<(i64, String, Option<Vec<u8>>, Option<String>)> = sqlx::query_as(
                    "SELECT seq, kind, digest, owner FROM cache_changes WHERE seq > $1 \
                     ORDER BY seq LIMIT $2",
                )
                .bind(after)
                .bind(i64::from(limit))
                .fetch_all(self.reader())
                .await?;
                const T: &str = "cache_changes";
                rows.into_iter()
                    .map(|(seq, kind, digest, owner)| {
                        let digest = || {
                            digest
                                .as_deref()
                                .ok_or_else(|| corrupt(T, "missing digest"))
                                .and_then(|d| $crate::rows::digest(T, d))
                        };
                        let change = match kind.as_str() {
                            "key" => Change::Key(digest()?),
                            "token" => Change::Token(digest()?),
                            "owner" => Change::Owner(
                                owner.clone().ok_or_else(|| corrupt(T, "missing owner"))?,
                            ),
                            other => return Err(corrupt(T, format!("unknown kind {other:?}"))),
                        };
                        Ok(ChangeEntry { seq, change })
                    })
                    .collect()
            }

            async fn wait_for_change(&self, timeout: std::time::Duration) {
                self.wait_for_notification(timeout).await
            }

            async fn prune_changes(&self, before: OffsetDateTime) -> Result<u64> {
                let pruned = sqlx::query("DELETE FROM cache_changes WHERE changed_at < $1")
                    .bind(millis(before))
                    .execute(self.writer())
                    .await?
                    .rows_affected();
                Ok(pruned)
            }
        }

        async fn insert_token(
            tx: &mut sqlx::Transaction<'_, $db>,
            token: &AdminToken,
        ) -> Result<()> {
            let sql = format!(
                "INSERT INTO admin_tokens ({TOKEN_COLUMNS}) VALUES \
                 ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
            );
            sqlx::query(&sql)
                .bind(token.id.as_str())
                .bind(&token.name)
                .bind(token.digest.as_bytes().as_slice())
                .bind(&token.start)
                .bind(to_json(&token.scopes))
                .bind(token.api_ids.as_ref().map(to_json))
                .bind(token.environments.as_ref().map(to_json))
                .bind(token.created_by.as_ref().map(|t| t.as_str()))
                .bind(millis(token.created_at))
                .bind(token.expires_at.map(millis))
                .bind(token.revoked_at.map(millis))
                .execute(&mut **tx)
                .await
                .map_err(unique_violation("a token with this digest already exists"))?;
            Ok(())
        }
    };
}

pub(crate) use impl_store;
