//! What the gateway decides about a request, whichever reader read it: the
//! route, the key's verification, the refusal and its answer, and the
//! headers added for the upstream. The hand-written relay (`lib.rs`) and
//! the hyper one (`reference`) both call them, so the rules are written
//! once.

use std::net::IpAddr;
use std::sync::Arc;

use hyper::{Method, StatusCode};
use keyward_core::{Requirements, VerifyCode};
use keyward_gateway_head::BadRequest;
use keyward_net::write::push_decimal;
use keyward_proto::errors::{denial, Code};
use keyward_verify::{Proof, Verification};
use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::forwarded::{self, Origin};
use crate::Gateway;

/// An answer the gateway gives itself instead of the upstream's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub status: u16,
    /// The stable `error.code`.
    pub code: &'static str,
    pub message: &'static str,
}

impl Refusal {
    fn of(code: Code, message: &'static str) -> Self {
        Refusal {
            status: code.status(),
            code: code.as_str(),
            message,
        }
    }

    /// A request head the gateway will not read on.
    pub(crate) fn unreadable(bad: BadRequest) -> Self {
        match bad {
            BadRequest::TooManyHeaders => {
                Refusal::of(Code::HeadersTooLarge, "the request has too many headers")
            }
            BadRequest::Framing => Refusal::of(
                Code::BadFraming,
                "the request's Content-Length or Transfer-Encoding is invalid",
            ),
            BadRequest::Target => Refusal::of(Code::BadPath, "the request target must be a path"),
            BadRequest::Path(bad) => Refusal::of(Code::BadPath, bad.message()),
            BadRequest::Underscore => Refusal::of(
                Code::BadHeader,
                "header names with _ are not accepted; write - instead",
            ),
            BadRequest::Malformed => {
                Refusal::of(Code::BadRequest, "the request is not valid HTTP/1.1")
            }
        }
    }

    /// A request head that is not whole within the largest head read.
    pub(crate) fn head_too_large() -> Self {
        Refusal::of(Code::HeadersTooLarge, "the request head is too large")
    }

    /// A body past `max_body`, by its length or as it arrived.
    pub(crate) fn body_too_large() -> Self {
        Refusal::of(
            Code::PayloadTooLarge,
            "the request body is larger than this gateway accepts",
        )
    }

    /// A body behind its pace.
    pub(crate) fn body_too_slow() -> Self {
        Refusal::of(Code::RequestTimeout, "the request body arrived too slowly")
    }

    /// A body the client broke off or mis-framed.
    pub(crate) fn body_broken() -> Self {
        Refusal::of(
            Code::BadFraming,
            "the request body does not match its framing",
        )
    }

    /// 502 when the upstream could not be reached or broke off before its
    /// answer began, 504 when it did not connect or answer in time.
    pub(crate) fn upstream(timed_out: bool) -> Self {
        if timed_out {
            Refusal::of(
                Code::UpstreamTimeout,
                "the upstream API did not answer in time",
            )
        } else {
            Refusal::of(Code::UpstreamUnavailable, "the upstream API did not answer")
        }
    }

    /// A refused key: its verify code, and the reason a proof was refused
    /// when there is one (which says what to fix, and nothing secret).
    fn denied(code: VerifyCode, reason: Option<&'static str>) -> Self {
        let (status, message) = denial(code);
        Refusal {
            status,
            code: code.as_str(),
            message: reason.unwrap_or(message),
        }
    }

    /// A signed route's body without `Content-Length`: it must be read
    /// whole before the signature is checked.
    pub(crate) fn length_required() -> Self {
        Refusal::of(
            Code::LengthRequired,
            "a signed request's body needs a Content-Length",
        )
    }

    /// A signed request whose head could not be read for its signature.
    pub(crate) fn unsigned_head() -> Self {
        Refusal::of(
            Code::BadRequest,
            "the request head cannot be read for its signature",
        )
    }
}

