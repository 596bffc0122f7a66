//! `/v1/tokens`: admin tokens, over `keyward_service::tokens` (where the
//! rules of the token tree are).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use keyward_core::AdminScope;
use keyward_service::tokens::NewToken;

use super::{page, Json, Query};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::AppState;
use keyward_proto::{ErrorResponse, IssuedToken, PageQuery, TokenCreate, TokenList, TokenView};

/// Creates an admin token with at most the caller's scopes and reach,
/// expiring no later than the caller (a later expiry, or none, is capped to
/// the caller's). 409 when the caller was revoked meanwhile.
#[utoipa::path(post, path = "/v1/tokens", tag = "tokens", request_body = TokenCreate,
    responses((status = 201, body = IssuedToken), (status = 400, body = ErrorResponse),
              (status = 403, body = ErrorResponse), (status = 409, body = ErrorResponse)),
    security(("admin_token" = ["tokens:write"])))]
pub async fn create_token(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Json(body): Json<TokenCreate>,
) -> Result<(StatusCode, Json<IssuedToken>), ApiError> {
    let new = NewToken {
        name: body.name,
        scopes: body.scopes,
        api_ids: body.api_ids,
        environments: body.environments,
        workspaces: body.workspaces,
        expires_at: body.expires_at,
    };
    let (token, plaintext) = state.service.create_token(&caller, new).await?;
    Ok((
        StatusCode::CREATED,
        Json(IssuedToken {
            record: token.into(),
            token: plaintext.expose().to_owned(),
        }),
    ))
}

/// Lists the admin tokens within the caller's reach (never their
/// plaintexts): those with no more scopes, APIs or environments than the
/// caller's own.
#[utoipa::path(get, path = "/v1/tokens", tag = "tokens", params(PageQuery),
    responses((status = 200, body = TokenList)),
    security(("admin_token" = ["tokens:read"])))]
pub async fn list_tokens(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(query): Query<PageQuery>,
) -> Result<Json<TokenList>, ApiError> {
    caller.require(AdminScope::TokensRead)?;
    let page = page(query.cursor, query.limit)?;
    let (tokens, next) = state.service.list_tokens(&caller, page).await?;
    Ok(Json(TokenList {
        tokens: tokens.into_iter().map(TokenView::from).collect(),
        next_cursor: next,
    }))
}

/// Revokes an admin token at once, with every token it created,
/// transitively. A caller can revoke only tokens within its reach; others
/// answer as absent ones do. The last usable token that can grant every
/// scope is not revoked (409 `LAST_ROOT_TOKEN`).
#[utoipa::path(post, path = "/v1/tokens/{id}/revoke", tag = "tokens",
    params(("id" = String, Path, description = "token id (one malformed is 404)",
        pattern = r"^tok_[0-6][0-9A-Za-z]{21}$")),
    responses((status = 200, body = TokenView), (status = 403, body = ErrorResponse),
              (status = 404, body = ErrorResponse), (status = 409, body = ErrorResponse)),
    security(("admin_token" = ["tokens:write"])))]
pub async fn revoke_token(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<TokenView>, ApiError> {
    let token = state.service.revoke_token(&caller, &id).await?;
    Ok(Json(token.into()))
}
