//! Request handlers, one module per resource, and what they share: the JSON
//! extractors that turn rejections into typed errors, audit event building
//! and pagination.

pub mod apis;
pub mod audit;
pub mod health;
pub mod keys;
pub mod kv;
pub mod leaks;
pub mod sys;
pub mod tokens;
pub mod transit;
pub mod users;

use axum::extract::{FromRequest, FromRequestParts};
use keyward_core::AuditAction;
use time::OffsetDateTime;

use crate::auth::Caller;
use crate::error::ApiError;
use keyward_core::AuditEvent;
use keyward_service::Error;
use keyward_service::Page;

/// A JSON object body (`Content-Type: application/json` or `…+json`),
/// whose failures become [`ApiError`]s naming the field, never the value.
/// Unlike `axum::Json` it refuses a top-level array, which serde would read
/// as a struct's fields in order.
pub struct Json<T>(pub T);

impl<S, T> FromRequest<S> for Json<T>
where
    S: Send + Sync,
    T: serde::de::DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        if !is_json(req.headers()) {
            return Err(ApiError::Op(Error::InvalidRequest(
                "the body must be JSON, sent with Content-Type: application/json".into(),
            )));
        }
        let bytes = body_bytes(req, state).await?;
        parse_json_bytes(&bytes).map(Json)
    }
}

/// Whether the request says its body is JSON, as `axum::Json` decides it.
fn is_json(headers: &axum::http::HeaderMap) -> bool {
    let Some(value) = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

impl<T: serde::Serialize> axum::response::IntoResponse for Json<T> {
    fn into_response(self) -> axum::response::Response {
        axum::Json(self.0).into_response()
    }
}

/// A JSON body that may be left out entirely (an empty body is `None`), for
/// actions whose parameters all have defaults, such as revoke and rotate.
pub struct OptionalJson<T>(pub Option<T>);

impl<S, T> FromRequest<S> for OptionalJson<T>
where
    S: Send + Sync,
    T: serde::de::DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        let bytes = body_bytes(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJson(None));
        }
        Ok(OptionalJson(Some(parse_json(&String::from_utf8_lossy(
            &bytes,
        ))?)))
    }
}

/// A JSON body read leniently: bytes that are not UTF-8 become U+FFFD
/// instead of failing the whole request, and no content type is required.
/// Verify uses it so a key with stray bytes answers `MALFORMED` like any
/// other malformed key, rather than a request error.
pub struct LenientJson<T>(pub T);

impl<S, T> FromRequest<S> for LenientJson<T>
where
    S: Send + Sync,
    T: serde::de::DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        let bytes = body_bytes(req, state).await?;
        parse_lenient(&bytes).map(LenientJson)
    }
}

/// Parses a body as [`LenientJson`] does.
pub(crate) fn parse_lenient<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    parse_json(&String::from_utf8_lossy(bytes))
}

/// The whole body, within the router's size limit.
async fn body_bytes<S: Send + Sync>(
    req: axum::extract::Request,
    state: &S,
) -> Result<axum::body::Bytes, ApiError> {
    axum::body::Bytes::from_request(req, state)
        .await
        .map_err(|rejection| {
            if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge
            } else {
                ApiError::Op(Error::InvalidRequest(
                    "the request body could not be read".into(),
                ))
            }
        })
}

/// Parses JSON, reporting errors without the offending values.
fn parse_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, ApiError> {
    parse_json_bytes(text.as_bytes())
}

/// [`parse_json`] for a body read as bytes.
pub(crate) fn parse_json_bytes<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
) -> Result<T, ApiError> {
    // Every body is an object: serde would also read a struct from an
    // array of its fields in order.
    if bytes.trim_ascii_start().first() != Some(&b'{') {
        return Err(ApiError::Op(Error::InvalidRequest(
            "the request body must be a JSON object".into(),
        )));
    }
    parse_json_document(bytes)
}

/// [`parse_json_bytes`] for a body whose shape another party defined and
/// that need not be an object (GitHub's leak reports are arrays).
pub(crate) fn parse_json_document<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
) -> Result<T, ApiError> {
    // Verify parses its body here on every call: the plain parse keeps that
    // path as fast as it was, and only a refused body is read again to find
    // the field it failed at.
    if let Ok(value) = serde_json::from_slice::<T>(bytes) {
        return Ok(value);
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    match serde_path_to_error::deserialize::<_, T>(&mut deserializer) {
        Err(e) => Err(crate::error::json_error(e)),
        // Something follows the value; serde_json's message for it is a
        // fixed text with a position.
        Ok(_) => Err(ApiError::Op(Error::InvalidRequest(
            match deserializer.end() {
                Err(e) => format!("the body is not valid JSON: {e}"),
                Ok(()) => "the body is not valid JSON".to_owned(),
            },
        ))),
    }
}

/// The query string's parameters, whose failures become [`ApiError`]s
/// naming the parameter, never the value.
pub struct Query<T>(pub T);

impl<S, T> FromRequestParts<S> for Query<T>
where
    S: Send + Sync,
    T: serde::de::DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or_default();
        let deserializer =
            serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(deserializer)
            .map(Query)
            .map_err(crate::error::query_error)
    }
}

/// Default page size of listings.
pub const DEFAULT_LIMIT: u32 = 100;
/// Largest page size a caller may ask for.
pub const MAX_LIMIT: u32 = 1000;

/// Builds a page request from `cursor` and `limit` query parameters.
pub fn page(cursor: Option<String>, limit: Option<u32>) -> Result<Page, ApiError> {
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(ApiError::Op(Error::InvalidRequest(format!(
            "limit must be between 1 and {MAX_LIMIT}"
        ))));
    }
    Ok(Page {
        after: cursor,
        limit,
    })
}

/// The cursor of the page after one that returned `ids`: the last id when the
/// page was full.
pub fn next_cursor<'a>(
    ids: impl DoubleEndedIterator<Item = &'a str>,
    len: usize,
    page: &Page,
) -> Option<String> {
    if len == page.limit as usize {
        ids.last().map(str::to_owned)
    } else {
        None
    }
}

/// The audit event of an operation `caller` performed (`None`: the server
/// itself) at `now`.
pub fn audit_event(
    caller: Option<&Caller>,
    action: AuditAction,
    target: &str,
    details: serde_json::Value,
    now: OffsetDateTime,
) -> Result<AuditEvent, ApiError> {
    Ok(keyward_service::audit_event(
        caller.map(|c| &c.0),
        action,
        target,
        details,
        now,
    )?)
}

pub use keyward_service::tokens::within;

pub use keyward_service::now;
