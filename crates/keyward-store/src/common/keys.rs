//! Keys: their rows, and the statements a key change shares with a rotation
//! or a bulk revocation.

use keyward_core::limits::{Credits, Refill};
use keyward_core::{ApiId, KeyId, KeyRecord, RoleName, Scope};

use keyward_core::{KeySigning, SigningAlgorithm};

use crate::rows::{corrupt, digest, environment, from_millis, json, opt_from_millis, to_json};
use crate::StoreError;

pub(crate) const KEY_COLUMNS: &str = "id, api_id, environment, name, owner, scopes, metadata, \
     digest, start, enabled, created_at, updated_at, expires_at, revoked_at, revoke_reason, \
     rotated_from, rotated_to, ratelimits, credits_remaining, credits_refill, \
     credits_refilled_at, ip_allowlist, last_used_at, roles, signing, signing_secret";

#[derive(sqlx::FromRow)]
pub(crate) struct KeyRow {
    id: String,
    api_id: String,
    environment: String,
    name: String,
    owner: String,
    scopes: String,
    metadata: String,
    digest: Vec<u8>,
    start: String,
    enabled: bool,
    created_at: i64,
    updated_at: i64,
    expires_at: Option<i64>,
    revoked_at: Option<i64>,
    revoke_reason: Option<String>,
    rotated_from: Option<String>,
    rotated_to: Option<String>,
    ratelimits: String,
    credits_remaining: Option<i64>,
    credits_refill: Option<String>,
    credits_refilled_at: Option<i64>,
    ip_allowlist: String,
    last_used_at: Option<i64>,
    roles: String,
    signing: Option<String>,
    signing_secret: Option<Vec<u8>>,
}

/// A key's `signing` column: what of its signing key is not secret.
#[derive(serde::Serialize, serde::Deserialize)]
struct SigningColumn {
    algorithm: SigningAlgorithm,
    window_ms: u64,
    /// The Ed25519 public key, in hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    public_key: Option<String>,
}

/// The `signing` column of a key's signing key.
pub(crate) fn signing_column(signing: &KeySigning) -> String {
    to_json(&SigningColumn {
        algorithm: signing.algorithm,
        window_ms: signing.window_ms,
        public_key: signing.public_key.map(|k| {
            k.iter().fold(String::with_capacity(64), |mut hex, b| {
                hex.push_str(&format!("{b:02x}"));
                hex
            })
        }),
    })
}

fn signing_from(
    column: Option<&str>,
    secret: Option<Vec<u8>>,
) -> Result<Option<KeySigning>, StoreError> {
    const T: &str = "keys";
    let Some(column) = column else {
        return Ok(None);
    };
    let stored: SigningColumn = json(T, column)?;
    let public_key = match stored.public_key {
        None => None,
        Some(hex) => {
            let bytes = (0..hex.len())
                .step_by(2)
                .map(|i| {
                    hex.get(i..i + 2)
                        .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                })
                .collect::<Option<Vec<u8>>>()
                .ok_or_else(|| corrupt(T, "signing public key is not hex"))?;
            Some(
                <[u8; 32]>::try_from(bytes)
                    .map_err(|_| corrupt(T, "signing public key is not 32 bytes"))?,
            )
        }
    };
    Ok(Some(KeySigning {
        algorithm: stored.algorithm,
        window_ms: stored.window_ms,
        public_key,
        sealed_secret: secret,
    }))
}

