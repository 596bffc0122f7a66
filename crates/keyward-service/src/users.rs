//! People: admin users, signing in, their second factor, step-up, and the
//! workspaces and roles their grants name.
//!
//! - A password is checked with Argon2id; an unknown e-mail spends the same
//!   work and answers the same `UNAUTHENTICATED`, so the answer does not
//!   tell who has an account.
//! - Failed sign-ins and second factors are counted per user and per source
//!   address; past the limit the answer is `TOO_MANY_ATTEMPTS` before any
//!   password is checked. Each failure is audited.
//! - A TOTP code is accepted once: the step it came from is stored with the
//!   sign-in or step-up that spent it, in one transaction, and only later
//!   steps are accepted after it. A recovery code is removed as it is used.
//! - A session is an admin token with the `kws` prefix, for
//!   `session_ttl`. Its grants are its user's as they are now: a change to
//!   the user's roles, or to a custom role they hold, reaches every node's
//!   token cache through the change feed. Disabling a user or changing the
//!   password revokes every session of the user.
//! - Granting is bounded: a grant may be given only by an actor one of
//!   whose grants holds the role's every scope over the grant's reach.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

use keyward_core::access::{self, check_name, check_password, normalize_email, BuiltinRole};
use keyward_core::{
    AdminScope, AdminToken, AuditAction, CustomRole, Environment, PlaintextKey, Prefix, RoleGrant,
    TokenId, User, UserId, Workspace,
};
use keyward_crypto::{password, totp};
use keyward_store::{Factor, Page, StoredUser, UserPatch, UserSecrets};
use serde_json::json;
use time::{Duration, OffsetDateTime};

use crate::records::totp_identity;
use crate::{audit_event, now, Actor, Error, Service};

/// How sign-in and step-up behave.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// How long a second factor counts for critical operations.
    pub step_up_window: Duration,
    /// How long a session lasts.
    pub session_ttl: Duration,
    /// The issuer authenticator apps show beside the account.
    pub issuer: String,
    /// Failed attempts per user, and per source address, within
    /// `attempt_window` before further ones are refused.
    pub max_failures_per_user: u32,
    pub max_failures_per_source: u32,
    pub attempt_window: std::time::Duration,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            step_up_window: Duration::minutes(5),
            session_ttl: Duration::hours(12),
            issuer: "Keyward".to_owned(),
            max_failures_per_user: 10,
            max_failures_per_source: 50,
            attempt_window: std::time::Duration::from_secs(15 * 60),
        }
    }
}

/// Failed attempts, per user and per source address, in fixed windows.
#[derive(Default)]
pub(crate) struct Attempts {
    failures: Mutex<HashMap<String, (Instant, u32)>>,
}

/// Entries kept before old windows are swept.
const MAX_ATTEMPT_ENTRIES: usize = 100_000;

impl Attempts {
    /// Seconds until `key` may try again, when it is over `max`.
    fn blocked(&self, key: &str, max: u32, window: std::time::Duration) -> Option<u64> {
        let failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let (since, count) = failures.get(key)?;
        let elapsed = since.elapsed();
        (elapsed < window && *count >= max).then(|| (window - elapsed).as_secs().max(1))
    }

    fn fail(&self, key: &str, window: std::time::Duration) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if failures.len() >= MAX_ATTEMPT_ENTRIES {
            failures.retain(|_, (since, _)| since.elapsed() < window);
        }
        let entry = failures
            .entry(key.to_owned())
            .or_insert((Instant::now(), 0));
        if entry.0.elapsed() >= window {
            *entry = (Instant::now(), 0);
        }
        entry.1 += 1;
    }

    fn clear(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}

/// A user to create.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub email: String,
    pub password: String,
    pub grants: Vec<RoleGrant>,
}

/// A change to a user; `None` keeps a field.
#[derive(Debug, Clone, Default)]
pub struct UserChanges {
    pub grants: Option<Vec<RoleGrant>>,
    pub disabled: Option<bool>,
    pub password: Option<String>,
}

/// A sign-in attempt.
#[derive(Debug, Clone)]
pub struct SignIn {
    pub email: String,
    pub password: String,
    pub otp: Option<String>,
    pub source: Option<IpAddr>,
}

