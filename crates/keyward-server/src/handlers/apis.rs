//! `/v1/apis`: the provider's APIs, each with its own key prefix.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use keyward_core::model::check_text;
use keyward_core::{AdminScope, Api, ApiId, Environment, Prefix};
use serde_json::json;

use super::{audit_event, now, Json};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::AppState;
use keyward_proto::{ApiCreate, ApiList, ApiView, ErrorResponse};

/// Creates an API.
#[utoipa::path(post, path = "/v1/apis", tag = "apis", request_body = ApiCreate,
    responses((status = 201, body = ApiView), (status = 400, body = ErrorResponse),
              (status = 409, body = ErrorResponse)),
    security(("admin_token" = ["apis:write"])))]
pub async fn create_api(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Json(body): Json<ApiCreate>,
) -> Result<(StatusCode, Json<ApiView>), ApiError> {
    caller.require(AdminScope::ApisWrite)?;
    if caller.is_restricted() {
        return Err(ApiError::Forbidden(
            "a token limited to some APIs or environments cannot create APIs",
        ));
    }
    check_text("name", &body.name, 256)?;
    let prefix = Prefix::parse(&body.prefix)
        .map_err(|e| ApiError::InvalidRequest(e.to_string().replace("key prefix", "prefix")))?;
    if prefix.is_admin() {
        return Err(ApiError::InvalidRequest(
            "the prefix kwa is reserved for admin tokens".into(),
        ));
    }
    let mut environments = body
        .environments
        .unwrap_or_else(|| Environment::ALL.to_vec());
    environments.sort();
    environments.dedup();
    if environments.is_empty() {
        return Err(ApiError::InvalidRequest(
            "an API needs at least one environment".into(),
        ));
    }
    let now = now();
    let api = Api {
        id: ApiId::generate(now).map_err(ApiError::internal)?,
        name: body.name,
        prefix,
        environments,
        created_at: now,
    };
    let event = audit_event(
        Some(&caller),
        "api.create",
        api.id.as_str(),
        json!({"name": api.name, "prefix": api.prefix, "environments": api.environments}),
        now,
    )?;
    state.store.create_api(&api, &event).await?;
    Ok((StatusCode::CREATED, Json(api.into())))
}

/// Lists the APIs within the token's reach.
#[utoipa::path(get, path = "/v1/apis", tag = "apis",
    responses((status = 200, body = ApiList)),
    security(("admin_token" = ["apis:read"])))]
pub async fn list_apis(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Json<ApiList>, ApiError> {
    caller.require(AdminScope::ApisRead)?;
    let apis = state.store.list_apis().await?;
    let visible = apis
        .into_iter()
        .filter(|a| reaches(&caller, a))
        .map(ApiView::from)
        .collect();
    Ok(Json(ApiList { apis: visible }))
}

/// Reads one API.
#[utoipa::path(get, path = "/v1/apis/{id}", tag = "apis",
    params(("id" = String, Path, description = "API id (one malformed or out of reach is 404)",
        pattern = r"^api_[0-6][0-9A-Za-z]{21}$")),
    responses((status = 200, body = ApiView), (status = 404, body = ErrorResponse)),
    security(("admin_token" = ["apis:read"])))]
pub async fn get_api(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<ApiView>, ApiError> {
    caller.require(AdminScope::ApisRead)?;
    let id = ApiId::parse(&id).map_err(|_| ApiError::NotFound("api"))?;
    let api = state
        .store
        .get_api(&id)
        .await?
        .filter(|a| reaches(&caller, a))
        .ok_or(ApiError::NotFound("api"))?;
    Ok(Json(api.into()))
}

/// Whether any key of `api` would be within the caller's reach.
fn reaches(caller: &Caller, api: &Api) -> bool {
    api.environments
        .iter()
        .any(|env| caller.can_access(&api.id, *env))
}
