//! Transit: named, versioned keys that encrypt, sign and MAC for callers
//! who never see the key material (Vault's transit engine).
//!
//! Key types: `aes256-gcm96` and `chacha20-poly1305` (encryption, data
//! keys), `ed25519`, `ecdsa-p256` and `ecdsa-secp256k1` (signatures; the
//! last for Ethereum- and Bitcoin-style payloads, signing a 32-byte hash the
//! caller computed, e.g. Keccak-256, with `prehashed`), and `hmac`. Every
//! type also computes HMACs, with a key derived from its material.
//!
//! Ciphertexts, signatures and HMACs are text: `kw:v{version}:{base64}`,
//! the version naming the key version that made them. Encryption binds the
//! key's name and version as associated data. A key created `derived`
//! encrypts with a per-context key: HKDF-SHA256 of its material with the
//! caller's `context`.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};
use zeroize::Zeroizing;

use crate::aead::{AeadKey, Cipher};
use crate::secret::{fill_random, SecretKey, KEY_LEN};
use crate::CryptoError;

/// The kinds of transit key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    Aes256Gcm96,
    ChaCha20Poly1305,
    Ed25519,
    EcdsaP256,
    EcdsaSecp256k1,
    Hmac,
}

impl KeyType {
    pub const ALL: [KeyType; 6] = [
        KeyType::Aes256Gcm96,
        KeyType::ChaCha20Poly1305,
        KeyType::Ed25519,
        KeyType::EcdsaP256,
        KeyType::EcdsaSecp256k1,
        KeyType::Hmac,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::Aes256Gcm96 => "aes256-gcm96",
            KeyType::ChaCha20Poly1305 => "chacha20-poly1305",
            KeyType::Ed25519 => "ed25519",
            KeyType::EcdsaP256 => "ecdsa-p256",
            KeyType::EcdsaSecp256k1 => "ecdsa-secp256k1",
            KeyType::Hmac => "hmac",
        }
    }

    pub fn parse(s: &str) -> Option<KeyType> {
        KeyType::ALL.into_iter().find(|k| k.as_str() == s)
    }

    pub fn encrypts(self) -> bool {
        matches!(self, KeyType::Aes256Gcm96 | KeyType::ChaCha20Poly1305)
    }

    pub fn signs(self) -> bool {
        matches!(
            self,
            KeyType::Ed25519 | KeyType::EcdsaP256 | KeyType::EcdsaSecp256k1
        )
    }

    fn cipher(self) -> Option<Cipher> {
        match self {
            KeyType::Aes256Gcm96 => Some(Cipher::Aes256Gcm),
            KeyType::ChaCha20Poly1305 => Some(Cipher::ChaCha20Poly1305),
            _ => None,
        }
    }
}

