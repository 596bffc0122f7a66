//! Admin users, the workspaces that hold APIs, and custom roles. Users'
//! sessions are admin tokens (`TokenStore`) naming their user.

use async_trait::async_trait;
use keyward_core::{
    AdminToken, AuditEvent, CustomRole, KeyDigest, RoleGrant, TokenId, User, UserId, Workspace,
};
use time::OffsetDateTime;

use crate::{Page, Result};

/// What signing a user in needs beyond the [`User`]. None of it is shown.
#[derive(Debug, Clone, PartialEq)]
pub struct UserSecrets {
    /// The Argon2id PHC string.
    pub password_hash: String,
    /// The confirmed TOTP secret, as a keyring envelope.
    pub totp_secret: Option<Vec<u8>>,
    /// A TOTP secret enrolled but not confirmed by a first code yet.
    pub totp_pending: Option<Vec<u8>>,
    /// The last TOTP step accepted: no code of it or before is accepted.
    pub totp_last_step: Option<i64>,
    /// Hex SHA-256 digests of the unused recovery codes.
    pub recovery_codes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StoredUser {
    pub user: User,
    pub secrets: UserSecrets,
}

/// A second factor a sign-in or step-up spends, atomically with what it
/// grants: a TOTP step later than the last accepted, or an unused
/// recovery code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Factor {
    Totp { step: i64 },
    Recovery { digest: String },
}

/// A change to a user; `None` keeps a field.
#[derive(Debug, Clone, Default)]
pub struct UserPatch {
    pub grants: Option<Vec<RoleGrant>>,
    pub password_hash: Option<String>,
    pub disabled: Option<bool>,
}

#[async_trait]
pub trait AccessStore: Send + Sync {
    /// `Conflict` when the name is taken.
    async fn create_workspace(&self, workspace: &Workspace, event: &AuditEvent) -> Result<()>;

    async fn get_workspace(&self, name: &str) -> Result<Option<Workspace>>;

    async fn list_workspaces(&self) -> Result<Vec<Workspace>>;

    /// Creates or replaces a custom role. Returns the digests of the
    /// unrevoked sessions of users holding it, with a change-feed entry for
    /// each, so every node reads their grants again.
    async fn put_role(&self, role: &CustomRole, event: &AuditEvent) -> Result<Vec<KeyDigest>>;

    /// Deletes a custom role: `NotFound`, or `Conflict` while a user holds
    /// it.
    async fn delete_role(&self, name: &str, event: &AuditEvent) -> Result<()>;

    async fn list_roles(&self) -> Result<Vec<CustomRole>>;

    /// `Conflict` when the e-mail is taken.
    async fn create_user(&self, user: &StoredUser, event: &AuditEvent) -> Result<()>;

    async fn get_user(&self, id: &UserId) -> Result<Option<StoredUser>>;

    /// By the lower-cased e-mail.
    async fn find_user_by_email(&self, email: &str) -> Result<Option<StoredUser>>;

    async fn list_users(&self, page: &Page) -> Result<Vec<User>>;

    /// Applies `patch` at `now`. Disabling the user or changing the
    /// password revokes every session of the user; a change of grants
    /// keeps them. Either way each affected session gets a change-feed
    /// entry, and its digest is returned for this node's cache.
    /// `NotFound` when there is no such user.
    async fn update_user(
        &self,
        id: &UserId,
        patch: &UserPatch,
        now: OffsetDateTime,
        event: &AuditEvent,
    ) -> Result<Vec<KeyDigest>>;

    /// Keeps a TOTP secret enrolled but not yet confirmed (replacing any
    /// earlier one not confirmed).
    async fn set_totp_pending(
        &self,
        id: &UserId,
        envelope: &[u8],
        event: &AuditEvent,
    ) -> Result<()>;

    /// Makes the pending secret the user's, with `step` as the last
    /// accepted and `recovery_codes` replacing any earlier ones; `Conflict`
    /// when nothing is pending or the step is not later than the last.
    async fn confirm_totp(
        &self,
        id: &UserId,
        step: i64,
        recovery_codes: &[String],
        event: &AuditEvent,
    ) -> Result<()>;

    /// Stores a session for its user, spending `factor` in the same
    /// transaction and setting the user's last sign-in. `false` (and
    /// nothing stored) when the factor was spent already: a replay.
    async fn sign_in(
        &self,
        session: &AdminToken,
        factor: Option<&Factor>,
        event: &AuditEvent,
    ) -> Result<bool>;

    /// Records a second factor on a session: spends `factor` and sets its
    /// `stepped_up_at`, with a change-feed entry. The session's digest, or
    /// `None` when the factor was spent already.
    async fn step_up(
        &self,
        session: &TokenId,
        user: &UserId,
        factor: &Factor,
        at: OffsetDateTime,
        event: &AuditEvent,
    ) -> Result<Option<KeyDigest>>;

    /// A user's sessions, newest last.
    async fn user_sessions(&self, user: &UserId) -> Result<Vec<AdminToken>>;
}
