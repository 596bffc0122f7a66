//! Envelope encryption under a versioned keyring.
//!
//! Every stored value gets a data key of its own, used once. The value is
//! sealed under the data key and the data key is wrapped under the
//! keyring's active key-encryption key (KEK), both with AES-256-GCM. Both
//! seals are bound to the record's identity — table, id, field and the
//! record's version — so a ciphertext copied into another record, field or
//! version fails to decrypt.
//!
//! An envelope is one byte string:
//!
//! ```text
//! 0x01 ‖ KEK version (u32, big-endian) ‖ wrapped data key (12 + 32 + 16)
//!      ‖ sealed value (12 + n + 16)
//! ```
//!
//! The KEK version tells which keyring key opens it; rewrapping after a
//! rotation replaces only the header and the wrapped data key, and leaves
//! the sealed value as it was.

use std::collections::BTreeMap;

use zeroize::Zeroizing;

use crate::aead::{AeadKey, Cipher, OVERHEAD};
use crate::secret::{SecretKey, KEY_LEN};
use crate::CryptoError;

const FORMAT: u8 = 1;
const HEADER_LEN: usize = 1 + 4;
const WRAPPED_LEN: usize = KEY_LEN + OVERHEAD;
const VALUE_START: usize = HEADER_LEN + WRAPPED_LEN;

/// How many encryptions a key makes before it is rotated, by default: 2^30,
/// a quarter of the 2^32 random-nonce limit of GCM. The server counts them
/// in the store.
pub const ROTATE_AFTER_WRAPS: u64 = 1 << 30;

/// Where a value is stored, bound into its ciphertext as associated data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordIdentity<'a> {
    pub table: &'a str,
    pub id: &'a str,
    pub field: &'a str,
    pub version: u64,
}

impl RecordIdentity<'_> {
    /// An unambiguous encoding: every part is length-prefixed, so no two
    /// identities share bytes.
    fn associated_data(&self, purpose: &[u8], header: &[u8]) -> Vec<u8> {
        let mut aad = Vec::with_capacity(
            32 + purpose.len() + self.table.len() + self.id.len() + self.field.len(),
        );
        for part in [
            b"keyward/envelope/v1".as_slice(),
            purpose,
            header,
            self.table.as_bytes(),
            self.id.as_bytes(),
            self.field.as_bytes(),
        ] {
            aad.extend_from_slice(&(part.len() as u32).to_be_bytes());
            aad.extend_from_slice(part);
        }
        aad.extend_from_slice(&self.version.to_be_bytes());
        aad
    }
}

/// The versioned key-encryption keys. Version numbers start at 1 and only
/// grow; new envelopes use the highest.
pub struct Keyring {
    keys: BTreeMap<u32, AeadKey>,
}

impl Keyring {
    /// A keyring of the given versions (at least one).
    pub fn new(keys: impl IntoIterator<Item = (u32, SecretKey)>) -> Result<Self, CryptoError> {
        let mut keyring = Keyring {
            keys: BTreeMap::new(),
        };
        for (version, key) in keys {
            keyring.add(version, &key)?;
        }
        if keyring.keys.is_empty() {
            return Err(CryptoError::Malformed("a keyring needs at least one key"));
        }
        Ok(keyring)
    }

    /// Adds a version, which becomes the active one if it is the highest.
    pub fn add(&mut self, version: u32, key: &SecretKey) -> Result<(), CryptoError> {
        if version == 0 || self.keys.contains_key(&version) {
            return Err(CryptoError::Malformed(
                "keyring versions start at 1 and are unique",
            ));
        }
        self.keys
            .insert(version, AeadKey::new(Cipher::Aes256Gcm, key));
        Ok(())
    }

    /// The version new envelopes are wrapped under.
    pub fn active_version(&self) -> u32 {
        self.keys.keys().next_back().copied().unwrap_or(0)
    }

    pub fn versions(&self) -> impl Iterator<Item = u32> + '_ {
        self.keys.keys().copied()
    }

    /// Seals `plaintext` for the record `identity` under a fresh data key.
    pub fn encrypt(
        &self,
        identity: &RecordIdentity<'_>,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        let data_key = SecretKey::generate()?;
        let mut out = Vec::with_capacity(VALUE_START + plaintext.len() + OVERHEAD);
        self.wrap_into(identity, &data_key, &mut out)?;
        AeadKey::new(Cipher::Aes256Gcm, &data_key).seal_into(
            &identity.associated_data(b"value", &[]),
            plaintext,
            &mut out,
        )?;
        Ok(out)
    }

    /// Opens an envelope made for `identity`.
    pub fn decrypt(
        &self,
        identity: &RecordIdentity<'_>,
        envelope: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let data_key = self.unwrap(identity, envelope)?;
        AeadKey::new(Cipher::Aes256Gcm, &data_key).open(
            &identity.associated_data(b"value", &[]),
            &envelope[VALUE_START..],
        )
    }

    /// The envelope with its data key wrapped under the active version, or
    /// `None` when it already is. The sealed value is not touched.
    pub fn rewrap(
        &self,
        identity: &RecordIdentity<'_>,
        envelope: &[u8],
    ) -> Result<Option<Vec<u8>>, CryptoError> {
        if envelope_version(envelope)? == self.active_version() {
            return Ok(None);
        }
        let data_key = self.unwrap(identity, envelope)?;
        let mut out = Vec::with_capacity(envelope.len());
        self.wrap_into(identity, &data_key, &mut out)?;
        out.extend_from_slice(&envelope[VALUE_START..]);
        Ok(Some(out))
    }

    fn wrap_into(
        &self,
        identity: &RecordIdentity<'_>,
        data_key: &SecretKey,
        out: &mut Vec<u8>,
    ) -> Result<(), CryptoError> {
        let version = self.active_version();
        let kek = self
            .keys
            .get(&version)
            .ok_or(CryptoError::UnknownKeyVersion(version))?;
        out.push(FORMAT);
        out.extend_from_slice(&version.to_be_bytes());
        let aad = identity.associated_data(b"data key", &out[out.len() - HEADER_LEN..]);
        kek.seal_into(&aad, data_key.expose(), out)
    }

    fn unwrap(
        &self,
        identity: &RecordIdentity<'_>,
        envelope: &[u8],
    ) -> Result<SecretKey, CryptoError> {
        let version = envelope_version(envelope)?;
        if envelope.len() < VALUE_START + OVERHEAD {
            return Err(CryptoError::Malformed("envelope too short"));
        }
        let kek = self
            .keys
            .get(&version)
            .ok_or(CryptoError::UnknownKeyVersion(version))?;
        let aad = identity.associated_data(b"data key", &envelope[..HEADER_LEN]);
        let data_key = kek.open(&aad, &envelope[HEADER_LEN..VALUE_START])?;
        SecretKey::from_slice(&data_key)
    }
}

