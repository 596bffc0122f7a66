//! What a request proves beyond its key: a signature made with the key's
//! signing key, inside the key's window and never seen before, and the
//! key owner's second factor for the scopes its API marks critical.
//!
//! The checks run after the stateless rules and before the rate limits, so
//! a request refused for its proof consumes no allowance, and a signature
//! is checked before a one-time code is spent. Signatures are checked by
//! `keyward_crypto::httpsig`, one function per scheme. What is remembered
//! across requests (seen nonces, the last TOTP step accepted) sits behind
//! [`ReplayStore`] and the store's owner factors, so a second node sharing
//! them refuses a replay too.
//!
//! Invariant: an HMAC signing secret and an owner's TOTP secret are held
//! in memory only as opened by the [`Opener`] while the node is unsealed,
//! inside the cached key (or the owner-factor cache), and are zeroized
//! when dropped. Sealing drops every one of them (`Verifier::seal_changed`).
//! Invariant: no refusal's reason carries a value from the request.

use std::sync::Arc;
use std::time::Instant;

use keyward_core::{KeyId, Scope, SigningAlgorithm, VerifyCode};
use keyward_crypto::httpsig::{self, KeyMaterial, Refusal};
use keyward_store::StoreError;
use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::cache::CachedKey;
use crate::Verifier;

pub use keyward_crypto::httpsig::Scheme;

/// A signed request as the client sent it, owned so that a verify needing
/// the store can take it to the server's runtime. No `Debug`: its headers
/// carry the key.
#[derive(Clone)]
pub struct SignedRequest {
    pub scheme: Scheme,
    pub method: String,
    /// `http` or `https`, as the client spoke to the gateway (or as the
    /// provider's server says).
    pub url_scheme: String,
    /// `Host` as the client sent it.
    pub authority: String,
    /// The path as sent, before any normalisation.
    pub path: String,
    /// The query without its `?`; `None` when there was no `?`.
    pub query: Option<String>,
    /// Every header as sent, names in any case.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body, when the caller has it.
    pub body: Option<Vec<u8>>,
    /// The body's SHA-256, when only that is known.
    pub body_sha256: Option<[u8; 32]>,
}

impl SignedRequest {
    fn with_parts<T>(&self, f: impl FnOnce(&httpsig::Request<'_>) -> T) -> T {
        let headers: Vec<(&str, &[u8])> = self
            .headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_slice()))
            .collect();
        f(&httpsig::Request {
            method: &self.method,
            scheme: &self.url_scheme,
            authority: &self.authority,
            path: &self.path,
            query: self.query.as_deref(),
            headers: &headers,
            body: self.body.as_deref(),
            body_sha256: self.body_sha256,
        })
    }
}

/// What a verify's caller brings beside the key.
#[derive(Clone, Default)]
pub struct Proof {
    /// The request the key came with, to check its signature.
    pub request: Option<Arc<SignedRequest>>,
    /// The owner's one-time code, for a critical scope.
    pub otp: Option<Arc<Zeroizing<String>>>,
}

impl Proof {
    /// No signature and no code: what every verify brought before keys
    /// could sign.
    pub const NONE: Proof = Proof {
        request: None,
        otp: None,
    };

    pub fn is_empty(&self) -> bool {
        self.request.is_none() && self.otp.is_none()
    }
}

/// Opens the envelopes verification needs: the server's keyring behind
/// its seal. `Sealed` while the node is sealed.
#[async_trait::async_trait]
pub trait Opener: Send + Sync {
    async fn signing_secret(&self, key: &KeyId, sealed: &[u8]) -> Opened;
    async fn owner_totp(&self, owner: &str, sealed: &[u8]) -> Opened;
}

/// An opened envelope, or why there is none.
pub enum Opened {
    Secret(Zeroizing<Vec<u8>>),
    /// The keyring is sealed on this node.
    Sealed,
    /// The envelope does not open under the keyring: it was altered or
    /// moved from another record.
    Unreadable,
}

/// Where signed requests seen by every node are remembered.
#[async_trait::async_trait]
pub trait ReplayStore: Send + Sync {
    /// `true` the first time `id` is seen for `key` before `expires_at`;
    /// `false` for a replay.
    async fn first_seen(
        &self,
        key: &str,
        id: &[u8; 32],
        expires_at: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError>;

    /// What it is, for logs and the documentation's promise (`database`,
    /// `redis`).
    fn name(&self) -> &'static str;

    /// Forgets requests whose window passed, where the store does not do
    /// it by itself (each usage flush).
    async fn prune(&self, _now: OffsetDateTime) -> Result<(), StoreError> {
        Ok(())
    }
}

/// Why a verify could not be answered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The request needs a secret only the keyring opens (an HMAC signing
    /// secret, an owner's TOTP secret), and this node is sealed.
    #[error(
        "this node is sealed: it cannot check HMAC signatures or one-time codes until unsealed"
    )]
    Sealed,
}

