//! `/v1/users`, `/v1/auth/…`, `/v1/workspaces`, `/v1/roles` and
//! `/v1/access-review`: people, signing in, the second factor, and who may
//! do what where — over `keyward_service::users`, where the rules are.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Extension;
use keyward_proto::access::{
    AccessReview, GrantView, LoginAnswer, LoginRequest, OtpBody, RecoveryCodes, RoleList, RolePut,
    RoleView, SessionList, SessionView, SteppedUp, SubjectView, TotpEnrolled, UserCreate, UserList,
    UserUpdate, UserView, WhoAmI, WorkspaceCreate, WorkspaceList, WorkspaceView,
};
use keyward_proto::{ErrorResponse, PageQuery};
use keyward_service::users::{NewUser, RoleInfo, SignIn, UserChanges};

use super::{page, Json, Query};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::{AppState, ClientAddr};

/// Creates an admin user with the roles given; each grant must be one the
/// caller could hold. A session needs a recent second factor.
#[utoipa::path(post, path = "/v1/users", tag = "users", request_body = UserCreate,
    responses((status = 201, body = UserView), (status = 400, body = ErrorResponse),
              (status = 403, body = ErrorResponse), (status = 404, body = ErrorResponse),
              (status = 409, body = ErrorResponse)),
    security(("admin_token" = ["users:write"])))]
pub async fn create_user(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Json(body): Json<UserCreate>,
) -> Result<(StatusCode, Json<UserView>), ApiError> {
    let new = NewUser {
        email: body.email,
        password: body.password,
        grants: body.roles.into_iter().map(Into::into).collect(),
    };
    let user = state.service.create_user(&caller, new).await?;
    Ok((StatusCode::CREATED, Json(user.into())))
}

/// Lists the users the caller sees.
#[utoipa::path(get, path = "/v1/users", tag = "users", params(PageQuery),
    responses((status = 200, body = UserList)),
    security(("admin_token" = ["users:read"])))]
pub async fn list_users(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(query): Query<PageQuery>,
) -> Result<Json<UserList>, ApiError> {
    let page = page(query.cursor, query.limit)?;
    let limit = page.limit as usize;
    let users = state.service.list_users(&caller, page).await?;
    let next_cursor = (users.len() == limit)
        .then(|| users.last().map(|u| u.id.as_str().to_owned()))
        .flatten();
    Ok(Json(UserList {
        users: users.into_iter().map(UserView::from).collect(),
        next_cursor,
    }))
}

/// Reads one user.
#[utoipa::path(get, path = "/v1/users/{id}", tag = "users",
    params(("id" = String, Path, description = "user id (one malformed or out of reach is 404)",
        pattern = r"^usr_[0-6][0-9A-Za-z]{21}$")),
    responses((status = 200, body = UserView), (status = 404, body = ErrorResponse)),
    security(("admin_token" = ["users:read"])))]
pub async fn get_user(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<UserView>, ApiError> {
    Ok(Json(state.service.user(&caller, &id).await?.into()))
}

/// Changes a user's roles, password or whether it is disabled. Disabling
/// or a new password revokes every session of the user.
#[utoipa::path(patch, path = "/v1/users/{id}", tag = "users", request_body = UserUpdate,
    params(("id" = String, Path, description = "user id (one malformed or out of reach is 404)",
        pattern = r"^usr_[0-6][0-9A-Za-z]{21}$")),
    responses((status = 200, body = UserView), (status = 400, body = ErrorResponse),
              (status = 403, body = ErrorResponse), (status = 404, body = ErrorResponse),
              (status = 409, body = ErrorResponse)),
    security(("admin_token" = ["users:write"])))]
pub async fn update_user(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    Json(body): Json<UserUpdate>,
) -> Result<Json<UserView>, ApiError> {
    let changes = UserChanges {
        grants: body
            .roles
            .map(|roles| roles.into_iter().map(Into::into).collect()),
        disabled: body.disabled,
        password: body.password,
    };
    Ok(Json(
        state
            .service
            .update_user(&caller, &id, changes)
            .await?
            .into(),
    ))
}

/// A user's sessions (never their plaintexts).
#[utoipa::path(get, path = "/v1/users/{id}/sessions", tag = "users",
    params(("id" = String, Path, description = "user id (one malformed or out of reach is 404)",
        pattern = r"^usr_[0-6][0-9A-Za-z]{21}$")),
    responses((status = 200, body = SessionList), (status = 404, body = ErrorResponse)),
    security(("admin_token" = ["users:read"])))]