/// The keyring version an envelope's data key is wrapped under.
pub fn envelope_version(envelope: &[u8]) -> Result<u32, CryptoError> {
    match envelope {
        [FORMAT, a, b, c, d, ..] => Ok(u32::from_be_bytes([*a, *b, *c, *d])),
        [] => Err(CryptoError::Malformed("empty envelope")),
        _ => Err(CryptoError::Malformed("not a Keyward envelope")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(id: &str) -> RecordIdentity<'_> {
        RecordIdentity {
            table: "secrets",
            id,
            field: "value",
            version: 1,
        }
    }

    fn keyring() -> Keyring {
        Keyring::new([(1, SecretKey::generate().unwrap())]).unwrap()
    }

    #[test]
    fn an_envelope_opens_only_for_its_own_record() {
        let ring = keyring();
        let sealed = ring.encrypt(&identity("a"), b"db password").unwrap();
        assert_eq!(
            &*ring.decrypt(&identity("a"), &sealed).unwrap(),
            b"db password"
        );
        let moved = [
            RecordIdentity {
                id: "b",
                ..identity("a")
            },
            RecordIdentity {
                table: "transit",
                ..identity("a")
            },
            RecordIdentity {
                field: "metadata",
                ..identity("a")
            },
            RecordIdentity {
                version: 2,
                ..identity("a")
            },
        ];
        for other in moved {
            assert!(matches!(
                ring.decrypt(&other, &sealed),
                Err(CryptoError::Tampered)
            ));
        }
    }

    #[test]
    fn every_flipped_bit_is_refused() {
        let ring = keyring();
        let sealed = ring.encrypt(&identity("a"), b"v").unwrap();
        for bit in 0..sealed.len() * 8 {
            let mut tampered = sealed.clone();
            tampered[bit / 8] ^= 1 << (bit % 8);
            let result = ring.decrypt(&identity("a"), &tampered);
            assert!(result.is_err(), "bit {bit} flipped went unnoticed");
        }
    }

    #[test]
    fn identities_do_not_collide_by_concatenation() {
        let a = RecordIdentity {
            table: "ab",
            id: "c",
            field: "f",
            version: 1,
        };
        let b = RecordIdentity {
            table: "a",
            id: "bc",
            field: "f",
            version: 1,
        };
        assert_ne!(a.associated_data(b"x", &[]), b.associated_data(b"x", &[]));
    }

    #[test]
    fn rotation_keeps_old_envelopes_readable_and_rewrap_moves_them() {
        let mut ring = keyring();
        let old = ring.encrypt(&identity("a"), b"v1 data").unwrap();
        ring.add(2, &SecretKey::generate().unwrap()).unwrap();
        assert_eq!(ring.active_version(), 2);
        assert_eq!(&*ring.decrypt(&identity("a"), &old).unwrap(), b"v1 data");
        let new = ring.encrypt(&identity("b"), b"v2 data").unwrap();
        assert_eq!(envelope_version(&new).unwrap(), 2);

        let moved = ring.rewrap(&identity("a"), &old).unwrap().unwrap();
        assert_eq!(envelope_version(&moved).unwrap(), 2);
        assert_eq!(&moved[VALUE_START..], &old[VALUE_START..]);
        assert_eq!(&*ring.decrypt(&identity("a"), &moved).unwrap(), b"v1 data");
        assert!(ring.rewrap(&identity("a"), &moved).unwrap().is_none());

        // Without version 1, only the rewrapped envelope opens.
        let v2_only = Keyring::new([]).err();
        assert!(v2_only.is_some());
        let mut header_swapped = old.clone();
        header_swapped[1..5].copy_from_slice(&2u32.to_be_bytes());
        assert!(matches!(
            ring.decrypt(&identity("a"), &header_swapped),
            Err(CryptoError::Tampered)
        ));
    }

    #[test]
    fn unknown_versions_and_garbage_are_typed_errors() {
        let ring = keyring();
        let mut sealed = ring.encrypt(&identity("a"), b"v").unwrap();
        sealed[1..5].copy_from_slice(&9u32.to_be_bytes());
        assert!(matches!(
            ring.decrypt(&identity("a"), &sealed),
            Err(CryptoError::UnknownKeyVersion(9))
        ));
        for garbage in [&b""[..], b"\x02abcd", b"\x01\0\0\0\x01short"] {
            assert!(matches!(
                ring.decrypt(&identity("a"), garbage),
                Err(CryptoError::Malformed(_))
            ));
        }
    }
}
