//! `/v1/keys`: issuing, reading, changing, rotating, revoking and verifying
//! API keys.

use std::net::IpAddr;
use std::ops::RangeInclusive;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use keyward_core::limits::{check_rate_limits, parse_allowlist, Credits};
use keyward_core::model::{check_metadata, check_text, normalize_scopes};
use keyward_core::{AdminScope, ApiId, KeyId, KeyRecord, PlaintextKey, Requirements, Scope};
use keyward_store::{BulkRevokeFilter, CreditsPatch, KeyFilter, KeyPatch, Rotation};
use serde_json::json;
use time::{Duration, OffsetDateTime};

use super::{audit_event, next_cursor, now, page, Json, LenientJson, OptionalJson, Query};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::AppState;
use keyward_proto::{
    BulkRevokeRequest, BulkRevokeResult, CreditsInput, ErrorResponse, IssuedKey, KeyCreate,
    KeyList, KeyQuery, KeyUpdate, KeyView, OwnerRateLimits, RevokeRequest, RotateRequest,
    UsageList, UsageQuery, UsageView, VerifyRequest, VerifyResult,
};

/// Largest cost of one verify.
const MAX_COST: u64 = 1_000_000;
/// Most scopes one key may carry.
const MAX_SCOPES: usize = 64;
/// Longest grace period a rotation may give the old key: 30 days.
const MAX_GRACE_SECONDS: u64 = 30 * 24 * 3600;

/// Issues a key. The plaintext is in this response and nowhere else, ever.
#[utoipa::path(post, path = "/v1/keys", tag = "keys", request_body = KeyCreate,
    responses((status = 201, body = IssuedKey), (status = 400, body = ErrorResponse),
              (status = 404, body = ErrorResponse)),
    security(("admin_token" = ["keys:write"])))]
pub async fn create_key(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Json(body): Json<KeyCreate>,
) -> Result<(StatusCode, Json<IssuedKey>), ApiError> {
    caller.require(AdminScope::KeysWrite)?;
    let now = now();
    // The token's environments are its own to know, so an environment out
    // of reach is said before any API is looked up: the answer tells
    // nothing about which APIs exist.
    if !caller.reaches_environment(body.environment) {
        return Err(ApiError::OutOfReach);
    }
    let api_id = ApiId::parse(&body.api_id).map_err(|_| ApiError::NotFound("api"))?;
    let api = state
        .store
        .get_api(&api_id)
        .await?
        .filter(|a| caller.can_access(&a.id, body.environment))
        .ok_or(ApiError::NotFound("api"))?;
    if !api.environments.contains(&body.environment) {
        return Err(ApiError::InvalidRequest(format!(
            "this API does not issue keys in the {} environment",
            body.environment
        )));
    }
    check_text("owner", &body.owner, 256)?;
    let name = body.name.unwrap_or_else(|| body.owner.clone());
    check_text("name", &name, 256)?;
    let scopes = parse_scopes(body.scopes)?;
    let metadata = body.metadata.unwrap_or_else(|| json!({}));
    check_metadata(&metadata)?;
    check_future("expires_at", body.expires_at, now)?;
    check_rate_limits(&body.ratelimits)?;
    let ip_allowlist = parse_allowlist(&body.ip_allowlist)?;
    let credits = body.credits.map(|c| credits_of(c, now)).transpose()?;

    let plaintext =
        PlaintextKey::generate(&api.prefix, body.environment).map_err(ApiError::internal)?;
    let mut record = KeyRecord::new(api.id, body.environment, body.owner, &plaintext, now)
        .map_err(ApiError::internal)?;
    record.name = name;
    record.scopes = scopes;
    record.metadata = metadata;
    record.enabled = body.enabled.unwrap_or(true);
    record.expires_at = body.expires_at;
    record.ratelimits = body.ratelimits;
    record.credits = credits;
    record.ip_allowlist = ip_allowlist;
    let event = audit_event(
        Some(&caller),
        "key.create",
        record.id.as_str(),
        created(&record),
        now,
    )?;
    state.store.create_key(&record, &event).await?;
    state.verifier.key_changed(&record.digest);
    let issued = IssuedKey {
        record: KeyView::new(record, now),
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
    caller.require(AdminScope::KeysRead)?;
    let record = load(&state, &caller, &id).await?;
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
    let api_id = query.api_id.as_deref().map(ApiId::parse).transpose()?;
    let filter = KeyFilter {
        api_id,
        owner: query.owner,
        environment: query.environment,
        state: query.state,
        api_ids_within: caller.token.api_ids.clone(),
        environments_within: caller.token.environments.clone(),
    };
    let now = now();
    let records = state.store.list_keys(&filter, &page, now).await?;
    let next = next_cursor(records.iter().map(|k| k.id.as_str()), records.len(), &page);
    let keys = records.into_iter().map(|k| KeyView::new(k, now)).collect();
    Ok(Json(KeyList {
        keys,
        next_cursor: next,
    }))
}

/// Changes a key's name, scopes, metadata, expiry or enabled flag; fields left
/// out stay as they are, and `expires_at: null` removes the expiry.
#[utoipa::path(patch, path = "/v1/keys/{id}", tag = "keys", request_body = KeyUpdate,
    params(("id" = String, Path, description = "key id (one malformed or out of reach is 404)",
        pattern = r"^key_[0-6][0-9A-Za-z]{21}$")),
    responses((status = 200, body = KeyView), (status = 400, body = ErrorResponse),
              (status = 404, body = ErrorResponse)),
    security(("admin_token" = ["keys:write"])))]
