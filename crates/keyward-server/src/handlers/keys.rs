//! `/v1/keys`: issuing, reading, changing, rotating, revoking and verifying
//! API keys.

use std::net::IpAddr;
use std::ops::RangeInclusive;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use keyward_core::{AdminScope, Requirements, Scope};
use time::OffsetDateTime;

use super::{next_cursor, now, page, Json, LenientJson, OptionalJson, Query};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::AppState;
use keyward_proto::{
    BulkRevokeRequest, BulkRevokeResult, CreditsInput, ErrorResponse, IssuedKey, KeyCreate,
    KeyList, KeyQuery, KeyUpdate, KeyView, OwnerRateLimits, RevokeRequest, RotateRequest,
    UsageList, UsageQuery, UsageView, VerifyRequest, VerifyResult,
};
use keyward_service::keys::{
    BulkRevocation, KeyChanges, KeyListing, NewCredits, NewKey, Succession,
};
use keyward_service::Error;

/// Largest cost of one verify.
const MAX_COST: u64 = 1_000_000;

/// Issues a key. The plaintext is in this response and nowhere else, ever.
#[utoipa::path(post, path = "/v1/keys", tag = "keys", request_body = KeyCreate,
    responses((status = 201, body = IssuedKey), (status = 400, body = ErrorResponse),
              (status = 404, body = ErrorResponse), (status = 409, body = ErrorResponse)),
    security(("admin_token" = ["keys:write"])))]
pub async fn create_key(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Json(body): Json<KeyCreate>,
) -> Result<(StatusCode, Json<IssuedKey>), ApiError> {
    let new = NewKey {
        api_id: body.api_id,
        environment: body.environment,
        name: body.name,
        owner: body.owner,
        scopes: body.scopes,
        metadata: body.metadata,
        expires_at: body.expires_at,
        enabled: body.enabled,
        ratelimits: body.ratelimits,
        credits: body.credits.map(new_credits),
        ip_allowlist: body.ip_allowlist,
        roles: body.roles,
    };
    let (record, plaintext) = state.service.create_key(&caller, new).await?;
    let issued = IssuedKey {
        record: KeyView::new(record, now()),
        key: plaintext.expose().to_owned(),
    };
    Ok((StatusCode::CREATED, Json(issued)))
}

/// Reads a key (never its plaintext).
#[utoipa::path(get, path = "/v1/keys/{id}", tag = "keys",
    params(("id" = String, Path, description = "key id (one malformed or out of reach is 404)",
        pattern = r"^key_[0-6][0-9A-Za-z]{21}$")),
    responses((status = 200, body = KeyView), (status = 404, body = ErrorResponse)),
    security(("admin_token" = ["keys:read"])))]
pub async fn get_key(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<KeyView>, ApiError> {
    let record = state.service.key(&caller, &id).await?;
    Ok(Json(KeyView::new(record, now())))
}

/// Lists keys in creation order, a page at a time.
#[utoipa::path(get, path = "/v1/keys", tag = "keys", params(KeyQuery),
    responses((status = 200, body = KeyList), (status = 400, body = ErrorResponse)),
    security(("admin_token" = ["keys:read"])))]
pub async fn list_keys(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(query): Query<KeyQuery>,
) -> Result<Json<KeyList>, ApiError> {
    caller.require(AdminScope::KeysRead)?;
    let page = page(query.cursor, query.limit)?;
    let listing = KeyListing {
        api_id: query.api_id,
        owner: query.owner,
        environment: query.environment,
        state: query.state,
    };
    let records = state.service.list_keys(&caller, listing, &page).await?;
    let next = next_cursor(records.iter().map(|k| k.id.as_str()), records.len(), &page);
    let now = now();
    let keys = records.into_iter().map(|k| KeyView::new(k, now)).collect();
    Ok(Json(KeyList {
        keys,
        next_cursor: next,
    }))
}

