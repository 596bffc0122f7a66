//! API keys: issuing, reading, changing, rotating and revoking them, and
//! the rate limits an owner's keys share.
//!
//! Every mutation here runs the same steps in the same order: the actor's
//! scope and reach are checked, the input is checked, the change is written
//! with its audit events in one transaction (the store also writes the
//! change-feed row other nodes follow), and this node's verify cache
//! forgets the key before the change is acknowledged.
//!
//! Invariant: a key outside the actor's reach, like a malformed or absent
//! id, is `NOT_FOUND`.

use keyward_core::limits::{check_rate_limits, parse_allowlist, Credits, RateLimit, Refill};
use keyward_core::model::{check_metadata, check_text, normalize_scopes};
use keyward_core::AuditAction;
use keyward_core::{
    AdminScope, Api, ApiId, Environment, KeyId, KeyRecord, KeyState, PlaintextKey, RoleName, Scope,
};
use keyward_store::{BulkRevokeFilter, CreditsPatch, KeyFilter, KeyPatch, Page, Rotation};
use serde_json::json;
use time::{Duration, OffsetDateTime};

use zeroize::Zeroizing;

pub use crate::signing::NewSigning;
use crate::{audit_event, now, Actor, Error, Service};

/// Most scopes one key may carry.
const MAX_SCOPES: usize = 64;
/// Longest grace period a rotation may give the old key: 30 days.
pub const MAX_GRACE_SECONDS: u64 = 30 * 24 * 3600;
/// Most keys read per page when an owner's keys are walked.
const WALK_PAGE: u32 = 1000;

/// A key to issue.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub api_id: String,
    pub environment: Environment,
    /// The owner's name when absent.
    pub name: Option<String>,
    pub owner: String,
    pub scopes: Vec<String>,
    /// `{}` when absent.
    pub metadata: Option<serde_json::Value>,
    pub expires_at: Option<OffsetDateTime>,
    /// `true` when absent.
    pub enabled: Option<bool>,
    pub ratelimits: Vec<RateLimit>,
    pub credits: Option<NewCredits>,
    pub ip_allowlist: Vec<String>,
    /// Roles of the key's API; each must be one the API defines.
    pub roles: Vec<String>,
    /// When set, every request with the key must be signed with this.
    pub signing: Option<NewSigning>,
}

/// A key just issued: its record, its plaintext and, for an HMAC signing
/// key, the signing secret. Both texts are shown once and kept nowhere.
pub struct IssuedKey {
    pub record: KeyRecord,
    pub plaintext: PlaintextKey,
    pub signing_secret: Option<Zeroizing<String>>,
}

/// Usage credits as a caller gives them; their refill period starts now.
#[derive(Debug, Clone, Copy)]
pub struct NewCredits {
    pub remaining: u64,
    pub refill: Option<Refill>,
}

/// Changes to a key; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct KeyChanges {
    pub name: Option<String>,
    pub scopes: Option<Vec<String>>,
    pub metadata: Option<serde_json::Value>,
    /// `Some(None)` removes the expiry.
    pub expires_at: Option<Option<OffsetDateTime>>,
    pub enabled: Option<bool>,
    pub ratelimits: Option<Vec<RateLimit>>,
    /// `Some(None)` removes the credits.
    pub credits: Option<Option<NewCredits>>,
    pub ip_allowlist: Option<Vec<String>>,
    /// Replaces the roles the key holds; each must be one its API defines.
    pub roles: Option<Vec<String>>,
    /// `Some(None)` lets the key verify unsigned again; `Some(Some(_))`
    /// gives it a new signing key (for HMAC, a new secret, shown once).
    pub signing: Option<Option<NewSigning>>,
}

/// How a key is succeeded.
#[derive(Debug, Clone, Copy, Default)]
pub struct Succession {
    /// How long the old key keeps working.
    pub grace_period_seconds: u64,
    /// The successor's expiry; the old key's when absent.
    pub expires_at: Option<Option<OffsetDateTime>>,
}

