//! Users, workspaces and custom roles: their rows, and a session's grants
//! read with its token.

use keyward_core::access::expand_grants;
use keyward_core::{AdminScope, AdminToken, CustomRole, RoleGrant, User, UserId, Workspace};

use crate::access::{StoredUser, UserSecrets};
use crate::rows::{corrupt, from_millis, json, opt_from_millis};
use crate::StoreError;

pub(crate) const USER_COLUMNS: &str = "id, email, password_hash, grants, totp_secret, \
     totp_pending, totp_last_step, recovery_codes, created_at, updated_at, disabled_at, \
     last_login_at";

#[derive(sqlx::FromRow)]
pub(crate) struct UserRow {
    id: String,
    email: String,
    password_hash: String,
    grants: String,
    totp_secret: Option<Vec<u8>>,
    totp_pending: Option<Vec<u8>>,
    totp_last_step: Option<i64>,
    recovery_codes: String,
    created_at: i64,
    updated_at: i64,
    disabled_at: Option<i64>,
    last_login_at: Option<i64>,
}

impl TryFrom<UserRow> for StoredUser {
    type Error = StoreError;
    fn try_from(r: UserRow) -> Result<StoredUser, StoreError> {
        const T: &str = "users";
        Ok(StoredUser {
            user: User {
                id: UserId::parse(&r.id).map_err(|e| corrupt(T, e))?,
                email: r.email,
                grants: json::<Vec<RoleGrant>>(T, &r.grants)?,
                totp_enrolled: r.totp_secret.is_some(),
                created_at: from_millis(T, r.created_at)?,
                updated_at: from_millis(T, r.updated_at)?,
                disabled_at: opt_from_millis(T, r.disabled_at)?,
                last_login_at: opt_from_millis(T, r.last_login_at)?,
            },
            secrets: UserSecrets {
                password_hash: r.password_hash,
                totp_secret: r.totp_secret,
                totp_pending: r.totp_pending,
                totp_last_step: r.totp_last_step,
                recovery_codes: json::<Vec<String>>(T, &r.recovery_codes)?,
            },
        })
    }
}

