//! Every operation a caller can ask of Keyward, as plain async functions
//! that take an [`Actor`] and return typed results. No HTTP and no wire
//! types here: the server's handlers and the CLI are transports over it.
//!
//! - [`Actor`]: who is asking, and the checks on what it may do.
//! - [`Error`]: every way an operation fails.
//! - [`Service`]: the operations, one module per area: [`apis`],
//!   [`audit_log`], [`keys`], [`leaks`], [`secrets`], [`sys`], [`tokens`],
//!   [`transit`] and [`users`] (people, sign-in, step-up, workspaces and
//!   roles).
//! - [`bootstrap`]: what runs without an admin token — the first start's
//!   root token and default mount, and the operator's root-token recovery.
//! - [`audit`]: the audit event of an operation.
//! - [`events`]: every committed change, for followers to act on.
//! - [`seal`]: the master key's seal and, when unsealed, the keyring.
//! - [`records`]: what each sealed record is bound to.
//!
//! Invariant: a mutation here runs its steps in one order — access check,
//! audited write (its audit events and change-feed rows in the same
//! transaction), the write's events announced as it commits, then this
//! node's cache invalidation — before it returns.

#![forbid(unsafe_code)]

mod actor;
pub mod apis;
pub mod audit;
pub mod audit_log;
pub mod bootstrap;
mod error;
pub mod events;
pub mod keys;
pub mod leaks;
mod reach;
pub mod records;
pub mod seal;
pub mod secrets;
pub mod signing;
pub mod sys;
pub mod tokens;
pub mod transit;
pub mod users;

pub use actor::Actor;
pub use audit::{audit_event, now};
pub use error::Error;
/// Named in the operations' signatures.
pub use keyward_store::{Page, StoreError};

use std::sync::Arc;

use keyward_store::Store;
use keyward_verify::{TokenCache, Verifier};

/// Every operation, over the store and this node's caches.
pub struct Service {
    store: Arc<dyn Store>,
    verifier: Arc<Verifier>,
    tokens: Arc<TokenCache>,
    barrier: Arc<seal::Barrier>,
    auth: users::AuthSettings,
    attempts: users::Attempts,
    /// When this node last wrote each token's `last_used_at`.
    token_uses: dashmap::DashMap<keyward_core::TokenId, std::time::Instant>,
    /// This node's last check of the audit chain.
    chain_checks: std::sync::Mutex<Option<audit_log::ChainCheckResult>>,
    /// How this node makes audit checkpoints.
    checkpointing: audit_log::CheckpointSettings,
    /// Held while a checkpoint is appended to the witness file.
    witness_lock: tokio::sync::Mutex<()>,
}

impl Service {
    pub fn new(
        store: Arc<dyn Store>,
        verifier: Arc<Verifier>,
        tokens: Arc<TokenCache>,
        barrier: Arc<seal::Barrier>,
    ) -> Self {
        verifier.set_opener(Arc::new(signing::KeyringOpener(Arc::clone(&barrier))));
        Service {
            store,
            verifier,
            tokens,
            barrier,
            auth: users::AuthSettings::default(),
            attempts: users::Attempts::default(),
            token_uses: dashmap::DashMap::new(),
            chain_checks: std::sync::Mutex::new(None),
            checkpointing: audit_log::CheckpointSettings::default(),
            witness_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// Notes that `actor` was used now. Its `last_used_at` is written at
    /// most once an hour per node, in the background: the access review
    /// shows it, and no request waits for it.
    pub fn note_use(&self, actor: &Actor, now: time::OffsetDateTime) {
        const RESOLUTION: std::time::Duration = std::time::Duration::from_secs(3600);
        // The stored use is recent enough: nothing to look up.
        if actor
            .token
            .last_used_at
            .is_some_and(|at| now - at < RESOLUTION)
        {
            return;
        }
        let id = actor.id();
        if self
            .token_uses
            .get(id)
            .is_some_and(|at| at.elapsed() < RESOLUTION)
        {
            return;
        }
        self.token_uses
            .insert(id.clone(), std::time::Instant::now());
        let store = std::sync::Arc::clone(&self.store);
        let id = id.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(e) = store.touch_token(&id, audit::to_millis(now)).await {
                    tracing::warn!(token = %id, error = %e, "cannot record a token's last use");
                }
            });
        }
    }

    /// How sign-in and step-up behave ([`users::AuthSettings`]).
    pub fn with_auth(mut self, auth: users::AuthSettings) -> Self {
        self.auth = auth;
        self
    }

    pub fn auth(&self) -> &users::AuthSettings {
        &self.auth
    }

    /// The admin token cache, for authenticating callers.
    pub fn tokens(&self) -> &TokenCache {
        &self.tokens
    }

    /// The seal, and the keyring when unsealed.
    pub fn barrier(&self) -> &Arc<seal::Barrier> {
        &self.barrier
    }
}
