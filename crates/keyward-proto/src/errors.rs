//! The stable error codes Keyward answers with, each with its HTTP status,
//! and answers written before any handler runs.
//!
//! An error answer is `{"error": {"code", "message"}}`. The `code` is part
//! of the API: clients match on it, so a code is never renamed or reused.
//! Its status is fixed with it, here, once. The message is for people and
//! may change.
//!
//! A refused key is answered with its verify code instead (`MALFORMED`,
//! `REVOKED`, …), which the verify endpoint already returns. Those codes
//! and the statuses the gateway answers them with are [`denial`]'s table.
//! Verify's `NOT_FOUND` (a key that does not exist, 401) shares its text
//! with [`Code::NotFound`] (a resource that does not exist, 404); a client
//! tells them apart by the endpoint it called.

use keyward_core::VerifyCode;

/// Every stable error code Keyward answers with, but for verify codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Code {
    // The admin API.
    /// No admin token, or one that is not valid.
    Unauthenticated,
    /// The token lacks a scope, or the resource is outside its reach.
    Forbidden,
    /// No such resource.
    NotFound,
    /// A request body or query the API cannot accept.
    InvalidRequest,
    /// A request body larger than the listener accepts.
    PayloadTooLarge,
    /// The change conflicts with the resource's state.
    Conflict,
    /// The change would leave no token with full access.
    LastRootToken,
    /// A bulk revocation that names no criterion.
    EmptyFilter,
    /// A signed report whose signature is missing, unknown or wrong.
    SignatureInvalid,
    /// The keyring is sealed.
    Sealed,
    /// A stored ciphertext failed authentication.
    Tampered,
    /// An unseal share that is not valid.
    InvalidShare,
    /// A failure the caller cannot act on; its cause is logged.
    Internal,
    /// The password was right; the user's second factor is needed too.
    MfaRequired,
    /// A critical operation needs a second factor given within the step-up
    /// window.
    StepUpRequired,
    /// Too many failed sign-ins or second factors from this user or
    /// address.
    TooManyAttempts,

    // Both listeners.
    /// A connection over its address's cap.
    TooManyConnections,

    // The gateway.
    /// A request head larger than the gateway reads, or with too many
    /// headers.
    HeadersTooLarge,
    /// Conflicting or unsupported body framing, or a body that breaks its
    /// framing.
    BadFraming,
    /// A request target that is not a path, or a path servers read
    /// differently.
    BadPath,
    /// A header name the gateway does not accept.
    BadHeader,
    /// A request that is not valid HTTP/1.1.
    BadRequest,
    /// No route matches the request.
    NoRoute,
    /// No key in `Authorization: Bearer` or `X-API-Key`.
    MissingKey,
    /// The key store could not be reached to verify the key.
    Unavailable,
    /// The request body arrived too slowly.
    RequestTimeout,
    /// The upstream did not connect or answer in time.
    UpstreamTimeout,
    /// The upstream could not be reached, or broke off before its answer.
    UpstreamUnavailable,
    /// A signed route's request body without `Content-Length`.
    LengthRequired,
}

impl Code {
    /// Every code, for tables and tests.
    pub const ALL: &'static [Code] = &[
        Code::Unauthenticated,
        Code::Forbidden,
        Code::NotFound,
        Code::InvalidRequest,
        Code::PayloadTooLarge,
        Code::Conflict,
        Code::LastRootToken,
        Code::EmptyFilter,
        Code::SignatureInvalid,
        Code::Sealed,
        Code::Tampered,
        Code::InvalidShare,
        Code::Internal,
        Code::MfaRequired,
        Code::StepUpRequired,
        Code::TooManyAttempts,
        Code::TooManyConnections,
        Code::HeadersTooLarge,
        Code::BadFraming,
        Code::BadPath,
        Code::BadHeader,
        Code::BadRequest,
        Code::NoRoute,
        Code::MissingKey,
        Code::Unavailable,
        Code::RequestTimeout,
        Code::UpstreamTimeout,
        Code::UpstreamUnavailable,
        Code::LengthRequired,
    ];

    /// The code as it appears in `error.code`.
    pub fn as_str(self) -> &'static str {
        self.row().1
    }

    /// The HTTP status the code is answered with.
    pub fn status(self) -> u16 {
        self.row().0
    }

    /// The one table: status and text of each code.
    fn row(self) -> (u16, &'static str) {
        match self {
            Code::Unauthenticated => (401, "UNAUTHENTICATED"),
            Code::Forbidden => (403, "FORBIDDEN"),
            Code::NotFound => (404, "NOT_FOUND"),
            Code::InvalidRequest => (400, "INVALID_REQUEST"),
            Code::PayloadTooLarge => (413, "PAYLOAD_TOO_LARGE"),
            Code::Conflict => (409, "CONFLICT"),
            Code::LastRootToken => (409, "LAST_ROOT_TOKEN"),
            Code::EmptyFilter => (400, "EMPTY_FILTER"),
            Code::SignatureInvalid => (401, "SIGNATURE_INVALID"),
            Code::Sealed => (503, "SEALED"),
            Code::Tampered => (500, "TAMPERED"),
            Code::InvalidShare => (400, "INVALID_SHARE"),
            Code::Internal => (500, "INTERNAL"),
            Code::MfaRequired => (401, "MFA_REQUIRED"),
            Code::StepUpRequired => (403, "STEP_UP_REQUIRED"),
            Code::TooManyAttempts => (429, "TOO_MANY_ATTEMPTS"),
            Code::TooManyConnections => (429, "TOO_MANY_CONNECTIONS"),
            Code::HeadersTooLarge => (431, "HEADERS_TOO_LARGE"),
            Code::BadFraming => (400, "BAD_FRAMING"),
            Code::BadPath => (400, "BAD_PATH"),
            Code::BadHeader => (400, "BAD_HEADER"),
            Code::BadRequest => (400, "BAD_REQUEST"),
            Code::NoRoute => (404, "NO_ROUTE"),
            Code::MissingKey => (401, "MISSING_KEY"),
            Code::Unavailable => (503, "UNAVAILABLE"),
            Code::RequestTimeout => (408, "REQUEST_TIMEOUT"),
            Code::UpstreamTimeout => (504, "UPSTREAM_TIMEOUT"),
            Code::UpstreamUnavailable => (502, "UPSTREAM_UNAVAILABLE"),
            Code::LengthRequired => (411, "LENGTH_REQUIRED"),
        }
    }
}