/// A session made by a sign-in; the plaintext is shown once.
pub struct Session {
    pub token: AdminToken,
    pub plaintext: PlaintextKey,
    pub user: User,
}

/// A TOTP enrolment waiting for its first code.
pub struct TotpEnrolment {
    /// Base32, for typing into an authenticator app.
    pub secret: String,
    /// The `otpauth://` URI a QR code carries.
    pub otpauth_uri: String,
}

/// A role as listed: built-in or custom, with its scopes.
#[derive(Debug, Clone)]
pub struct RoleInfo {
    pub name: String,
    pub scopes: Vec<AdminScope>,
    pub builtin: bool,
    pub environments: Option<Vec<Environment>>,
    pub description: Option<String>,
}

/// Who holds what, for the access review.
#[derive(Debug, Clone)]
pub struct Subject {
    pub kind: &'static str,
    pub id: String,
    pub name: String,
    pub grants: Vec<keyward_core::Grant>,
    pub totp_enrolled: bool,
    pub last_seen_at: Option<OffsetDateTime>,
    pub disabled: bool,
}

fn unix(at: OffsetDateTime) -> u64 {
    u64::try_from(at.unix_timestamp()).unwrap_or(0)
}

impl Service {
    // --- Users ---------------------------------------------------------

    /// Creates a user with the grants given (each one the actor could
    /// give).
    pub async fn create_user(&self, actor: &Actor, new: NewUser) -> Result<User, Error> {
        actor.require(AdminScope::UsersWrite)?;
        if !actor.token.any_grant(|g| {
            g.has(AdminScope::UsersWrite) && g.api_ids.is_none() && g.environments.is_none()
        }) {
            return Err(Error::Forbidden(
                "creating users needs users:write over whole workspaces, without API or \
                 environment limits",
            ));
        }
        let email = normalize_email(&new.email)?;
        check_password(&new.password)?;
        self.check_grants(actor, &new.grants).await?;
        let now = now();
        actor.require_step_up(self.auth.step_up_window, now)?;
        let password_hash = hash_password(new.password).await?;
        let user = User {
            id: UserId::generate(now).map_err(Error::internal)?,
            email,
            grants: new.grants,
            totp_enrolled: false,
            created_at: now,
            updated_at: now,
            disabled_at: None,
            last_login_at: None,
        };
        let event = audit_event(
            Some(actor),
            AuditAction::UserCreate,
            user.id.as_str(),
            json!({ "email": user.email, "roles": user.grants }),
            now,
        )?;
        let stored = StoredUser {
            user: user.clone(),
            secrets: UserSecrets {
                password_hash,
                totp_secret: None,
                totp_pending: None,
                totp_last_step: None,
                recovery_codes: Vec::new(),
            },
        };
        self.store.create_user(&stored, &event).await?;
        Ok(user)
    }

    /// Up to `page.limit` users the actor sees, after `page.after`.
    pub async fn list_users(&self, actor: &Actor, page: Page) -> Result<Vec<User>, Error> {
        actor.require(AdminScope::UsersRead)?;
        let users = self.store.list_users(&page).await?;
        Ok(users
            .into_iter()
            .filter(|u| sees_user(actor, AdminScope::UsersRead, u))
            .collect())
    }

    pub async fn user(&self, actor: &Actor, id: &str) -> Result<User, Error> {
        actor.require(AdminScope::UsersRead)?;
        self.load_user(actor, AdminScope::UsersRead, id)
            .await
            .map(|s| s.user)
    }

    /// The signed-in user of a session; `None` for a service token. Needs
    /// no scope: everyone may read who they are.
    pub async fn own_user(&self, actor: &Actor) -> Result<Option<User>, Error> {
        match actor.user_id() {
            None => Ok(None),
            Some(_) => Ok(Some(self.session_user(actor).await?.user)),
        }
    }

