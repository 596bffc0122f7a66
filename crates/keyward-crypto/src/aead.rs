//! Authenticated encryption: AES-256-GCM and ChaCha20-Poly1305 with 96-bit
//! random nonces.
//!
//! Both come from the RustCrypto project (`aes-gcm`, `chacha20poly1305`):
//! pure Rust, so the build needs no C toolchain; `aes-gcm` was audited by
//! NCC Group and uses AES-NI and CLMUL where the processor has them, falling
//! back to a constant-time software implementation elsewhere.
//!
//! A sealed message is `nonce (12) ‖ ciphertext ‖ tag (16)`. Random nonces
//! are safe for up to 2^32 messages under one key; callers rotate keys long
//! before that (see [`crate::envelope::Keyring`]).

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use chacha20poly1305::ChaCha20Poly1305;
use zeroize::Zeroizing;

use crate::secret::{fill_random, SecretKey};
use crate::CryptoError;

/// Nonce length of both ciphers.
pub const NONCE_LEN: usize = 12;
/// Tag length of both ciphers.
pub const TAG_LEN: usize = 16;
/// What sealing adds to a plaintext's length.
pub const OVERHEAD: usize = NONCE_LEN + TAG_LEN;

/// The AEAD ciphers Keyward uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cipher {
    Aes256Gcm,
    ChaCha20Poly1305,
}

/// A key bound to its cipher, ready to seal and open.
pub struct AeadKey {
    inner: Inner,
}

enum Inner {
    Aes(Box<Aes256Gcm>),
    ChaCha(Box<ChaCha20Poly1305>),
}

impl AeadKey {
    pub fn new(cipher: Cipher, key: &SecretKey) -> Self {
        let bytes = key.expose();
        let inner = match cipher {
            Cipher::Aes256Gcm => Inner::Aes(Box::new(Aes256Gcm::new(bytes.into()))),
            Cipher::ChaCha20Poly1305 => {
                Inner::ChaCha(Box::new(ChaCha20Poly1305::new(bytes.into())))
            }
        };
        AeadKey { inner }
    }

    pub fn cipher(&self) -> Cipher {
        match self.inner {
            Inner::Aes(_) => Cipher::Aes256Gcm,
            Inner::ChaCha(_) => Cipher::ChaCha20Poly1305,
        }
    }

    /// Encrypts `plaintext` bound to `aad` under a fresh random nonce and
    /// appends `nonce ‖ ciphertext ‖ tag` to `out`.
    pub fn seal_into(
        &self,
        aad: &[u8],
        plaintext: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), CryptoError> {
        let mut nonce = [0u8; NONCE_LEN];
        fill_random(&mut nonce)?;
        self.seal_with_nonce(&nonce, aad, plaintext, out)
    }

