//! The bodies of users, sign-in, the second factor, workspaces, roles and
//! the access review.

use keyward_core::{AdminToken, Environment, Grant, RoleGrant, TokenId, User, UserId};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::AdminScopeName;

/// A role given to a user, in one workspace (every workspace when absent)
/// and optionally only some environments.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantBody {
    /// A built-in role (`owner`, `admin`, `operator`, `developer`,
    /// `auditor`, `read-only`) or a custom one.
    #[schema(pattern = r"^[a-z0-9][a-z0-9_-]{0,62}$")]
    pub role: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = r"^[a-z0-9][a-z0-9_-]{0,62}$")]
    pub workspace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environments: Option<Vec<Environment>>,
}

impl From<GrantBody> for RoleGrant {
    fn from(g: GrantBody) -> Self {
        RoleGrant {
            role: g.role,
            workspace: g.workspace,
            environments: g.environments,
        }
    }
}

impl From<RoleGrant> for GrantBody {
    fn from(g: RoleGrant) -> Self {
        GrantBody {
            role: g.role,
            workspace: g.workspace,
            environments: g.environments,
        }
    }
}

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserCreate {
    /// The login name.
    #[schema(max_length = 254, example = "ops@example.com")]
    pub email: String,
    /// 12 to 256 characters, not one of the most common passwords.
    #[schema(min_length = 12, max_length = 256)]
    pub password: String,
    #[serde(default)]
    pub roles: Vec<GrantBody>,
}

/// A change to a user: absent fields stay as they are.
#[derive(Deserialize, Serialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct UserUpdate {
    /// Replaces every grant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<GrantBody>>,
    /// Disabling revokes every session of the user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
    /// A new password; every session of the user is revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 12, max_length = 256)]
    pub password: Option<String>,
}

#[derive(Deserialize, Serialize, ToSchema)]
pub struct UserView {
    pub id: UserId,
    pub email: String,
    pub roles: Vec<GrantBody>,
    pub totp_enrolled: bool,
    pub disabled: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_login_at: Option<OffsetDateTime>,
}

impl From<User> for UserView {
    fn from(u: User) -> Self {
        UserView {
            id: u.id,
            email: u.email,
            roles: u.grants.into_iter().map(GrantBody::from).collect(),
            totp_enrolled: u.totp_enrolled,
            disabled: u.disabled_at.is_some(),
            created_at: u.created_at,
            last_login_at: u.last_login_at,
        }
    }
}

#[derive(Deserialize, Serialize, ToSchema)]
pub struct UserList {
    pub users: Vec<UserView>,
    pub next_cursor: Option<String>,
}

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
    /// The current TOTP code, or a recovery code; needed once TOTP is
    /// enrolled (`MFA_REQUIRED` without it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub otp: Option<String>,
}

/// A session: its token is shown this once.
#[derive(Deserialize, Serialize, ToSchema)]
pub struct LoginAnswer {
    /// `kws_…`, for `Authorization: Bearer`.
    pub token: String,
    pub session_id: TokenId,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    pub user: UserView,
}

/// A session as listed under its user (never its plaintext).
#[derive(Deserialize, Serialize, ToSchema)]
pub struct SessionView {
    pub id: TokenId,
    pub start: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub stepped_up_at: Option<OffsetDateTime>,
}

impl From<AdminToken> for SessionView {
    fn from(t: AdminToken) -> Self {
        SessionView {
            id: t.id,
            start: t.start,
            created_at: t.created_at,
            expires_at: t.expires_at,
            revoked_at: t.revoked_at,
            stepped_up_at: t.stepped_up_at,
        }
    }
}

#[derive(Deserialize, Serialize, ToSchema)]
pub struct SessionList {
    pub sessions: Vec<SessionView>,
}

/// A TOTP enrolment waiting for its first code.
#[derive(Deserialize, Serialize, ToSchema)]
pub struct TotpEnrolled {
    /// Base32, to type into an authenticator app.
    pub secret: String,
    /// For a QR code.
    pub otpauth_uri: String,
}

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OtpBody {
    /// A six-digit TOTP code, or a recovery code.
    pub otp: String,
}

/// Shown once: each works once, in place of a TOTP code.
#[derive(Deserialize, Serialize, ToSchema)]
pub struct RecoveryCodes {
    pub recovery_codes: Vec<String>,
}

#[derive(Deserialize, Serialize, ToSchema)]
pub struct SteppedUp {
    #[serde(with = "time::serde::rfc3339")]
    pub stepped_up_until: OffsetDateTime,
}

/// Who is calling.
#[derive(Deserialize, Serialize, ToSchema)]
pub struct WhoAmI {
    pub token_id: TokenId,
    pub user: Option<UserView>,
    #[schema(value_type = Vec<String>)]
    pub scopes: Vec<String>,
    pub grants: Vec<GrantView>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub stepped_up_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
}

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkspaceCreate {
    #[schema(pattern = r"^[a-z0-9][a-z0-9_-]{0,62}$")]
    pub name: String,
}

#[derive(Deserialize, Serialize, ToSchema)]
pub struct WorkspaceView {
    pub name: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

impl From<keyward_core::Workspace> for WorkspaceView {
    fn from(w: keyward_core::Workspace) -> Self {
        WorkspaceView {
            name: w.name,
            created_at: w.created_at,
        }
    }
}

#[derive(Deserialize, Serialize, ToSchema)]
pub struct WorkspaceList {
    pub workspaces: Vec<WorkspaceView>,
}

/// A custom role's scopes.
#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RolePut {
    #[schema(value_type = Vec<AdminScopeName>, min_items = 1)]
    pub scopes: Vec<String>,
}

#[derive(Deserialize, Serialize, ToSchema)]
pub struct RoleView {
    pub name: String,
    #[schema(value_type = Vec<String>)]
    pub scopes: Vec<String>,
    pub builtin: bool,
    /// The environments a built-in role is confined to.
    pub environments: Option<Vec<Environment>>,
    pub description: Option<String>,
}

#[derive(Deserialize, Serialize, ToSchema)]
pub struct RoleList {
    pub roles: Vec<RoleView>,
}

/// A grant as held: the role, its scopes, where.
#[derive(Deserialize, Serialize, ToSchema, Debug, Clone)]
pub struct GrantView {
    pub role: String,
    #[schema(value_type = Vec<String>)]
    pub scopes: Vec<String>,
    pub workspace: Option<String>,
    pub environments: Option<Vec<Environment>>,
}

impl From<Grant> for GrantView {
    fn from(g: Grant) -> Self {
        GrantView {
            role: g.role,
            scopes: g.scopes.iter().map(|s| s.as_str().to_owned()).collect(),
            workspace: g.workspace,
            environments: g.environments,
        }
    }
}

/// One subject of the access review.
#[derive(Deserialize, Serialize, ToSchema)]
pub struct SubjectView {
    /// `user` or `token`.
    pub kind: String,
    pub id: String,
    pub name: String,
    pub grants: Vec<GrantView>,
    pub totp_enrolled: bool,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_seen_at: Option<OffsetDateTime>,
    pub disabled: bool,
}

#[derive(Deserialize, Serialize, ToSchema)]
pub struct AccessReview {
    pub subjects: Vec<SubjectView>,
}
