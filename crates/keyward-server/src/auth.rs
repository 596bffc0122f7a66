//! Who is calling: the admin token (`kwa_…`) or a user's session
//! (`kws_…`) in `Authorization: Bearer`, checked on every admin request.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use keyward_core::ParsedKey;
use keyward_service::Actor;
use time::OffsetDateTime;

use crate::error::ApiError;
use crate::tls::PeerCertificate;
use crate::AppState;
use keyward_service::Error;

/// The authenticated admin token of a request: the [`Actor`] its
/// operation runs for.
pub struct Caller(pub Actor);

impl std::ops::Deref for Caller {
    type Target = Actor;

    fn deref(&self) -> &Actor {
        &self.0
    }
}

impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        authenticate(
            state,
            parts.headers.get(AUTHORIZATION).map(|v| v.as_bytes()),
            parts.headers.get("x-vault-token").map(|v| v.as_bytes()),
            parts.extensions.get::<PeerCertificate>().copied(),
        )
        .await
    }
}

/// The caller of a request with these `Authorization` and `X-Vault-Token`
/// header values (the first of each): `Authorization: Bearer`, or Vault's
/// header so that Vault clients work unchanged. `peer` is the client
/// certificate of a mutual TLS connection: a token bound to a certificate
/// authenticates only with it, and is otherwise answered as any invalid
/// token is.
pub(crate) async fn authenticate(
    state: &AppState,
    authorization: Option<&[u8]>,
    vault_token: Option<&[u8]>,
    peer: Option<PeerCertificate>,
) -> Result<Caller, ApiError> {
    let presented = match authorization {
        Some(value) => visible_ascii(value)
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or(ApiError::Op(Error::Unauthenticated))?,
        None => vault_token
            .and_then(visible_ascii)
            .ok_or(ApiError::Op(Error::Unauthenticated))?,
    }
    .trim();
    // The format check runs before any storage access: garbage costs a
    // parse, not a query.
    let parsed = ParsedKey::parse(presented).map_err(|_| ApiError::Op(Error::Unauthenticated))?;
    let prefix = parsed.prefix();
    if prefix != keyward_core::key::ADMIN_PREFIX && prefix != keyward_core::key::SESSION_PREFIX {
        return Err(ApiError::Op(Error::Unauthenticated));
    }
    let digest = parsed.digest();
    let token = state.tokens.lookup(state.store.as_ref(), &digest).await?;
    let now = OffsetDateTime::now_utc();
    let token = token
        .filter(|t| t.is_usable(now))
        .filter(|t| bound_to(t.client_cert.as_ref(), peer))
        .ok_or(ApiError::Op(Error::Unauthenticated))?;
    let actor = Actor::new(token);
    state.service.note_use(&actor, now);
    Ok(Caller(actor))
}

/// Whether a token bound to `cert` (if it is) may be used on a connection
/// that presented `peer`.
fn bound_to(cert: Option<&[u8; 32]>, peer: Option<PeerCertificate>) -> bool {
    match (cert, peer) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(cert), Some(peer)) => bool::from(subtle::ConstantTimeEq::ct_eq(
            cert.as_slice(),
            peer.sha256.as_slice(),
        )),
    }
}

/// A header value as text when it is all visible ASCII (or tabs), as
/// `HeaderValue::to_str` reads it.
fn visible_ascii(value: &[u8]) -> Option<&str> {
    value
        .iter()
        .all(|&b| (b' '..0x7f).contains(&b) || b == b'\t')
        .then(|| std::str::from_utf8(value).ok())
        .flatten()
}