/// Changes a key's name, scopes, roles, metadata, expiry or enabled flag;
/// fields left out stay as they are, and `expires_at: null` removes the
/// expiry.
#[utoipa::path(patch, path = "/v1/keys/{id}", tag = "keys", request_body = KeyUpdate,
    params(("id" = String, Path, description = "key id (one malformed or out of reach is 404)",
        pattern = r"^key_[0-6][0-9A-Za-z]{21}$")),
    responses((status = 200, body = KeyView), (status = 400, body = ErrorResponse),
              (status = 404, body = ErrorResponse), (status = 409, body = ErrorResponse)),
    security(("admin_token" = ["keys:write"])))]
pub async fn update_key(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    Json(body): Json<KeyUpdate>,
) -> Result<Json<KeyView>, ApiError> {
    let changes = KeyChanges {
        name: body.name,
        scopes: body.scopes,
        metadata: body.metadata,
        expires_at: body.expires_at,
        enabled: body.enabled,
        ratelimits: body.ratelimits,
        credits: body.credits.map(|c| c.map(new_credits)),
        ip_allowlist: body.ip_allowlist,
        roles: body.roles,
    };
    let updated = state.service.update_key(&caller, &id, changes).await?;
    Ok(Json(KeyView::new(updated, now())))
}

/// Revokes a key at once. Revoking a revoked key changes nothing.
#[utoipa::path(post, path = "/v1/keys/{id}/revoke", tag = "keys", request_body = RevokeRequest,
    params(("id" = String, Path, description = "key id (one malformed or out of reach is 404)",
        pattern = r"^key_[0-6][0-9A-Za-z]{21}$")),
    responses((status = 200, body = KeyView), (status = 404, body = ErrorResponse)),
    security(("admin_token" = ["keys:write"])))]
pub async fn revoke_key(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    OptionalJson(body): OptionalJson<RevokeRequest>,
) -> Result<Json<KeyView>, ApiError> {
    let reason = body.and_then(|b| b.reason);
    let revoked = state.service.revoke_key(&caller, &id, reason).await?;
    Ok(Json(KeyView::new(revoked, now())))
}

/// Issues a successor with the same attributes; the old key keeps working for
/// the grace period, then answers `EXPIRED`.
#[utoipa::path(post, path = "/v1/keys/{id}/rotate", tag = "keys", request_body = RotateRequest,
    params(("id" = String, Path, description = "key id (one malformed or out of reach is 404)",
        pattern = r"^key_[0-6][0-9A-Za-z]{21}$")),
    responses((status = 201, body = IssuedKey), (status = 404, body = ErrorResponse),
              (status = 409, body = ErrorResponse)),
    security(("admin_token" = ["keys:write"])))]
pub async fn rotate_key(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    OptionalJson(body): OptionalJson<RotateRequest>,
) -> Result<(StatusCode, Json<IssuedKey>), ApiError> {
    let body = body.unwrap_or_default();
    let succession = Succession {
        grace_period_seconds: body.grace_period_seconds,
        expires_at: body.expires_at,
    };
    let (successor, plaintext) = state.service.rotate_key(&caller, &id, succession).await?;
    let issued = IssuedKey {
        record: KeyView::new(successor, now()),
        key: plaintext.expose().to_owned(),
    };
    Ok((StatusCode::CREATED, Json(issued)))
}

/// Revokes every key matching all given criteria (the incident button).
/// At least one criterion is required.
#[utoipa::path(post, path = "/v1/keys/bulk-revoke", tag = "keys",
    request_body = BulkRevokeRequest,
    responses((status = 200, body = BulkRevokeResult), (status = 400, body = ErrorResponse)),
    security(("admin_token" = ["keys:write"])))]
pub async fn bulk_revoke(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Json(body): Json<BulkRevokeRequest>,
) -> Result<Json<BulkRevokeResult>, ApiError> {
    let bulk = BulkRevocation {
        owner: body.owner,
        api_id: body.api_id,
        environment: body.environment,
        created_before: body.created_before,
        scope: body.scope,
        reason: body.reason,
    };
    let revoked = state.service.bulk_revoke(&caller, bulk).await?;
    Ok(Json(BulkRevokeResult { revoked }))
}

