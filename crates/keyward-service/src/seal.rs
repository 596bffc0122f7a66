//! The seal: whether this node holds the master key and the keyring, and
//! how it comes to hold them.
//!
//! - `file`: the master key is read from (or created in) `master.key` in the
//!   data directory at start; the node is unsealed from the first request.
//! - `shamir`: the node starts sealed. An operator initialises the seal once
//!   (`POST /v1/sys/init`, shares printed once), and after every start
//!   operators give shares one at a time (`POST /v1/sys/unseal`) until the
//!   threshold is reached.
//! - `pkcs11`: the master key is stored wrapped by a key inside an HSM; the
//!   node asks the HSM to unwrap it at start.
//!
//! Sealed, the node still verifies API keys — verification needs only key
//! digests — but anything that needs the keyring answers `SEALED`. Each
//! node of a cluster is unsealed on its own, as with Vault.

use keyward_core::AuditAction;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use keyward_crypto::pkcs11::{Hsm, HsmConfig};

use crate::Actor;
use keyward_crypto::shamir::{self, Share, ShareError, ShareSet, ShareSetRecord, Unsealer};
use keyward_crypto::{file_seal, CryptoError, Keyring, MasterKey, RecordIdentity, SecretKey};
use keyward_store::{
    EnvelopeColumn, EnvelopeCursor, KeyringEntry, SealKind, SealRecord, Store, StoreError,
    UseTarget,
};
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::audit::{audit_event, now};

/// The `[seal]` section of the settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SealSettings {
    /// `file` (the default), `shamir` or `pkcs11`.
    #[serde(rename = "type")]
    pub kind: SealType,
    /// `pkcs11`: the vendor's PKCS#11 module.
    pub pkcs11_module: Option<PathBuf>,
    /// `pkcs11`: the label of the token to use.
    pub pkcs11_token_label: Option<String>,
    /// `pkcs11`: the label of the wrapping key inside the token (created on
    /// first use).
    pub pkcs11_key_label: String,
    /// `pkcs11`: the token's user PIN; better given as `KEYWARD_HSM_PIN`
    /// than written in a file.
    pub pkcs11_pin: Option<Pin>,
    /// Encryptions after which a keyring or transit key version is rotated
    /// automatically: 2^30 by default, a quarter of the 2^32 messages
    /// AES-GCM with random nonces allows under one key.
    pub rotate_after_uses: u64,
}

