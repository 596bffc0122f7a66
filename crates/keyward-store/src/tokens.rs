//! Admin tokens. They form a tree by `created_by`, and a revocation takes
//! a token's whole subtree with it.

use async_trait::async_trait;
use keyward_core::{AdminToken, AuditEvent, KeyDigest, TokenId};
use time::OffsetDateTime;

use crate::{Page, Result};

/// Whether a token revocation may take the last usable admin token that can
/// grant every scope with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LastFullToken {
    /// Refuse with [`StoreError::LastFullToken`]: the admin API, so that no
    /// caller locks the install out.
    Keep,
    /// Revoke anyway: a leaked token must stop working whatever it leaves.
    Revoke,
}

/// A token a revocation took with it, for caches to drop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedToken {
    pub id: TokenId,
    pub digest: KeyDigest,
}

/// Admin tokens. Every change is audited; a revocation also writes a
/// change-feed entry per token, in the same transaction.
#[async_trait]
pub trait TokenStore: Send + Sync {
    /// Stores a token. When it names the token that created it, that token
    /// must still be unrevoked (checked in the same transaction, so a
    /// revocation of the creator either sees the new token or refuses it):
    /// `Conflict` otherwise.
    async fn create_token(&self, token: &AdminToken, event: &AuditEvent) -> Result<()>;

    async fn get_token(&self, id: &TokenId) -> Result<Option<AdminToken>>;

    async fn find_token_by_digest(&self, digest: &KeyDigest) -> Result<Option<AdminToken>>;

    async fn list_tokens(&self, page: &Page) -> Result<Vec<AdminToken>>;

    /// Revokes the token unless it already is, with every token it minted,
    /// as [`TokenStore::revoke_token_tree`] does without a guard; returns whether
    /// this call revoked the token itself.
    async fn revoke_token(
        &self,
        id: &TokenId,
        now: OffsetDateTime,
        event: &AuditEvent,
    ) -> Result<bool>;

    /// Revokes the token and every unrevoked token it minted, transitively,
    /// in one transaction: `event` for the token itself, and for each other
    /// one a copy with a fresh id, that token as target and `cascade_from`
    /// (the origin's id) added to its details; a change-feed entry for each.
    /// Returns what it revoked, the token itself first when it was still
    /// unrevoked. `NotFound` when there is no such token; with
    /// [`LastFullToken::Keep`], `LastFullToken` when no usable full-access
    /// token would remain (then nothing changes).
    async fn revoke_token_tree(
        &self,
        id: &TokenId,
        now: OffsetDateTime,
        event: &AuditEvent,
        last: LastFullToken,
    ) -> Result<Vec<RevokedToken>>;

    /// Moves the token's `last_used_at` forward to `at` (never back). Not
    /// audited: it records use, as usage does, and changes no power.
    async fn touch_token(&self, id: &TokenId, at: OffsetDateTime) -> Result<()>;

    /// Whether some token is usable at `now`, unlimited in APIs and
    /// environments, and holds every admin scope: one that can grant all.
    async fn has_full_token(&self, now: OffsetDateTime) -> Result<bool>;

    /// Makes `to` the creator of every unrevoked token `from` created, with
    /// `event`, in one transaction; returns how many moved. Recovery hands
    /// a lost root's tokens to its successor this way, so revoking the old
    /// root does not take every service's token with it. `to` must bound
    /// them as their old creator did (the new root: every scope, no limit,
    /// no expiry).
    async fn adopt_tokens(&self, from: &TokenId, to: &TokenId, event: &AuditEvent) -> Result<u64>;
}
