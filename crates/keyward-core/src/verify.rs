//! The verification rules: given a stored key and what the caller requires,
//! the one code that answers the verify.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::key::Environment;
use crate::model::{KeyRecord, Scope};

/// The outcome of a verify. Stable: callers branch on these names.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[non_exhaustive]
pub enum VerifyCode {
    Valid,
    /// Not a well-formed key; decided without touching storage.
    Malformed,
    /// No such key, or one the caller may not see.
    NotFound,
    Expired,
    Revoked,
    Disabled,
    /// The key belongs to another environment than the one required.
    WrongEnvironment,
    /// The key lacks a scope the caller requires.
    InsufficientScope,
}

impl VerifyCode {
    pub fn as_str(self) -> &'static str {
        match self {
            VerifyCode::Valid => "VALID",
            VerifyCode::Malformed => "MALFORMED",
            VerifyCode::NotFound => "NOT_FOUND",
            VerifyCode::Expired => "EXPIRED",
            VerifyCode::Revoked => "REVOKED",
            VerifyCode::Disabled => "DISABLED",
            VerifyCode::WrongEnvironment => "WRONG_ENVIRONMENT",
            VerifyCode::InsufficientScope => "INSUFFICIENT_SCOPE",
        }
    }
}

/// What the caller of a verify requires of the key.
#[derive(Debug, Clone, Default)]
pub struct Requirements {
    /// Every one of these scopes must be on the key.
    pub scopes: Vec<Scope>,
    /// When set, the key must belong to this environment.
    pub environment: Option<Environment>,
}

/// Applies the rules in order of finality: a revoked key reports `REVOKED`
/// even if it has also expired, and the environment wall is checked before
/// scopes so a `test` key never learns what a `live` endpoint requires.
pub fn evaluate(record: &KeyRecord, required: &Requirements, now: OffsetDateTime) -> VerifyCode {
    if record.revoked_at.is_some() {
        return VerifyCode::Revoked;
    }
    if record.expires_at.is_some_and(|at| at <= now) {
        return VerifyCode::Expired;
    }
    if !record.enabled {
        return VerifyCode::Disabled;
    }
    if required
        .environment
        .is_some_and(|env| env != record.environment)
    {
        return VerifyCode::WrongEnvironment;
    }
    if !required.scopes.iter().all(|s| record.scopes.contains(s)) {
        return VerifyCode::InsufficientScope;
    }
    VerifyCode::Valid
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::{ApiId, KeyId};
    use crate::key::KeyDigest;
    use time::Duration;

    fn record(now: OffsetDateTime) -> KeyRecord {
        KeyRecord {
            id: KeyId::generate(now).unwrap(),
            api_id: ApiId::generate(now).unwrap(),
            environment: Environment::Live,
            name: "k".into(),
            owner: "acme".into(),
            scopes: vec![Scope::parse("prices:read").unwrap()],
            metadata: serde_json::json!({}),
            digest: KeyDigest::of("x"),
            start: "tm_live_0000".into(),
            enabled: true,
            created_at: now,
            updated_at: now,
            expires_at: None,
            revoked_at: None,
            revoke_reason: None,
            rotated_from: None,
            rotated_to: None,
        }
    }

    fn check(mutate: impl Fn(&mut KeyRecord, &mut Requirements), expected: VerifyCode) {
        let now = OffsetDateTime::now_utc();
        let mut rec = record(now);
        let mut req = Requirements::default();
        mutate(&mut rec, &mut req);
        assert_eq!(evaluate(&rec, &req, now), expected);
    }

    #[test]
    fn each_rule_yields_its_code() {
        let now = OffsetDateTime::now_utc();
        check(|_, _| {}, VerifyCode::Valid);
        check(|r, _| r.revoked_at = Some(now), VerifyCode::Revoked);
        check(
            |r, _| r.expires_at = Some(now - Duration::seconds(1)),
            VerifyCode::Expired,
        );
        check(|r, _| r.enabled = false, VerifyCode::Disabled);
        check(
            |_, q| q.environment = Some(Environment::Test),
            VerifyCode::WrongEnvironment,
        );
        check(
            |_, q| q.scopes = vec![Scope::parse("orders:write").unwrap()],
            VerifyCode::InsufficientScope,
        );
        check(
            |_, q| q.scopes = vec![Scope::parse("prices:read").unwrap()],
            VerifyCode::Valid,
        );
    }

    #[test]
    fn revocation_outranks_expiry_and_disabling() {
        let now = OffsetDateTime::now_utc();
        check(
            |r, _| {
                r.revoked_at = Some(now);
                r.expires_at = Some(now - Duration::days(1));
                r.enabled = false;
            },
            VerifyCode::Revoked,
        );
    }
}
