//! Secrets: versioned key–value documents under mounts, each mount bound to
//! one environment.
//!
//! Values are sealed by the keyring, each version under its own data key
//! bound to mount, path and version; so is a secret's custom metadata. A
//! sealed server answers `SEALED` before any storage is read. Every read
//! and write is audited with the path and version, never the value.
//!
//! Invariant: a mount outside the actor's environments is `NoMount`, the
//! same answer as a mount that does not exist.

use std::collections::BTreeSet;

use keyward_core::{AdminScope, AuditAction, AuditEvent, Environment};
pub use keyward_store::{SecretMeta, SecretMount, SecretVersion};
use keyward_store::{SecretMetaPatch, SecretWrite, StoreError, VersionAction};
use serde_json::{json, Map, Value};
use time::OffsetDateTime;

use crate::records::{metadata_identity, secret_identity};
use crate::{audit_event, now, Actor, Error, Service};

/// Versions kept when neither the secret nor its mount says.
const DEFAULT_MAX_VERSIONS: u32 = 10;
/// Largest secret path accepted.
const MAX_PATH: usize = 512;
/// Most custom metadata entries on one secret.
const MAX_CUSTOM_METADATA: usize = 64;
/// First path segments that name Keyward's own routes (or transit), so no
/// mount may take them.
pub const RESERVED_MOUNT_PATHS: [&str; 9] = [
    "sys",
    "auth",
    "keys",
    "apis",
    "tokens",
    "audit",
    "owners",
    "transit",
    "openapi.json",
];

/// A version of a secret as read.
pub enum SecretRead {
    /// The version's data, with its metadata.
    Live {
        data: Value,
        version: SecretVersion,
        custom: Map<String, Value>,
    },
    /// The version was deleted or destroyed: only its metadata is left.
    Gone {
        version: SecretVersion,
        custom: Map<String, Value>,
    },
}

/// What a write made.
pub struct Written {
    pub version: u64,
    pub created_at: OffsetDateTime,
    pub custom: Map<String, Value>,
}

/// A secret's metadata and versions.
pub struct SecretMetadata {
    pub meta: SecretMeta,
    pub versions: Vec<SecretVersion>,
    pub custom: Map<String, Value>,
}

/// A change to a secret's settings; absent fields stay as they are.
#[derive(Debug, Clone, Default)]
pub struct MetadataChanges {
    pub max_versions: Option<u32>,
    pub cas_required: Option<bool>,
    /// At most 64 entries, each a string.
    pub custom_metadata: Option<Map<String, Value>>,
}

/// What to do to some versions of a secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionAct {
    /// Hidden, and restorable with an undelete.
    Delete,
    Undelete,
    /// The value is erased for good; the version's metadata stays.
    Destroy,
}

/// A secret path: segments of printable characters, no `..`, bounded, and
/// no key in it (paths are written to the audit log and shown in listings).
fn checked(path: &str) -> Result<&str, Error> {
    let ok = !path.is_empty()
        && path.len() <= MAX_PATH
        && !path.starts_with('/')
        && path
            .split('/')
            .all(|s| !s.is_empty() && s != "." && s != "..")
        && path.chars().all(|c| !c.is_control());
    if !ok {
        Err(Error::InvalidRequest(
            "a secret path is 1 to 512 characters of segments separated by /, without \
             control characters or . and .. segments"
                .into(),
        ))
    } else if keyward_core::key::contains_key(path) {
        Err(Error::InvalidRequest(
            "a secret path must not contain an API key or admin token".into(),
        ))
    } else {
        Ok(path)
    }
}

/// The record identity of a secret: mount and path.
fn secret_id(mount: &SecretMount, path: &str) -> String {
    format!("{}/{}", mount.path, path)
}

fn event(
    actor: &Actor,
    mount: &SecretMount,
    action: AuditAction,
    path: &str,
    details: Value,
) -> Result<AuditEvent, Error> {
    audit_event(Some(actor), action, &secret_id(mount, path), details, now())
}

fn versions_kept(mount: &SecretMount, meta: Option<&SecretMeta>) -> u32 {
    [meta.map_or(0, |m| m.max_versions), mount.max_versions]
        .into_iter()
        .find(|v| *v > 0)
        .unwrap_or(DEFAULT_MAX_VERSIONS)
}