/// What becomes of a request the gateway could read.
pub(crate) enum Decision {
    /// It goes upstream, as this key, from this client.
    Admit {
        verification: Verification,
        origin: Origin,
    },
    /// It is answered by the gateway; a refused key's verification comes
    /// with it, for the rate-limit headers and the observer.
    Refuse {
        refusal: Refusal,
        verification: Option<Verification>,
    },
}

/// Routes a request with `method` and the normalised `path`, then verifies
/// the `key` presented (`None`: no key header) with the route's scopes, as
/// the client behind `peer` (`forwarded`: the forwarding header's lines).
pub(crate) async fn decide(
    gateway: &Arc<Gateway>,
    method: &Method,
    path: &str,
    key: Option<&str>,
    forwarded: &str,
    peer: IpAddr,
    proof: Proof,
) -> Decision {
    let Some(route) = gateway.route(method, path) else {
        return Decision::Refuse {
            refusal: Refusal::of(Code::NoRoute, "no route matches this request"),
            verification: None,
        };
    };
    let Some(key) = key else {
        return Decision::Refuse {
            refusal: Refusal::of(
                Code::MissingKey,
                "an API key is required in Authorization: Bearer or X-API-Key",
            ),
            verification: None,
        };
    };
    let origin = forwarded::origin(
        &gateway.trusted_proxies,
        gateway.head.forwarded_header,
        forwarded,
        peer,
    );
    let required = Requirements {
        scopes: Arc::clone(&route.scopes),
        environment: gateway.environment,
        ip: Some(origin.client),
    };
    let verification = match verify(gateway, key, required, route.cost, proof).await {
        Ok(verification) => verification,
        Err(refusal) => {
            return Decision::Refuse {
                refusal,
                verification: None,
            }
        }
    };
    if verification.code != VerifyCode::Valid {
        return Decision::Refuse {
            refusal: Refusal::denied(verification.code, verification.reason),
            verification: Some(verification),
        };
    }
    Decision::Admit {
        verification,
        origin,
    }
}

/// Verifies from memory when it can; otherwise on the server's runtime,
/// which owns the store's connections. A refusal when the store failed, or
/// when the key's proof needs a secret this sealed node cannot open.
async fn verify(
    gateway: &Arc<Gateway>,
    key: &str,
    required: Requirements,
    cost: u64,
    proof: Proof,
) -> Result<Verification, Refusal> {
    let unavailable = Refusal::of(Code::Unavailable, "the key store is not available");
    let verifier = &gateway.verifier;
    let outcome = if gateway.threads == 0 {
        verifier
            .verify_with(&**gateway, key, &required, cost, &proof)
            .await
    } else {
        if let Some(answer) =
            verifier.verify_in_memory_with(&**gateway, key, &required, cost, &proof)
        {
            return Ok(answer);
        }
        let runtime = &gateway.store_runtime;
        let gateway = Arc::clone(gateway);
        let key = Zeroizing::new(key.to_owned());
        let verified = runtime.spawn(async move {
            let verifier = &gateway.verifier;
            verifier
                .verify_with(&*gateway, &key, &required, cost, &proof)
                .await
        });
        match verified.await {
            Ok(outcome) => outcome,
            Err(e) => {
                tracing::error!(error = %e, "a gateway verify did not finish");
                return Err(unavailable);
            }
        }
    };
    match outcome {
        Ok(verification) => Ok(verification),
        Err(keyward_verify::VerifyError::Sealed) => Err(Refusal::of(
            Code::Sealed,
            "this gateway is sealed: it cannot check this key's signature or code until unsealed",
        )),
        Err(e) => {
            tracing::error!(error = %e, "gateway could not verify");
            Err(unavailable)
        }
    }
}

/// The headers an admitted request gains on its way upstream, as header
/// lines in `out`: the caller's identity and the forwarding headers.
pub(crate) fn admitted_headers(
    out: &mut Vec<u8>,
    gateway: &Gateway,
    verification: &Verification,
    forwarded: &str,
    origin: Origin,
    peer: IpAddr,
) {
    identity_headers(out, verification);
    let header = gateway.head.forwarded_header;
    forwarded::push_headers(out, header, forwarded, origin, peer);
}