    /// Changes a user's grants, password or whether it is disabled.
    pub async fn update_user(
        &self,
        actor: &Actor,
        id: &str,
        changes: UserChanges,
    ) -> Result<User, Error> {
        actor.require(AdminScope::UsersWrite)?;
        let stored = self.load_user(actor, AdminScope::UsersWrite, id).await?;
        // Changing a user — its roles, its password, whether it may sign
        // in — is taking over what it holds: only an actor who could grant
        // all of it may.
        self.check_grants(actor, &stored.user.grants)
            .await
            .map_err(|e| match e {
                Error::Forbidden(_) => Error::Forbidden(
                    "this user holds more than you could grant: only someone who could grant \
                     all of its roles may change it",
                ),
                other => other,
            })?;
        if let Some(grants) = &changes.grants {
            self.check_grants(actor, grants).await?;
        }
        if let Some(password) = &changes.password {
            check_password(password)?;
        }
        let now = now();
        actor.require_step_up(self.auth.step_up_window, now)?;
        if changes.disabled == Some(true) && actor.user_id() == Some(&stored.user.id) {
            return Err(Error::Conflict("a user cannot disable itself"));
        }
        let password_hash = match changes.password {
            Some(p) => Some(hash_password(p).await?),
            None => None,
        };
        let action = match (changes.disabled, &password_hash) {
            (Some(true), _) => AuditAction::UserDisable,
            (_, Some(_)) if changes.grants.is_none() => AuditAction::UserPassword,
            _ => AuditAction::UserUpdate,
        };
        let mut details = json!({});
        if let Some(grants) = &changes.grants {
            details["roles"] = json!(grants);
        }
        if let Some(disabled) = changes.disabled {
            details["disabled"] = json!(disabled);
        }
        if password_hash.is_some() {
            details["password_changed"] = json!(true);
        }
        let event = audit_event(Some(actor), action, stored.user.id.as_str(), details, now)?;
        let patch = UserPatch {
            grants: changes.grants,
            password_hash,
            disabled: changes.disabled,
        };
        let touched = self
            .store
            .update_user(&stored.user.id, &patch, now, &event)
            .await?;
        for digest in &touched {
            self.tokens.forget(digest);
        }
        self.load_user(actor, AdminScope::UsersRead, id)
            .await
            .map(|s| s.user)
    }

    /// A user's sessions.
    pub async fn user_sessions(&self, actor: &Actor, id: &str) -> Result<Vec<AdminToken>, Error> {
        actor.require(AdminScope::UsersRead)?;
        let stored = self.load_user(actor, AdminScope::UsersRead, id).await?;
        Ok(self.store.user_sessions(&stored.user.id).await?)
    }

    async fn load_user(
        &self,
        actor: &Actor,
        scope: AdminScope,
        id: &str,
    ) -> Result<StoredUser, Error> {
        let id = UserId::parse(id).map_err(|_| Error::NotFound("user"))?;
        self.store
            .get_user(&id)
            .await?
            .filter(|s| sees_user(actor, scope, &s.user) || actor.user_id() == Some(&s.user.id))
            .ok_or(Error::NotFound("user"))
    }

    /// Refuses grants naming an unknown role or workspace, and grants the
    /// actor could not hold itself.
    async fn check_grants(&self, actor: &Actor, grants: &[RoleGrant]) -> Result<(), Error> {
        if grants.len() > 64 {
            return Err(Error::InvalidRequest(
                "a user holds at most 64 grants".into(),
            ));
        }
        let custom = self.store.list_roles().await?;
        for grant in grants {
            let scopes = role_scopes(&grant.role, &custom)?;
            if let Some(workspace) = &grant.workspace {
                check_name("workspace", workspace)?;
                if self.store.get_workspace(workspace).await?.is_none() {
                    return Err(Error::NotFound("workspace"));
                }
            }
            let environments = access::grant_environments(
                BuiltinRole::parse(&grant.role),
                grant.environments.as_deref(),
            );
            if environments.as_ref().is_some_and(Vec::is_empty) {
                return Err(Error::InvalidRequest(format!(
                    "the role {} reaches none of the environments named",
                    grant.role
                )));
            }
            let covered = actor.token.any_grant(|g| {
                scopes.iter().all(|s| g.has(*s))
                    && g.api_ids.is_none()
                    && match (g.workspaces, &grant.workspace) {
                        (None, _) => true,
                        (Some(_), None) => false,
                        (Some(names), Some(w)) => names.contains(w),
                    }
                    && match (g.environments, &environments) {
                        (None, _) => true,
                        (Some(_), None) => false,
                        (Some(outer), Some(inner)) => inner.iter().all(|e| outer.contains(e)),
                    }
            });
            if !covered {
                return Err(Error::Forbidden(
                    "a grant cannot give more than the granter holds: every scope of the role, \
                     over the workspace and environments named",
                ));
            }
        }
        Ok(())
    }