/// Why a transit operation was refused. The caller's fault, all of them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransitError {
    #[error("this key type cannot {0}")]
    Unsupported(&'static str),
    #[error("a derived key needs a context")]
    ContextRequired,
    #[error("a context is only accepted by derived keys")]
    ContextNotAllowed,
    #[error("malformed {0}")]
    Malformed(&'static str),
    #[error("the ciphertext could not be decrypted")]
    Decrypt,
    #[error("a prehashed input must be a 32-byte hash")]
    BadHash,
}

/// One version of a transit key. No `Debug`; wiped on drop.
pub struct KeyVersion {
    kind: KeyType,
    material: Zeroizing<Vec<u8>>,
    /// The cipher with its key schedule, built on first use by keys that
    /// are not derived: per request, it would cost more than sealing a
    /// short message.
    cipher: std::sync::OnceLock<AeadKey>,
}

impl KeyVersion {
    /// New material for `kind` from the OS CSPRNG.
    pub fn generate(kind: KeyType) -> Result<KeyVersion, CryptoError> {
        let mut material = Zeroizing::new(vec![0u8; KEY_LEN]);
        loop {
            fill_random(&mut material)?;
            // A P-256 or secp256k1 scalar must be below the group order;
            // 32 random bytes almost always are.
            let valid = match kind {
                KeyType::EcdsaP256 => p256::ecdsa::SigningKey::from_slice(&material).is_ok(),
                KeyType::EcdsaSecp256k1 => k256::ecdsa::SigningKey::from_slice(&material).is_ok(),
                _ => true,
            };
            if valid {
                return Ok(KeyVersion {
                    kind,
                    material,
                    cipher: std::sync::OnceLock::new(),
                });
            }
        }
    }

    /// A version from stored material.
    pub fn from_material(kind: KeyType, material: Zeroizing<Vec<u8>>) -> Result<Self, CryptoError> {
        if material.len() != KEY_LEN {
            return Err(CryptoError::Malformed("transit key material is 32 bytes"));
        }
        Ok(KeyVersion {
            kind,
            material,
            cipher: std::sync::OnceLock::new(),
        })
    }

    /// The material, for the store to seal.
    pub fn material(&self) -> &[u8] {
        &self.material
    }

    /// The public key of a signing key: Ed25519's 32 bytes, or the SEC1
    /// compressed point of an ECDSA key.
    pub fn public_key(&self) -> Option<Vec<u8>> {
        match self.kind {
            KeyType::Ed25519 => Some(self.ed25519().verifying_key().to_bytes().to_vec()),
            KeyType::EcdsaP256 => p256::ecdsa::SigningKey::from_slice(&self.material)
                .ok()
                .map(|k| k.verifying_key().to_encoded_point(true).as_bytes().to_vec()),
            KeyType::EcdsaSecp256k1 => k256::ecdsa::SigningKey::from_slice(&self.material)
                .ok()
                .map(|k| k.verifying_key().to_encoded_point(true).as_bytes().to_vec()),
            _ => None,
        }
    }

    fn ed25519(&self) -> ed25519_dalek::SigningKey {
        let mut seed = [0u8; KEY_LEN];
        seed.copy_from_slice(&self.material);
        let key = ed25519_dalek::SigningKey::from_bytes(&seed);
        zeroize::Zeroize::zeroize(&mut seed);
        key
    }

    fn encryption_key(
        &self,
        derived: bool,
        context: Option<&[u8]>,
    ) -> Result<AeadKey, CryptoError> {
        let cipher = self
            .kind
            .cipher()
            .ok_or(TransitError::Unsupported("encrypt"))?;
        let key = match (derived, context) {
            (true, Some(context)) => derive(&self.material, b"keyward/transit/derive/v1", context)?,
            (true, None) => return Err(TransitError::ContextRequired.into()),
            (false, Some(_)) => return Err(TransitError::ContextNotAllowed.into()),
            (false, None) => SecretKey::from_slice(&self.material)?,
        };
        Ok(AeadKey::new(cipher, &key))
    }

    /// Runs `f` with the cipher for `context`: the cached one for keys
    /// that are not derived, a freshly derived one otherwise.
    fn with_cipher<T>(
        &self,
        derived: bool,
        context: Option<&[u8]>,
        f: impl FnOnce(&AeadKey) -> Result<T, CryptoError>,
    ) -> Result<T, CryptoError> {
        if !derived && context.is_none() {
            if let Some(cipher) = self.cipher.get() {
                return f(cipher);
            }
            let cipher = self.encryption_key(false, None)?;
            return f(self.cipher.get_or_init(|| cipher));
        }
        f(&self.encryption_key(derived, context)?)
    }

    /// Encrypts under this version; `aad` binds the key's name and version.
    pub fn encrypt(
        &self,
        aad: &[u8],
        derived: bool,
        context: Option<&[u8]>,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        self.with_cipher(derived, context, |c| c.seal(aad, plaintext))
    }

    pub fn decrypt(
        &self,
        aad: &[u8],
        derived: bool,
        context: Option<&[u8]>,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        self.with_cipher(derived, context, |c| c.open(aad, sealed))
            .map_err(|e| match e {
                CryptoError::Tampered | CryptoError::Malformed(_) => TransitError::Decrypt.into(),
                other => other,
            })
    }

    /// Signs `input` (or, for ECDSA with `prehashed`, the 32-byte hash the
    /// caller made). ECDSA signatures are ASN.1 DER by default, `raw`
    /// gives `r ‖ s`, and `recoverable` on secp256k1 `r ‖ s ‖ v` as
    /// Ethereum expects.
    pub fn sign(
        &self,
        input: &[u8],
        prehashed: bool,
        marshaling: Marshaling,
    ) -> Result<Vec<u8>, CryptoError> {
        use ed25519_dalek::Signer;
        match self.kind {
            KeyType::Ed25519 => {
                if prehashed {
                    return Err(TransitError::Unsupported("sign prehashed input").into());
                }
                Ok(self.ed25519().sign(input).to_bytes().to_vec())
            }
            KeyType::EcdsaP256 => {
                let key = p256::ecdsa::SigningKey::from_slice(&self.material)
                    .map_err(|_| CryptoError::Malformed("P-256 key"))?;
                let hash = ecdsa_hash(input, prehashed)?;
                let signature: p256::ecdsa::Signature =
                    p256::ecdsa::signature::hazmat::PrehashSigner::sign_prehash(&key, &hash)
                        .map_err(|_| CryptoError::Malformed("P-256 signing failed"))?;
                match marshaling {
                    Marshaling::Asn1 => Ok(signature.to_der().as_bytes().to_vec()),
                    Marshaling::Raw => Ok(signature.to_bytes().to_vec()),
                    Marshaling::Recoverable => {
                        Err(TransitError::Unsupported("make recoverable signatures").into())
                    }
                }
            }
            KeyType::EcdsaSecp256k1 => {
                let key = k256::ecdsa::SigningKey::from_slice(&self.material)
                    .map_err(|_| CryptoError::Malformed("secp256k1 key"))?;
                let hash = ecdsa_hash(input, prehashed)?;
                let (signature, recovery) = key
                    .sign_prehash_recoverable(&hash)
                    .map_err(|_| CryptoError::Malformed("secp256k1 signing failed"))?;
                match marshaling {
                    Marshaling::Asn1 => Ok(signature.to_der().as_bytes().to_vec()),
                    Marshaling::Raw => Ok(signature.to_bytes().to_vec()),
                    Marshaling::Recoverable => {
                        let mut out = signature.to_bytes().to_vec();
                        out.push(recovery.to_byte());
                        Ok(out)
                    }
                }
            }
            _ => Err(TransitError::Unsupported("sign").into()),
        }
    }

    /// Whether `signature` (in the given marshaling) signs `input`.
    pub fn verify(
        &self,
        input: &[u8],
        prehashed: bool,
        marshaling: Marshaling,
        signature: &[u8],
    ) -> Result<bool, CryptoError> {
        use p256::ecdsa::signature::hazmat::PrehashVerifier;
        match self.kind {
            KeyType::Ed25519 => {
                let Ok(signature) = ed25519_dalek::Signature::from_slice(signature) else {
                    return Ok(false);
                };
                Ok(self
                    .ed25519()
                    .verifying_key()
                    .verify_strict(input, &signature)
                    .is_ok())
            }
            KeyType::EcdsaP256 => {
                let key = p256::ecdsa::SigningKey::from_slice(&self.material)
                    .map_err(|_| CryptoError::Malformed("P-256 key"))?;
                let hash = ecdsa_hash(input, prehashed)?;
                let parsed = match marshaling {
                    Marshaling::Asn1 => p256::ecdsa::Signature::from_der(signature),
                    Marshaling::Raw => p256::ecdsa::Signature::from_slice(signature),
                    Marshaling::Recoverable => return Ok(false),
                };
                Ok(parsed.is_ok_and(|s| key.verifying_key().verify_prehash(&hash, &s).is_ok()))
            }
            KeyType::EcdsaSecp256k1 => {
                let key = k256::ecdsa::SigningKey::from_slice(&self.material)
                    .map_err(|_| CryptoError::Malformed("secp256k1 key"))?;
                let hash = ecdsa_hash(input, prehashed)?;
                let parsed = match marshaling {
                    Marshaling::Asn1 => k256::ecdsa::Signature::from_der(signature),
                    Marshaling::Raw => k256::ecdsa::Signature::from_slice(signature),
                    Marshaling::Recoverable if signature.len() == 65 => {
                        k256::ecdsa::Signature::from_slice(&signature[..64])
                    }
                    Marshaling::Recoverable => return Ok(false),
                };
                Ok(parsed.is_ok_and(|s| key.verifying_key().verify_prehash(&hash, &s).is_ok()))
            }
            _ => Err(TransitError::Unsupported("verify signatures").into()),
        }
    }

    /// HMAC of `input` with SHA-256 or SHA-512. `hmac` keys use their
    /// material; other types a key derived from it.
    pub fn hmac(&self, sha512: bool, input: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let derived;
        let key: &[u8] = if self.kind == KeyType::Hmac {
            &self.material
        } else {
            derived = derive(&self.material, b"keyward/transit/hmac/v1", b"")?;
            derived.expose()
        };
        Ok(if sha512 {
            let mut mac = <Hmac<Sha512> as Mac>::new_from_slice(key)
                .map_err(|_| CryptoError::Malformed("HMAC key"))?;
            mac.update(input);
            mac.finalize().into_bytes().to_vec()
        } else {
            let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
                .map_err(|_| CryptoError::Malformed("HMAC key"))?;
            mac.update(input);
            mac.finalize().into_bytes().to_vec()
        })
    }
}

/// How ECDSA signatures are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marshaling {
    /// ASN.1 DER (Vault's default).
    Asn1,
    /// `r ‖ s`, 64 bytes (JWS).
    Raw,
    /// `r ‖ s ‖ v`, 65 bytes, secp256k1 only.
    Recoverable,
}

