//! The audit log's rows, and the one helper through which every audited
//! write runs (`audited`), so that every audit event is written in one
//! place, where it is linked into the log's hash chain
//! (`keyward_core::chain`).

use keyward_core::{AuditEvent, EventId, TokenId};

use crate::rows::{corrupt, from_millis, json};
use crate::StoreError;

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

/// Opens a query of the API and environment of each target bound next, in
/// a `VALUES` list the caller closes with `) AS t`: the record a target
/// names is a key (API and environment), an API (API only) or a secret's
/// mount, named by its path or by `mount/secret` (environment only). `{c}`
/// is the dialect's id collation.
pub(crate) fn event_reach_sql(c: &str) -> String {
    format!(
        "SELECT t.column1 AS target, \
         COALESCE(\
           (SELECT k.api_id FROM keys k WHERE k.id = t.column1{c}), \
           (SELECT a.id FROM apis a WHERE a.id = t.column1{c})) AS api_id, \
         COALESCE(\
           (SELECT k.environment FROM keys k WHERE k.id = t.column1{c}), \
           (SELECT m.environment FROM secret_mounts m \
            WHERE t.column1 = m.path \
               OR substr(t.column1, 1, length(m.path) + 1) = m.path || '/' \
            ORDER BY length(m.path) DESC LIMIT 1)) AS environment \
         FROM ("
    )
}

/// The columns of an audit row that the chain covers, with its chain
/// columns.
pub(crate) const CHAIN_COLUMNS: &str =
    "id, at, actor, action, target, details, api_id, environment, seq, prev_hash, hash";

/// Stands for a stored field that cannot be read as its type: no stored
/// value is this, so the row can never verify.
pub(crate) const UNREADABLE: &str = "\u{0}unreadable";

/// A checkpoint row as stored; a hash of another length reads as one no
/// event has, so the checkpoint fails its check.
pub(crate) fn checkpoint(
    (seq, hash, at, key_id, signature): (i64, Vec<u8>, i64, String, Vec<u8>),
) -> keyward_core::chain::Checkpoint {
    keyward_core::chain::Checkpoint {
        sequence: u64::try_from(seq).unwrap_or(0),
        hash: stored_hash(Some(hash)),
        at_ms: at,
        key_id,
        signature,
    }
}

