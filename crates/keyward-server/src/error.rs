//! The one table that turns a failure into an HTTP status and a stable
//! machine `code`. Internal causes are logged here and never shown.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use keyward_core::{IdError, ValueError};
use keyward_proto::errors::Code;
use keyward_service::Error;
use serde::Serialize;

/// Every way an admin API call can fail: an operation's failure, with the
/// service's variants, or a request the transport could not take.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Op(#[from] keyward_service::Error),
    #[error("request body is too large")]
    PayloadTooLarge,
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
        Error::internal(e).into()
    }

    /// The message shown to the client. Messages are built without the
    /// values a caller sent; any key shape left in one (from a message this
    /// crate does not write) is redacted all the same.
    pub fn message(&self) -> String {
        keyward_core::key::redact_keys(&self.to_string()).into_owned()
    }

    /// The stable code of each failure; its status is the code's, from
    /// the one table in `keyward_proto::errors`.
    pub fn code(&self) -> Code {
        let op = match self {
            ApiError::PayloadTooLarge => return Code::PayloadTooLarge,
            ApiError::Op(op) => op,
        };
        match op {
            Error::Unauthenticated => Code::Unauthenticated,
            Error::MissingScope(_) | Error::Forbidden(_) | Error::OutOfReach => Code::Forbidden,
            Error::NotFound(_) | Error::NoMount => Code::NotFound,
            Error::InvalidRequest(_) => Code::InvalidRequest,
            Error::Conflict(_) | Error::RoleInUse { .. } => Code::Conflict,
            Error::LastRootToken => Code::LastRootToken,
            Error::EmptyFilter => Code::EmptyFilter,
            Error::SignatureInvalid(_) => Code::SignatureInvalid,
            Error::Sealed(_) => Code::Sealed,
            Error::Tampered => Code::Tampered,
            Error::InvalidShare(_) => Code::InvalidShare,
            Error::Internal(_) => Code::Internal,
            Error::MfaRequired => Code::MfaRequired,
            Error::StepUpRequired => Code::StepUpRequired,
            Error::TooManyAttempts { .. } => Code::TooManyAttempts,
        }
    }

    /// Status and stable code of each failure.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        let code = self.code();
        let status =
            StatusCode::from_u16(code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, code.as_str())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if let ApiError::Op(Error::Internal(cause)) = &self {
            let cause = keyward_core::key::redact_keys(&cause.to_string()).into_owned();
            tracing::error!(error = %cause, "internal error");
        }
        if let ApiError::Op(Error::Tampered) = &self {
            tracing::error!("a stored ciphertext failed authentication");
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code,
                message: self.message(),
            },
        };
        (status, axum::Json(body)).into_response()
    }
}

/// Every error an operation's parts raise reaches the client through the
/// service's own table, so the two cannot disagree.
macro_rules! through_service {
    ($($from:ty),*) => {$(
        impl From<$from> for ApiError {
            fn from(e: $from) -> Self {
                Error::from(e).into()
            }
        }
    )*};
}

through_service!(
    keyward_verify::VerifyError,
    keyward_service::StoreError,
    keyward_service::seal::SealError,
    ValueError,
    IdError
);

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return ApiError::PayloadTooLarge;
        }
        ApiError::Op(Error::InvalidRequest(redact(&rejection.body_text())))
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::Op(Error::InvalidRequest(redact(&rejection.body_text())))
    }
}

/// A request body that is not the JSON asked for, described by the field it
/// failed at and what that field accepts. Never the value: it may be a key
/// pasted into the wrong field.
pub(crate) fn json_error(e: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let inner = e.inner();
    if matches!(
        inner.classify(),
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof
    ) {
        // serde_json's syntax messages are fixed texts with a position.
        return ApiError::Op(Error::InvalidRequest(format!(
            "the body is not valid JSON: {inner}"
        )));
    }
    let message = inner.to_string();
    let message = message
        .rfind(" at line ")
        .map_or(message.as_str(), |at| &message[..at]);
    ApiError::Op(Error::InvalidRequest(describe(e.path(), message)))
}