/// Verifies a key presented to the provider's API: always 200, with the
/// answer in `code`. Keys outside the token's reach answer `NOT_FOUND`.
#[utoipa::path(post, path = "/v1/keys/verify", tag = "keys", request_body = VerifyRequest,
    responses((status = 200, body = VerifyResult), (status = 400, body = ErrorResponse)),
    security(("admin_token" = ["keys:verify"])))]
pub async fn verify_key(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    LenientJson(body): LenientJson<VerifyRequest>,
) -> Result<Response, ApiError> {
    let answer = verify_answer(&state, &caller, body).await?;
    Ok(([(CONTENT_TYPE, "application/json")], answer).into_response())
}

/// The JSON answer to a verify request: the route's handler and the API's
/// own HTTP front (`crate::front`) both answer with it.
pub(crate) async fn verify_answer(
    state: &AppState,
    caller: &Caller,
    body: VerifyRequest,
) -> Result<Vec<u8>, ApiError> {
    caller.require(AdminScope::KeysVerify)?;
    let ip = body
        .ip
        .as_deref()
        .map(|ip| {
            ip.parse::<IpAddr>().map_err(|_| {
                ApiError::Op(Error::InvalidRequest(
                    "ip must be an IPv4 or IPv6 address".into(),
                ))
            })
        })
        .transpose()?;
    let cost = body.cost.unwrap_or(1);
    if cost > MAX_COST {
        return Err(ApiError::Op(Error::InvalidRequest(format!(
            "cost must be at most {MAX_COST}"
        ))));
    }
    let required = Requirements {
        scopes: body
            .scopes
            .iter()
            .map(|s| Scope::parse(s))
            .collect::<Result<Vec<_>, _>>()?
            .into(),
        environment: body.environment,
        ip,
    };
    let verification = state
        .verifier
        .verify(caller.token.as_ref(), &body.key, &required, cost)
        .await?;
    let mut answer = Vec::with_capacity(512);
    serde_json::to_writer(&mut answer, &verify_result(&verification))
        .map_err(|e| ApiError::Op(Error::Internal(Box::new(e))))?;
    Ok(answer)
}

/// Verifications of a key per minute and result code, as flushed so far,
/// in a span of at most [`MAX_USAGE_SPAN_S`] (a day unless asked).
#[utoipa::path(get, path = "/v1/keys/{id}/usage", tag = "keys",
    params(("id" = String, Path, description = "key id (one malformed or out of reach is 404)",
        pattern = r"^key_[0-6][0-9A-Za-z]{21}$"), UsageQuery),
    responses((status = 200, body = UsageList), (status = 400, body = ErrorResponse),
        (status = 404, body = ErrorResponse)),
    security(("admin_token" = ["keys:read"])))]
pub async fn key_usage(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    Query(query): Query<UsageQuery>,
) -> Result<Json<UsageList>, ApiError> {
    caller.require(AdminScope::KeysRead)?;
    let minutes = usage_span(&query, now())?;
    let rows = state.service.key_usage(&caller, &id, minutes).await?;
    Ok(Json(UsageList {
        usage: rows
            .into_iter()
            .map(|u| UsageView {
                minute: u.minute * 60,
                code: u.code,
                count: u.count,
            })
            .collect(),
    }))
}

/// The longest span one usage request may ask for: a week.
const MAX_USAGE_SPAN_S: i64 = 7 * 24 * 3600;

/// The minutes (since the Unix epoch) a usage request asks for.
fn usage_span(query: &UsageQuery, now: OffsetDateTime) -> Result<RangeInclusive<i64>, ApiError> {
    let until = query.until.unwrap_or_else(|| now.unix_timestamp());
    let since = query
        .since
        .unwrap_or(until.saturating_sub(24 * 3600).max(0));
    if since < 0 || until < 0 {
        return Err(ApiError::Op(Error::InvalidRequest(
            "since and until must be Unix times in seconds".into(),
        )));
    }
    if since > until {
        return Err(ApiError::Op(Error::InvalidRequest(
            "since must not be after until".into(),
        )));
    }
    if until - since > MAX_USAGE_SPAN_S {
        return Err(ApiError::Op(Error::InvalidRequest(
            "since and until may be at most 7 days apart".into(),
        )));
    }
    Ok(since.div_euclid(60)..=until.div_euclid(60))
}