/// One row of a `Dialect::chain_page` array.
type PageRow = (
    Option<i64>,
    Option<String>,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// The rows of a `Dialect::chain_page` answer, as `chain_row` reads them
/// one by one; `None` when any value is not of its column's type (a row
/// changed around Keyward), for the caller to read that page row by row.
pub(crate) fn parse_chain_page(text: &str) -> Option<Vec<keyward_core::chain::ChainRow>> {
    use keyward_core::chain::{ChainRow, ChainedEvent};
    let rows: Vec<PageRow> = serde_json::from_str(text).ok()?;
    let required = |value: Option<String>| value.unwrap_or_else(|| UNREADABLE.to_owned());
    let hash = |hex: Option<String>| {
        hex.map(|hex| keyward_core::chain::from_hex(&hex).unwrap_or_default())
    };
    let mut out: Vec<ChainRow> = rows
        .into_iter()
        .map(
            |(seq, id, at, actor, action, target, details, api_id, environment, prev, own)| {
                ChainRow {
                    sequence: seq.unwrap_or(-1),
                    prev_hash: hash(prev),
                    hash: hash(own),
                    event: ChainedEvent {
                        id: required(id),
                        at_ms: at.unwrap_or(i64::MIN),
                        actor,
                        action: required(action),
                        target: required(target),
                        details: required(details),
                        api_id,
                        environment,
                    },
                }
            },
        )
        .collect();
    out.sort_by_key(|row| row.sequence);
    Some(out)
}

/// A hash read back as stored; one of another length reads as a hash no
/// event has.
pub(crate) fn stored_hash(bytes: Option<Vec<u8>>) -> [u8; 32] {
    bytes
        .and_then(|bytes| bytes.try_into().ok())
        .unwrap_or([0xff; 32])
}

/// Implements `AuditStore` and defines `audited`, the helper every audited
/// write of every area runs through; expanded by `impl_store!`.
macro_rules! impl_audit_store {
    ($store:ty, $db:ty) => {
        impl $store {
            /// Runs an audited write: begins a transaction on the writer,
            /// runs `write`'s statements in it, then inserts the audit
            /// events the write returns (with their reach), then its
            /// change-feed entries, and commits; then it announces the
            /// events on the store's commit feed. A write that returns
            /// `Outcome::Rollback` is rolled back and records nothing; one
            /// that fails is rolled back as its transaction is dropped.
            ///
            /// The transaction's lifetime is that of what the write borrows
            /// (`'a`), which outlives each borrow of the transaction (`'t`):
            /// that lets the write's future hold both.
            async fn audited<'a, T, F>(&self, write: F) -> Result<T>
            where
                T: Send,
                F: for<'t> FnOnce(
                        &'t mut sqlx::Transaction<'a, $db>,
                    ) -> WriteFuture<'t, Outcome<'a, T>>
                    + Send,
            {
                let mut tx: sqlx::Transaction<'a, $db> = self.writer().begin().await?;
                match write(&mut tx).await? {
                    Outcome::Rollback(answer) => {
                        tx.rollback().await?;
                        answer
                    }
                    Outcome::Commit {
                        value,
                        events,
                        changes,
                    } => {
                        insert_events(&mut tx, &events).await?;
                        if let Some((changes, at)) = changes {
                            insert_changes(&mut tx, &changes, at).await?;
                        }
                        tx.commit().await?;
                        self.commit_feed.publish(&events);
                        Ok(value)
                    }
                }
            }

            /// Starts the hash chain once, on the first open after the
            /// migration that added it: the events written before it are
            /// chained as they are, in id order. Later opens find the head's
            /// hash set and change nothing; an event inserted around Keyward
            /// later stays outside the chain, where its check finds it.
            pub(crate) async fn start_chain(&self) -> Result<()> {
                use keyward_core::chain::{link, GENESIS};
                const PAGE: i64 = 1000;
                let mut tx = self.writer().begin().await?;
                let (mut seq, head): (i64, Option<Vec<u8>>) = sqlx::query_as(&format!(
                    "SELECT seq, hash FROM audit_chain WHERE singleton = 1{}",
                    <$store>::DIALECT.for_update
                ))
                .fetch_one(&mut *tx)
                .await?;
                if head.is_some() {
                    tx.rollback().await?;
                    return Ok(());
                }
                let mut prev = GENESIS;
                loop {
                    let rows = sqlx::query(&format!(
                        "SELECT {CHAIN_COLUMNS} FROM audit_events WHERE seq IS NULL \
                         ORDER BY id LIMIT $1"
                    ))
                    .bind(PAGE)
                    .fetch_all(&mut *tx)
                    .await?;
                    if rows.is_empty() {
                        break;
                    }
                    for row in &rows {
                        let event = chain_row(row).event;
                        let hash = link(&prev, &event);
                        seq += 1;
                        sqlx::query(
                            "UPDATE audit_events SET seq = $1, prev_hash = $2, hash = $3 \
                             WHERE id = $4",
                        )
                        .bind(seq)
                        .bind(prev.to_vec())
                        .bind(hash.to_vec())
                        .bind(event.id)
                        .execute(&mut *tx)
                        .await?;
                        prev = hash;
                    }
                }
                sqlx::query("UPDATE audit_chain SET seq = $1, hash = $2 WHERE singleton = 1")
                    .bind(seq)
                    .bind(prev.to_vec())
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(())
            }
        }

        /// Inserts audit events, each with the reach of the record it is
        /// about, linked into the hash chain after its head, and moves the
        /// head. Only `audited` calls it (a test holds this), in the
        /// transaction of the write the events record. On PostgreSQL the
        /// head row is locked until that transaction ends, so appends from
        /// every node form one chain.
        async fn insert_events(
            tx: &mut sqlx::Transaction<'_, $db>,
            events: &[AuditEvent],
        ) -> Result<()> {
            use keyward_core::chain::{link, ChainedEvent};
            if events.is_empty() {
                return Ok(());
            }
            let (mut seq, head): (i64, Option<Vec<u8>>) = sqlx::query_as(&format!(
                "SELECT seq, hash FROM audit_chain WHERE singleton = 1{}",
                <$store>::DIALECT.for_update
            ))
            .fetch_one(&mut **tx)
            .await?;
            let Some(mut prev) = head.and_then(|hash| <[u8; 32]>::try_from(hash).ok()) else {
                return Err(corrupt("audit_chain", "the chain's head has no hash"));
            };
            for chunk in events.chunks(EVENTS_PER_INSERT) {
                let mut q: QueryBuilder<$db> =
                    QueryBuilder::new(event_reach_sql(<$store>::DIALECT.id_collation));
                q.push_values(chunk, |mut row, e| {
                    row.push_bind(e.target.clone());
                });
                q.push(") AS t");
                let reach: std::collections::HashMap<String, (Option<String>, Option<String>)> = q
                    .build_query_as::<(String, Option<String>, Option<String>)>()
                    .fetch_all(&mut **tx)
                    .await?
                    .into_iter()
                    .map(|(target, api, environment)| (target, (api, environment)))
                    .collect();
                let mut chained = Vec::with_capacity(chunk.len());
                for e in chunk {
                    let (api_id, environment) = reach.get(&e.target).cloned().unwrap_or_default();
                    let event = ChainedEvent {
                        id: e.id.as_str().to_owned(),
                        at_ms: millis(e.at),
                        actor: e.actor.as_ref().map(|a| a.as_str().to_owned()),
                        action: e.action.clone(),
                        target: e.target.clone(),
                        details: to_json(&e.details),
                        api_id,
                        environment,
                    };
                    let hash = link(&prev, &event);
                    seq += 1;
                    chained.push((seq, prev, hash, event));
                    prev = hash;
                }
                let mut q: QueryBuilder<$db> =
                    QueryBuilder::new(format!("INSERT INTO audit_events ({CHAIN_COLUMNS}) "));
                q.push_values(chained, |mut row, (seq, prev, hash, e)| {
                    row.push_bind(e.id)
                        .push_bind(e.at_ms)
                        .push_bind(e.actor)
                        .push_bind(e.action)
                        .push_bind(e.target)
                        .push_bind(e.details)
                        .push_bind(e.api_id)
                        .push_bind(e.environment)
                        .push_bind(seq)
                        .push_bind(prev.to_vec())
                        .push_bind(hash.to_vec());
                });
                q.build().execute(&mut **tx).await?;
            }
            sqlx::query("UPDATE audit_chain SET seq = $1, hash = $2 WHERE singleton = 1")
                .bind(seq)
                .bind(prev.to_vec())
                .execute(&mut **tx)
                .await?;
            Ok(())
        }

        /// An audit row as the chain sees it, every field read as stored;
        /// one that cannot be read as its type reads as a value no event
        /// has, so that the row fails its check instead of the read.
        fn chain_row(row: &<$db as sqlx::Database>::Row) -> keyward_core::chain::ChainRow {
            use keyward_core::chain::{ChainRow, ChainedEvent};
            use sqlx::Row;
            let optional = |name: &str| -> Option<String> {
                row.try_get::<Option<String>, _>(name)
                    .unwrap_or_else(|_| Some(UNREADABLE.to_owned()))
            };
            let required = |name: &str| optional(name).unwrap_or_else(|| UNREADABLE.to_owned());
            let bytes = |name: &str| -> Option<Vec<u8>> {
                row.try_get::<Option<Vec<u8>>, _>(name).unwrap_or_default()
            };
            ChainRow {
                sequence: row
                    .try_get::<Option<i64>, _>("seq")
                    .ok()
                    .flatten()
                    .unwrap_or(-1),
                prev_hash: bytes("prev_hash"),
                hash: bytes("hash"),
                event: ChainedEvent {
                    id: required("id"),
                    at_ms: row
                        .try_get::<Option<i64>, _>("at")
                        .ok()
                        .flatten()
                        .unwrap_or(i64::MIN),
                    actor: optional("actor"),
                    action: required("action"),
                    target: required("target"),
                    details: required("details"),
                    api_id: optional("api_id"),
                    environment: optional("environment"),
                },
            }
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

        #[async_trait]
        impl AuditStore for $store {
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
                q.push(" ORDER BY id LIMIT ")
                    .push_bind(i64::from(page.limit));
                let rows = q.build().fetch_all(self.reader()).await?;
                Ok(rows.iter().map(audit_entry).collect())
            }

            async fn append_audit(&self, events: &[AuditEvent]) -> Result<()> {
                self.audited(move |_tx| Box::pin(async move { Ok(Outcome::commit((), events)) }))
                    .await
            }

            async fn audit_key(&self) -> Result<Option<crate::AuditKey>> {
                let row: Option<(String, Vec<u8>, Vec<u8>, i64)> = sqlx::query_as(
                    "SELECT id, public_key, private_key, created_at FROM audit_keys \
                     ORDER BY created_at, id LIMIT 1",
                )
                .fetch_optional(self.reader())
                .await?;
                row.map(|(id, public_key, private_key, created_at)| {
                    Ok(crate::AuditKey {
                        id,
                        public_key,
                        private_key,
                        created_at: crate::rows::from_millis("audit_keys", created_at)?,
                    })
                })
                .transpose()
            }

            async fn put_audit_key(&self, key: &crate::AuditKey) -> Result<crate::AuditKey> {
                sqlx::query(
                    "INSERT INTO audit_keys (id, public_key, private_key, created_at) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING",
                )
                .bind(&key.id)
                .bind(&key.public_key)
                .bind(&key.private_key)
                .bind(millis(key.created_at))
                .execute(self.writer())
                .await?;
                let (id, public_key, private_key, created_at): (String, Vec<u8>, Vec<u8>, i64) =
                    sqlx::query_as(
                        "SELECT id, public_key, private_key, created_at FROM audit_keys \
                         WHERE id = $1",
                    )
                    .bind(&key.id)
                    .fetch_one(self.writer())
                    .await?;
                Ok(crate::AuditKey {
                    id,
                    public_key,
                    private_key,
                    created_at: crate::rows::from_millis("audit_keys", created_at)?,
                })
            }

            async fn put_checkpoint(&self, c: &keyward_core::chain::Checkpoint) -> Result<()> {
                sqlx::query(
                    "INSERT INTO audit_checkpoints (seq, hash, at, key_id, signature) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (seq) DO NOTHING",
                )
                .bind(i64::try_from(c.sequence).unwrap_or(i64::MAX))
                .bind(c.hash.to_vec())
                .bind(c.at_ms)
                .bind(&c.key_id)
                .bind(&c.signature)
                .execute(self.writer())
                .await?;
                Ok(())
            }

            async fn checkpoints(
                &self,
                after: u64,
                limit: u32,
            ) -> Result<Vec<keyward_core::chain::Checkpoint>> {
                let rows: Vec<(i64, Vec<u8>, i64, String, Vec<u8>)> = sqlx::query_as(
                    "SELECT seq, hash, at, key_id, signature FROM audit_checkpoints \
                     WHERE seq > $1 ORDER BY seq LIMIT $2",
                )
                .bind(i64::try_from(after).unwrap_or(i64::MAX))
                .bind(i64::from(limit))
                .fetch_all(self.reader())
                .await?;
                Ok(rows.into_iter().map(checkpoint).collect())
            }

            async fn last_checkpoint(&self) -> Result<Option<keyward_core::chain::Checkpoint>> {
                let row: Option<(i64, Vec<u8>, i64, String, Vec<u8>)> = sqlx::query_as(
                    "SELECT seq, hash, at, key_id, signature FROM audit_checkpoints \
                     ORDER BY seq DESC LIMIT 1",
                )
                .fetch_optional(self.reader())
                .await?;
                Ok(row.map(checkpoint))
            }

            async fn chain_head(&self) -> Result<Option<keyward_core::chain::ChainHead>> {
                let head: Option<(i64, Option<Vec<u8>>)> =
                    sqlx::query_as("SELECT seq, hash FROM audit_chain WHERE singleton = 1")
                        .fetch_optional(self.reader())
                        .await?;
                Ok(head.map(|(seq, hash)| keyward_core::chain::ChainHead {
                    sequence: u64::try_from(seq).unwrap_or(u64::MAX),
                    hash: stored_hash(hash),
                }))
            }

            async fn chain_rows(
                &self,
                after: u64,
                limit: u32,
            ) -> Result<Vec<keyward_core::chain::ChainRow>> {
                let after = i64::try_from(after).unwrap_or(i64::MAX);
                let page: Option<Option<String>> = sqlx::query_scalar(<$store>::DIALECT.chain_page)
                    .bind(after)
                    .bind(i64::from(limit))
                    .fetch_optional(self.reader())
                    .await
                    .ok();
                if let Some(rows) = page.flatten().as_deref().and_then(parse_chain_page) {
                    return Ok(rows);
                }
                // A value of another type than its column's (or one JSON
                // cannot hold): read this page row by row, as stored.
                let rows = sqlx::query(&format!(
                    "SELECT {CHAIN_COLUMNS} FROM audit_events WHERE seq > $1 \
                     ORDER BY seq LIMIT $2"
                ))
                .bind(after)
                .bind(i64::from(limit))
                .fetch_all(self.reader())
                .await?;
                Ok(rows.iter().map(chain_row).collect())
            }

            async fn first_unchained(&self) -> Result<Option<u64>> {
                let first: Option<String> = sqlx::query_scalar(
                    "SELECT id FROM audit_events WHERE seq IS NULL ORDER BY id LIMIT 1",
                )
                .fetch_optional(self.reader())
                .await?;
                let Some(first) = first else {
                    return Ok(None);
                };
                let before: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM audit_events WHERE seq IS NOT NULL AND id < $1",
                )
                .bind(first)
                .fetch_one(self.reader())
                .await?;
                Ok(Some(u64::try_from(before).unwrap_or(0) + 1))
            }

            fn committed(&self) -> crate::Committed {
                self.commit_feed.subscribe()
            }
        }
    };
}

pub(crate) use impl_audit_store;
