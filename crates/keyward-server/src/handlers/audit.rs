//! `/v1/audit`: the audit log, read-only, filtered by the caller's reach
//! like every other read: a token limited to some APIs or environments sees
//! only events about records of those (each event records the API and
//! environment of its record, see the store). Events about no API or
//! environment (seal, tokens, transit) are seen only by tokens unlimited in
//! that dimension.
//!
//! `/v1/audit/status` shows the hash chain's head and this node's last
//! check of it; `POST /v1/audit/verify` checks it now. Both need
//! `audit:read` over every API and environment.
//!
//! A row that cannot be read back is listed in its place as
//! `{"id", "error": "unreadable"}` and logged, so that one bad row neither
//! fails the listing nor disappears from it.

use std::sync::Arc;

use axum::extract::State;
use keyward_core::AdminScope;
use keyward_service::audit_log::AuditEntry;
use keyward_service::audit_log::AuditListing;

use super::{next_cursor, page, Json, Query};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::AppState;
use keyward_core::chain::to_hex;
use keyward_proto::{
    AuditEntryView, AuditExport, AuditExportQuery, AuditList, AuditQuery, AuditStatusView,
    AuditView, ChainCheckView, ChainHeadView, CheckpointView, ExportedEvent, UnreadableAuditView,
};

/// Lists audit events within the caller's reach, in the order they
/// happened.
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
    let listing = AuditListing {
        target: query.target,
        action: query.action,
    };
    let entries = state.service.list_audit(&caller, listing, &page).await?;
    let next = next_cursor(entries.iter().map(AuditEntry::id), entries.len(), &page);
    let events = entries
        .into_iter()
        .map(|entry| match entry {
            AuditEntry::Event(event) => AuditEntryView::Event(AuditView::from(event)),
            AuditEntry::Unreadable { id, .. } => AuditEntryView::Unreadable(UnreadableAuditView {
                id,
                error: "unreadable",
            }),
        })
        .collect();
    Ok(Json(AuditList {
        events,
        next_cursor: next,
    }))
}

/// A page of the audit chain in sequence order, every field as stored with
/// its hashes: the export a SIEM or an auditor reads and can verify.
#[utoipa::path(get, path = "/v1/audit/events", tag = "audit", params(AuditExportQuery),
    responses((status = 200, body = AuditExport)),
    security(("admin_token" = ["audit:read"])))]
pub async fn export_audit(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(query): Query<AuditExportQuery>,
) -> Result<Json<AuditExport>, ApiError> {
    let page = page(None, query.limit)?;
    let rows = state
        .service
        .export_audit(&caller, query.since.unwrap_or(0), page.limit)
        .await?;
    let full = rows.len() == page.limit as usize;
    let events: Vec<ExportedEvent> = rows.into_iter().map(exported).collect();
    let next = if full {
        events.last().map(|e| e.sequence)
    } else {
        None
    };
    Ok(Json(AuditExport { events, next }))
}

/// A chained row as exported. Details that are not JSON (a hand edit) are
/// exported as their text, a string, which then fails verification as it
/// should.
fn exported(row: keyward_core::chain::ChainRow) -> ExportedEvent {
    let e = row.event;
    ExportedEvent {
        sequence: u64::try_from(row.sequence).unwrap_or(0),
        at: time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(e.at_ms) * 1_000_000)
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH),
        at_ms: e.at_ms,
        id: e.id,
        actor: e.actor,
        action: e.action,
        target: e.target,
        details: serde_json::from_str(&e.details).unwrap_or(serde_json::Value::String(e.details)),
        api_id: e.api_id,
        environment: e.environment,
        prev_hash: to_hex(row.prev_hash.as_deref().unwrap_or_default()),
        hash: to_hex(row.hash.as_deref().unwrap_or_default()),
    }
}

/// The audit chain's head and this node's last check of the whole chain.
#[utoipa::path(get, path = "/v1/audit/status", tag = "audit",
    responses((status = 200, body = AuditStatusView)),
    security(("admin_token" = ["audit:read"])))]
pub async fn audit_status(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Json<AuditStatusView>, ApiError> {
    let status = state.service.audit_status(&caller).await?;
    Ok(Json(AuditStatusView {
        head: status.head.map(ChainHeadView::from),
        last_verification: status
            .last_check
            .map(|check| ChainCheckView::of(check.at, &check.report)),
        last_checkpoint: status.last_checkpoint.map(|c| CheckpointView {
            sequence: c.sequence,
            hash: to_hex(&c.hash),
            at: time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(c.at_ms) * 1_000_000)
                .unwrap_or(time::OffsetDateTime::UNIX_EPOCH),
        }),
        public_key: status.public_key.map(|k| {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.encode(k)
        }),
    }))
}

/// Checks the whole audit chain now.
#[utoipa::path(post, path = "/v1/audit/verify", tag = "audit",
    responses((status = 200, body = ChainCheckView)),
    security(("admin_token" = ["audit:read"])))]
pub async fn verify_audit(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Json<ChainCheckView>, ApiError> {
    let result = state.service.verify_audit_chain(&caller).await?;
    Ok(Json(ChainCheckView::of(result.at, &result.report)))
}