/// Which keys a bulk revocation takes: all criteria given must hold, and at
/// least one must be given.
#[derive(Debug, Clone, Default)]
pub struct BulkRevocation {
    pub owner: Option<String>,
    pub api_id: Option<String>,
    pub environment: Option<Environment>,
    pub created_before: Option<OffsetDateTime>,
    pub scope: Option<String>,
    pub reason: String,
}

/// Which keys a listing shows.
#[derive(Debug, Clone, Default)]
pub struct KeyListing {
    pub api_id: Option<String>,
    pub owner: Option<String>,
    pub environment: Option<Environment>,
    pub state: Option<KeyState>,
}

impl Service {
    /// Issues a key. The plaintext is returned here and kept nowhere.
    pub async fn create_key(&self, actor: &Actor, new: NewKey) -> Result<IssuedKey, Error> {
        actor.require(AdminScope::KeysWrite)?;
        let now = now();
        // The token's environments are its own to know, so an environment
        // out of reach is said before any API is looked up: the answer
        // tells nothing about which APIs exist.
        if !actor.reaches_environment(AdminScope::KeysWrite, new.environment) {
            return Err(Error::OutOfReach);
        }
        let api_id = ApiId::parse(&new.api_id).map_err(|_| Error::NotFound("api"))?;
        let api = self
            .store
            .get_api(&api_id)
            .await?
            .filter(|a| {
                actor.can(
                    AdminScope::KeysWrite,
                    &a.id,
                    Some(&a.workspace),
                    new.environment,
                )
            })
            .ok_or(Error::NotFound("api"))?;
        if !api.environments.contains(&new.environment) {
            return Err(Error::InvalidRequest(format!(
                "this API does not issue keys in the {} environment",
                new.environment
            )));
        }
        check_text("owner", &new.owner, 256)?;
        let name = new.name.unwrap_or_else(|| new.owner.clone());
        check_text("name", &name, 256)?;
        let scopes = parse_scopes(new.scopes)?;
        let roles = parse_roles(new.roles, &api)?;
        let metadata = new.metadata.unwrap_or_else(|| json!({}));
        check_metadata(&metadata)?;
        check_future("expires_at", new.expires_at, now)?;
        check_rate_limits(&new.ratelimits)?;
        let ip_allowlist = parse_allowlist(&new.ip_allowlist)?;
        let credits = new.credits.map(|c| credits_of(c, now)).transpose()?;

        let plaintext =
            PlaintextKey::generate(&api.prefix, new.environment).map_err(Error::internal)?;
        let mut record = KeyRecord::new(api.id, new.environment, new.owner, &plaintext, now)
            .map_err(Error::internal)?;
        record.name = name;
        record.scopes = scopes;
        record.roles = roles;
        record.metadata = metadata;
        record.enabled = new.enabled.unwrap_or(true);
        record.expires_at = new.expires_at;
        record.ratelimits = new.ratelimits;
        record.credits = credits;
        record.ip_allowlist = ip_allowlist;
        let signing_secret = match &new.signing {
            Some(signing) => {
                let (signing, secret) = self.make_signing(&record.id, signing).await?;
                record.signing = Some(signing);
                secret
            }
            None if api.signing.all => {
                return Err(Error::InvalidRequest(
                    "this API requires signed requests: give the key a signing key (signing.algorithm)"
                        .into(),
                ));
            }
            None => None,
        };
        let event = audit_event(
            Some(actor),
            AuditAction::KeyCreate,
            record.id.as_str(),
            created(&record),
            now,
        )?;
        self.store.create_key(&record, &event).await?;
        self.verifier.key_changed(&record.digest);
        Ok(IssuedKey {
            record,
            plaintext,
            signing_secret,
        })
    }

    /// A key by id (never its plaintext).
    pub async fn key(&self, actor: &Actor, id: &str) -> Result<KeyRecord, Error> {
        actor.require(AdminScope::KeysRead)?;
        self.load_key(actor, AdminScope::KeysRead, id).await
    }

    /// A key's usage counts per minute and code, for `minutes` (Unix
    /// minutes).
    pub async fn key_usage(
        &self,
        actor: &Actor,
        id: &str,
        minutes: std::ops::RangeInclusive<i64>,
    ) -> Result<Vec<keyward_store::UsageRow>, Error> {
        actor.require(AdminScope::KeysRead)?;
        let record = self.load_key(actor, AdminScope::KeysRead, id).await?;
        Ok(self.store.key_usage(&record.id, minutes).await?)
    }

