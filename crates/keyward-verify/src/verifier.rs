//! The `Verifier` (one per server, shared by the verify endpoint and the
//! gateway), its configuration, its answers, and `verify` itself.
//!
//! A verify digests the key once and looks the digest up in the key cache
//! (`cache`). A fresh hit of an unmetered key whose owner's limits are in
//! memory is answered at once (`verify_in_memory`): the stateless rules
//! (`keyward_core::evaluate_at`), then the rate limits (`limits`), then the
//! answer is counted (`usage`). Anything else takes the slow path: the key
//! is read from the store on a miss, and credits (`credits`) are spent
//! between checking the limits and charging them. Times come from `clock`.
//!
//! Each concern's state is a `pub(crate)` field of `Verifier`; the module
//! of that concern holds the `impl Verifier` methods that keep it. The
//! cache hit is what `benches/verify.rs` measures: it must not gain an
//! allocation, a lock or an atomic.
//!
//! Invariant: malformed keys never reach the store. A key longer than any
//! key answers `MALFORMED` before it is hashed, and a miss is parsed (shape
//! and checksum) before the store is asked.
//! Invariant: a key outside the caller's `Reach` answers `NOT_FOUND`, as an
//! absent key does, and is neither limited nor counted.
//! Invariant: a request refused for its rate limits or its credits consumes
//! neither.
//! Invariant: `verify_in_memory` never awaits and never reads the store;
//! when the answer needs the store, it answers `None`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use keyward_core::key::MAX_KEY_LEN;
use keyward_core::limits::{Gcra, RateLimit};
use keyward_core::{
    evaluate_at, AdminToken, ApiId, Environment, KeyDigest, ParsedKey, Requirements, Scope,
    VerifyCode,
};
use keyward_store::{Store, StoreError};
use time::OffsetDateTime;

use crate::cache::{ApiScopes, CachedKey, KEY_STRIPES};
use crate::clock::{nanos, WallNs};
use crate::credits::Lease;
use crate::limits::{to_state, OwnerTable};
use crate::proof::{Checked, Opener, Proof, ReplayStore, VerifyError};
use crate::usage::{Batch, UsageCell};

/// Tuning of the hot path. The defaults suit one node with up to a few
/// million keys.
#[derive(Debug, Clone)]
pub struct VerifierConfig {
    /// How long a cached key record is trusted before it is read again. The
    /// change feed brings changes made elsewhere within a poll interval; the
    /// TTL bounds staleness should the feed miss one.
    pub cache_ttl: Duration,
    /// Most key records held in memory.
    pub cache_capacity: usize,
    /// How long "no such key" is remembered for a digest.
    pub negative_ttl: Duration,
    /// Most unknown digests remembered.
    pub negative_capacity: usize,
    /// How often the usage of minutes that are over is written to the store.
    pub usage_flush_interval: Duration,
    /// How long per-minute usage is kept in the store.
    pub usage_retention: Duration,
    /// Credits leased from the store at a time.
    pub credit_block: u64,
    /// How often the change feed is read for changes made elsewhere (on
    /// PostgreSQL, a notification wakes the reader sooner).
    pub change_poll_interval: Duration,
}

impl Default for VerifierConfig {
    fn default() -> Self {
        VerifierConfig {
            cache_ttl: Duration::from_secs(600),
            cache_capacity: 2_000_000,
            negative_ttl: Duration::from_secs(5),
            negative_capacity: 200_000,
            usage_flush_interval: Duration::from_secs(5),
            usage_retention: Duration::from_secs(7 * 24 * 3600),
            credit_block: 100,
            change_poll_interval: Duration::from_secs(1),
        }
    }
}

/// Which keys a verifier's caller may see; others answer `NOT_FOUND`.
/// `workspace` is the API's, known for every key the cache holds.
pub trait Reach: Send + Sync {
    fn can_access(&self, api: &ApiId, workspace: Option<&str>, environment: Environment) -> bool;

    /// Whether `can_access` looks at the workspace; when not, the verifier
    /// spares the lookup (`None` is passed).
    fn needs_workspace(&self) -> bool {
        true
    }
}

/// An admin token verifies keys its grants holding `keys:verify` reach.
impl Reach for AdminToken {
    fn can_access(&self, api: &ApiId, workspace: Option<&str>, environment: Environment) -> bool {
        self.reaches(
            keyward_core::AdminScope::KeysVerify,
            api,
            workspace,
            environment,
        )
    }

