//! Time-based one-time passwords (RFC 6238) as authenticator apps make
//! them: HMAC-SHA-1, six digits, 30-second steps, the secret shown in
//! base32 inside an `otpauth://` URI. And recovery codes: ten one-time
//! codes for when the phone is lost, kept only as digests.

use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::CryptoError;

/// Seconds per step.
pub const STEP_SECONDS: u64 = 30;
/// Digits of a code.
pub const DIGITS: u32 = 6;
/// Bytes of a secret: 160 bits, RFC 4226's recommendation.
pub const SECRET_BYTES: usize = 20;
/// Steps either side of now a code may come from (clock drift).
pub const DRIFT_STEPS: u64 = 1;

/// A TOTP secret. It is never printed; [`Secret::base32`] shows it once,
/// at enrolment.
pub struct Secret(Zeroizing<Vec<u8>>);

impl Secret {
    pub fn generate() -> Result<Secret, CryptoError> {
        let mut bytes = Zeroizing::new(vec![0u8; SECRET_BYTES]);
        getrandom::fill(&mut bytes).map_err(|_| CryptoError::Random)?;
        Ok(Secret(bytes))
    }

    pub fn from_bytes(bytes: Vec<u8>) -> Secret {
        Secret(Zeroizing::new(bytes))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// RFC 4648 base32 without padding, as authenticator apps take it.
    pub fn base32(&self) -> String {
        data_encoding::BASE32_NOPAD.encode(&self.0)
    }

    /// The `otpauth://totp/` URI a QR code carries (Google Authenticator's
    /// key URI format).
    pub fn otpauth_uri(&self, issuer: &str, account: &str) -> String {
        let label = format!("{}:{}", uri_escape(issuer), uri_escape(account));
        format!(
            "otpauth://totp/{label}?secret={}&issuer={}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECONDS}",
            self.base32(),
            uri_escape(issuer)
        )
    }

    /// The code of `step` with `digits` digits (RFC 4226's HOTP over the
    /// step counter).
    pub fn code(&self, step: u64, digits: u32) -> u32 {
        hotp(&self.0, step, digits)
    }

    /// The step of the code `code` at Unix time `now`, allowing
    /// [`DRIFT_STEPS`] of drift, when it matches a step after `after` (the
    /// last step this user had accepted): a code is accepted once. The
    /// comparison does not stop at the first match.
    pub fn check(&self, code: &str, now: u64, after: Option<u64>) -> Option<u64> {
        let code = code.trim();
        if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let given: u32 = code.parse().ok()?;
        let current = now / STEP_SECONDS;
        let mut found = None;
        for step in current.saturating_sub(DRIFT_STEPS)..=current + DRIFT_STEPS {
            let fresh = after.is_none_or(|last| step > last);
            let matches = subtle::ConstantTimeEq::ct_eq(&self.code(step, DIGITS), &given);
            if bool::from(matches) && fresh && found.is_none() {
                found = Some(step);
            }
        }
        found
    }
}

fn hotp(secret: &[u8], counter: u64, digits: u32) -> u32 {
    // HMAC takes keys of any length.
    let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(secret) else {
        return u32::MAX;
    };
    mac.update(&counter.to_be_bytes());
    let digest = mac.finalize().into_bytes();
    let offset = usize::from(digest[19] & 0x0f);
    let binary = u32::from_be_bytes([
        digest[offset] & 0x7f,
        digest[offset + 1],
        digest[offset + 2],
        digest[offset + 3],
    ]);
    binary % 10u32.pow(digits)
}

fn uri_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~@".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// How many recovery codes a user gets.
pub const RECOVERY_CODES: usize = 10;

/// Fresh recovery codes, `xxxxx-xxxxx` of base32 (50 bits each), and the
/// digests to store.
pub fn recovery_codes() -> Result<(Vec<String>, Vec<[u8; 32]>), CryptoError> {
    let mut codes = Vec::with_capacity(RECOVERY_CODES);
    let mut digests = Vec::with_capacity(RECOVERY_CODES);
    for _ in 0..RECOVERY_CODES {
        let mut bytes = [0u8; 10];
        getrandom::fill(&mut bytes).map_err(|_| CryptoError::Random)?;
        let text = data_encoding::BASE32_NOPAD.encode(&bytes).to_lowercase();
        let code = format!("{}-{}", &text[..5], &text[5..10]);
        digests.push(recovery_digest(&code));
        codes.push(code);
    }
    Ok((codes, digests))
}

/// The digest a recovery code is stored as: SHA-256 of the code without
/// its dash, lower-cased. Codes carry 50 random bits, so a fast digest
/// suffices.
pub fn recovery_digest(code: &str) -> [u8; 32] {
    let normal: String = code
        .trim()
        .chars()
        .filter(|c| *c != '-' && *c != ' ')
        .flat_map(char::to_lowercase)
        .collect();
    Sha256::digest(normal.as_bytes()).into()
}

/// Whether `code` has the shape of a recovery code rather than a TOTP code.
pub fn is_recovery_code(code: &str) -> bool {
    let normal: Vec<u8> = code.trim().bytes().filter(|b| *b != b'-').collect();
    normal.len() == 10 && normal.iter().all(|b| b.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// RFC 6238, appendix B: the SHA-1 rows, eight digits, with the ASCII
    /// secret "12345678901234567890".
    #[test]
    fn rfc_6238_vectors() {
        let secret = Secret::from_bytes(b"12345678901234567890".to_vec());
        for (time, code) in [
            (59u64, 94287082u32),
            (1111111109, 7081804),
            (1111111111, 14050471),
            (1234567890, 89005924),
            (2000000000, 69279037),
            (20000000000, 65353130),
        ] {
            assert_eq!(secret.code(time / STEP_SECONDS, 8), code, "T = {time}");
        }
    }

    #[test]
    fn one_step_of_drift_is_accepted_two_are_not() {
        let secret = Secret::generate().unwrap();
        let now = 1_800_000_015;
        let step = now / STEP_SECONDS;
        let code = |s: u64| format!("{:06}", secret.code(s, DIGITS));
        assert_eq!(secret.check(&code(step), now, None), Some(step));
        assert_eq!(secret.check(&code(step - 1), now, None), Some(step - 1));
        assert_eq!(secret.check(&code(step + 1), now, None), Some(step + 1));
        assert_eq!(secret.check(&code(step - 2), now, None), None);
        assert_eq!(secret.check(&code(step + 2), now, None), None);
    }

    #[test]
    fn a_code_is_accepted_once() {
        let secret = Secret::generate().unwrap();
        let now = 1_800_000_015;
        let code = format!("{:06}", secret.code(now / STEP_SECONDS, DIGITS));
        let step = secret.check(&code, now, None).unwrap();
        assert_eq!(secret.check(&code, now, Some(step)), None);
        assert_eq!(secret.check(&code, now + 20, Some(step)), None);
    }

    #[test]
    fn malformed_codes_match_nothing() {
        let secret = Secret::generate().unwrap();
        for bad in ["", "12345", "1234567", "12a456", "１２３４５６"] {
            assert_eq!(secret.check(bad, 1_800_000_000, None), None);
        }
    }

    #[test]
    fn the_uri_is_what_authenticator_apps_read() {
        let secret = Secret::from_bytes(b"12345678901234567890".to_vec());
        assert_eq!(secret.base32(), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
        assert_eq!(
            secret.otpauth_uri("Keyward", "ops@example.com"),
            "otpauth://totp/Keyward:ops@example.com?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Keyward&algorithm=SHA1&digits=6&period=30"
        );
    }

    #[test]
    fn recovery_codes_are_distinct_and_digested() {
        let (codes, digests) = recovery_codes().unwrap();
        assert_eq!(codes.len(), RECOVERY_CODES);
        let unique: std::collections::HashSet<_> = codes.iter().collect();
        assert_eq!(unique.len(), RECOVERY_CODES);
        for (code, digest) in codes.iter().zip(&digests) {
            assert!(is_recovery_code(code));
            assert_eq!(recovery_digest(&code.to_uppercase()), *digest);
        }
        assert!(!is_recovery_code("123456"));
    }
}
