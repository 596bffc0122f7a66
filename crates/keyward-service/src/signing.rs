//! Signing keys of API keys and owners' second factors: made, sealed and
//! opened here; checked at verify by `keyward_verify::proof`.
//!
//! An HMAC signing secret is made by the server, shown once beside the key
//! and kept as a keyring envelope bound to its key. An Ed25519 key is the
//! customer's public key alone: nothing secret is stored for it. An
//! owner's TOTP secret is an envelope bound to the owner, pending until a
//! first code confirms it.

use std::sync::Arc;

use base64::Engine as _;
use keyward_core::{AdminScope, AuditAction, KeyId, KeySigning, SigningAlgorithm};
use keyward_crypto::totp;
use keyward_verify::{Opened, Opener};
use serde_json::json;
use zeroize::Zeroizing;

use crate::records::{owner_totp_identity, signing_identity};
use crate::seal::{Barrier, SealError};
use crate::users::TotpEnrolment;
use crate::{audit_event, now, Actor, Error, Service};

/// A signing key as a caller asks for it.
#[derive(Debug, Clone)]
pub struct NewSigning {
    pub algorithm: SigningAlgorithm,
    /// [`KeySigning::DEFAULT_WINDOW_MS`] when absent.
    pub window_ms: Option<u64>,
    /// Ed25519 only: the customer's public key, base64 (32 bytes) or PEM
    /// (SubjectPublicKeyInfo).
    pub public_key: Option<String>,
}

/// Bytes of a new HMAC signing secret's randomness.
const SECRET_BYTES: usize = 32;

/// The DER of an Ed25519 SubjectPublicKeyInfo before its 32 key bytes
/// (RFC 8410 §4).
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

impl Service {
    /// The signing key `new` asks for, for key `id`, and for HMAC its
    /// secret's text, to show once. The HMAC key is the UTF-8 bytes of
    /// that text, as exchange clients use an API secret.
    pub(crate) async fn make_signing(
        &self,
        id: &KeyId,
        new: &NewSigning,
    ) -> Result<(KeySigning, Option<Zeroizing<String>>), Error> {
        let window_ms =
            KeySigning::check_window(new.window_ms.unwrap_or(KeySigning::DEFAULT_WINDOW_MS))?;
        match new.algorithm {
            SigningAlgorithm::Ed25519 => {
                let Some(text) = &new.public_key else {
                    return Err(Error::InvalidRequest(
                        "signing.public_key is required for ed25519: the customer's public key, base64 or PEM".into(),
                    ));
                };
                Ok((
                    KeySigning {
                        algorithm: SigningAlgorithm::Ed25519,
                        window_ms,
                        public_key: Some(parse_public_key(text)?),
                        sealed_secret: None,
                    },
                    None,
                ))
            }
            SigningAlgorithm::HmacSha256 => {
                if new.public_key.is_some() {
                    return Err(Error::InvalidRequest(
                        "signing.public_key is for ed25519 only: the server makes hmac-sha256 secrets".into(),
                    ));
                }
                let mut random = Zeroizing::new([0u8; SECRET_BYTES]);
                getrandom_fill(&mut random[..])?;
                let secret = Zeroizing::new(base16ct::lower::encode_string(&random[..]));
                let keyring = self.barrier.keyring()?;
                self.barrier.spend_keyring(1).await?;
                let sealed = keyring
                    .encrypt(&signing_identity(id.as_str()), secret.as_bytes())
                    .map_err(Error::internal)?;
                Ok((
                    KeySigning {
                        algorithm: SigningAlgorithm::HmacSha256,
                        window_ms,
                        public_key: None,
                        sealed_secret: Some(sealed),
                    },
                    Some(secret),
                ))
            }
        }
    }

    /// Enrols a TOTP secret for `owner`, the provider's customer, pending
    /// until [`Service::confirm_owner_totp`]; a confirmed one stays in force
    /// until then.
    pub async fn enrol_owner_totp(
        &self,
        actor: &Actor,
        owner: &str,
    ) -> Result<TotpEnrolment, Error> {
        self.require_owner(actor, owner).await?;
        let secret = totp::Secret::generate()?;
        let keyring = self.barrier.keyring()?;
        self.barrier.spend_keyring(1).await?;
        let sealed = keyring
            .encrypt(&owner_totp_identity(owner), secret.as_bytes())
            .map_err(Error::internal)?;
        let now = now();
        let event = audit_event(
            Some(actor),
            AuditAction::OwnerTotpEnroll,
            owner,
            json!({}),
            now,
        )?;
        self.store
            .set_owner_totp_pending(owner, &sealed, now, &event)
            .await?;
        Ok(TotpEnrolment {
            secret: secret.base32(),
            otpauth_uri: secret.otpauth_uri(&self.auth.issuer, owner),
        })
    }

    /// Confirms the owner's pending TOTP secret with a first code; from
    /// then on critical scopes of the owner's keys need a code.
    pub async fn confirm_owner_totp(
        &self,
        actor: &Actor,
        owner: &str,
        otp: &str,
    ) -> Result<(), Error> {
        self.require_owner(actor, owner).await?;
        let factor = self.store.get_owner_factor(owner).await?;
        let Some(pending) = factor.as_ref().and_then(|f| f.totp_pending.as_deref()) else {
            return Err(Error::Conflict(
                "no TOTP enrolment is waiting for this owner: POST /v1/owners/{owner}/totp first",
            ));
        };
        let opened = self
            .barrier
            .open_envelope(&owner_totp_identity(owner), pending)
            .await?;
        let secret = totp::Secret::from_bytes(opened.to_vec());
        let now = now();
        let after = factor
            .as_ref()
            .and_then(|f| f.totp_last_step)
            .and_then(|s| u64::try_from(s).ok());
        let Some(step) = secret.check(otp, now.unix_timestamp().max(0).unsigned_abs(), after)
        else {
            return Err(Error::InvalidRequest(
                "the code does not match the enrolled secret (check the device's clock)".into(),
            ));
        };
        let event = audit_event(
            Some(actor),
            AuditAction::OwnerTotpConfirm,
            owner,
            json!({}),
            now,
        )?;
        self.store
            .confirm_owner_totp(owner, i64::try_from(step).unwrap_or(i64::MAX), now, &event)
            .await?;
        self.verifier.owner_changed(owner);
        Ok(())
    }