/// A key's signing key as the cache holds it.
pub(crate) struct SigningKey {
    pub algorithm: SigningAlgorithm,
    pub window_ms: u64,
    pub material: Material,
}

pub(crate) enum Material {
    Hmac(Zeroizing<Vec<u8>>),
    Ed25519(ed25519_dalek::VerifyingKey),
    /// The HMAC secret could not be opened when the key was cached (the
    /// node was sealed): a signed verify answers `VerifyError::Sealed`.
    Sealed,
    /// The stored key material is unusable; every signature is refused.
    Unusable,
}

/// What a key's API asks of its requests' proof, as cached with the key.
pub(crate) struct ProofRules {
    pub signing: Option<SigningKey>,
    /// The API's scopes that need a signature, and whether all do.
    pub api: Arc<keyward_core::ApiSigning>,
}

impl ProofRules {
    pub(crate) fn needs_signature(&self, required: &[Scope]) -> bool {
        self.signing.is_some() || self.api.requires(required)
    }
}

/// The outcome of the checks that need no store.
pub(crate) enum Checked {
    /// Proved, with what is left to do: remember the request as seen, and
    /// spend the owner's code.
    Pass {
        seen: Option<Seen>,
        otp: Option<OtpNeed>,
    },
    Refuse(VerifyCode, &'static str),
}

/// A signed request to remember until its window has passed.
pub(crate) struct Seen {
    pub id: [u8; 32],
    pub expires_at_ms: i64,
}

/// A one-time code to check against the owner's secret and spend.
pub(crate) struct OtpNeed;

/// How far ahead of this node's clock a request may say it was signed:
/// the window, up to this. Clocks of well-run clients drift by less.
const MAX_FUTURE_MS: i64 = 30_000;

impl Verifier {
    /// The checks of a request's proof that need neither the store nor an
    /// await: the signature, its window, and whether it was seen on this
    /// node; and whether a code must be spent.
    pub(crate) fn check_proof(
        &self,
        key: &CachedKey,
        scopes: &[Scope],
        proof: &Proof,
        now_ms: i64,
    ) -> Result<Checked, VerifyError> {
        let Some(rules) = key.proof_rules() else {
            return Ok(Checked::Pass {
                seen: None,
                otp: None,
            });
        };
        let mut seen = None;
        let mut signed_by_customer = false;
        if rules.needs_signature(scopes) {
            let Some(signing) = &rules.signing else {
                return Ok(Checked::Refuse(
                    VerifyCode::SignatureRequired,
                    "the API requires signed requests and this key has no signing key",
                ));
            };
            let Some(request) = &proof.request else {
                return Ok(Checked::Refuse(
                    VerifyCode::SignatureRequired,
                    "this key must sign every request",
                ));
            };
            let material = match &signing.material {
                Material::Hmac(secret) => KeyMaterial::Hmac(secret),
                Material::Ed25519(public) => KeyMaterial::Ed25519(public),
                Material::Sealed => return Err(VerifyError::Sealed),
                Material::Unusable => {
                    return Ok(Checked::Refuse(
                        VerifyCode::SignatureInvalid,
                        "this key's signing key is unusable; give it a new one",
                    ))
                }
            };
            let verified = request.with_parts(|parts| match request.scheme {
                Scheme::Rfc9421 => httpsig::verify_rfc9421(parts, key.id(), material),
                Scheme::Binance => httpsig::verify_binance(parts, material),
            });
            let verified = match verified {
                Ok(verified) => verified,
                Err(refusal @ Refusal::Missing(_)) => {
                    return Ok(Checked::Refuse(
                        VerifyCode::SignatureRequired,
                        refusal.reason(),
                    ))
                }
                Err(refusal) => {
                    return Ok(Checked::Refuse(
                        VerifyCode::SignatureInvalid,
                        refusal.reason(),
                    ))
                }
            };
            let window = i64::try_from(
                verified
                    .window_ms
                    .map_or(signing.window_ms, |asked| asked.min(signing.window_ms)),
            )
            .unwrap_or(i64::MAX);
            let ahead = window.min(MAX_FUTURE_MS);
            if now_ms.saturating_sub(verified.created_ms) > window {
                return Ok(Checked::Refuse(
                    VerifyCode::SignatureExpired,
                    "the request was signed longer ago than the key's window allows",
                ));
            }
            if verified.created_ms.saturating_sub(now_ms) > ahead {
                return Ok(Checked::Refuse(
                    VerifyCode::SignatureExpired,
                    "the request is signed in the future; check the client's clock",
                ));
            }
            if verified.expires_ms.is_some_and(|at| at <= now_ms) {
                return Ok(Checked::Refuse(
                    VerifyCode::SignatureExpired,
                    "the signature's expires time has passed",
                ));
            }
            // Remembered for as long as the request would be accepted, so
            // a replay is refused by its nonce until its time refuses it.
            let expires_at_ms = verified.created_ms.saturating_add(window).saturating_add(1);
            // The id already names the key (see `Verified::replay_id`), so
            // one map serves every key.
            if !self.first_seen_here(verified.replay_id, expires_at_ms, now_ms) {
                return Ok(Checked::Refuse(
                    VerifyCode::Replayed,
                    "this request was seen before; sign each request with a new nonce",
                ));
            }
            seen = Some(Seen {
                id: verified.replay_id,
                expires_at_ms,
            });
            signed_by_customer = signing.algorithm == SigningAlgorithm::Ed25519;
        }
        let critical = key.critical_scopes();
        let needs_otp = !critical.is_empty() && scopes.iter().any(|s| critical.contains(s));
        let otp = if needs_otp && !(signed_by_customer && rules.api.ed25519_replaces_otp) {
            if proof.otp.is_none() {
                return Ok(Checked::Refuse(
                    VerifyCode::MfaRequired,
                    "this scope needs the key owner's one-time code",
                ));
            }
            Some(OtpNeed)
        } else {
            None
        };
        Ok(Checked::Pass { seen, otp })
    }