    fn needs_workspace(&self) -> bool {
        self.has_workspace_limits()
    }
}

/// What the fast path found: an answer, or the digest to look up.
enum Hot {
    Answer(Verification),
    Miss(KeyDigest),
}

/// The answer to one verify.
pub struct Verification {
    pub code: VerifyCode,
    /// Why a request's proof was refused, for an honest client to fix its
    /// code (`SIGNATURE_*`, `REPLAYED`, `MFA_REQUIRED`); never a value of
    /// the request.
    pub reason: Option<&'static str>,
    /// The key, when it exists and is within the caller's reach.
    pub key: Option<Arc<CachedKey>>,
    /// The tightest rate limit of the key and its owner.
    pub ratelimit: Option<RateLimitState>,
    pub credits_remaining: Option<u64>,
}

/// A rate limit's state as callers see it, for `X-RateLimit-*` headers.
#[derive(Debug, Clone, Copy)]
pub struct RateLimitState {
    pub limit: u64,
    pub remaining: u64,
    /// Unix time in milliseconds when the limit is fully replenished, or
    /// when a refused request would fit.
    pub reset: i64,
}

/// The hot path. One per server, shared by the verify endpoint and the
/// gateway.
pub struct Verifier {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) config: VerifierConfig,
    pub(crate) cache: quick_cache::sync::Cache<[u8; 32], Arc<CachedKey>>,
    pub(crate) negative: quick_cache::sync::Cache<[u8; 32], Instant>,
    /// GCRA states per key digest, aligned with the key's `ratelimits`.
    pub(crate) key_limits: Map<[u8; 32], Vec<Gcra>>,
    /// Every owner's rate limits, read as one table and reread when older
    /// than the cache TTL or changed through this node.
    pub(crate) owners: std::sync::RwLock<Arc<OwnerTable>>,
    /// Lets one task at a time reread the owner table.
    pub(crate) owners_reload: tokio::sync::Mutex<()>,
    /// Shared by every key without limits, so they cost no allocation.
    pub(crate) no_limits: Arc<Vec<RateLimit>>,
    /// Interned API ids, shared by the cached keys of each API.
    pub(crate) api_ids: Mutex<HashMap<ApiId, Arc<ApiId>>>,
    /// The workspace of each API whose keys this node has read. An API's
    /// workspace never changes, so an entry is never stale.
    pub(crate) workspaces: std::sync::RwLock<HashMap<ApiId, Arc<str>>>,
    /// GCRA states per owner, aligned with the owner's limits.
    pub(crate) owner_limits: Map<Arc<str>, Vec<Gcra>>,
    /// Credit leases per key digest.
    pub(crate) credits: Map<[u8; 32], Arc<tokio::sync::Mutex<Lease>>>,
    /// Leases of keys that changed, whose unused credits go back to the
    /// store at the next flush.
    pub(crate) returns: Mutex<Vec<Arc<tokio::sync::Mutex<Lease>>>>,
    /// Keys whose lease must be checked against the store before it is
    /// spent from again: a change read from the change feed, which may be
    /// one this node made and already applied (its lease then taken after
    /// the change and still good) or one made elsewhere (a lease of an
    /// earlier credit period, then void).
    pub(crate) unchecked_leases: Map<[u8; 32], ()>,
    /// Usage counted since the last flush, per key digest, for what the
    /// keys' own slots do not hold.
    pub(crate) usage: Map<[u8; 32], UsageCell>,
    /// Cached keys whose usage slot is not empty: the flush empties them.
    pub(crate) dirty: Mutex<Vec<Arc<CachedKey>>>,
    /// Usage a failed flush could not write, for the next one.
    pub(crate) unwritten: Mutex<Option<Batch>>,
    /// Interned scope sets, shared by every cached key with the same set.
    pub(crate) scope_sets: Mutex<HashMap<Vec<Scope>, Arc<Vec<Scope>>>>,
    /// The key roles and critical scopes of each API with cached keys, with
    /// when they were read: a key's roles are expanded into its scope set,
    /// and its critical scopes picked out, when it is cached, from here.
    /// Dropped by an API change, and reread when older than the cache TTL.
    pub(crate) api_scopes: Mutex<HashMap<ApiId, (Instant, Arc<ApiScopes>)>>,
    /// Bumped by every change of an API's roles, before its entries are
    /// dropped, as `key_generations` is for keys: a lookup that read the
    /// roles before the change drops what it cached after it.
    pub(crate) api_generation: std::sync::atomic::AtomicU64,
    /// The zero of the monotonic clock GCRA states count from.
    pub(crate) epoch: Instant,
    /// Bumped by every change of any owner's limits, so keys cached with a
    /// copy of their owner's limits know when to look again.
    pub(crate) owner_generation: std::sync::atomic::AtomicU64,
    /// Bumped by every change of a key, before its entries are dropped: a
    /// lookup that read the store before the change, and would otherwise
    /// cache what it read after the drop, sees the bump and drops it again.
    /// One counter per stripe of digests, so a change leaves lookups of
    /// other keys cached.
    pub(crate) key_generations: [std::sync::atomic::AtomicU64; KEY_STRIPES],
    /// Wall-clock time at `epoch` in Unix nanoseconds, re-read at every usage
    /// flush: the hot path derives "now" from one monotonic reading instead
    /// of reading both clocks, and clock steps are picked up within a flush
    /// interval.
    pub(crate) wall_at_epoch: std::sync::atomic::AtomicI64,
    /// Signed requests seen on this node, by key and request id, until
    /// their window passes (Unix ms).
    pub(crate) seen: Map<[u8; 32], i64>,
    /// Where signed requests are remembered for every node; unset on one
    /// node.
    pub(crate) replay: std::sync::OnceLock<Arc<dyn ReplayStore>>,
    /// Opens signing and TOTP secrets under the keyring.
    pub(crate) opener: std::sync::OnceLock<Arc<dyn Opener>>,
    /// Owners' confirmed TOTP secrets, opened, with when they were read;
    /// `None` for an owner without one.
    pub(crate) owner_factors: Map<Arc<str>, (Instant, Option<Arc<keyward_crypto::totp::Secret>>)>,
}

