//! `POST /v1/leaks`: a scanner found keys where they should not be, and
//! every one of them that is still valid is revoked at once (reason
//! `leaked`), with where it was found in the audit log.
//!
//! Two kinds of reporter use the same endpoint:
//! - `keyward scan --report`, with an admin token holding `leaks:report`,
//!   sends `{"leaks": [{"key", "location", "commit", "source"}]}`. The answer
//!   counts what was received and never says which keys existed: holding a
//!   string that looks like a key must not turn the endpoint into an oracle.
//! - GitHub's secret scanning (the partner programme) sends a JSON array of
//!   `{token, type, url, source}` signed with ECDSA P-256; the signature is
//!   checked against the public keys in `[leaks]` before anything else, and
//!   the answer labels each token `true_positive` or `false_positive`, as
//!   GitHub asks of its partners.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use keyward_core::{AdminScope, KeyDigest};
use keyward_proto::{LeakReceipt, LeakReport};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::Json;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::AppState;
use keyward_service::leaks::Reporter;
use keyward_service::Error;

/// Most leaks in one report.
pub const MAX_LEAKS: usize = 1000;
/// Largest report body.
const MAX_BODY: usize = 1 << 20;
const GITHUB_KEY_ID: &str = "github-public-key-identifier";
const GITHUB_SIGNATURE: &str = "github-public-key-signature";

/// One token of a GitHub secret-scanning report. GitHub defines this shape
/// and the labels below, so they stay here rather than in `keyward-proto`;
/// the body is parsed only after its signature is checked over the bytes
/// as received.
#[derive(Debug, Deserialize)]
struct GithubLeak {
    token: String,
    #[serde(rename = "type")]
    kind: String,
    url: Option<String>,
    source: Option<String>,
}

#[derive(Debug, Serialize)]
struct GithubLabel {
    token_hash: String,
    token_type: String,
    label: &'static str,
}

/// Reports leaked keys; each valid one is revoked.
#[utoipa::path(post, path = "/v1/leaks", tag = "keys", request_body = LeakReport,
    responses((status = 200, body = LeakReceipt), (status = 400, body = keyward_proto::ErrorResponse),
              (status = 401, body = keyward_proto::ErrorResponse)),
    security(("admin_token" = ["leaks:report"])))]
pub async fn report(State(state): State<Arc<AppState>>, request: Request) -> Response {
    match receive(&state, request).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

async fn receive(state: &Arc<AppState>, request: Request) -> Result<Response, ApiError> {
    let (mut parts, body) = request.into_parts();
    if parts.headers.contains_key(GITHUB_KEY_ID) || parts.headers.contains_key(GITHUB_SIGNATURE) {
        let body = read_body(body).await?;
        return github(state, &parts.headers, &body).await;
    }
    let caller = Caller::from_request_parts(&mut parts, state).await?;
    caller.require(AdminScope::LeaksReport)?;
    let body = read_body(body).await?;
    let report: LeakReport =
        super::parse_json_bytes(&body).map_err(|e| prefixed("invalid leak report", e))?;
    if report.leaks.len() > MAX_LEAKS {
        return Err(ApiError::Op(Error::InvalidRequest(format!(
            "at most {MAX_LEAKS} leaks in one report"
        ))));
    }
    let mut malformed = 0;
    for leak in &report.leaks {
        for text in [&leak.location, &leak.commit, &leak.source]
            .into_iter()
            .flatten()
        {
            if text.len() > 2048 {
                return Err(ApiError::Op(Error::InvalidRequest(
                    "location, commit and source are at most 2048 bytes".into(),
                )));
            }
        }
        let found = json!({
            "location": leak.location,
            "commit": leak.commit,
            "source": leak.source.as_deref().unwrap_or("keyward scan"),
        });
        if state
            .service
            .revoke_leaked(Reporter::Token(&caller), &leak.key, found)
            .await?
            .is_none()
        {
            malformed += 1;
        }
    }
    Ok(Json(LeakReceipt {
        received: report.leaks.len(),
        malformed,
        message: "every reported key that was valid is now revoked".into(),
    })
    .into_response())
}

async fn read_body(body: axum::body::Body) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, MAX_BODY)
        .await
        .map_err(|_| ApiError::PayloadTooLarge)
}

async fn github(
    state: &Arc<AppState>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .ok_or(ApiError::Op(Error::SignatureInvalid(
            "a GitHub report needs Github-Public-Key-Identifier and Github-Public-Key-Signature",
        )))
    };
    let (key_id, signature) = (header(GITHUB_KEY_ID)?, header(GITHUB_SIGNATURE)?);
    let key = state
        .partner_keys
        .iter()
        .find(|(id, _)| id == key_id)
        .map(|(_, key)| key)
        .ok_or(ApiError::Op(Error::SignatureInvalid(
            "the signing key is not one this server trusts",
        )))?;
    key.verify(body, signature).map_err(|_| {
        ApiError::Op(Error::SignatureInvalid(
            "the report's signature does not verify",
        ))
    })?;
    let leaks: Vec<GithubLeak> =
        super::parse_json_document(body).map_err(|e| prefixed("invalid GitHub report", e))?;
    if leaks.len() > MAX_LEAKS {
        return Err(ApiError::Op(Error::InvalidRequest(format!(
            "at most {MAX_LEAKS} tokens in one report"
        ))));
    }
    let mut labels = Vec::with_capacity(leaks.len());
    for leak in &leaks {
        let found = json!({
            "location": leak.url,
            "source": format!("github {}", leak.source.as_deref().unwrap_or("secret scanning")),
            "type": leak.kind,
        });
        let label = match state
            .service
            .revoke_leaked(Reporter::Partner, &leak.token, found)
            .await?
        {
            Some(true) => "true_positive",
            _ => "false_positive",
        };
        labels.push(GithubLabel {
            // SHA-256 of the token, which is what a key digest is.
            token_hash: KeyDigest::of(&leak.token)
                .as_bytes()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
            token_type: leak.kind.clone(),
            label,
        });
    }
    Ok(Json(labels).into_response())
}

/// A body error told as part of a report's.
fn prefixed(what: &str, e: ApiError) -> ApiError {
    match e {
        ApiError::Op(Error::InvalidRequest(message)) => {
            ApiError::Op(Error::InvalidRequest(format!("{what}: {message}")))
        }
        other => other,
    }
}
