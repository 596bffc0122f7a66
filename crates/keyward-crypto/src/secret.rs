//! Key material: 256-bit keys that cannot be printed and are wiped when
//! dropped.

use subtle::ConstantTimeEq;
use zeroize::Zeroize;

use crate::CryptoError;

/// Length of every symmetric key Keyward holds: master key, keyring keys,
/// data keys.
pub const KEY_LEN: usize = 32;

/// A 256-bit secret key.
///
/// It has no `Debug`, `Display`, `Clone` or `Serialize`: the bytes leave it
/// only through [`SecretKey::expose`], and they are zeroed on drop.
pub struct SecretKey([u8; KEY_LEN]);

impl Drop for SecretKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl SecretKey {
    /// A fresh key from the OS CSPRNG.
    pub fn generate() -> Result<Self, CryptoError> {
        let mut bytes = [0u8; KEY_LEN];
        fill_random(&mut bytes)?;
        Ok(SecretKey(bytes))
    }

    /// Takes `bytes` as a key, wiping the caller's copy.
    pub fn from_bytes(bytes: &mut [u8; KEY_LEN]) -> Self {
        let key = SecretKey(*bytes);
        bytes.zeroize();
        key
    }

    /// A key from a slice, which must be exactly [`KEY_LEN`] bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, CryptoError> {
        let array: [u8; KEY_LEN] = bytes
            .try_into()
            .map_err(|_| CryptoError::Malformed("a key must be 32 bytes"))?;
        Ok(SecretKey(array))
    }

    /// The key's bytes, for handing to a cipher.
    pub fn expose(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// A copy, for the rare owner that needs two (a share split keeps the
    /// original). Named so that copying key material is always visible.
    pub fn duplicate(&self) -> Self {
        SecretKey(self.0)
    }
}

impl PartialEq for SecretKey {
    /// Constant-time, so comparing keys leaks nothing about where they differ.
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl Eq for SecretKey {}

/// Fills `bytes` from the OS CSPRNG.
pub fn fill_random(bytes: &mut [u8]) -> Result<(), CryptoError> {
    getrandom::fill(bytes).map_err(|_| CryptoError::Random)
}