    /// A page of keys in creation order, within the actor's reach.
    pub async fn list_keys(
        &self,
        actor: &Actor,
        listing: KeyListing,
        page: &Page,
    ) -> Result<Vec<KeyRecord>, Error> {
        actor.require(AdminScope::KeysRead)?;
        let api_id = listing.api_id.as_deref().map(ApiId::parse).transpose()?;
        let reach = self.reach_of(actor, AdminScope::KeysRead).await?;
        let filter = KeyFilter {
            api_id,
            owner: listing.owner,
            environment: listing.environment,
            state: listing.state,
            api_ids_within: reach.api_ids(),
            environments_within: reach.environments(),
        };
        if reach.is_exact() {
            return Ok(self.store.list_keys(&filter, page, now()).await?);
        }
        // Grants of several shapes: the store filters by their union, and
        // what no one grant reaches is skipped here, reading on until the
        // page is full or the keys end.
        let mut page = page.clone();
        let limit = page.limit as usize;
        let mut found = Vec::with_capacity(limit);
        loop {
            let batch = self.store.list_keys(&filter, &page, now()).await?;
            let full_batch = batch.len() == limit;
            for key in batch {
                page.after = Some(key.id.as_str().to_owned());
                if reach.covers(&key.api_id, key.environment) {
                    found.push(key);
                    if found.len() == limit {
                        return Ok(found);
                    }
                }
            }
            if !full_batch {
                return Ok(found);
            }
        }
    }

    /// Changes a key's fields; those left out stay as they are.
    /// An HMAC signing key given here comes back with its new secret, to
    /// show once.
    pub async fn update_key(
        &self,
        actor: &Actor,
        id: &str,
        changes: KeyChanges,
    ) -> Result<(KeyRecord, Option<Zeroizing<String>>), Error> {
        actor.require(AdminScope::KeysWrite)?;
        let record = self.load_key(actor, AdminScope::KeysWrite, id).await?;
        let now = now();
        if let Some(name) = &changes.name {
            check_text("name", name, 256)?;
        }
        let scopes = changes.scopes.map(parse_scopes).transpose()?;
        let roles = match changes.roles {
            None => None,
            Some(roles) => {
                let api = self
                    .store
                    .get_api(&record.api_id)
                    .await?
                    .ok_or(Error::NotFound("api"))?;
                Some(parse_roles(roles, &api)?)
            }
        };
        if let Some(metadata) = &changes.metadata {
            check_metadata(metadata)?;
        }
        if let Some(expires_at) = changes.expires_at {
            check_future("expires_at", expires_at, now)?;
        }
        if let Some(limits) = &changes.ratelimits {
            check_rate_limits(limits)?;
        }
        let ip_allowlist = changes
            .ip_allowlist
            .as_deref()
            .map(parse_allowlist)
            .transpose()?;
        let credits = match changes.credits {
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
            ("name", changes.name.is_some()),
            ("scopes", scopes.is_some()),
            ("metadata", changes.metadata.is_some()),
            ("expires_at", changes.expires_at.is_some()),
            ("enabled", changes.enabled.is_some()),
            ("ratelimits", changes.ratelimits.is_some()),
            ("credits", credits.is_some()),
            ("ip_allowlist", ip_allowlist.is_some()),
            ("roles", roles.is_some()),
            ("signing", changes.signing.is_some()),
        ] {
            if set {
                changed.push(field);
            }
        }
        let mut details = json!({ "fields": changed });
        if let Some(scopes) = &scopes {
            details["scopes"] = json!(scopes);
        }
        if let Some(roles) = &roles {
            details["roles"] = json!(roles);
        }
        if let Some(enabled) = changes.enabled {
            details["enabled"] = json!(enabled);
        }
        let (signing, signing_secret) = match &changes.signing {
            None => (None, None),
            Some(None) => {
                let api = self
                    .store
                    .get_api(&record.api_id)
                    .await?
                    .ok_or(Error::NotFound("api"))?;
                if api.signing.all {
                    return Err(Error::InvalidRequest(
                        "this API requires signed requests: a key cannot drop its signing key"
                            .into(),
                    ));
                }
                (Some(None), None)
            }
            Some(Some(new)) => {
                let (signing, secret) = self.make_signing(&record.id, new).await?;
                details["signing"] = json!(signing.algorithm.as_str());
                (Some(Some(signing)), secret)
            }
        };
        let patch = KeyPatch {
            signing,
            name: changes.name,
            scopes,
            metadata: changes.metadata,
            expires_at: changes.expires_at,
            enabled: changes.enabled,
            ratelimits: changes.ratelimits,
            credits,
            ip_allowlist,
            roles,
        };
        let event = audit_event(
            Some(actor),
            AuditAction::KeyUpdate,
            record.id.as_str(),
            details,
            now,
        )?;
        let updated = self
            .store
            .update_key(&record.id, &patch, now, &event)
            .await?;
        self.verifier.key_changed(&record.digest);
        Ok((updated, signing_secret))
    }

