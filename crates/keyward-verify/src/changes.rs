//! Follows the store's change feed, so a change made through any node — or
//! by another process on the same database, such as a separate gateway —
//! reaches this node's caches within one poll interval (at once on
//! PostgreSQL, whose notifications wake the follower).
//!
//! The feed is read by sequence number. On PostgreSQL a transaction that
//! took a lower number may commit after one that took a higher, so a number
//! skipped over is kept as an open gap and read again until it appears or
//! `GAP_GRACE` passes (then it was rolled back, or the cache TTL covers it).
//! Entries older than the retention are pruned; a node that could not read
//! the feed for half of it drops its caches instead of trusting them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use keyward_store::{Change, ChangeEntry, Store, StoreError};
use time::OffsetDateTime;

use crate::TokenCache;
use crate::Verifier;

/// How long a skipped sequence number is waited for.
const GAP_GRACE: Duration = Duration::from_secs(30);
/// Most open gaps remembered; beyond this the oldest are given up.
const MAX_GAPS: usize = 1024;
/// Entries read per query.
const BATCH: u32 = 5000;
/// How long entries stay in the feed.
const RETENTION: Duration = Duration::from_secs(3600);
/// How often old entries are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Sequence numbers skipped over, `lo..=hi`, first seen at `since`.
#[derive(Debug, Clone, Copy)]
struct Gap {
    lo: i64,
    hi: i64,
    since: Instant,
}

/// A position in the feed.
#[derive(Debug)]
struct Cursor {
    /// The highest sequence number read.
    last: i64,
    /// Open gaps below `last`, ordered by `lo`.
    gaps: Vec<Gap>,
}

/// The position in the feed and the caches it keeps true.
pub struct ChangeFollower {
    store: Arc<dyn Store>,
    verifier: Arc<Verifier>,
    tokens: Option<Arc<TokenCache>>,
    cursor: Cursor,
    last_read: Instant,
}

impl ChangeFollower {
    /// Starts at the end of the feed: call before the caches hold anything,
    /// so no change can fall between what they load and where this reads.
    pub async fn start(
        store: Arc<dyn Store>,
        verifier: Arc<Verifier>,
        tokens: Option<Arc<TokenCache>>,
    ) -> Result<Self, StoreError> {
        let last = store.latest_change().await?;
        Ok(ChangeFollower {
            store,
            verifier,
            tokens,
            cursor: Cursor {
                last,
                gaps: Vec::new(),
            },
            last_read: Instant::now(),
        })
    }

    /// Reads the feed up to its end and applies what is new. Returns how
    /// many entries it applied.
    pub async fn poll(&mut self) -> Result<usize, StoreError> {
        let started = Instant::now();
        if started.duration_since(self.last_read) > RETENTION / 2 {
            // Entries this node never read may be pruned by now.
            tracing::warn!("the change feed was unreadable for long; dropping caches");
            self.verifier.clear();
            if let Some(tokens) = &self.tokens {
                tokens.clear();
            }
            self.cursor = Cursor {
                last: self.store.latest_change().await?,
                gaps: Vec::new(),
            };
            self.last_read = started;
            return Ok(0);
        }
        let mut applied = 0;
        let mut after = self.cursor.first_unread();
        loop {
            let batch = self.store.changes_after(after, BATCH).await?;
            for entry in &batch {
                if self.cursor.take(entry.seq, started) {
                    self.apply(entry);
                    applied += 1;
                }
            }
            match batch.last() {
                Some(last) if batch.len() == BATCH as usize => after = last.seq,
                _ => break,
            }
        }
        self.cursor
            .gaps
            .retain(|g| started.duration_since(g.since) < GAP_GRACE);
        self.last_read = started;
        Ok(applied)
    }

    fn apply(&self, entry: &ChangeEntry) {
        match &entry.change {
            Change::Key(digest) => self.verifier.key_changed_elsewhere(digest),
            Change::Owner(owner) => self.verifier.owner_changed(owner),
            Change::Api(api) => self.verifier.api_changed(api),
            Change::Token(digest) => {
                if let Some(tokens) = &self.tokens {
                    tokens.forget(digest);
                }
            }
        }
    }

    /// Follows the feed every `interval` (or when the store signals a
    /// change) until `stop` resolves, pruning old entries now and then.
    pub async fn run(mut self, interval: Duration, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        let mut pruned_at: Option<Instant> = None;
        loop {
            tokio::select! {
                () = self.store.wait_for_change(interval) => {}
                () = &mut stop => break,
            }
            if let Err(e) = self.poll().await {
                tracing::error!(error = %e, "could not read the change feed; will retry");
            }
            if pruned_at.is_none_or(|at| at.elapsed() >= PRUNE_EVERY) {
                pruned_at = Some(Instant::now());
                let before = OffsetDateTime::now_utc() - RETENTION;
                if let Err(e) = self.store.prune_changes(before).await {
                    tracing::warn!(error = %e, "could not prune the change feed");
                }
            }
        }
    }
}

impl Cursor {
    /// The sequence number to read after: below the oldest open gap.
    fn first_unread(&self) -> i64 {
        self.gaps.first().map_or(self.last, |g| g.lo - 1)
    }

    /// Whether `seq` is new: past `last` (opening a gap for any numbers
    /// skipped) or inside an open gap (closing that number).
    fn take(&mut self, seq: i64, now: Instant) -> bool {
        if seq > self.last {
            if seq > self.last + 1 {
                self.gaps.push(Gap {
                    lo: self.last + 1,
                    hi: seq - 1,
                    since: now,
                });
                // Gaps open in order of `lo` and splits keep their age, so
                // the first is the oldest.
                if self.gaps.len() > MAX_GAPS {
                    self.gaps.remove(0);
                }
            }
            self.last = seq;
            return true;
        }
        let Some(i) = self.gaps.iter().position(|g| g.lo <= seq && seq <= g.hi) else {
            return false;
        };
        let gap = self.gaps[i];
        match (gap.lo < seq, seq < gap.hi) {
            (false, false) => {
                self.gaps.remove(i);
            }
            (false, true) => self.gaps[i].lo = seq + 1,
            (true, false) => self.gaps[i].hi = seq - 1,
            (true, true) => {
                self.gaps[i].hi = seq - 1;
                self.gaps.insert(i + 1, Gap { lo: seq + 1, ..gap });
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skipped_numbers_are_read_once_when_they_appear() {
        let now = Instant::now();
        let mut c = Cursor {
            last: 10,
            gaps: Vec::new(),
        };
        assert!(!c.take(9, now), "old news");
        assert!(c.take(11, now));
        assert!(c.take(15, now), "12..=14 skipped");
        assert_eq!((c.gaps[0].lo, c.gaps[0].hi), (12, 14));
        assert_eq!(c.first_unread(), 11);
        assert!(!c.take(15, now), "read before");
        assert!(c.take(13, now), "a late commit inside the gap");
        assert_eq!(c.gaps.len(), 2);
        assert!(!c.take(13, now));
        assert!(c.take(12, now));
        assert!(c.take(14, now));
        assert!(c.gaps.is_empty());
        assert!(!c.take(14, now));
        assert_eq!(c.first_unread(), 15);
    }
}