pub async fn update_key(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    Json(body): Json<KeyUpdate>,
) -> Result<Json<KeyView>, ApiError> {
    caller.require(AdminScope::KeysWrite)?;
    let record = load(&state, &caller, &id).await?;
    let now = now();
    if let Some(name) = &body.name {
        check_text("name", name, 256)?;
    }
    let scopes = body.scopes.map(parse_scopes).transpose()?;
    if let Some(metadata) = &body.metadata {
        check_metadata(metadata)?;
    }
    if let Some(expires_at) = body.expires_at {
        check_future("expires_at", expires_at, now)?;
    }
    if let Some(limits) = &body.ratelimits {
        check_rate_limits(limits)?;
    }
    let ip_allowlist = body
        .ip_allowlist
        .as_deref()
        .map(parse_allowlist)
        .transpose()?;
    let credits = match body.credits {
        None => None,
        Some(None) => Some(None),
        Some(Some(c)) => {
            credits_of(c, now)?;
            Some(Some(CreditsPatch {
                remaining: c.remaining,
                refill: c.refill,
            }))
        }
    };
    let mut changed = Vec::new();
    for (field, set) in [
        ("name", body.name.is_some()),
        ("scopes", scopes.is_some()),
        ("metadata", body.metadata.is_some()),
        ("expires_at", body.expires_at.is_some()),
        ("enabled", body.enabled.is_some()),
        ("ratelimits", body.ratelimits.is_some()),
        ("credits", credits.is_some()),
        ("ip_allowlist", ip_allowlist.is_some()),
    ] {
        if set {
            changed.push(field);
        }
    }
    let mut details = json!({ "fields": changed });
    if let Some(scopes) = &scopes {
        details["scopes"] = json!(scopes);
    }
    if let Some(enabled) = body.enabled {
        details["enabled"] = json!(enabled);
    }
    let patch = KeyPatch {
        name: body.name,
        scopes,
        metadata: body.metadata,
        expires_at: body.expires_at,
        enabled: body.enabled,
        ratelimits: body.ratelimits,
        credits,
        ip_allowlist,
    };
    let event = audit_event(
        Some(&caller),
        "key.update",
        record.id.as_str(),
        details,
        now,
    )?;
    let updated = state
        .store
        .update_key(&record.id, &patch, now, &event)
        .await?;
    state.verifier.key_changed(&record.digest);
    Ok(Json(KeyView::new(updated, now)))
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
    caller.require(AdminScope::KeysWrite)?;
    let record = load(&state, &caller, &id).await?;
    let reason = body
        .and_then(|b| b.reason)
        .unwrap_or_else(|| "revoked".to_owned());
    check_text("reason", &reason, 1024)?;
    let now = now();
    let event = audit_event(
        Some(&caller),
        "key.revoke",
        record.id.as_str(),
        json!({ "reason": reason }),
        now,
    )?;
    let (revoked, _) = state
        .store
        .revoke_key(&record.id, &reason, now, &event)
        .await?;
    state.verifier.key_changed(&record.digest);
    Ok(Json(KeyView::new(revoked, now)))
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
    caller.require(AdminScope::KeysWrite)?;
    let old = load(&state, &caller, &id).await?;
    let body = body.unwrap_or_default();
    if body.grace_period_seconds > MAX_GRACE_SECONDS {
        return Err(ApiError::InvalidRequest(format!(
            "grace_period_seconds must be at most {MAX_GRACE_SECONDS}"
        )));
    }
    if old.revoked_at.is_some() {
        return Err(ApiError::Conflict("a revoked key cannot be rotated"));
    }
    if old.rotated_to.is_some() {
        return Err(ApiError::Conflict("this key was already rotated"));
    }
    let now = now();
    let expires_at = body.expires_at.unwrap_or(old.expires_at);
    check_future("expires_at", expires_at, now)?;
    let api = state
        .store
        .get_api(&old.api_id)
        .await?
        .ok_or(ApiError::NotFound("api"))?;
    let plaintext =
        PlaintextKey::generate(&api.prefix, old.environment).map_err(ApiError::internal)?;
    let successor = KeyRecord {
        id: KeyId::generate(now).map_err(ApiError::internal)?,
        digest: plaintext.digest(),
        start: plaintext.display_start(),
        created_at: now,
        updated_at: now,
        expires_at,
        revoked_at: None,
        revoke_reason: None,
        rotated_from: Some(old.id.clone()),
        rotated_to: None,
        last_used_at: None,
        ..old.clone()
    };
    let grace = Duration::seconds(body.grace_period_seconds as i64);
    let events = [
        audit_event(
            Some(&caller),
            "key.rotate",
            old.id.as_str(),
            json!({
                "successor": successor.id,
                "grace_period_seconds": body.grace_period_seconds,
            }),
            now,
        )?,
        audit_event(
            Some(&caller),
            "key.create",
            successor.id.as_str(),
            json!({ "rotated_from": old.id, "start": successor.start }),
            now,
        )?,
    ];
    let rotation = Rotation {
        old: old.id.clone(),
        old_expires_at: now + grace,
        successor: successor.clone(),
    };
    state.store.rotate_key(&rotation, &events).await?;
    state.verifier.key_changed(&old.digest);
    state.verifier.key_changed(&successor.digest);
    let issued = IssuedKey {
        record: KeyView::new(successor, now),
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
    caller.require(AdminScope::KeysWrite)?;
    check_text("reason", &body.reason, 1024)?;
    let filter = BulkRevokeFilter {
        owner: body.owner,
        api_id: body.api_id.as_deref().map(ApiId::parse).transpose()?,
        environment: body.environment,
        created_before: body.created_before,
        scope: body.scope.as_deref().map(Scope::parse).transpose()?,
        api_ids_within: caller.token.api_ids.clone(),
        environments_within: caller.token.environments.clone(),
    };
    if !filter.has_criteria() {
        return Err(ApiError::EmptyFilter);
    }
    let now = now();
    let mut criteria = json!({});
    if let Some(owner) = &filter.owner {
        criteria["owner"] = json!(owner);
    }
    if let Some(api_id) = &filter.api_id {
        criteria["api_id"] = json!(api_id);
    }
    if let Some(env) = filter.environment {
        criteria["environment"] = json!(env);
    }
    if let Some(before) = filter.created_before {
        criteria["created_before"] = json!(before.unix_timestamp());
    }
    if let Some(scope) = &filter.scope {
        criteria["scope"] = json!(scope);
    }
    let template = audit_event(
        Some(&caller),
        "key.revoke",
        "",
        json!({ "reason": body.reason, "bulk": criteria }),
        now,
    )?;
    let revoked = state
        .store
        .bulk_revoke(&filter, &body.reason, now, &template)
        .await?;
    for digest in &revoked {
        state.verifier.key_changed(digest);
    }
    Ok(Json(BulkRevokeResult {
        revoked: revoked.len() as u64,
    }))
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
            ip.parse::<IpAddr>()
                .map_err(|_| ApiError::InvalidRequest("ip must be an IPv4 or IPv6 address".into()))
        })
        .transpose()?;
    let cost = body.cost.unwrap_or(1);
    if cost > MAX_COST {
        return Err(ApiError::InvalidRequest(format!(
            "cost must be at most {MAX_COST}"
        )));
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
        .map_err(|e| ApiError::Internal(Box::new(e)))?;
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
    let record = load(&state, &caller, &id).await?;
    let rows = state.store.key_usage(&record.id, minutes).await?;
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
        return Err(ApiError::InvalidRequest(
            "since and until must be Unix times in seconds".into(),
        ));
    }
    if since > until {
        return Err(ApiError::InvalidRequest(
            "since must not be after until".into(),
        ));
    }
    if until - since > MAX_USAGE_SPAN_S {
        return Err(ApiError::InvalidRequest(
            "since and until may be at most 7 days apart".into(),
        ));
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
    caller.require(AdminScope::KeysRead)?;
    check_text("owner", &owner, 256)?;
    if !owner_within_reach(&state, &caller, &owner).await? {
        return Err(ApiError::NotFound("owner"));
    }
    let ratelimits = state.store.owner_ratelimits(&owner).await?;
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
    caller.require(AdminScope::KeysWrite)?;
    if caller.is_restricted() {
        return Err(ApiError::Forbidden(
            "owner limits span APIs and environments: setting them needs a token without API or \
             environment limits",
        ));
    }
    check_text("owner", &owner, 256)?;
    check_rate_limits(&body.ratelimits)?;
    let now = now();
    let event = audit_event(
        Some(&caller),
        "owner.ratelimits",
        &owner,
        json!({ "ratelimits": body.ratelimits }),
        now,
    )?;
    state
        .store
        .set_owner_ratelimits(&owner, &body.ratelimits, now, &event)
        .await?;
    state.verifier.owner_changed(&owner);
    Ok(Json(body))
}

