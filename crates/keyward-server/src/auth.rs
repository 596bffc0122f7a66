//! Who is calling: the admin token in `Authorization: Bearer`, checked on
//! every admin request.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use std::time::{Duration, Instant};

use keyward_core::{AdminScope, AdminToken, ApiId, Environment, KeyDigest, ParsedKey};
use time::OffsetDateTime;

use crate::error::ApiError;
use crate::AppState;

/// Admin tokens by digest, known or known to be absent, for a TTL.
/// Revocation through this node drops the entry at once; other nodes drop it
/// when the change feed brings the revocation.
pub struct TokenCache {
    entries: quick_cache::sync::Cache<[u8; 32], Arc<Entry>>,
    ttl: Duration,
    /// Tells this cache's entries in the per-thread memo from another's.
    id: u64,
    /// Bumped by every change, so memos from before it are not used.
    generation: AtomicU64,
}

/// Numbers token caches, for the per-thread memo.
static NEXT_CACHE_ID: AtomicU64 = AtomicU64::new(1);

/// The last token a thread authenticated. A service verifying keys sends
/// the same token with every call; this answers it without touching the
/// shared cache, and from a copy of the token whose reference count only
/// this thread changes, so the cores do not contend for one cache line.
struct Memo {
    cache: u64,
    generation: u64,
    digest: [u8; 32],
    looked_up: Instant,
    token: Arc<AdminToken>,
}

thread_local! {
    static LAST_TOKEN: RefCell<Option<Memo>> = const { RefCell::new(None) };
}

/// When a token was looked up, and what was found.
type Entry = (Instant, Option<Arc<AdminToken>>);

impl TokenCache {
    /// Tokens in use are few; this bounds the memory a flood of forged
    /// tokens can take.
    const CAPACITY: usize = 10_000;

    pub fn new(ttl: Duration) -> Self {
        TokenCache {
            entries: quick_cache::sync::Cache::new(Self::CAPACITY),
            ttl,
            id: NEXT_CACHE_ID.fetch_add(1, Ordering::Relaxed),
            generation: AtomicU64::new(0),
        }
    }

    /// `Some(token or None)` when the answer is cached and fresh.
    fn get(&self, digest: &KeyDigest) -> Option<Option<Arc<AdminToken>>> {
        let generation = self.generation.load(Ordering::Acquire);
        let memo = LAST_TOKEN.with_borrow(|memo| {
            memo.as_ref()
                .filter(|m| {
                    m.cache == self.id
                        && m.generation == generation
                        && m.digest == *digest.as_bytes()
                        && m.looked_up.elapsed() < self.ttl
                })
                .map(|m| Arc::clone(&m.token))
        });
        if memo.is_some() {
            return Some(memo);
        }
        let entry = self.entries.get(digest.as_bytes())?;
        if entry.0.elapsed() >= self.ttl {
            return None;
        }
        if let Some(token) = &entry.1 {
            LAST_TOKEN.with_borrow_mut(|memo| {
                *memo = Some(Memo {
                    cache: self.id,
                    generation,
                    digest: *digest.as_bytes(),
                    looked_up: entry.0,
                    token: Arc::new(AdminToken::clone(token)),
                });
            });
        }
        Some(entry.1.clone())
    }

    /// The generation to read before a lookup in the store, for
    /// [`TokenCache::insert`].
    fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Caches what a lookup found, unless a token changed since the lookup
    /// read `generation`: what it read may predate the change, and the
    /// change's own drop may have come before this insert. A change bumps
    /// the generation before dropping, and the fence orders this insert
    /// before the reread; so either the reread sees the bump or the
    /// change's drop comes after the insert.
    fn insert(&self, digest: &KeyDigest, token: Option<Arc<AdminToken>>, generation: u64) {
        self.entries
            .insert(*digest.as_bytes(), Arc::new((Instant::now(), token)));
        std::sync::atomic::fence(Ordering::SeqCst);
        if self.generation.load(Ordering::SeqCst) != generation {
            self.entries.remove(digest.as_bytes());
        }
    }

    /// Drops a token after it changed (revoked). The generation moves
    /// before the drop, for lookups in flight, and after it, for the
    /// per-thread memos of entries read in between.
    pub fn forget(&self, digest: &KeyDigest) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.entries.remove(digest.as_bytes());
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Drops every token, for when this node may have missed changes.
    pub fn clear(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.entries.clear();
        self.generation.fetch_add(1, Ordering::SeqCst);
    }
}

/// The authenticated admin token of a request.
pub struct Caller {
    pub token: Arc<AdminToken>,
}

impl Caller {
    /// Refuses the request unless the token carries `scope`.
    pub fn require(&self, scope: AdminScope) -> Result<(), ApiError> {
        if self.token.has_scope(scope) {
            Ok(())
        } else {
            Err(ApiError::MissingScope(scope))
        }
    }

    /// Whether records of `api` in `environment` are within this token's reach.
    pub fn can_access(&self, api: &ApiId, environment: Environment) -> bool {
        self.token.can_access(api, environment)
    }

    /// Whether the token reaches `environment` (secrets mounts are bound to
    /// one environment and to no API).
    pub fn reaches_environment(&self, environment: Environment) -> bool {
        self.token
            .environments
            .as_ref()
            .is_none_or(|envs| envs.contains(&environment))
    }

    /// Whether the token is limited to some APIs or environments.
    pub fn is_restricted(&self) -> bool {
        self.token.api_ids.is_some() || self.token.environments.is_some()
    }

    pub fn id(&self) -> &keyward_core::TokenId {
        &self.token.id
    }
}

impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        authenticate(
            state,
            parts.headers.get(AUTHORIZATION).map(|v| v.as_bytes()),
            parts.headers.get("x-vault-token").map(|v| v.as_bytes()),
        )
        .await
    }
}

/// The caller of a request with these `Authorization` and `X-Vault-Token`
/// header values (the first of each): `Authorization: Bearer`, or Vault's
/// header so that Vault clients work unchanged.
pub(crate) async fn authenticate(
    state: &AppState,
    authorization: Option<&[u8]>,
    vault_token: Option<&[u8]>,
) -> Result<Caller, ApiError> {
    let presented = match authorization {
        Some(value) => visible_ascii(value)
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or(ApiError::Unauthenticated)?,
        None => vault_token
            .and_then(visible_ascii)
            .ok_or(ApiError::Unauthenticated)?,
    }
    .trim();
    // The format check runs before any storage access: garbage costs a
    // parse, not a query.
    let parsed = ParsedKey::parse(presented).map_err(|_| ApiError::Unauthenticated)?;
    if parsed.prefix() != keyward_core::key::ADMIN_PREFIX {
        return Err(ApiError::Unauthenticated);
    }
    let digest = parsed.digest();
    let token = match state.tokens.get(&digest) {
        Some(found) => found,
        None => {
            let generation = state.tokens.generation();
            let found = state
                .store
                .find_token_by_digest(&digest)
                .await?
                .filter(|t| t.digest.ct_eq(&digest))
                .map(Arc::new);
            state.tokens.insert(&digest, found.clone(), generation);
            found
        }
    };
    let token = token
        .filter(|t| t.is_usable(OffsetDateTime::now_utc()))
        .ok_or(ApiError::Unauthenticated)?;
    Ok(Caller { token })
}

/// A header value as text when it is all visible ASCII (or tabs), as
/// `HeaderValue::to_str` reads it.
fn visible_ascii(value: &[u8]) -> Option<&str> {
    value
        .iter()
        .all(|&b| (b' '..0x7f).contains(&b) || b == b'\t')
        .then(|| std::str::from_utf8(value).ok())
        .flatten()
}