    /// Removes the owner's second factor: critical scopes of its keys are
    /// refused (`MFA_REQUIRED`) until a new one is confirmed.
    pub async fn remove_owner_totp(&self, actor: &Actor, owner: &str) -> Result<(), Error> {
        self.require_owner(actor, owner).await?;
        let now = now();
        actor.require_step_up(self.auth.step_up_window, now)?;
        let event = audit_event(
            Some(actor),
            AuditAction::OwnerTotpRemove,
            owner,
            json!({}),
            now,
        )?;
        match self.store.remove_owner_totp(owner, &event).await {
            Err(keyward_store::StoreError::NotFound) => return Err(Error::NotFound("owner")),
            other => other?,
        }
        self.verifier.owner_changed(owner);
        Ok(())
    }

    /// An owner's second factor is the provider's to set for keys it
    /// issues: `keys:write`, over every key of the owner.
    async fn require_owner(&self, actor: &Actor, owner: &str) -> Result<(), Error> {
        actor.require(AdminScope::KeysWrite)?;
        keyward_core::model::check_text("owner", owner, 256)?;
        if !self.owner_within_reach(actor, owner).await? {
            return Err(Error::NotFound("owner"));
        }
        Ok(())
    }
}

pub(crate) fn getrandom_fill(buf: &mut [u8]) -> Result<(), Error> {
    getrandom::fill(buf).map_err(|_| Error::internal(std::io::Error::other("no randomness")))
}

/// An Ed25519 public key from base64 (standard or URL-safe, padded or not)
/// of its 32 bytes, or from a PEM `PUBLIC KEY` (SubjectPublicKeyInfo).
pub fn parse_public_key(text: &str) -> Result<[u8; 32], Error> {
    let bad = || {
        Error::InvalidRequest(
            "signing.public_key must be an Ed25519 public key: base64 of its 32 bytes, or PEM"
                .into(),
        )
    };
    let text = text.trim();
    let bytes = if let Some(body) = text.strip_prefix("-----BEGIN PUBLIC KEY-----") {
        let body = body
            .strip_suffix("-----END PUBLIC KEY-----")
            .ok_or_else(bad)?;
        let body: String = body.split_whitespace().collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(body)
            .map_err(|_| bad())?;
        der.strip_prefix(&ED25519_SPKI_PREFIX[..])
            .map(<[u8]>::to_vec)
            .ok_or_else(bad)?
    } else {
        let unpadded = text.trim_end_matches('=');
        base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(unpadded)
            .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(unpadded))
            .map_err(|_| bad())?
    };
    let key: [u8; 32] = bytes.try_into().map_err(|_| bad())?;
    // A point that is not on the curve, or of small order, verifies
    // nothing (or everything, for weak verifiers): refuse it now.
    match ed25519_dalek::VerifyingKey::from_bytes(&key) {
        Ok(public) if !public.is_weak() => Ok(key),
        _ => Err(bad()),
    }
}

/// Opens verification's envelopes with this node's keyring.
pub struct KeyringOpener(pub Arc<Barrier>);

#[async_trait::async_trait]
impl Opener for KeyringOpener {
    async fn signing_secret(&self, key: &KeyId, sealed: &[u8]) -> Opened {
        opened(
            self.0
                .open_envelope(&signing_identity(key.as_str()), sealed)
                .await,
        )
    }

    async fn owner_totp(&self, owner: &str, sealed: &[u8]) -> Opened {
        opened(
            self.0
                .open_envelope(&owner_totp_identity(owner), sealed)
                .await,
        )
    }
}

fn opened(result: Result<Zeroizing<Vec<u8>>, SealError>) -> Opened {
    match result {
        Ok(secret) => Opened::Secret(secret),
        Err(SealError::Sealed | SealError::NotInitialized) => Opened::Sealed,
        Err(e) => {
            tracing::error!(error = %e, "an envelope of verification did not open");
            Opened::Unreadable
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_keys_are_read_from_base64_and_pem() {
        // RFC 8032's first test key.
        let hex = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
        let bytes: Vec<u8> = (0..32)
            .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap_or(0))
            .collect();
        let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
        assert_eq!(
            parse_public_key(&b64).ok().map(|k| k.to_vec()),
            Some(bytes.clone())
        );
        let mut der = ED25519_SPKI_PREFIX.to_vec();
        der.extend_from_slice(&bytes);
        let pem = format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(&der)
        );
        assert_eq!(parse_public_key(&pem).ok().map(|k| k.to_vec()), Some(bytes));
        assert!(parse_public_key("AAAA").is_err());
        // The identity point is of small order.
        let mut weak = [0u8; 32];
        weak[0] = 1;
        let weak = base64::engine::general_purpose::STANDARD.encode(weak);
        assert!(parse_public_key(&weak).is_err());
    }
}
