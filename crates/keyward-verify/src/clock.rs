//! The verifier's clocks: a monotonic one that limit states and cache ages
//! count from, and the wall clock derived from it.
//!
//! A verify reads the monotonic clock once and takes the wall-clock time
//! from that reading (`Verifier::wall_at`) instead of reading both clocks.
//!
//! Invariant: monotonic time is nanoseconds since `Verifier::epoch` as a
//! `u64` (enough for 584 years), and `wall_at` is `wall_at_epoch` plus it,
//! so its readings never go back in time between two flushes. (A cache miss
//! reads the wall clock itself.)
//! Invariant: `wall_at_epoch` is re-read at every usage flush
//! (`Verifier::sync_clock`), so a step of the system clock reaches answers
//! and usage minutes within a flush interval.

use std::time::Duration;

use time::OffsetDateTime;

use crate::Verifier;

/// One reading of the wall clock, in nanoseconds since the Unix epoch: the
/// hot path takes minutes, seconds and milliseconds from it with integer
/// arithmetic, and builds an `OffsetDateTime` only for what it keeps.
#[derive(Clone, Copy)]
pub(crate) struct WallNs(pub(crate) i64);

impl WallNs {
    const PER_SECOND: i64 = 1_000_000_000;

    pub(crate) fn of(at: OffsetDateTime) -> Self {
        let ns = at.unix_timestamp_nanos();
        WallNs(ns.clamp(i64::MIN.into(), i64::MAX.into()) as i64)
    }

    pub(crate) fn unix_millis(self) -> i64 {
        self.0.div_euclid(1_000_000)
    }

    pub(crate) fn minute(self) -> i64 {
        self.0.div_euclid(60 * Self::PER_SECOND)
    }

    /// Unix seconds as kept in usage slots (until 2106).
    pub(crate) fn unix_seconds(self) -> u32 {
        self.0
            .div_euclid(Self::PER_SECOND)
            .clamp(0, i64::from(u32::MAX)) as u32
    }

    pub(crate) fn unix_ms(self) -> i64 {
        self.0.div_euclid(1_000_000)
    }

    pub(crate) fn datetime(self) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp_nanos(self.0.into())
            .unwrap_or_else(|_| OffsetDateTime::now_utc())
    }
}

impl Verifier {
    /// Re-reads the wall clock against the monotonic one.
    pub(crate) fn sync_clock(&self) {
        let wall = OffsetDateTime::now_utc().unix_timestamp_nanos();
        let since = self.epoch.elapsed().as_nanos() as i128;
        let at_epoch = (wall - since).clamp(i64::MIN.into(), i64::MAX.into()) as i64;
        self.wall_at_epoch
            .store(at_epoch, std::sync::atomic::Ordering::Relaxed);
    }

    /// The wall clock at `mono_ns` nanoseconds past the verifier's epoch.
    pub(crate) fn wall_at(&self, mono_ns: u64) -> WallNs {
        let at_epoch = self
            .wall_at_epoch
            .load(std::sync::atomic::Ordering::Relaxed);
        WallNs(at_epoch.saturating_add_unsigned(mono_ns))
    }

    pub(crate) fn now_ns(&self) -> u64 {
        nanos(self.epoch.elapsed())
    }
}

/// `d` in nanoseconds; u64 nanoseconds since the verifier started last 584
/// years.
pub(crate) fn nanos(d: Duration) -> u64 {
    d.as_secs()
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::from(d.subsec_nanos()))
}
