//! Credits, kept in the keys' rows, and owner rate limits.

/// Implements `LimitStore`; expanded by `impl_store!`.
macro_rules! impl_limit_store {
    ($store:ty, $db:ty) => {
        #[async_trait]
        impl LimitStore for $store {
            async fn lease_credits(
                &self,
                id: &KeyId,
                want: u64,
                now: OffsetDateTime,
            ) -> Result<Option<CreditLease>> {
                let mut tx = self.writer().begin().await?;
                let sql = format!(
                    "SELECT credits_remaining, credits_refill, credits_refilled_at, created_at \
                     FROM keys WHERE id = $1{}",
                    Self::DIALECT.for_update
                );
                let row: Option<(Option<i64>, Option<String>, Option<i64>, i64)> =
                    sqlx::query_as(&sql)
                        .bind(id.as_str())
                        .fetch_optional(&mut *tx)
                        .await?;
                let Some((Some(remaining), refill, refilled_at, created_at)) = row else {
                    tx.rollback().await?;
                    return Ok(None);
                };
                const T: &str = "keys";
                let refill = refill.as_deref().map(|s| $crate::rows::json::<Refill>(T, s)).transpose()?;
                let mut period = $crate::rows::from_millis(T, refilled_at.unwrap_or(created_at))?;
                let mut remaining = u64::try_from(remaining).unwrap_or(0);
                if let Some(refill) = refill.filter(|r| r.is_due(period, now)) {
                    remaining = refill.amount;
                    period = refill.period_start(now);
                }
                let granted = want.min(remaining);
                remaining -= granted;
                sqlx::query(
                    "UPDATE keys SET credits_remaining = $2, credits_refilled_at = $3 WHERE id = $1",
                )
                .bind(id.as_str())
                .bind(remaining as i64)
                .bind(millis(period))
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(Some(CreditLease { granted, remaining, period }))
            }

            async fn return_credits(
                &self,
                id: &KeyId,
                amount: u64,
                period: OffsetDateTime,
            ) -> Result<()> {
                sqlx::query(
                    "UPDATE keys SET credits_remaining = credits_remaining + $2 \
                     WHERE id = $1 AND credits_remaining IS NOT NULL AND credits_refilled_at = $3",
                )
                .bind(id.as_str())
                .bind(amount.min(i64::MAX as u64) as i64)
                .bind(millis(period))
                .execute(self.writer())
                .await?;
                Ok(())
            }

            async fn owner_ratelimits(&self, owner: &str) -> Result<Vec<RateLimit>> {
                let row: Option<(String,)> =
                    sqlx::query_as("SELECT ratelimits FROM owner_ratelimits WHERE owner = $1")
                        .bind(owner)
                        .fetch_optional(self.reader())
                        .await?;
                match row {
                    Some((text,)) => $crate::rows::json("owner_ratelimits", &text),
                    None => Ok(Vec::new()),
                }
            }

            async fn all_owner_ratelimits(&self) -> Result<Vec<(String, Vec<RateLimit>)>> {
                let rows: Vec<(String, String)> =
                    sqlx::query_as("SELECT owner, ratelimits FROM owner_ratelimits")
                        .fetch_all(self.reader())
                        .await?;
                rows.into_iter()
                    .map(|(owner, text)| Ok((owner, $crate::rows::json("owner_ratelimits", &text)?)))
                    .collect()
            }

            async fn set_owner_ratelimits(
                &self,
                owner: &str,
                limits: &[RateLimit],
                now: OffsetDateTime,
                event: &AuditEvent,
            ) -> Result<()> {
                self.audited(move |tx| {
                    Box::pin(async move {
                        sqlx::query(
                            "INSERT INTO owner_ratelimits (owner, ratelimits, updated_at) \
                             VALUES ($1, $2, $3) ON CONFLICT (owner) \
                             DO UPDATE SET ratelimits = excluded.ratelimits, updated_at = excluded.updated_at",
                        )
                        .bind(owner)
                        .bind(to_json(&limits))
                        .bind(millis(now))
                        .execute(&mut **tx)
                        .await?;
                        Ok(Outcome::commit_with_changes(
                            (),
                            std::slice::from_ref(event),
                            vec![Change::Owner(owner.to_owned())],
                            now,
                        ))
                    })
                })
                .await
            }
        }
    };
}

pub(crate) use impl_limit_store;
