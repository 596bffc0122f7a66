//! APIs: their rows.

use keyward_core::{Api, ApiId, Prefix};

use crate::rows::{corrupt, from_millis, json};
use crate::StoreError;

#[derive(sqlx::FromRow)]
pub(crate) struct ApiRow {
    id: String,
    name: String,
    prefix: String,
    environments: String,
    workspace: String,
    created_at: i64,
    roles: String,
    critical_scopes: String,
    signing: String,
}

pub(crate) const API_COLUMNS: &str =
    "id, name, prefix, environments, workspace, created_at, roles, critical_scopes, signing";

impl TryFrom<ApiRow> for Api {
    type Error = StoreError;
    fn try_from(r: ApiRow) -> Result<Api, StoreError> {
        const T: &str = "apis";
        Ok(Api {
            id: ApiId::parse(&r.id).map_err(|e| corrupt(T, e))?,
            name: r.name,
            prefix: Prefix::parse(&r.prefix).map_err(|e| corrupt(T, e))?,
            environments: json(T, &r.environments)?,
            workspace: r.workspace,
            created_at: from_millis(T, r.created_at)?,
            roles: json(T, &r.roles)?,
            critical_scopes: json(T, &r.critical_scopes)?,
            signing: json(T, &r.signing)?,
        })
    }
}

/// Implements `ApiStore`; expanded by `impl_store!`.
macro_rules! impl_api_store {
    ($store:ty, $db:ty) => {
        #[async_trait]
        impl ApiStore for $store {
            async fn create_api(&self, api: &Api, event: &AuditEvent) -> Result<()> {
                self.audited(move |tx| {
                    Box::pin(async move {
                        sqlx::query(
                            "INSERT INTO apis (id, name, prefix, environments, workspace, \
                             created_at, roles, critical_scopes, signing) \
                             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                        )
                        .bind(api.id.as_str())
                        .bind(&api.name)
                        .bind(api.prefix.as_str())
                        .bind(to_json(&api.environments))
                        .bind(&api.workspace)
                        .bind(millis(api.created_at))
                        .bind(to_json(&api.roles))
                        .bind(to_json(&api.critical_scopes))
                        .bind(to_json(&api.signing))
                        .execute(&mut **tx)
                        .await
                        .map_err(unique_violation("an API with this prefix already exists"))?;
                        Ok(Outcome::commit((), std::slice::from_ref(event)))
                    })
                })
                .await
            }

            async fn get_api(&self, id: &ApiId) -> Result<Option<Api>> {
                let sql = format!("SELECT {API_COLUMNS} FROM apis WHERE id = $1");
                let row: Option<ApiRow> = sqlx::query_as(&sql)
                    .bind(id.as_str())
                    .fetch_optional(self.reader())
                    .await?;
                row.map(Api::try_from).transpose()
            }

            async fn list_apis(&self) -> Result<Vec<Api>> {
                let sql = format!("SELECT {API_COLUMNS} FROM apis ORDER BY id");
                let rows: Vec<ApiRow> = sqlx::query_as(&sql).fetch_all(self.reader()).await?;
                convert(rows)
            }

            async fn update_api(
                &self,
                id: &ApiId,
                patch: &ApiPatch,
                now: OffsetDateTime,
                event: &AuditEvent,
            ) -> Result<Api> {
                self.audited(move |tx| {
                    Box::pin(async move {
                        // The roles are read under a row lock first, so a key
                        // write naming roles (which reads them under a share
                        // lock) is either seen by the count below or waits
                        // and then reads the new roles.
                        let sql = format!(
                            "UPDATE apis SET name = COALESCE($2, name), \
                               roles = COALESCE($3, roles), \
                               critical_scopes = COALESCE($4, critical_scopes), \
                               signing = COALESCE($5, signing) \
                             WHERE id = $1 RETURNING {API_COLUMNS}"
                        );
                        let old_roles: Option<(String,)> = match &patch.roles {
                            None => None,
                            Some(_) => {
                                let lock = Self::DIALECT.for_update;
                                sqlx::query_as(&format!(
                                    "SELECT roles FROM apis WHERE id = $1{lock}"
                                ))
                                .bind(id.as_str())
                                .fetch_optional(&mut **tx)
                                .await?
                            }
                        };
                        let row: Option<ApiRow> = sqlx::query_as(&sql)
                            .bind(id.as_str())
                            .bind(patch.name.as_deref())
                            .bind(patch.roles.as_ref().map(to_json))
                            .bind(patch.critical_scopes.as_ref().map(to_json))
                            .bind(patch.signing.as_ref().map(to_json))
                            .fetch_optional(&mut **tx)
                            .await?;
                        let Some(row) = row else {
                            return Err(StoreError::NotFound);
                        };
                        let api = Api::try_from(row)?;
                        if let Some((old,)) = old_roles {
                            let old: keyward_core::KeyRoles = $crate::rows::json("apis", &old)?;
                            for removed in old.keys().filter(|r| !api.roles.contains_key(*r)) {
                                let sql = format!(
                                    "SELECT COUNT(*) FROM keys WHERE api_id = $1 \
                                     AND revoked_at IS NULL AND {}$2{}",
                                    Self::DIALECT.role_match_open,
                                    Self::DIALECT.scope_match_close
                                );
                                let (holders,): (i64,) = sqlx::query_as(&sql)
                                    .bind(id.as_str())
                                    .bind(removed.as_str())
                                    .fetch_one(&mut **tx)
                                    .await?;
                                if holders > 0 {
                                    return Ok(Outcome::Rollback(Err(StoreError::RoleInUse {
                                        role: removed.clone(),
                                        keys: holders.unsigned_abs(),
                                    })));
                                }
                            }
                        }
                        let changes = if patch.roles.is_some()
                            || patch.critical_scopes.is_some()
                            || patch.signing.is_some()
                        {
                            vec![Change::Api(api.id.clone())]
                        } else {
                            Vec::new()
                        };
                        Ok(Outcome::commit_with_changes(
                            api,
                            std::slice::from_ref(event),
                            changes,
                            now,
                        ))
                    })
                })
                .await
            }
        }
    };
}

pub(crate) use impl_api_store;
