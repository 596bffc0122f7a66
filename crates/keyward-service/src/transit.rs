//! Transit: named, versioned keys that encrypt, sign and MAC for callers
//! while their material never leaves the server.
//!
//! Each version's material is stored as an envelope of the keyring bound to
//! the key's name and version. Loaded keys are kept in memory for
//! [`CACHE_TTL`] (so a rotation or `min_decryption_version` made on another
//! node applies within it) and dropped when the server is sealed. Key
//! management is audited; the cryptographic operations are not, since one
//! audit row per encrypt would be a database write per request.
//!
//! Invariant: every operation on a key, and the listing, sees only keys
//! within the actor's reach — its environment is one the token reaches and,
//! when the key serves some APIs, the token reaches all of them. A key
//! outside it answers exactly as a key that does not exist.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use keyward_core::{AdminScope, ApiId, AuditAction, Environment};
use keyward_crypto::transit::{self, KeyVersion};
pub use keyward_crypto::transit::{KeyType, Marshaling};
use keyward_crypto::{CryptoError, Keyring};
use keyward_store::{StoreError, TransitKey, TransitKeyVersion, UseTarget};
use serde_json::json;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::records::identity;
use crate::tokens::within;
use crate::{audit_event, now, Actor, Error, Service};

/// How long a loaded key is used before it is read again.
pub const CACHE_TTL: Duration = Duration::from_secs(1);

/// A transit key with its versions' material opened.
pub struct LoadedKey {
    pub meta: TransitKey,
    pub kind: KeyType,
    pub versions: BTreeMap<u32, (KeyVersion, TransitKeyVersion)>,
}

/// Loaded keys by name, with the time they were loaded.
pub type TransitCache = dashmap::DashMap<String, (Instant, Arc<LoadedKey>)>;

/// A transit key to create.
#[derive(Debug, Clone)]
pub struct NewTransitKey {
    pub name: String,
    pub kind: KeyType,
    /// Whether each encryption derives its key from a caller's context.
    pub derived: bool,
    /// `live` when absent.
    pub environment: Option<Environment>,
    /// When absent, the APIs the actor is limited to (none in particular
    /// for an actor without API limits).
    pub api_ids: Option<Vec<ApiId>>,
}

/// A change to a key's version policy; absent fields stay as they are.
#[derive(Debug, Clone, Copy, Default)]
pub struct TransitPolicy {
    pub min_decryption_version: Option<u32>,
    pub min_encryption_version: Option<u32>,
    pub deletion_allowed: Option<bool>,
}

/// One plaintext to encrypt.
pub struct Plaintext {
    pub plaintext: Zeroizing<Vec<u8>>,
    /// The derivation context, for derived keys.
    pub context: Option<Zeroizing<Vec<u8>>>,
    /// The version to encrypt with; the latest when absent or 0.
    pub key_version: Option<u32>,
}

/// One `kw:v…` ciphertext to decrypt or rewrap.
pub struct Ciphertext {
    pub ciphertext: String,
    pub context: Option<Zeroizing<Vec<u8>>>,
    /// For a rewrap, the version to encrypt with again.
    pub key_version: Option<u32>,
}

/// A value made with a key version: a ciphertext, signature or MAC as
/// `kw:v<version>:<base64>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    pub text: String,
    pub key_version: u32,
}

/// What to sign, MAC or check.
pub struct SignInput {
    pub input: Zeroizing<Vec<u8>>,
    /// The input is already a SHA-256 digest.
    pub prehashed: bool,
    pub marshaling: Marshaling,
    /// The version to sign with; the latest when absent or 0.
    pub key_version: Option<u32>,
}

