//! Usage: every answer counted in memory, per key, minute and code, and
//! written to the store in batches by a background flusher.
//!
//! `VALID` answers, nearly all of them, are counted in the cached key's own
//! `UsageSlot` with one compare-and-swap; other codes, and the count a new
//! minute pushes out of a slot, go to `Verifier::usage`, a map by digest.
//! The flusher (`Verifier::run_flusher`) writes each minute once it is over
//! (checking every `usage_flush_interval`), deletes usage older than
//! `usage_retention` a few minutes at a time, and writes everything at
//! shutdown. What a failed flush could not write waits for the next one.
//!
//! Invariant: a verify never writes to the store. A count is taken from
//! its slot (swapped out) or from the map once; rows that repeat a (key,
//! minute, code) add up in the store.
//! Invariant: a cached key is in `Verifier::dirty` exactly when its slot is
//! not 0 (`LISTED` is an empty slot whose last use is not written yet).
//! Invariant: `last_used_at` is rewritten only when it moved an hour
//! (`LAST_USED_RESOLUTION_S`) past what the store has, and at shutdown.

use std::sync::Arc;
use std::time::Instant;

use keyward_core::{KeyDigest, KeyId, VerifyCode};
use keyward_store::{StoreError, UsageRow};
use time::OffsetDateTime;

use crate::cache::InlineKeyId;
use crate::clock::WallNs;
use crate::{CachedKey, Verifier};

impl Verifier {
    /// Counts one answer for the next usage flush: `VALID` in the key's own
    /// slot (one compare-and-swap), anything else in the usage map.
    pub(crate) fn count(
        &self,
        digest: &KeyDigest,
        key: &Arc<CachedKey>,
        code: VerifyCode,
        now: WallNs,
    ) {
        use std::sync::atomic::Ordering::Relaxed;
        let minute = now.minute();
        if code != VerifyCode::Valid {
            self.count_in_map(digest, key.id, minute, code, 1, now.datetime());
            return;
        }
        let slot = &key.usage;
        let stamp = (minute as u64) << 32;
        let mut current = slot.packed.load(Relaxed);
        loop {
            let counting = current != 0 && current != LISTED;
            let same_minute = counting && current >> 32 == stamp >> 32;
            let next = if same_minute && current & 0xffff_ffff < 0xffff_fffe {
                current + 1
            } else {
                stamp | 1
            };
            match slot
                .packed
                .compare_exchange_weak(current, next, Relaxed, Relaxed)
            {
                Ok(_) => {
                    slot.last_used_s.fetch_max(now.unix_seconds(), Relaxed);
                    if current == 0 {
                        self.dirty
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .push(Arc::clone(key));
                    } else if counting && next == stamp | 1 {
                        // A new minute (or a full counter): the old count
                        // waits in the map.
                        let old_minute = slot_minute(current, minute);
                        self.count_in_map(
                            digest,
                            key.id,
                            old_minute,
                            code,
                            current & 0xffff_ffff,
                            now.datetime(),
                        );
                    }
                    return;
                }
                Err(actual) => current = actual,
            }
        }
    }

    fn count_in_map(
        &self,
        digest: &KeyDigest,
        id: InlineKeyId,
        minute: i64,
        code: VerifyCode,
        count: u64,
        now: OffsetDateTime,
    ) {
        let mut cell = self
            .usage
            .entry(*digest.as_bytes())
            .or_insert_with(|| UsageCell {
                key_id: id,
                last_used: now,
                counts: Vec::with_capacity(1),
            });
        cell.last_used = cell.last_used.max(now);
        match cell
            .counts
            .iter_mut()
            .find(|(m, c, _)| *m == minute && *c == code)
        {
            Some(entry) => entry.2 += count,
            None => cell.counts.push((minute, code, count)),
        }
    }

    /// Writes the usage counted so far to the store, and gives back the
    /// credits of leases dropped since the last flush. What cannot be
    /// written is counted again for the next flush.
    pub async fn flush_usage(&self) -> Result<(), StoreError> {
        self.flush(true).await
    }

    /// Writes the usage of minutes that are over, keeping the current
    /// minute's counts in memory: each (key, minute) is written once, and
    /// `last_used_at` moves once a minute per key in use, however short the
    /// flush interval.
    async fn flush_completed_minutes(&self) -> Result<(), StoreError> {
        self.flush(false).await
    }