/// `X-Keyward-*` for the upstream, always all three: a value that is not
/// plain ASCII is percent-encoded ([`push_encoded`]) rather than left out,
/// so an upstream never takes a missing owner for an absent one. With the
/// two forwarding headers they are the
/// [`keyward_gateway_head::ADDED_HEADERS`] that the head parser leaves
/// room for.
fn identity_headers(out: &mut Vec<u8>, verification: &Verification) {
    let Some(key) = &verification.key else {
        return;
    };
    for (name, value) in [
        (&b"x-keyward-key-id: "[..], key.id()),
        (b"x-keyward-owner: ", &key.owner),
    ] {
        out.extend_from_slice(name);
        push_encoded(out, value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"x-keyward-scopes: ");
    for (i, scope) in key.policy.scopes.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        push_encoded(out, scope.as_str());
    }
    out.extend_from_slice(b"\r\n");
}

/// Percent-encodes (RFC 3986 §2.1, upper-case hex) the UTF-8 bytes of
/// `value` that a header value cannot carry as they are: `%` itself, bytes
/// outside printable ASCII, and a space at either end (which parsers trim).
/// Printable ASCII without `%` is written unchanged.
fn push_encoded(out: &mut Vec<u8>, value: &str) {
    let bytes = value.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        let edge = i == 0 || i + 1 == bytes.len();
        if b == b'%' || !(b' '..0x7f).contains(&b) || (b == b' ' && edge) {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
        } else {
            out.push(b);
        }
    }
}

/// `X-RateLimit-*` of the key's tightest limit, as header lines, on every
/// answer to a verified request.
pub(crate) fn rate_limit_headers(out: &mut Vec<u8>, verification: &Verification) {
    if let Some(limit) = verification.ratelimit {
        // Seconds until reset, rounded up, as the draft RateLimit fields do.
        let reset = ((limit.reset - now_ms()).max(0) as u64).div_ceil(1000);
        for (name, value) in [
            (&b"x-ratelimit-limit: "[..], limit.limit),
            (b"x-ratelimit-remaining: ", limit.remaining),
            (b"x-ratelimit-reset: ", reset),
        ] {
            out.extend_from_slice(name);
            push_decimal(out, value);
            out.extend_from_slice(b"\r\n");
        }
    }
}

fn now_ms() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// A whole JSON error answer, `{"error": {"code", "message"}}`, in `out`.
/// The answer to a `HEAD` request (`head`) has the same head and no body
/// (RFC 9110 §9.3.2): a body there would be read as the next answer on a
/// kept connection.
pub(crate) fn refusal(
    out: &mut Vec<u8>,
    refusal: &Refusal,
    verification: Option<&Verification>,
    close: bool,
    head: bool,
) {
    let body = serde_json::json!({
        "error": { "code": refusal.code, "message": refusal.message }
    })
    .to_string();
    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    push_decimal(out, u64::from(refusal.status));
    out.push(b' ');
    let reason = StatusCode::from_u16(refusal.status)
        .ok()
        .and_then(|s| s.canonical_reason());
    out.extend_from_slice(reason.unwrap_or("Error").as_bytes());
    out.extend_from_slice(b"\r\ncontent-type: application/json\r\ndate: ");
    keyward_net::write::http_date(out);
    out.extend_from_slice(b"\r\ncontent-length: ");
    push_decimal(out, body.len() as u64);
    out.extend_from_slice(b"\r\n");
    if let Some(v) = verification {
        rate_limit_headers(out, v);
        if let (429, Some(limit)) = (refusal.status, v.ratelimit) {
            out.extend_from_slice(b"retry-after: ");
            push_decimal(out, ((limit.reset - now_ms()).max(0) as u64).div_ceil(1000));
            out.extend_from_slice(b"\r\n");
        }
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !head {
        out.extend_from_slice(body.as_bytes());
    }
}