/// A signature or a MAC to check.
pub enum Proof<'a> {
    Signature(&'a str),
    Hmac { text: &'a str, sha512: bool },
}

/// Whether `key` is within the actor's reach (a key serving no API in
/// particular is reached, as a secrets mount is, by every token of its
/// environment).
fn reaches(actor: &Actor, key: &TransitKey) -> bool {
    actor.sees_environment(key.environment)
        && (key.api_ids.is_none()
            || actor.is_node_wide(AdminScope::TransitUse)
            || (!actor.token.is_session()
                && actor.token.workspaces.is_none()
                && within(key.api_ids.as_deref(), actor.token.api_ids.as_deref())))
}

/// The answer for a key that does not exist, or is out of the actor's reach.
fn absent() -> Error {
    Error::NotFound("transit key")
}

fn bad(message: &str) -> Error {
    Error::InvalidRequest(message.to_owned())
}

fn valid_name(name: &str) -> Result<&str, Error> {
    if !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        Ok(name)
    } else {
        Err(bad("a key name is 1-128 of [A-Za-z0-9._-]"))
    }
}

/// Associated data of a transit ciphertext: the key's name and version.
fn aad(name: &str, version: u32) -> Vec<u8> {
    let mut aad = b"keyward/transit/v1/".to_vec();
    aad.extend_from_slice(name.as_bytes());
    aad.push(0);
    aad.extend_from_slice(&version.to_be_bytes());
    aad
}

fn resource(name: &str) -> String {
    format!("transit/{name}")
}

impl LoadedKey {
    fn encryption_version(&self, asked: Option<u32>) -> Result<u32, Error> {
        let latest = self.meta.latest_version;
        let version = match asked {
            Some(0) | None => latest,
            Some(v) => v,
        };
        let floor = self
            .meta
            .min_encryption_version
            .max(self.meta.min_decryption_version);
        if version > latest || version < floor || !self.versions.contains_key(&version) {
            return Err(bad("this key version cannot encrypt"));
        }
        Ok(version)
    }

    fn encrypt(&self, item: &Plaintext) -> Result<Versioned, Error> {
        let version = self.encryption_version(item.key_version)?;
        let (opened, _) = &self.versions[&version];
        let sealed = opened.encrypt(
            &aad(&self.meta.name, version),
            self.meta.derived,
            item.context.as_deref().map(Vec::as_slice),
            &item.plaintext,
        )?;
        Ok(Versioned {
            text: transit::encode(version, &sealed),
            key_version: version,
        })
    }

    fn decrypt(&self, item: &Ciphertext) -> Result<Zeroizing<Vec<u8>>, Error> {
        let (version, sealed, opened) = self.decodable(&item.ciphertext)?;
        Ok(opened.decrypt(
            &aad(&self.meta.name, version),
            self.meta.derived,
            item.context.as_deref().map(Vec::as_slice),
            &sealed,
        )?)
    }

    fn rewrap(&self, item: &Ciphertext) -> Result<Versioned, Error> {
        let plaintext = self.decrypt(item)?;
        self.encrypt(&Plaintext {
            plaintext,
            context: item.context.clone(),
            key_version: item.key_version,
        })
    }

    /// The version `asked` (0 or none: the latest) to sign or MAC with, if
    /// policy still allows it.
    fn usable(&self, asked: Option<u32>) -> Result<(u32, &KeyVersion), Error> {
        let version = match asked {
            None | Some(0) => self.meta.latest_version,
            Some(v) => v,
        };
        self.versions
            .get(&version)
            .filter(|_| version >= self.meta.min_decryption_version)
            .map(|(opened, _)| (version, opened))
            .ok_or_else(|| bad("this key version cannot be used"))
    }

    /// The version, bytes and key version of a `kw:v…` text, if policy
    /// still lets that version decrypt or verify.
    fn decodable(&self, text: &str) -> Result<(u32, Vec<u8>, &KeyVersion), Error> {
        let (version, bytes) = transit::decode(text).map_err(CryptoError::Transit)?;
        if version < self.meta.min_decryption_version {
            return Err(bad(
                "ciphertext or signature version is disallowed by policy (min_decryption_version)",
            ));
        }
        let (opened, _) = self
            .versions
            .get(&version)
            .ok_or_else(|| bad("no such key version"))?;
        Ok((version, bytes, opened))
    }

    fn require_encryption(&self) -> Result<(), Error> {
        if self.kind.encrypts() {
            Ok(())
        } else {
            Err(bad("this key type cannot encrypt or decrypt"))
        }
    }
}

