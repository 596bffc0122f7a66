//! Limits a verify enforces: rate limits (GCRA), usage credits with periodic
//! refill, and IP allowlists. Pure rules and state transitions; where the
//! state lives is the server's business.
//!
//! Rate limits use the generic cell rate algorithm: a limit of `limit` per
//! `duration_ms` lets a burst of `limit` through at once and then one more
//! every `duration_ms / limit`. Its whole state is one timestamp, the
//! theoretical arrival time (TAT), so a million keys cost a few megabytes and
//! a check is a handful of integer operations.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::error::ValueError;

/// Most named rate limits one key or owner may carry.
pub const MAX_RATE_LIMITS: usize = 8;
/// Most CIDR ranges in one allowlist.
pub const MAX_ALLOWLIST: usize = 256;

/// A named rate limit, e.g. `{"name": "burst", "limit": 10, "duration_ms": 1000}`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Names the limit in responses and headers; unique per key.
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[A-Za-z0-9_.-]{1,64}$"))]
    pub name: String,
    /// Units allowed per `duration_ms`, 1 to 1,000,000,000.
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 1_000_000_000))]
    pub limit: u64,
    /// The window, in milliseconds: 1 ms to 31 days.
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 2_678_400_000_u64))]
    pub duration_ms: u64,
}

impl RateLimit {
    pub fn check(&self) -> Result<(), ValueError> {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 64
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
        // A window of at most 31 days and a limit of at most a billion keep
        // every product below within u64 and the interval at least 1 ns.
        let ok = name_ok
            && (1..=1_000_000_000).contains(&self.limit)
            && (1..=31 * 24 * 3_600_000).contains(&self.duration_ms);
        if !ok {
            Err(ValueError::RateLimit)
        } else if crate::key::contains_key(&self.name) {
            Err(ValueError::KeyShaped {
                field: "a rate limit's name",
            })
        } else {
            Ok(())
        }
    }

    /// Nanoseconds one unit of cost occupies (at least 1).
    fn interval_ns(&self) -> u64 {
        (self.window_ns() / self.limit.max(1)).max(1)
    }

    /// The window in nanoseconds. `check` bounds the duration to 31 days,
    /// about 2.7e15 ns, far inside u64; saturation only guards unchecked
    /// values.
    fn window_ns(&self) -> u64 {
        self.duration_ms.saturating_mul(1_000_000)
    }
}

/// Checks a set of rate limits: names unique, each valid, not too many.
pub fn check_rate_limits(limits: &[RateLimit]) -> Result<(), ValueError> {
    if limits.len() > MAX_RATE_LIMITS {
        return Err(ValueError::RateLimit);
    }
    for (i, limit) in limits.iter().enumerate() {
        limit.check()?;
        if limits[..i].iter().any(|other| other.name == limit.name) {
            return Err(ValueError::RateLimit);
        }
    }
    Ok(())
}

/// The state of one rate limit: the theoretical arrival time in nanoseconds
/// since an epoch the caller chooses (monotonic in practice). 64 bits of
/// nanoseconds last 584 years, and keep the arithmetic to cheap 64-bit
/// operations on the hot path.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Gcra {
    tat_ns: u64,
}

/// What a check of one limit found, for the response and the headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitStatus {
    pub allowed: bool,
    /// The configured limit.
    pub limit: u64,
    /// Units still available right after this check.
    pub remaining: u64,
    /// Nanoseconds from now until the limit is fully replenished (when
    /// allowed) or until this request's cost would fit (when refused).
    pub reset_in_ns: u64,
}