pub async fn user_sessions(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<SessionList>, ApiError> {
    let sessions = state.service.user_sessions(&caller, &id).await?;
    Ok(Json(SessionList {
        sessions: sessions.into_iter().map(SessionView::from).collect(),
    }))
}

/// Signs a user in. An unknown e-mail and a wrong password answer the same
/// `UNAUTHENTICATED`; with TOTP enrolled and no `otp`, `MFA_REQUIRED`.
#[utoipa::path(post, path = "/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = LoginAnswer), (status = 401, body = ErrorResponse),
              (status = 429, body = ErrorResponse), (status = 503, body = ErrorResponse)))]
pub async fn login(
    State(state): State<Arc<AppState>>,
    client: Option<Extension<ClientAddr>>,
    Json(body): Json<LoginRequest>,
) -> Result<Json<LoginAnswer>, ApiError> {
    let session = state
        .service
        .login(SignIn {
            email: body.email,
            password: body.password,
            otp: body.otp,
            source: client.map(|Extension(ClientAddr(addr))| addr.ip()),
        })
        .await?;
    Ok(Json(LoginAnswer {
        token: session.plaintext.expose().to_owned(),
        session_id: session.token.id.clone(),
        expires_at: session.token.expires_at.unwrap_or(session.token.created_at),
        user: session.user.into(),
    }))
}

/// Ends the calling session.
#[utoipa::path(post, path = "/v1/auth/logout", tag = "auth",
    responses((status = 204), (status = 400, body = ErrorResponse)),
    security(("admin_token" = [])))]
pub async fn logout(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> Result<StatusCode, ApiError> {
    state.service.logout(&caller).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Who is calling: the token, its user and grants, and its step-up.
#[utoipa::path(get, path = "/v1/auth/whoami", tag = "auth",
    responses((status = 200, body = WhoAmI), (status = 401, body = ErrorResponse)),
    security(("admin_token" = [])))]
pub async fn whoami(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Json<WhoAmI>, ApiError> {
    let user = state.service.own_user(&caller).await?.map(UserView::from);
    let token = &caller.token;
    Ok(Json(WhoAmI {
        token_id: token.id.clone(),
        user,
        scopes: token.scopes.iter().map(|s| s.as_str().to_owned()).collect(),
        grants: token.grants.iter().cloned().map(GrantView::from).collect(),
        stepped_up_at: token.stepped_up_at,
        expires_at: token.expires_at,
    }))
}

/// Starts a TOTP enrolment for the signed-in user: the secret, and the
/// `otpauth://` URI for a QR code. Replacing a confirmed one needs a
/// recent second factor.
#[utoipa::path(post, path = "/v1/auth/totp", tag = "auth",
    responses((status = 200, body = TotpEnrolled), (status = 400, body = ErrorResponse),
              (status = 503, body = ErrorResponse)),
    security(("admin_token" = [])))]
pub async fn enroll_totp(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Json<TotpEnrolled>, ApiError> {
    let enrolment = state.service.enroll_totp(&caller).await?;
    Ok(Json(TotpEnrolled {
        secret: enrolment.secret,
        otpauth_uri: enrolment.otpauth_uri,
    }))
}

/// Confirms the enrolment with a first code; answers the ten recovery
/// codes, shown this once.
#[utoipa::path(post, path = "/v1/auth/totp/confirm", tag = "auth", request_body = OtpBody,
    responses((status = 200, body = RecoveryCodes), (status = 400, body = ErrorResponse),
              (status = 409, body = ErrorResponse), (status = 503, body = ErrorResponse)),
    security(("admin_token" = [])))]
pub async fn confirm_totp(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Json(body): Json<OtpBody>,
) -> Result<Json<RecoveryCodes>, ApiError> {
    let recovery_codes = state.service.confirm_totp(&caller, &body.otp).await?;
    Ok(Json(RecoveryCodes { recovery_codes }))
}

/// Raises the session's step-up with a TOTP or recovery code, for the
/// step-up window.
#[utoipa::path(post, path = "/v1/auth/step-up", tag = "auth", request_body = OtpBody,
    responses((status = 200, body = SteppedUp), (status = 400, body = ErrorResponse),
              (status = 409, body = ErrorResponse), (status = 429, body = ErrorResponse),
              (status = 503, body = ErrorResponse)),
    security(("admin_token" = [])))]