impl Service {
    fn transit_cache(&self) -> &TransitCache {
        self.barrier.transit_cache()
    }

    fn keyring(&self) -> Result<Arc<Keyring>, Error> {
        Ok(self.barrier.keyring()?)
    }

    /// The key, from memory when loaded within [`CACHE_TTL`].
    async fn load_transit_key(&self, actor: &Actor, name: &str) -> Result<Arc<LoadedKey>, Error> {
        self.keyring()?;
        if let Some(entry) = self.transit_cache().get(name) {
            if entry.0.elapsed() < CACHE_TTL {
                if !reaches(actor, &entry.1.meta) {
                    return Err(absent());
                }
                return Ok(Arc::clone(&entry.1));
            }
        }
        let (meta, stored) = self.stored_transit_key(actor, name).await?;
        let kind = KeyType::parse(&meta.key_type).ok_or_else(|| {
            Error::internal(StoreError::Corrupt {
                table: "transit_keys",
                detail: "unknown key type".into(),
            })
        })?;
        let mut versions = BTreeMap::new();
        for version in stored {
            let material = self
                .barrier
                .open_envelope(&identity(name, version.version), &version.material)
                .await
                .map_err(crate::seal::sealed_or_tampered)?;
            let opened = KeyVersion::from_material(kind, material)?;
            versions.insert(version.version, (opened, version));
        }
        let loaded = Arc::new(LoadedKey {
            meta,
            kind,
            versions,
        });
        // Not kept if the server was sealed meanwhile.
        if self.barrier.keyring().is_ok() {
            self.transit_cache()
                .insert(name.to_owned(), (Instant::now(), Arc::clone(&loaded)));
        }
        Ok(loaded)
    }

    /// The key's settings and stored versions, when it exists within the
    /// actor's reach.
    async fn stored_transit_key(
        &self,
        actor: &Actor,
        name: &str,
    ) -> Result<(TransitKey, Vec<TransitKeyVersion>), Error> {
        self.store
            .get_transit_key(name)
            .await?
            .filter(|(meta, _)| reaches(actor, meta))
            .ok_or_else(absent)
    }

    /// Where a new key belongs: the environment and APIs asked for, which
    /// must be within the actor's reach.
    async fn placement(
        &self,
        actor: &Actor,
        environment: Option<Environment>,
        api_ids: Option<Vec<ApiId>>,
    ) -> Result<(Environment, Option<Vec<ApiId>>), Error> {
        let environment = environment.unwrap_or(Environment::Live);
        if !actor.reaches_environment(AdminScope::TransitWrite, environment) {
            return Err(Error::Forbidden(
                "this token cannot reach the key's environment (live unless `environment` says \
                 otherwise): name an environment it is limited to",
            ));
        }
        let api_ids = match api_ids {
            None => actor.token.api_ids.clone(),
            Some(ids) if ids.is_empty() => {
                return Err(bad("api_ids names at least one API, or is left out"));
            }
            Some(mut ids) => {
                ids.sort();
                ids.dedup();
                for id in &ids {
                    let exists = self.store.get_api(id).await?.is_some()
                        && self
                            .reaches_key(actor, AdminScope::TransitWrite, id, environment)
                            .await?;
                    if !exists {
                        return Err(bad(
                            "api_ids names an API that does not exist or is outside this \
                             token's reach: name APIs listed by GET /v1/apis",
                        ));
                    }
                }
                Some(ids)
            }
        };
        Ok((environment, api_ids))
    }

