//! Admin users' passwords, hashed with Argon2id at OWASP's parameters
//! (19 MiB of memory, two passes, one lane) and a random 16-byte salt per
//! hash, kept as a PHC string (`$argon2id$v=19$m=19456,t=2,p=1$…`).

use std::sync::OnceLock;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use crate::CryptoError;

/// OWASP's Password Storage Cheat Sheet, first Argon2id configuration.
const MEMORY_KIB: u32 = 19 * 1024;
const PASSES: u32 = 2;
const LANES: u32 = 1;

fn hasher() -> Result<Argon2<'static>, CryptoError> {
    let params = Params::new(MEMORY_KIB, PASSES, LANES, None)
        .map_err(|_| CryptoError::Malformed("argon2 parameters"))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// The PHC string of `password` under a fresh salt.
pub fn hash(password: &str) -> Result<String, CryptoError> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|_| CryptoError::Random)?;
    let salt = SaltString::encode_b64(&salt).map_err(|_| CryptoError::Malformed("salt"))?;
    Ok(hasher()?
        .hash_password(password.as_bytes(), &salt)
        .map_err(|_| CryptoError::Malformed("password"))?
        .to_string())
}

/// Whether `password` matches the PHC string `stored`. A malformed stored
/// hash matches nothing. The parameters are read from `stored`, so hashes
/// made under older parameters still verify.
pub fn verify(password: &str, stored: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(stored) else {
        return false;
    };
    Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
}

/// Spends what [`verify`] spends, for a sign-in naming no user: an unknown
/// e-mail then takes as long to refuse as a wrong password.
pub fn verify_nobody(password: &str) {
    static DECOY: OnceLock<Option<String>> = OnceLock::new();
    if let Some(decoy) = DECOY.get_or_init(|| hash("a decoy nobody signs in with").ok()) {
        let _ = verify(password, decoy);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let stored = hash("plum-violet-harbor-42").unwrap();
        assert!(stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(verify("plum-violet-harbor-42", &stored));
        assert!(!verify("plum-violet-harbor-43", &stored));
        assert!(!verify("plum-violet-harbor-42", "not a hash"));
    }

    #[test]
    fn each_hash_has_its_own_salt() {
        assert_ne!(
            hash("same password here").unwrap(),
            hash("same password here").unwrap()
        );
    }
}
