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
            workspace: r.workspace,
            created_at: from_millis(T, r.created_at)?,
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
                            "INSERT INTO apis (id, name, prefix, environments, workspace, created_at) \
                             VALUES ($1, $2, $3, $4, $5, $6)",
                        )
                        .bind(api.id.as_str())
                        .bind(&api.name)
                        .bind(api.prefix.as_str())
                        .bind(to_json(&api.environments))
                        .bind(&api.workspace)
                        .bind(millis(api.created_at))
                        .execute(&mut **tx)
                        .await
                        .map_err(unique_violation("an API with this prefix already exists"))?;
                        Ok(Outcome::commit((), std::slice::from_ref(event)))
                    })
                })
                .await
            }

            async fn get_api(&self, id: &ApiId) -> Result<Option<Api>> {
                let row: Option<ApiRow> = sqlx::query_as(
                    "SELECT id, name, prefix, environments, workspace, created_at FROM apis WHERE id = $1",
                )
                .bind(id.as_str())
                .fetch_optional(self.reader())
                .await?;
                row.map(Api::try_from).transpose()
            }

            async fn list_apis(&self) -> Result<Vec<Api>> {
                let rows: Vec<ApiRow> = sqlx::query_as(
                    "SELECT id, name, prefix, environments, workspace, created_at FROM apis ORDER BY id",
                )
                .fetch_all(self.reader())
                .await?;
                convert(rows)
            }
        }
    };
}

pub(crate) use impl_api_store;