impl TryFrom<KeyRow> for KeyRecord {
    type Error = StoreError;
    fn try_from(r: KeyRow) -> Result<KeyRecord, StoreError> {
        const T: &str = "keys";
        let key_id = |s: &str| KeyId::parse(s).map_err(|e| corrupt(T, e));
        Ok(KeyRecord {
            id: key_id(&r.id)?,
            api_id: ApiId::parse(&r.api_id).map_err(|e| corrupt(T, e))?,
            environment: environment(T, &r.environment)?,
            name: r.name,
            owner: r.owner,
            scopes: json::<Vec<Scope>>(T, &r.scopes)?,
            roles: json::<Vec<RoleName>>(T, &r.roles)?,
            metadata: json(T, &r.metadata)?,
            digest: digest(T, &r.digest)?,
            start: r.start,
            enabled: r.enabled,
            created_at: from_millis(T, r.created_at)?,
            updated_at: from_millis(T, r.updated_at)?,
            expires_at: opt_from_millis(T, r.expires_at)?,
            revoked_at: opt_from_millis(T, r.revoked_at)?,
            revoke_reason: r.revoke_reason,
            rotated_from: r.rotated_from.as_deref().map(key_id).transpose()?,
            rotated_to: r.rotated_to.as_deref().map(key_id).transpose()?,
            ratelimits: json(T, &r.ratelimits)?,
            credits: match r.credits_remaining {
                None => None,
                Some(remaining) => Some(Credits {
                    remaining: u64::try_from(remaining).map_err(|e| corrupt(T, e))?,
                    refill: r
                        .credits_refill
                        .as_deref()
                        .map(|s| json::<Refill>(T, s))
                        .transpose()?,
                    refilled_at: from_millis(T, r.credits_refilled_at.unwrap_or(r.created_at))?,
                }),
            },
            ip_allowlist: json(T, &r.ip_allowlist)?,
            last_used_at: opt_from_millis(T, r.last_used_at)?,
            signing: signing_from(r.signing.as_deref(), r.signing_secret)?,
        })
    }
}

