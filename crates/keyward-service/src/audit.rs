//! Audit events as every operation writes them.

use keyward_core::{AuditAction, AuditEvent};
use time::OffsetDateTime;

use crate::{Actor, Error};

/// The audit event of an operation `actor` performed (`None`: the server
/// itself) at `now`.
pub fn audit_event(
    actor: Option<&Actor>,
    action: AuditAction,
    target: &str,
    details: serde_json::Value,
    now: OffsetDateTime,
) -> Result<AuditEvent, Error> {
    // A session acts for a person: the event names the user too.
    let mut details = details;
    if let (Some(user), Some(object)) = (actor.and_then(Actor::user_id), details.as_object_mut()) {
        object.insert("by_user".to_owned(), user.as_str().into());
    }
    Ok(AuditEvent {
        id: keyward_store::event_id(now)?,
        at: now,
        actor: actor.map(|a| a.id().clone()),
        action: action.as_str().to_owned(),
        target: target.to_owned(),
        details,
    })
}

/// The current time at millisecond precision, as stored.
pub fn now() -> OffsetDateTime {
    to_millis(OffsetDateTime::now_utc())
}

/// `at` cut to the millisecond, the precision the store keeps.
pub fn to_millis(at: OffsetDateTime) -> OffsetDateTime {
    let millis = at.unix_timestamp_nanos() / 1_000_000 * 1_000_000;
    OffsetDateTime::from_unix_timestamp_nanos(millis).unwrap_or(at)
}
