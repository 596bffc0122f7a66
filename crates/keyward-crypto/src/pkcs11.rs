//! The `pkcs11` seal: the master key wrapped by an AES-256 key that never
//! leaves a hardware security module, reached through PKCS#11 (`cryptoki`).
//!
//! The store keeps only the wrapped master key; the server asks the HSM to
//! unwrap it at start, so it unseals itself without operators. The
//! wrapping is AES-256-GCM inside the HSM with a random 96-bit nonce and a
//! fixed associated-data label:
//!
//! ```text
//! wrapped = nonce (12) ‖ ciphertext (32) ‖ tag (16)
//! ```

use std::path::PathBuf;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use zeroize::Zeroizing;

use crate::aead::NONCE_LEN;
use crate::master::MasterKey;
use crate::secret::{fill_random, SecretKey, KEY_LEN};
use crate::CryptoError;

const AAD: &[u8] = b"keyward/pkcs11/master-key/v1";
const WRAPPED_LEN: usize = NONCE_LEN + KEY_LEN + 16;

/// Where the HSM is and which key in it wraps the master key.
pub struct HsmConfig {
    /// The vendor's PKCS#11 module, e.g. `/usr/lib/softhsm/libsofthsm2.so`.
    pub module: PathBuf,
    /// The label of the token (the HSM partition) to use.
    pub token_label: String,
    /// The token's user PIN.
    pub pin: Zeroizing<String>,
    /// The label of the AES-256 wrapping key; created if absent.
    pub key_label: String,
}

/// An open connection to the HSM, logged in as the token's user.
pub struct Hsm {
    // Declared before the context so it is closed first.
    session: Session,
    key: ObjectHandle,
    context: Pkcs11,
}

impl Hsm {
    /// Loads the module, finds the token by label, logs in, and finds the
    /// wrapping key — generating it inside the HSM (sensitive, not
    /// extractable) when `create_key` is set and it does not exist yet.
    pub fn open(config: &HsmConfig, create_key: bool) -> Result<Hsm, CryptoError> {
        let context = Pkcs11::new(&config.module).map_err(|e| {
            CryptoError::Storage(format!(
                "cannot load PKCS#11 module {}: {e}",
                config.module.display()
            ))
        })?;
        match context.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            Ok(()) => {}
            // Another user of the module in this process initialised it.
            Err(cryptoki::error::Error::Pkcs11(
                cryptoki::error::RvError::CryptokiAlreadyInitialized,
                _,
            )) => {}
            Err(e) => return Err(hsm("cannot initialise the module", e)),
        }
        let slot = find_token(&context, &config.token_label)?;
        let session = context
            .open_rw_session(slot)
            .map_err(|e| hsm("cannot open a session", e))?;
        let pin = AuthPin::new(config.pin.as_str().into());
        session
            .login(UserType::User, Some(&pin))
            .map_err(|e| hsm("cannot log in to the token", e))?;
        let template = [
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::Label(config.key_label.as_bytes().to_vec()),
        ];
        let found = session
            .find_objects(&template)
            .map_err(|e| hsm("cannot search the token", e))?;
        let key = match (found.as_slice(), create_key) {
            ([key], _) => *key,
            ([], true) => session
                .generate_key(
                    &Mechanism::AesKeyGen,
                    &[
                        Attribute::Token(true),
                        Attribute::Private(true),
                        Attribute::Sensitive(true),
                        Attribute::Extractable(false),
                        Attribute::Encrypt(true),
                        Attribute::Decrypt(true),
                        Attribute::ValueLen((KEY_LEN as u64).into()),
                        Attribute::Label(config.key_label.as_bytes().to_vec()),
                    ],
                )
                .map_err(|e| hsm("cannot generate the wrapping key", e))?,
            ([], false) => {
                return Err(CryptoError::Storage(format!(
                    "the HSM token has no key labelled {:?}",
                    config.key_label
                )))
            }
            (_, _) => {
                return Err(CryptoError::Storage(format!(
                    "the HSM token has several keys labelled {:?}",
                    config.key_label
                )))
            }
        };
        Ok(Hsm {
            session,
            key,
            context,
        })
    }

    /// Wraps the master key for the store.
    pub fn wrap(&self, master: &MasterKey) -> Result<Vec<u8>, CryptoError> {
        let mut nonce = [0u8; NONCE_LEN];
        fill_random(&mut nonce)?;
        let mut iv = nonce;
        let params =
            GcmParams::new(&mut iv, AAD, 128.into()).map_err(|e| hsm("bad GCM parameters", e))?;
        let sealed = self
            .session
            .encrypt(
                &Mechanism::AesGcm(params),
                self.key,
                master.secret().expose(),
            )
            .map_err(|e| hsm("cannot wrap the master key", e))?;
        let mut out = Vec::with_capacity(WRAPPED_LEN);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        if out.len() != WRAPPED_LEN {
            return Err(CryptoError::Storage(
                "the HSM returned a wrapped key of the wrong length".into(),
            ));
        }
        Ok(out)
    }

    /// Unwraps a master key wrapped by [`Hsm::wrap`] with the same HSM key.
    pub fn unwrap(&self, wrapped: &[u8]) -> Result<MasterKey, CryptoError> {
        if wrapped.len() != WRAPPED_LEN {
            return Err(CryptoError::Malformed("a wrapped master key is 60 bytes"));
        }
        let mut iv = [0u8; NONCE_LEN];
        iv.copy_from_slice(&wrapped[..NONCE_LEN]);
        let params =
            GcmParams::new(&mut iv, AAD, 128.into()).map_err(|e| hsm("bad GCM parameters", e))?;
        let opened = self
            .session
            .decrypt(&Mechanism::AesGcm(params), self.key, &wrapped[NONCE_LEN..])
            .map(Zeroizing::new)
            // A changed blob and the wrong HSM key look alike to PKCS#11.
            .map_err(|_| CryptoError::Tampered)?;
        SecretKey::from_slice(&opened).map(MasterKey::from_secret)
    }

    /// Logs out and releases the module.
    pub fn close(self) {
        let Hsm {
            session, context, ..
        } = self;
        let _ = session.logout();
        drop(session);
        let _ = context.finalize();
    }
}

fn find_token(context: &Pkcs11, label: &str) -> Result<Slot, CryptoError> {
    let slots = context
        .get_slots_with_initialized_token()
        .map_err(|e| hsm("cannot list slots", e))?;
    for slot in slots {
        let info = context
            .get_token_info(slot)
            .map_err(|e| hsm("cannot read token information", e))?;
        if info.label().trim() == label {
            return Ok(slot);
        }
    }
    Err(CryptoError::Storage(format!(
        "no initialised HSM token labelled {label:?}"
    )))
}

fn hsm(what: &str, e: cryptoki::error::Error) -> CryptoError {
    CryptoError::Storage(format!("HSM: {what}: {e}"))
}
