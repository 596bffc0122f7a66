//! The change feed: its entries are inserted by `audited`, after the audit
//! events of the change they report and in its transaction.

/// Implements `ChangeStore` and defines `insert_changes`; expanded by
/// `impl_store!`.
macro_rules! impl_change_store {
    ($store:ty, $db:ty) => {
        /// Writes change-feed entries, in the transaction of the change.
        async fn insert_changes(
            tx: &mut sqlx::Transaction<'_, $db>,
            changes: &[Change],
            now: OffsetDateTime,
        ) -> Result<()> {
            for chunk in changes.chunks(EVENTS_PER_INSERT) {
                let mut q: QueryBuilder<$db> = QueryBuilder::new(
                    "INSERT INTO cache_changes (kind, digest, owner, api_id, changed_at) ",
                );
                q.push_values(chunk, |mut row, c| {
                    let (kind, digest, owner, api) = match c {
                        Change::Key(d) => ("key", Some(d.as_bytes().to_vec()), None, None),
                        Change::Token(d) => ("token", Some(d.as_bytes().to_vec()), None, None),
                        Change::Owner(o) => ("owner", None, Some(o.clone()), None),
                        Change::Api(a) => ("api", None, None, Some(a.as_str().to_owned())),
                    };
                    row.push_bind(kind)
                        .push_bind(digest)
                        .push_bind(owner)
                        .push_bind(api)
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

        #[async_trait]
        impl ChangeStore for $store {
            async fn latest_change(&self) -> Result<i64> {
                let (latest,): (Option<i64>,) =
                    sqlx::query_as("SELECT MAX(seq) FROM cache_changes")
                        .fetch_one(self.reader())
                        .await?;
                Ok(latest.unwrap_or(0))
            }

            async fn changes_after(&self, after: i64, limit: u32) -> Result<Vec<ChangeEntry>> {
                let rows: Vec<(i64, String, Option<Vec<u8>>, Option<String>, Option<String>)> =
                    sqlx::query_as(
                    "SELECT seq, kind, digest, owner, api_id FROM cache_changes WHERE seq > $1 \
                     ORDER BY seq LIMIT $2",
                )
                .bind(after)
                .bind(i64::from(limit))
                .fetch_all(self.reader())
                .await?;
                const T: &str = "cache_changes";
                rows.into_iter()
                    .map(|(seq, kind, digest, owner, api)| {
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
                            "api" => Change::Api(
                                api.as_deref()
                                    .ok_or_else(|| corrupt(T, "missing api_id"))
                                    .and_then(|a| ApiId::parse(a).map_err(|e| corrupt(T, e)))?,
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
    };
}

pub(crate) use impl_change_store;