impl Default for SealSettings {
    fn default() -> Self {
        SealSettings {
            kind: SealType::File,
            pkcs11_module: None,
            pkcs11_token_label: None,
            pkcs11_key_label: "keyward-master-wrap".to_owned(),
            pkcs11_pin: None,
            rotate_after_uses: keyward_crypto::envelope::ROTATE_AFTER_WRAPS,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SealType {
    File,
    Shamir,
    Pkcs11,
}

impl SealType {
    fn kind(self) -> SealKind {
        match self {
            SealType::File => SealKind::File,
            SealType::Shamir => SealKind::Shamir,
            SealType::Pkcs11 => SealKind::Pkcs11,
        }
    }
}

/// An HSM PIN: printed as `***`, wiped on drop.
#[derive(Clone)]
pub struct Pin(Zeroizing<String>);

impl<'de> Deserialize<'de> for Pin {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Pin::new)
    }
}

impl Pin {
    pub fn new(pin: String) -> Self {
        Pin(Zeroizing::new(pin))
    }
}

impl std::fmt::Debug for Pin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// Why a seal operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("the server is sealed")]
    Sealed,
    #[error("the seal is not initialised: run `keyward operator init`")]
    NotInitialized,
    #[error("the seal is already initialised")]
    AlreadyInitialized,
    #[error("the server is already unsealed")]
    AlreadyUnsealed,
    #[error("this operation needs the shamir seal; this server's seal is {0}")]
    WrongSeal(&'static str),
    #[error("{0}")]
    Share(#[from] ShareError),
    #[error("{0}")]
    Invalid(&'static str),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

/// A failure to open a stored envelope: `TAMPERED` when it fails
/// authentication, the seal's answer otherwise.
pub(crate) fn sealed_or_tampered(e: SealError) -> crate::Error {
    match e {
        SealError::Crypto(e) => e.into(),
        other => other.into(),
    }
}

/// What a rewrap did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RewrapReport {
    /// Data keys moved to the newest keyring version.
    pub moved: u64,
    /// Already under it.
    pub current: u64,
    /// Could not be opened (logged).
    pub failed: u64,
}

/// What `GET /v1/sys/seal-status` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealStatus {
    pub kind: SealKind,
    pub initialized: bool,
    pub sealed: bool,
    /// `shamir`: shares needed and issued, and shares given so far.
    pub threshold: u8,
    pub shares: u8,
    pub progress: u8,
    /// The keyring's newest version, when unsealed.
    pub keyring_version: Option<u32>,
}

enum State {
    /// A `shamir` seal nobody has initialised.
    Uninitialized,
    Sealed(Unsealer),
    Unsealed(Unsealed),
}

struct Unsealed {
    /// Kept while unsealed: rotation wraps new keyring keys with it.
    master: MasterKey,
    keyring: Arc<Keyring>,
}

/// This node's seal and, when unsealed, its keyring.
pub struct Barrier {
    store: Arc<dyn Store>,
    kind: SealKind,
    /// Issued share count, for the status (`shamir`).
    shares: RwLock<(u8, u8)>,
    state: RwLock<State>,
    /// Transit keys opened with the keyring; emptied when sealed.
    transit: crate::transit::TransitCache,
    /// Uses this node reserved in the store and has not spent, per key.
    allowances: std::sync::Mutex<std::collections::HashMap<UseTarget, u64>>,
    rotate_after_uses: u64,
    /// Set while an automatic keyring rotation runs, so one runs at a time.
    rotating: std::sync::atomic::AtomicBool,
    /// `pkcs11`: how to reach the HSM again, for a rekey.
    hsm: Option<SealSettings>,
}

impl Barrier {
    /// Opens the seal the settings name: unseals `file` and `pkcs11` seals
    /// (initialising them on the store's first start) and leaves `shamir`
    /// sealed. A store sealed with another kind than the settings name is
    /// refused: silently switching seals would strand the data.
    pub async fn open(
        settings: &SealSettings,
        data_dir: &Path,
        store: Arc<dyn Store>,
    ) -> Result<Barrier, SealError> {
        let kind = settings.kind.kind();
        let stored = store.seal().await?;
        if let Some(stored) = &stored {
            if stored.kind != kind {
                return Err(SealError::WrongSeal(stored.kind.as_str()));
            }
        }
        let barrier = Barrier {
            store,
            kind,
            shares: RwLock::new((0, 0)),
            state: RwLock::new(State::Uninitialized),
            transit: Default::default(),
            allowances: Default::default(),
            rotate_after_uses: settings.rotate_after_uses.max(1),
            rotating: std::sync::atomic::AtomicBool::new(false),
            hsm: (kind == SealKind::Pkcs11).then(|| settings.clone()),
        };
        match kind {
            SealKind::File => {
                let path = data_dir.join("master.key");
                tracing::warn!(
                    path = %path.display(),
                    "seal: file — the master key is stored beside the data; this protects \
                     against theft of the database alone, not of this machine's disk"
                );
                if stored.is_none() {
                    std::fs::create_dir_all(data_dir).map_err(|e| {
                        CryptoError::Storage(format!("{}: {e}", data_dir.display()))
                    })?;
                    let (master, _) = file_seal::load_or_create(&path)?;
                    barrier.unseal_with(master, true).await?;
                } else {
                    // A node without the key that sealed the store (another
                    // machine, a lost file) starts sealed: it still verifies
                    // API keys, and nothing is overwritten.
                    barrier.become_sealed(&SealRecord {
                        kind: SealKind::File,
                        ..stored.clone().ok_or(SealError::NotInitialized)?
                    })?;
                    let opened = match file_seal::load(&path)? {
                        Some(master) => barrier.unseal_with(master, false).await,
                        None => Err(SealError::Invalid("master.key is missing")),
                    };
                    if let Err(e) = opened {
                        tracing::error!(
                            error = %e,
                            path = %path.display(),
                            "cannot unseal: this store was sealed with another master.key; \
                             copy the key of the node that initialised it. Serving sealed: \
                             API keys verify, the keyring is unavailable"
                        );
                    }
                }
            }
            SealKind::Shamir => {
                if let Some(stored) = stored {
                    barrier.become_sealed(&stored)?;
                }
            }
            SealKind::Pkcs11 => {
                let config = hsm_config(settings)?;
                let stored_wrapped = match &stored {
                    Some(stored) => Some(stored.wrapped_master.clone().ok_or(
                        SealError::Invalid("the stored pkcs11 seal has no wrapped master key"),
                    )?),
                    None => None,
                };
                // One blocking call does all the HSM work: a PKCS#11 session
                // belongs to one thread at a time.
                let (master, wrapped) = blocking(move || {
                    let hsm = Hsm::open(&config, true)?;
                    let result = match stored_wrapped {
                        Some(wrapped) => hsm.unwrap(&wrapped).map(|master| (master, None)),
                        None => MasterKey::generate().and_then(|master| {
                            let wrapped = hsm.wrap(&master)?;
                            Ok((master, Some(wrapped)))
                        }),
                    };
                    hsm.close();
                    result
                })
                .await?;
                if let Some(wrapped) = wrapped {
                    barrier
                        .initialise_store(&master, None, Some(wrapped), None)
                        .await
                        .map_err(|e| match e {
                            SealError::Store(StoreError::Conflict(_)) => SealError::Invalid(
                                "another node initialised the seal at the same time; restart",
                            ),
                            e => e,
                        })?;
                }
                tracing::info!("seal: pkcs11 — the master key was unwrapped by the HSM");
                barrier.unseal_with(master, false).await?;
            }
        }
        Ok(barrier)
    }

    pub fn kind(&self) -> SealKind {
        self.kind
    }

    pub fn status(&self) -> SealStatus {
        let (shares, threshold) = *self.shares.read().unwrap_or_else(|e| e.into_inner());
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        let (initialized, sealed, progress, keyring_version) = match &*state {
            State::Uninitialized => (false, true, 0, None),
            State::Sealed(unsealer) => (true, true, unsealer.progress().given, None),
            State::Unsealed(u) => (true, false, 0, Some(u.keyring.active_version())),
        };
        SealStatus {
            kind: self.kind,
            initialized,
            sealed,
            threshold,
            shares,
            progress,
            keyring_version,
        }
    }

    /// Transit keys opened with the keyring.
    pub fn transit_cache(&self) -> &crate::transit::TransitCache {
        &self.transit
    }

    /// The keyring, or `Sealed`.
    pub fn keyring(&self) -> Result<Arc<Keyring>, SealError> {
        match &*self.state.read().unwrap_or_else(|e| e.into_inner()) {
            State::Unsealed(u) => Ok(Arc::clone(&u.keyring)),
            State::Uninitialized => Err(SealError::NotInitialized),
            State::Sealed(_) => Err(SealError::Sealed),
        }
    }

    /// Initialises a `shamir` seal: a new master key, split into `shares`
    /// of which `threshold` unseal, and the keyring's first version. The
    /// shares are returned once and stored nowhere. The node stays sealed.
    pub async fn init(
        &self,
        shares: u8,
        threshold: u8,
        actor: &Actor,
    ) -> Result<ShareSet, SealError> {
        if self.kind != SealKind::Shamir {
            return Err(SealError::WrongSeal(self.kind.as_str()));
        }
        if !matches!(
            *self.state.read().unwrap_or_else(|e| e.into_inner()),
            State::Uninitialized
        ) {
            return Err(SealError::AlreadyInitialized);
        }
        let master = MasterKey::generate()?;
        let set = shamir::split(&master, shares, threshold)?;
        let record = self
            .initialise_store(&master, Some(&set), None, Some(actor))
            .await;
        let record = match record {
            Err(SealError::Store(StoreError::Conflict(_))) => {
                return Err(SealError::AlreadyInitialized)
            }
            other => other?,
        };
        self.become_sealed(&record)?;
        Ok(set)
    }

    /// Takes one share. Returns the status; the node is unsealed when the
    /// threshold is reached. A refused share leaves the progress as it was.
    pub async fn unseal(&self, text: &str) -> Result<SealStatus, SealError> {
        if self.kind != SealKind::Shamir {
            return Err(SealError::WrongSeal(self.kind.as_str()));
        }
        let share = Share::parse(text)?;
        let master = {
            let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
            match &mut *state {
                State::Uninitialized => return Err(SealError::NotInitialized),
                State::Unsealed(_) => return Err(SealError::AlreadyUnsealed),
                State::Sealed(unsealer) => unsealer.offer(share)?.1,
            }
        };
        if let Some(master) = master {
            self.unseal_with(master, false).await?;
        }
        Ok(self.status())
    }

    /// Forgets the shares given so far.
    pub fn reset_unseal(&self) {
        if let State::Sealed(unsealer) = &mut *self.state.write().unwrap_or_else(|e| e.into_inner())
        {
            unsealer.reset();
        }
    }

    /// Drops the master key and keyring from memory. A `shamir` node then
    /// needs its shares again; `file` and `pkcs11` nodes unseal at their
    /// next start.
    pub async fn seal(&self) -> Result<(), SealError> {
        let record = self.store.seal().await?.ok_or(SealError::NotInitialized)?;
        self.become_sealed(&record)
    }

    /// Adds a keyring version wrapped by the master key; new envelopes use
    /// it. Returns the new version.
    pub async fn rotate(&self, event: &keyward_core::AuditEvent) -> Result<u32, SealError> {
        let (version, wrapped) = {
            let state = self.state.read().unwrap_or_else(|e| e.into_inner());
            let State::Unsealed(u) = &*state else {
                return Err(SealError::Sealed);
            };
            let version = u.keyring.active_version() + 1;
            let key = SecretKey::generate()?;
            (version, u.master.wrap_keyring_key(version, &key)?)
        };
        let entry = KeyringEntry {
            version,
            wrapped_key: wrapped,
            created_at: now(),
        };
        self.store.add_keyring_key(&entry, event).await?;
        self.reload_keyring().await?;
        Ok(version)
    }

    /// Takes `n` encryptions of `target` from this node's allowance,
    /// reserving a block in the store when it runs out. Returns whether the
    /// key has reached `rotate_after_uses` and should be rotated.
    pub async fn spend(&self, target: UseTarget, n: u64) -> Result<bool, SealError> {
        {
            let mut allowances = self.allowances.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(left) = allowances.get_mut(&target) {
                if *left >= n {
                    *left -= n;
                    return Ok(false);
                }
            }
        }
        // One store write per block: cheap, and a crash loses at most one
        // block, counting high rather than low.
        let block = (self.rotate_after_uses / 8).clamp(1, 4096);
        let reserve = n.max(block);
        let total = self.store.reserve_uses(&target, reserve).await?;
        let mut allowances = self.allowances.lock().unwrap_or_else(|e| e.into_inner());
        *allowances.entry(target).or_insert(0) += reserve - n;
        Ok(total >= self.rotate_after_uses)
    }

    /// Counts one wrap under the keyring's active version, and starts a
    /// rotation in the background when the version has made enough.
    pub async fn spend_keyring(self: &Arc<Self>, n: u64) -> Result<(), SealError> {
        let version = self.keyring()?.active_version();
        if self.spend(UseTarget::Keyring { version }, n).await?
            && !self
                .rotating
                .swap(true, std::sync::atomic::Ordering::AcqRel)
        {
            let barrier = Arc::clone(self);
            tokio::spawn(async move {
                let result = async {
                    let event = audit_event(
                        None,
                        AuditAction::KeyringRotate,
                        "keyring",
                        serde_json::json!({ "reason": "usage limit", "version": version }),
                        now(),
                    )
                    .map_err(|_| SealError::Crypto(CryptoError::Random))?;
                    match barrier.rotate(&event).await {
                        // Another node rotated first.
                        Err(SealError::Store(StoreError::Conflict(_))) => {
                            barrier.reload_keyring().await.map(|()| 0)
                        }
                        other => other,
                    }
                }
                .await;
                match result {
                    Ok(v) => tracing::warn!(
                        from = version,
                        to = v,
                        "keyring rotated: its version reached the usage limit"
                    ),
                    Err(e) => tracing::error!(error = %e, "automatic keyring rotation failed"),
                }
                barrier
                    .rotating
                    .store(false, std::sync::atomic::Ordering::Release);
            });
        }
        Ok(())
    }

    /// Replaces the master key of a `shamir` seal and issues new shares.
    /// Needs the node unsealed and `threshold` of the current shares, so a
    /// token alone cannot take the seal from its share holders. Every
    /// keyring version is rewrapped under the new master key in the same
    /// transaction that stores the new share digests.
    pub async fn rekey(
        &self,
        current: &[String],
        shares: u8,
        threshold: u8,
        actor: &Actor,
    ) -> Result<ShareSet, SealError> {
        if self.kind != SealKind::Shamir {
            return Err(SealError::WrongSeal(self.kind.as_str()));
        }
        let record = self.store.seal().await?.ok_or(SealError::NotInitialized)?;
        let (Some(set), Some(old_threshold)) = (record.share_set, record.threshold) else {
            return Err(SealError::Invalid(
                "the stored shamir seal lacks its share set",
            ));
        };
        let mut unsealer = Unsealer::new(ShareSetRecord {
            set,
            threshold: old_threshold,
            digests: record.share_digests.clone(),
        });
        let mut old_master = None;
        for text in current {
            if let (_, Some(master)) = unsealer.offer(Share::parse(text)?)? {
                old_master = Some(master);
                break;
            }
        }
        let old_master = old_master.ok_or(SealError::Invalid(
            "a rekey needs as many current shares as the threshold",
        ))?;
        let new_master = MasterKey::generate()?;
        let new_set = shamir::split(&new_master, shares, threshold)?;
        let entries = self.store.keyring().await?;
        let mut rewrapped = Vec::with_capacity(entries.len());
        for entry in &entries {
            let key = old_master.unwrap_keyring_key(entry.version, &entry.wrapped_key)?;
            rewrapped.push(KeyringEntry {
                wrapped_key: new_master.wrap_keyring_key(entry.version, &key)?,
                ..entry.clone()
            });
        }
        {
            let state = self.state.read().unwrap_or_else(|e| e.into_inner());
            match &*state {
                State::Unsealed(u) if u.master.secret() == old_master.secret() => {}
                State::Unsealed(_) => {
                    return Err(SealError::Invalid(
                        "the shares do not match this node's master key",
                    ))
                }
                _ => return Err(SealError::Sealed),
            }
        }
        let at = now();
        let new_record = SealRecord {
            share_set: Some(new_set.set),
            threshold: Some(threshold),
            share_digests: new_set.digests(),
            updated_at: at,
            ..record
        };
        let event = audit_event(
            Some(actor),
            AuditAction::SealRekey,
            "seal",
            serde_json::json!({ "shares": shares, "threshold": threshold }),
            at,
        )
        .map_err(|_| SealError::Crypto(CryptoError::Random))?;
        self.store
            .rekey_seal(&new_record, &rewrapped, &event)
            .await?;
        *self.shares.write().unwrap_or_else(|e| e.into_inner()) = (shares, threshold);
        if let State::Unsealed(u) = &mut *self.state.write().unwrap_or_else(|e| e.into_inner()) {
            u.master = new_master;
        }
        Ok(new_set)
    }

    /// Replaces the master key of a `pkcs11` seal: a new master key,
    /// wrapped by the HSM, and every keyring version rewrapped under it, in
    /// one transaction. The node stays unsealed.
    pub async fn rekey_hsm(&self, actor: &Actor) -> Result<(), SealError> {
        let settings = self
            .hsm
            .as_ref()
            .ok_or(SealError::WrongSeal(self.kind.as_str()))?;
        let config = hsm_config(settings)?;
        let record = self.store.seal().await?.ok_or(SealError::NotInitialized)?;
        let entries = self.store.keyring().await?;
        let new_master = MasterKey::generate()?;
        let rewrapped = {
            let state = self.state.read().unwrap_or_else(|e| e.into_inner());
            let State::Unsealed(u) = &*state else {
                return Err(SealError::Sealed);
            };
            let mut rewrapped = Vec::with_capacity(entries.len());
            for entry in &entries {
                let key = u
                    .master
                    .unwrap_keyring_key(entry.version, &entry.wrapped_key)?;
                rewrapped.push(KeyringEntry {
                    wrapped_key: new_master.wrap_keyring_key(entry.version, &key)?,
                    ..entry.clone()
                });
            }
            rewrapped
        };
        let copy = MasterKey::from_secret(new_master.secret().duplicate());
        let wrapped = blocking(move || {
            let hsm = Hsm::open(&config, false)?;
            let wrapped = hsm.wrap(&copy);
            hsm.close();
            wrapped
        })
        .await?;
        let at = now();
        let new_record = SealRecord {
            wrapped_master: Some(wrapped),
            updated_at: at,
            ..record
        };
        let event = audit_event(
            Some(actor),
            AuditAction::SealRekey,
            "seal",
            serde_json::json!({ "seal": "pkcs11" }),
            at,
        )
        .map_err(|_| SealError::Crypto(CryptoError::Random))?;
        self.store
            .rekey_seal(&new_record, &rewrapped, &event)
            .await?;
        if let State::Unsealed(u) = &mut *self.state.write().unwrap_or_else(|e| e.into_inner()) {
            u.master = new_master;
        }
        Ok(())
    }

    /// Moves every stored data key to the keyring's newest version: secret
    /// values and custom metadata, transit key material, users' and key
    /// owners' TOTP secrets, keys' HMAC signing secrets. The values
    /// themselves are not re-encrypted. An envelope changed since it was
    /// read (a write, a destroy) is left to its writer. Returns how many
    /// were moved.
    pub async fn rewrap(&self) -> Result<RewrapReport, SealError> {
        const PAGE: u32 = 500;
        let mut report = RewrapReport::default();
        let sources = [Source::Secrets, Source::Metadata, Source::Transit]
            .into_iter()
            .chain(EnvelopeColumn::ALL.into_iter().map(Source::Row));
        for source in sources {
            let mut after: Option<EnvelopeCursor> = None;
            loop {
                let after_ref = after.as_ref();
                let page = match source {
                    Source::Secrets => self.store.secret_envelopes(after_ref, PAGE).await?,
                    Source::Metadata => self.store.metadata_envelopes(after_ref, PAGE).await?,
                    Source::Transit => self.store.transit_envelopes(after_ref, PAGE).await?,
                    Source::Row(column) => {
                        self.store.row_envelopes(column, after_ref, PAGE).await?
                    }
                };
                let Some(last) = page.last() else { break };
                after = Some(last.at.clone());
                // Read the keyring per page: a seal stops the walk.
                let keyring = self.keyring()?;
                self.spend(
                    UseTarget::Keyring {
                        version: keyring.active_version(),
                    },
                    page.len() as u64,
                )
                .await?;
                for stored in &page {
                    let moved = with_identity(&stored.at, |identity| {
                        keyring.rewrap(identity, &stored.envelope)
                    });
                    match moved {
                        Ok(Some(new)) => {
                            if self
                                .store
                                .replace_envelope(&stored.at, &stored.envelope, &new)
                                .await?
                            {
                                report.moved += 1;
                            }
                        }
                        Ok(None) => report.current += 1,
                        Err(e) => {
                            // A damaged row is reported, not fatal to the walk.
                            tracing::error!(error = %e, at = ?stored.at, "cannot rewrap a stored value");
                            report.failed += 1;
                        }
                    }
                }
                if page.len() < PAGE as usize {
                    break;
                }
            }
        }
        Ok(report)
    }

    /// Opens an envelope with the keyring. An envelope under a keyring
    /// version this node has not seen yet (another node rotated) makes it
    /// read the keyring again, once.
    pub async fn open_envelope(
        &self,
        identity: &keyward_crypto::RecordIdentity<'_>,
        envelope: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, SealError> {
        match self.keyring()?.decrypt(identity, envelope) {
            Err(CryptoError::UnknownKeyVersion(_)) => {
                self.reload_keyring().await?;
                Ok(self.keyring()?.decrypt(identity, envelope)?)
            }
            other => Ok(other?),
        }
    }

    /// Reads the keyring again, for versions another node added.
    pub async fn reload_keyring(&self) -> Result<(), SealError> {
        let entries = self.store.keyring().await?;
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        if let State::Unsealed(u) = &mut *state {
            let keyring = u.master.open_keyring(
                entries
                    .iter()
                    .map(|e| (e.version, e.wrapped_key.as_slice())),
            )?;
            u.keyring = Arc::new(keyring);
        }
        Ok(())
    }

    fn become_sealed(&self, record: &SealRecord) -> Result<(), SealError> {
        let next = match record.kind {
            SealKind::Shamir => {
                let (Some(set), Some(threshold)) = (record.share_set, record.threshold) else {
                    return Err(SealError::Invalid(
                        "the stored shamir seal lacks its share set",
                    ));
                };
                *self.shares.write().unwrap_or_else(|e| e.into_inner()) =
                    (record.share_digests.len() as u8, threshold);
                State::Sealed(Unsealer::new(ShareSetRecord {
                    set,
                    threshold,
                    digests: record.share_digests.clone(),
                }))
            }
            // An automatically unsealed node that was sealed by hand stays
            // sealed until its next start; it has no shares to collect.
            SealKind::File | SealKind::Pkcs11 => State::Sealed(Unsealer::new(ShareSetRecord {
                set: [0; 4],
                threshold: u8::MAX,
                digests: Vec::new(),
            })),
        };
        *self.state.write().unwrap_or_else(|e| e.into_inner()) = next;
        // Key material opened with the keyring goes with it.
        self.transit.clear();
        Ok(())
    }

    /// Opens the keyring with `master` and holds both. With `initialise`,
    /// the store's seal and first keyring version are written first.
    async fn unseal_with(&self, master: MasterKey, initialise: bool) -> Result<(), SealError> {
        if initialise {
            match self.initialise_store(&master, None, None, None).await {
                Ok(_) | Err(SealError::Store(StoreError::Conflict(_))) => {}
                Err(e) => return Err(e),
            }
        }
        let entries = self.store.keyring().await?;
        let keyring = master.open_keyring(
            entries
                .iter()
                .map(|e| (e.version, e.wrapped_key.as_slice())),
        );
        let keyring = match keyring {
            Ok(keyring) => keyring,
            Err(e) => {
                // Shares that pass their digests but do not open the
                // keyring mean a damaged store; start over.
                self.reset_unseal();
                return Err(e.into());
            }
        };
        *self.state.write().unwrap_or_else(|e| e.into_inner()) = State::Unsealed(Unsealed {
            master,
            keyring: Arc::new(keyring),
        });
        Ok(())
    }

    async fn initialise_store(
        &self,
        master: &MasterKey,
        shares: Option<&ShareSet>,
        wrapped_master: Option<Vec<u8>>,
        actor: Option<&Actor>,
    ) -> Result<SealRecord, SealError> {
        let at = now();
        let record = SealRecord {
            kind: self.kind,
            share_set: shares.map(|s| s.set),
            threshold: shares.map(|s| s.threshold),
            share_digests: shares.map(ShareSet::digests).unwrap_or_default(),
            wrapped_master,
            created_at: at,
            updated_at: at,
        };
        let first = KeyringEntry {
            version: 1,
            wrapped_key: master.wrap_keyring_key(1, &SecretKey::generate()?)?,
            created_at: at,
        };
        let details = serde_json::json!({
            "seal": self.kind.as_str(),
            "shares": shares.map(|s| s.shares.len()),
            "threshold": shares.map(|s| s.threshold),
        });
        let event = audit_event(actor, AuditAction::SealInit, "seal", details, at)
            .map_err(|_| SealError::Crypto(CryptoError::Random))?;
        self.store.init_seal(&record, &first, &event).await?;
        Ok(record)
    }
}

fn hsm_config(settings: &SealSettings) -> Result<HsmConfig, SealError> {
    let (Some(module), Some(token_label), Some(pin)) = (
        settings.pkcs11_module.clone(),
        settings.pkcs11_token_label.clone(),
        settings.pkcs11_pin.clone(),
    ) else {
        return Err(SealError::Invalid(
            "the pkcs11 seal needs pkcs11_module, pkcs11_token_label and a PIN \
             (KEYWARD_HSM_PIN or pkcs11_pin)",
        ));
    };
    Ok(HsmConfig {
        module,
        token_label,
        pin: pin.0,
        key_label: settings.pkcs11_key_label.clone(),
    })
}

/// Runs a blocking HSM call off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, CryptoError> + Send + 'static,
) -> Result<T, SealError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| SealError::Invalid("an HSM call panicked"))?
        .map_err(SealError::from)
}

