//! Admin tokens: their rows, and the walk of a token's tree a revocation
//! takes.

use keyward_core::{AdminScope, AdminToken, ApiId, Environment, TokenId, UserId};

use crate::rows::{corrupt, digest, from_millis, json, opt_from_millis};
use crate::StoreError;

pub(crate) const TOKEN_COLUMNS: &str = "id, name, digest, start, scopes, api_ids, environments, \
     created_by, created_at, expires_at, revoked_at, workspaces, user_id, stepped_up_at, \
     client_cert, last_used_at";

#[derive(sqlx::FromRow)]
pub(crate) struct TokenRow {
    id: String,
    name: String,
    digest: Vec<u8>,
    start: String,
    scopes: String,
    api_ids: Option<String>,
    environments: Option<String>,
    created_by: Option<String>,
    created_at: i64,
    expires_at: Option<i64>,
    revoked_at: Option<i64>,
    workspaces: Option<String>,
    user_id: Option<String>,
    stepped_up_at: Option<i64>,
    client_cert: Option<Vec<u8>>,
    last_used_at: Option<i64>,
}

impl TryFrom<TokenRow> for AdminToken {
    type Error = StoreError;
    fn try_from(r: TokenRow) -> Result<AdminToken, StoreError> {
        const T: &str = "admin_tokens";
        let token_id = |s: &str| TokenId::parse(s).map_err(|e| corrupt(T, e));
        Ok(AdminToken {
            id: token_id(&r.id)?,
            name: r.name,
            digest: digest(T, &r.digest)?,
            start: r.start,
            scopes: json::<Vec<AdminScope>>(T, &r.scopes)?,
            api_ids: r
                .api_ids
                .as_deref()
                .map(|s| json::<Vec<ApiId>>(T, s))
                .transpose()?,
            environments: r
                .environments
                .as_deref()
                .map(|s| json::<Vec<Environment>>(T, s))
                .transpose()?,
            created_by: r.created_by.as_deref().map(token_id).transpose()?,
            created_at: from_millis(T, r.created_at)?,
            expires_at: opt_from_millis(T, r.expires_at)?,
            revoked_at: opt_from_millis(T, r.revoked_at)?,
            workspaces: r
                .workspaces
                .as_deref()
                .map(|s| json::<Vec<String>>(T, s))
                .transpose()?,
            user_id: r
                .user_id
                .as_deref()
                .map(|s| UserId::parse(s).map_err(|e| corrupt(T, e)))
                .transpose()?,
            // A session's grants are its user's, read with it.
            grants: Vec::new(),
            stepped_up_at: opt_from_millis(T, r.stepped_up_at)?,
            client_cert: r
                .client_cert
                .map(|c| {
                    <[u8; 32]>::try_from(c.as_slice())
                        .map_err(|_| corrupt(T, "client_cert is not 32 bytes"))
                })
                .transpose()?,
            last_used_at: opt_from_millis(T, r.last_used_at)?,
        })
    }
}

/// Whether a token can grant every scope: usable at `now`, unlimited in
/// APIs and environments, holding every admin scope.
pub(crate) fn is_full_token(token: &AdminToken, now: time::OffsetDateTime) -> bool {
    token.is_usable(now) && token.is_full_access()
}

/// The details of the event for a token a cascade revoked: the origin's
/// details with the origin named.
pub(crate) fn cascade_details(origin: &TokenId, details: &serde_json::Value) -> serde_json::Value {
    let mut details = details.clone();
    match details.as_object_mut() {
        Some(object) => {
            object.insert("cascade_from".to_owned(), origin.as_str().into());
            details
        }
        None => serde_json::json!({ "cascade_from": origin.as_str(), "origin": details }),
    }
}

