//! Signed reports from secret-scanning partners. GitHub signs the body of
//! each report with ECDSA P-256 over SHA-256 and names the key in
//! `Github-Public-Key-Identifier`; the signature comes base64-encoded DER in
//! `Github-Public-Key-Signature`. The receiver checks it against public keys
//! it was configured with.

use base64::Engine as _;
use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey as _;

/// A partner's public key, parsed once from its PEM (SubjectPublicKeyInfo).
#[derive(Clone, Debug)]
pub struct PartnerKey(VerifyingKey);

/// Why a partner key or signature was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum PartnerError {
    #[error("not a P-256 public key in PEM")]
    BadKey,
    #[error("the signature is not base64-encoded DER")]
    MalformedSignature,
    #[error("the signature does not match")]
    BadSignature,
}

impl PartnerKey {
    pub fn from_pem(pem: &str) -> Result<Self, PartnerError> {
        VerifyingKey::from_public_key_pem(pem.trim())
            .map(PartnerKey)
            .map_err(|_| PartnerError::BadKey)
    }

    /// Checks `signature_base64` (DER) over `body`.
    pub fn verify(&self, body: &[u8], signature_base64: &str) -> Result<(), PartnerError> {
        let der = base64::engine::general_purpose::STANDARD
            .decode(signature_base64.trim())
            .map_err(|_| PartnerError::MalformedSignature)?;
        let signature = Signature::from_der(&der).map_err(|_| PartnerError::MalformedSignature)?;
        self.0
            .verify(body, &signature)
            .map_err(|_| PartnerError::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::Signer as _;
    use p256::ecdsa::SigningKey;
    use p256::pkcs8::EncodePublicKey as _;

    #[test]
    fn a_signature_holds_only_for_its_body_and_key() {
        let signing = SigningKey::from_slice(&[7u8; 32]).unwrap();
        let pem = signing
            .verifying_key()
            .to_public_key_pem(p256::pkcs8::LineEnding::LF)
            .unwrap();
        let key = PartnerKey::from_pem(&pem).unwrap();
        let body = br#"[{"token":"x","type":"t","url":"u","source":"content"}]"#;
        let signature: Signature = signing.sign(body);
        let encoded = base64::engine::general_purpose::STANDARD.encode(signature.to_der());
        assert_eq!(key.verify(body, &encoded), Ok(()));
        assert_eq!(key.verify(b"[]", &encoded), Err(PartnerError::BadSignature));
        let other = SigningKey::from_slice(&[8u8; 32]).unwrap();
        let forged: Signature = other.sign(body);
        let forged = base64::engine::general_purpose::STANDARD.encode(forged.to_der());
        assert_eq!(key.verify(body, &forged), Err(PartnerError::BadSignature));
        assert_eq!(
            key.verify(body, "not base64!"),
            Err(PartnerError::MalformedSignature)
        );
        assert_eq!(
            PartnerKey::from_pem("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----")
                .err(),
            Some(PartnerError::BadKey)
        );
    }
}
