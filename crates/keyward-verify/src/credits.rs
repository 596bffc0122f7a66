//! Credits: a metered key's credits are leased from the store in blocks of
//! `credit_block` and handed out from memory.
//!
//! Invariant: credits are never handed out twice. A lease is taken by one
//! store transaction (`Store::lease_credits`) before any of it is spent, so
//! a crash loses at most the unused part of a lease. That part goes back to
//! the store (`Store::return_credits`) at a clean shutdown, and at the flush
//! after a change of the key through this node, where it is void if the
//! credit period moved on.
//! Invariant: a lease is spent from under its own lock, and only credits of
//! the current period count: what is left of a period that a refill closed,
//! or that the store no longer has, is void. A lease of a key whose change
//! came through the change feed (`Verifier::unchecked_leases`) asks the
//! store for the current period before it is spent from again.

use std::sync::Arc;

use keyward_core::limits::Refill;
use keyward_core::{KeyDigest, KeyId};
use keyward_store::StoreError;
use time::OffsetDateTime;

use crate::{CachedKey, Verifier};

impl Verifier {
    /// Hands out `cost` credits from the node's lease, leasing more from the
    /// store when it runs short. Returns whether they were granted and the
    /// credits left (this node's lease plus what the store holds).
    pub(crate) async fn spend(
        &self,
        digest: &KeyDigest,
        key: &CachedKey,
        refill: Option<Refill>,
        cost: u64,
        now: OffsetDateTime,
    ) -> Result<(bool, Option<u64>), StoreError> {
        let existing = self
            .credits
            .get(digest.as_bytes())
            .map(|c| Arc::clone(c.value()));
        let cell = match existing {
            Some(cell) => cell,
            None => {
                let key_id = key.key_id()?;
                Arc::clone(
                    self.credits
                        .entry(*digest.as_bytes())
                        .or_insert_with(|| {
                            Arc::new(tokio::sync::Mutex::new(Lease {
                                key_id,
                                local: 0,
                                stored: 0,
                                period: None,
                            }))
                        })
                        .value(),
                )
            }
        };
        let mut lease = cell.lock().await;
        // Checked under the lease's lock: a spend after this one sees the
        // lease as this one leaves it.
        let unchecked = self.unchecked_leases.remove(digest.as_bytes()).is_some();
        // Credits of a period that a refill has closed are void.
        if let (Some(refill), Some(period)) = (refill, lease.period) {
            if refill.is_due(period, now) {
                lease.local = 0;
            }
        }
        if unchecked {
            // Asks the store for the current period, taking nothing: credits
            // of another period are void.
            match self.store.lease_credits(&lease.key_id, 0, now).await? {
                None => return Ok((true, None)),
                Some(current) => lease.add(current),
            }
        }
        if lease.local < cost {
            let want = (cost - lease.local).max(self.config.credit_block);
            match self.store.lease_credits(&lease.key_id, want, now).await? {
                // The key stopped being metered since it was cached.
                None => return Ok((true, None)),
                Some(taken) => lease.add(taken),
            }
        }
        let allowed = lease.local >= cost;
        if allowed {
            lease.local -= cost;
        }
        Ok((allowed, Some(lease.local + lease.stored)))
    }

    /// Gives back credits spent by a request that was refused after all.
    pub(crate) async fn refund(&self, digest: &KeyDigest, cost: u64) -> Option<u64> {
        let cell = self
            .credits
            .get(digest.as_bytes())
            .map(|c| Arc::clone(c.value()))?;
        let mut lease = cell.lock().await;
        lease.local += cost;
        Some(lease.local + lease.stored)
    }

    /// Gives back the unused credits of leases in `leases`.
    pub(crate) async fn return_leases(&self, leases: Vec<Arc<tokio::sync::Mutex<Lease>>>) {
        for lease in leases {
            let mut lease = lease.lock().await;
            if let (Some(period), true) = (lease.period, lease.local > 0) {
                let amount = std::mem::take(&mut lease.local);
                if let Err(e) = self
                    .store
                    .return_credits(&lease.key_id, amount, period)
                    .await
                {
                    tracing::error!(error = %e, key_id = %lease.key_id, "could not return credits");
                }
            }
        }
    }

    pub(crate) fn take_returns(&self) -> Vec<Arc<tokio::sync::Mutex<Lease>>> {
        std::mem::take(
            &mut *self
                .returns
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }
}

/// This node's lease of one key's credits.
pub(crate) struct Lease {
    key_id: KeyId,
    /// Credits leased and not yet handed out.
    local: u64,
    /// Credits left in the store after the last lease.
    stored: u64,
    /// The refill period of `local`.
    period: Option<OffsetDateTime>,
}

impl Lease {
    /// Adds credits taken from the store; what is left of another period
    /// (before a refill or a reset) is void.
    fn add(&mut self, taken: keyward_store::CreditLease) {
        if self.period.is_some_and(|p| p != taken.period) {
            self.local = 0;
        }
        self.local += taken.granted;
        self.stored = taken.remaining;
        self.period = Some(taken.period);
    }
}
