//! The key cache: key records by digest, "no such key" by digest, and what
//! keeps both true to the store.
//!
//! Records live in a bounded cache (quick_cache: a sharded CLOCK-PRO cache
//! with small per-entry overhead, which matters at a million keys), trusted
//! for `cache_ttl`; digests that are not in the store are remembered for
//! `negative_ttl` in a smaller one, so a flood of random well-formed keys
//! costs one query per key per negative TTL, not one per request. A
//! `CachedKey` holds its id inline, shares its API id and scope set with
//! other keys, and keeps what most keys lack (metadata, rate limits,
//! credits) in one optional box.
//!
//! Invariant: a digest in the cache is that of a stored key, so a hit needs
//! no format check.
//! Invariant: every change of a key made through this node calls
//! `Verifier::key_changed` before it is acknowledged; changes made
//! elsewhere arrive through the change feed (`key_changed_elsewhere`), and
//! `cache_ttl` bounds staleness should the feed miss one.
//! Invariant: a lookup that read the store before a change never leaves
//! what it read cached after the change's drop. Every change bumps its
//! stripe's generation (one of `KEY_STRIPES`, by digest) before dropping;
//! a lookup reads the generation before the store and, after caching,
//! drops its own entry again if the generation moved.
//! Invariant: a cached key's scope set is its effective one — its own
//! scopes and those of the roles it holds, as its API defined them when it
//! was cached (`keyward_core::model::effective_scopes`). A change of an
//! API's roles drops every cached key of the API (`api_changed`, and the
//! feed's `Change::Api` elsewhere), guarded by `api_generation` as key
//! changes are by their stripes. So a verify never expands roles.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use keyward_core::limits::{RateLimit, Refill};
use keyward_core::model::effective_scopes;
use keyward_core::{ApiId, Environment, KeyDigest, KeyId, KeyPolicy, KeyRecord, KeyRoles, Scope};
use keyward_store::StoreError;
use serde_json::value::RawValue;

use crate::clock::WallNs;
use crate::limits::OwnerTable;
use crate::proof::{Material, ProofRules};
use crate::usage::UsageSlot;
use crate::Verifier;

/// What verification keeps of a key in memory: a million of them should
/// fit in a few hundred megabytes, so what most keys lack (metadata, rate
/// limits, credits) lives in one optional box, and the id is inline.
pub struct CachedKey {
    pub(crate) id: InlineKeyId,
    /// Bumped owner-limit generation (truncated) when `owner_limits` was
    /// read.
    pub(crate) owner_generation: u32,
    pub api_id: Arc<ApiId>,
    pub owner: Arc<str>,
    pub policy: KeyPolicy,
    extras: Option<Box<Extras>>,
    /// When the record was read: nanoseconds since the verifier's epoch.
    loaded_ns: u64,
    /// The owner's rate limits when the key was loaded, valid while no
    /// owner's limits changed on this node since (`owner_generation`).
    pub(crate) owner_limits: Arc<Vec<RateLimit>>,
    /// `VALID` answers of the current minute, counted without a lock.
    pub(crate) usage: UsageSlot,
}

impl CachedKey {
    pub fn environment(&self) -> Environment {
        self.policy.environment
    }

    /// The key's id as text.
    pub fn id(&self) -> &str {
        self.id.as_str()
    }

    /// The key's id as a [`KeyId`] (allocates).
    pub fn key_id(&self) -> Result<KeyId, StoreError> {
        self.id.to_key_id()
    }

    /// The metadata JSON as stored; `None` for an empty object.
    pub fn metadata(&self) -> Option<&RawValue> {
        self.extras.as_ref().and_then(|e| e.metadata.as_deref())
    }

    pub fn ratelimits(&self) -> &[RateLimit] {
        self.extras.as_ref().map_or(&[], |e| &e.ratelimits[..])
    }

    /// Whether the key is metered, and how its credits refill.
    pub fn credits(&self) -> Option<Option<Refill>> {
        self.extras.as_ref().and_then(|e| e.credits)
    }

    /// The scopes the key carries that its API marks critical, as the API
    /// stood when the key was cached.
    pub fn critical_scopes(&self) -> &[Scope] {
        self.extras.as_ref().map_or(&[], |e| &e.critical_scopes[..])
    }

