//! Transit keys: their rows.

use keyward_core::ApiId;

use crate::rows::{corrupt, environment, from_millis, json};
use crate::{StoreError, TransitKey};

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

/// Implements `TransitStore`; expanded by `impl_store!`.
macro_rules! impl_transit_store {
    ($store:ty, $db:ty) => {
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

        #[async_trait]
        impl TransitStore for $store {
            async fn create_transit_key(
                &self,
                key: &TransitKey,
                first: &TransitKeyVersion,
                event: &AuditEvent,
            ) -> Result<()> {
                self.audited(move |tx| {
                    Box::pin(async move {
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
                        .execute(&mut **tx)
                        .await?
                        .rows_affected();
                        if inserted == 0 {
                            return Ok(Outcome::Rollback(Err(StoreError::Conflict(
                                "a transit key with this name exists",
                            ))));
                        }
                        insert_transit_version(tx, &key.name, first).await?;
                        Ok(Outcome::commit((), std::slice::from_ref(event)))
                    })
                })
                .await
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
                self.audited(move |tx| {
                    Box::pin(async move {
                        let claimed = sqlx::query(
                            "UPDATE transit_keys SET latest_version = $2, updated_at = $3 \
                             WHERE name = $1 AND latest_version = $2 - 1",
                        )
                        .bind(name)
                        .bind(i64::from(version.version))
                        .bind(millis(version.created_at))
                        .execute(&mut **tx)
                        .await?
                        .rows_affected();
                        if claimed == 0 {
                            return Ok(Outcome::Rollback(Err(StoreError::Conflict(
                                "the key was rotated by another request",
                            ))));
                        }
                        insert_transit_version(tx, name, version).await?;
                        Ok(Outcome::commit((), std::slice::from_ref(event)))
                    })
                })
                .await
            }

            async fn configure_transit_key(
                &self,
                name: &str,
                min_decryption_version: u32,
                min_encryption_version: u32,
                deletion_allowed: bool,
                event: &AuditEvent,
            ) -> Result<()> {
                self.audited(move |tx| {
                    Box::pin(async move {
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

            async fn delete_transit_key(&self, name: &str, event: &AuditEvent) -> Result<()> {
                self.audited(move |tx| {
                    Box::pin(async move {
                        let allowed: Option<(i64,)> = sqlx::query_as(
                            "SELECT deletion_allowed FROM transit_keys WHERE name = $1",
                        )
                        .bind(name)
                        .fetch_optional(&mut **tx)
                        .await?;
                        match allowed {
                            None => {
                                return Ok(Outcome::Rollback(Err(StoreError::NotFound)));
                            }
                            Some((0,)) => {
                                return Ok(Outcome::Rollback(Err(StoreError::Conflict(
                                    "deletion is not allowed for this key (set deletion_allowed first)",
                                ))));
                            }
                            Some(_) => {}
                        }
                        sqlx::query("DELETE FROM transit_key_versions WHERE name = $1")
                            .bind(name)
                            .execute(&mut **tx)
                            .await?;
                        sqlx::query("DELETE FROM transit_keys WHERE name = $1")
                            .bind(name)
                            .execute(&mut **tx)
                            .await?;
                        Ok(Outcome::commit((), std::slice::from_ref(event)))
                    })
                })
                .await
            }
        }
    };
}

pub(crate) use impl_transit_store;
