//! The verification rules: given a stored key and what the caller requires,
//! the one code that answers the verify.

use std::net::IpAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::key::Environment;
use crate::limits::Cidr;
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
    /// The caller's IP address is outside the key's allowlist.
    IpNotAllowed,
    /// A rate limit of the key or its owner is exhausted for now.
    RateLimited,
    /// The key's usage credits are used up until the next refill.
    UsageExceeded,
    /// The request had to be signed and was not (or the key has no
    /// signing key to sign with).
    SignatureRequired,
    /// The request's signature does not check out.
    SignatureInvalid,
    /// The request was signed outside the key's window.
    SignatureExpired,
    /// The request was seen before inside its window: its nonce (or, for
    /// a scheme without one, its signature) was used already.
    Replayed,
    /// A critical scope needs the owner's second factor, and the request's
    /// code was missing, wrong or used before.
    MfaRequired,
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
            VerifyCode::IpNotAllowed => "IP_NOT_ALLOWED",
            VerifyCode::RateLimited => "RATE_LIMITED",
            VerifyCode::UsageExceeded => "USAGE_EXCEEDED",
            VerifyCode::SignatureRequired => "SIGNATURE_REQUIRED",
            VerifyCode::SignatureInvalid => "SIGNATURE_INVALID",
            VerifyCode::SignatureExpired => "SIGNATURE_EXPIRED",
            VerifyCode::Replayed => "REPLAYED",
            VerifyCode::MfaRequired => "MFA_REQUIRED",
        }
    }
}

/// What the caller of a verify requires of the key.
#[derive(Debug, Clone, Default)]
pub struct Requirements {
    /// Every one of these scopes must be on the key. Shared, so a gateway
    /// route's scopes are not copied for each request.
    pub scopes: Arc<[Scope]>,
    /// When set, the key must belong to this environment.
    pub environment: Option<Environment>,
    /// The address of the client that presented the key; required when the
    /// key has an IP allowlist.
    pub ip: Option<IpAddr>,
}

/// What verification reads of a key: a small, cheap-to-share view kept in
/// the verify cache for every key, so it holds no display fields.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyPolicy {
    pub environment: Environment,
    pub enabled: bool,
    pub revoked: bool,
    pub expires_at: Option<OffsetDateTime>,
    /// Shared between keys with the same scope set.
    pub scopes: Arc<Vec<Scope>>,
    pub ip_allowlist: Box<[Cidr]>,
}

impl KeyRecord {
    /// The record's policy, with its own copy of its own scopes: the
    /// scopes of its roles are not among them. The verifier's cached
    /// policy holds the effective set (`model::effective_scopes`).
    pub fn policy(&self) -> KeyPolicy {
        KeyPolicy {
            environment: self.environment,
            enabled: self.enabled,
            revoked: self.revoked_at.is_some(),
            expires_at: self.expires_at,
            scopes: Arc::new(self.scopes.clone()),
            ip_allowlist: self.ip_allowlist.clone().into(),
        }
    }
}

/// Applies the stateless rules in order of finality: a revoked key reports
/// `REVOKED` even if it has also expired, and the environment wall is checked
/// before scopes so a `test` key never learns what a `live` endpoint
/// requires. Rate limits and credits, which need state, come after these.
pub fn evaluate(key: &KeyPolicy, required: &Requirements, now: OffsetDateTime) -> VerifyCode {
    evaluate_at(key, required, now.unix_timestamp_nanos())
}

/// [`evaluate`] at `now_unix_ns` nanoseconds since the Unix epoch: the hot
/// path reads the clock as a number and builds no date for it.
pub fn evaluate_at(key: &KeyPolicy, required: &Requirements, now_unix_ns: i128) -> VerifyCode {
    if key.revoked {
        return VerifyCode::Revoked;
    }
    if key
        .expires_at
        .is_some_and(|at| at.unix_timestamp_nanos() <= now_unix_ns)
    {
        return VerifyCode::Expired;
    }
    if !key.enabled {
        return VerifyCode::Disabled;
    }
    if required
        .environment
        .is_some_and(|env| env != key.environment)
    {
        return VerifyCode::WrongEnvironment;
    }
    if !required.scopes.iter().all(|s| key.scopes.contains(s)) {
        return VerifyCode::InsufficientScope;
    }
    if !ip_allowed(&key.ip_allowlist, required.ip) {
        return VerifyCode::IpNotAllowed;
    }
    VerifyCode::Valid
}

/// An empty allowlist admits any address; a non-empty one admits only the
/// addresses in its ranges, and fails closed when the address is unknown.
pub fn ip_allowed(allowlist: &[Cidr], ip: Option<IpAddr>) -> bool {
    allowlist.is_empty() || ip.is_some_and(|ip| allowlist.iter().any(|c| c.contains(ip)))
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
            roles: Vec::new(),
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
            ratelimits: Vec::new(),
            credits: None,
            ip_allowlist: Vec::new(),
            last_used_at: None,
            signing: None,
        }
    }

    fn check(mutate: impl Fn(&mut KeyRecord, &mut Requirements), expected: VerifyCode) {
        let now = OffsetDateTime::now_utc();
        let mut rec = record(now);
        let mut req = Requirements::default();
        mutate(&mut rec, &mut req);
        assert_eq!(evaluate(&rec.policy(), &req, now), expected);
    }

    #[test]
    fn a_key_expires_at_its_instant_whatever_the_offset() {
        let now = OffsetDateTime::now_utc();
        let mut rec = record(now);
        // The same instant written at another offset.
        rec.expires_at = Some(now.to_offset(time::macros::offset!(+5:30)));
        let policy = rec.policy();
        let req = Requirements::default();
        let at = now.unix_timestamp_nanos();
        assert_eq!(evaluate_at(&policy, &req, at), VerifyCode::Expired);
        assert_eq!(evaluate_at(&policy, &req, at - 1), VerifyCode::Valid);
        assert_eq!(evaluate(&policy, &req, now), VerifyCode::Expired);
        assert_eq!(
            evaluate(&policy, &req, now - Duration::nanoseconds(1)),
            VerifyCode::Valid
        );
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
            |_, q| q.scopes = vec![Scope::parse("orders:write").unwrap()].into(),
            VerifyCode::InsufficientScope,
        );
        check(
            |_, q| q.scopes = vec![Scope::parse("prices:read").unwrap()].into(),
            VerifyCode::Valid,
        );
    }

    #[test]
    fn ip_allowlists_fail_closed() {
        let list = vec![Cidr::parse("10.0.0.0/8").unwrap()];
        check(
            |r, _| r.ip_allowlist = list.clone(),
            VerifyCode::IpNotAllowed,
        );
        check(
            |r, q| {
                r.ip_allowlist = list.clone();
                q.ip = Some("10.1.1.1".parse().unwrap());
            },
            VerifyCode::Valid,
        );
        check(
            |r, q| {
                r.ip_allowlist = list.clone();
                q.ip = Some("192.0.2.1".parse().unwrap());
            },
            VerifyCode::IpNotAllowed,
        );
        check(
            |_, q| q.ip = Some("192.0.2.1".parse().unwrap()),
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
