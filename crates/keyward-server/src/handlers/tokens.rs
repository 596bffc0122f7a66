//! `/v1/tokens`: admin tokens. A token can create and revoke only tokens
//! that have no more power than itself.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use keyward_core::model::check_text;
use keyward_core::{AdminScope, AdminToken, ApiId, Environment, PlaintextKey, Prefix, TokenId};
use serde_json::json;

use super::{audit_event, next_cursor, now, page, within, Json, Query};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::wire::{ErrorResponse, IssuedToken, PageQuery, TokenCreate, TokenList, TokenView};
use crate::AppState;

/// Creates an admin token with at most the caller's scopes and reach.
#[utoipa::path(post, path = "/v1/tokens", tag = "tokens", request_body = TokenCreate,
    responses((status = 201, body = IssuedToken), (status = 400, body = ErrorResponse),
              (status = 403, body = ErrorResponse)),
    security(("admin_token" = ["tokens:write"])))]
pub async fn create_token(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Json(body): Json<TokenCreate>,
) -> Result<(StatusCode, Json<IssuedToken>), ApiError> {
    caller.require(AdminScope::TokensWrite)?;
    check_text("name", &body.name, 256)?;
    let mut scopes = body
        .scopes
        .iter()
        .map(|s| AdminScope::parse(s))
        .collect::<Result<Vec<_>, _>>()?;
    scopes.sort();
    scopes.dedup();
    if scopes.is_empty() {
        return Err(ApiError::InvalidRequest(
            "a token needs at least one scope".into(),
        ));
    }
    if !scopes.iter().all(|s| caller.token.has_scope(*s)) {
        return Err(ApiError::Forbidden(
            "a token cannot grant scopes it does not hold",
        ));
    }
    let api_ids = body
        .api_ids
        .map(|ids| {
            ids.iter()
                .map(|i| ApiId::parse(i))
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    let environments: Option<Vec<Environment>> = body.environments;
    if !within(&api_ids, &caller.token.api_ids)
        || !within(&environments, &caller.token.environments)
    {
        return Err(ApiError::Forbidden(
            "a token cannot reach APIs or environments its creator cannot",
        ));
    }
    let now = now();
    if body.expires_at.is_some_and(|at| at <= now) {
        return Err(ApiError::InvalidRequest(
            "expires_at must be in the future".into(),
        ));
    }
    let plaintext = PlaintextKey::generate(&Prefix::admin(), keyward_core::Environment::Live)
        .map_err(ApiError::internal)?;
    let token = AdminToken {
        id: TokenId::generate(now).map_err(ApiError::internal)?,
        name: body.name,
        digest: plaintext.digest(),
        start: plaintext.display_start(),
        scopes,
        api_ids,
        environments,
        created_by: Some(caller.id().clone()),
        created_at: now,
        expires_at: body.expires_at,
        revoked_at: None,
    };
    let event = audit_event(
        Some(&caller),
        "token.create",
        token.id.as_str(),
        json!({
            "name": token.name,
            "scopes": token.scopes,
            "api_ids": token.api_ids,
            "environments": token.environments,
            "start": token.start,
        }),
        now,
    )?;
    state.store.create_token(&token, &event).await?;
    Ok((
        StatusCode::CREATED,
        Json(IssuedToken {
            record: token.into(),
            token: plaintext.expose().to_owned(),
        }),
    ))
}

/// Lists admin tokens (never their plaintexts).
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
    let tokens = state.store.list_tokens(&page).await?;
    let next = next_cursor(tokens.iter().map(|t| t.id.as_str()), tokens.len(), &page);
    Ok(Json(TokenList {
        tokens: tokens.into_iter().map(TokenView::from).collect(),
        next_cursor: next,
    }))
}

/// Revokes an admin token at once. A caller can revoke only tokens with no
/// more scopes or reach than its own.
#[utoipa::path(post, path = "/v1/tokens/{id}/revoke", tag = "tokens",
    params(("id" = String, Path, description = "token id (one malformed is 404)",
        pattern = r"^tok_[0-6][0-9A-Za-z]{21}$")),
    responses((status = 200, body = TokenView), (status = 403, body = ErrorResponse),
              (status = 404, body = ErrorResponse)),
    security(("admin_token" = ["tokens:write"])))]
pub async fn revoke_token(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<TokenView>, ApiError> {
    caller.require(AdminScope::TokensWrite)?;
    let id = TokenId::parse(&id).map_err(|_| ApiError::NotFound("token"))?;
    let target = state
        .store
        .get_token(&id)
        .await?
        .ok_or(ApiError::NotFound("token"))?;
    let weaker = target.scopes.iter().all(|s| caller.token.has_scope(*s))
        && within(&target.api_ids, &caller.token.api_ids)
        && within(&target.environments, &caller.token.environments);
    if !weaker {
        return Err(ApiError::Forbidden(
            "a token cannot revoke a token with more power than itself",
        ));
    }
    let now = now();
    let event = audit_event(Some(&caller), "token.revoke", id.as_str(), json!({}), now)?;
    state.store.revoke_token(&id, now, &event).await?;
    state.tokens.forget(&target.digest);
    let after = state
        .store
        .get_token(&id)
        .await?
        .ok_or(ApiError::NotFound("token"))?;
    Ok(Json(after.into()))
}