    /// What the key's requests must prove beside the key; `None` when
    /// nothing (no signing key, no signing rule, no critical scope).
    pub(crate) fn proof_rules(&self) -> Option<&ProofRules> {
        self.extras.as_ref().and_then(|e| e.proof.as_ref())
    }

    /// Whether the key was cached with an opened HMAC secret, or without
    /// one it could not open: either must go when the seal changes.
    pub(crate) fn holds_sealed_material(&self) -> bool {
        self.proof_rules()
            .and_then(|p| p.signing.as_ref())
            .is_some_and(|s| matches!(s.material, Material::Hmac(_) | Material::Sealed))
    }

    /// The algorithm of the key's signing key, when it has one.
    pub fn signing_algorithm(&self) -> Option<keyward_core::SigningAlgorithm> {
        self.proof_rules()
            .and_then(|p| p.signing.as_ref())
            .map(|s| s.algorithm)
    }
}

/// What an API adds to its keys' scopes: its roles, and which scopes it
/// marks critical.
#[derive(Default)]
pub(crate) struct ApiScopes {
    roles: KeyRoles,
    critical: Vec<Scope>,
    /// Which requests to the API's keys must be signed.
    signing: Arc<keyward_core::ApiSigning>,
}

impl Verifier {
    /// Forgets what this node holds about a key, before a change to it is
    /// acknowledged (and when the change feed reports one made elsewhere):
    /// the record, "no such key" and its credit lease — a change of credits
    /// makes the stored value the truth, so the lease's unused credits go
    /// back to the store at the next flush, where they are void if the
    /// credits were reset. Rate-limit states stay: a change to a key does
    /// not give it a fresh allowance.
    pub fn key_changed(&self, digest: &KeyDigest) {
        let d = *digest.as_bytes();
        self.bump_key_generation(&d);
        self.cache.remove(&d);
        self.negative.remove(&d);
        if let Some((_, lease)) = self.credits.remove(&d) {
            self.returns
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(lease);
        }
    }

    /// [`Verifier::key_changed`] for a change read from the change feed:
    /// the record and "no such key" are forgotten, but the credit lease is
    /// only marked to be checked against the store at its next use. The
    /// feed also brings back this node's own changes, after their
    /// acknowledgement; dropping a lease taken since would refuse verifies
    /// whose credits are leased, until the next flush gave them back.
    pub fn key_changed_elsewhere(&self, digest: &KeyDigest) {
        let d = *digest.as_bytes();
        self.bump_key_generation(&d);
        self.cache.remove(&d);
        self.negative.remove(&d);
        if self.credits.contains_key(&d) {
            self.unchecked_leases.insert(d, ());
        }
    }

    /// Forgets every cached key of an API and the API's roles and critical
    /// scopes, before a
    /// change of its roles is acknowledged and when the change feed reports
    /// one made elsewhere: each key is read again, and its roles expanded
    /// anew, at its next verify. Leases and limit states stay; what changed
    /// is the keys' scopes alone.
    pub fn api_changed(&self, api: &ApiId) {
        self.api_generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.api_scopes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(api);
        self.cache.retain(|_, key| *key.api_id != *api);
    }