/// Implements `TokenStore`; expanded by `impl_store!`.
macro_rules! impl_token_store {
    ($store:ty, $db:ty) => {
        /// The tokens that `sql` (ending in an open `IN (` list) selects for
        /// the ids in `ids`, in chunks a statement can carry.
        async fn tokens_in(
            tx: &mut sqlx::Transaction<'_, $db>,
            sql: &str,
            ids: &[String],
            tail: &str,
        ) -> Result<Vec<AdminToken>> {
            let mut found = Vec::new();
            for chunk in ids.chunks(EVENTS_PER_INSERT) {
                let mut q: QueryBuilder<$db> = QueryBuilder::new(sql);
                let mut list = q.separated(", ");
                for id in chunk {
                    list.push_bind(id.clone());
                }
                q.push(")").push(tail);
                let rows: Vec<TokenRow> = q.build_query_as().fetch_all(&mut **tx).await?;
                found.extend(convert::<TokenRow, AdminToken>(rows)?);
            }
            Ok(found)
        }

        /// The usable tokens unlimited in APIs and environments; rows that
        /// cannot be read back count as none (they authenticate nothing).
        async fn unlimited_tokens(
            executor: impl sqlx::Executor<'_, Database = $db>,
        ) -> Result<Vec<AdminToken>> {
            let sql = format!(
                "SELECT {TOKEN_COLUMNS} FROM admin_tokens WHERE revoked_at IS NULL \
                 AND api_ids IS NULL AND environments IS NULL AND workspaces IS NULL \
                 AND user_id IS NULL"
            );
            let rows: Vec<TokenRow> = sqlx::query_as(&sql).fetch_all(executor).await?;
            Ok(rows
                .into_iter()
                .filter_map(|r| AdminToken::try_from(r).ok())
                .collect())
        }

        async fn insert_token(
            tx: &mut sqlx::Transaction<'_, $db>,
            token: &AdminToken,
        ) -> Result<()> {
            let sql = format!(
                "INSERT INTO admin_tokens ({TOKEN_COLUMNS}) VALUES \
                 ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
            );
            sqlx::query(&sql)
                .bind(token.id.as_str())
                .bind(&token.name)
                .bind(token.digest.as_bytes().as_slice())
                .bind(&token.start)
                .bind(to_json(&token.scopes))
                .bind(token.api_ids.as_ref().map(to_json))
                .bind(token.environments.as_ref().map(to_json))
                .bind(token.created_by.as_ref().map(|t| t.as_str()))
                .bind(millis(token.created_at))
                .bind(token.expires_at.map(millis))
                .bind(token.revoked_at.map(millis))
                .bind(token.workspaces.as_ref().map(to_json))
                .bind(token.user_id.as_ref().map(|u| u.as_str()))
                .bind(token.stepped_up_at.map(millis))
                .bind(token.client_cert.as_ref().map(|c| c.as_slice()))
                .bind(token.last_used_at.map(millis))
                .execute(&mut **tx)
                .await
                .map_err(unique_violation("a token with this digest already exists"))?;
            Ok(())
        }

        #[async_trait]
        impl TokenStore for $store {
            async fn create_token(&self, token: &AdminToken, event: &AuditEvent) -> Result<()> {
                self.audited(move |tx| {
                    Box::pin(async move {
                        if let Some(creator) = &token.created_by {
                            // The row lock orders this against a revocation of the
                            // creator: that one either sees the new token or
                            // happens first and is seen here.
                            let sql = format!(
                                "SELECT revoked_at FROM admin_tokens WHERE id = $1{}",
                                Self::DIALECT.for_update
                            );
                            let found: Option<(Option<i64>,)> = sqlx::query_as(&sql)
                                .bind(creator.as_str())
                                .fetch_optional(&mut **tx)
                                .await?;
                            if !matches!(found, Some((None,))) {
                                return Ok(Outcome::Rollback(Err(StoreError::Conflict(
                                    "the token creating this one is revoked or unknown",
                                ))));
                            }
                        }
                        insert_token(tx, token).await?;
                        Ok(Outcome::commit((), std::slice::from_ref(event)))
                    })
                })
                .await
            }

            async fn get_token(&self, id: &TokenId) -> Result<Option<AdminToken>> {
                let sql = format!("SELECT {TOKEN_COLUMNS} FROM admin_tokens WHERE id = $1");
                let row: Option<TokenRow> = sqlx::query_as(&sql)
                    .bind(id.as_str())
                    .fetch_optional(self.reader())
                    .await?;
                match row.map(AdminToken::try_from).transpose()? {
                    Some(token) => Ok(Some(with_grants(self.reader(), token).await?)),
                    None => Ok(None),
                }
            }

            async fn find_token_by_digest(&self, digest: &KeyDigest) -> Result<Option<AdminToken>> {
                let sql = format!("SELECT {TOKEN_COLUMNS} FROM admin_tokens WHERE digest = $1");
                let row: Option<TokenRow> = sqlx::query_as(&sql)
                    .bind(digest.as_bytes().as_slice())
                    .fetch_optional(self.reader())
                    .await?;
                match row.map(AdminToken::try_from).transpose()? {
                    Some(token) => Ok(Some(with_grants(self.reader(), token).await?)),
                    None => Ok(None),
                }
            }

            async fn list_tokens(&self, page: &Page) -> Result<Vec<AdminToken>> {
                let sql = format!(
                    "SELECT {TOKEN_COLUMNS} FROM admin_tokens WHERE id > $1 AND user_id IS NULL \
                     ORDER BY id LIMIT $2"
                );
                let rows: Vec<TokenRow> = sqlx::query_as(&sql)
                    .bind(page.after.clone().unwrap_or_default())
                    .bind(i64::from(page.limit))
                    .fetch_all(self.reader())
                    .await?;
                convert(rows)
            }

            async fn revoke_token(
                &self,
                id: &TokenId,
                now: OffsetDateTime,
                event: &AuditEvent,
            ) -> Result<bool> {
                let revoked = self
                    .revoke_token_tree(id, now, event, LastFullToken::Revoke)
                    .await?;
                Ok(revoked.first().is_some_and(|t| &t.id == id))
            }

            async fn revoke_token_tree(
                &self,
                id: &TokenId,
                now: OffsetDateTime,
                event: &AuditEvent,
                last: LastFullToken,
            ) -> Result<Vec<RevokedToken>> {
                let lock = Self::DIALECT.for_update;
                self.audited(move |tx| {
                    Box::pin(async move {
                        if last == LastFullToken::Keep {
                            // One guarded revocation at a time: two at once could
                            // each see the other's token as the one that remains.
                            sqlx::query(&format!(
                                "SELECT singleton FROM bootstrap WHERE singleton = 1{lock}"
                            ))
                            .fetch_optional(&mut **tx)
                            .await?;
                        }
                        let origin = tokens_in(
                            tx,
                            &format!("SELECT {TOKEN_COLUMNS} FROM admin_tokens WHERE id IN ("),
                            &[id.as_str().to_owned()],
                            lock,
                        )
                        .await?;
                        let Some(origin) = origin.into_iter().next() else {
                            return Ok(Outcome::Rollback(Err(StoreError::NotFound)));
                        };
                        // The tree, one level per statement: each statement sees
                        // what committed before it, so a token minted by one of
                        // these while this ran (it waited for its creator's row
                        // lock) is found at the next level.
                        let mut seen =
                            std::collections::HashSet::from([origin.id.as_str().to_owned()]);
                        let mut tree = vec![origin];
                        let mut level = vec![id.as_str().to_owned()];
                        while !level.is_empty() {
                            let children = tokens_in(
                                tx,
                                &format!(
                                    "SELECT {TOKEN_COLUMNS} FROM admin_tokens WHERE created_by IN ("
                                ),
                                &level,
                                lock,
                            )
                            .await?;
                            level = Vec::new();
                            for child in children {
                                if seen.insert(child.id.as_str().to_owned()) {
                                    level.push(child.id.as_str().to_owned());
                                    tree.push(child);
                                }
                            }
                        }
                        let unrevoked: Vec<AdminToken> = tree
                            .into_iter()
                            .filter(|t| t.revoked_at.is_none())
                            .collect();
                        if unrevoked.is_empty() {
                            return Ok(Outcome::Rollback(Ok(Vec::new())));
                        }
                        let takes_full = unrevoked.iter().any(|t| is_full_token(t, now));
                        let ids: Vec<String> =
                            unrevoked.iter().map(|t| t.id.as_str().to_owned()).collect();
                        for chunk in ids.chunks(EVENTS_PER_INSERT) {
                            let mut q: QueryBuilder<$db> =
                                QueryBuilder::new("UPDATE admin_tokens SET revoked_at = ");
                            q.push_bind(millis(now))
                                .push(" WHERE revoked_at IS NULL AND id IN (");
                            let mut list = q.separated(", ");
                            for id in chunk {
                                list.push_bind(id.clone());
                            }
                            q.push(")");
                            q.build().execute(&mut **tx).await?;
                        }
                        if last == LastFullToken::Keep
                            && takes_full
                            && !unlimited_tokens(&mut **tx)
                                .await?
                                .iter()
                                .any(|t| is_full_token(t, now))
                        {
                            return Ok(Outcome::Rollback(Err(StoreError::LastFullToken)));
                        }
                        let mut events = Vec::with_capacity(unrevoked.len());
                        for token in &unrevoked {
                            if &token.id == id {
                                events.push(event.clone());
                            } else {
                                events.push(AuditEvent {
                                    id: $crate::event_id(now)?,
                                    target: token.id.as_str().to_owned(),
                                    details: cascade_details(id, &event.details),
                                    ..event.clone()
                                });
                            }
                        }
                        let changes: Vec<Change> =
                            unrevoked.iter().map(|t| Change::Token(t.digest)).collect();
                        let revoked = unrevoked
                            .into_iter()
                            .map(|t| RevokedToken {
                                id: t.id,
                                digest: t.digest,
                            })
                            .collect();
                        Ok(Outcome::commit_with_changes(revoked, events, changes, now))
                    })
                })
                .await
            }

            async fn touch_token(&self, id: &TokenId, at: OffsetDateTime) -> Result<()> {
                sqlx::query(
                    "UPDATE admin_tokens SET last_used_at = $1 \
                     WHERE id = $2 AND (last_used_at IS NULL OR last_used_at < $1)",
                )
                .bind(millis(at))
                .bind(id.as_str())
                .execute(self.writer())
                .await?;
                Ok(())
            }

            async fn has_full_token(&self, now: OffsetDateTime) -> Result<bool> {
                Ok(unlimited_tokens(self.reader())
                    .await?
                    .iter()
                    .any(|t| is_full_token(t, now)))
            }

            async fn adopt_tokens(
                &self,
                from: &TokenId,
                to: &TokenId,
                event: &AuditEvent,
            ) -> Result<u64> {
                self.audited(move |tx| {
                    Box::pin(async move {
                        let moved = sqlx::query(
                            "UPDATE admin_tokens SET created_by = $1 \
                             WHERE created_by = $2 AND revoked_at IS NULL",
                        )
                        .bind(to.as_str())
                        .bind(from.as_str())
                        .execute(&mut **tx)
                        .await?
                        .rows_affected();
                        Ok(Outcome::commit(moved, std::slice::from_ref(event)))
                    })
                })
                .await
            }
        }
    };
}

pub(crate) use impl_token_store;
