//! The one table that turns a failure into an HTTP status and a stable
//! machine `code`. Internal causes are logged here and never shown.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use keyward_core::{AdminScope, IdError, ValueError};
use keyward_store::StoreError;
use serde::Serialize;

/// Every way an admin API call can fail.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No token, a malformed one, or one unknown, revoked or expired. One
    /// answer for all, so the response does not tell which.
    #[error("a valid admin token is required in Authorization: Bearer")]
    Unauthenticated,
    #[error("this token lacks the {0} scope")]
    MissingScope(AdminScope),
    /// The token may not do this beyond its scopes (e.g. grant more than it has).
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("request body is too large")]
    PayloadTooLarge,
    #[error("{0}")]
    Conflict(&'static str),
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

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    code: &'a str,
    message: String,
}

impl ApiError {
    pub fn internal(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        ApiError::Internal(Box::new(e))
    }

    /// Status and stable code of each variant.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Unauthenticated => (StatusCode::UNAUTHORIZED, "UNAUTHENTICATED"),
            ApiError::MissingScope(_) | ApiError::Forbidden(_) => {
                (StatusCode::FORBIDDEN, "FORBIDDEN")
            }
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "NOT_FOUND"),
            ApiError::InvalidRequest(_) => (StatusCode::BAD_REQUEST, "INVALID_REQUEST"),
            ApiError::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "CONFLICT"),
            ApiError::LastRootToken => (StatusCode::CONFLICT, "LAST_ROOT_TOKEN"),
            ApiError::EmptyFilter => (StatusCode::BAD_REQUEST, "EMPTY_FILTER"),
            ApiError::SignatureInvalid(_) => (StatusCode::UNAUTHORIZED, "SIGNATURE_INVALID"),
            ApiError::Sealed(_) => (StatusCode::SERVICE_UNAVAILABLE, "SEALED"),
            ApiError::Tampered => (StatusCode::INTERNAL_SERVER_ERROR, "TAMPERED"),
            ApiError::InvalidShare(_) => (StatusCode::BAD_REQUEST, "INVALID_SHARE"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if let ApiError::Internal(cause) = &self {
            tracing::error!(error = %cause, "internal error");
        }
        if let ApiError::Tampered = &self {
            tracing::error!("a stored ciphertext failed authentication");
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code,
                message: self.to_string(),
            },
        };
        (status, axum::Json(body)).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(what) => ApiError::Conflict(what),
            StoreError::NotFound => ApiError::NotFound("record"),
            StoreError::LastFullToken => ApiError::LastRootToken,
            other => ApiError::internal(other),
        }
    }
}

impl From<crate::seal::SealError> for ApiError {
    fn from(e: crate::seal::SealError) -> Self {
        use crate::seal::SealError;
        match e {
            SealError::Sealed => ApiError::Sealed("the server is sealed: unseal it first"),
            SealError::NotInitialized => {
                ApiError::Sealed("the seal is not initialised: run `keyward operator init`")
            }
            SealError::AlreadyInitialized => ApiError::Conflict("the seal is already initialised"),
            SealError::AlreadyUnsealed => ApiError::Conflict("the server is already unsealed"),
            SealError::WrongSeal(_) => {
                ApiError::Conflict("this operation does not apply to this server's seal")
            }
            SealError::Share(e) => ApiError::InvalidShare(e),
            SealError::Store(e) => e.into(),
            other => ApiError::internal(other),
        }
    }
}

impl From<keyward_crypto::CryptoError> for ApiError {
    fn from(e: keyward_crypto::CryptoError) -> Self {
        match e {
            keyward_crypto::CryptoError::Tampered => ApiError::Tampered,
            keyward_crypto::CryptoError::Transit(e) => ApiError::InvalidRequest(e.to_string()),
            other => ApiError::internal(other),
        }
    }
}

impl From<ValueError> for ApiError {
    fn from(e: ValueError) -> Self {
        ApiError::InvalidRequest(e.to_string())
    }
}

impl From<IdError> for ApiError {
    fn from(e: IdError) -> Self {
        ApiError::InvalidRequest(e.to_string())
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return ApiError::PayloadTooLarge;
        }
        ApiError::InvalidRequest(redact_quoted(&rejection.body_text()))
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::InvalidRequest(redact_quoted(&rejection.body_text()))
    }
}

/// Replaces the contents of double-quoted strings. Deserializer messages quote
/// the offending value ("invalid type: string \"…\""), and that value may be a
/// key pasted into the wrong field; field names are in backticks and stay.
pub(crate) fn redact_quoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut inside = false;
    for c in message.chars() {
        if c == '"' {
            if inside {
                out.push('…');
            }
            inside = !inside;
            out.push(c);
        } else if !inside {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_values_are_redacted_and_field_names_kept() {
        assert_eq!(
            redact_quoted("invalid type: string \"tm_live_abc\", expected u64 for `cost`"),
            "invalid type: string \"…\", expected u64 for `cost`"
        );
    }
}