    /// Forgets every cached record, unknown digest and owner limit, for when
    /// this node may have missed changes. Limit states and leases stay.
    pub fn clear(&self) {
        for generation in &self.key_generations {
            generation.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        self.api_generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.api_scopes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
        self.cache.clear();
        self.negative.clear();
        self.owner_generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        *self
            .owners
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(OwnerTable {
            loaded_at: None,
            limits: HashMap::new(),
        });
    }

    fn key_generation(&self, d: &[u8; 32]) -> &std::sync::atomic::AtomicU64 {
        &self.key_generations[usize::from(d[0]) % KEY_STRIPES]
    }

    fn bump_key_generation(&self, d: &[u8; 32]) {
        self.key_generation(d)
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    /// Drops what a lookup just cached for `d` if a key of its stripe
    /// changed since the lookup read the stripe's `generation`, before it
    /// read the store: what it read may predate the change, and the
    /// change's own drop may have come before this lookup's insert. The
    /// fence orders the insert before the reread, as the bump comes before
    /// the change's drop; so either this lookup sees the bump or the
    /// change's drop comes after the insert.
    fn uncache_if_changed_since(&self, d: &[u8; 32], generation: u64) {
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        if self
            .key_generation(d)
            .load(std::sync::atomic::Ordering::SeqCst)
            != generation
        {
            self.cache.remove(d);
            self.negative.remove(d);
        }
    }

    pub(crate) async fn lookup(
        &self,
        digest: &KeyDigest,
    ) -> Result<Option<Arc<CachedKey>>, StoreError> {
        let d = *digest.as_bytes();
        if let Some(cached) = self.cache.get(&d) {
            if self.is_fresh(&cached, self.now_ns()) {
                return Ok(Some(cached));
            }
        }
        if let Some(since) = self.negative.get(&d) {
            if since.elapsed() < self.config.negative_ttl {
                return Ok(None);
            }
        }
        let seen = self
            .key_generation(&d)
            .load(std::sync::atomic::Ordering::SeqCst);
        let seen_api = self
            .api_generation
            .load(std::sync::atomic::Ordering::SeqCst);
        let found = self
            .store
            .find_key_by_digest(digest)
            .await?
            .filter(|k| k.digest.ct_eq(digest));
        match found {
            Some(record) => {
                // Every cached key's workspace is known, so reach by
                // workspace is decided from memory.
                self.load_workspace(&record.api_id).await?;
                // Read the generation before the limits: a change in between
                // leaves the copy marked stale, never the reverse.
                let generation = self
                    .owner_generation
                    .load(std::sync::atomic::Ordering::Acquire);
                let owner: Arc<str> = record.owner.as_str().into();
                let owner_limits = self.owner_limits_of(&owner).await?;
                let api = self.api_scopes_of(&record.api_id, seen_api).await?;
                let opened = match &record.signing {
                    Some(signing) => match &signing.sealed_secret {
                        Some(sealed) => Some(self.open_signing_secret(&record.id, sealed).await),
                        None => None,
                    },
                    None => None,
                };
                let cached = Arc::new(self.compact(
                    record,
                    &api,
                    owner,
                    owner_limits,
                    generation,
                    opened,
                )?);
                self.cache.insert(d, Arc::clone(&cached));
                self.uncache_if_changed_since(&d, seen);
                // The same for a change of the API's roles, which other
                // keys' stripes do not see.
                if self
                    .api_generation
                    .load(std::sync::atomic::Ordering::SeqCst)
                    != seen_api
                {
                    self.cache.remove(&d);
                }
                Ok(Some(cached))
            }
            None => {
                self.negative.insert(d, Instant::now());
                self.uncache_if_changed_since(&d, seen);
                Ok(None)
            }
        }
    }

    /// The key roles and critical scopes of `api`, from memory when read
    /// within the cache TTL, else from the store (one read per API, not per
    /// key). What the store answers is kept only if no API changed since
    /// `seen` (the API generation before the read), since it may predate
    /// the change; `api_changed` drops it otherwise.
    async fn api_scopes_of(&self, api: &ApiId, seen: u64) -> Result<Arc<ApiScopes>, StoreError> {
        if let Some((at, scopes)) = self
            .api_scopes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(api)
        {
            if at.elapsed() < self.config.cache_ttl {
                return Ok(Arc::clone(scopes));
            }
        }
        let read_at = Instant::now();
        let scopes = Arc::new(
            self.store
                .get_api(api)
                .await?
                .map(|a| ApiScopes {
                    roles: a.roles,
                    critical: a.critical_scopes,
                    signing: Arc::new(a.signing),
                })
                .unwrap_or_default(),
        );
        let mut table = self
            .api_scopes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if self
            .api_generation
            .load(std::sync::atomic::Ordering::SeqCst)
            == seen
        {
            table.insert(api.clone(), (read_at, Arc::clone(&scopes)));
        }
        Ok(scopes)
    }

    fn intern_api(&self, id: ApiId) -> Arc<ApiId> {
        let mut ids = self
            .api_ids
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(ids.entry(id.clone()).or_insert_with(|| Arc::new(id)))
    }

    /// What the cache keeps of `record`, whose roles (if it holds any) are
    /// expanded by `api`'s, and whose critical scopes are those `api` marks.
    fn compact(
        &self,
        record: KeyRecord,
        api: &ApiScopes,
        owner: Arc<str>,
        owner_limits: Arc<Vec<RateLimit>>,
        owner_generation: u64,
        opened: Option<crate::proof::Opened>,
    ) -> Result<CachedKey, StoreError> {
        let effective = if record.roles.is_empty() {
            record.scopes
        } else {
            effective_scopes(&record.scopes, &record.roles, &api.roles)
        };
        let critical_scopes: Box<[Scope]> = effective
            .iter()
            .filter(|s| api.critical.contains(s))
            .cloned()
            .collect();
        let scopes = {
            let mut sets = self
                .scope_sets
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match sets.get(&effective) {
                Some(set) => Arc::clone(set),
                None => {
                    let set = Arc::new(effective.clone());
                    sets.insert(effective, Arc::clone(&set));
                    set
                }
            }
        };
        let metadata = match &record.metadata {
            serde_json::Value::Object(map) if map.is_empty() => None,
            other => serde_json::value::to_raw_value(other).ok(),
        };
        let credits = record.credits.map(|c| c.refill);
        let stored_last_used = record.last_used_at;
        let proof =
            (record.signing.is_some() || !api.signing.is_empty() || !critical_scopes.is_empty())
                .then(|| ProofRules {
                    signing: record
                        .signing
                        .as_ref()
                        .map(|signing| self.signing_key(&record.id, signing, opened)),
                    api: Arc::clone(&api.signing),
                });
        let extras = (metadata.is_some()
            || !record.ratelimits.is_empty()
            || credits.is_some()
            || proof.is_some())
        .then(|| {
            Box::new(Extras {
                metadata,
                ratelimits: record.ratelimits.into(),
                credits,
                critical_scopes,
                proof,
            })
        });
        let id = InlineKeyId::new(&record.id).ok_or_else(|| StoreError::Corrupt {
            table: "keys",
            detail: format!("unexpected id {}", record.id),
        })?;
        Ok(CachedKey {
            policy: KeyPolicy {
                environment: record.environment,
                enabled: record.enabled,
                revoked: record.revoked_at.is_some(),
                expires_at: record.expires_at,
                scopes,
                ip_allowlist: record.ip_allowlist.into(),
            },
            id,
            api_id: self.intern_api(record.api_id),
            owner,
            owner_limits,
            owner_generation: owner_generation as u32,
            extras,
            loaded_ns: self.now_ns(),
            usage: UsageSlot::new(stored_last_used.map_or(0, |at| WallNs::of(at).unix_seconds())),
        })
    }

    /// Whether a cached record is younger than the cache TTL.
    pub(crate) fn is_fresh(&self, key: &CachedKey, now_ns: u64) -> bool {
        u128::from(now_ns.saturating_sub(key.loaded_ns)) < self.config.cache_ttl.as_nanos()
    }
}

/// What only some keys have.
struct Extras {
    /// The metadata JSON as stored; `None` for an empty object.
    metadata: Option<Box<RawValue>>,
    ratelimits: Box<[RateLimit]>,
    /// Whether the key is metered, and how its credits refill.
    credits: Option<Option<Refill>>,
    /// Which of the key's scopes its API marks critical.
    critical_scopes: Box<[Scope]>,
    /// What its requests must prove beside the key.
    proof: Option<ProofRules>,
}

/// A key id (`key_` and 22 base62 digits) without a heap allocation.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct InlineKeyId([u8; 26]);

impl InlineKeyId {
    fn new(id: &KeyId) -> Option<Self> {
        id.as_str().as_bytes().try_into().ok().map(InlineKeyId)
    }

    fn as_str(&self) -> &str {
        // Built from a `KeyId`, which is ASCII.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    pub(crate) fn to_key_id(self) -> Result<KeyId, StoreError> {
        KeyId::parse(self.as_str()).map_err(|e| StoreError::Corrupt {
            table: "keys",
            detail: e.to_string(),
        })
    }
}

/// Stripes of `Verifier::key_generations`.
pub(crate) const KEY_STRIPES: usize = 64;

#[cfg(test)]
mod size {
    /// A million cached keys must stay within a few hundred megabytes: the
    /// record plus its reference counts fits mimalloc's 160-byte class.
    #[test]
    fn a_cached_key_fits_in_144_bytes() {
        assert!(std::mem::size_of::<super::CachedKey>() <= 144);
    }
}