impl Service {
    /// The mount named, when it exists within the actor's environments.
    pub async fn mount(&self, actor: &Actor, name: &str) -> Result<SecretMount, Error> {
        let mount = self.store.get_mount(name).await?.ok_or(Error::NoMount)?;
        if !actor.sees_environment(mount.environment) {
            return Err(Error::NoMount);
        }
        Ok(mount)
    }

    /// Creates a mount bound to `environment` (`live` when absent).
    pub async fn create_mount(
        &self,
        actor: &Actor,
        path: &str,
        environment: Option<Environment>,
    ) -> Result<SecretMount, Error> {
        actor.require(AdminScope::SysWrite)?;
        let valid = !path.is_empty()
            && path.len() <= 64
            && path
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !RESERVED_MOUNT_PATHS.contains(&path)
            && !keyward_core::key::contains_key(path);
        if !valid {
            return Err(Error::InvalidRequest(
                "a mount path is 1-64 of [A-Za-z0-9_-], holds no API key or admin token, and is \
                 not one of sys, keys, apis, tokens, audit, owners, transit"
                    .into(),
            ));
        }
        let environment = environment.unwrap_or(Environment::Live);
        if !actor.reaches_environment(AdminScope::SysWrite, environment) {
            return Err(Error::Forbidden(
                "this token cannot reach that environment: mounting there needs a token limited \
                 to it, or one without API or environment limits",
            ));
        }
        let at = now();
        let mount = SecretMount {
            path: path.to_owned(),
            environment,
            max_versions: 0,
            cas_required: false,
            created_at: at,
        };
        let event = audit_event(
            Some(actor),
            AuditAction::MountCreate,
            path,
            json!({ "environment": environment.as_str() }),
            at,
        )?;
        self.store.create_mount(&mount, &event).await?;
        Ok(mount)
    }

