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
    KeyList, KeyQuery, KeyUpdate, KeyView, OwnerRateLimits, RequestParts, RevokeRequest,
    RotateRequest, SignatureScheme, SigningBody, UpdatedKey, UsageList, UsageQuery, UsageView,
    VerifyRequest, VerifyResult,
};
use keyward_service::keys::{
    BulkRevocation, KeyChanges, KeyListing, NewCredits, NewKey, NewSigning, Succession,
};
use keyward_service::Error;
use keyward_verify::{Proof, Scheme, SignedRequest};
use zeroize::Zeroizing;

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
        signing: body.signing.map(new_signing),
    };
    let issued = state.service.create_key(&caller, new).await?;
    Ok((StatusCode::CREATED, Json(issued_key(issued))))
}

/// What the caller is shown of a key just issued: its plaintext and any
/// signing secret, this once.
fn issued_key(issued: keyward_service::keys::IssuedKey) -> IssuedKey {
    IssuedKey {
        record: KeyView::new(issued.record, now()),
        key: issued.plaintext.expose().to_owned(),
        signing_secret: issued.signing_secret.map(|s| s.as_str().to_owned()),
    }
}

fn new_signing(body: SigningBody) -> NewSigning {
    NewSigning {
        algorithm: body.algorithm,
        window_ms: body.window_ms,
        public_key: body.public_key,
    }
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
    responses((status = 200, body = UpdatedKey), (status = 400, body = ErrorResponse),
              (status = 404, body = ErrorResponse), (status = 409, body = ErrorResponse)),
    security(("admin_token" = ["keys:write"])))]
pub async fn update_key(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    Json(body): Json<KeyUpdate>,
) -> Result<Json<UpdatedKey>, ApiError> {
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
        signing: body.signing.map(|s| s.map(new_signing)),
    };
    let (updated, secret) = state.service.update_key(&caller, &id, changes).await?;
    Ok(Json(UpdatedKey {
        record: KeyView::new(updated, now()),
        signing_secret: secret.map(|s| s.as_str().to_owned()),
    }))
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
    let issued = state.service.rotate_key(&caller, &id, succession).await?;
    Ok((StatusCode::CREATED, Json(issued_key(issued))))
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
    if body.otp.as_ref().is_some_and(|otp| otp.len() > 16) {
        return Err(ApiError::Op(Error::InvalidRequest(
            "otp must be at most 16 characters".into(),
        )));
    }
    let proof = Proof {
        request: body.request.map(signed_request).transpose()?.map(Arc::new),
        otp: body.otp.map(|otp| Arc::new(Zeroizing::new(otp))),
    };
    let verification = state
        .verifier
        .verify_with(caller.token.as_ref(), &body.key, &required, cost, &proof)
        .await?;
    let mut answer = Vec::with_capacity(512);
    serde_json::to_writer(&mut answer, &verify_result(&verification))
        .map_err(|e| ApiError::Op(Error::Internal(Box::new(e))))?;
    Ok(answer)
}

/// Most headers of a request passed to verify.
const MAX_REQUEST_HEADERS: usize = 100;