    // --- Signing in ----------------------------------------------------

    /// Signs a user in with a password and, when enrolled, a TOTP or
    /// recovery code.
    pub async fn login(&self, sign_in: SignIn) -> Result<Session, Error> {
        let auth = &self.auth;
        let email = normalize_email(&sign_in.email).unwrap_or_default();
        let user_key = format!("user:{email}");
        let source_key = sign_in.source.map(|ip| format!("ip:{ip}"));
        let blocked = self
            .attempts
            .blocked(&user_key, auth.max_failures_per_user, auth.attempt_window)
            .or_else(|| {
                source_key.as_deref().and_then(|k| {
                    self.attempts
                        .blocked(k, auth.max_failures_per_source, auth.attempt_window)
                })
            });
        if let Some(retry_after_s) = blocked {
            return Err(Error::TooManyAttempts { retry_after_s });
        }
        let found = if email.is_empty() {
            None
        } else {
            self.store.find_user_by_email(&email).await?
        };
        let password = sign_in.password.clone();
        let stored = match found {
            Some(stored) => {
                let hash = stored.secrets.password_hash.clone();
                let ok = tokio::task::spawn_blocking(move || password::verify(&password, &hash))
                    .await
                    .map_err(Error::internal)?;
                ok.then_some(stored)
            }
            None => {
                tokio::task::spawn_blocking(move || password::verify_nobody(&password))
                    .await
                    .map_err(Error::internal)?;
                None
            }
        };
        let Some(stored) = stored.filter(|s| s.user.disabled_at.is_none()) else {
            self.failed(&user_key, source_key.as_deref(), "password", &email, None)
                .await?;
            return Err(Error::Unauthenticated);
        };
        let now = now();
        let factor = match (&stored.secrets.totp_secret, sign_in.otp.as_deref()) {
            (None, _) => None,
            (Some(_), None) => return Err(Error::MfaRequired),
            (Some(_), Some(code)) => match self.second_factor(&stored, code, now).await? {
                Some(factor) => Some(factor),
                None => {
                    self.failed(
                        &user_key,
                        source_key.as_deref(),
                        "otp",
                        &email,
                        Some(&stored.user.id),
                    )
                    .await?;
                    return Err(Error::Unauthenticated);
                }
            },
        };
        let plaintext = PlaintextKey::generate(&Prefix::session(), Environment::Live)
            .map_err(Error::internal)?;
        let token = AdminToken {
            id: TokenId::generate(now).map_err(Error::internal)?,
            name: format!("session of {}", stored.user.email),
            digest: plaintext.digest(),
            start: plaintext.display_start(),
            scopes: Vec::new(),
            api_ids: None,
            environments: None,
            created_by: None,
            created_at: now,
            expires_at: Some(now + auth.session_ttl),
            revoked_at: None,
            workspaces: None,
            user_id: Some(stored.user.id.clone()),
            grants: Vec::new(),
            stepped_up_at: factor.is_some().then_some(now),
            client_cert: None,
            last_used_at: None,
        };
        let event = audit_event(
            None,
            AuditAction::UserLogin,
            stored.user.id.as_str(),
            json!({
                "email": stored.user.email,
                "session": token.id,
                "second_factor": factor.as_ref().map(factor_kind),
                "source": sign_in.source.map(|ip| ip.to_string()),
            }),
            now,
        )?;
        if !self.store.sign_in(&token, factor.as_ref(), &event).await? {
            // The factor was spent between the check and the write.
            self.failed(
                &user_key,
                source_key.as_deref(),
                "otp",
                &email,
                Some(&stored.user.id),
            )
            .await?;
            return Err(Error::Unauthenticated);
        }
        self.attempts.clear(&user_key);
        let session = self
            .store
            .get_token(&token.id)
            .await?
            .ok_or(Error::NotFound("session"))?;
        let mut user = stored.user;
        user.last_login_at = Some(now);
        Ok(Session {
            token: session,
            plaintext,
            user,
        })
    }

