//! Reading the audit log, filtered by the actor's reach like every other
//! read: an actor limited to some APIs or environments sees only events
//! about records of those. Events about no API or environment (seal,
//! tokens, transit) are seen only by actors unlimited in that dimension.
//!
//! The log's hash chain is checked here too: [`check_chain`] reads it
//! whole, offline or in the server, and [`Service::check_audit_chain`]
//! keeps the last result for `GET /v1/audit/status` and records a first
//! finding as `audit.tamper_detected`.

use keyward_core::chain::ChainCheck;
pub use keyward_core::chain::{ChainHead, ChainReport, Finding, Tamper};
use keyward_core::{AdminScope, AuditAction};
pub use keyward_store::AuditEntry;
use keyward_store::AuditFilter;
use keyward_store::Page;
use keyward_store::{Store, StoreError};
use serde_json::json;
use time::OffsetDateTime;

use crate::{Actor, Error, Service};

/// Which events a listing shows.
#[derive(Debug, Clone, Default)]
pub struct AuditListing {
    pub target: Option<String>,
    pub action: Option<String>,
}

impl Service {
    /// A page of audit events within the actor's reach, in the order they
    /// happened. A row that cannot be read back is in its place as
    /// [`AuditEntry::Unreadable`], logged here at `error`.
    pub async fn list_audit(
        &self,
        actor: &Actor,
        listing: AuditListing,
        page: &Page,
    ) -> Result<Vec<AuditEntry>, Error> {
        actor.require(AdminScope::AuditRead)?;
        // Grants of audit:read of several shapes read the union of their
        // APIs across the union of their environments.
        let reach = self.reach_of(actor, AdminScope::AuditRead).await?;
        let filter = AuditFilter {
            target: listing.target,
            action: listing.action,
            api_ids_within: reach.api_ids(),
            environments_within: reach.environments(),
        };
        let entries = self.store.list_audit(&filter, page).await?;
        for entry in &entries {
            if let AuditEntry::Unreadable { id, detail } = entry {
                tracing::error!(event = %id, error = %detail, "an audit row cannot be read back");
            }
        }
        Ok(entries)
    }
}

/// Rows read per query while checking the chain.
const CHAIN_PAGE: u32 = 10_000;

/// Checks the audit log's hash chain as stored, from its first event to
/// the head read when the check began: events appended meanwhile are left
/// for the next check. An event outside the chain (no sequence number) is
/// a finding too; of two findings the earlier sequence number is reported.
pub async fn check_chain(store: &dyn Store) -> Result<ChainReport, StoreError> {
    let head = store.chain_head().await?;
    let end = head.map_or(u64::MAX, |head| head.sequence);
    let mut check = ChainCheck::new();
    let mut after = 0;
    let mut past_head = None;
    'pages: loop {
        let rows = store.chain_rows(after, CHAIN_PAGE).await?;
        let full = rows.len() == CHAIN_PAGE as usize;
        for row in rows {
            let sequence = u64::try_from(row.sequence).unwrap_or(0);
            if sequence > end {
                past_head = Some(sequence);
                break 'pages;
            }
            after = after.max(sequence);
            check.push(row);
        }
        if !full {
            break;
        }
    }
    let mut report = check.finish(head);
    // Events past the head read at the start were either appended since,
    // and the head has moved past them, or put there around Keyward.
    if let (Some(sequence), None) = (past_head, &report.finding) {
        let now = store.chain_head().await?;
        if now.is_none_or(|now| now.sequence < sequence) {
            report.finding = Some(Finding {
                sequence: end.saturating_add(1),
                kind: Tamper::Inserted,
                detail: "events follow the chain's head",
            });
        }
    }
    if let Some(position) = store.first_unchained().await? {
        if report
            .finding
            .as_ref()
            .is_none_or(|f| position < f.sequence)
        {
            report.finding = Some(Finding {
                sequence: position,
                kind: Tamper::Inserted,
                detail: "an event has no sequence number",
            });
        }
    }
    Ok(report)
}

/// The last check of the chain this node ran.
#[derive(Debug, Clone, PartialEq)]
pub struct ChainCheckResult {
    pub at: OffsetDateTime,
    pub report: ChainReport,
}

/// The audit log's state, as `GET /v1/audit/status` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditStatus {
    /// The chain's head as stored; `None` when its row is gone.
    pub head: Option<ChainHead>,
    pub last_check: Option<ChainCheckResult>,
}

impl Service {
    /// The chain's head and this node's last check of it. Needs
    /// `audit:read` over every API and environment, since the head counts
    /// every event.
    pub async fn audit_status(&self, actor: &Actor) -> Result<AuditStatus, Error> {
        self.require_whole_log(actor).await?;
        Ok(AuditStatus {
            head: self.store.chain_head().await?,
            last_check: self
                .chain_checks
                .lock()
                .map(|last| last.clone())
                .unwrap_or(None),
        })
    }

    /// Checks the chain now, for an actor who asked.
    pub async fn verify_audit_chain(&self, actor: &Actor) -> Result<ChainCheckResult, Error> {
        self.require_whole_log(actor).await?;
        self.check_audit_chain().await
    }

    async fn require_whole_log(&self, actor: &Actor) -> Result<(), Error> {
        actor.require(AdminScope::AuditRead)?;
        let reach = self.reach_of(actor, AdminScope::AuditRead).await?;
        if reach.api_ids().is_some() || reach.environments().is_some() {
            return Err(Error::Forbidden(
                "the audit chain covers every API and environment: use a token that reaches them all",
            ));
        }
        Ok(())
    }

    /// Checks the chain and keeps the result. A finding that differs from
    /// the last one is logged at `error` and recorded as an
    /// `audit.tamper_detected` event (by the server itself), once.
    pub async fn check_audit_chain(&self) -> Result<ChainCheckResult, Error> {
        let report = check_chain(self.store.as_ref()).await?;
        let result = ChainCheckResult {
            at: crate::now(),
            report,
        };
        let previous = match self.chain_checks.lock() {
            Ok(mut last) => last.replace(result.clone()),
            Err(_) => None,
        };
        let before = previous.and_then(|p| p.report.finding);
        if let Some(finding) = &result.report.finding {
            if before.as_ref() != Some(finding) {
                tracing::error!(
                    sequence = finding.sequence,
                    kind = %finding.kind,
                    detail = finding.detail,
                    "the audit log was changed outside Keyward"
                );
                let event = crate::audit_event(
                    None,
                    AuditAction::AuditTamperDetected,
                    "audit",
                    json!({
                        "sequence": finding.sequence,
                        "kind": finding.kind.as_str(),
                        "detail": finding.detail,
                    }),
                    result.at,
                )?;
                self.store.append_audit(&[event]).await?;
            }
        }
        Ok(result)
    }
}