/// Implements `KeyStore`; expanded by `impl_store!`.
macro_rules! impl_key_store {
    ($store:ty, $db:ty) => {
        fn push_key_filter(
            q: &mut QueryBuilder<'_, $db>,
            api_ids_within: &Option<Vec<ApiId>>,
            environments_within: &Option<Vec<keyward_core::Environment>>,
        ) {
            if let Some(ids) = api_ids_within {
                if ids.is_empty() {
                    q.push(" AND FALSE");
                } else {
                    q.push(" AND api_id IN (");
                    let mut list = q.separated(", ");
                    for id in ids {
                        list.push_bind(id.as_str().to_owned());
                    }
                    q.push(")");
                }
            }
            if let Some(envs) = environments_within {
                if envs.is_empty() {
                    q.push(" AND FALSE");
                } else {
                    q.push(" AND environment IN (");
                    let mut list = q.separated(", ");
                    for env in envs {
                        list.push_bind(env.as_str());
                    }
                    q.push(")");
                }
            }
        }

        /// Refuses with `UndefinedRole` unless the API defines every role
        /// in `roles`, read under a share lock that holds until the
        /// transaction ends: an API change removing a role then either
        /// counts this key or waits for it (see `update_api`).
        async fn check_roles_defined(
            tx: &mut sqlx::Transaction<'_, $db>,
            api_id: &ApiId,
            roles: &[keyward_core::RoleName],
        ) -> Result<()> {
            if roles.is_empty() {
                return Ok(());
            }
            let lock = <$store>::DIALECT.for_share;
            let row: Option<(String,)> =
                sqlx::query_as(&format!("SELECT roles FROM apis WHERE id = $1{lock}"))
                    .bind(api_id.as_str())
                    .fetch_optional(&mut **tx)
                    .await?;
            let defined: keyward_core::KeyRoles = match row {
                Some((roles,)) => $crate::rows::json("apis", &roles)?,
                None => return Err(StoreError::NotFound),
            };
            if roles.iter().all(|r| defined.contains_key(r)) {
                Ok(())
            } else {
                Err(StoreError::UndefinedRole)
            }
        }

        async fn insert_key(
            tx: &mut sqlx::Transaction<'_, $db>,
            key: &KeyRecord,
        ) -> Result<()> {
            check_roles_defined(tx, &key.api_id, &key.roles).await?;
            let sql = format!(
                "INSERT INTO keys ({KEY_COLUMNS}) VALUES \
                 ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, \
                  $18, $19, $20, $21, $22, $23, $24, $25, $26)"
            );
            sqlx::query(&sql)
                .bind(key.id.as_str())
                .bind(key.api_id.as_str())
                .bind(key.environment.as_str())
                .bind(&key.name)
                .bind(&key.owner)
                .bind(to_json(&key.scopes))
                .bind(to_json(&key.metadata))
                .bind(key.digest.as_bytes().as_slice())
                .bind(&key.start)
                .bind(key.enabled)
                .bind(millis(key.created_at))
                .bind(millis(key.updated_at))
                .bind(key.expires_at.map(millis))
                .bind(key.revoked_at.map(millis))
                .bind(key.revoke_reason.as_deref())
                .bind(key.rotated_from.as_ref().map(|k| k.as_str()))
                .bind(key.rotated_to.as_ref().map(|k| k.as_str()))
                .bind(to_json(&key.ratelimits))
                .bind(key.credits.map(|c| c.remaining.min(i64::MAX as u64) as i64))
                .bind(key.credits.and_then(|c| c.refill).map(|r| to_json(&r)))
                .bind(key.credits.map(|c| millis(c.refilled_at)))
                .bind(to_json(&key.ip_allowlist))
                .bind(key.last_used_at.map(millis))
                .bind(to_json(&key.roles))
                .bind(key.signing.as_ref().map($crate::common::keys::signing_column))
                .bind(key.signing.as_ref().and_then(|s| s.sealed_secret.as_deref()))
                .execute(&mut **tx)
                .await
                .map_err(unique_violation("a key with this digest already exists"))?;
            Ok(())
        }

        #[async_trait]
        impl KeyStore for $store {
            async fn create_key(&self, key: &KeyRecord, event: &AuditEvent) -> Result<()> {
                self.audited(move |tx| {
                    Box::pin(async move {
                        insert_key(tx, key).await?;
                        Ok(Outcome::commit((), std::slice::from_ref(event)))
                    })
                })
                .await
            }

            async fn create_keys(&self, keys: &[KeyRecord], events: &[AuditEvent]) -> Result<()> {
                self.audited(move |tx| {
                    Box::pin(async move {
                        for key in keys {
                            insert_key(tx, key).await?;
                        }
                        Ok(Outcome::commit((), events))
                    })
                })
                .await
            }

            async fn get_key(&self, id: &KeyId) -> Result<Option<KeyRecord>> {
                let sql = format!("SELECT {KEY_COLUMNS} FROM keys WHERE id = $1");
                let row: Option<KeyRow> = sqlx::query_as(&sql)
                    .bind(id.as_str())
                    .fetch_optional(self.reader())
                    .await?;
                row.map(KeyRecord::try_from).transpose()
            }

            async fn find_key_by_digest(&self, digest: &KeyDigest) -> Result<Option<KeyRecord>> {
                let sql = format!("SELECT {KEY_COLUMNS} FROM keys WHERE digest = $1");
                let row: Option<KeyRow> = sqlx::query_as(&sql)
                    .bind(digest.as_bytes().as_slice())
                    .fetch_optional(self.reader())
                    .await?;
                row.map(KeyRecord::try_from).transpose()
            }

            async fn list_keys(
                &self,
                filter: &KeyFilter,
                page: &Page,
                now: OffsetDateTime,
            ) -> Result<Vec<KeyRecord>> {
                let mut q: QueryBuilder<$db> =
                    QueryBuilder::new(format!("SELECT {KEY_COLUMNS} FROM keys WHERE TRUE"));
                if let Some(api_id) = &filter.api_id {
                    q.push(" AND api_id = ").push_bind(api_id.as_str().to_owned());
                }
                if let Some(owner) = &filter.owner {
                    q.push(" AND owner = ").push_bind(owner.clone());
                }
                if let Some(env) = filter.environment {
                    q.push(" AND environment = ").push_bind(env.as_str());
                }
                if let Some(state) = filter.state {
                    let now = millis(now);
                    match state {
                        KeyState::Revoked => {
                            q.push(" AND revoked_at IS NOT NULL");
                        }
                        KeyState::Expired => {
                            q.push(" AND revoked_at IS NULL AND expires_at <= ")
                                .push_bind(now);
                        }
                        KeyState::Disabled | KeyState::Active => {
                            q.push(" AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ")
                                .push_bind(now)
                                .push(") AND enabled = ")
                                .push_bind(state == KeyState::Active);
                        }
                    }
                }
                push_key_filter(&mut q, &filter.api_ids_within, &filter.environments_within);
                if let Some(after) = &page.after {
                    q.push(" AND id > ").push_bind(after.clone());
                }
                q.push(" ORDER BY id LIMIT ").push_bind(i64::from(page.limit));
                let rows: Vec<KeyRow> = q.build_query_as().fetch_all(self.reader()).await?;
                convert(rows)
            }

            async fn update_key(
                &self,
                id: &KeyId,
                patch: &KeyPatch,
                now: OffsetDateTime,
                event: &AuditEvent,
            ) -> Result<KeyRecord> {
                self.audited(move |tx| {
                    Box::pin(async move {
                        if let Some(roles) = patch.roles.as_deref().filter(|r| !r.is_empty()) {
                            let api: Option<(String,)> =
                                sqlx::query_as("SELECT api_id FROM keys WHERE id = $1")
                                    .bind(id.as_str())
                                    .fetch_optional(&mut **tx)
                                    .await?;
                            let Some((api,)) = api else {
                                return Err(StoreError::NotFound);
                            };
                            let api = ApiId::parse(&api).map_err(|e| corrupt("keys", e))?;
                            check_roles_defined(tx, &api, roles).await?;
                        }
                        let sql = format!(
                            "UPDATE keys SET \
                               name = COALESCE($2, name), \
                               scopes = COALESCE($3, scopes), \
                               metadata = COALESCE($4, metadata), \
                               expires_at = CASE WHEN $5 THEN $6 ELSE expires_at END, \
                               enabled = COALESCE($7, enabled), \
                               updated_at = $8, \
                               ratelimits = COALESCE($9, ratelimits), \
                               ip_allowlist = COALESCE($10, ip_allowlist), \
                               credits_remaining = CASE WHEN $11 THEN $12 ELSE credits_remaining END, \
                               credits_refill = CASE WHEN $11 THEN $13 ELSE credits_refill END, \
                               credits_refilled_at = CASE WHEN $11 THEN $14 ELSE credits_refilled_at END, \
                               roles = COALESCE($15, roles), \
                               signing = CASE WHEN $16 THEN $17 ELSE signing END, \
                               signing_secret = CASE WHEN $16 THEN $18 ELSE signing_secret END \
                             WHERE id = $1 RETURNING {KEY_COLUMNS}"
                        );
                        let credits = patch.credits.flatten();
                        let row: Option<KeyRow> = sqlx::query_as(&sql)
                            .bind(id.as_str())
                            .bind(patch.name.as_deref())
                            .bind(patch.scopes.as_ref().map(to_json))
                            .bind(patch.metadata.as_ref().map(to_json))
                            .bind(patch.expires_at.is_some())
                            .bind(patch.expires_at.flatten().map(millis))
                            .bind(patch.enabled)
                            .bind(millis(now))
                            .bind(patch.ratelimits.as_ref().map(to_json))
                            .bind(patch.ip_allowlist.as_ref().map(to_json))
                            .bind(patch.credits.is_some())
                            .bind(credits.map(|c| c.remaining.min(i64::MAX as u64) as i64))
                            .bind(credits.and_then(|c| c.refill).map(|r| to_json(&r)))
                            .bind(credits.map(|_| millis(now)))
                            .bind(patch.roles.as_ref().map(to_json))
                            .bind(patch.signing.is_some())
                            .bind(patch.signing.as_ref().and_then(|s| {
                                s.as_ref().map($crate::common::keys::signing_column)
                            }))
                            .bind(patch.signing.as_ref().and_then(|s| {
                                s.as_ref().and_then(|s| s.sealed_secret.clone())
                            }))
                            .fetch_optional(&mut **tx)
                            .await?;
                        let Some(row) = row else {
                            return Err(StoreError::NotFound);
                        };
                        let record = KeyRecord::try_from(row)?;
                        let changes = vec![Change::Key(record.digest.clone())];
                        Ok(Outcome::commit_with_changes(
                            record,
                            std::slice::from_ref(event),
                            changes,
                            now,
                        ))
                    })
                })
                .await
            }

            async fn revoke_key(
                &self,
                id: &KeyId,
                reason: &str,
                now: OffsetDateTime,
                event: &AuditEvent,
            ) -> Result<(KeyRecord, bool)> {
                let revoked = self
                    .audited(move |tx| {
                        Box::pin(async move {
                            let sql = format!(
                                "UPDATE keys SET revoked_at = $2, revoke_reason = $3, updated_at = $2 \
                                 WHERE id = $1 AND revoked_at IS NULL RETURNING {KEY_COLUMNS}"
                            );
                            let row: Option<KeyRow> = sqlx::query_as(&sql)
                                .bind(id.as_str())
                                .bind(millis(now))
                                .bind(reason)
                                .fetch_optional(&mut **tx)
                                .await?;
                            let Some(row) = row else {
                                return Ok(Outcome::Rollback(Ok(None)));
                            };
                            let record = KeyRecord::try_from(row)?;
                            let changes = vec![Change::Key(record.digest.clone())];
                            Ok(Outcome::commit_with_changes(
                                Some(record),
                                std::slice::from_ref(event),
                                changes,
                                now,
                            ))
                        })
                    })
                    .await?;
                match revoked {
                    Some(record) => Ok((record, true)),
                    None => {
                        let record = self.get_key(id).await?.ok_or(StoreError::NotFound)?;
                        Ok((record, false))
                    }
                }
            }

            async fn rotate_key(&self, rotation: &Rotation, events: &[AuditEvent]) -> Result<()> {
                let rotated = self
                    .audited(move |tx| {
                        Box::pin(async move {
                            let until = millis(rotation.old_expires_at);
                            let marked: Option<(Vec<u8>,)> = sqlx::query_as(
                                "UPDATE keys SET rotated_to = $2, updated_at = $3, \
                                   expires_at = CASE WHEN expires_at IS NULL OR expires_at > $4 \
                                                     THEN $4 ELSE expires_at END \
                                 WHERE id = $1 AND revoked_at IS NULL AND rotated_to IS NULL \
                                 RETURNING digest",
                            )
                            .bind(rotation.old.as_str())
                            .bind(rotation.successor.id.as_str())
                            .bind(millis(rotation.successor.created_at))
                            .bind(until)
                            .fetch_optional(&mut **tx)
                            .await?;
                            let Some((old_digest,)) = marked else {
                                return Ok(Outcome::Rollback(Ok(false)));
                            };
                            insert_key(tx, &rotation.successor).await?;
                            let old_digest = $crate::rows::digest("keys", &old_digest)?;
                            Ok(Outcome::commit_with_changes(
                                true,
                                events,
                                vec![Change::Key(old_digest)],
                                rotation.successor.created_at,
                            ))
                        })
                    })
                    .await?;
                if rotated {
                    return Ok(());
                }
                match self.get_key(&rotation.old).await? {
                    None => Err(StoreError::NotFound),
                    Some(_) => Err(StoreError::Conflict(
                        "the key is revoked or was already rotated",
                    )),
                }
            }

            async fn bulk_revoke(
                &self,
                filter: &BulkRevokeFilter,
                reason: &str,
                now: OffsetDateTime,
                template: &AuditEvent,
            ) -> Result<Vec<KeyDigest>> {
                if !filter.has_criteria() {
                    return Err(StoreError::Conflict("a bulk revocation needs a filter"));
                }
                self.audited(move |tx| {
                    Box::pin(async move {
                        let mut q: QueryBuilder<$db> =
                            QueryBuilder::new("UPDATE keys SET revoked_at = ");
                        q.push_bind(millis(now))
                            .push(", updated_at = ")
                            .push_bind(millis(now))
                            .push(", revoke_reason = ")
                            .push_bind(reason.to_owned())
                            .push(" WHERE revoked_at IS NULL");
                        if let Some(owner) = &filter.owner {
                            q.push(" AND owner = ").push_bind(owner.clone());
                        }
                        if let Some(api_id) = &filter.api_id {
                            q.push(" AND api_id = ")
                                .push_bind(api_id.as_str().to_owned());
                        }
                        if let Some(env) = filter.environment {
                            q.push(" AND environment = ").push_bind(env.as_str());
                        }
                        if let Some(before) = filter.created_before {
                            q.push(" AND created_at < ").push_bind(millis(before));
                        }
                        if let Some(scope) = &filter.scope {
                            q.push(" AND ")
                                .push(Self::DIALECT.scope_match_open)
                                .push_bind(scope.as_str().to_owned())
                                .push(Self::DIALECT.scope_match_close);
                        }
                        push_key_filter(
                            &mut q,
                            &filter.api_ids_within,
                            &filter.environments_within,
                        );
                        q.push(" RETURNING id, digest");
                        let rows: Vec<(String, Vec<u8>)> =
                            q.build_query_as().fetch_all(&mut **tx).await?;
                        let mut events = Vec::with_capacity(rows.len());
                        let mut digests = Vec::with_capacity(rows.len());
                        for (id, digest) in rows {
                            digests.push($crate::rows::digest("keys", &digest)?);
                            events.push(AuditEvent {
                                id: $crate::event_id(now)?,
                                target: id,
                                ..template.clone()
                            });
                        }
                        let changes: Vec<Change> =
                            digests.iter().cloned().map(Change::Key).collect();
                        Ok(Outcome::commit_with_changes(digests, events, changes, now))
                    })
                })
                .await
            }
        }
    };
}

pub(crate) use impl_key_store;