/// Whether every key of `owner` is within the caller's reach, and there is
/// at least one: a token without limits reaches every owner, one with limits
/// only owners it sees whole.
async fn owner_within_reach(
    state: &AppState,
    caller: &Caller,
    owner: &str,
) -> Result<bool, ApiError> {
    if !caller.is_restricted() {
        return Ok(true);
    }
    let filter = KeyFilter {
        owner: Some(owner.to_owned()),
        ..KeyFilter::default()
    };
    let mut page = keyward_store::Page {
        after: None,
        limit: super::MAX_LIMIT,
    };
    let mut seen = false;
    loop {
        let keys = state.store.list_keys(&filter, &page, now()).await?;
        if keys
            .iter()
            .any(|k| !caller.can_access(&k.api_id, k.environment))
        {
            return Ok(false);
        }
        seen |= !keys.is_empty();
        match next_cursor(keys.iter().map(|k| k.id.as_str()), keys.len(), &page) {
            Some(after) => page.after = Some(after),
            None => return Ok(seen),
        }
    }
}

/// Loads a key by its id from the path, as `NOT_FOUND` when it is malformed,
/// absent or outside the caller's reach.
async fn load(state: &AppState, caller: &Caller, id: &str) -> Result<KeyRecord, ApiError> {
    let id = KeyId::parse(id).map_err(|_| ApiError::NotFound("key"))?;
    state
        .store
        .get_key(&id)
        .await?
        .filter(|k| caller.can_access(&k.api_id, k.environment))
        .ok_or(ApiError::NotFound("key"))
}

