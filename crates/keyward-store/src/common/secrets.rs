//! Secrets: their rows.

use crate::rows::{corrupt, environment, from_millis, json};
use crate::StoreError;

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

/// Implements `SecretStore`; expanded by `impl_store!`.
macro_rules! impl_secret_store {
    ($store:ty, $db:ty) => {
        #[async_trait]
        impl SecretStore for $store {
            async fn create_mount(&self, mount: &SecretMount, event: &AuditEvent) -> Result<()> {
                self.audited(move |tx| {
                    Box::pin(async move {
                        let inserted = sqlx::query(
                            "INSERT INTO secret_mounts (path, environment, max_versions, cas_required, \
                             created_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                        )
                        .bind(&mount.path)
                        .bind(mount.environment.as_str())
                        .bind(i64::from(mount.max_versions))
                        .bind(i64::from(mount.cas_required))
                        .bind(millis(mount.created_at))
                        .execute(&mut **tx)
                        .await?
                        .rows_affected();
                        if inserted == 0 {
                            return Ok(Outcome::Rollback(Err(StoreError::Conflict(
                                "a mount with this path exists",
                            ))));
                        }
                        Ok(Outcome::commit((), std::slice::from_ref(event)))
                    })
                })
                .await
            }

            async fn get_mount(&self, path: &str) -> Result<Option<SecretMount>> {
                let row: Option<(String, String, i64, i64, i64)> = sqlx::query_as(
                    "SELECT path, environment, max_versions, cas_required, created_at \
                     FROM secret_mounts WHERE path = $1",
                )
                .bind(path)
                .fetch_optional(self.reader())
                .await?;
                row.map(mount_from_row).transpose()
            }

            async fn list_mounts(&self) -> Result<Vec<SecretMount>> {
                let rows: Vec<(String, String, i64, i64, i64)> = sqlx::query_as(
                    "SELECT path, environment, max_versions, cas_required, created_at \
                     FROM secret_mounts ORDER BY path",
                )
                .fetch_all(self.reader())
                .await?;
                rows.into_iter().map(mount_from_row).collect()
            }

            async fn configure_mount(
                &self,
                path: &str,
                max_versions: u32,
                cas_required: bool,
                event: &AuditEvent,
            ) -> Result<()> {
                self.audited(move |tx| {
                    Box::pin(async move {
                        let updated = sqlx::query(
                            "UPDATE secret_mounts SET max_versions = $2, cas_required = $3 WHERE path = $1",
                        )
                        .bind(path)
                        .bind(i64::from(max_versions))
                        .bind(i64::from(cas_required))
                        .execute(&mut **tx)
                        .await?
                        .rows_affected();
                        if updated == 0 {
                            return Ok(Outcome::Rollback(Err(StoreError::NotFound)));
                        }
                        Ok(Outcome::commit((), std::slice::from_ref(event)))
                    })
                })
                .await
            }

            async fn secret_meta(&self, mount: &str, path: &str) -> Result<Option<SecretMeta>> {
                let row: Option<MetaRow> = sqlx::query_as(
                    "SELECT mount, path, current_version, oldest_version, max_versions, \
                     cas_required, custom_metadata, custom_metadata_sealed, created_at, \
                     updated_at FROM secret_meta WHERE mount = $1 AND path = $2",
                )
                .bind(mount)
                .bind(path)
                .fetch_optional(self.reader())
                .await?;
                row.map(meta_from_row).transpose()
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
                self.audited(move |tx| {
                    Box::pin(async move {
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
                            .execute(&mut **tx)
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
                            .execute(&mut **tx)
                            .await?
                            .rows_affected()
                        };
                        if claimed == 0 {
                            return Ok(Outcome::Rollback(Err(StoreError::Conflict(
                                "the secret was changed by another write",
                            ))));
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
                        .execute(&mut **tx)
                        .await?;
                        // Keep the newest `keep` versions.
                        let oldest = (version - i64::from(write.keep.max(1)) + 1).max(1);
                        sqlx::query(
                            "DELETE FROM secret_versions WHERE mount = $1 AND path = $2 AND version < $3",
                        )
                        .bind(&write.mount)
                        .bind(&write.path)
                        .bind(oldest)
                        .execute(&mut **tx)
                        .await?;
                        sqlx::query(
                            "UPDATE secret_meta SET oldest_version = \
                             (SELECT MIN(version) FROM secret_versions WHERE mount = $1 AND path = $2) \
                             WHERE mount = $1 AND path = $2",
                        )
                        .bind(&write.mount)
                        .bind(&write.path)
                        .execute(&mut **tx)
                        .await?;
                        Ok(Outcome::commit((), std::slice::from_ref(event)))
                    })
                })
                .await
            }

            async fn act_on_versions(
                &self,
                mount: &str,
                path: &str,
                versions: &[u64],
                action: VersionAction,
                event: &AuditEvent,
            ) -> Result<()> {
                self.audited(move |tx| {
                    Box::pin(async move {
                        for version in versions {
                            let Ok(version) = i64::try_from(*version) else {
                                continue;
                            };
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
                            q.execute(&mut **tx).await?;
                        }
                        Ok(Outcome::commit((), std::slice::from_ref(event)))
                    })
                })
                .await
            }

            async fn patch_secret_meta(
                &self,
                mount: &str,
                path: &str,
                patch: &SecretMetaPatch,
                at: OffsetDateTime,
                event: &AuditEvent,
            ) -> Result<()> {
                self.audited(move |tx| {
                    Box::pin(async move {
                        sqlx::query(
                            "INSERT INTO secret_meta (mount, path, current_version, oldest_version, \
                             created_at, updated_at) VALUES ($1, $2, 0, 0, $3, $3) ON CONFLICT DO NOTHING",
                        )
                        .bind(mount)
                        .bind(path)
                        .bind(millis(at))
                        .execute(&mut **tx)
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
                        .execute(&mut **tx)
                        .await?;
                        Ok(Outcome::commit((), std::slice::from_ref(event)))
                    })
                })
                .await
            }

            async fn delete_secret(
                &self,
                mount: &str,
                path: &str,
                event: &AuditEvent,
            ) -> Result<bool> {
                self.audited(move |tx| {
                    Box::pin(async move {
                        sqlx::query("DELETE FROM secret_versions WHERE mount = $1 AND path = $2")
                            .bind(mount)
                            .bind(path)
                            .execute(&mut **tx)
                            .await?;
                        let removed =
                            sqlx::query("DELETE FROM secret_meta WHERE mount = $1 AND path = $2")
                                .bind(mount)
                                .bind(path)
                                .execute(&mut **tx)
                                .await?
                                .rows_affected();
                        if removed == 0 {
                            return Ok(Outcome::Rollback(Ok(false)));
                        }
                        Ok(Outcome::commit(true, std::slice::from_ref(event)))
                    })
                })
                .await
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
        }
    };
}

pub(crate) use impl_secret_store;