/// A concurrent map with a fast keyed hash (the hot path hashes a digest
/// several times per verify; SipHash would cost more than the rest).
type Map<K, V> = DashMap<K, V, ahash::RandomState>;

impl Verifier {
    pub fn new(store: Arc<dyn Store>, config: VerifierConfig) -> Self {
        let verifier = Verifier {
            store,
            cache: quick_cache::sync::Cache::new(config.cache_capacity.max(1)),
            negative: quick_cache::sync::Cache::new(config.negative_capacity.max(1)),
            key_limits: Map::default(),
            owners: std::sync::RwLock::new(Arc::new(OwnerTable {
                loaded_at: None,
                limits: HashMap::new(),
            })),
            owners_reload: tokio::sync::Mutex::new(()),
            no_limits: Arc::new(Vec::new()),
            api_ids: Mutex::new(HashMap::new()),
            workspaces: std::sync::RwLock::new(HashMap::new()),
            owner_limits: Map::default(),
            credits: Map::default(),
            returns: Mutex::new(Vec::new()),
            unchecked_leases: Map::default(),
            usage: Map::default(),
            dirty: Mutex::new(Vec::new()),
            unwritten: Mutex::new(None),
            scope_sets: Mutex::new(HashMap::new()),
            api_scopes: Mutex::new(HashMap::new()),
            api_generation: std::sync::atomic::AtomicU64::new(0),
            epoch: Instant::now(),
            wall_at_epoch: std::sync::atomic::AtomicI64::new(0),
            owner_generation: std::sync::atomic::AtomicU64::new(0),
            key_generations: std::array::from_fn(|_| std::sync::atomic::AtomicU64::new(0)),
            seen: Map::default(),
            replay: std::sync::OnceLock::new(),
            opener: std::sync::OnceLock::new(),
            owner_factors: Map::default(),
            config,
        };
        verifier.sync_clock();
        verifier
    }

    pub fn config(&self) -> &VerifierConfig {
        &self.config
    }

    /// Verifies `key` for a caller whose reach is `caller`. Malformed keys
    /// are answered without touching the store.
    pub async fn verify(
        &self,
        caller: &dyn Reach,
        key: &str,
        required: &Requirements,
        cost: u64,
    ) -> Result<Verification, VerifyError> {
        self.verify_with(caller, key, required, cost, &Proof::NONE)
            .await
    }

