//! The verify hot path and the caches behind it.
//!
//! - [`Verifier`]: key records, limits, credits and usage, from memory.
//! - [`TokenCache`]: admin tokens by digest.
//! - [`ChangeFollower`]: keeps both true to changes made on other nodes.
//! - [`observe`]: the one hook every listener reports its requests to.
//!
//! Modules, each with its invariants:
//!
//! - `verifier`: the [`Verifier`], its [`VerifierConfig`], what it answers
//!   ([`Verification`], [`RateLimitState`]) and whose keys a caller may see
//!   ([`Reach`]); `verify` and the order of its checks.
//! - `cache`: key records by digest ([`CachedKey`]), the negative cache, and
//!   the generation stripes that keep both true to the store.
//! - `limits`: GCRA states per key and per owner, and the owner table.
//! - `credits`: credit leases.
//! - `usage`: usage counted per key, minute and code, its flushes and
//!   pruning, and `last_used_at`.
//! - `clock`: the monotonic epoch and the wall clock derived from it.
//! - `tokens`: the admin token cache.
//! - `changes`: the change feed follower.
//! - `observe`: the request hook and the request log.
//!
//! Invariant: a verification never writes to the store per request, and
//! every change made through this node reaches these caches before it is
//! acknowledged.

#![forbid(unsafe_code)]

mod cache;
pub mod changes;
mod clock;
mod credits;
mod limits;
pub mod observe;
pub mod proof;
mod tokens;
mod usage;
mod verifier;

pub use cache::CachedKey;
pub use changes::ChangeFollower;
pub use observe::{Listener, Observation, Observe, RequestLog};
pub use proof::{Opened, Opener, Proof, ReplayStore, Scheme, SignedRequest, VerifyError};
pub use tokens::TokenCache;
pub use verifier::{RateLimitState, Reach, Verification, Verifier, VerifierConfig};