/// What a rewrap walks, one after another.
#[derive(Clone, Copy)]
enum Source {
    Secrets,
    Metadata,
    Transit,
    Row(EnvelopeColumn),
}

/// Calls `f` with the record identity the envelope at `at` is bound to, the
/// one its writer sealed it under.
fn with_identity<T>(at: &EnvelopeCursor, f: impl FnOnce(&RecordIdentity<'_>) -> T) -> T {
    use crate::records;
    match at {
        EnvelopeCursor::Secret {
            mount,
            path,
            version,
        } => f(&records::secret_identity(
            &format!("{mount}/{path}"),
            *version,
        )),
        EnvelopeCursor::Metadata { mount, path } => {
            f(&records::metadata_identity(&format!("{mount}/{path}")))
        }
        EnvelopeCursor::Transit { name, version } => f(&records::identity(name, *version)),
        EnvelopeCursor::Row { column, id } => f(&match column {
            EnvelopeColumn::UserTotp | EnvelopeColumn::UserTotpPending => {
                records::totp_identity(id)
            }
            EnvelopeColumn::KeySigning => records::signing_identity(id),
            EnvelopeColumn::OwnerTotp | EnvelopeColumn::OwnerTotpPending => {
                records::owner_totp_identity(id)
            }
            EnvelopeColumn::AuditKey => records::audit_key_identity(id),
        }),
    }
}