pub async fn step_up(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Json(body): Json<OtpBody>,
) -> Result<Json<SteppedUp>, ApiError> {
    let stepped_up_until = state.service.step_up(&caller, &body.otp).await?;
    Ok(Json(SteppedUp { stepped_up_until }))
}

/// Creates a workspace.
#[utoipa::path(post, path = "/v1/workspaces", tag = "workspaces", request_body = WorkspaceCreate,
    responses((status = 201, body = WorkspaceView), (status = 400, body = ErrorResponse),
              (status = 403, body = ErrorResponse), (status = 409, body = ErrorResponse)),
    security(("admin_token" = ["apis:write"])))]
pub async fn create_workspace(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Json(body): Json<WorkspaceCreate>,
) -> Result<(StatusCode, Json<WorkspaceView>), ApiError> {
    let workspace = state.service.create_workspace(&caller, &body.name).await?;
    Ok((StatusCode::CREATED, Json(workspace.into())))
}

/// Lists the workspaces the caller reaches.
#[utoipa::path(get, path = "/v1/workspaces", tag = "workspaces",
    responses((status = 200, body = WorkspaceList)),
    security(("admin_token" = ["apis:read"])))]
pub async fn list_workspaces(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Json<WorkspaceList>, ApiError> {
    let workspaces = state.service.list_workspaces(&caller).await?;
    Ok(Json(WorkspaceList {
        workspaces: workspaces.into_iter().map(WorkspaceView::from).collect(),
    }))
}

fn role_view(role: RoleInfo) -> RoleView {
    RoleView {
        name: role.name,
        scopes: role.scopes.iter().map(|s| s.as_str().to_owned()).collect(),
        builtin: role.builtin,
        environments: role.environments,
        description: role.description,
    }
}

/// Lists the roles: the built-in ones with their scopes, then the custom
/// ones.
#[utoipa::path(get, path = "/v1/roles", tag = "users",
    responses((status = 200, body = RoleList)),
    security(("admin_token" = ["users:read"])))]
pub async fn list_roles(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Json<RoleList>, ApiError> {
    let roles = state.service.list_roles(&caller).await?;
    Ok(Json(RoleList {
        roles: roles.into_iter().map(role_view).collect(),
    }))
}

/// Creates or replaces a custom role; sessions of users holding it take
/// its new scopes on their next request, on every node.
#[utoipa::path(put, path = "/v1/roles/{name}", tag = "users", request_body = RolePut,
    params(("name" = String, Path, description = "role name",
        pattern = r"^[a-z0-9][a-z0-9_-]{0,62}$")),
    responses((status = 200, body = RoleView), (status = 400, body = ErrorResponse),
              (status = 403, body = ErrorResponse), (status = 409, body = ErrorResponse)),
    security(("admin_token" = ["users:write"])))]
pub async fn put_role(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
    Json(body): Json<RolePut>,
) -> Result<Json<RoleView>, ApiError> {
    let role = state.service.put_role(&caller, &name, body.scopes).await?;
    Ok(Json(role_view(role)))
}

/// Deletes a custom role no user holds.
#[utoipa::path(delete, path = "/v1/roles/{name}", tag = "users",
    params(("name" = String, Path, description = "role name",
        pattern = r"^[a-z0-9][a-z0-9_-]{0,62}$")),
    responses((status = 204), (status = 404, body = ErrorResponse),
              (status = 409, body = ErrorResponse)),
    security(("admin_token" = ["users:write"])))]
pub async fn delete_role(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.service.delete_role(&caller, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Who (user or service token) holds which role and scopes where, when it
/// was last seen, and whether it has a second factor.
#[utoipa::path(get, path = "/v1/access-review", tag = "users",
    responses((status = 200, body = AccessReview), (status = 403, body = ErrorResponse)),
    security(("admin_token" = ["users:read", "tokens:read"])))]
pub async fn access_review(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Json<AccessReview>, ApiError> {
    let subjects = state.service.access_review(&caller).await?;
    Ok(Json(AccessReview {
        subjects: subjects
            .into_iter()
            .map(|s| SubjectView {
                kind: s.kind.to_owned(),
                id: s.id,
                name: s.name,
                grants: s.grants.into_iter().map(GrantView::from).collect(),
                totp_enrolled: s.totp_enrolled,
                last_seen_at: s.last_seen_at,
                disabled: s.disabled,
            })
            .collect(),
    }))
}
