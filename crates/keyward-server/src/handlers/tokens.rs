//! `/v1/tokens`: admin tokens. They form a tree (each names the token that
//! created it), and power only narrows down the tree:
//! - a token creates tokens with at most its own scopes and reach, expiring
//!   no later than itself: a later expiry, or none, is capped to its own;
//! - a token sees (lists, revokes) only tokens within its reach: no more
//!   scopes, APIs or environments than its own. Any other token answers as
//!   an absent one does, 404;
//! - revoking a token revokes every token below it, in one transaction,
//!   with an audit event for each naming where the cascade began;
//! - the admin API refuses to revoke the last usable token that can grant
//!   every scope (`LAST_ROOT_TOKEN`); `keyward operator root-token` and a
//!   leak report still can.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use keyward_core::model::check_text;
use keyward_core::{AdminScope, AdminToken, ApiId, Environment, PlaintextKey, Prefix, TokenId};
use serde_json::json;
use time::OffsetDateTime;

use keyward_store::{LastFullToken, StoreError};

use super::{audit_event, now, page, within, Json, Query};
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
    // A child never outlives its creator: a later expiry, or none, becomes
    // the creator's. Times are kept to the millisecond, as stored.
    let expires_at = match (body.expires_at.map(to_millis), caller.token.expires_at) {
        (Some(at), Some(limit)) => Some(at.min(limit)),
        (None, limit) => limit,
        (at, None) => at,
    };
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
        expires_at,
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
            "expires_at": token
                .expires_at
                .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok()),
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
    let mut page = page(query.cursor, query.limit)?;
    let limit = page.limit as usize;
    // Tokens are few; those out of reach are skipped here, reading on
    // until the page is full or the table ends.
    let mut tokens = Vec::with_capacity(limit);
    let mut creators = Creators::default();
    let mut next = None;
    'scan: loop {
        let batch = state.store.list_tokens(&page).await?;
        let full_batch = batch.len() == page.limit as usize;
        for token in batch {
            page.after = Some(token.id.as_str().to_owned());
            if within_reach(&caller.token, &token) {
                tokens.push(creators.view(&state, &caller, token).await?);
                if tokens.len() == limit {
                    next = page.after.clone();
                    break 'scan;
                }
            }
        }
        if !full_batch {
            break;
        }
    }
    Ok(Json(TokenList {
        tokens,
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
    caller.require(AdminScope::TokensWrite)?;
    let id = TokenId::parse(&id).map_err(|_| ApiError::NotFound("token"))?;
    state
        .store
        .get_token(&id)
        .await?
        .filter(|target| within_reach(&caller.token, target))
        .ok_or(ApiError::NotFound("token"))?;
    let now = now();
    let event = audit_event(Some(&caller), "token.revoke", id.as_str(), json!({}), now)?;
    let revoked = state
        .store
        .revoke_token_tree(&id, now, &event, LastFullToken::Keep)
        .await
        .map_err(|e| match e {
            StoreError::NotFound => ApiError::NotFound("token"),
            other => other.into(),
        })?;
    for token in &revoked {
        state.tokens.forget(&token.digest);
    }
    if revoked.len() > 1 {
        tracing::info!(token = %id, cascade = revoked.len() - 1, "revoked a token and the tokens it created");
    }
    let after = state
        .store
        .get_token(&id)
        .await?
        .ok_or(ApiError::NotFound("token"))?;
    Ok(Json(
        Creators::default().view(&state, &caller, after).await?,
    ))
}

/// Whether each creator named by the tokens shown is within the caller's
/// reach. A token's `created_by` is shown only then: a limited token reads
/// its own record, and that must not name the root token it came from.
#[derive(Default)]
struct Creators(std::collections::HashMap<TokenId, bool>);

impl Creators {
    async fn view(
        &mut self,
        state: &AppState,
        caller: &Caller,
        token: AdminToken,
    ) -> Result<TokenView, ApiError> {
        let mut view = TokenView::from(token);
        if let Some(creator) = view.created_by.clone() {
            let shown = match self.0.get(&creator) {
                Some(shown) => *shown,
                None => {
                    let shown = state
                        .store
                        .get_token(&creator)
                        .await?
                        .is_some_and(|c| within_reach(&caller.token, &c));
                    self.0.insert(creator, shown);
                    shown
                }
            };
            if !shown {
                view.created_by = None;
            }
        }
        Ok(view)
    }
}

/// `at` to the millisecond, the precision stored, so that the answer to a
/// create says what a later read will.
fn to_millis(at: OffsetDateTime) -> OffsetDateTime {
    let millis = at.unix_timestamp_nanos() / 1_000_000 * 1_000_000;
    OffsetDateTime::from_unix_timestamp_nanos(millis).unwrap_or(at)
}

/// Whether `token` is within `caller`'s reach: no scope, API or environment
/// the caller lacks. The caller itself is.
pub fn within_reach(caller: &AdminToken, token: &AdminToken) -> bool {
    token.scopes.iter().all(|s| caller.has_scope(*s))
        && within(&token.api_ids, &caller.api_ids)
        && within(&token.environments, &caller.environments)
}
