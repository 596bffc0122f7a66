//! Keyward's protected storage: where the master key lives (seals), the
//! versioned keyring it protects, and envelope encryption of stored values.
//!
//! - [`secret`]: [`SecretKey`], 256-bit key material that cannot be printed
//!   and is wiped on drop.
//! - [`aead`]: AES-256-GCM and ChaCha20-Poly1305 with random 96-bit nonces.
//! - [`envelope`]: the [`Keyring`] of key-encryption keys and envelope
//!   encryption bound to a record's identity.
//! - [`master`]: the [`MasterKey`] and how it wraps keyring keys.
//! - [`shamir`]: splitting the master key into shares and unsealing from
//!   them, one share at a time.
//! - [`file_seal`]: the master key in a 0600 file (the single-machine
//!   default).
//! - [`pkcs11`]: the master key wrapped by a key inside an HSM.
//! - [`httpsig`]: signed HTTP requests, RFC 9421 and Binance's profile,
//!   checked against a key without I/O or clocks.
//! - [`partner`]: signatures of secret-scanning partners' leak reports.
//! - [`password`]: admin users' passwords under Argon2id.
//! - [`totp`]: RFC 6238 one-time codes and recovery codes.
//! - [`transit`]: named, versioned keys that encrypt, sign and MAC for
//!   callers who never see them.
//!
//! Nothing here logs, and no error carries key material.

#![forbid(unsafe_code)]

pub mod aead;
pub mod envelope;
pub mod file_seal;
mod hex;
pub mod httpsig;
pub mod master;
pub mod partner;
pub mod password;
pub mod pkcs11;
pub mod secret;
pub mod shamir;
pub mod totp;
pub mod transit;

pub use aead::{AeadKey, Cipher};
pub use envelope::{envelope_version, Keyring, RecordIdentity};
pub use master::MasterKey;
pub use secret::SecretKey;

/// Why a cryptographic operation failed. No variant carries key material
/// or plaintext.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// Authentication failed: the ciphertext or its associated data was
    /// changed, it belongs to another record, or the key is wrong.
    #[error("ciphertext failed authentication (tampered, moved, or wrong key)")]
    Tampered,
    /// The ciphertext names a key version this keyring does not hold.
    #[error("no key of version {0}")]
    UnknownKeyVersion(u32),
    /// The input does not have the expected shape.
    #[error("malformed input: {0}")]
    Malformed(&'static str),
    /// The operating system's random number generator failed.
    #[error("the OS random number generator failed")]
    Random,
    /// A transit request the key cannot serve.
    #[error(transparent)]
    Transit(transit::TransitError),
    /// A seal's storage (file or HSM) could not be used.
    #[error("seal storage: {0}")]
    Storage(String),
}
