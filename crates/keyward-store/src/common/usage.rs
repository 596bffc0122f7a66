//! Usage counts per key, minute and result code, and last-used times.

/// Implements `UsageStore`; expanded by `impl_store!`.
macro_rules! impl_usage_store {
    ($store:ty, $db:ty) => {
        /// Usage rows (four values each) or last-used times (two) one
        /// statement carries.
        const USAGE_ROWS_PER_STATEMENT: usize = 1000;

        #[async_trait]
        impl UsageStore for $store {
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
                    let count = counts
                        .entry((u.minute, u.key_id.as_str(), u.code.as_str()))
                        .or_default();
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
        }
    };
}

pub(crate) use impl_usage_store;
