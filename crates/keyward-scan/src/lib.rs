//! Keyward's secret scanner.
//!
//! - [`rules`]: rules are data — a TOML file compiled into the binary,
//!   extendable with the user's own — each with examples a test checks.
//! - [`validate`]: validators are code — checksums and structure that a
//!   regex cannot check (Keyward keys, GitHub tokens, Base58Check, BIP-39,
//!   PEM, JWT).
//! - [`engine`]: the matcher: a keyword pass picks the rules whose regexes
//!   run; candidates pass entropy, placeholder and validator checks.
//! - [`finding`]: what is reported — never the secret, only its start and a
//!   fingerprint.
//! - [`walk`]: files and directories in parallel, standard input.
//! - [`git`]: the staged index and full history, each blob once.
//! - [`report`]: text, JSON, JSON Lines, SARIF.
//! - [`baseline`]: accepted findings, suppressed on the next scan.
//!
//! The crate depends on `keyward-core` only, for the key format.

#![forbid(unsafe_code)]

pub mod baseline;
pub mod engine;
pub mod finding;
pub mod git;
pub mod report;
pub mod rules;
pub mod validate;
pub mod walk;

pub use baseline::Baseline;
pub use engine::Scanner;
pub use finding::{Commit, Finding};
pub use rules::{Rule, RuleError, RuleSet, Severity};
pub use walk::{Stats, WalkConfig};