fn parse_scopes(scopes: Vec<String>) -> Result<Vec<Scope>, ApiError> {
    if scopes.len() > MAX_SCOPES {
        return Err(ApiError::InvalidRequest(format!(
            "a key carries at most {MAX_SCOPES} scopes"
        )));
    }
    let parsed = scopes
        .iter()
        .map(|s| Scope::parse(s))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(normalize_scopes(parsed))
}

/// Checks credits given by a caller and starts their refill period now.
fn credits_of(c: CreditsInput, now: OffsetDateTime) -> Result<Credits, ApiError> {
    if let Some(refill) = &c.refill {
        refill.check()?;
    }
    if c.remaining > i64::MAX as u64 {
        return Err(ApiError::InvalidRequest(
            "credits.remaining is too large".into(),
        ));
    }
    Ok(Credits {
        remaining: c.remaining,
        refill: c.refill,
        refilled_at: c.refill.map_or(now, |r| r.period_start(now)),
    })
}

fn check_future(
    field: &str,
    at: Option<OffsetDateTime>,
    now: OffsetDateTime,
) -> Result<(), ApiError> {
    match at {
        Some(at) if at <= now => Err(ApiError::InvalidRequest(format!(
            "{field} must be in the future"
        ))),
        _ => Ok(()),
    }
}

/// Audit details of a new key: everything but secrets.
fn created(record: &KeyRecord) -> serde_json::Value {
    json!({
        "api_id": record.api_id,
        "environment": record.environment,
        "owner": record.owner,
        "scopes": record.scopes,
        "start": record.start,
        "expires_at": record.expires_at.map(|t| t.unix_timestamp()),
    })
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
    }
}