impl TryFrom<UserRow> for User {
    type Error = StoreError;
    fn try_from(r: UserRow) -> Result<User, StoreError> {
        Ok(StoredUser::try_from(r)?.user)
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct RoleRow {
    name: String,
    scopes: String,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<RoleRow> for CustomRole {
    type Error = StoreError;
    fn try_from(r: RoleRow) -> Result<CustomRole, StoreError> {
        const T: &str = "roles";
        Ok(CustomRole {
            name: r.name,
            scopes: json::<Vec<AdminScope>>(T, &r.scopes)?,
            created_at: from_millis(T, r.created_at)?,
            updated_at: from_millis(T, r.updated_at)?,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct WorkspaceRow {
    name: String,
    created_at: i64,
}

impl TryFrom<WorkspaceRow> for Workspace {
    type Error = StoreError;
    fn try_from(r: WorkspaceRow) -> Result<Workspace, StoreError> {
        Ok(Workspace {
            name: r.name,
            created_at: from_millis("workspaces", r.created_at)?,
        })
    }
}

/// A session as it authenticates now: its user's grants expanded, its
/// scopes their union, and revoked when the user is disabled or gone.
pub(crate) fn session_with(
    mut token: AdminToken,
    user: Option<&User>,
    roles: &[CustomRole],
) -> AdminToken {
    let Some(user) = user.filter(|u| u.disabled_at.is_none()) else {
        token.revoked_at = token.revoked_at.or(Some(token.created_at));
        token.grants = Vec::new();
        token.scopes = Vec::new();
        return token;
    };
    token.grants = expand_grants(&user.grants, |name| {
        roles
            .iter()
            .find(|r| r.name == name)
            .map(|r| r.scopes.clone())
    });
    let mut scopes: Vec<AdminScope> = token
        .grants
        .iter()
        .flat_map(|g| g.scopes.iter().copied())
        .collect();
    scopes.sort();
    scopes.dedup();
    token.scopes = scopes;
    token
}

/// Implements `AccessStore`; expanded by `impl_store!`.
macro_rules! impl_access_store {
    ($store:ty, $db:ty) => {
        use keyward_core::{CustomRole, User, UserId, Workspace};
        use $crate::access::{AccessStore, Factor, StoredUser, UserPatch};
        use $crate::common::access::{
            session_with, RoleRow, UserRow, WorkspaceRow, USER_COLUMNS,
        };

        /// `token` with its user's grants when it is a session.
        async fn with_grants(pool: &sqlx::Pool<$db>, token: AdminToken) -> Result<AdminToken> {
            let Some(user_id) = token.user_id.clone() else {
                return Ok(token);
            };
            let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
            let row: Option<UserRow> = sqlx::query_as(&sql)
                .bind(user_id.as_str())
                .fetch_optional(pool)
                .await?;
            let user = row.map(User::try_from).transpose()?;
            let roles: Vec<RoleRow> =
                sqlx::query_as("SELECT name, scopes, created_at, updated_at FROM roles")
                    .fetch_all(pool)
                    .await?;
            let roles: Vec<CustomRole> = convert(roles)?;
            Ok(session_with(token, user.as_ref(), &roles))
        }

        /// The digests of the unrevoked sessions of the users `filter`
        /// selects (a `WHERE` over `users`, binding `$1`).
        async fn sessions_of(
            tx: &mut sqlx::Transaction<'_, $db>,
            filter: &str,
            bind: &str,
        ) -> Result<Vec<KeyDigest>> {
            let sql = format!(
                "SELECT digest FROM admin_tokens WHERE revoked_at IS NULL AND user_id IN \
                 (SELECT id FROM users WHERE {filter})"
            );
            let rows: Vec<(Vec<u8>,)> = sqlx::query_as(&sql)
                .bind(bind.to_owned())
                .fetch_all(&mut **tx)
                .await?;
            rows.into_iter()
                .map(|(d,)| $crate::rows::digest("admin_tokens", &d))
                .collect()
        }

        /// Spends a second factor of `user`: `false` when it was spent
        /// already (or the user has no TOTP secret).
        async fn spend_factor(
            tx: &mut sqlx::Transaction<'_, $db>,
            user: &UserId,
            factor: &Factor,
        ) -> Result<bool> {
            match factor {
                Factor::Totp { step } => {
                    let done = sqlx::query(
                        "UPDATE users SET totp_last_step = $1 WHERE id = $2 \
                         AND totp_secret IS NOT NULL \
                         AND (totp_last_step IS NULL OR totp_last_step < $1)",
                    )
                    .bind(*step)
                    .bind(user.as_str())
                    .execute(&mut **tx)
                    .await?
                    .rows_affected();
                    Ok(done == 1)
                }
                Factor::Recovery { digest } => {
                    let sql = format!(
                        "SELECT recovery_codes FROM users WHERE id = $1{}",
                        <$store>::DIALECT.for_update
                    );
                    let found: Option<(String,)> = sqlx::query_as(&sql)
                        .bind(user.as_str())
                        .fetch_optional(&mut **tx)
                        .await?;
                    let Some((codes,)) = found else {
                        return Ok(false);
                    };
                    let mut codes: Vec<String> = $crate::rows::json("users", &codes)?;
                    let before = codes.len();
                    codes.retain(|c| c != digest);
                    if codes.len() == before {
                        return Ok(false);
                    }
                    sqlx::query("UPDATE users SET recovery_codes = $1 WHERE id = $2")
                        .bind(to_json(&codes))
                        .bind(user.as_str())
                        .execute(&mut **tx)
                        .await?;
                    Ok(true)
                }
            }
        }

        #[async_trait]
        impl AccessStore for $store {
            async fn create_workspace(
                &self,
                workspace: &Workspace,
                event: &AuditEvent,
            ) -> Result<()> {
                self.audited(move |tx| {
                    Box::pin(async move {
                        sqlx::query("INSERT INTO workspaces (name, created_at) VALUES ($1, $2)")
                            .bind(&workspace.name)
                            .bind(millis(workspace.created_at))
                            .execute(&mut **tx)
                            .await
                            .map_err(unique_violation("a workspace with this name already exists"))?;
                        Ok(Outcome::commit((), std::slice::from_ref(event)))
                    })
                })
                .await
            }

            async fn get_workspace(&self, name: &str) -> Result<Option<Workspace>> {
                let row: Option<WorkspaceRow> =
                    sqlx::query_as("SELECT name, created_at FROM workspaces WHERE name = $1")
                        .bind(name)
                        .fetch_optional(self.reader())
                        .await?;
                row.map(Workspace::try_from).transpose()
            }

            async fn list_workspaces(&self) -> Result<Vec<Workspace>> {
                let rows: Vec<WorkspaceRow> =
                    sqlx::query_as("SELECT name, created_at FROM workspaces ORDER BY name")
                        .fetch_all(self.reader())
                        .await?;
                convert(rows)
            }

            async fn put_role(&self, role: &CustomRole, event: &AuditEvent) -> Result<Vec<KeyDigest>> {
                self.audited(move |tx| {
                    Box::pin(async move {
                        sqlx::query(
                            "INSERT INTO roles (name, scopes, created_at, updated_at) \
                             VALUES ($1, $2, $3, $4) \
                             ON CONFLICT (name) DO UPDATE SET scopes = $2, updated_at = $4",
                        )
                        .bind(&role.name)
                        .bind(to_json(&role.scopes))
                        .bind(millis(role.created_at))
                        .bind(millis(role.updated_at))
                        .execute(&mut **tx)
                        .await?;
                        let pattern = format!("%\"role\":{}%", to_json(&role.name));
                        let digests = sessions_of(tx, "grants LIKE $1", &pattern).await?;
                        let changes = digests.iter().map(|d| Change::Token(*d)).collect();
                        Ok(Outcome::commit_with_changes(
                            digests,
                            std::slice::from_ref(event),
                            changes,
                            role.updated_at,
                        ))
                    })
                })
                .await
            }

            async fn delete_role(&self, name: &str, event: &AuditEvent) -> Result<()> {
                self.audited(move |tx| {
                    Box::pin(async move {
                        let pattern = format!("%\"role\":{}%", to_json(&name));
                        let (held,): (i64,) =
                            sqlx::query_as("SELECT count(*) FROM users WHERE grants LIKE $1")
                                .bind(pattern)
                                .fetch_one(&mut **tx)
                                .await?;
                        if held > 0 {
                            return Ok(Outcome::Rollback(Err(StoreError::Conflict(
                                "users still hold this role: take it from them first",
                            ))));
                        }
                        let done = sqlx::query("DELETE FROM roles WHERE name = $1")
                            .bind(name)
                            .execute(&mut **tx)
                            .await?
                            .rows_affected();
                        if done == 0 {
                            return Ok(Outcome::Rollback(Err(StoreError::NotFound)));
                        }
                        Ok(Outcome::commit((), std::slice::from_ref(event)))
                    })
                })
                .await
            }

            async fn list_roles(&self) -> Result<Vec<CustomRole>> {
                let rows: Vec<RoleRow> = sqlx::query_as(
                    "SELECT name, scopes, created_at, updated_at FROM roles ORDER BY name",
                )
                .fetch_all(self.reader())
                .await?;
                convert(rows)
            }

            async fn create_user(&self, stored: &StoredUser, event: &AuditEvent) -> Result<()> {
                self.audited(move |tx| {
                    Box::pin(async move {
                        let sql = format!(
                            "INSERT INTO users ({USER_COLUMNS}) VALUES \
                             ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
                        );
                        let (user, secrets) = (&stored.user, &stored.secrets);
                        sqlx::query(&sql)
                            .bind(user.id.as_str())
                            .bind(&user.email)
                            .bind(&secrets.password_hash)
                            .bind(to_json(&user.grants))
                            .bind(secrets.totp_secret.as_deref())
                            .bind(secrets.totp_pending.as_deref())
                            .bind(secrets.totp_last_step)
                            .bind(to_json(&secrets.recovery_codes))
                            .bind(millis(user.created_at))
                            .bind(millis(user.updated_at))
                            .bind(user.disabled_at.map(millis))
                            .bind(user.last_login_at.map(millis))
                            .execute(&mut **tx)
                            .await
                            .map_err(unique_violation("a user with this e-mail already exists"))?;
                        Ok(Outcome::commit((), std::slice::from_ref(event)))
                    })
                })
                .await
            }

            async fn get_user(&self, id: &UserId) -> Result<Option<StoredUser>> {
                let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
                let row: Option<UserRow> = sqlx::query_as(&sql)
                    .bind(id.as_str())
                    .fetch_optional(self.reader())
                    .await?;
                row.map(StoredUser::try_from).transpose()
            }

            async fn find_user_by_email(&self, email: &str) -> Result<Option<StoredUser>> {
                let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE email = $1");
                let row: Option<UserRow> = sqlx::query_as(&sql)
                    .bind(email)
                    .fetch_optional(self.reader())
                    .await?;
                row.map(StoredUser::try_from).transpose()
            }

            async fn list_users(&self, page: &Page) -> Result<Vec<User>> {
                let sql = format!(
                    "SELECT {USER_COLUMNS} FROM users WHERE id > $1 ORDER BY id LIMIT $2"
                );
                let rows: Vec<UserRow> = sqlx::query_as(&sql)
                    .bind(page.after.clone().unwrap_or_default())
                    .bind(i64::from(page.limit))
                    .fetch_all(self.reader())
                    .await?;
                convert(rows)
            }

            async fn update_user(
                &self,
                id: &UserId,
                patch: &UserPatch,
                now: OffsetDateTime,
                event: &AuditEvent,
            ) -> Result<Vec<KeyDigest>> {
                self.audited(move |tx| {
                    Box::pin(async move {
                        let found: Option<(Option<i64>,)> = sqlx::query_as(&format!(
                            "SELECT disabled_at FROM users WHERE id = $1{}",
                            Self::DIALECT.for_update
                        ))
                        .bind(id.as_str())
                        .fetch_optional(&mut **tx)
                        .await?;
                        let Some((disabled_at,)) = found else {
                            return Ok(Outcome::Rollback(Err(StoreError::NotFound)));
                        };
                        let disabled_at = match patch.disabled {
                            Some(true) => disabled_at.or(Some(millis(now))),
                            Some(false) => None,
                            None => disabled_at,
                        };
                        sqlx::query(
                            "UPDATE users SET grants = COALESCE($1, grants), \
                             password_hash = COALESCE($2, password_hash), disabled_at = $3, \
                             updated_at = $4 WHERE id = $5",
                        )
                        .bind(patch.grants.as_ref().map(to_json))
                        .bind(patch.password_hash.as_deref())
                        .bind(disabled_at)
                        .bind(millis(now))
                        .bind(id.as_str())
                        .execute(&mut **tx)
                        .await?;
                        let digests = sessions_of(tx, "id = $1", id.as_str()).await?;
                        if patch.disabled == Some(true) || patch.password_hash.is_some() {
                            sqlx::query(
                                "UPDATE admin_tokens SET revoked_at = $1 \
                                 WHERE user_id = $2 AND revoked_at IS NULL",
                            )
                            .bind(millis(now))
                            .bind(id.as_str())
                            .execute(&mut **tx)
                            .await?;
                        }
                        let changes = digests.iter().map(|d| Change::Token(*d)).collect();
                        Ok(Outcome::commit_with_changes(
                            digests,
                            std::slice::from_ref(event),
                            changes,
                            now,
                        ))
                    })
                })
                .await
            }

            async fn set_totp_pending(
                &self,
                id: &UserId,
                envelope: &[u8],
                event: &AuditEvent,
            ) -> Result<()> {
                self.audited(move |tx| {
                    Box::pin(async move {
                        let done = sqlx::query("UPDATE users SET totp_pending = $1 WHERE id = $2")
                            .bind(envelope)
                            .bind(id.as_str())
                            .execute(&mut **tx)
                            .await?
                            .rows_affected();
                        if done == 0 {
                            return Ok(Outcome::Rollback(Err(StoreError::NotFound)));
                        }
                        Ok(Outcome::commit((), std::slice::from_ref(event)))
                    })
                })
                .await
            }

            async fn confirm_totp(
                &self,
                id: &UserId,
                step: i64,
                recovery_codes: &[String],
                event: &AuditEvent,
            ) -> Result<()> {
                self.audited(move |tx| {
                    Box::pin(async move {
                        let done = sqlx::query(
                            "UPDATE users SET totp_secret = totp_pending, totp_pending = NULL, \
                             totp_last_step = $1, recovery_codes = $2 \
                             WHERE id = $3 AND totp_pending IS NOT NULL \
                             AND (totp_last_step IS NULL OR totp_last_step < $1)",
                        )
                        .bind(step)
                        .bind(to_json(&recovery_codes))
                        .bind(id.as_str())
                        .execute(&mut **tx)
                        .await?
                        .rows_affected();
                        if done == 0 {
                            return Ok(Outcome::Rollback(Err(StoreError::Conflict(
                                "no TOTP enrolment is waiting for confirmation, or this code was used",
                            ))));
                        }
                        Ok(Outcome::commit((), std::slice::from_ref(event)))
                    })
                })
                .await
            }

            async fn sign_in(
                &self,
                session: &AdminToken,
                factor: Option<&Factor>,
                event: &AuditEvent,
            ) -> Result<bool> {
                let Some(user) = session.user_id.clone() else {
                    return Err(StoreError::Conflict("a session names its user"));
                };
                self.audited(move |tx| {
                    Box::pin(async move {
                        if let Some(factor) = factor {
                            if !spend_factor(tx, &user, factor).await? {
                                return Ok(Outcome::Rollback(Ok(false)));
                            }
                        }
                        sqlx::query("UPDATE users SET last_login_at = $1 WHERE id = $2")
                            .bind(millis(session.created_at))
                            .bind(user.as_str())
                            .execute(&mut **tx)
                            .await?;
                        insert_token(tx, session).await?;
                        Ok(Outcome::commit(true, std::slice::from_ref(event)))
                    })
                })
                .await
            }

            async fn step_up(
                &self,
                session: &TokenId,
                user: &UserId,
                factor: &Factor,
                at: OffsetDateTime,
                event: &AuditEvent,
            ) -> Result<Option<KeyDigest>> {
                self.audited(move |tx| {
                    Box::pin(async move {
                        if !spend_factor(tx, user, factor).await? {
                            return Ok(Outcome::Rollback(Ok(None)));
                        }
                        let found: Option<(Vec<u8>,)> = sqlx::query_as(
                            "UPDATE admin_tokens SET stepped_up_at = $1 \
                             WHERE id = $2 AND user_id = $3 AND revoked_at IS NULL \
                             RETURNING digest",
                        )
                        .bind(millis(at))
                        .bind(session.as_str())
                        .bind(user.as_str())
                        .fetch_optional(&mut **tx)
                        .await?;
                        let Some((digest,)) = found else {
                            return Ok(Outcome::Rollback(Err(StoreError::NotFound)));
                        };
                        let digest = $crate::rows::digest("admin_tokens", &digest)?;
                        Ok(Outcome::commit_with_changes(
                            Some(digest),
                            std::slice::from_ref(event),
                            vec![Change::Token(digest)],
                            at,
                        ))
                    })
                })
                .await
            }

            async fn user_sessions(&self, user: &UserId) -> Result<Vec<AdminToken>> {
                let sql =
                    format!("SELECT {TOKEN_COLUMNS} FROM admin_tokens WHERE user_id = $1 ORDER BY id");
                let rows: Vec<TokenRow> = sqlx::query_as(&sql)
                    .bind(user.as_str())
                    .fetch_all(self.reader())
                    .await?;
                convert(rows)
            }
        }
    };
}

pub(crate) use impl_access_store;
