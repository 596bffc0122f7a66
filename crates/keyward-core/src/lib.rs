//! Keyward's domain: the key format, identifiers, the records Keyward keeps
//! and the rules that decide a verify.
//!
//! This crate does no I/O and knows nothing of HTTP, JSON APIs or SQL; every
//! other crate builds on its types. Its one source of non-determinism is the
//! OS CSPRNG, used to generate keys and ids.
//!
//! - [`error`]: why an input is refused — keys, ids and values — below every
//!   other module, so the rules point one way.
//! - [`key`]: the `{prefix}_{env}_{body}{check}` format, parsing and digests.
//! - [`id`]: time-ordered identifiers for APIs, keys, tokens and events.
//! - [`model`]: APIs, key records, admin tokens, audit events and their values.
//! - [`limits`]: rate limits (GCRA), usage credits and IP allowlists.
//! - [`verify`]: the verify result codes and the rules that produce them.
//! - [`audit`]: the names of what the audit log records.
//! - [`chain`]: the audit log's hash chain and the check that finds tampering.
//! - [`access`]: admin users, workspaces and roles.

#![forbid(unsafe_code)]

pub mod access;
pub mod audit;
pub mod base62;
pub mod chain;
pub mod error;
pub mod id;
pub mod key;
pub mod limits;
pub mod model;
pub mod verify;

pub use access::{BuiltinRole, CustomRole, RoleGrant, User, Workspace, DEFAULT_WORKSPACE};
pub use audit::AuditAction;
pub use error::{IdError, KeyFormatError, ValueError};
pub use id::{ApiId, EventId, KeyId, TokenId, UserId};
pub use key::{Environment, KeyDigest, ParsedKey, PlaintextKey, Prefix};
pub use model::{
    AdminScope, AdminToken, Api, ApiSigning, AuditEvent, Grant, GrantView, KeyRecord, KeyRoles,
    KeySigning, KeyState, RoleName, Scope, SigningAlgorithm,
};
pub use verify::{evaluate, evaluate_at, KeyPolicy, Requirements, VerifyCode};
