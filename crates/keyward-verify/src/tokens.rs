//! Admin tokens by digest, for the admin API's every request.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use keyward_core::{AdminToken, KeyDigest};
use keyward_store::{Store, StoreError};

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
    pub fn get(&self, digest: &KeyDigest) -> Option<Option<Arc<AdminToken>>> {
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
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Caches what a lookup found, unless a token changed since the lookup
    /// read `generation`: what it read may predate the change, and the
    /// change's own drop may have come before this insert. A change bumps
    /// the generation before dropping, and the fence orders this insert
    /// before the reread; so either the reread sees the bump or the
    /// change's drop comes after the insert.
    pub fn insert(&self, digest: &KeyDigest, token: Option<Arc<AdminToken>>, generation: u64) {
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

impl TokenCache {
    /// The token with `digest`, from this cache or else the store (and then
    /// cached, found or not). The stored digest is compared in constant
    /// time; whether the token is still usable is the caller's check.
    pub async fn lookup(
        &self,
        store: &dyn Store,
        digest: &KeyDigest,
    ) -> Result<Option<Arc<AdminToken>>, StoreError> {
        if let Some(found) = self.get(digest) {
            return Ok(found);
        }
        let generation = self.generation();
        let found = store
            .find_token_by_digest(digest)
            .await?
            .filter(|t| t.digest.ct_eq(digest))
            .map(Arc::new);
        self.insert(digest, found.clone(), generation);
        Ok(found)
    }
}
