//! The audit log's rows, and the one helper through which every audited
//! write runs (`audited`), so that every audit event is written in one
//! place: the future home of a hash chain over them.

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
        }

        /// Inserts audit events and derives their reach from the records
        /// they are about. Only `audited` calls it (a test holds this), in
        /// the transaction of the write the events record.
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

            fn committed(&self) -> crate::Committed {
                self.commit_feed.subscribe()
            }
        }
    };
}

pub(crate) use impl_audit_store;
