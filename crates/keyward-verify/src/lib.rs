//! The verify hot path and the caches behind it.
//!
//! - [`Verifier`]: key records, limits, credits and usage, from memory.
//! - [`TokenCache`]: admin tokens by digest.
//! - [`ChangeFollower`]: keeps both true to changes made on other nodes.
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
mod tokens;
mod usage;
mod verifier;

pub use cache::CachedKey;
pub use changes::ChangeFollower;
pub use tokens::TokenCache;
pub use verifier::*;