    /// [`Verifier::verify`] of a key that came with `proof`: the request it
    /// signed and the owner's one-time code.
    pub async fn verify_with(
        &self,
        caller: &dyn Reach,
        key: &str,
        required: &Requirements,
        cost: u64,
        proof: &Proof,
    ) -> Result<Verification, VerifyError> {
        // The key is digested once (and parsed only on a miss), by the fast
        // path.
        let digest = match self.hot(caller, key, required, cost, proof) {
            Hot::Answer(answer) => return Ok(answer),
            Hot::Miss(digest) => digest,
        };
        let Some(cached) = self.lookup(&digest).await? else {
            return Ok(Verification::bare(VerifyCode::NotFound));
        };
        if !self.reaches(caller, &cached) {
            return Ok(Verification::bare(VerifyCode::NotFound));
        }
        let now = WallNs::of(OffsetDateTime::now_utc());
        let mut outcome = Verification {
            code: evaluate_at(&cached.policy, required, now.0.into()),
            reason: None,
            key: None,
            ratelimit: None,
            credits_remaining: None,
        };
        if outcome.code == VerifyCode::Valid {
            let checked = self.check_proof(&cached, &required.scopes, proof, now.unix_millis())?;
            let refused = match checked {
                Checked::Refuse(code, reason) => Some((code, reason)),
                Checked::Pass { seen, otp } => {
                    self.finish_proof(&cached, proof, seen, otp, now.datetime())
                        .await?
                }
            };
            if let Some((code, reason)) = refused {
                outcome.code = code;
                outcome.reason = Some(reason);
            }
        }
        if outcome.code == VerifyCode::Valid {
            self.apply_limits(&digest, &cached, cost, now, &mut outcome)
                .await?;
        }
        self.count(&digest, &cached, outcome.code, now);
        outcome.key = Some(cached);
        Ok(outcome)
    }

    /// The synchronous fast path: answers from memory alone, or `None` when
    /// the answer needs the store (a cache miss or a stale entry, owner
    /// limits not in memory, or a metered key). Most verifies end here.
    pub fn verify_in_memory(
        &self,
        caller: &dyn Reach,
        key: &str,
        required: &Requirements,
        cost: u64,
    ) -> Option<Verification> {
        self.verify_in_memory_with(caller, key, required, cost, &Proof::NONE)
    }

    /// [`Verifier::verify_in_memory`] with `proof`. A signature is checked
    /// here when this node alone remembers signed requests; a shared
    /// replay store or a one-time code needs the store.
    pub fn verify_in_memory_with(
        &self,
        caller: &dyn Reach,
        key: &str,
        required: &Requirements,
        cost: u64,
        proof: &Proof,
    ) -> Option<Verification> {
        match self.hot(caller, key, required, cost, proof) {
            Hot::Answer(answer) => Some(answer),
            Hot::Miss(_) => None,
        }
    }

    fn reaches(&self, caller: &dyn Reach, cached: &CachedKey) -> bool {
        let workspace = if caller.needs_workspace() {
            self.workspace_of(&cached.api_id)
        } else {
            None
        };
        caller.can_access(
            &cached.api_id,
            workspace.as_deref(),
            cached.policy.environment,
        )
    }

    /// The workspace of `api`, when this node has read it.
    fn workspace_of(&self, api: &ApiId) -> Option<Arc<str>> {
        self.workspaces
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(api)
            .cloned()
    }

    /// The workspace of `api`, read from the store the first time; `None`
    /// when there is no such API.
    pub async fn load_workspace(&self, api: &ApiId) -> Result<Option<Arc<str>>, StoreError> {
        if let Some(found) = self.workspace_of(api) {
            return Ok(Some(found));
        }
        let Some(stored) = self.store.get_api(api).await? else {
            return Ok(None);
        };
        let workspace: Arc<str> = stored.workspace.as_str().into();
        self.remember_workspace(api, Arc::clone(&workspace));
        Ok(Some(workspace))
    }

    /// Notes the workspace of an API (created through this node).
    pub fn remember_workspace(&self, api: &ApiId, workspace: Arc<str>) {
        self.workspaces
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(api.clone(), workspace);
    }

