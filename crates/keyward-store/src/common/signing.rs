//! Seen signed requests and owners' second factors: their rows.

use crate::rows::from_millis;
use crate::signing::OwnerFactor;
use crate::StoreError;

#[derive(sqlx::FromRow)]
pub(crate) struct OwnerFactorRow {
    owner: String,
    totp_secret: Option<Vec<u8>>,
    totp_pending: Option<Vec<u8>>,
    totp_last_step: Option<i64>,
    updated_at: i64,
}

impl TryFrom<OwnerFactorRow> for OwnerFactor {
    type Error = StoreError;
    fn try_from(r: OwnerFactorRow) -> Result<OwnerFactor, StoreError> {
        Ok(OwnerFactor {
            owner: r.owner,
            totp_secret: r.totp_secret,
            totp_pending: r.totp_pending,
            totp_last_step: r.totp_last_step,
            updated_at: from_millis("owner_factors", r.updated_at)?,
        })
    }
}

/// Implements `SigningStore`; expanded by `impl_store!`.
macro_rules! impl_signing_store {
    ($store:ty, $db:ty) => {
        #[async_trait]
        impl $crate::SigningStore for $store {
            async fn remember_nonce(
                &self,
                key_id: &str,
                nonce: &[u8; 32],
                expires_at: OffsetDateTime,
                now: OffsetDateTime,
            ) -> Result<bool> {
                // One statement: an entry whose window passed is taken over,
                // a live one is left and reported as seen.
                let written = sqlx::query(
                    "INSERT INTO signature_nonces (key_id, nonce, expires_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (key_id, nonce) DO UPDATE SET expires_at = excluded.expires_at \
                     WHERE signature_nonces.expires_at <= $4",
                )
                .bind(key_id)
                .bind(nonce.as_slice())
                .bind(millis(expires_at))
                .bind(millis(now))
                .execute(self.writer())
                .await?
                .rows_affected();
                Ok(written == 1)
            }

            async fn prune_nonces(&self, now: OffsetDateTime) -> Result<u64> {
                let gone = sqlx::query("DELETE FROM signature_nonces WHERE expires_at <= $1")
                    .bind(millis(now))
                    .execute(self.writer())
                    .await?
                    .rows_affected();
                Ok(gone)
            }

            async fn get_owner_factor(
                &self,
                owner: &str,
            ) -> Result<Option<$crate::signing::OwnerFactor>> {
                let row: Option<$crate::common::signing::OwnerFactorRow> = sqlx::query_as(
                    "SELECT owner, totp_secret, totp_pending, totp_last_step, updated_at \
                     FROM owner_factors WHERE owner = $1",
                )
                .bind(owner)
                .fetch_optional(self.reader())
                .await?;
                row.map($crate::signing::OwnerFactor::try_from).transpose()
            }

            async fn set_owner_totp_pending(
                &self,
                owner: &str,
                sealed: &[u8],
                now: OffsetDateTime,
                event: &AuditEvent,
            ) -> Result<()> {
                self.audited(move |tx| {
                    Box::pin(async move {
                        sqlx::query(
                            "INSERT INTO owner_factors (owner, totp_pending, updated_at) \
                             VALUES ($1, $2, $3) ON CONFLICT (owner) DO UPDATE \
                             SET totp_pending = excluded.totp_pending, \
                                 updated_at = excluded.updated_at",
                        )
                        .bind(owner)
                        .bind(sealed)
                        .bind(millis(now))
                        .execute(&mut **tx)
                        .await?;
                        Ok(Outcome::commit((), std::slice::from_ref(event)))
                    })
                })
                .await
            }

            async fn confirm_owner_totp(
                &self,
                owner: &str,
                step: i64,
                now: OffsetDateTime,
                event: &AuditEvent,
            ) -> Result<()> {
                self.audited(move |tx| {
                    Box::pin(async move {
                        let done = sqlx::query(
                            "UPDATE owner_factors SET totp_secret = totp_pending, \
                             totp_pending = NULL, totp_last_step = $1, updated_at = $2 \
                             WHERE owner = $3 AND totp_pending IS NOT NULL \
                             AND (totp_last_step IS NULL OR totp_last_step < $1)",
                        )
                        .bind(step)
                        .bind(millis(now))
                        .bind(owner)
                        .execute(&mut **tx)
                        .await?
                        .rows_affected();
                        if done == 0 {
                            return Ok(Outcome::Rollback(Err(StoreError::Conflict(
                                "no TOTP enrolment is waiting for confirmation, or this code was used",
                            ))));
                        }
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

            async fn remove_owner_totp(&self, owner: &str, event: &AuditEvent) -> Result<()> {
                self.audited(move |tx| {
                    Box::pin(async move {
                        let done = sqlx::query("DELETE FROM owner_factors WHERE owner = $1")
                            .bind(owner)
                            .execute(&mut **tx)
                            .await?
                            .rows_affected();
                        if done == 0 {
                            return Ok(Outcome::Rollback(Err(StoreError::NotFound)));
                        }
                        Ok(Outcome::commit_with_changes(
                            (),
                            std::slice::from_ref(event),
                            vec![Change::Owner(owner.to_owned())],
                            event.at,
                        ))
                    })
                })
                .await
            }

            async fn spend_owner_step(&self, owner: &str, step: i64) -> Result<bool> {
                let done = sqlx::query(
                    "UPDATE owner_factors SET totp_last_step = $1 WHERE owner = $2 \
                     AND totp_secret IS NOT NULL \
                     AND (totp_last_step IS NULL OR totp_last_step < $1)",
                )
                .bind(step)
                .bind(owner)
                .execute(self.writer())
                .await?
                .rows_affected();
                Ok(done == 1)
            }
        }
    };
}

pub(crate) use impl_signing_store;
