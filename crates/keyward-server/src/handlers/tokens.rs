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
        client_cert: body.client_cert,
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

/// Vault's `auth/token/lookup-self`: the presented admin token as Vault
/// shows a token, so Vault clients (hvac's `is_authenticated`) see a real
/// one. Any usable token may read itself. The token itself is never in the
/// answer: `id` and `accessor` are its public id. A missing, malformed,
/// unknown, revoked or expired token answers Vault's 403 (never 401, which
/// Vault clients do not read as "not authenticated"), so the document names
/// no security requirement: the token is what it describes.
#[utoipa::path(get, path = "/v1/auth/token/lookup-self", tag = "tokens",
    responses((status = 200, body = TokenLookup,
               description = "The token presented in Authorization: Bearer or X-Vault-Token"),
              (status = 403, body = crate::handlers::sys::VaultErrors,
               description = "No usable admin token")))]
pub async fn lookup_self(
    State(state): State<Arc<AppState>>,
    caller: Result<Caller, ApiError>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let caller = match caller {
        Ok(caller) => caller,
        Err(ApiError::Op(keyward_service::Error::Unauthenticated)) => {
            return (
                StatusCode::FORBIDDEN,
                Json(serde_json::json!({ "errors": ["permission denied"] })),
            )
                .into_response()
        }
        // The store failed: that is no answer about the token.
        Err(other) => return other.into_response(),
    };
    let token = state.service.own_token(&caller);
    let now = super::now();
    let rfc3339 = |t: time::OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
    };
    let seconds = |d: time::Duration| d.whole_seconds().max(0);
    let data = TokenLookupData {
        accessor: token.id.as_str().to_owned(),
        creation_time: token.created_at.unix_timestamp(),
        creation_ttl: token
            .expires_at
            .map_or(0, |at| seconds(at - token.created_at)),
        display_name: token.name.clone(),
        entity_id: "",
        expire_time: token.expires_at.map(rfc3339),
        explicit_max_ttl: 0,
        id: token.id.as_str().to_owned(),
        identity_policies: Vec::new(),
        issue_time: rfc3339(token.created_at),
        meta: None,
        num_uses: 0,
        orphan: token.created_by.is_none(),
        path: "auth/token/create",
        policies: token.scopes.iter().map(|s| s.as_str()).collect(),
        renewable: false,
        ttl: token.expires_at.map_or(0, |at| seconds(at - now)),
        kind: "service",
    };
    Json(TokenLookup {
        request_id: "",
        lease_id: "",
        renewable: false,
        lease_duration: 0,
        data,
        wrap_info: None,
        warnings: None,
        auth: None,
    })
    .into_response()
}

/// Vault's answer to a token lookup.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct TokenLookup {
    request_id: &'static str,
    lease_id: &'static str,
    renewable: bool,
    lease_duration: u64,
    data: TokenLookupData,
    #[schema(value_type = Option<Object>)]
    wrap_info: Option<()>,
    #[schema(value_type = Option<Vec<String>>)]
    warnings: Option<()>,
    #[schema(value_type = Option<Object>)]
    auth: Option<()>,
}

/// The token, as Vault describes one.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct TokenLookupData {
    /// The token's public id (never the token).
    accessor: String,
    /// Unix time in seconds.
    creation_time: i64,
    /// Seconds from creation to expiry; 0 without expiry.
    creation_ttl: i64,
    display_name: String,
    entity_id: &'static str,
    /// RFC 3339; null without expiry.
    expire_time: Option<String>,
    explicit_max_ttl: u64,
    /// The token's public id (never the token).
    id: String,
    identity_policies: Vec<String>,
    issue_time: String,
    #[schema(value_type = Option<Object>)]
    meta: Option<()>,
    num_uses: u64,
    /// Whether no token created this one (a root token).
    orphan: bool,
    path: &'static str,
    /// The token's admin scopes.
    policies: Vec<&'static str>,
    renewable: bool,
    /// Seconds until expiry; 0 without expiry.
    ttl: i64,
    #[serde(rename = "type")]
    kind: &'static str,
}