fn ecdsa_hash(input: &[u8], prehashed: bool) -> Result<[u8; 32], CryptoError> {
    if prehashed {
        input.try_into().map_err(|_| TransitError::BadHash.into())
    } else {
        Ok(Sha256::digest(input).into())
    }
}

fn derive(material: &[u8], purpose: &[u8], context: &[u8]) -> Result<SecretKey, CryptoError> {
    let mut info = Vec::with_capacity(purpose.len() + context.len());
    info.extend_from_slice(purpose);
    info.extend_from_slice(context);
    let mut out = Zeroizing::new([0u8; KEY_LEN]);
    hkdf::Hkdf::<Sha256>::new(None, material)
        .expand(&info, out.as_mut())
        .map_err(|_| CryptoError::Malformed("key derivation"))?;
    SecretKey::from_slice(out.as_ref())
}

/// `kw:v{version}:{base64}`. Every transit answer makes one, so it is built
/// in one allocation of the final size, the base64 written straight into it.
pub fn encode(version: u32, bytes: &[u8]) -> String {
    let mut digits = itoa::Buffer::new();
    let version = digits.format(version);
    let base64_len = base64::encoded_len(bytes.len(), true).unwrap_or(0);
    let mut text = String::with_capacity("kw:v:".len() + version.len() + base64_len);
    text.push_str("kw:v");
    text.push_str(version);
    text.push(':');
    STANDARD.encode_string(bytes, &mut text);
    text
}