    /// Counts and audits a failed attempt.
    async fn failed(
        &self,
        user_key: &str,
        source_key: Option<&str>,
        stage: &str,
        email: &str,
        user: Option<&UserId>,
    ) -> Result<(), Error> {
        let window = self.auth.attempt_window;
        self.attempts.fail(user_key, window);
        if let Some(k) = source_key {
            self.attempts.fail(k, window);
        }
        let now = now();
        let event = audit_event(
            None,
            AuditAction::UserLoginFailed,
            user.map(UserId::as_str).unwrap_or(""),
            json!({ "email": email, "failed": stage,
                    "source": source_key.map(|k| k.trim_start_matches("ip:")) }),
            now,
        )?;
        self.store
            .append_audit(std::slice::from_ref(&event))
            .await?;
        Ok(())
    }

    /// The factor `code` proves for `stored` at `now`: a fresh TOTP step or
    /// an unused recovery code. `None` when it proves nothing.
    async fn second_factor(
        &self,
        stored: &StoredUser,
        code: &str,
        now: OffsetDateTime,
    ) -> Result<Option<Factor>, Error> {
        if totp::is_recovery_code(code) {
            let digest = base16ct::lower::encode_string(&totp::recovery_digest(code));
            let known = stored.secrets.recovery_codes.iter().any(|d| {
                bool::from(subtle::ConstantTimeEq::ct_eq(
                    d.as_bytes(),
                    digest.as_bytes(),
                ))
            });
            return Ok(known.then_some(Factor::Recovery { digest }));
        }
        let Some(envelope) = &stored.secrets.totp_secret else {
            return Ok(None);
        };
        let secret = self.open_totp(&stored.user.id, envelope).await?;
        Ok(fresh_step(&secret, stored, code, now).map(|step| Factor::Totp { step }))
    }

    async fn open_totp(&self, user: &UserId, envelope: &[u8]) -> Result<totp::Secret, Error> {
        let opened = self
            .barrier
            .open_envelope(&totp_identity(user.as_str()), envelope)
            .await?;
        Ok(totp::Secret::from_bytes(opened.to_vec()))
    }

    /// Ends the actor's own session.
    pub async fn logout(&self, actor: &Actor) -> Result<(), Error> {
        let Some(user) = actor.user_id() else {
            return Err(Error::InvalidRequest(
                "only a session signs out; revoke a service token with DELETE /v1/auth/tokens/{id}"
                    .into(),
            ));
        };
        let now = now();
        let event = audit_event(
            Some(actor),
            AuditAction::UserLogout,
            user.as_str(),
            json!({ "session": actor.id() }),
            now,
        )?;
        self.store.revoke_token(actor.id(), now, &event).await?;
        self.tokens.forget(&actor.token.digest);
        Ok(())
    }

    // --- Second factor -------------------------------------------------

    /// Starts a TOTP enrolment for the signed-in user. Replacing a
    /// confirmed secret needs a step-up with the old one.
    pub async fn enroll_totp(&self, actor: &Actor) -> Result<TotpEnrolment, Error> {
        let stored = self.session_user(actor).await?;
        let now = now();
        if stored.user.totp_enrolled {
            actor.require_step_up(self.auth.step_up_window, now)?;
        }
        let secret = totp::Secret::generate()?;
        let keyring = self.barrier.keyring()?;
        self.barrier.spend_keyring(1).await?;
        let envelope = keyring
            .encrypt(&totp_identity(stored.user.id.as_str()), secret.as_bytes())
            .map_err(Error::internal)?;
        let event = audit_event(
            Some(actor),
            AuditAction::UserTotpEnroll,
            stored.user.id.as_str(),
            json!({}),
            now,
        )?;
        self.store
            .set_totp_pending(&stored.user.id, &envelope, &event)
            .await?;
        Ok(TotpEnrolment {
            secret: secret.base32(),
            otpauth_uri: secret.otpauth_uri(&self.auth.issuer, &stored.user.email),
        })
    }