    async fn flush(&self, everything: bool) -> Result<(), StoreError> {
        use std::sync::atomic::Ordering::Relaxed;
        self.return_leases(self.take_returns()).await;
        let started = Instant::now();
        let mut batch = self
            .unwritten
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
            .unwrap_or_default();
        let mut written = Written::default();
        let now = OffsetDateTime::now_utc();
        let now_minute = now.unix_timestamp().div_euclid(60);
        let dirty = std::mem::take(
            &mut *self
                .dirty
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        let mut still_counting = Vec::new();
        for key in dirty {
            let slot = &key.usage;
            let current = slot.packed.load(Relaxed);
            let counting = current != 0 && current != LISTED;
            if !everything && counting && slot_minute(current, now_minute) >= now_minute {
                still_counting.push(key);
                continue;
            }
            // A key with a use not yet written stays listed.
            let last_use = slot.last_use(everything);
            let pending = last_use == LastUse::Hold;
            // A verify may roll the slot over in between; what is swapped
            // out is written either way.
            let packed = slot.packed.swap(if pending { LISTED } else { 0 }, Relaxed);
            if packed != 0 && packed != LISTED {
                let minute = slot_minute(packed, now_minute);
                batch.count(key.id, minute, VerifyCode::Valid, packed & 0xffff_ffff);
            }
            if let LastUse::Write(at) = last_use {
                batch.touch(key.id, at);
            }
            if pending {
                still_counting.push(key);
            }
            if batch.rows.len() >= FLUSH_CHUNK {
                self.write(&mut batch, &mut written).await;
            }
        }
        // Keys whose slot was emptied count as dirty again when next used.
        self.dirty
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend(still_counting);
        let digests: Vec<[u8; 32]> = self.usage.iter().map(|e| *e.key()).collect();
        let mut relisted = Vec::new();
        for digest in digests {
            if let Some(mut cell) = self.usage.get_mut(&digest) {
                let cell = &mut *cell;
                let before = cell.counts.len();
                cell.counts.retain(|&(minute, code, count)| {
                    let done = everything || minute < now_minute;
                    if done {
                        batch.count(cell.key_id, minute, code, count);
                    }
                    !done
                });
                if cell.counts.len() < before {
                    let at = WallNs::of(cell.last_used);
                    // Every busy key passes through here once a minute
                    // (its count of the minute before moves to this map
                    // when the minute turns), so a cached key's last use
                    // goes by its slot's rule too.
                    match self.cache.peek(&digest) {
                        Some(key) => {
                            let slot = &key.usage;
                            slot.last_used_s.fetch_max(at.unix_seconds(), Relaxed);
                            match slot.last_use(everything) {
                                LastUse::Write(at) => batch.touch(cell.key_id, at),
                                // An empty slot is not in the dirty list.
                                LastUse::Hold => {
                                    if slot
                                        .packed
                                        .compare_exchange(0, LISTED, Relaxed, Relaxed)
                                        .is_ok()
                                    {
                                        relisted.push(key);
                                    }
                                }
                                LastUse::Stored => {}
                            }
                        }
                        None => batch.touch(cell.key_id, at.unix_ms()),
                    }
                }
            }
            if batch.rows.len() >= FLUSH_CHUNK {
                self.write(&mut batch, &mut written).await;
            }
        }
        self.usage.retain(|_, cell| !cell.counts.is_empty());
        self.dirty
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend(relisted);
        self.write(&mut batch, &mut written).await;
        if !batch.rows.is_empty() || !batch.touched.is_empty() {
            // Kept for the next flush, within reason.
            batch.rows.truncate(MAX_UNWRITTEN);
            batch.touched.truncate(MAX_UNWRITTEN);
            *self
                .unwritten
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(batch);
        }
        if written.rows > 0 || written.error.is_some() {
            tracing::debug!(
                rows = written.rows,
                ms = started.elapsed().as_millis() as u64,
                "usage flushed"
            );
        }
        written.error.map_or(Ok(()), Err)
    }

    /// Writes `batch` and empties it, unless a write of this flush failed
    /// before (the store is likely down; the rest waits for the next flush).
    async fn write(&self, batch: &mut Batch, written: &mut Written) {
        if written.error.is_some() || (batch.rows.is_empty() && batch.touched.is_empty()) {
            return;
        }
        match self.store.record_usage(&batch.rows, &batch.touched).await {
            Ok(()) => {
                written.rows += batch.rows.len();
                batch.rows.clear();
                batch.touched.clear();
            }
            Err(e) => written.error = Some(e),
        }
    }

    /// Flushes usage and gives back unused leased credits; for shutdown.
    pub async fn shutdown(&self) {
        if let Err(e) = self.flush_usage().await {
            tracing::error!(error = %e, "could not flush usage at shutdown");
        }
        let mut leases: Vec<_> = self.credits.iter().map(|e| Arc::clone(e.value())).collect();
        leases.extend(self.take_returns());
        self.return_leases(leases).await;
    }

    /// Writes the usage of minutes that are over every flush interval until
    /// `stop` resolves, then all of it, with the leases given back.
    pub async fn run_flusher(self: Arc<Self>, stop: impl std::future::Future<Output = ()>) {
        let mut ticker = tokio::time::interval(self.config.usage_flush_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Usage expires a minute at a time: once caught up, the store is
        // not asked again until the cut moves.
        let mut pruned_to = i64::MIN;
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = ticker.tick() => {
                    self.sync_clock();
                    if let Err(e) = self.flush_completed_minutes().await {
                        tracing::error!(error = %e, "could not flush usage; will retry");
                    }
                    let cut = self.usage_cut(OffsetDateTime::now_utc());
                    if cut > pruned_to {
                        match self.prune_usage(cut).await {
                            Ok(true) => pruned_to = cut,
                            Ok(false) => {}
                            Err(e) => {
                                tracing::error!(error = %e, "could not delete expired usage; will retry");
                            }
                        }
                    }
                    self.forget_idle_limits();
                    let now = OffsetDateTime::now_utc();
                    self.forget_seen(WallNs::of(now).unix_millis());
                    if let Some(replay) = self.replay.get() {
                        if let Err(e) = replay.prune(now).await {
                            tracing::warn!(error = %e, "could not forget expired signed requests; will retry");
                        }
                    }
                }
                () = &mut stop => break,
            }
        }
        self.shutdown().await;
    }