    /// A mount's settings, to show.
    pub fn mount_settings<'m>(
        &self,
        actor: &Actor,
        mount: &'m SecretMount,
    ) -> Result<&'m SecretMount, Error> {
        actor.require(AdminScope::SecretsRead)?;
        Ok(mount)
    }

    /// Sets a mount's defaults for its secrets.
    pub async fn configure_mount(
        &self,
        actor: &Actor,
        mount: &SecretMount,
        max_versions: Option<u32>,
        cas_required: Option<bool>,
    ) -> Result<(), Error> {
        actor.require(AdminScope::SysWrite)?;
        let event = event(
            actor,
            mount,
            AuditAction::MountConfig,
            "",
            json!({ "max_versions": max_versions, "cas_required": cas_required }),
        )?;
        self.store
            .configure_mount(
                &mount.path,
                max_versions.unwrap_or(mount.max_versions),
                cas_required.unwrap_or(mount.cas_required),
                &event,
            )
            .await?;
        Ok(())
    }

    /// The custom metadata of `meta`: opened with the keyring when sealed,
    /// as stored when written before metadata was sealed.
    async fn custom_metadata(
        &self,
        mount: &SecretMount,
        path: &str,
        meta: &SecretMeta,
    ) -> Result<Map<String, Value>, Error> {
        let Some(envelope) = &meta.custom_metadata_sealed else {
            return Ok(meta.custom_metadata.clone());
        };
        let id = secret_id(mount, path);
        let plaintext = self
            .barrier
            .open_envelope(&metadata_identity(&id), envelope)
            .await
            .map_err(crate::seal::sealed_or_tampered)?;
        serde_json::from_slice(&plaintext).map_err(Error::internal)
    }

    /// `custom` as the envelope stored for the secret at `path`.
    async fn seal_metadata(
        &self,
        mount: &SecretMount,
        path: &str,
        custom: &Map<String, Value>,
    ) -> Result<Vec<u8>, Error> {
        let keyring = self.barrier.keyring()?;
        let plaintext =
            zeroize::Zeroizing::new(serde_json::to_vec(custom).map_err(Error::internal)?);
        self.barrier.spend_keyring(1).await?;
        let id = secret_id(mount, path);
        keyring
            .encrypt(&metadata_identity(&id), &plaintext)
            .map_err(Error::internal)
    }

    /// Seals metadata still stored in the clear from before metadata was
    /// sealed, on a write to its secret.
    async fn seal_clear_metadata(
        &self,
        actor: &Actor,
        mount: &SecretMount,
        path: &str,
        meta: Option<&SecretMeta>,
    ) -> Result<(), Error> {
        let Some(meta) =
            meta.filter(|m| m.custom_metadata_sealed.is_none() && !m.custom_metadata.is_empty())
        else {
            return Ok(());
        };
        let patch = SecretMetaPatch {
            custom_metadata_sealed: Some(
                self.seal_metadata(mount, path, &meta.custom_metadata)
                    .await?,
            ),
            ..SecretMetaPatch::default()
        };
        let event = event(
            actor,
            mount,
            AuditAction::SecretMetadata,
            path,
            json!({ "sealed": true }),
        )?;
        self.store
            .patch_secret_meta(&mount.path, path, &patch, now(), &event)
            .await?;
        Ok(())
    }

    /// A version of a secret (`0`: the current one), opened.
    pub async fn read_secret(
        &self,
        actor: &Actor,
        mount: &SecretMount,
        path: &str,
        version: u64,
    ) -> Result<SecretRead, Error> {
        actor.require(AdminScope::SecretsRead)?;
        let path = checked(path)?;
        // Sealed answers before any storage is read.
        self.barrier.keyring()?;
        let meta = self
            .store
            .secret_meta(&mount.path, path)
            .await?
            .ok_or(Error::NotFound("secret"))?;
        let wanted = if version == 0 {
            meta.current_version
        } else {
            version
        };
        let found = self
            .store
            .secret_versions(&mount.path, path)
            .await?
            .into_iter()
            .find(|v| v.version == wanted)
            .ok_or(Error::NotFound("secret version"))?;
        let custom = self.custom_metadata(mount, path, &meta).await?;
        let value = match (&found.value, found.deleted_at) {
            (Some(value), None) if !found.destroyed => value,
            _ => {
                return Ok(SecretRead::Gone {
                    version: found,
                    custom,
                })
            }
        };
        let id = secret_id(mount, path);
        let plaintext = self
            .barrier
            .open_envelope(&secret_identity(&id, found.version), value)
            .await
            .map_err(crate::seal::sealed_or_tampered)?;
        let data: Value = serde_json::from_slice(&plaintext).map_err(Error::internal)?;
        let read = event(
            actor,
            mount,
            AuditAction::SecretRead,
            path,
            json!({ "version": found.version }),
        )?;
        self.store.append_audit(&[read]).await?;
        Ok(SecretRead::Live {
            data,
            version: found,
            custom,
        })
    }

    /// Writes `data` as the secret's next version. With `cas`, only if the
    /// current version is `cas` (0: the secret does not exist yet).
    pub async fn write_secret(
        &self,
        actor: &Actor,
        mount: &SecretMount,
        path: &str,
        data: Map<String, Value>,
        cas: Option<u64>,
    ) -> Result<Written, Error> {
        actor.require(AdminScope::SecretsWrite)?;
        let path = checked(path)?;
        self.put_secret(actor, mount, path, data, cas).await
    }

    /// A JSON merge patch of the latest version (a `null` removes a
    /// field), written as a new version only if nobody wrote in between.
    pub async fn patch_secret(
        &self,
        actor: &Actor,
        mount: &SecretMount,
        path: &str,
        changes: Map<String, Value>,
        cas: Option<u64>,
    ) -> Result<Written, Error> {
        actor.require(AdminScope::SecretsWrite)?;
        actor.require(AdminScope::SecretsRead)?;
        let path = checked(path)?;
        self.barrier.keyring()?;
        let meta = self
            .store
            .secret_meta(&mount.path, path)
            .await?
            .filter(|m| m.current_version > 0)
            .ok_or(Error::NotFound("secret"))?;
        let versions = self.store.secret_versions(&mount.path, path).await?;
        let latest = versions
            .iter()
            .find(|v| v.version == meta.current_version && v.deleted_at.is_none() && !v.destroyed)
            .and_then(|v| v.value.as_ref())
            .ok_or(Error::NotFound("secret"))?;
        let id = secret_id(mount, path);
        let plaintext = self
            .barrier
            .open_envelope(&secret_identity(&id, meta.current_version), latest)
            .await
            .map_err(crate::seal::sealed_or_tampered)?;
        let mut current: Map<String, Value> =
            serde_json::from_slice(&plaintext).map_err(Error::internal)?;
        for (k, v) in changes {
            if v.is_null() {
                current.remove(&k);
            } else {
                current.insert(k, v);
            }
        }
        let cas = cas.or(Some(meta.current_version));
        self.put_secret(actor, mount, path, current, cas).await
    }

    async fn put_secret(
        &self,
        actor: &Actor,
        mount: &SecretMount,
        path: &str,
        data: Map<String, Value>,
        cas: Option<u64>,
    ) -> Result<Written, Error> {
        let keyring = self.barrier.keyring()?;
        let plaintext = zeroize::Zeroizing::new(
            serde_json::to_vec(&Value::Object(data)).map_err(Error::internal)?,
        );
        let id = secret_id(mount, path);
        let mismatch = || {
            Error::InvalidRequest(
                "check-and-set parameter did not match the current version".into(),
            )
        };
        // Without check-and-set, a lost race is retried on the new version.
        for _ in 0..5 {
            let meta = self.store.secret_meta(&mount.path, path).await?;
            let current = meta.as_ref().map_or(0, |m| m.current_version);
            let cas_required = mount.cas_required || meta.as_ref().is_some_and(|m| m.cas_required);
            match cas {
                None if cas_required => {
                    return Err(Error::InvalidRequest(
                        "check-and-set parameter required for this call".into(),
                    ))
                }
                Some(expected) if expected != current => return Err(mismatch()),
                _ => {}
            }
            let version = current + 1;
            self.barrier.spend_keyring(1).await?;
            let value = keyring
                .encrypt(&secret_identity(&id, version), &plaintext)
                .map_err(Error::internal)?;
            let at = now();
            let write = SecretWrite {
                mount: mount.path.clone(),
                path: path.to_owned(),
                version,
                replaces: current,
                value,
                keep: versions_kept(mount, meta.as_ref()),
                at,
            };
            let written = event(
                actor,
                mount,
                AuditAction::SecretWrite,
                path,
                json!({ "version": version }),
            )?;
            match self.store.write_secret(&write, &written).await {
                Ok(()) => {
                    let custom = match &meta {
                        Some(meta) => self.custom_metadata(mount, path, meta).await?,
                        None => Map::new(),
                    };
                    // The version is written: a failure to seal old clear
                    // metadata must not read as a failed write (a retry
                    // would add a version). The next write tries again.
                    if let Err(e) = self
                        .seal_clear_metadata(actor, mount, path, meta.as_ref())
                        .await
                    {
                        tracing::warn!(error = %e, "could not seal a secret's clear metadata");
                    }
                    return Ok(Written {
                        version,
                        created_at: at,
                        custom,
                    });
                }
                Err(StoreError::Conflict(_)) if cas.is_none() => continue,
                Err(StoreError::Conflict(_)) => return Err(mismatch()),
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::Conflict(
            "the secret is being written by others; try again",
        ))
    }

    /// Deletes the current version (restorable with an undelete).
    pub async fn delete_current_version(
        &self,
        actor: &Actor,
        mount: &SecretMount,
        path: &str,
    ) -> Result<(), Error> {
        actor.require(AdminScope::SecretsWrite)?;
        let path = checked(path)?;
        let meta = self
            .store
            .secret_meta(&mount.path, path)
            .await?
            .ok_or(Error::NotFound("secret"))?;
        self.apply_to_versions(
            actor,
            mount,
            path,
            &[meta.current_version],
            VersionAct::Delete,
        )
        .await
    }

    /// Deletes, undeletes or destroys `versions`.
    pub async fn act_on_versions(
        &self,
        actor: &Actor,
        mount: &SecretMount,
        path: &str,
        versions: &[u64],
        act: VersionAct,
    ) -> Result<(), Error> {
        actor.require(AdminScope::SecretsWrite)?;
        let path = checked(path)?;
        if versions.is_empty() {
            return Err(Error::InvalidRequest("no versions given".into()));
        }
        self.apply_to_versions(actor, mount, path, versions, act)
            .await
    }

    async fn apply_to_versions(
        &self,
        actor: &Actor,
        mount: &SecretMount,
        path: &str,
        versions: &[u64],
        act: VersionAct,
    ) -> Result<(), Error> {
        let (action, name) = match act {
            VersionAct::Delete => (VersionAction::Delete(now()), AuditAction::SecretDelete),
            VersionAct::Undelete => (VersionAction::Undelete, AuditAction::SecretUndelete),
            VersionAct::Destroy => {
                actor.require_step_up(self.auth.step_up_window, now())?;
                (VersionAction::Destroy, AuditAction::SecretDestroy)
            }
        };
        let event = event(actor, mount, name, path, json!({ "versions": versions }))?;
        self.store
            .act_on_versions(&mount.path, path, versions, action, &event)
            .await?;
        Ok(())
    }

    /// A secret's settings and every version's metadata.
    pub async fn secret_metadata(
        &self,
        actor: &Actor,
        mount: &SecretMount,
        path: &str,
    ) -> Result<SecretMetadata, Error> {
        actor.require(AdminScope::SecretsRead)?;
        let path = checked(path)?;
        // Custom metadata is sealed like the values, so a sealed server
        // answers `SEALED` here too, before any storage is read.
        self.barrier.keyring()?;
        let meta = self
            .store
            .secret_meta(&mount.path, path)
            .await?
            .ok_or(Error::NotFound("secret"))?;
        let versions = self.store.secret_versions(&mount.path, path).await?;
        let custom = self.custom_metadata(mount, path, &meta).await?;
        Ok(SecretMetadata {
            meta,
            versions,
            custom,
        })
    }

    /// Changes a secret's settings; new custom metadata is sealed.
    pub async fn write_secret_metadata(
        &self,
        actor: &Actor,
        mount: &SecretMount,
        path: &str,
        changes: MetadataChanges,
    ) -> Result<(), Error> {
        actor.require(AdminScope::SecretsWrite)?;
        let path = checked(path)?;
        if let Some(custom) = &changes.custom_metadata {
            if custom.len() > MAX_CUSTOM_METADATA || custom.values().any(|v| !v.is_string()) {
                return Err(Error::InvalidRequest(
                    "custom_metadata maps at most 64 keys to strings".into(),
                ));
            }
        }
        // Metadata left as it is but still in the clear from before
        // metadata was sealed is sealed with this write.
        let custom = match changes.custom_metadata {
            Some(custom) => Some(custom),
            None => self
                .store
                .secret_meta(&mount.path, path)
                .await?
                .filter(|m| m.custom_metadata_sealed.is_none() && !m.custom_metadata.is_empty())
                .map(|m| m.custom_metadata),
        };
        let sealed = match &custom {
            Some(custom) => Some(self.seal_metadata(mount, path, custom).await?),
            None => None,
        };
        let patch = SecretMetaPatch {
            max_versions: changes.max_versions,
            cas_required: changes.cas_required,
            custom_metadata: None,
            custom_metadata_sealed: sealed,
        };
        let event = event(actor, mount, AuditAction::SecretMetadata, path, json!({}))?;
        self.store
            .patch_secret_meta(&mount.path, path, &patch, now(), &event)
            .await?;
        Ok(())
    }

    /// Erases a secret: every version and its metadata.
    pub async fn destroy_secret(
        &self,
        actor: &Actor,
        mount: &SecretMount,
        path: &str,
    ) -> Result<(), Error> {
        actor.require(AdminScope::SecretsWrite)?;
        let path = checked(path)?;
        actor.require_step_up(self.auth.step_up_window, now())?;
        let event = event(actor, mount, AuditAction::SecretDestroyAll, path, json!({}))?;
        self.store.delete_secret(&mount.path, path, &event).await?;
        Ok(())
    }

    /// The names directly under `prefix` (`""`: the mount's top); folders
    /// end in `/`. `NOT_FOUND` when there are none, as Vault answers.
    pub async fn secret_names(
        &self,
        actor: &Actor,
        mount: &SecretMount,
        prefix: &str,
    ) -> Result<BTreeSet<String>, Error> {
        actor.require(AdminScope::SecretsRead)?;
        let prefix = if prefix.is_empty() {
            String::new()
        } else {
            format!("{prefix}/")
        };
        let paths = self.store.secret_paths(&mount.path, &prefix).await?;
        let names: BTreeSet<String> = paths
            .iter()
            .filter_map(|p| p.strip_prefix(prefix.as_str()))
            .map(|rest| match rest.split_once('/') {
                Some((folder, _)) => format!("{folder}/"),
                None => rest.to_owned(),
            })
            .collect();
        if names.is_empty() {
            return Err(Error::NotFound("secret"));
        }
        Ok(names)
    }
}
