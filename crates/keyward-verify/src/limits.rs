//! Rate limits: GCRA states per key and per owner, and the table of every
//! owner's limits.
//!
//! States live in maps by digest and by owner beside the key cache, so
//! evicting a key does not reset its limits, nor does a change of the key
//! give it a fresh allowance; states that hold nothing back are dropped at
//! each usage flush. The owner table is read whole
//! (`Store::all_owner_ratelimits`), by one task at a time, and reread once
//! it is older than `cache_ttl` or an owner's limits changed through this
//! node.
//!
//! Invariant: a request is charged to every limit of its key and owner or
//! to none (`admit_all`), and only once every other check passed.
//! Invariant: a cached key's copy of its owner's limits is used only while
//! `Verifier::owner_generation` (truncated to 32 bits) is what it was when
//! the copy was read; every change of an owner's limits bumps it first.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use keyward_core::limits::{admit_all, Gcra, LimitStatus, RateLimit, MAX_RATE_LIMITS};
use keyward_core::KeyDigest;
use keyward_store::StoreError;

use crate::clock::WallNs;
use crate::{CachedKey, RateLimitState, Verifier};

impl Verifier {
    /// Forgets an owner's limits after they changed.
    pub fn owner_changed(&self, owner: &str) {
        self.owner_generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        self.owner_limits.remove(owner);
        self.owner_factors.remove(owner);
        // Mark the table stale: the next verify that needs it rereads it.
        let mut table = self
            .owners
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *table = Arc::new(OwnerTable {
            loaded_at: None,
            limits: table.limits.clone(),
        });
    }

    /// Checks `cost` against every limit of the key and of its owner; with
    /// `commit`, charges all of them when all allow it.
    pub(crate) fn admit(
        &self,
        digest: &KeyDigest,
        key: &CachedKey,
        owner_limits: &[RateLimit],
        cost: u64,
        commit: bool,
    ) -> (bool, Option<LimitStatus>) {
        self.admit_at(digest, key, owner_limits, cost, commit, self.now_ns())
    }

    pub(crate) fn admit_at(
        &self,
        digest: &KeyDigest,
        key: &CachedKey,
        owner_limits: &[RateLimit],
        cost: u64,
        commit: bool,
        now: u64,
    ) -> (bool, Option<LimitStatus>) {
        let key_count = key.ratelimits().len().min(MAX_RATE_LIMITS);
        let owner_count = owner_limits.len().min(MAX_RATE_LIMITS);
        let mut key_states = (key_count > 0).then(|| {
            let mut states = self
                .key_limits
                .entry(*digest.as_bytes())
                .or_insert_with(|| vec![Gcra::default(); key_count]);
            if states.len() != key_count {
                *states = vec![Gcra::default(); key_count];
            }
            states
        });
        let mut owner_states = (owner_count > 0).then(|| {
            let mut states = self
                .owner_limits
                .entry(Arc::clone(&key.owner))
                .or_insert_with(|| vec![Gcra::default(); owner_count]);
            if states.len() != owner_count {
                *states = vec![Gcra::default(); owner_count];
            }
            states
        });
        let mut groups = [
            (
                key.ratelimits(),
                key_states
                    .as_deref_mut()
                    .map_or(&mut [][..], |v| &mut v[..]),
            ),
            (
                owner_limits,
                owner_states
                    .as_deref_mut()
                    .map_or(&mut [][..], |v| &mut v[..]),
            ),
        ];
        admit_all(&mut groups, now, cost, commit)
    }

    pub(crate) async fn owner_limits_of(
        &self,
        owner: &Arc<str>,
    ) -> Result<Arc<Vec<RateLimit>>, StoreError> {
        let table = self.owner_table();
        if table
            .loaded_at
            .is_some_and(|at| at.elapsed() < self.config.cache_ttl)
        {
            return Ok(self.limits_in(&table, owner));
        }
        let _reloading = self.owners_reload.lock().await;
        // Another task may have reread it while this one waited.
        let table = self.owner_table();
        if table
            .loaded_at
            .is_some_and(|at| at.elapsed() < self.config.cache_ttl)
        {
            return Ok(self.limits_in(&table, owner));
        }
        let started = Instant::now();
        let rows = self.store.all_owner_ratelimits().await?;
        let limits = rows
            .into_iter()
            .filter(|(_, limits)| !limits.is_empty())
            .map(|(owner, limits)| (Arc::from(owner), Arc::new(limits)))
            .collect();
        let fresh = Arc::new(OwnerTable {
            loaded_at: Some(started),
            limits,
        });
        *self
            .owners
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::clone(&fresh);
        Ok(self.limits_in(&fresh, owner))
    }

    pub(crate) fn owner_table(&self) -> Arc<OwnerTable> {
        Arc::clone(
            &self
                .owners
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    pub(crate) fn limits_in(&self, table: &OwnerTable, owner: &str) -> Arc<Vec<RateLimit>> {
        table
            .limits
            .get(owner)
            .map_or_else(|| Arc::clone(&self.no_limits), Arc::clone)
    }

    /// Drops limit states that hold nothing back any more, so the maps stay
    /// the size of the keys in active use.
    pub(crate) fn forget_idle_limits(&self) {
        let now = self.now_ns();
        self.key_limits
            .retain(|_, states| !states.iter().all(|s| s.is_idle(now)));
        self.owner_limits
            .retain(|_, states| !states.iter().all(|s| s.is_idle(now)));
    }
}

/// The rate limits of every owner that has some, as read at `loaded_at`.
pub(crate) struct OwnerTable {
    /// `None` until first read, or after a change: reread before use.
    pub(crate) loaded_at: Option<Instant>,
    pub(crate) limits: HashMap<Arc<str>, Arc<Vec<RateLimit>>>,
}

/// The `ratelimit` answer for `status`, its reset as Unix milliseconds.
pub(crate) fn to_state(status: LimitStatus, now: WallNs) -> RateLimitState {
    let reset_ms = (status.reset_in_ns / 1_000_000) as i64;
    RateLimitState {
        limit: status.limit,
        remaining: status.remaining,
        reset: now.unix_ms() + reset_ms,
    }
}