    /// Confirms the pending enrolment with a first code; returns the
    /// recovery codes, shown once.
    pub async fn confirm_totp(&self, actor: &Actor, otp: &str) -> Result<Vec<String>, Error> {
        let stored = self.session_user(actor).await?;
        let Some(pending) = &stored.secrets.totp_pending else {
            return Err(Error::Conflict(
                "no TOTP enrolment is waiting: POST /v1/auth/totp first",
            ));
        };
        let now = now();
        let secret = self.open_totp(&stored.user.id, pending).await?;
        let Some(step) = fresh_step(&secret, &stored, otp, now) else {
            return Err(Error::InvalidRequest(
                "the code does not match the enrolled secret (check the device's clock)".into(),
            ));
        };
        let (codes, digests) = totp::recovery_codes()?;
        let digests: Vec<String> = digests
            .iter()
            .map(|d| base16ct::lower::encode_string(d))
            .collect();
        let event = audit_event(
            Some(actor),
            AuditAction::UserTotpConfirm,
            stored.user.id.as_str(),
            json!({ "recovery_codes": codes.len() }),
            now,
        )?;
        self.store
            .confirm_totp(&stored.user.id, step, &digests, &event)
            .await?;
        Ok(codes)
    }

    /// Raises the session's step-up with a TOTP or recovery code; returns
    /// until when it holds.
    pub async fn step_up(&self, actor: &Actor, otp: &str) -> Result<OffsetDateTime, Error> {
        let stored = self.session_user(actor).await?;
        if !stored.user.totp_enrolled {
            return Err(Error::Conflict(
                "stepping up needs TOTP: enrol with POST /v1/auth/totp and confirm it first",
            ));
        }
        let auth = &self.auth;
        let user_key = format!("user:{}", stored.user.email);
        if let Some(retry_after_s) =
            self.attempts
                .blocked(&user_key, auth.max_failures_per_user, auth.attempt_window)
        {
            return Err(Error::TooManyAttempts { retry_after_s });
        }
        let now = now();
        let factor = self.second_factor(&stored, otp, now).await?;
        let event = |action, details| {
            audit_event(Some(actor), action, stored.user.id.as_str(), details, now)
        };
        let Some(factor) = factor else {
            self.attempts.fail(&user_key, auth.attempt_window);
            self.store
                .append_audit(&[event(AuditAction::UserStepUpFailed, json!({}))?])
                .await?;
            return Err(Error::InvalidRequest(
                "the code is not valid, or was used already".into(),
            ));
        };
        let ok = event(
            AuditAction::UserStepUp,
            json!({ "second_factor": factor_kind(&factor) }),
        )?;
        match self
            .store
            .step_up(actor.id(), &stored.user.id, &factor, now, &ok)
            .await?
        {
            Some(digest) => {
                self.tokens.forget(&digest);
                self.attempts.clear(&user_key);
                Ok(now + auth.step_up_window)
            }
            None => Err(Error::InvalidRequest(
                "the code is not valid, or was used already".into(),
            )),
        }
    }

    /// The signed-in user of a session actor.
    async fn session_user(&self, actor: &Actor) -> Result<StoredUser, Error> {
        let Some(id) = actor.user_id() else {
            return Err(Error::InvalidRequest(
                "this needs a signed-in user's session (POST /v1/auth/login), not a service token"
                    .into(),
            ));
        };
        self.store
            .get_user(id)
            .await?
            .filter(|s| s.user.disabled_at.is_none())
            .ok_or(Error::Unauthenticated)
    }

    // --- Workspaces and roles -----------------------------------------

    /// Creates a workspace: needs `apis:write` over every workspace.
    pub async fn create_workspace(&self, actor: &Actor, name: &str) -> Result<Workspace, Error> {
        actor.require(AdminScope::ApisWrite)?;
        if !actor.is_node_wide(AdminScope::ApisWrite) {
            return Err(Error::Forbidden(
                "creating a workspace needs apis:write without workspace, API or environment limits",
            ));
        }
        check_name("name", name)?;
        let now = now();
        let workspace = Workspace {
            name: name.to_owned(),
            created_at: now,
        };
        let event = audit_event(
            Some(actor),
            AuditAction::WorkspaceCreate,
            name,
            json!({}),
            now,
        )?;
        self.store.create_workspace(&workspace, &event).await?;
        Ok(workspace)
    }

    /// The workspaces the actor reaches something of.
    pub async fn list_workspaces(&self, actor: &Actor) -> Result<Vec<Workspace>, Error> {
        actor.require(AdminScope::ApisRead)?;
        let all = self.store.list_workspaces().await?;
        Ok(all
            .into_iter()
            .filter(|w| {
                actor.token.any_grant(|g| {
                    g.has(AdminScope::ApisRead)
                        && g.workspaces.is_none_or(|names| names.contains(&w.name))
                })
            })
            .collect())
    }

