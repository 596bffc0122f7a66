//! The seal's operations. Status and unseal need no actor — shares are the
//! credential, as in Vault; initialising, sealing, rekeying, rotating and
//! rewrapping need `sys:write` and act on the whole node, every API and
//! environment at once, so they also need an actor without API or
//! environment limits: `sys:write` on a token limited to `test` does not
//! seal `live` too, nor receive the shares of a fresh seal.

use std::sync::Arc;

use keyward_core::{AdminScope, AuditAction};
pub use keyward_crypto::shamir::ShareSet;
use keyward_store::SealKind;
use serde_json::json;

use crate::seal::{RewrapReport, SealError, SealStatus};
use crate::{audit_event, now, Actor, Error, Service};

impl Service {
    /// The seal's state.
    pub fn seal_status(&self) -> SealStatus {
        self.barrier.status()
    }

    /// Initialises a `shamir` seal; the shares are returned once.
    pub async fn init_seal(
        &self,
        actor: &Actor,
        shares: u8,
        threshold: u8,
    ) -> Result<ShareSet, Error> {
        self.require_node_wide(actor)?;
        check_split(shares, threshold)?;
        Ok(self.barrier.init(shares, threshold, actor).await?)
    }

    /// Forgets the shares given so far.
    pub fn reset_unseal(&self) -> SealStatus {
        self.barrier.reset_unseal();
        self.barrier.status()
    }

    /// Takes one unseal share; the unseal that opens the seal is audited.
    pub async fn unseal(&self, share: &str) -> Result<SealStatus, Error> {
        let status = match self.barrier.unseal(share).await {
            Ok(status) => status,
            Err(e) => {
                tracing::warn!(error = %e, "an unseal share was refused");
                return Err(e.into());
            }
        };
        if !status.sealed {
            let event = audit_event(
                None,
                AuditAction::SealUnseal,
                "seal",
                json!({ "seal": status.kind.as_str() }),
                now(),
            )?;
            self.store.append_audit(&[event]).await?;
            self.verifier.seal_changed();
            tracing::info!("unsealed");
        }
        Ok(status)
    }

    /// Seals this node: the keyring leaves memory.
    pub async fn seal(&self, actor: &Actor) -> Result<SealStatus, Error> {
        self.require_node_wide(actor)?;
        let event = audit_event(Some(actor), AuditAction::SealSeal, "seal", json!({}), now())?;
        self.store.append_audit(&[event]).await?;
        self.barrier.seal().await?;
        self.verifier.seal_changed();
        tracing::warn!("sealed by an operator");
        Ok(self.barrier.status())
    }

    /// Adds a keyring version and returns it. Stored data keys move to it
    /// in the background (audited when done); the old versions keep
    /// opening them meanwhile.
    pub async fn rotate_keyring(&self, actor: &Actor) -> Result<u32, Error> {
        self.require_node_wide(actor)?;
        let event = audit_event(
            Some(actor),
            AuditAction::KeyringRotate,
            "keyring",
            json!({}),
            now(),
        )?;
        let version = self.barrier.rotate(&event).await?;
        let barrier = Arc::clone(&self.barrier);
        let store = Arc::clone(&self.store);
        tokio::spawn(async move {
            match barrier.rewrap().await {
                Ok(report) => {
                    tracing::info!(
                        moved = report.moved,
                        failed = report.failed,
                        "keyring rewrap done"
                    );
                    if let Ok(event) = audit_event(
                        None,
                        AuditAction::KeyringRewrap,
                        "keyring",
                        rewrap_details(&report),
                        now(),
                    ) {
                        if let Err(e) = store.append_audit(&[event]).await {
                            tracing::error!(error = %e, "cannot audit the rewrap");
                        }
                    }
                }
                Err(e) => tracing::error!(error = %e, "keyring rewrap stopped"),
            }
        });
        Ok(version)
    }

    /// Moves every stored data key to the newest keyring version now.
    pub async fn rewrap(&self, actor: &Actor) -> Result<RewrapReport, Error> {
        self.require_node_wide(actor)?;
        let report = self.barrier.rewrap().await?;
        let event = audit_event(
            Some(actor),
            AuditAction::KeyringRewrap,
            "keyring",
            rewrap_details(&report),
            now(),
        )?;
        self.store.append_audit(&[event]).await?;
        Ok(report)
    }

    /// Replaces the master key. A `pkcs11` seal has the HSM wrap the new
    /// one and returns no shares; a `shamir` seal needs the threshold of
    /// current shares and returns the new set, once.
    pub async fn rekey(
        &self,
        actor: &Actor,
        current: &[String],
        split: Option<(u8, u8)>,
    ) -> Result<Option<ShareSet>, Error> {
        self.require_node_wide(actor)?;
        let invalid = |e| match e {
            SealError::Invalid(message) => Error::InvalidRequest(message.into()),
            other => other.into(),
        };
        if self.barrier.kind() == SealKind::Pkcs11 {
            self.barrier.rekey_hsm(actor).await.map_err(invalid)?;
            tracing::warn!("the master key was replaced and wrapped by the HSM");
            return Ok(None);
        }
        let Some((shares, threshold)) = split else {
            return Err(Error::InvalidRequest(
                "secret_shares and secret_threshold are required".into(),
            ));
        };
        check_split(shares, threshold)?;
        let set = self
            .barrier
            .rekey(current, shares, threshold, actor)
            .await
            .map_err(invalid)?;
        tracing::warn!("the master key was replaced; the old shares no longer unseal");
        Ok(Some(set))
    }
}

/// What a rewrap did, as its audit event says it.
pub fn rewrap_details(report: &RewrapReport) -> serde_json::Value {
    json!({ "moved": report.moved, "current": report.current, "failed": report.failed })
}

impl Service {
    /// `sys:write`, on an actor without API or environment limits, and for
    /// a session a second factor within the step-up window: these act on
    /// the seal and the keyring of the whole node.
    fn require_node_wide(&self, actor: &Actor) -> Result<(), Error> {
        actor.require(AdminScope::SysWrite)?;
        if !actor.is_node_wide(AdminScope::SysWrite) {
            return Err(Error::Forbidden(
                "this acts on the whole node: it needs a token without API or environment limits",
            ));
        }
        actor.require_step_up(self.auth.step_up_window, crate::now())
    }
}

fn check_split(shares: u8, threshold: u8) -> Result<(), Error> {
    if threshold < 2 || shares < threshold {
        return Err(Error::InvalidRequest(
            "need 2 <= secret_threshold <= secret_shares <= 255".into(),
        ));
    }
    Ok(())
}