/// How a key that verify refused is answered: the status, and a message
/// for people. The code is the verify code's own text.
pub fn denial(code: VerifyCode) -> (u16, &'static str) {
    match code {
        VerifyCode::Malformed => (401, "the API key is malformed"),
        VerifyCode::NotFound => (401, "the API key is not valid"),
        VerifyCode::Expired => (401, "the API key has expired"),
        VerifyCode::Revoked => (401, "the API key was revoked"),
        VerifyCode::Disabled => (401, "the API key is disabled"),
        VerifyCode::WrongEnvironment => (401, "the API key belongs to another environment"),
        VerifyCode::InsufficientScope => (403, "the API key lacks a scope this route requires"),
        VerifyCode::IpNotAllowed => (403, "the API key may not be used from this address"),
        VerifyCode::RateLimited => (429, "rate limit exceeded"),
        VerifyCode::UsageExceeded => (429, "usage credits exhausted"),
        VerifyCode::SignatureRequired => (401, "this request must be signed"),
        VerifyCode::SignatureInvalid => (401, "the request's signature is not valid"),
        VerifyCode::SignatureExpired => (401, "the request was signed outside its window"),
        VerifyCode::Replayed => (401, "this request was seen before"),
        VerifyCode::MfaRequired => (401, "this request needs the key owner's one-time code"),
        _ => (401, "the API key was refused"),
    }
}

/// The answer to a connection over its address's cap, written once without
/// waiting, before the connection is closed (by the API listener and the
/// gateway alike). [`Code::TooManyConnections`] as a whole message.
pub const TOO_MANY_CONNECTIONS: &[u8] = b"HTTP/1.1 429 Too Many Requests\r\n\
    content-type: application/json\r\ncontent-length: 92\r\nconnection: close\r\n\r\n\
    {\"error\":{\"code\":\"TOO_MANY_CONNECTIONS\",\"message\":\"too many connections from this address\"}}";

#[cfg(test)]
mod tests {
    use super::*;

    fn is_screaming_snake(text: &str) -> bool {
        !text.is_empty()
            && !text.starts_with('_')
            && !text.ends_with('_')
            && !text.contains("__")
            && text.bytes().all(|b| b.is_ascii_uppercase() || b == b'_')
    }

    #[test]
    fn every_code_is_unique_and_screaming_snake() {
        let mut seen = std::collections::HashSet::new();
        for code in Code::ALL {
            let text = code.as_str();
            assert!(is_screaming_snake(text), "{code:?}: {text}");
            assert!(seen.insert(text), "{text} is used twice");
            assert!((400..600).contains(&code.status()), "{code:?}");
        }
    }

    #[test]
    fn every_denial_is_a_client_error_with_a_message() {
        for code in [
            VerifyCode::Malformed,
            VerifyCode::NotFound,
            VerifyCode::Expired,
            VerifyCode::Revoked,
            VerifyCode::Disabled,
            VerifyCode::WrongEnvironment,
            VerifyCode::InsufficientScope,
            VerifyCode::IpNotAllowed,
            VerifyCode::RateLimited,
            VerifyCode::UsageExceeded,
            VerifyCode::SignatureRequired,
            VerifyCode::SignatureInvalid,
            VerifyCode::SignatureExpired,
            VerifyCode::Replayed,
            VerifyCode::MfaRequired,
        ] {
            let (status, message) = denial(code);
            assert!(is_screaming_snake(code.as_str()), "{code:?}");
            assert!([401, 403, 429].contains(&status), "{code:?}");
            assert!(!message.is_empty());
        }
    }

    #[test]
    fn the_connection_refusal_says_its_length() {
        let text = std::str::from_utf8(super::TOO_MANY_CONNECTIONS).unwrap_or_default();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or_default();
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let body: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
        assert_eq!(body["error"]["code"], Code::TooManyConnections.as_str());
        let status = Code::TooManyConnections.status().to_string();
        assert!(head.starts_with(&format!("HTTP/1.1 {status} ")));
    }
}