impl Gcra {
    /// What admitting `cost` units at `now_ns` would do, without doing it.
    /// Returns the status and the state to keep if the caller admits it.
    pub fn peek(&self, limit: &RateLimit, now_ns: u64, cost: u64) -> (LimitStatus, Gcra) {
        let interval = limit.interval_ns();
        let window = limit.window_ns();
        let tat = self.tat_ns.max(now_ns);
        // Saturation makes an absurd cost simply never fit.
        let new_tat = tat.saturating_add(interval.saturating_mul(cost));
        if new_tat - now_ns <= window {
            let remaining = (window - (new_tat - now_ns)) / interval;
            let status = LimitStatus {
                allowed: true,
                limit: limit.limit,
                remaining: remaining.min(limit.limit),
                reset_in_ns: new_tat - now_ns,
            };
            (status, Gcra { tat_ns: new_tat })
        } else {
            let remaining = window.saturating_sub(tat - now_ns) / interval;
            let status = LimitStatus {
                allowed: false,
                limit: limit.limit,
                remaining: remaining.min(limit.limit),
                reset_in_ns: new_tat - now_ns - window,
            };
            (status, *self)
        }
    }

    /// Whether this state no longer holds anything back at `now_ns`, so it
    /// can be forgotten.
    pub fn is_idle(&self, now_ns: u64) -> bool {
        self.tat_ns <= now_ns
    }
}

/// Checks `cost` against every limit and admits it only if all allow it, so a
/// refused request consumes nothing. Returns whether it was admitted and the
/// status of the tightest limit (the fewest remaining; a refusing one first).
pub fn admit(
    limits: &[RateLimit],
    states: &mut [Gcra],
    now_ns: u64,
    cost: u64,
) -> (bool, Option<LimitStatus>) {
    admit_all(&mut [(limits, states)], now_ns, cost, true)
}

/// [`admit`] over several groups of limits at once (a key's and its
/// owner's): every limit of every group must allow `cost`. With `commit`
/// false it only checks. Each group holds at most [`MAX_RATE_LIMITS`]
/// (checked on write); the next states live on the stack, so a check
/// allocates nothing.
pub fn admit_all(
    groups: &mut [(&[RateLimit], &mut [Gcra])],
    now_ns: u64,
    cost: u64,
    commit: bool,
) -> (bool, Option<LimitStatus>) {
    const MAX_GROUPS: usize = 2;
    let mut next = [[Gcra::default(); MAX_RATE_LIMITS]; MAX_GROUPS];
    let mut tightest: Option<LimitStatus> = None;
    for (g, (limits, states)) in groups.iter().enumerate().take(MAX_GROUPS) {
        let pairs = limits.iter().zip(states.iter()).take(MAX_RATE_LIMITS);
        for (i, (limit, state)) in pairs.enumerate() {
            let (status, after) = state.peek(limit, now_ns, cost);
            next[g][i] = after;
            let tighter = tightest
                .is_none_or(|t| (t.allowed, t.remaining) > (status.allowed, status.remaining));
            if tighter {
                tightest = Some(status);
            }
        }
    }
    let allowed = tightest.is_none_or(|t| t.allowed);
    if allowed && commit {
        for (g, (limits, states)) in groups.iter_mut().enumerate().take(MAX_GROUPS) {
            let n = limits.len().min(states.len()).min(MAX_RATE_LIMITS);
            states[..n].copy_from_slice(&next[g][..n]);
        }
    }
    (allowed, tightest)
}

/// How often credits are refilled.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RefillInterval {
    /// At 00:00 UTC every day.
    Daily,
    /// At 00:00 UTC on `day` (1–28, default 1) of every month.
    Monthly,
}

/// A key's usage credits: what is left, and how it is refilled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Credits {
    /// Credits left in storage (a node may hold some of them leased).
    pub remaining: u64,
    pub refill: Option<Refill>,
    /// The start of the refill period the credits belong to.
    pub refilled_at: OffsetDateTime,
}

/// A periodic refill: credits are set back to `amount`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Refill {
    pub interval: RefillInterval,
    pub amount: u64,
    /// Day of the month for monthly refills, 1–28.
    pub day: Option<u8>,
}

impl Refill {
    pub fn check(&self) -> Result<(), ValueError> {
        let day_ok = match (self.interval, self.day) {
            (_, None) => true,
            (RefillInterval::Monthly, Some(d)) => (1..=28).contains(&d),
            (RefillInterval::Daily, Some(_)) => false,
        };
        if day_ok && self.amount <= i64::MAX as u64 {
            Ok(())
        } else {
            Err(ValueError::Refill)
        }
    }