    /// The first minute (since the Unix epoch) `usage_retention` keeps at
    /// `now`.
    fn usage_cut(&self, now: OffsetDateTime) -> i64 {
        let kept = i64::try_from(self.config.usage_retention.as_secs() / 60).unwrap_or(i64::MAX);
        WallNs::of(now).minute().saturating_sub(kept)
    }

    /// Deletes stored usage of minutes before `cut`, oldest first and at
    /// most [`PRUNE_MINUTES_PER_FLUSH`] minutes a call. True when none is
    /// left.
    async fn prune_usage(&self, cut: i64) -> Result<bool, StoreError> {
        for _ in 0..PRUNE_MINUTES_PER_FLUSH {
            if self.store.prune_usage(cut).await? == 0 {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// A lock-free counter of one key's `VALID` answers in one minute: the
/// minute (mod 2^32) in the high half of `packed`, the count in the low
/// half; 0 when empty, [`LISTED`] when empty but still in the verifier's
/// dirty list (its last use is not written yet). A key is in the dirty list
/// exactly when its slot is not 0. Other codes, and counts a new minute
/// pushes out, go to the verifier's usage map.
#[derive(Default)]
pub(crate) struct UsageSlot {
    packed: std::sync::atomic::AtomicU64,
    /// Unix seconds of the last use.
    last_used_s: std::sync::atomic::AtomicU32,
    /// `last_used_at` as the store has it, as far as this node knows.
    stored_last_used_s: std::sync::atomic::AtomicU32,
}

/// What a flush does with a key's last use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LastUse {
    /// Write it: these Unix milliseconds.
    Write(i64),
    /// Newer than the store's, but not worth a write yet: keep the key
    /// listed.
    Hold,
    /// The store has it.
    Stored,
}

impl UsageSlot {
    /// An empty slot of a key whose `last_used_at` in the store is
    /// `stored_last_used_s` (Unix seconds, 0 for never).
    pub(crate) fn new(stored_last_used_s: u32) -> Self {
        UsageSlot {
            stored_last_used_s: std::sync::atomic::AtomicU32::new(stored_last_used_s),
            ..UsageSlot::default()
        }
    }

    /// `last_used_at` moves when it is an hour past what the store has (and
    /// at shutdown): the per-minute counts say more, and rewriting every busy
    /// key's row every minute would cost more than all the rest of a flush.
    /// A write is taken as done.
    fn last_use(&self, everything: bool) -> LastUse {
        use std::sync::atomic::Ordering::Relaxed;
        let last = self.last_used_s.load(Relaxed);
        let stored = self.stored_last_used_s.load(Relaxed);
        if last.saturating_sub(stored) >= LAST_USED_RESOLUTION_S || (everything && last > stored) {
            self.stored_last_used_s.store(last, Relaxed);
            LastUse::Write(i64::from(last) * 1000)
        } else if last > stored {
            LastUse::Hold
        } else {
            LastUse::Stored
        }
    }
}

pub(crate) struct UsageCell {
    key_id: InlineKeyId,
    last_used: OffsetDateTime,
    /// (minute, code, count); almost always one or two entries.
    counts: Vec<(i64, VerifyCode, u64)>,
}

/// Usage on its way to the store. Rows repeated within a batch add up in
/// the store.
#[derive(Default)]
pub(crate) struct Batch {
    rows: Vec<UsageRow>,
    touched: Vec<(KeyId, OffsetDateTime)>,
}

impl Batch {
    fn count(&mut self, id: InlineKeyId, minute: i64, code: VerifyCode, count: u64) {
        if let Ok(key_id) = id.to_key_id() {
            self.rows.push(UsageRow {
                key_id,
                minute,
                code: code.as_str().to_owned(),
                count,
            });
        }
    }

    fn touch(&mut self, id: InlineKeyId, at_ms: i64) {
        let at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(at_ms) * 1_000_000);
        if let (Ok(key_id), Ok(at)) = (id.to_key_id(), at) {
            self.touched.push((key_id, at));
        }
    }
}

/// What one flush wrote, or why it stopped.
#[derive(Default)]
struct Written {
    rows: usize,
    error: Option<StoreError>,
}

/// A usage slot with no count whose key is still in the dirty list.
const LISTED: u64 = u64::MAX;

/// Rows written per statement batch, so a flush of a million keys never
/// holds them all at once.
const FLUSH_CHUNK: usize = 10_000;
/// Most rows kept for the next flush when the store cannot be written.
const MAX_UNWRITTEN: usize = 2_000_000;
/// Most minutes of expired usage deleted per flush. A minute of usage is
/// written per minute, so this works off a backlog (after a shortened
/// retention, or a node that was down) in short writes, far faster than it
/// grows.
const PRUNE_MINUTES_PER_FLUSH: usize = 12;
/// How far `last_used_at` may lag behind in the store, in seconds.
const LAST_USED_RESOLUTION_S: u32 = 3600;

/// The full minute a usage slot counts: the slot keeps it mod 2^32, so it is
/// the latest minute not after `now_minute` with those low bits.
fn slot_minute(packed: u64, now_minute: i64) -> i64 {
    let low = (packed >> 32) as i64;
    let mut minute = (now_minute & !0xffff_ffff) | low;
    if minute > now_minute {
        minute -= 1 << 32;
    }
    minute
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // A panic in a test is a failed test.

    use super::*;
    use std::time::Duration;

    use keyward_core::{
        Api, ApiId, AuditEvent, Environment, EventId, KeyRecord, PlaintextKey, Prefix,
    };
    use keyward_store::Store;

    use crate::VerifierConfig;

    async fn store_with_keys(n: usize) -> (tempfile::TempDir, Arc<dyn Store>, Vec<KeyRecord>) {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(
            keyward_store::SqliteStore::open(&dir.path().join("k.db"))
                .await
                .unwrap(),
        );
        let now = OffsetDateTime::now_utc();
        let event = || AuditEvent {
            id: EventId::generate(now).unwrap(),
            at: now,
            actor: None,
            action: "test".into(),
            target: String::new(),
            details: serde_json::json!({}),
        };
        let api = Api {
            id: ApiId::generate(now).unwrap(),
            name: "t".into(),
            prefix: Prefix::parse("tu").unwrap(),
            environments: vec![Environment::Live],
            workspace: keyward_core::DEFAULT_WORKSPACE.to_owned(),
            created_at: now,
            roles: Default::default(),
            critical_scopes: Vec::new(),
            signing: Default::default(),
        };
        store.create_api(&api, &event()).await.unwrap();
        let mut keys = Vec::new();
        for _ in 0..n {
            let plain = PlaintextKey::generate(&api.prefix, Environment::Live).unwrap();
            let record =
                KeyRecord::new(api.id.clone(), Environment::Live, "o".into(), &plain, now).unwrap();
            store.create_key(&record, &event()).await.unwrap();
            keys.push(record);
        }
        (dir, store, keys)
    }

    fn counts(rows: &[UsageRow]) -> Vec<(i64, &str, u64)> {
        let mut v: Vec<_> = rows
            .iter()
            .map(|r| (r.minute, r.code.as_str(), r.count))
            .collect();
        v.sort();
        v
    }

    #[tokio::test]
    async fn minutes_are_written_once_they_are_over_and_all_at_shutdown() {
        let (_dir, store, keys) = store_with_keys(4).await;
        let verifier = Verifier::new(Arc::clone(&store), VerifierConfig::default());
        // Stay clear of a minute's end, which would make "now" the past.
        let second = OffsetDateTime::now_utc().second();
        if second >= 55 {
            tokio::time::sleep(Duration::from_secs(u64::from(61 - second))).await;
        }
        let now = OffsetDateTime::now_utc();
        let (minute, earlier) = (
            now.unix_timestamp().div_euclid(60),
            now - time::Duration::minutes(2),
        );
        let before = earlier.unix_timestamp().div_euclid(60);
        let scope = VerifyCode::InsufficientScope;
        // The first key's slot rolls over to the current minute; the second
        // key's slot still holds the earlier minute.
        let first = verifier.lookup(&keys[0].digest).await.unwrap().unwrap();
        let second = verifier.lookup(&keys[1].digest).await.unwrap().unwrap();
        // The third key was used half an hour ago: its new use is not worth
        // rewriting its row until shutdown.
        let half_hour_ago = now - time::Duration::minutes(30);
        let half_hour_ago = half_hour_ago
            .replace_millisecond(half_hour_ago.millisecond())
            .unwrap();
        // So was the fourth, which is busy: its count of the earlier minute
        // moves out of its slot when the current minute's first use comes.
        store
            .record_usage(
                &[],
                &[
                    (keys[2].id.clone(), half_hour_ago),
                    (keys[3].id.clone(), half_hour_ago),
                ],
            )
            .await
            .unwrap();
        let third = verifier.lookup(&keys[2].digest).await.unwrap().unwrap();
        let fourth = verifier.lookup(&keys[3].digest).await.unwrap().unwrap();
        for (key, code, at, times) in [
            (&first, VerifyCode::Valid, earlier, 3),
            (&first, scope, earlier, 1),
            (&first, VerifyCode::Valid, now, 2),
            (&first, scope, now, 1),
            (&second, VerifyCode::Valid, earlier, 4),
            (&third, VerifyCode::Valid, earlier, 1),
            (&fourth, VerifyCode::Valid, earlier, 2),
            (&fourth, VerifyCode::Valid, now, 1),
        ] {
            for _ in 0..times {
                verifier.count(&key_digest(key, &keys), key, code, WallNs::of(at));
            }
        }
        verifier.flush_completed_minutes().await.unwrap();
        let usage = |i: usize| {
            let store = Arc::clone(&store);
            let id = keys[i].id.clone();
            async move { store.key_usage(&id, before..=minute).await.unwrap() }
        };
        assert_eq!(
            counts(&usage(0).await),
            vec![(before, "INSUFFICIENT_SCOPE", 1), (before, "VALID", 3)]
        );
        assert_eq!(counts(&usage(1).await), vec![(before, "VALID", 4)]);
        let touched = store.get_key(&keys[0].id).await.unwrap().unwrap();
        assert!(touched.last_used_at.is_some());
        let last_used = |i: usize| {
            let store = Arc::clone(&store);
            let id = keys[i].id.clone();
            async move { store.get_key(&id).await.unwrap().unwrap().last_used_at }
        };
        assert_eq!(counts(&usage(2).await), vec![(before, "VALID", 1)]);
        assert_eq!(last_used(2).await, Some(half_hour_ago), "within the hour");
        assert_eq!(counts(&usage(3).await), vec![(before, "VALID", 2)]);
        assert_eq!(
            last_used(3).await,
            Some(half_hour_ago),
            "a busy key's row is not rewritten each minute"
        );

        // Nothing is written twice.
        verifier.flush_completed_minutes().await.unwrap();
        assert_eq!(counts(&usage(1).await), vec![(before, "VALID", 4)]);

        verifier.flush_usage().await.unwrap();
        assert_eq!(
            counts(&usage(0).await),
            vec![
                (before, "INSUFFICIENT_SCOPE", 1),
                (before, "VALID", 3),
                (minute, "INSUFFICIENT_SCOPE", 1),
                (minute, "VALID", 2)
            ]
        );
        assert_eq!(counts(&usage(1).await), vec![(before, "VALID", 4)]);
        assert!(
            last_used(2).await > Some(half_hour_ago),
            "written at shutdown"
        );
        assert_eq!(
            counts(&usage(3).await),
            vec![(before, "VALID", 2), (minute, "VALID", 1)]
        );
        assert!(
            last_used(3).await > Some(half_hour_ago),
            "written at shutdown"
        );
    }

    #[tokio::test]
    async fn usage_past_the_retention_is_deleted_a_few_minutes_at_a_time() {
        let (_dir, store, keys) = store_with_keys(1).await;
        let config = VerifierConfig {
            usage_retention: Duration::from_secs(3600),
            ..VerifierConfig::default()
        };
        let verifier = Verifier::new(Arc::clone(&store), config);
        let now = OffsetDateTime::now_utc();
        let minute = now.unix_timestamp().div_euclid(60);
        // Twenty minutes past the hour kept, the hour's first minute, and
        // the last minute.
        let rows: Vec<UsageRow> = (minute - 80..minute - 60)
            .chain([minute - 60, minute - 1])
            .map(|minute| UsageRow {
                key_id: keys[0].id.clone(),
                minute,
                code: "VALID".into(),
                count: 1,
            })
            .collect();
        store.record_usage(&rows, &[]).await.unwrap();
        let stored = || {
            let store = Arc::clone(&store);
            let id = keys[0].id.clone();
            async move {
                let rows = store.key_usage(&id, minute - 100..=minute).await.unwrap();
                rows.iter().map(|r| r.minute).collect::<Vec<_>>()
            }
        };
        verifier.prune_usage(verifier.usage_cut(now)).await.unwrap();
        assert_eq!(stored().await.len(), 22 - PRUNE_MINUTES_PER_FLUSH);
        verifier.prune_usage(verifier.usage_cut(now)).await.unwrap();
        assert_eq!(stored().await, vec![minute - 60, minute - 1]);
        verifier.prune_usage(verifier.usage_cut(now)).await.unwrap();
        assert_eq!(stored().await, vec![minute - 60, minute - 1]);
    }

    fn key_digest(key: &CachedKey, records: &[KeyRecord]) -> KeyDigest {
        records
            .iter()
            .find(|r| r.id.as_str() == key.id())
            .map(|r| r.digest)
            .unwrap()
    }

    #[test]
    fn a_slot_minute_is_the_latest_with_its_low_bits() {
        let now = 29_500_000_i64; // late 2026, in minutes
        let packed = |m: i64| ((m as u64) << 32) | 7;
        assert_eq!(slot_minute(packed(now), now), now);
        assert_eq!(slot_minute(packed(now - 1), now), now - 1);
        // Across a wrap of the low 32 bits.
        let wrap = 1_i64 << 32;
        assert_eq!(slot_minute(packed(wrap - 1), wrap + 2), wrap - 1);
        assert_eq!(slot_minute(packed(wrap + 1), wrap + 2), wrap + 1);
    }
}