/// A request passed to verify, as the verifier checks it.
fn signed_request(parts: RequestParts) -> Result<SignedRequest, ApiError> {
    let invalid = |what: &str| ApiError::Op(Error::InvalidRequest(format!("request.{what}")));
    if parts.headers.len() > MAX_REQUEST_HEADERS {
        return Err(invalid("headers: at most 100"));
    }
    if parts.method.is_empty()
        || parts.method.len() > 32
        || !parts.method.bytes().all(|b| b.is_ascii_alphabetic())
    {
        return Err(invalid("method must be an HTTP method such as POST"));
    }
    if !parts.path.starts_with('/') || parts.path.len() > 8192 {
        return Err(invalid("path must start with / and be at most 8192 bytes"));
    }
    if parts.query.as_ref().is_some_and(|q| q.len() > 16384) {
        return Err(invalid("query must be at most 16384 bytes"));
    }
    if parts.authority.as_ref().is_some_and(|a| a.len() > 512) {
        return Err(invalid("authority must be at most 512 bytes"));
    }
    if parts
        .url_scheme
        .as_deref()
        .is_some_and(|s| s != "http" && s != "https")
    {
        return Err(invalid("url_scheme must be http or https"));
    }
    let body_sha256 = match parts.body_sha256.as_deref() {
        None => None,
        Some(hex) => {
            let mut digest = [0u8; 32];
            base16ct::mixed::decode(hex, &mut digest)
                .ok()
                .filter(|d| d.len() == 32)
                .ok_or_else(|| invalid("body_sha256 must be 64 hex digits"))?;
            Some(digest)
        }
    };
    let authority = match parts.authority {
        Some(authority) => authority,
        None => parts
            .headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case("host"))
            .map(|(_, value)| value.clone())
            .unwrap_or_default(),
    };
    let scheme = match parts.scheme {
        Some(SignatureScheme::Rfc9421) => Scheme::Rfc9421,
        Some(SignatureScheme::Binance) => Scheme::Binance,
        // A request carrying RFC 9421's headers is signed that way; any
        // other is read as the exchange style.
        None if parts
            .headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("signature-input")) =>
        {
            Scheme::Rfc9421
        }
        None => Scheme::Binance,
    };
    Ok(SignedRequest {
        scheme,
        method: parts.method,
        url_scheme: parts.url_scheme.unwrap_or_else(|| "https".to_owned()),
        authority,
        path: parts.path,
        query: parts.query,
        headers: parts
            .headers
            .into_iter()
            .map(|(name, value)| (name, value.into_bytes()))
            .collect(),
        body: parts.body.map(String::into_bytes),
        body_sha256,
    })
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

/// Enrols a TOTP secret for an owner (the provider's customer), on its
/// behalf: the answer is shown once, for the customer's authenticator app.
/// It is pending until `POST /v1/owners/{owner}/totp/confirm`; from then on
/// a verify needing a critical scope of the owner's keys needs `otp`.
#[utoipa::path(post, path = "/v1/owners/{owner}/totp", tag = "owners",
    params(("owner" = String, Path, description = "the owner: 1–256 characters, none a control character",
        min_length = 1, max_length = 256, pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$")),
    responses((status = 200, body = keyward_proto::access::TotpEnrolled),
              (status = 400, body = ErrorResponse), (status = 404, body = ErrorResponse),
              (status = 503, body = ErrorResponse)),
    security(("admin_token" = ["keys:write"])))]
pub async fn enrol_owner_totp(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(owner): Path<String>,
) -> Result<Json<keyward_proto::access::TotpEnrolled>, ApiError> {
    let enrolled = state.service.enrol_owner_totp(&caller, &owner).await?;
    Ok(Json(keyward_proto::access::TotpEnrolled {
        secret: enrolled.secret,
        otpauth_uri: enrolled.otpauth_uri,
    }))
}

/// Confirms an owner's pending TOTP secret with a first code from it.
#[utoipa::path(post, path = "/v1/owners/{owner}/totp/confirm", tag = "owners",
    params(("owner" = String, Path, description = "the owner: 1–256 characters, none a control character",
        min_length = 1, max_length = 256, pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$")),
    request_body = keyward_proto::access::OtpBody,
    responses((status = 204), (status = 400, body = ErrorResponse),
              (status = 404, body = ErrorResponse), (status = 409, body = ErrorResponse)),
    security(("admin_token" = ["keys:write"])))]
pub async fn confirm_owner_totp(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(owner): Path<String>,
    Json(body): Json<keyward_proto::access::OtpBody>,
) -> Result<StatusCode, ApiError> {
    state
        .service
        .confirm_owner_totp(&caller, &owner, &body.otp)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Removes an owner's second factor: its critical scopes answer
/// `MFA_REQUIRED` until a new one is confirmed.
#[utoipa::path(delete, path = "/v1/owners/{owner}/totp", tag = "owners",
    params(("owner" = String, Path, description = "the owner: 1–256 characters, none a control character",
        min_length = 1, max_length = 256, pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$")),
    responses((status = 204), (status = 400, body = ErrorResponse),
              (status = 404, body = ErrorResponse)),
    security(("admin_token" = ["keys:write"])))]
pub async fn remove_owner_totp(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(owner): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.service.remove_owner_totp(&caller, &owner).await?;
    Ok(StatusCode::NO_CONTENT)
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
        reason: v.reason,
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
