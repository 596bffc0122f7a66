//! The seal and the keyring: their rows, and the envelopes a rewrap walks.

use crate::rows::{corrupt, from_millis};
use crate::StoreError;

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

/// Implements `SealStore`; expanded by `impl_store!`.
macro_rules! impl_seal_store {
    ($store:ty, $db:ty) => {
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

        #[async_trait]
        impl SealStore for $store {
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
                self.audited(move |tx| {
                    Box::pin(async move {
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
                        .execute(&mut **tx)
                        .await?
                        .rows_affected();
                        if inserted == 0 {
                            return Ok(Outcome::Rollback(Err(StoreError::Conflict(
                                "the seal is already initialised",
                            ))));
                        }
                        insert_keyring_entry(tx, first).await?;
                        Ok(Outcome::commit((), std::slice::from_ref(event)))
                    })
                })
                .await
            }

            async fn add_keyring_key(
                &self,
                entry: &KeyringEntry,
                event: &AuditEvent,
            ) -> Result<()> {
                self.audited(move |tx| {
                    Box::pin(async move {
                        insert_keyring_entry(tx, entry).await?;
                        Ok(Outcome::commit((), std::slice::from_ref(event)))
                    })
                })
                .await
            }

            async fn rekey_seal(
                &self,
                seal: &SealRecord,
                keyring: &[KeyringEntry],
                event: &AuditEvent,
            ) -> Result<()> {
                self.audited(move |tx| {
                    Box::pin(async move {
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
                        .execute(&mut **tx)
                        .await?
                        .rows_affected();
                        if updated == 0 {
                            return Ok(Outcome::Rollback(Err(StoreError::NotFound)));
                        }
                        for entry in keyring {
                            let changed = sqlx::query(
                                "UPDATE keyring SET wrapped_key = $2 WHERE version = $1",
                            )
                            .bind(i64::from(entry.version))
                            .bind(&entry.wrapped_key)
                            .execute(&mut **tx)
                            .await?
                            .rows_affected();
                            if changed == 0 {
                                return Ok(Outcome::Rollback(Err(StoreError::Conflict(
                                    "the keyring changed during the rekey",
                                ))));
                            }
                        }
                        Ok(Outcome::commit((), std::slice::from_ref(event)))
                    })
                })
                .await
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

            async fn metadata_envelopes(
                &self,
                after: Option<&EnvelopeCursor>,
                limit: u32,
            ) -> Result<Vec<StoredEnvelope>> {
                let (mount, path) = match after {
                    Some(EnvelopeCursor::Metadata { mount, path }) => {
                        (mount.clone(), path.clone())
                    }
                    _ => (String::new(), String::new()),
                };
                let rows: Vec<(String, String, Vec<u8>)> = sqlx::query_as(
                    "SELECT mount, path, custom_metadata_sealed FROM secret_meta \
                     WHERE custom_metadata_sealed IS NOT NULL \
                     AND (mount > $1 OR (mount = $1 AND path > $2)) \
                     ORDER BY mount, path LIMIT $3",
                )
                .bind(mount)
                .bind(path)
                .bind(i64::from(limit))
                .fetch_all(self.reader())
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|(mount, path, envelope)| StoredEnvelope {
                        at: EnvelopeCursor::Metadata { mount, path },
                        envelope,
                    })
                    .collect())
            }

            async fn row_envelopes(
                &self,
                column: $crate::EnvelopeColumn,
                after: Option<&EnvelopeCursor>,
                limit: u32,
            ) -> Result<Vec<StoredEnvelope>> {
                let after = match after {
                    Some(EnvelopeCursor::Row { column: c, id }) if *c == column => id.as_str(),
                    _ => "",
                };
                let (table, id, field) = column.sql();
                let sql = format!(
                    "SELECT {id}, {field} FROM {table} WHERE {field} IS NOT NULL \
                     AND {id} > $1 ORDER BY {id} LIMIT $2"
                );
                let rows: Vec<(String, Vec<u8>)> = sqlx::query_as(&sql)
                    .bind(after)
                    .bind(i64::from(limit))
                    .fetch_all(self.reader())
                    .await?;
                Ok(rows
                    .into_iter()
                    .map(|(id, envelope)| StoredEnvelope {
                        at: EnvelopeCursor::Row { column, id },
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
                    EnvelopeCursor::Metadata { mount, path } => sqlx::query(
                        "UPDATE secret_meta SET custom_metadata_sealed = $3 \
                         WHERE mount = $1 AND path = $2 AND custom_metadata_sealed = $4",
                    )
                    .bind(mount)
                    .bind(path)
                    .bind(new)
                    .bind(old)
                    .execute(self.writer())
                    .await?
                    .rows_affected(),
                    EnvelopeCursor::Row { column, id } => {
                        let (table, id_column, field) = column.sql();
                        let sql = format!(
                            "UPDATE {table} SET {field} = $2 WHERE {id_column} = $1 \
                             AND {field} = $3"
                        );
                        sqlx::query(&sql)
                            .bind(id)
                            .bind(new)
                            .bind(old)
                            .execute(self.writer())
                            .await?
                            .rows_affected()
                    }
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
        }
    };
}

pub(crate) use impl_seal_store;