    /// Every role: the built-in ones, then the custom ones.
    pub async fn list_roles(&self, actor: &Actor) -> Result<Vec<RoleInfo>, Error> {
        actor.require(AdminScope::UsersRead)?;
        let mut roles: Vec<RoleInfo> = BuiltinRole::ALL
            .iter()
            .map(|r| RoleInfo {
                name: r.as_str().to_owned(),
                scopes: r.scopes().to_vec(),
                builtin: true,
                environments: r.environments().map(<[Environment]>::to_vec),
                description: Some(r.description().to_owned()),
            })
            .collect();
        roles.extend(
            self.store
                .list_roles()
                .await?
                .into_iter()
                .map(|r| RoleInfo {
                    name: r.name,
                    scopes: r.scopes,
                    builtin: false,
                    environments: None,
                    description: None,
                }),
        );
        Ok(roles)
    }

    /// Creates or replaces a custom role; every session of a user holding
    /// it reads its new scopes on its next request, on every node.
    pub async fn put_role(
        &self,
        actor: &Actor,
        name: &str,
        scopes: Vec<String>,
    ) -> Result<RoleInfo, Error> {
        actor.require(AdminScope::UsersWrite)?;
        check_name("name", name)?;
        if BuiltinRole::parse(name).is_some() {
            return Err(Error::Conflict("built-in roles cannot be changed"));
        }
        let mut scopes = scopes
            .iter()
            .map(|s| AdminScope::parse(s))
            .collect::<Result<Vec<_>, _>>()?;
        scopes.sort();
        scopes.dedup();
        if scopes.is_empty() {
            return Err(Error::InvalidRequest(
                "a role needs at least one scope".into(),
            ));
        }
        if !actor.is_node_wide_for(&scopes) || !actor.is_node_wide(AdminScope::UsersWrite) {
            return Err(Error::Forbidden(
                "defining a role needs every one of its scopes, and users:write, without limits",
            ));
        }
        let now = now();
        actor.require_step_up(self.auth.step_up_window, now)?;
        let existing = self.store.list_roles().await?;
        let created_at = existing
            .iter()
            .find(|r| r.name == name)
            .map_or(now, |r| r.created_at);
        let action = if created_at == now {
            AuditAction::RoleCreate
        } else {
            AuditAction::RoleUpdate
        };
        let role = CustomRole {
            name: name.to_owned(),
            scopes: scopes.clone(),
            created_at,
            updated_at: now,
        };
        let event = audit_event(Some(actor), action, name, json!({ "scopes": scopes }), now)?;
        for digest in self.store.put_role(&role, &event).await? {
            self.tokens.forget(&digest);
        }
        Ok(RoleInfo {
            name: role.name,
            scopes: role.scopes,
            builtin: false,
            environments: None,
            description: None,
        })
    }

    /// Deletes a custom role no user holds.
    pub async fn delete_role(&self, actor: &Actor, name: &str) -> Result<(), Error> {
        actor.require(AdminScope::UsersWrite)?;
        if BuiltinRole::parse(name).is_some() {
            return Err(Error::Conflict("built-in roles cannot be deleted"));
        }
        if !actor.is_node_wide(AdminScope::UsersWrite) {
            return Err(Error::Forbidden(
                "deleting a role needs users:write without limits",
            ));
        }
        let now = now();
        actor.require_step_up(self.auth.step_up_window, now)?;
        let event = audit_event(Some(actor), AuditAction::RoleDelete, name, json!({}), now)?;
        self.store
            .delete_role(name, &event)
            .await
            .map_err(|e| match e {
                keyward_store::StoreError::NotFound => Error::NotFound("role"),
                other => other.into(),
            })
    }

    // --- The access review --------------------------------------------

