//! Ping and bootstrap.

/// Implements `SystemStore`; expanded by `impl_store!`.
macro_rules! impl_system_store {
    ($store:ty, $db:ty) => {
        #[async_trait]
        impl SystemStore for $store {
            async fn ping(&self) -> Result<()> {
                sqlx::query("SELECT 1").execute(self.reader()).await?;
                Ok(())
            }

            async fn bootstrap(&self, root: &AdminToken, event: &AuditEvent) -> Result<bool> {
                self.audited(move |tx| {
                    Box::pin(async move {
                        let claimed = sqlx::query(
                            "INSERT INTO bootstrap (singleton, at, root_token) VALUES (1, $1, $2) \
                             ON CONFLICT DO NOTHING",
                        )
                        .bind(millis(root.created_at))
                        .bind(root.id.as_str())
                        .execute(&mut **tx)
                        .await?
                        .rows_affected()
                            == 1;
                        if !claimed {
                            return Ok(Outcome::Rollback(Ok(false)));
                        }
                        insert_token(tx, root).await?;
                        Ok(Outcome::commit(true, std::slice::from_ref(event)))
                    })
                })
                .await
            }
        }
    };
}

pub(crate) use impl_system_store;
