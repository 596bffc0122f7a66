//! `/v1/apis`: the provider's APIs, each with its own key prefix.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use keyward_service::apis::{ApiChanges, NewApi};

use super::Json;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::AppState;
use keyward_proto::{ApiCreate, ApiList, ApiUpdate, ApiView, ErrorResponse};

/// Creates an API.
#[utoipa::path(post, path = "/v1/apis", tag = "apis", request_body = ApiCreate,
    responses((status = 201, body = ApiView), (status = 400, body = ErrorResponse),
              (status = 404, body = ErrorResponse), (status = 409, body = ErrorResponse)),
    security(("admin_token" = ["apis:write"])))]
pub async fn create_api(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Json(body): Json<ApiCreate>,
) -> Result<(StatusCode, Json<ApiView>), ApiError> {
    let new = NewApi {
        name: body.name,
        prefix: body.prefix,
        environments: body.environments,
        workspace: body.workspace,
        roles: body.roles,
        critical_scopes: body.critical_scopes,
        signing: body.signing.map(signing_rules),
    };
    let api = state.service.create_api(&caller, new).await?;
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
    let apis = state.service.list_apis(&caller).await?;
    let apis = apis.into_iter().map(ApiView::from).collect();
    Ok(Json(ApiList { apis }))
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
    let api = state.service.api(&caller, &id).await?;
    Ok(Json(api.into()))
}

/// Changes an API's name, key roles or critical scopes; fields left out stay
/// as they are. A role's new scopes apply to every key holding it at its
/// next verify, on every node. Removing a role that unrevoked keys hold is
/// refused (409).
#[utoipa::path(patch, path = "/v1/apis/{id}", tag = "apis", request_body = ApiUpdate,
    params(("id" = String, Path, description = "API id (one malformed or out of reach is 404)",
        pattern = r"^api_[0-6][0-9A-Za-z]{21}$")),
    responses((status = 200, body = ApiView), (status = 400, body = ErrorResponse),
              (status = 404, body = ErrorResponse), (status = 409, body = ErrorResponse)),
    security(("admin_token" = ["apis:write"])))]
pub async fn update_api(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    Json(body): Json<ApiUpdate>,
) -> Result<Json<ApiView>, ApiError> {
    let changes = ApiChanges {
        name: body.name,
        roles: body.roles,
        critical_scopes: body.critical_scopes,
        signing: body.signing.map(signing_rules),
    };
    let api = state.service.update_api(&caller, &id, changes).await?;
    Ok(Json(api.into()))
}

fn signing_rules(body: keyward_proto::ApiSigningBody) -> keyward_service::apis::SigningRules {
    keyward_service::apis::SigningRules {
        all: body.all,
        scopes: body.scopes,
        ed25519_replaces_otp: body.ed25519_replaces_otp,
    }
}
