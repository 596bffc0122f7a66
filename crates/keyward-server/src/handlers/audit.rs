//! `/v1/audit`: the audit log, read-only.

use std::sync::Arc;

use axum::extract::State;
use keyward_core::AdminScope;
use keyward_store::AuditFilter;

use super::{next_cursor, page, Json, Query};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::wire::{AuditList, AuditQuery, AuditView};
use crate::AppState;

/// Lists audit events in the order they happened.
#[utoipa::path(get, path = "/v1/audit", tag = "audit", params(AuditQuery),
    responses((status = 200, body = AuditList)),
    security(("admin_token" = ["audit:read"])))]
pub async fn list_audit(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(query): Query<AuditQuery>,
) -> Result<Json<AuditList>, ApiError> {
    caller.require(AdminScope::AuditRead)?;
    let page = page(query.cursor, query.limit)?;
    let filter = AuditFilter {
        target: query.target,
        action: query.action,
    };
    let events = state.store.list_audit(&filter, &page).await?;
    let next = next_cursor(events.iter().map(|e| e.id.as_str()), events.len(), &page);
    Ok(Json(AuditList {
        events: events.into_iter().map(AuditView::from).collect(),
        next_cursor: next,
    }))
}