/// A query string that does not fit the parameters of its route, described
/// like [`json_error`].
pub(crate) fn query_error(e: serde_path_to_error::Error<serde_urlencoded::de::Error>) -> ApiError {
    let message = e.inner().to_string();
    ApiError::Op(Error::InvalidRequest(format!(
        "invalid query string: {}",
        describe(e.path(), &message)
    )))
}

/// `field: what went wrong`, from a deserializer's path and message.
fn describe(path: &serde_path_to_error::Path, message: &str) -> String {
    let field = field_path(path);
    let category = category(message);
    let described = if field.is_empty() {
        category
    } else {
        format!("{field}: {category}")
    };
    keyward_core::key::redact_keys(&described).into_owned()
}

/// The path of a field as `a.b[0].c`. Segments are field names of the wire
/// types, except inside maps whose keys the caller chose: a segment that
/// does not look like one of Keyward's field names is shown as `…`.
fn field_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(if is_field_name(key) { key } else { "…" });
            }
            Segment::Unknown => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push('?');
            }
        }
    }
    out
}

/// Keyward's field names are short lower-case words joined by `_`. Keys and
/// tokens always hold upper-case letters, and are checked besides.
fn is_field_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 40
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !keyward_core::key::contains_key(name)
}

/// What a serde message says went wrong, without the value it quotes.
/// serde's own messages have fixed shapes (`invalid type: string "…",
/// expected u64`, ``unknown variant `…`, expected one of `a`, `b` ``); the
/// value sits before the last `, expected`, which serde writes from the
/// type, not the input. Any other message (a type's own check) has its
/// quoted parts removed.
fn category(message: &str) -> String {
    let expected = |rest: &str, separator: &str| {
        rest.rfind(separator)
            .map(|at| rest[at + separator.len()..].to_owned())
    };
    let shapes: [(&str, &str, &str); 5] = [
        ("invalid type: ", ", expected ", "wrong type"),
        ("invalid value: ", ", expected ", "invalid value"),
        ("invalid length ", ", expected ", "wrong length"),
        ("unknown variant `", "`, expected ", "unknown value"),
        ("unknown field `", "`, expected ", "unknown field"),
    ];
    for (start, separator, what) in shapes {
        if let Some(rest) = message.strip_prefix(start) {
            return match expected(rest, separator) {
                Some(wanted) => format!("{what}, expected {wanted}"),
                None => what.to_owned(),
            };
        }
    }
    // `missing field `x`` and `duplicate field `x`` name a field of the
    // type, which the caller did not write.
    if message.starts_with("missing field `") || message.starts_with("duplicate field `") {
        return message.to_owned();
    }
    redact_quoted(message)
}

/// A message with quoted values removed and keys redacted, for texts built
/// elsewhere (axum's rejections).
pub(crate) fn redact(message: &str) -> String {
    keyward_core::key::redact_keys(&redact_quoted(message)).into_owned()
}

/// Replaces the contents of double-quoted and backticked strings: messages
/// quote the offending value either way (`string "…"`, ``variant `…` ``).
pub(crate) fn redact_quoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut open: Option<char> = None;
    for c in message.chars() {
        match open {
            Some(quote) if c == quote => {
                out.push('…');
                out.push(c);
                open = None;
            }
            Some(_) => {}
            None => {
                if c == '"' || c == '`' {
                    open = Some(c);
                }
                out.push(c);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_values_are_redacted() {
        assert_eq!(
            redact_quoted("invalid type: string \"tm_live_abc\", variant `x`"),
            "invalid type: string \"…\", variant `…`"
        );
    }

    #[test]
    fn serde_messages_keep_what_is_expected_and_drop_the_value() {
        let cases = [
            (
                "invalid type: string \"tm_live_x\", expected u64",
                "wrong type, expected u64",
            ),
            (
                "unknown variant `tm_live_x`, expected one of `live`, `test`, `dev`",
                "unknown value, expected one of `live`, `test`, `dev`",
            ),
            (
                "unknown field `tm_live_x`, expected `name` or `scopes`",
                "unknown field, expected `name` or `scopes`",
            ),
            ("missing field `name`", "missing field `name`"),
            ("something about `tm_live_x`", "something about `…`"),
        ];
        for (message, expected) in cases {
            assert_eq!(category(message), expected, "{message}");
        }
    }
}