    fn hot(
        &self,
        caller: &dyn Reach,
        key: &str,
        required: &Requirements,
        cost: u64,
        proof: &Proof,
    ) -> Hot {
        // A digest in the cache is that of a stored, well-formed key, so a
        // hit needs no format check; only a miss is parsed, and a malformed
        // key is answered there without reaching the store. Anything longer
        // than a key is refused before it is hashed.
        if key.len() > MAX_KEY_LEN {
            return Hot::Answer(Verification::bare(VerifyCode::Malformed));
        }
        let digest = KeyDigest::of(key);
        let Some(cached) = self.cache.get(digest.as_bytes()) else {
            if ParsedKey::parse(key).is_err() {
                return Hot::Answer(Verification::bare(VerifyCode::Malformed));
            }
            return Hot::Miss(digest);
        };
        let instant = Instant::now();
        let fresh = |loaded_at: Instant| instant.duration_since(loaded_at) < self.config.cache_ttl;
        let now_ns = nanos(instant.duration_since(self.epoch));
        if !self.is_fresh(&cached, now_ns) || cached.credits().is_some() {
            return Hot::Miss(digest);
        }
        if !self.reaches(caller, &cached) {
            return Hot::Answer(Verification::bare(VerifyCode::NotFound));
        }
        let generation = self
            .owner_generation
            .load(std::sync::atomic::Ordering::Acquire);
        let owner_limits = if cached.owner_generation == generation as u32 {
            Arc::clone(&cached.owner_limits)
        } else {
            let table = self.owner_table();
            match table.loaded_at {
                Some(at) if fresh(at) => self.limits_in(&table, &cached.owner),
                _ => return Hot::Miss(digest),
            }
        };
        let now = self.wall_at(now_ns);
        let mut outcome = Verification {
            code: evaluate_at(&cached.policy, required, now.0.into()),
            reason: None,
            key: None,
            ratelimit: None,
            credits_remaining: None,
        };
        let needs_proof = match cached.proof_rules() {
            Some(rules) if outcome.code == VerifyCode::Valid => {
                let critical = cached.critical_scopes();
                let needs_otp = required.scopes.iter().any(|s| critical.contains(s));
                let needs_signature = rules.needs_signature(&required.scopes);
                // A one-time code is spent in the store, and a shared
                // replay store is asked there too.
                if needs_otp || (needs_signature && self.replay_is_shared()) {
                    return Hot::Miss(digest);
                }
                needs_signature
            }
            _ => false,
        };
        if needs_proof {
            match self.check_proof(&cached, &required.scopes, proof, now.unix_millis()) {
                Ok(Checked::Pass { .. }) => {}
                Ok(Checked::Refuse(code, reason)) => {
                    outcome.code = code;
                    outcome.reason = Some(reason);
                }
                // The slow path answers it.
                Err(_) => return Hot::Miss(digest),
            }
        }
        if outcome.code == VerifyCode::Valid
            && (!cached.ratelimits().is_empty() || !owner_limits.is_empty())
        {
            let (allowed, tightest) =
                self.admit_at(&digest, &cached, &owner_limits, cost, true, now_ns);
            outcome.ratelimit = tightest.map(|s| to_state(s, now));
            if !allowed {
                outcome.code = VerifyCode::RateLimited;
            }
        }
        self.count(&digest, &cached, outcome.code, now);
        outcome.key = Some(cached);
        Hot::Answer(outcome)
    }

    /// Rate limits of the key and its owner, then credits. A request refused
    /// by either consumes neither: limits are checked, credits spent, and
    /// only then are the limits charged (with the credits given back if a
    /// concurrent request took the last unit in between).
    async fn apply_limits(
        &self,
        digest: &KeyDigest,
        key: &CachedKey,
        cost: u64,
        now: WallNs,
        outcome: &mut Verification,
    ) -> Result<(), StoreError> {
        let owner_limits = self.owner_limits_of(&key.owner).await?;
        let limited = !key.ratelimits().is_empty() || !owner_limits.is_empty();
        if limited {
            let (allowed, tightest) = self.admit(digest, key, &owner_limits, cost, false);
            outcome.ratelimit = tightest.map(|s| to_state(s, now));
            if !allowed {
                outcome.code = VerifyCode::RateLimited;
                return Ok(());
            }
        }
        if let Some(refill) = key.credits() {
            let (allowed, remaining) = self
                .spend(digest, key, refill, cost, now.datetime())
                .await?;
            outcome.credits_remaining = remaining;
            if !allowed {
                outcome.code = VerifyCode::UsageExceeded;
                return Ok(());
            }
        }
        if limited {
            let (allowed, tightest) = self.admit(digest, key, &owner_limits, cost, true);
            outcome.ratelimit = tightest.map(|s| to_state(s, now));
            if !allowed {
                outcome.code = VerifyCode::RateLimited;
                if key.credits().is_some() {
                    if let Some(remaining) = self.refund(digest, cost).await {
                        outcome.credits_remaining = Some(remaining);
                    }
                }
            }
        }
        Ok(())
    }
}

impl Verification {
    fn bare(code: VerifyCode) -> Self {
        Verification {
            code,
            reason: None,
            key: None,
            ratelimit: None,
            credits_remaining: None,
        }
    }
}