    /// The start of the refill period containing `at`: the last refill time
    /// at or before it.
    pub fn period_start(&self, at: OffsetDateTime) -> OffsetDateTime {
        let midnight = at.replace_time(time::Time::MIDNIGHT);
        match self.interval {
            RefillInterval::Daily => midnight,
            RefillInterval::Monthly => {
                let day = self.day.unwrap_or(1);
                let this_month = midnight.replace_day(day).unwrap_or(midnight);
                if this_month <= at {
                    this_month
                } else {
                    let (year, month) = if at.month() == time::Month::January {
                        (at.year() - 1, time::Month::December)
                    } else {
                        (at.year(), at.month().previous())
                    };
                    time::Date::from_calendar_date(year, month, day)
                        .map(|d| d.midnight().assume_utc())
                        .unwrap_or(this_month)
                }
            }
        }
    }

    /// Whether a key last refilled at `last` (or created then) is due a
    /// refill at `now`.
    pub fn is_due(&self, last: OffsetDateTime, now: OffsetDateTime) -> bool {
        last < self.period_start(now)
    }
}

/// A CIDR range of an IP allowlist, v4 or v6. A bare address is a /32 or /128.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Self, ValueError> {
        let (addr, prefix) = match s.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| ValueError::Cidr)?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse::<u8>().map_err(|_| ValueError::Cidr)?
            }
            Some(_) => return Err(ValueError::Cidr),
            None => max,
        };
        if prefix > max {
            return Err(ValueError::Cidr);
        }
        // Store the network address so equal ranges compare equal.
        let network = mask(addr, prefix);
        Ok(Cidr { network, prefix })
    }

    /// Whether `ip` is in the range. An IPv4-mapped IPv6 address
    /// (`::ffff:a.b.c.d`) is treated as the IPv4 address it carries.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.network.is_ipv4() && mask(ip, self.prefix) == self.network
    }
}

impl TryFrom<String> for Cidr {
    type Error = ValueError;
    fn try_from(s: String) -> Result<Self, ValueError> {
        Cidr::parse(&s)
    }
}

impl From<Cidr> for String {
    fn from(c: Cidr) -> String {
        c.to_string()
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let m = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - prefix)
            };
            IpAddr::V4((bits & m).into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let m = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - prefix)
            };
            IpAddr::V6((bits & m).into())
        }
    }
}