    /// Whether a signed request was not seen on this node inside its
    /// window; records it. Cheap, and it spares the shared store a round
    /// trip for a replay sent twice to the same node.
    fn first_seen_here(&self, id: [u8; 32], expires_at_ms: i64, now_ms: i64) -> bool {
        match self.seen.entry(id) {
            dashmap::mapref::entry::Entry::Occupied(mut entry) => {
                if *entry.get() > now_ms {
                    return false;
                }
                entry.insert(expires_at_ms);
                true
            }
            dashmap::mapref::entry::Entry::Vacant(entry) => {
                entry.insert(expires_at_ms);
                true
            }
        }
    }

    /// Forgets the signed requests seen on this node whose window passed,
    /// `now_ms` being Unix milliseconds. The usage flush does this each
    /// tick, so the memory holds about one window of requests.
    pub fn forget_seen(&self, now_ms: i64) {
        self.seen.retain(|_, expires| *expires > now_ms);
    }

    /// Whether every node's memory must be asked about a signed request: a
    /// shared replay store is configured.
    pub(crate) fn replay_is_shared(&self) -> bool {
        self.replay.get().is_some()
    }

    /// What `check_proof` left to do that needs the store: the shared
    /// record of the request, then the owner's code. `None` when proved.
    pub(crate) async fn finish_proof(
        &self,
        key: &CachedKey,
        proof: &Proof,
        seen: Option<Seen>,
        otp: Option<OtpNeed>,
        now: OffsetDateTime,
    ) -> Result<Option<(VerifyCode, &'static str)>, VerifyError> {
        if let (Some(seen), Some(replay)) = (seen, self.replay.get()) {
            let expires_at = OffsetDateTime::from_unix_timestamp_nanos(
                i128::from(seen.expires_at_ms) * 1_000_000,
            )
            .unwrap_or(now);
            if !replay
                .first_seen(key.id(), &seen.id, expires_at, now)
                .await?
            {
                return Ok(Some((
                    VerifyCode::Replayed,
                    "this request was seen before; sign each request with a new nonce",
                )));
            }
        }
        if otp.is_some() {
            let code = proof.otp.as_deref().map_or("", |c| c.as_str());
            return self.spend_otp(&key.owner, code, now).await;
        }
        Ok(None)
    }

    /// Checks `code` against the owner's TOTP secret and spends its step,
    /// once on every node.
    async fn spend_otp(
        &self,
        owner: &Arc<str>,
        code: &str,
        now: OffsetDateTime,
    ) -> Result<Option<(VerifyCode, &'static str)>, VerifyError> {
        let Some(secret) = self.owner_totp(owner).await? else {
            return Ok(Some((
                VerifyCode::MfaRequired,
                "the key's owner has no second factor enrolled",
            )));
        };
        let Some(step) = secret.check(code, now.unix_timestamp().max(0).unsigned_abs(), None)
        else {
            return Ok(Some((
                VerifyCode::MfaRequired,
                "the one-time code is wrong or outside its time step",
            )));
        };
        let step = i64::try_from(step).unwrap_or(i64::MAX);
        if !self.store.spend_owner_step(owner, step).await? {
            return Ok(Some((
                VerifyCode::MfaRequired,
                "this one-time code was used already; wait for the next one",
            )));
        }
        Ok(None)
    }