    /// Every user and usable service token, with what it holds where, when
    /// it was last seen and whether it has a second factor: the evidence an
    /// access review asks for. Needs `users:read` and `tokens:read` without
    /// limits.
    pub async fn access_review(&self, actor: &Actor) -> Result<Vec<Subject>, Error> {
        actor.require(AdminScope::UsersRead)?;
        actor.require(AdminScope::TokensRead)?;
        if !actor.is_node_wide(AdminScope::UsersRead) || !actor.is_node_wide(AdminScope::TokensRead)
        {
            return Err(Error::Forbidden(
                "the access review covers the whole node: it needs users:read and tokens:read \
                 without limits",
            ));
        }
        let custom = self.store.list_roles().await?;
        let mut subjects = Vec::new();
        let mut page = Page {
            after: None,
            limit: 500,
        };
        loop {
            let users = self.store.list_users(&page).await?;
            let full = users.len() == page.limit as usize;
            for user in users {
                page.after = Some(user.id.as_str().to_owned());
                let grants = access::expand_grants(&user.grants, |name| {
                    custom
                        .iter()
                        .find(|r| r.name == name)
                        .map(|r| r.scopes.clone())
                });
                subjects.push(Subject {
                    kind: "user",
                    id: user.id.as_str().to_owned(),
                    name: user.email,
                    grants,
                    totp_enrolled: user.totp_enrolled,
                    last_seen_at: user.last_login_at,
                    disabled: user.disabled_at.is_some(),
                });
            }
            if !full {
                break;
            }
        }
        let now = now();
        let mut page = Page {
            after: None,
            limit: 500,
        };
        loop {
            let tokens = self.store.list_tokens(&page).await?;
            let full = tokens.len() == page.limit as usize;
            for token in tokens {
                page.after = Some(token.id.as_str().to_owned());
                if !token.is_usable(now) {
                    continue;
                }
                let grant = keyward_core::Grant {
                    role: "token".to_owned(),
                    scopes: token.scopes.clone(),
                    workspace: token.workspaces.as_ref().and_then(|w| w.first().cloned()),
                    environments: token.environments.clone(),
                };
                subjects.push(Subject {
                    kind: "token",
                    id: token.id.as_str().to_owned(),
                    name: token.name,
                    grants: vec![grant],
                    totp_enrolled: false,
                    last_seen_at: token.last_used_at,
                    disabled: false,
                });
            }
            if !full {
                break;
            }
        }
        Ok(subjects)
    }
}

/// Whether the actor sees `user` with `scope`. Users belong to no API:
/// only a grant without API limits sees any. One without workspace limits
/// sees everyone; one limited to workspaces sees users all of whose grants
/// are inside them. Changing a user (`users:write`) needs a grant without
/// environment limits too.
fn sees_user(actor: &Actor, scope: AdminScope, user: &User) -> bool {
    actor.token.any_grant(|g| {
        g.has(scope)
            && g.api_ids.is_none()
            && (scope != AdminScope::UsersWrite || g.environments.is_none())
            && match g.workspaces {
                None => true,
                Some(names) => {
                    !user.grants.is_empty()
                        && user
                            .grants
                            .iter()
                            .all(|ug| ug.workspace.as_ref().is_some_and(|w| names.contains(w)))
                }
            }
    })
}

fn role_scopes(role: &str, custom: &[CustomRole]) -> Result<Vec<AdminScope>, Error> {
    if let Some(builtin) = BuiltinRole::parse(role) {
        return Ok(builtin.scopes().to_vec());
    }
    custom
        .iter()
        .find(|r| r.name == role)
        .map(|r| r.scopes.clone())
        .ok_or_else(|| {
            Error::InvalidRequest(format!(
                "unknown role {role:?}: built-in roles are {}; GET /v1/roles lists the custom ones",
                BuiltinRole::NAMES.join(", ")
            ))
        })
}

/// The step of `code` under `secret` at `now`, when it is later than the
/// last step `stored` accepted.
fn fresh_step(
    secret: &totp::Secret,
    stored: &StoredUser,
    code: &str,
    now: OffsetDateTime,
) -> Option<i64> {
    let after = stored
        .secrets
        .totp_last_step
        .and_then(|s| u64::try_from(s).ok());
    secret
        .check(code, unix(now), after)
        .and_then(|step| i64::try_from(step).ok())
}

fn factor_kind(factor: &Factor) -> &'static str {
    match factor {
        Factor::Totp { .. } => "totp",
        Factor::Recovery { .. } => "recovery_code",
    }
}

async fn hash_password(password: String) -> Result<String, Error> {
    tokio::task::spawn_blocking(move || password::hash(&password))
        .await
        .map_err(Error::internal)?
        .map_err(Error::internal)
}