/// Parses an allowlist; an empty list means "any address".
pub fn parse_allowlist(ranges: &[String]) -> Result<Vec<Cidr>, ValueError> {
    if ranges.len() > MAX_ALLOWLIST {
        return Err(ValueError::Cidr);
    }
    ranges.iter().map(|r| Cidr::parse(r)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn limit(limit: u64, duration_ms: u64) -> RateLimit {
        RateLimit {
            name: "l".into(),
            limit,
            duration_ms,
        }
    }

    #[test]
    fn a_burst_of_the_limit_passes_and_the_next_is_refused_until_reset() {
        let l = limit(10, 1000);
        let mut states = [Gcra::default()];
        let t0 = 1_000_000 * MS;
        for i in 0..10 {
            let (ok, status) = admit(std::slice::from_ref(&l), &mut states, t0, 1);
            assert!(ok, "request {i}");
            assert_eq!(status.unwrap().remaining, 9 - i);
        }
        let (ok, status) = admit(std::slice::from_ref(&l), &mut states, t0, 1);
        let status = status.unwrap();
        assert!(!ok && status.remaining == 0);
        assert_eq!(
            status.reset_in_ns,
            100 * MS,
            "one unit frees up every 100 ms"
        );
        let (ok, _) = admit(std::slice::from_ref(&l), &mut states, t0 + 99 * MS, 1);
        assert!(!ok);
        let (ok, _) = admit(std::slice::from_ref(&l), &mut states, t0 + 100 * MS, 1);
        assert!(ok);
    }

    #[test]
    fn cost_counts_as_that_many_requests() {
        let l = limit(10, 1000);
        let mut states = [Gcra::default()];
        let (ok, s) = admit(std::slice::from_ref(&l), &mut states, 0, 7);
        assert!(ok && s.unwrap().remaining == 3);
        let (ok, s) = admit(std::slice::from_ref(&l), &mut states, 0, 4);
        assert!(
            !ok && s.unwrap().remaining == 3,
            "a refused request consumes nothing"
        );
        let (ok, _) = admit(std::slice::from_ref(&l), &mut states, 0, 3);
        assert!(ok);
        let (ok, _) = admit(
            std::slice::from_ref(&limit(10, 1000)),
            &mut [Gcra::default()],
            0,
            11,
        );
        assert!(!ok, "a cost above the limit never fits");
    }

    #[test]
    fn every_limit_must_allow_and_the_tightest_is_reported() {
        let limits = [limit(5, 1000), limit(3, 60_000)];
        let mut states = [Gcra::default(); 2];
        for _ in 0..3 {
            assert!(admit(&limits, &mut states, 0, 1).0);
        }
        let (ok, s) = admit(&limits, &mut states, 0, 1);
        assert!(!ok);
        assert_eq!(s.unwrap().limit, 3);
        // The per-second limit was not charged by the refused request.
        let (ok, s) = admit(&limits[..1], &mut states[..1], 0, 1);
        assert!(ok && s.unwrap().remaining == 1);
    }

    #[test]
    fn rate_limit_values_are_checked() {
        assert!(limit(1, 1).check().is_ok());
        assert!(limit(0, 1000).check().is_err());
        assert!(limit(1, 0).check().is_err());
        let dup = [limit(1, 1), limit(2, 2)];
        assert!(check_rate_limits(&dup).is_err());
    }

    #[test]
    fn cidr_edge_cases() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let cases = [
            ("10.0.0.0/8", "10.255.1.2", true),
            ("10.0.0.0/8", "11.0.0.1", false),
            ("192.168.1.7/32", "192.168.1.7", true),
            ("192.168.1.7/32", "192.168.1.8", false),
            ("192.168.1.7", "192.168.1.7", true),
            ("0.0.0.0/0", "203.0.113.9", true),
            ("0.0.0.0/0", "2001:db8::1", false),
            ("2001:db8::/32", "2001:db8:ffff::1", true),
            ("2001:db8::/32", "2001:db9::1", false),
            ("2001:db8::1/128", "2001:db8::1", true),
            ("2001:db8::1/128", "2001:db8::2", false),
            ("::/0", "2001:db8::1", true),
            ("::/0", "10.0.0.1", false),
            ("10.0.0.0/8", "::ffff:10.1.2.3", true),
            ("10.0.0.0/8", "::ffff:11.1.2.3", false),
            ("10.1.2.3/8", "10.9.9.9", true),
        ];
        for (range, addr, expected) in cases {
            let cidr = Cidr::parse(range).unwrap();
            assert_eq!(cidr.contains(ip(addr)), expected, "{range} ∋ {addr}");
        }
        for bad in [
            "10.0.0.0/33",
            "::/129",
            "10.0.0/8",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "x",
            "",
        ] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Cidr::parse("10.1.2.3/8").unwrap().to_string(), "10.0.0.0/8");
    }

    #[test]
    fn refill_periods() {
        use time::macros::datetime;
        let daily = Refill {
            interval: RefillInterval::Daily,
            amount: 5,
            day: None,
        };
        let now = datetime!(2026-03-10 15:00 UTC);
        assert_eq!(daily.period_start(now), datetime!(2026-03-10 0:00 UTC));
        assert!(daily.is_due(datetime!(2026-03-09 23:59 UTC), now));
        assert!(!daily.is_due(datetime!(2026-03-10 0:00 UTC), now));
        let monthly = Refill {
            interval: RefillInterval::Monthly,
            amount: 5,
            day: Some(15),
        };
        assert_eq!(monthly.period_start(now), datetime!(2026-02-15 0:00 UTC));
        let jan = datetime!(2026-01-03 1:00 UTC);
        assert_eq!(monthly.period_start(jan), datetime!(2025-12-15 0:00 UTC));
        assert!(Refill {
            day: Some(29),
            ..monthly
        }
        .check()
        .is_err());
        assert!(Refill {
            day: Some(3),
            ..daily
        }
        .check()
        .is_err());
    }
}