    /// `seal_into` into a new buffer.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let mut out = Vec::with_capacity(plaintext.len() + OVERHEAD);
        self.seal_into(aad, plaintext, &mut out)?;
        Ok(out)
    }

    /// Seals with a given nonce. Only known-answer tests choose nonces.
    pub(crate) fn seal_with_nonce(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        plaintext: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), CryptoError> {
        let payload = Payload {
            msg: plaintext,
            aad,
        };
        let nonce_ref = Nonce::from_slice(nonce);
        let sealed = match &self.inner {
            Inner::Aes(c) => c.encrypt(nonce_ref, payload),
            Inner::ChaCha(c) => c.encrypt(nonce_ref, payload),
        }
        // Encryption fails only for messages beyond the cipher's limit
        // (64 GiB for GCM), far past any request body Keyward accepts.
        .map_err(|_| CryptoError::Malformed("message too long to encrypt"))?;
        out.extend_from_slice(nonce);
        out.extend_from_slice(&sealed);
        Ok(())
    }

    /// Opens `nonce ‖ ciphertext ‖ tag` sealed with `aad`. Any change to
    /// the message or the associated data, or the wrong key, is
    /// [`CryptoError::Tampered`].
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        if sealed.len() < OVERHEAD {
            return Err(CryptoError::Malformed("ciphertext too short"));
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let payload = Payload { msg: body, aad };
        let nonce = Nonce::from_slice(nonce);
        let opened = match &self.inner {
            Inner::Aes(c) => c.decrypt(nonce, payload),
            Inner::ChaCha(c) => c.decrypt(nonce, payload),
        };
        opened
            .map(Zeroizing::new)
            .map_err(|_| CryptoError::Tampered)
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

    fn key(s: &str) -> SecretKey {
        SecretKey::from_slice(&hex(s)).unwrap()
    }

    /// McGrew & Viega, "The Galois/Counter Mode of Operation", test case 16
    /// (AES-256, 96-bit IV, with associated data).
    #[test]
    fn aes_256_gcm_matches_the_gcm_specification_test_case_16() {
        let k = key("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308");
        let nonce: [u8; 12] = hex("cafebabefacedbaddecaf888").try_into().unwrap();
        let pt = hex(concat!(
            "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72",
            "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39"
        ));
        let aad = hex("feedfacedeadbeeffeedfacedeadbeefabaddad2");
        let expected = hex(concat!(
            "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa",
            "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
            "76fc6ece0f4e1768cddf8853bb2d551b"
        ));
        let sealer = AeadKey::new(Cipher::Aes256Gcm, &k);
        let mut out = Vec::new();
        sealer.seal_with_nonce(&nonce, &aad, &pt, &mut out).unwrap();
        assert_eq!(&out[..12], &nonce);
        assert_eq!(&out[12..], &expected[..]);
        assert_eq!(&*sealer.open(&aad, &out).unwrap(), &pt);
    }

    /// RFC 8439 §2.8.2: the ChaCha20-Poly1305 AEAD example.
    #[test]
    fn chacha20_poly1305_matches_rfc_8439() {
        let k = key("808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f");
        let nonce: [u8; 12] = hex("070000004041424344454647").try_into().unwrap();
        let aad = hex("50515253c0c1c2c3c4c5c6c7");
        let pt = b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.";
        let sealer = AeadKey::new(Cipher::ChaCha20Poly1305, &k);
        let mut out = Vec::new();
        sealer.seal_with_nonce(&nonce, &aad, pt, &mut out).unwrap();
        let expected_start = hex("d31a8d34648e60db7b86afbc53ef7ec2");
        let expected_tag = hex("1ae10b594f09e26a7e902ecbd0600691");
        assert_eq!(&out[12..28], &expected_start[..]);
        assert_eq!(&out[out.len() - 16..], &expected_tag[..]);
        assert_eq!(&*sealer.open(&aad, &out).unwrap(), &pt[..]);
    }

    #[test]
    fn every_flipped_bit_and_every_other_aad_is_refused() {
        for cipher in [Cipher::Aes256Gcm, Cipher::ChaCha20Poly1305] {
            let sealer = AeadKey::new(cipher, &SecretKey::generate().unwrap());
            let sealed = sealer.seal(b"record-1", b"exchange secret").unwrap();
            for bit in 0..sealed.len() * 8 {
                let mut tampered = sealed.clone();
                tampered[bit / 8] ^= 1 << (bit % 8);
                assert!(matches!(
                    sealer.open(b"record-1", &tampered),
                    Err(CryptoError::Tampered)
                ));
            }
            assert!(matches!(
                sealer.open(b"record-2", &sealed),
                Err(CryptoError::Tampered)
            ));
            assert!(matches!(
                sealer.open(b"record-1", &sealed[..10]),
                Err(CryptoError::Malformed(_))
            ));
        }
    }

    #[test]
    fn nonces_are_fresh_for_every_message() {
        let sealer = AeadKey::new(Cipher::Aes256Gcm, &SecretKey::generate().unwrap());
        let a = sealer.seal(b"", b"same").unwrap();
        let b = sealer.seal(b"", b"same").unwrap();
        assert_ne!(a[..12], b[..12]);
        assert_ne!(a, b);
    }
}