    /// The owner's confirmed TOTP secret, opened; from memory when read
    /// within the cache TTL. `Err(Sealed)` when it exists and this node
    /// cannot open it.
    async fn owner_totp(
        &self,
        owner: &Arc<str>,
    ) -> Result<Option<Arc<keyward_crypto::totp::Secret>>, VerifyError> {
        if let Some(entry) = self.owner_factors.get(owner) {
            let (at, secret) = &*entry;
            if at.elapsed() < self.config.cache_ttl {
                return Ok(secret.clone());
            }
        }
        let generation = self
            .owner_generation
            .load(std::sync::atomic::Ordering::Acquire);
        let factor = self.store.get_owner_factor(owner).await?;
        let Some(sealed) = factor.and_then(|f| f.totp_secret) else {
            self.remember_owner_totp(owner, None, generation);
            return Ok(None);
        };
        let opened = match self.opener.get() {
            Some(opener) => opener.owner_totp(owner, &sealed).await,
            None => Opened::Sealed,
        };
        match opened {
            Opened::Secret(bytes) => {
                let secret = Arc::new(keyward_crypto::totp::Secret::from_bytes(bytes.to_vec()));
                self.remember_owner_totp(owner, Some(Arc::clone(&secret)), generation);
                Ok(Some(secret))
            }
            Opened::Sealed => Err(VerifyError::Sealed),
            Opened::Unreadable => {
                tracing::error!("an owner's TOTP secret does not open under the keyring");
                Ok(None)
            }
        }
    }

    /// Keeps what was read unless an owner changed since `generation`.
    fn remember_owner_totp(
        &self,
        owner: &Arc<str>,
        secret: Option<Arc<keyward_crypto::totp::Secret>>,
        generation: u64,
    ) {
        if self
            .owner_generation
            .load(std::sync::atomic::Ordering::Acquire)
            == generation
        {
            self.owner_factors
                .insert(Arc::clone(owner), (Instant::now(), secret));
        }
    }

    /// Tells the verifier where other nodes remember signed requests.
    /// Without one, a replay is refused only at the node that saw the
    /// request first (enough for one node).
    pub fn set_replay_store(&self, replay: Arc<dyn ReplayStore>) {
        let name = replay.name();
        if self.replay.set(replay).is_err() {
            tracing::warn!(store = name, "the replay store was set already");
        }
    }

    /// Tells the verifier how to open signing secrets and TOTP secrets.
    pub fn set_opener(&self, opener: Arc<dyn Opener>) {
        let _ = self.opener.set(opener);
    }

    /// Drops every opened secret, and every key cached while they could
    /// not be opened, when the node seals or unseals: sealed, nothing
    /// opened stays in memory; unsealed, keys are read and opened anew.
    pub fn seal_changed(&self) {
        self.cache.retain(|_, key| !key.holds_sealed_material());
        self.owner_factors.clear();
    }

    /// Opens a key's HMAC secret, for the cache.
    pub(crate) async fn open_signing_secret(&self, id: &KeyId, sealed: &[u8]) -> Opened {
        match self.opener.get() {
            None => Opened::Sealed,
            Some(opener) => opener.signing_secret(id, sealed).await,
        }
    }

    /// The signing key of a key record as the cache keeps it; `opened` is
    /// its HMAC secret as [`Verifier::open_signing_secret`] opened it.
    pub(crate) fn signing_key(
        &self,
        id: &KeyId,
        signing: &keyward_core::KeySigning,
        opened: Option<Opened>,
    ) -> SigningKey {
        let material = match signing.algorithm {
            SigningAlgorithm::Ed25519 => signing
                .public_key
                .and_then(|k| ed25519_dalek::VerifyingKey::from_bytes(&k).ok())
                .map_or(Material::Unusable, Material::Ed25519),
            SigningAlgorithm::HmacSha256 => match opened {
                None => Material::Unusable,
                Some(Opened::Secret(secret)) => Material::Hmac(secret),
                Some(Opened::Sealed) => Material::Sealed,
                Some(Opened::Unreadable) => {
                    tracing::error!(key = %id, "a signing secret does not open under the keyring");
                    Material::Unusable
                }
            },
        };
        SigningKey {
            algorithm: signing.algorithm,
            window_ms: signing.window_ms,
            material,
        }
    }
}

/// The database as the replay store: every node sharing it refuses a
/// request any of them saw. One INSERT per signed request.
pub struct DatabaseReplay(pub Arc<dyn keyward_store::Store>);

#[async_trait::async_trait]
impl ReplayStore for DatabaseReplay {
    async fn first_seen(
        &self,
        key: &str,
        id: &[u8; 32],
        expires_at: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        self.0.remember_nonce(key, id, expires_at, now).await
    }

    fn name(&self) -> &'static str {
        "database"
    }

    async fn prune(&self, now: OffsetDateTime) -> Result<(), StoreError> {
        self.0.prune_nonces(now).await.map(drop)
    }
}