    /// Creates a key with its first version.
    pub async fn create_transit_key(&self, actor: &Actor, new: NewTransitKey) -> Result<(), Error> {
        actor.require(AdminScope::TransitWrite)?;
        let name = valid_name(&new.name)?;
        if new.derived && !new.kind.encrypts() {
            return Err(bad("only encryption keys can be derived"));
        }
        let (environment, api_ids) = self.placement(actor, new.environment, new.api_ids).await?;
        let keyring = self.keyring()?;
        self.barrier.spend_keyring(1).await?;
        let generated = KeyVersion::generate(new.kind)?;
        let at = now();
        let first = TransitKeyVersion {
            version: 1,
            material: keyring.encrypt(&identity(name, 1), generated.material())?,
            public_key: generated.public_key(),
            created_at: at,
        };
        let key = TransitKey {
            name: name.to_owned(),
            key_type: new.kind.as_str().to_owned(),
            derived: new.derived,
            latest_version: 1,
            min_decryption_version: 1,
            min_encryption_version: 0,
            deletion_allowed: false,
            environment,
            api_ids,
            created_at: at,
            updated_at: at,
        };
        let event = audit_event(
            Some(actor),
            AuditAction::TransitCreate,
            &resource(name),
            json!({
                "type": new.kind.as_str(),
                "environment": key.environment.as_str(),
                "api_ids": key.api_ids,
            }),
            at,
        )?;
        match self.store.create_transit_key(&key, &first, &event).await {
            Ok(()) => Ok(()),
            Err(StoreError::Conflict(_)) => {
                Err(Error::Conflict("a transit key with this name exists"))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// A key with its versions, to show (never its material).
    pub async fn transit_key(&self, actor: &Actor, name: &str) -> Result<Arc<LoadedKey>, Error> {
        actor.require(AdminScope::TransitUse)?;
        self.load_transit_key(actor, name).await
    }

    /// The names of the keys within the actor's reach; `NOT_FOUND` when
    /// there are none, as Vault answers an empty listing.
    pub async fn transit_key_names(&self, actor: &Actor) -> Result<Vec<String>, Error> {
        actor.require(AdminScope::TransitUse)?;
        let names: Vec<String> = self
            .store
            .list_transit_keys()
            .await?
            .into_iter()
            .filter(|key| reaches(actor, key))
            .map(|key| key.name)
            .collect();
        if names.is_empty() {
            return Err(absent());
        }
        Ok(names)
    }

    /// Deletes a key whose policy allows deletion.
    pub async fn delete_transit_key(&self, actor: &Actor, name: &str) -> Result<(), Error> {
        actor.require(AdminScope::TransitWrite)?;
        self.stored_transit_key(actor, name).await?;
        actor.require_step_up(self.auth.step_up_window, now())?;
        let event = audit_event(
            Some(actor),
            AuditAction::TransitDelete,
            &resource(name),
            json!({}),
            now(),
        )?;
        match self.store.delete_transit_key(name, &event).await {
            Ok(()) => {}
            Err(StoreError::NotFound) => return Err(absent()),
            Err(e) => return Err(e.into()),
        }
        self.transit_cache().remove(name);
        Ok(())
    }

    /// Adds a version to a key and makes it the one that encrypts.
    pub async fn rotate_transit_key(
        &self,
        actor: &Actor,
        name: &str,
    ) -> Result<Arc<LoadedKey>, Error> {
        actor.require(AdminScope::TransitWrite)?;
        self.stored_transit_key(actor, name).await?;
        self.add_transit_version(name, Some(actor), "requested")
            .await?;
        self.transit_key(actor, name).await
    }

    /// Sets a key's version policy.
    pub async fn configure_transit_key(
        &self,
        actor: &Actor,
        name: &str,
        policy: TransitPolicy,
    ) -> Result<Arc<LoadedKey>, Error> {
        actor.require(AdminScope::TransitWrite)?;
        let (meta, _) = self.stored_transit_key(actor, name).await?;
        let min_decryption = policy
            .min_decryption_version
            .unwrap_or(meta.min_decryption_version);
        let min_encryption = policy
            .min_encryption_version
            .unwrap_or(meta.min_encryption_version);
        if min_decryption == 0 || min_decryption > meta.latest_version {
            return Err(bad(
                "min_decryption_version must be between 1 and the latest version",
            ));
        }
        if min_encryption > meta.latest_version
            || (min_encryption != 0 && min_encryption < min_decryption)
        {
            return Err(bad(
                "min_encryption_version must be 0, or between min_decryption_version and the latest version",
            ));
        }
        let deletion_allowed = policy.deletion_allowed.unwrap_or(meta.deletion_allowed);
        let event = audit_event(
            Some(actor),
            AuditAction::TransitConfig,
            &resource(name),
            json!({
                "min_decryption_version": min_decryption,
                "min_encryption_version": min_encryption,
                "deletion_allowed": deletion_allowed,
            }),
            now(),
        )?;
        self.store
            .configure_transit_key(
                name,
                min_decryption,
                min_encryption,
                deletion_allowed,
                &event,
            )
            .await?;
        self.transit_cache().remove(name);
        self.transit_key(actor, name).await
    }

    /// Adds a version to a transit key. `reason` is audited: `requested`,
    /// or `usage limit` when the latest version has made enough encryptions.
    async fn add_transit_version(
        &self,
        name: &str,
        actor: Option<&Actor>,
        reason: &str,
    ) -> Result<u32, Error> {
        let keyring = self.keyring()?;
        let (meta, _) = self.store.get_transit_key(name).await?.ok_or_else(absent)?;
        let kind = KeyType::parse(&meta.key_type)
            .ok_or_else(|| Error::internal(CryptoError::Malformed("unknown key type")))?;
        let version = meta.latest_version + 1;
        self.barrier.spend_keyring(1).await?;
        let generated = KeyVersion::generate(kind)?;
        let stored = TransitKeyVersion {
            version,
            material: keyring.encrypt(&identity(name, version), generated.material())?,
            public_key: generated.public_key(),
            created_at: now(),
        };
        let event = audit_event(
            actor,
            AuditAction::TransitRotate,
            &resource(name),
            json!({ "version": version, "reason": reason }),
            now(),
        )?;
        self.store
            .add_transit_key_version(name, &stored, &event)
            .await?;
        self.transit_cache().remove(name);
        Ok(version)
    }

    /// Counts the encryptions about to be made against the key versions
    /// they will use, and rotates a latest version that reached its limit.
    async fn spend_encryptions(
        &self,
        key: &LoadedKey,
        versions: impl Iterator<Item = Option<u32>>,
    ) -> Result<(), Error> {
        let mut per_version: BTreeMap<u32, u64> = BTreeMap::new();
        for asked in versions {
            if let Ok(version) = key.encryption_version(asked) {
                *per_version.entry(version).or_default() += 1;
            }
        }
        for (version, n) in per_version {
            let target = UseTarget::Transit {
                name: key.meta.name.clone(),
                version,
            };
            if self.barrier.spend(target, n).await? && version == key.meta.latest_version {
                match self
                    .add_transit_version(&key.meta.name, None, "usage limit")
                    .await
                {
                    // Another request rotated it first.
                    Ok(_) | Err(Error::Conflict(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    /// A key that encrypts, for the actor to use.
    async fn encryption_key(&self, actor: &Actor, name: &str) -> Result<Arc<LoadedKey>, Error> {
        let key = self.transit_key(actor, name).await?;
        key.require_encryption()?;
        Ok(key)
    }

    /// Encrypts each item, answering for each on its own.
    pub async fn transit_encrypt(
        &self,
        actor: &Actor,
        name: &str,
        items: &[Plaintext],
    ) -> Result<Vec<Result<Versioned, Error>>, Error> {
        let key = self.encryption_key(actor, name).await?;
        self.spend_encryptions(&key, items.iter().map(|i| i.key_version))
            .await?;
        Ok(items.iter().map(|item| key.encrypt(item)).collect())
    }

    /// Decrypts each item, answering for each on its own.
    pub async fn transit_decrypt(
        &self,
        actor: &Actor,
        name: &str,
        items: &[Ciphertext],
    ) -> Result<Vec<Result<Zeroizing<Vec<u8>>, Error>>, Error> {
        let key = self.encryption_key(actor, name).await?;
        Ok(items.iter().map(|item| key.decrypt(item)).collect())
    }

    /// Decrypts each item and encrypts it again with the version asked
    /// for (the latest by default), never showing the plaintext.
    pub async fn transit_rewrap(
        &self,
        actor: &Actor,
        name: &str,
        items: &[Ciphertext],
    ) -> Result<Vec<Result<Versioned, Error>>, Error> {
        let key = self.encryption_key(actor, name).await?;
        self.spend_encryptions(&key, items.iter().map(|i| i.key_version))
            .await?;
        Ok(items.iter().map(|item| key.rewrap(item)).collect())
    }

    /// A new data key of `bits` and its encryption under the named key.
    pub async fn transit_data_key(
        &self,
        actor: &Actor,
        name: &str,
        bits: u32,
        context: Option<Zeroizing<Vec<u8>>>,
    ) -> Result<(Zeroizing<Vec<u8>>, Versioned), Error> {
        actor.require(AdminScope::TransitUse)?;
        if !matches!(bits, 128 | 256 | 512) {
            return Err(bad("bits is 128, 256 or 512"));
        }
        let key = self.load_transit_key(actor, name).await?;
        if !key.kind.encrypts() {
            return Err(bad("this key type cannot make data keys"));
        }
        let mut data_key = Zeroizing::new(vec![0u8; bits as usize / 8]);
        keyward_crypto::secret::fill_random(&mut data_key)?;
        self.spend_encryptions(&key, std::iter::once(None)).await?;
        let sealed = key.encrypt(&Plaintext {
            plaintext: data_key.clone(),
            context,
            key_version: None,
        })?;
        Ok((data_key, sealed))
    }

    /// Signs `input` with a signing key.
    pub async fn transit_sign(
        &self,
        actor: &Actor,
        name: &str,
        input: &SignInput,
    ) -> Result<Versioned, Error> {
        actor.require(AdminScope::TransitUse)?;
        let key = self.load_transit_key(actor, name).await?;
        if !key.kind.signs() {
            return Err(bad("this key type cannot sign"));
        }
        let (version, opened) = key.usable(input.key_version)?;
        let signature = opened.sign(&input.input, input.prehashed, input.marshaling)?;
        Ok(Versioned {
            text: transit::encode(version, &signature),
            key_version: version,
        })
    }

    /// A MAC of `input`, with SHA-512 or SHA-256.
    pub async fn transit_hmac(
        &self,
        actor: &Actor,
        name: &str,
        input: &[u8],
        sha512: bool,
        key_version: Option<u32>,
    ) -> Result<Versioned, Error> {
        actor.require(AdminScope::TransitUse)?;
        let key = self.load_transit_key(actor, name).await?;
        let (version, opened) = key.usable(key_version)?;
        let mac = opened.hmac(sha512, input)?;
        Ok(Versioned {
            text: transit::encode(version, &mac),
            key_version: version,
        })
    }

    /// Whether `proof` is a valid signature or MAC of `input`.
    pub async fn transit_verify(
        &self,
        actor: &Actor,
        name: &str,
        input: &SignInput,
        proof: Proof<'_>,
    ) -> Result<bool, Error> {
        actor.require(AdminScope::TransitUse)?;
        let key = self.load_transit_key(actor, name).await?;
        match proof {
            Proof::Hmac { text, sha512 } => {
                let (_, bytes, opened) = key.decodable(text)?;
                let expected = opened.hmac(sha512, &input.input)?;
                Ok(bool::from(expected.ct_eq(&bytes)))
            }
            Proof::Signature(text) => {
                let (_, bytes, opened) = key.decodable(text)?;
                if !key.kind.signs() {
                    return Err(bad("this key type cannot verify signatures"));
                }
                Ok(opened.verify(&input.input, input.prehashed, input.marshaling, &bytes)?)
            }
        }
    }

    /// `count` random bytes from the system's generator.
    pub fn random_bytes(&self, actor: &Actor, count: usize) -> Result<Zeroizing<Vec<u8>>, Error> {
        actor.require(AdminScope::TransitUse)?;
        if count == 0 || count > 1024 * 1024 {
            return Err(bad("bytes is 1 to 1048576"));
        }
        let mut out = Zeroizing::new(vec![0u8; count]);
        keyward_crypto::secret::fill_random(&mut out)?;
        Ok(out)
    }
}
