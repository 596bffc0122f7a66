//! The master key: the one key every seal protects. It wraps the keyring's
//! keys and nothing else, so rekeying rewrites a handful of rows.

use crate::aead::{AeadKey, Cipher};
use crate::envelope::Keyring;
use crate::secret::SecretKey;
use crate::CryptoError;

/// The master key. Like [`SecretKey`] it cannot be printed and is wiped
/// on drop.
pub struct MasterKey(SecretKey);

impl MasterKey {
    pub fn generate() -> Result<Self, CryptoError> {
        SecretKey::generate().map(MasterKey)
    }

    pub fn from_secret(key: SecretKey) -> Self {
        MasterKey(key)
    }

    pub fn secret(&self) -> &SecretKey {
        &self.0
    }

    /// Wraps keyring key `version`, bound to that version so a wrapped key
    /// cannot be passed off as another version.
    pub fn wrap_keyring_key(&self, version: u32, key: &SecretKey) -> Result<Vec<u8>, CryptoError> {
        AeadKey::new(Cipher::Aes256Gcm, &self.0).seal(&Self::aad(version), key.expose())
    }

    pub fn unwrap_keyring_key(
        &self,
        version: u32,
        wrapped: &[u8],
    ) -> Result<SecretKey, CryptoError> {
        let key = AeadKey::new(Cipher::Aes256Gcm, &self.0).open(&Self::aad(version), wrapped)?;
        SecretKey::from_slice(&key)
    }

    /// The keyring from its stored, wrapped versions. A wrong master key
    /// fails here with [`CryptoError::Tampered`].
    pub fn open_keyring<'a>(
        &self,
        wrapped: impl IntoIterator<Item = (u32, &'a [u8])>,
    ) -> Result<Keyring, CryptoError> {
        let keys = wrapped
            .into_iter()
            .map(|(version, blob)| Ok((version, self.unwrap_keyring_key(version, blob)?)))
            .collect::<Result<Vec<_>, CryptoError>>()?;
        Keyring::new(keys)
    }

    fn aad(version: u32) -> Vec<u8> {
        let mut aad = b"keyward/keyring/v1".to_vec();
        aad.extend_from_slice(&version.to_be_bytes());
        aad
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyring_keys_open_only_with_their_master_and_version() {
        let master = MasterKey::generate().unwrap();
        let key = SecretKey::generate().unwrap();
        let wrapped = master.wrap_keyring_key(1, &key).unwrap();
        assert!(master.unwrap_keyring_key(1, &wrapped).unwrap() == key);
        assert!(matches!(
            master.unwrap_keyring_key(2, &wrapped),
            Err(CryptoError::Tampered)
        ));
        let other = MasterKey::generate().unwrap();
        assert!(matches!(
            other.open_keyring([(1, wrapped.as_slice())]),
            Err(CryptoError::Tampered)
        ));
        let ring = master.open_keyring([(1, wrapped.as_slice())]).unwrap();
        assert_eq!(ring.active_version(), 1);
    }
}
