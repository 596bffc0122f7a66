//! The errors of operations, before any transport gives them a status.

use keyward_core::{AdminScope, IdError, ValueError};
use keyward_store::StoreError;

/// Every way an operation can fail. The server maps each to a status and
/// a stable code; internal causes are never shown.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No token, a malformed one, or one unknown, revoked or expired. One
    /// answer for all, so the response does not tell which.
    #[error("a valid admin token is required in Authorization: Bearer")]
    Unauthenticated,
    #[error("this token lacks the {0} scope")]
    MissingScope(AdminScope),
    /// The password was right and a second factor is enrolled, but no code
    /// came with it.
    #[error("this user has TOTP enrolled: send the current code from the authenticator app as `otp` (or a recovery code)")]
    MfaRequired,
    /// A critical operation by a session without a recent second factor.
    #[error("this operation needs a second factor given in the last few minutes: POST /v1/auth/step-up with {{\"otp\": CODE}} (`keyward auth step-up`), then retry")]
    StepUpRequired,
    /// Too many failed attempts from this user or address.
    #[error("too many failed attempts: wait {retry_after_s} s and try again")]
    TooManyAttempts { retry_after_s: u64 },
    /// The token may not do this beyond its scopes (e.g. grant more than it has).
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("{0} not found")]
    NotFound(&'static str),
    /// No secrets mount is at the first segment of a `/v1/…` path (or none
    /// the token reaches: the two answer the same).
    #[error("no secrets mount is at this path (or none this token reaches): create one with `POST /v1/sys/mounts/NAME` and the JSON body {{\"type\":\"kv-v2\"}} (scope sys:write); `GET /v1/sys/mounts` lists them")]
    NoMount,
    /// The environment a request names is outside the token's environments.
    #[error("this token does not reach the environment asked for: use a token whose environments include it")]
    OutOfReach,
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{0}")]
    Conflict(&'static str),
    /// An API change would remove a role that unrevoked keys still hold.
    #[error(
        "the role {role} is held by {keys} unrevoked key(s) of this API: take it from them \
         (PATCH /v1/keys/{{id}} with their remaining roles) or revoke them, then remove it"
    )]
    RoleInUse {
        role: keyward_core::RoleName,
        keys: u64,
    },
    /// The server is sealed (or its seal was never initialised): what needs
    /// the keyring waits for an unseal.
    #[error("{0}")]
    Sealed(&'static str),
    /// An unseal share was refused; the shares given so far are kept.
    #[error("{0}")]
    InvalidShare(keyward_crypto::shamir::ShareError),
    /// A stored ciphertext failed authentication: the database was changed
    /// outside Keyward (or a value moved between records).
    #[error("a stored value failed its integrity check")]
    Tampered,
    /// A signed report's signature is missing, from an unknown key or wrong.
    #[error("{0}")]
    SignatureInvalid(&'static str),
    /// The revocation would leave no usable admin token that can grant every
    /// scope, locking the install out of its own admin API.
    #[error(
        "this is the last usable full-access admin token (every scope, no API or environment \
         limit): create another such token first, or issue a new one with \
         `keyward operator root-token`"
    )]
    LastRootToken,
    /// The bulk revocation named no criterion.
    #[error("a bulk revocation needs at least one filter")]
    EmptyFilter,
    /// Anything else; the cause is logged, the client sees only this.
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl Error {
    pub fn internal(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Error::Internal(Box::new(e))
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(what) => Error::Conflict(what),
            StoreError::NotFound => Error::NotFound("record"),
            StoreError::LastFullToken => Error::LastRootToken,
            StoreError::RoleInUse { role, keys } => Error::RoleInUse { role, keys },
            StoreError::UndefinedRole => Error::Conflict(
                "a role this key names was removed from its API meanwhile: read the API's roles \
                 and try again",
            ),
            other => Error::internal(other),
        }
    }
}

impl From<keyward_verify::VerifyError> for Error {
    fn from(e: keyward_verify::VerifyError) -> Self {
        match e {
            keyward_verify::VerifyError::Store(e) => e.into(),
            keyward_verify::VerifyError::Sealed => Error::Sealed(
                "the server is sealed: it checks HMAC signatures and one-time codes only when unsealed",
            ),
            other => Error::internal(other),
        }
    }
}

impl From<crate::seal::SealError> for Error {
    fn from(e: crate::seal::SealError) -> Self {
        use crate::seal::SealError;
        match e {
            SealError::Sealed => Error::Sealed("the server is sealed: unseal it first"),
            SealError::NotInitialized => {
                Error::Sealed("the seal is not initialised: run `keyward operator init`")
            }
            SealError::AlreadyInitialized => Error::Conflict("the seal is already initialised"),
            SealError::AlreadyUnsealed => Error::Conflict("the server is already unsealed"),
            SealError::WrongSeal(kind) => Error::Conflict(wrong_seal(kind)),
            SealError::Share(e) => Error::InvalidShare(e),
            SealError::Store(e) => e.into(),
            other => Error::internal(other),
        }
    }
}

/// What to do instead of a share operation on a server whose seal has no
/// shares, by the seal it has.
fn wrong_seal(kind: &str) -> &'static str {
    match kind {
        "file" => {
            "this server's seal is `file`: it unseals itself at start from master.key in its \
             data directory, so there are no shares to initialise, give or replace; restart \
             the server to unseal it"
        }
        "pkcs11" => {
            "this server's seal is `pkcs11`: the HSM unwraps its master key at start, so there \
             are no shares to initialise, give or replace; restart the server with the HSM \
             reachable to unseal it"
        }
        _ => {
            "this server's seal is `shamir`: this operation needs the `pkcs11` seal; shamir \
             seals are unsealed with `keyward operator unseal` and replaced with \
             `keyward operator rekey`"
        }
    }
}

impl From<keyward_crypto::CryptoError> for Error {
    fn from(e: keyward_crypto::CryptoError) -> Self {
        match e {
            keyward_crypto::CryptoError::Tampered => Error::Tampered,
            keyward_crypto::CryptoError::Transit(e) => Error::InvalidRequest(e.to_string()),
            other => Error::internal(other),
        }
    }
}

impl From<ValueError> for Error {
    fn from(e: ValueError) -> Self {
        Error::InvalidRequest(e.to_string())
    }
}

impl From<IdError> for Error {
    fn from(e: IdError) -> Self {
        Error::InvalidRequest(e.to_string())
    }
}