/// The version and bytes of a `kw:v{version}:{base64}` text.
pub fn decode(text: &str) -> Result<(u32, Vec<u8>), TransitError> {
    let malformed = TransitError::Malformed("value: expected kw:v<version>:<base64>");
    let rest = text.strip_prefix("kw:v").ok_or(malformed.clone())?;
    let (version, body) = rest.split_once(':').ok_or(malformed.clone())?;
    if version.is_empty() || version.len() > 10 || !version.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed);
    }
    let version: u32 = version.parse().map_err(|_| malformed.clone())?;
    if version == 0 {
        return Err(malformed);
    }
    let bytes = STANDARD.decode(body).map_err(|_| malformed)?;
    Ok((version, bytes))
}

impl From<TransitError> for CryptoError {
    fn from(e: TransitError) -> Self {
        CryptoError::Transit(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn version(kind: KeyType, material: &str) -> KeyVersion {
        KeyVersion::from_material(kind, Zeroizing::new(hex(material))).unwrap()
    }

    /// RFC 8032 §7.1, test 2: one-byte message.
    #[test]
    fn ed25519_matches_rfc_8032() {
        let key = version(
            KeyType::Ed25519,
            "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        );
        assert_eq!(
            key.public_key().unwrap(),
            hex("3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c")
        );
        let signature = key.sign(&hex("72"), false, Marshaling::Asn1).unwrap();
        assert_eq!(
            signature,
            hex(concat!(
                "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da",
                "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"
            ))
        );
        assert!(key
            .verify(&hex("72"), false, Marshaling::Asn1, &signature)
            .unwrap());
        assert!(!key
            .verify(&hex("73"), false, Marshaling::Asn1, &signature)
            .unwrap());
    }

    /// RFC 4231 test case 2 for HMAC-SHA-256 and HMAC-SHA-512 ("Jefe").
    #[test]
    fn hmac_matches_rfc_4231() {
        let mut material = b"Jefe".to_vec();
        material.resize(32, 0);
        // HMAC pads short keys with zeros to the block size, so "Jefe"
        // padded to 32 bytes is the same key.
        let key = KeyVersion::from_material(KeyType::Hmac, Zeroizing::new(material)).unwrap();
        let input = b"what do ya want for nothing?";
        assert_eq!(
            key.hmac(false, input).unwrap(),
            hex("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
        );
        assert_eq!(
            key.hmac(true, input).unwrap(),
            hex(concat!(
                "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554",
                "9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737"
            ))
        );
    }

    #[test]
    fn secp256k1_signs_prehashed_input_with_a_recovery_id() {
        // The private key 1: its public key is the generator.
        let key = version(
            KeyType::EcdsaSecp256k1,
            "0000000000000000000000000000000000000000000000000000000000000001",
        );
        assert_eq!(
            key.public_key().unwrap(),
            hex("0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798")
        );
        let hash = [7u8; 32];
        let signature = key.sign(&hash, true, Marshaling::Recoverable).unwrap();
        assert_eq!(signature.len(), 65);
        let recovered = k256::ecdsa::VerifyingKey::recover_from_prehash(
            &hash,
            &k256::ecdsa::Signature::from_slice(&signature[..64]).unwrap(),
            k256::ecdsa::RecoveryId::from_byte(signature[64]).unwrap(),
        )
        .unwrap();
        assert_eq!(
            recovered.to_encoded_point(true).as_bytes(),
            key.public_key().unwrap().as_slice()
        );
        assert!(key
            .verify(&hash, true, Marshaling::Recoverable, &signature)
            .unwrap());
        assert!(matches!(
            key.sign(&[1, 2, 3], true, Marshaling::Raw),
            Err(CryptoError::Transit(TransitError::BadHash))
        ));
    }

    #[test]
    fn every_signing_type_round_trips_and_refuses_changes() {
        for kind in [
            KeyType::Ed25519,
            KeyType::EcdsaP256,
            KeyType::EcdsaSecp256k1,
        ] {
            let key = KeyVersion::generate(kind).unwrap();
            let marshalings = if kind == KeyType::Ed25519 {
                vec![Marshaling::Asn1]
            } else {
                vec![Marshaling::Asn1, Marshaling::Raw]
            };
            for m in marshalings {
                let signature = key.sign(b"order 42: buy 1 BTC", false, m).unwrap();
                assert!(key
                    .verify(b"order 42: buy 1 BTC", false, m, &signature)
                    .unwrap());
                assert!(!key
                    .verify(b"order 42: buy 9 BTC", false, m, &signature)
                    .unwrap());
                let mut flipped = signature.clone();
                let last = flipped.len() - 1;
                flipped[last] ^= 1;
                assert!(!key
                    .verify(b"order 42: buy 1 BTC", false, m, &flipped)
                    .unwrap());
                assert!(!key
                    .verify(b"order 42: buy 1 BTC", false, m, b"junk")
                    .unwrap());
            }
        }
    }

    #[test]
    fn encryption_binds_name_version_and_context() {
        for kind in [KeyType::Aes256Gcm96, KeyType::ChaCha20Poly1305] {
            let key = KeyVersion::generate(kind).unwrap();
            let sealed = key.encrypt(b"orders:1", false, None, b"payload").unwrap();
            assert_eq!(
                &*key.decrypt(b"orders:1", false, None, &sealed).unwrap(),
                b"payload"
            );
            assert!(matches!(
                key.decrypt(b"orders:2", false, None, &sealed),
                Err(CryptoError::Transit(TransitError::Decrypt))
            ));
            let derived = key
                .encrypt(b"orders:1", true, Some(b"tenant-a"), b"p")
                .unwrap();
            assert!(key
                .decrypt(b"orders:1", true, Some(b"tenant-b"), &derived)
                .is_err());
            assert_eq!(
                &*key
                    .decrypt(b"orders:1", true, Some(b"tenant-a"), &derived)
                    .unwrap(),
                b"p"
            );
            assert!(matches!(
                key.encrypt(b"", true, None, b"p"),
                Err(CryptoError::Transit(TransitError::ContextRequired))
            ));
            assert!(matches!(
                key.encrypt(b"", false, Some(b"c"), b"p"),
                Err(CryptoError::Transit(TransitError::ContextNotAllowed))
            ));
        }
        let signer = KeyVersion::generate(KeyType::Ed25519).unwrap();
        assert!(signer.encrypt(b"", false, None, b"p").is_err());
    }

    #[test]
    fn texts_are_the_version_in_decimal_and_padded_base64() {
        assert_eq!(encode(1, b""), "kw:v1:");
        assert_eq!(encode(10, b"\xff"), "kw:v10:/w==");
        assert_eq!(
            encode(u32::MAX, b"\x00\x01binary"),
            "kw:v4294967295:AAFiaW5hcnk="
        );
        let long = vec![0xa5; 64 * 1024 + 1];
        assert_eq!(
            encode(7, &long),
            format!("kw:v7:{}", STANDARD.encode(&long))
        );
    }

    #[test]
    fn texts_round_trip_and_garbage_is_malformed() {
        let text = encode(3, b"\x00\x01binary");
        assert!(text.starts_with("kw:v3:"));
        assert_eq!(decode(&text).unwrap(), (3, b"\x00\x01binary".to_vec()));
        for bad in [
            "",
            "kw:v:AA==",
            "kw:v0:AA==",
            "kw:vx:AA==",
            "vault:v1:AA==",
            "kw:v1:!!",
            "kw:v99999999999:AA==",
        ] {
            assert!(decode(bad).is_err(), "{bad}");
        }
    }
}