/// Reads the rate limits shared by all keys of an owner. Owner limits span
/// APIs and environments: a token limited to some reads them only for an
/// owner whose every key is within its reach, and any other owner (one with
/// no keys included) is `NOT_FOUND` to it.
#[utoipa::path(get, path = "/v1/owners/{owner}/ratelimits", tag = "keys",
    params(("owner" = String, Path, description = "the owner: 1–256 characters, none a control character",
        min_length = 1, max_length = 256, pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$")),
    responses((status = 200, body = OwnerRateLimits), (status = 400, body = ErrorResponse),
              (status = 404, body = ErrorResponse)),
    security(("admin_token" = ["keys:read"])))]
pub async fn get_owner_ratelimits(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(owner): Path<String>,
) -> Result<Json<OwnerRateLimits>, ApiError> {
    let ratelimits = state.service.owner_ratelimits(&caller, &owner).await?;
    Ok(Json(OwnerRateLimits { ratelimits }))
}

/// Sets the rate limits shared by all keys of an owner; they apply on the
/// next verify. They bind the owner's keys of every API and environment,
/// present and future, so this needs a token without API or environment
/// limits; a limited token is refused before the owner is looked at.
#[utoipa::path(put, path = "/v1/owners/{owner}/ratelimits", tag = "keys",
    params(("owner" = String, Path, description = "the owner: 1–256 characters, none a control character",
        min_length = 1, max_length = 256, pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$")),
    request_body = OwnerRateLimits,
    responses((status = 200, body = OwnerRateLimits), (status = 400, body = ErrorResponse),
              (status = 403, body = ErrorResponse)),
    security(("admin_token" = ["keys:write"])))]
pub async fn set_owner_ratelimits(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(owner): Path<String>,
    Json(body): Json<OwnerRateLimits>,
) -> Result<Json<OwnerRateLimits>, ApiError> {
    let ratelimits = state
        .service
        .set_owner_ratelimits(&caller, &owner, body.ratelimits)
        .await?;
    Ok(Json(OwnerRateLimits { ratelimits }))
}

/// The answer to a verification, borrowing from the cached key.
fn verify_result(v: &keyward_verify::Verification) -> VerifyResult<'_> {
    use keyward_core::VerifyCode;
    use keyward_proto::RateLimitView;
    use keyward_verify::CachedKey;
    static EMPTY_OBJECT: std::sync::LazyLock<Box<serde_json::value::RawValue>> =
        std::sync::LazyLock::new(|| {
            serde_json::value::RawValue::from_string("{}".to_owned())
                .unwrap_or_else(|_| serde_json::value::RawValue::NULL.to_owned())
        });
    let key: Option<&CachedKey> = v.key.as_deref();
    VerifyResult {
        valid: v.code == VerifyCode::Valid,
        code: v.code,
        key_id: key.map(CachedKey::id),
        owner: key.map(|k| &*k.owner),
        environment: key.map(CachedKey::environment),
        scopes: key.map(|k| &k.policy.scopes[..]),
        metadata: key.map(|k| k.metadata().unwrap_or(&EMPTY_OBJECT)),
        expires_at: key.and_then(|k| k.policy.expires_at),
        ratelimit: v.ratelimit.map(|r| RateLimitView {
            limit: r.limit,
            remaining: r.remaining,
            reset: r.reset,
        }),
        credits_remaining: v.credits_remaining,
        critical_scopes: key.map(CachedKey::critical_scopes),
    }
}

/// Credits as the wire gives them, for the service.
fn new_credits(c: CreditsInput) -> NewCredits {
    NewCredits {
        remaining: c.remaining,
        refill: c.refill,
    }
}