    /// Revokes a key at once. Revoking a revoked key changes nothing.
    pub async fn revoke_key(
        &self,
        actor: &Actor,
        id: &str,
        reason: Option<String>,
    ) -> Result<KeyRecord, Error> {
        actor.require(AdminScope::KeysWrite)?;
        let record = self.load_key(actor, AdminScope::KeysWrite, id).await?;
        let reason = reason.unwrap_or_else(|| "revoked".to_owned());
        check_text("reason", &reason, 1024)?;
        let now = now();
        let event = audit_event(
            Some(actor),
            AuditAction::KeyRevoke,
            record.id.as_str(),
            json!({ "reason": reason }),
            now,
        )?;
        let (revoked, _) = self
            .store
            .revoke_key(&record.id, &reason, now, &event)
            .await?;
        self.verifier.key_changed(&record.digest);
        Ok(revoked)
    }

    /// Issues a successor with the same attributes; the old key keeps
    /// working for the grace period, then answers `EXPIRED`.
    pub async fn rotate_key(
        &self,
        actor: &Actor,
        id: &str,
        succession: Succession,
    ) -> Result<IssuedKey, Error> {
        actor.require(AdminScope::KeysWrite)?;
        let old = self.load_key(actor, AdminScope::KeysWrite, id).await?;
        if succession.grace_period_seconds > MAX_GRACE_SECONDS {
            return Err(Error::InvalidRequest(format!(
                "grace_period_seconds must be at most {MAX_GRACE_SECONDS}"
            )));
        }
        if old.revoked_at.is_some() {
            return Err(Error::Conflict("a revoked key cannot be rotated"));
        }
        if old.rotated_to.is_some() {
            return Err(Error::Conflict("this key was already rotated"));
        }
        let now = now();
        let expires_at = succession.expires_at.unwrap_or(old.expires_at);
        check_future("expires_at", expires_at, now)?;
        let api = self
            .store
            .get_api(&old.api_id)
            .await?
            .ok_or(Error::NotFound("api"))?;
        let plaintext =
            PlaintextKey::generate(&api.prefix, old.environment).map_err(Error::internal)?;
        let successor_id = KeyId::generate(now).map_err(Error::internal)?;
        // An Ed25519 key stays the customer's; an HMAC secret is bound to
        // its key, so the successor gets a new one, shown once.
        let (signing, signing_secret) = match &old.signing {
            Some(signing) if signing.algorithm == keyward_core::SigningAlgorithm::HmacSha256 => {
                let new = NewSigning {
                    algorithm: signing.algorithm,
                    window_ms: Some(signing.window_ms),
                    public_key: None,
                };
                let (signing, secret) = self.make_signing(&successor_id, &new).await?;
                (Some(signing), secret)
            }
            other => (other.clone(), None),
        };
        let successor = KeyRecord {
            id: successor_id,
            signing,
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
        let grace = Duration::seconds(succession.grace_period_seconds as i64);
        let events = [
            audit_event(
                Some(actor),
                AuditAction::KeyRotate,
                old.id.as_str(),
                json!({
                    "successor": successor.id,
                    "grace_period_seconds": succession.grace_period_seconds,
                }),
                now,
            )?,
            audit_event(
                Some(actor),
                AuditAction::KeyCreate,
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
        self.store.rotate_key(&rotation, &events).await?;
        self.verifier.key_changed(&old.digest);
        self.verifier.key_changed(&successor.digest);
        Ok(IssuedKey {
            record: successor,
            plaintext,
            signing_secret,
        })
    }

    /// Revokes every key within the actor's reach matching all given
    /// criteria (the incident button); returns how many.
    pub async fn bulk_revoke(&self, actor: &Actor, bulk: BulkRevocation) -> Result<u64, Error> {
        actor.require(AdminScope::KeysWrite)?;
        check_text("reason", &bulk.reason, 1024)?;
        let filter = BulkRevokeFilter {
            owner: bulk.owner,
            api_id: bulk.api_id.as_deref().map(ApiId::parse).transpose()?,
            environment: bulk.environment,
            created_before: bulk.created_before,
            scope: bulk.scope.as_deref().map(Scope::parse).transpose()?,
            api_ids_within: None,
            environments_within: None,
        };
        if !filter.has_criteria() {
            return Err(Error::EmptyFilter);
        }
        let now = now();
        actor.require_step_up(self.auth.step_up_window, now)?;
        let reach = self.reach_of(actor, AdminScope::KeysWrite).await?;
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
            Some(actor),
            AuditAction::KeyRevoke,
            "",
            json!({ "reason": bulk.reason, "bulk": criteria }),
            now,
        )?;
        // One revocation per shape of grant: a key two grants reach is
        // revoked by the first and left alone by the second.
        let mut count = 0;
        for (api_ids, environments) in reach.rectangles() {
            let filter = BulkRevokeFilter {
                api_ids_within: api_ids,
                environments_within: environments,
                ..filter.clone()
            };
            let revoked = self
                .store
                .bulk_revoke(&filter, &bulk.reason, now, &template)
                .await?;
            for digest in &revoked {
                self.verifier.key_changed(digest);
            }
            count += revoked.len() as u64;
        }
        Ok(count)
    }

    /// The rate limits shared by all keys of an owner. Owner limits span
    /// APIs and environments: a limited actor reads them only for an owner
    /// whose every key is within its reach, and any other owner (one with
    /// no keys included) is `NOT_FOUND` to it.
    pub async fn owner_ratelimits(
        &self,
        actor: &Actor,
        owner: &str,
    ) -> Result<Vec<RateLimit>, Error> {
        actor.require(AdminScope::KeysRead)?;
        check_text("owner", owner, 256)?;
        if !self.owner_within_reach(actor, owner).await? {
            return Err(Error::NotFound("owner"));
        }
        Ok(self.store.owner_ratelimits(owner).await?)
    }

    /// Sets the rate limits shared by all keys of an owner; they apply on
    /// the next verify. They bind the owner's keys of every API and
    /// environment, present and future, so this needs an actor without API
    /// or environment limits; a limited one is refused before the owner is
    /// looked at.
    pub async fn set_owner_ratelimits(
        &self,
        actor: &Actor,
        owner: &str,
        ratelimits: Vec<RateLimit>,
    ) -> Result<Vec<RateLimit>, Error> {
        actor.require(AdminScope::KeysWrite)?;
        if !actor.is_node_wide(AdminScope::KeysWrite) {
            return Err(Error::Forbidden(
                "owner limits span APIs and environments: setting them needs a token without API \
                 or environment limits",
            ));
        }
        check_text("owner", owner, 256)?;
        check_rate_limits(&ratelimits)?;
        let now = now();
        let event = audit_event(
            Some(actor),
            AuditAction::OwnerRatelimits,
            owner,
            json!({ "ratelimits": ratelimits }),
            now,
        )?;
        self.store
            .set_owner_ratelimits(owner, &ratelimits, now, &event)
            .await?;
        self.verifier.owner_changed(owner);
        Ok(ratelimits)
    }

    /// Whether every key of `owner` is within the actor's reach, and there
    /// is at least one: an actor without limits reaches every owner, one
    /// with limits only owners it sees whole.
    pub(crate) async fn owner_within_reach(
        &self,
        actor: &Actor,
        owner: &str,
    ) -> Result<bool, Error> {
        if actor.is_node_wide(AdminScope::KeysRead) {
            return Ok(true);
        }
        let filter = KeyFilter {
            owner: Some(owner.to_owned()),
            ..KeyFilter::default()
        };
        let mut page = Page {
            after: None,
            limit: WALK_PAGE,
        };
        let mut seen = false;
        loop {
            let keys = self.store.list_keys(&filter, &page, now()).await?;
            for k in &keys {
                if !self
                    .reaches_key(actor, AdminScope::KeysRead, &k.api_id, k.environment)
                    .await?
                {
                    return Ok(false);
                }
            }
            seen |= !keys.is_empty();
            if keys.len() < page.limit as usize {
                return Ok(seen);
            }
            match keys.last() {
                Some(last) => page.after = Some(last.id.as_str().to_owned()),
                None => return Ok(seen),
            }
        }
    }

    /// A key by the id a caller gave, as `NOT_FOUND` when it is malformed,
    /// absent or outside the actor's reach.
    async fn load_key(
        &self,
        actor: &Actor,
        scope: AdminScope,
        id: &str,
    ) -> Result<KeyRecord, Error> {
        let id = KeyId::parse(id).map_err(|_| Error::NotFound("key"))?;
        let key = self
            .store
            .get_key(&id)
            .await?
            .ok_or(Error::NotFound("key"))?;
        if self
            .reaches_key(actor, scope, &key.api_id, key.environment)
            .await?
        {
            Ok(key)
        } else {
            Err(Error::NotFound("key"))
        }
    }
}

fn parse_scopes(scopes: Vec<String>) -> Result<Vec<Scope>, Error> {
    if scopes.len() > MAX_SCOPES {
        return Err(Error::InvalidRequest(format!(
            "a key carries at most {MAX_SCOPES} scopes"
        )));
    }
    let parsed = scopes
        .iter()
        .map(|s| Scope::parse(s))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(normalize_scopes(parsed))
}

/// Checks the roles a key is to hold: valid names, at most [`MAX_SCOPES`],
/// each defined by the key's API. The message names the position of a role
/// the API does not define, and the roles it does, never the value given.
fn parse_roles(roles: Vec<String>, api: &Api) -> Result<Vec<RoleName>, Error> {
    if roles.len() > MAX_SCOPES {
        return Err(Error::InvalidRequest(format!(
            "a key holds at most {MAX_SCOPES} roles"
        )));
    }
    let mut parsed = Vec::with_capacity(roles.len());
    for (i, role) in roles.iter().enumerate() {
        let role =
            RoleName::parse(role).map_err(|e| Error::InvalidRequest(format!("roles[{i}]: {e}")))?;
        if !api.roles.contains_key(&role) {
            let defined: Vec<&str> = api.roles.keys().map(RoleName::as_str).collect();
            return Err(Error::InvalidRequest(if defined.is_empty() {
                format!("roles[{i}]: this key's API defines no roles")
            } else {
                format!(
                    "roles[{i}]: this key's API defines no role of that name; its roles are {}",
                    defined.join(", ")
                )
            }));
        }
        parsed.push(role);
    }
    parsed.sort();
    parsed.dedup();
    Ok(parsed)
}

/// Checks credits given by a caller and starts their refill period now.
fn credits_of(c: NewCredits, now: OffsetDateTime) -> Result<Credits, Error> {
    if let Some(refill) = &c.refill {
        refill.check()?;
    }
    if c.remaining > i64::MAX as u64 {
        return Err(Error::InvalidRequest(
            "credits.remaining is too large".into(),
        ));
    }
    Ok(Credits {
        remaining: c.remaining,
        refill: c.refill,
        refilled_at: c.refill.map_or(now, |r| r.period_start(now)),
    })
}

fn check_future(field: &str, at: Option<OffsetDateTime>, now: OffsetDateTime) -> Result<(), Error> {
    match at {
        Some(at) if at <= now => Err(Error::InvalidRequest(format!(
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
        "roles": record.roles,
        "start": record.start,
        "expires_at": record.expires_at.map(|t| t.unix_timestamp()),
        "signing": record.signing.as_ref().map(|s| s.algorithm.as_str()),
    })
}
