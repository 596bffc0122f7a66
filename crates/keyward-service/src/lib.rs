//! Every operation a caller can ask of Keyward, as plain async functions
//! that take an [`Actor`] and return typed results. No HTTP and no wire
//! types here: the server's handlers and the CLI are transports over it.
//!
//! - [`Actor`]: who is asking, and the checks on what it may do.
//! - [`Error`]: every way an operation fails.
//! - [`audit`]: the audit event of an operation.
//! - [`seal`]: the master key's seal and, when unsealed, the keyring.
//! - [`records`]: what each sealed record is bound to.
//! - [`transit`]: transit keys opened with the keyring.
//!
//! Invariant: a mutation runs its steps in one order, in one place —
//! access check, audited write, cache invalidation, change feed, event.

#![forbid(unsafe_code)]

mod actor;
pub mod audit;
mod error;
pub mod records;
pub mod seal;
pub mod transit;

pub use actor::Actor;
pub use audit::{audit_event, now};
pub use error::Error;
