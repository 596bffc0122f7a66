//! Signed HTTP requests, checked in two schemes with the same key
//! material: RFC 9421 HTTP Message Signatures, and the profile of
//! Binance's SIGNED endpoints (a `signature` parameter over the query
//! string and form body as sent), which exchange clients such as
//! python-binance and ccxt already speak.
//!
//! Everything here is pure. The caller passes the parts of a request as
//! the client sent them; no clock is read and nothing is remembered. A
//! [`Verified`] says when the request was signed and how long it asks to
//! be honoured, so the caller applies its own window, and it carries the
//! [`Verified::replay_id`] the caller remembers to refuse a replay.
//!
//! A [`Refusal`] carries a short, fixed English sentence that helps an
//! honest client's developer fix their code. No reason holds a value
//! from the request or the key, so a reason can be shown to anyone.

use base64::Engine as _;
use ed25519_dalek::{Signature, VerifyingKey};
use hmac::{Hmac, Mac};
use sfv::{BareItem, Dictionary, InnerList, ListEntry, Parser, Version};
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

/// The algorithms a key signs requests with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    /// HMAC-SHA256 under a secret the client shares with Keyward.
    HmacSha256,
    /// Ed25519 (RFC 8032); Keyward holds only the public key.
    Ed25519,
}

impl Algorithm {
    /// The name in RFC 9421's algorithm registry, which is what the `alg`
    /// signature parameter carries.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::HmacSha256 => "hmac-sha256",
            Algorithm::Ed25519 => "ed25519",
        }
    }
}

/// The key a signature is checked against. It has no `Debug`, since the
/// HMAC variant is a shared secret.
#[derive(Clone, Copy)]
pub enum KeyMaterial<'a> {
    /// The shared secret of an HMAC-SHA256 key.
    Hmac(&'a [u8]),
    /// The public half of an Ed25519 key.
    Ed25519(&'a VerifyingKey),
}

impl KeyMaterial<'_> {
    /// The algorithm this key signs with; one key never serves two.
    pub fn algorithm(&self) -> Algorithm {
        match self {
            KeyMaterial::Hmac(_) => Algorithm::HmacSha256,
            KeyMaterial::Ed25519(_) => Algorithm::Ed25519,
        }
    }
}

/// The parts of a request that a signature may cover, as the client sent
/// them. It has no `Debug`, since headers such as `Authorization` carry
/// secrets.
#[derive(Clone, Copy)]
pub struct Request<'a> {
    /// The method, case-sensitive, as on the request line.
    pub method: &'a str,
    /// `http` or `https`, in any case: how the request reached Keyward's
    /// listener, which `@scheme` and `@target-uri` name.
    pub scheme: &'a str,
    /// The Host as sent. `@authority` lower-cases it and drops the
    /// scheme's default port, as RFC 9421 §2.2.3 asks.
    pub authority: &'a str,
    /// The path as sent, starting with `/`, without the query.
    pub path: &'a str,
    /// The query as sent, without the `?`; `None` when the target had no
    /// `?`. Binance's parameters travel here.
    pub query: Option<&'a str>,
    /// Every header line in order. Names are matched in any case, and a
    /// name may repeat; repeated lines are combined as RFC 9110 says.
    pub headers: &'a [(&'a str, &'a [u8])],
    /// The body, when the caller has read it. It is what Content-Digest
    /// is checked against and where Binance's form parameters travel.
    pub body: Option<&'a [u8]>,
    /// The body's SHA-256, for a caller that streamed the body and kept
    /// only its digest. Used only when `body` is `None`.
    pub body_sha256: Option<[u8; 32]>,
}

/// The two ways a request can be signed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// RFC 9421 HTTP Message Signatures.
    Rfc9421,
    /// Binance's SIGNED-endpoint profile.
    Binance,
}

/// A signature that checked out: what the caller needs for its time
/// window and its replay memory. Nothing here is secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// When the client says it signed, in Unix milliseconds: RFC 9421's
    /// `created` (seconds) × 1000, or Binance's `timestamp`. The caller
    /// compares it with its clock.
    pub created_ms: i64,
    /// RFC 9421's `expires` × 1000, when the client set one: the client's
    /// own limit, which the caller should honour besides its window.
    pub expires_ms: Option<i64>,
    /// Binance's `recvWindow`, when given: how long after `timestamp` the
    /// client wants the request refused.
    pub window_ms: Option<u64>,
    /// What the caller remembers, for as long as the request could still
    /// be accepted, to refuse the same signed request twice: SHA-256 over
    /// a scheme tag and the RFC 9421 nonce, or over a scheme tag and the
    /// Binance signature's bytes, since Binance has no nonce and its
    /// signature changes with every timestamp.
    pub replay_id: [u8; 32],
}

/// Why a request's signature was refused. The reason is a fixed sentence
/// for the client's developer, never a value from the request or key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The request carries no signature of the scheme asked for, so the
    /// caller may try another way of authenticating it.
    #[error("the request is not signed: {0}")]
    Missing(&'static str),
    /// The request carries a signature that does not hold, or that the
    /// policy does not accept. The caller must refuse the request.
    #[error("the request's signature was refused: {0}")]
    Invalid(&'static str),
}

impl Refusal {
    /// The fixed sentence saying what was wrong.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::Missing(reason) | Refusal::Invalid(reason) => reason,
        }
    }

    /// Whether the request was not signed at all, as opposed to signed
    /// badly.
    pub fn is_missing(&self) -> bool {
        matches!(self, Refusal::Missing(_))
    }

    /// A stable machine code for the kind of refusal, for API answers.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::Missing(_) => "signature_missing",
            Refusal::Invalid(_) => "signature_invalid",
        }
    }
}

/// Checks the RFC 9421 signature that names `key_id` in its `keyid`
/// parameter against `key`, and Keyward's policy for it: a `created` time
/// and a `nonce` are required, the method, the target and (for a request
/// with a body) `content-digest` must be covered, and Content-Digest must
/// match the body.
pub fn verify_rfc9421(
    request: &Request<'_>,
    key_id: &str,
    key: KeyMaterial<'_>,
) -> Result<Verified, Refusal> {
    let Some(inputs) = combined_field(request, "signature-input") else {
        return Err(Refusal::Missing(
            "the request has no Signature-Input header",
        ));
    };
    let inputs = parse_dictionary(&inputs).ok_or(Refusal::Invalid(
        "Signature-Input is not a structured-field dictionary",
    ))?;
    let (label, input) = select_input(&inputs, key_id)?;
    let params = SignatureParams::read(input, key.algorithm())?;
    let signature = signature_member(request, label)?;
    let base = build_base(request, input)?;
    require_coverage(request, &base.covered)?;
    check_content_digest(request)?;
    check_signature(key, base.text.as_bytes(), &signature)?;
    Ok(Verified {
        created_ms: params.created_ms,
        expires_ms: params.expires_ms,
        window_ms: None,
        replay_id: replay_id(RFC9421_TAG, params.nonce.as_bytes()),
    })
}

/// Checks a Binance-style signed request: the `signature` parameter, in
/// the query or the form body, over the query and body as sent with the
/// `signature` parameter taken out. `timestamp` is required and
/// `recvWindow` optional. The API key itself travels in `X-MBX-APIKEY`,
/// which the caller reads to find `key`.
pub fn verify_binance(request: &Request<'_>, key: KeyMaterial<'_>) -> Result<Verified, Refusal> {
    let query = request.query.unwrap_or("").as_bytes();
    let body = form_body(request);
    let body_params: &[u8] = match body {
        FormBody::Form(form) => form,
        FormBody::Absent | FormBody::NotForm | FormBody::Unseen => b"",
    };
    let mut signatures = Vec::new();
    let mut message = Vec::with_capacity(query.len() + body_params.len());
    let mut timestamp = None;
    let mut window = None;
    let mut repeated = None;
    // Binance's payload is the query and the body concatenated with no
    // separator (its `totalParams`), each with the signature removed.
    for part in [query, body_params] {
        let mut first = true;
        for element in part.split(|byte| *byte == b'&') {
            let (name, value) = split_parameter(element);
            let once = match percent_decode(name).as_deref() {
                Some(b"signature") => {
                    signatures.push(value);
                    continue;
                }
                Some(b"timestamp") => Some((&mut timestamp, "timestamp appears more than once")),
                Some(b"recvWindow") => Some((&mut window, "recvWindow appears more than once")),
                _ => None,
            };
            // Two of either could be read differently by this check and by
            // the application, so a repeat is refused, though only after
            // the signature count, which is the likelier mistake.
            if let Some((slot, twice)) = once {
                if slot.replace(value).is_some() {
                    repeated.get_or_insert(twice);
                }
            }
            if !first {
                message.push(b'&');
            }
            first = false;
            message.extend_from_slice(element);
        }
    }
    let signature = match signatures.as_slice() {
        [] => return Err(Refusal::Missing("signature parameter is required")),
        [one] => *one,
        _ => return Err(Refusal::Invalid("signature appears more than once")),
    };
    if let Some(reason) = repeated {
        return Err(Refusal::Invalid(reason));
    }
    match body {
        FormBody::Absent | FormBody::Form(_) => {}
        FormBody::NotForm => {
            return Err(Refusal::Invalid(
                "the body is not form parameters, so the signature cannot cover it",
            ))
        }
        FormBody::Unseen => {
            return Err(Refusal::Invalid(
                "the body is needed to check this signature, and only its digest was given",
            ))
        }
    }
    let created_ms = match timestamp {
        None => return Err(Refusal::Invalid("timestamp parameter is required")),
        Some(value) => millis(value).ok_or(Refusal::Invalid(
            "timestamp must be a whole number of milliseconds",
        ))?,
    };
    let window_ms = match window {
        None => None,
        Some(value) => Some(
            millis(value)
                .and_then(|ms| u64::try_from(ms).ok())
                .filter(|ms| (1..=MAX_RECV_WINDOW_MS).contains(ms))
                .ok_or(Refusal::Invalid(
                    "recvWindow must be a whole number of milliseconds from 1 to 60000",
                ))?,
        ),
    };
    let signature = percent_decode(signature)
        .ok_or(Refusal::Invalid("signature is not valid percent-encoding"))?;
    let signature_bytes = match key {
        KeyMaterial::Hmac(secret) => {
            let mut claimed = [0u8; 32];
            std::str::from_utf8(&signature)
                .ok()
                .and_then(|text| crate::hex::decode(text, &mut claimed))
                .ok_or(Refusal::Invalid(
                    "signature must be the HMAC-SHA256 in 64 hex digits",
                ))?;
            let expected = hmac_sha256(secret, &message)?;
            if !bool::from(expected.ct_eq(&claimed)) {
                return Err(SIGNATURE_MISMATCH);
            }
            claimed.to_vec()
        }
        KeyMaterial::Ed25519(public) => {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(&signature)
                .ok()
                .filter(|bytes| bytes.len() == ed25519_dalek::SIGNATURE_LENGTH)
                .ok_or(Refusal::Invalid(
                    "signature must be the Ed25519 signature in standard base64",
                ))?;
            let parsed = Signature::from_slice(&decoded).map_err(|_| SIGNATURE_LENGTH)?;
            public
                .verify_strict(&message, &parsed)
                .map_err(|_| SIGNATURE_MISMATCH)?;
            decoded
        }
    };
    Ok(Verified {
        created_ms,
        expires_ms: None,
        window_ms,
        replay_id: replay_id(BINANCE_TAG, &signature_bytes),
    })
}

/// Whether the request carries a signature of `scheme` at all, so the
/// caller can choose how to authenticate it before checking anything:
/// for RFC 9421 a Signature-Input header, for Binance a `signature`
/// parameter in the query or the form body.
pub fn is_signed(request: &Request<'_>, scheme: Scheme) -> bool {
    match scheme {
        Scheme::Rfc9421 => field_lines(request, "signature-input").next().is_some(),
        Scheme::Binance => {
            let query = request.query.unwrap_or("").as_bytes();
            has_signature_parameter(query)
                || matches!(form_body(request), FormBody::Form(form) if has_signature_parameter(form))
        }
    }
}

// Prefixes of the replay id, so that an RFC 9421 nonce and a Binance
// signature can never give the same id.
const RFC9421_TAG: &[u8] = b"keyward/httpsig/rfc9421\0";
const BINANCE_TAG: &[u8] = b"keyward/httpsig/binance\0";

/// Binance refuses a `recvWindow` above a minute; so does Keyward.
const MAX_RECV_WINDOW_MS: u64 = 60_000;

/// RFC 9421 puts no limit on a nonce; this one keeps the caller's replay
/// memory and the signature parameters small.
const MAX_NONCE_LEN: usize = 128;

const SIGNATURE_MISMATCH: Refusal = Refusal::Invalid("signature does not match");
const SIGNATURE_LENGTH: Refusal =
    Refusal::Invalid("signature has the wrong length for the key's algorithm");

fn replay_id(tag: &[u8], value: &[u8]) -> [u8; 32] {
    Sha256::new()
        .chain_update(tag)
        .chain_update(value)
        .finalize()
        .into()
}

fn hmac_sha256(secret: &[u8], message: &[u8]) -> Result<[u8; 32], Refusal> {
    // HMAC takes a key of any length, so this error cannot happen; it is
    // mapped rather than unwrapped all the same.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret)
        .map_err(|_| Refusal::Invalid("the key cannot be used for hmac-sha256"))?;
    mac.update(message);
    Ok(mac.finalize().into_bytes().into())
}

/// What the verifier knows of the body. An empty body, and the digest of
/// an empty body, are no body: nothing is there to protect.
enum Body<'a> {
    /// No body, an empty one, or neither body nor digest given.
    None,
    /// The body itself, which every digest can be checked against.
    Bytes(&'a [u8]),
    /// Only the body's SHA-256, from a caller that streamed it.
    Digest([u8; 32]),
}

impl Body<'_> {
    fn is_present(&self) -> bool {
        !matches!(self, Body::None)
    }
}

fn body_of<'a>(request: &Request<'a>) -> Body<'a> {
    match (request.body, request.body_sha256) {
        (Some([]), _) => Body::None,
        (Some(bytes), _) => Body::Bytes(bytes),
        (None, Some(digest)) if digest == <[u8; 32]>::from(Sha256::digest(b"")) => Body::None,
        (None, Some(digest)) => Body::Digest(digest),
        (None, None) => Body::None,
    }
}

// --- RFC 9421 ---------------------------------------------------------

/// The signature parameters Keyward's policy reads. Others (`tag`, and any
/// unknown one) stay in `@signature-params` as received and are ignored.
struct SignatureParams<'i> {
    created_ms: i64,
    expires_ms: Option<i64>,
    nonce: &'i str,
}

impl<'i> SignatureParams<'i> {
    fn read(input: &'i InnerList, algorithm: Algorithm) -> Result<Self, Refusal> {
        let params = &input.params;
        let created_ms = match params.get("created") {
            None => return Err(Refusal::Invalid("created parameter is required")),
            Some(value) => seconds_to_ms(value).ok_or(Refusal::Invalid(
                "created parameter must be a non-negative integer of seconds",
            ))?,
        };
        let expires_ms = match params.get("expires") {
            None => None,
            Some(value) => Some(seconds_to_ms(value).ok_or(Refusal::Invalid(
                "expires parameter must be a non-negative integer of seconds",
            ))?),
        };
        let nonce = match params.get("nonce") {
            None => return Err(Refusal::Invalid("nonce parameter is required")),
            Some(value) => value
                .as_string()
                .map(|nonce| nonce.as_str())
                .filter(|nonce| (1..=MAX_NONCE_LEN).contains(&nonce.len()))
                .ok_or(Refusal::Invalid(
                    "nonce parameter must be a string of 1 to 128 characters",
                ))?,
        };
        if let Some(alg) = params.get("alg") {
            if alg.as_string().map(|alg| alg.as_str()) != Some(algorithm.as_str()) {
                return Err(Refusal::Invalid("alg does not match the key's algorithm"));
            }
        }
        Ok(SignatureParams {
            created_ms,
            expires_ms,
            nonce,
        })
    }
}

fn seconds_to_ms(value: &BareItem) -> Option<i64> {
    let seconds = i64::from(value.as_integer()?);
    // Structured-field integers have at most 15 digits, so this cannot
    // overflow; it is checked rather than assumed.
    (seconds >= 0).then(|| seconds.checked_mul(1000)).flatten()
}

/// The one Signature-Input member whose `keyid` is `key_id`. Two members
/// naming the same key are refused rather than one picked, so what is
/// checked never depends on member order.
fn select_input<'d>(
    inputs: &'d Dictionary,
    key_id: &str,
) -> Result<(&'d str, &'d InnerList), Refusal> {
    if inputs.is_empty() {
        return Err(Refusal::Invalid("Signature-Input names no signature"));
    }
    let mut found = None;
    let mut any_keyid = false;
    for (label, entry) in inputs {
        let ListEntry::InnerList(input) = entry else {
            continue;
        };
        let Some(keyid) = input.params.get("keyid").and_then(BareItem::as_string) else {
            continue;
        };
        any_keyid = true;
        if keyid.as_str() == key_id {
            if found.is_some() {
                return Err(Refusal::Invalid("more than one signature names the key"));
            }
            found = Some((label.as_str(), input));
        }
    }
    match found {
        Some(found) => Ok(found),
        None if any_keyid => Err(Refusal::Invalid("keyid names another key")),
        None => Err(Refusal::Invalid("keyid parameter is required")),
    }
}

/// The bytes of the Signature member under `label`.
fn signature_member(request: &Request<'_>, label: &str) -> Result<Vec<u8>, Refusal> {
    let Some(signatures) = combined_field(request, "signature") else {
        return Err(Refusal::Invalid("the request has no Signature header"));
    };
    let signatures = parse_dictionary(&signatures).ok_or(Refusal::Invalid(
        "Signature is not a structured-field dictionary",
    ))?;
    match signatures.get(label) {
        None => Err(Refusal::Invalid(
            "Signature has no member with the label Signature-Input gives the key",
        )),
        Some(ListEntry::Item(item)) => {
            item.bare_item
                .as_byte_sequence()
                .map(<[u8]>::to_vec)
                .ok_or(Refusal::Invalid(
                    "the Signature member is not a byte sequence",
                ))
        }
        Some(ListEntry::InnerList(_)) => Err(Refusal::Invalid(
            "the Signature member is not a byte sequence",
        )),
    }
}

/// A signature base (RFC 9421 §2.5) and the component identifiers it
/// covers, in order.
struct Base<'i> {
    text: String,
    covered: Vec<&'i str>,
}

/// The signature base of `input` over `request`, exactly as RFC 9421
/// §2.5 builds it, without Keyward's coverage policy.
#[cfg(test)]
pub(crate) fn signature_base(request: &Request<'_>, input: &InnerList) -> Result<String, Refusal> {
    build_base(request, input).map(|base| base.text)
}

fn build_base<'i>(request: &Request<'_>, input: &'i InnerList) -> Result<Base<'i>, Refusal> {
    let mut text = String::new();
    let mut covered: Vec<&'i str> = Vec::with_capacity(input.items.len());
    for item in &input.items {
        let Some(id) = item.bare_item.as_string().map(|id| id.as_str()) else {
            return Err(Refusal::Invalid("a component identifier is not a string"));
        };
        if !item.params.is_empty() {
            return Err(Refusal::Invalid("component parameter not supported"));
        }
        if covered.contains(&id) {
            return Err(Refusal::Invalid("a component is covered twice"));
        }
        covered.push(id);
        let value = if id.starts_with('@') {
            derived_component(request, id)?
        } else {
            field_component(request, id)?
        };
        text.push('"');
        text.push_str(id);
        text.push_str("\": ");
        text.push_str(&value);
        text.push('\n');
    }
    text.push_str("\"@signature-params\": ");
    text.push_str(&serialize_inner_list(input));
    Ok(Base { text, covered })
}

/// The inner list re-serialised by sfv, which is the canonical form RFC
/// 9421 §2.3 signs, whatever spacing the client sent.
fn serialize_inner_list(input: &InnerList) -> String {
    let mut list = sfv::ListSerializer::new();
    {
        let mut inner = list.inner_list();
        inner.items(&input.items);
        _ = inner.finish().parameters(&input.params);
    }
    // `finish` is `None` only for a list with no members; this one has
    // one, so the default is never taken.
    list.finish().unwrap_or_default()
}

fn derived_component(request: &Request<'_>, id: &str) -> Result<String, Refusal> {
    let value = match id {
        "@method" => {
            if !is_token(request.method.as_bytes()) {
                return Err(Refusal::Invalid("the method is not an HTTP token"));
            }
            request.method.to_owned()
        }
        "@scheme" => scheme(request)?.to_owned(),
        "@authority" => authority(request)?,
        // The authority is normalised here as for `@authority`, which is
        // how HTTP client libraries write the URI they were given.
        "@target-uri" => {
            let mut uri = format!(
                "{}://{}{}",
                scheme(request)?,
                authority(request)?,
                path(request)?
            );
            if let Some(query) = request.query {
                uri.push('?');
                uri.push_str(query);
            }
            uri
        }
        "@request-target" => {
            let mut target = path(request)?.to_owned();
            if let Some(query) = request.query {
                target.push('?');
                target.push_str(query);
            }
            target
        }
        "@path" => path(request)?.to_owned(),
        "@query" => format!("?{}", request.query.unwrap_or("")),
        _ => return Err(Refusal::Invalid("derived component not supported")),
    };
    visible_text(value.into_bytes())
}

fn scheme(request: &Request<'_>) -> Result<&'static str, Refusal> {
    if request.scheme.eq_ignore_ascii_case("https") {
        Ok("https")
    } else if request.scheme.eq_ignore_ascii_case("http") {
        Ok("http")
    } else {
        Err(Refusal::Invalid("the scheme must be http or https"))
    }
}

/// The authority normalised as RFC 9110 §4.2.3 asks: lower-case, without
/// the scheme's default port.
fn authority(request: &Request<'_>) -> Result<String, Refusal> {
    let host = request.authority.to_ascii_lowercase();
    let well_formed = !host.is_empty()
        && host
            .bytes()
            .all(|byte| byte.is_ascii_graphic() && !b"/?#@".contains(&byte));
    if !well_formed {
        return Err(Refusal::Invalid("the authority is not a host and port"));
    }
    let default_port = if scheme(request)? == "https" {
        ":443"
    } else {
        ":80"
    };
    // An empty port means the default one too (RFC 3986 §6.2.3).
    let host = host
        .strip_suffix(default_port)
        .or_else(|| host.strip_suffix(':'))
        .unwrap_or(&host);
    if host.is_empty() {
        return Err(Refusal::Invalid("the authority is not a host and port"));
    }
    Ok(host.to_owned())
}

fn path<'a>(request: &Request<'a>) -> Result<&'a str, Refusal> {
    match request.path {
        // RFC 9421 §2.2.6: an empty path is `/`.
        "" => Ok("/"),
        path if path.starts_with('/') => Ok(path),
        _ => Err(Refusal::Invalid("the path must start with /")),
    }
}

/// A header field's component value (RFC 9421 §2.1): every line's value,
/// unfolded and trimmed, joined with ", ".
fn field_component(request: &Request<'_>, name: &str) -> Result<String, Refusal> {
    if !is_token(name.as_bytes()) || name.bytes().any(|byte| byte.is_ascii_uppercase()) {
        return Err(Refusal::Invalid(
            "a covered header name must be a lower-case HTTP token",
        ));
    }
    let mut value = Vec::new();
    let mut any = false;
    for line in field_lines(request, name) {
        if any {
            value.extend_from_slice(b", ");
        }
        any = true;
        value.extend_from_slice(trim(&unfold(line)));
    }
    if !any {
        return Err(Refusal::Invalid("a covered header is absent"));
    }
    visible_text(value)
}

/// Replaces each obsolete line folding (optional whitespace, a line break,
/// whitespace) with one space, as RFC 9421 §2.1 asks. A line break that is
/// not a fold is left for `visible_text` to refuse.
fn unfold(value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len());
    let mut at = 0;
    while let Some(&byte) = value.get(at) {
        let line_break = match (byte, value.get(at + 1)) {
            (b'\r', Some(b'\n')) => 2,
            (b'\n', _) => 1,
            _ => 0,
        };
        if line_break > 0 && matches!(value.get(at + line_break), Some(b' ' | b'\t')) {
            while out.last().is_some_and(|last| matches!(last, b' ' | b'\t')) {
                out.pop();
            }
            at += line_break;
            while matches!(value.get(at), Some(b' ' | b'\t')) {
                at += 1;
            }
            out.push(b' ');
        } else {
            out.push(byte);
            at += 1;
        }
    }
    out
}

/// `value` as text when every byte is visible ASCII, a space or a tab. Any
/// other byte could forge a line of the signature base, or be read
/// differently by the application behind the check.
fn visible_text(value: Vec<u8>) -> Result<String, Refusal> {
    let visible = value.iter().all(|byte| matches!(byte, b'\t' | b' '..=b'~'));
    match String::from_utf8(value) {
        Ok(text) if visible => Ok(text),
        _ => Err(Refusal::Invalid(
            "a covered value holds bytes other than visible ASCII, space and tab",
        )),
    }
}

/// Keyward's coverage policy: a signature that leaves the method, the
/// target or the body out could be moved onto another request.
fn require_coverage(request: &Request<'_>, covered: &[&str]) -> Result<(), Refusal> {
    let has = |id: &str| covered.contains(&id);
    if !has("@method") {
        return Err(Refusal::Invalid("no signature covers @method"));
    }
    if !has("@target-uri") {
        if !has("@authority") {
            return Err(Refusal::Invalid(
                "no signature covers @target-uri, or @authority with @path",
            ));
        }
        // `@request-target` is the path and query in one component.
        if !has("@request-target") {
            if !has("@path") {
                return Err(Refusal::Invalid(
                    "no signature covers @target-uri, or @authority with @path",
                ));
            }
            if request.query.is_some_and(|query| !query.is_empty()) && !has("@query") {
                return Err(Refusal::Invalid(
                    "no signature covers @query, and the request has a query",
                ));
            }
        }
    }
    if body_of(request).is_present() && !has("content-digest") {
        return Err(Refusal::Invalid(
            "no signature covers content-digest, and the request has a body",
        ));
    }
    Ok(())
}

/// Checks a Content-Digest header (RFC 9530) against the body, whether or
/// not it is covered: a digest that does not match means the body is not
/// the one the client sent.
fn check_content_digest(request: &Request<'_>) -> Result<(), Refusal> {
    let Some(field) = combined_field(request, "content-digest") else {
        return Ok(());
    };
    let digests = parse_dictionary(&field).ok_or(Refusal::Invalid(
        "content-digest is not a structured-field dictionary",
    ))?;
    let body = body_of(request);
    let sha256: [u8; 32] = match body {
        Body::None => Sha256::digest(b"").into(),
        Body::Bytes(bytes) => Sha256::digest(bytes).into(),
        Body::Digest(digest) => digest,
    };
    let mut checked = false;
    let mut matches = true;
    for (algorithm, entry) in &digests {
        let algorithm = algorithm.as_str();
        if algorithm != "sha-256" && algorithm != "sha-512" {
            continue;
        }
        let claimed = match entry {
            ListEntry::Item(item) => item.bare_item.as_byte_sequence(),
            ListEntry::InnerList(_) => None,
        }
        .ok_or(Refusal::Invalid(
            "a content-digest member is not a byte sequence",
        ))?;
        let actual = match (algorithm, &body) {
            ("sha-256", _) => sha256.to_vec(),
            ("sha-512", Body::None) => Sha512::digest(b"").to_vec(),
            ("sha-512", Body::Bytes(bytes)) => Sha512::digest(bytes).to_vec(),
            // SHA-512 cannot be checked against a SHA-256 of the body.
            _ => continue,
        };
        checked = true;
        matches &= bool::from(claimed.ct_eq(&actual));
    }
    if !checked {
        return Err(Refusal::Invalid("content-digest has no sha-256 member"));
    }
    if !matches {
        return Err(Refusal::Invalid("content-digest does not match the body"));
    }
    Ok(())
}

/// Checks `signature` over `base` with `key`, without any policy: HMAC
/// compared in constant time, Ed25519 with `verify_strict` (which refuses
/// non-canonical encodings and small-order keys).
pub(crate) fn check_signature(
    key: KeyMaterial<'_>,
    base: &[u8],
    signature: &[u8],
) -> Result<(), Refusal> {
    match key {
        KeyMaterial::Hmac(secret) => {
            if signature.len() != 32 {
                return Err(SIGNATURE_LENGTH);
            }
            let expected = hmac_sha256(secret, base)?;
            if bool::from(expected.ct_eq(signature)) {
                Ok(())
            } else {
                Err(SIGNATURE_MISMATCH)
            }
        }
        KeyMaterial::Ed25519(public) => {
            let signature = Signature::from_slice(signature).map_err(|_| SIGNATURE_LENGTH)?;
            public
                .verify_strict(base, &signature)
                .map_err(|_| SIGNATURE_MISMATCH)
        }
    }
}

// --- Header fields ----------------------------------------------------

/// Every line of the header `name`, in order, matched in any case.
fn field_lines<'r>(request: &'r Request<'_>, name: &'r str) -> impl Iterator<Item = &'r [u8]> {
    request
        .headers
        .iter()
        .filter(move |(line_name, _)| line_name.eq_ignore_ascii_case(name))
        .map(|(_, value)| *value)
}

/// The lines of a structured header combined into one value as RFC 9110
/// §5.3 does, skipping empty ones; `None` when the header is absent.
fn combined_field(request: &Request<'_>, name: &str) -> Option<Vec<u8>> {
    let mut combined: Option<Vec<u8>> = None;
    for line in field_lines(request, name) {
        let combined = combined.get_or_insert_with(Vec::new);
        let line = trim(line);
        if line.is_empty() {
            continue;
        }
        if !combined.is_empty() {
            combined.extend_from_slice(b", ");
        }
        combined.extend_from_slice(line);
    }
    combined
}

/// RFC 9421 refers to RFC 8941, so the newer Date and Display String
/// types are refused.
fn parse_dictionary(field: &[u8]) -> Option<Dictionary> {
    Parser::new(field)
        .with_version(Version::Rfc8941)
        .parse_dictionary()
        .ok()
}

fn trim(value: &[u8]) -> &[u8] {
    let is_space = |byte: &u8| matches!(byte, b' ' | b'\t');
    let start = value.iter().position(|byte| !is_space(byte));
    let end = value.iter().rposition(|byte| !is_space(byte));
    match (start, end) {
        (Some(start), Some(end)) => value.get(start..=end).unwrap_or_default(),
        _ => &[],
    }
}

/// An HTTP token (RFC 9110 §5.6.2): one or more `tchar`.
fn is_token(text: &[u8]) -> bool {
    !text.is_empty()
        && text
            .iter()
            .all(|byte| byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(byte))
}

// --- Binance ----------------------------------------------------------

/// What a request's body holds for the Binance profile.
enum FormBody<'a> {
    /// No body, or an empty one.
    Absent,
    /// `k=v&k=v` parameters, which the signature covers.
    Form(&'a [u8]),
    /// Something else, which no Binance signature covers.
    NotForm,
    /// Only the body's digest is known.
    Unseen,
}

fn form_body<'a>(request: &Request<'a>) -> FormBody<'a> {
    match body_of(request) {
        Body::None => FormBody::Absent,
        Body::Bytes(bytes) if looks_like_form(bytes) => FormBody::Form(bytes),
        Body::Bytes(_) => FormBody::NotForm,
        Body::Digest(_) => FormBody::Unseen,
    }
}

/// Whether `body` reads as `application/x-www-form-urlencoded`: every
/// `&`-separated element a name of URL characters, `=`, and a value of
/// visible ASCII. JSON, text with spaces or line breaks, and binary fail.
fn looks_like_form(body: &[u8]) -> bool {
    let name_byte = |byte: &u8| byte.is_ascii_alphanumeric() || b"-._~%+*[]".contains(byte);
    body.split(|byte| *byte == b'&').all(|element| {
        let Some(equals) = element.iter().position(|byte| *byte == b'=') else {
            return false;
        };
        let (name, value) = element.split_at(equals);
        !name.is_empty() && name.iter().all(name_byte) && value.iter().all(u8::is_ascii_graphic)
    })
}

/// A parameter's name and value; a parameter without `=` has an empty
/// value.
fn split_parameter(element: &[u8]) -> (&[u8], &[u8]) {
    match element.iter().position(|byte| *byte == b'=') {
        Some(equals) => {
            let (name, value) = element.split_at(equals);
            (name, value.get(1..).unwrap_or_default())
        }
        None => (element, &[]),
    }
}

fn has_signature_parameter(params: &[u8]) -> bool {
    params.split(|byte| *byte == b'&').any(|element| {
        percent_decode(split_parameter(element).0).as_deref() == Some(b"signature".as_slice())
    })
}

/// A non-negative whole number of milliseconds, percent-decoded first.
fn millis(value: &[u8]) -> Option<i64> {
    let digits = percent_decode(value)?;
    // Eighteen digits always fit an i64.
    if digits.is_empty() || digits.len() > 18 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(&digits).ok()?.parse().ok()
}

/// Decodes `%XX` escapes; `None` when a `%` is not followed by two hex
/// digits. A `+` stays a `+`, since base64 signatures contain it and
/// clients do not always escape it.
fn percent_decode(text: &[u8]) -> Option<Vec<u8>> {
    let hex = |byte: Option<&u8>| -> Option<u8> {
        char::from(*byte?)
            .to_digit(16)
            .and_then(|digit| u8::try_from(digit).ok())
    };
    let mut out = Vec::with_capacity(text.len());
    let mut bytes = text.iter();
    while let Some(&byte) = bytes.next() {
        if byte == b'%' {
            let high = hex(bytes.next())?;
            let low = hex(bytes.next())?;
            out.push(high << 4 | low);
        } else {
            out.push(byte);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer as _, SigningKey};

    const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

    // RFC 9421 Appendix B.1.5: the shared secret `test-shared-secret`.
    const RFC_SHARED_SECRET: &str =
        "uzvJfB4u3N0Jy4T7NZ75MDVcr8zSTInedJtkgcu46YW4XByzNJjxBdtjUkdJPBtbmHhIDi6pcl8jsasjlTMtDQ==";
    // RFC 9421 Appendix B.1.4: the public key `test-key-ed25519`, as the
    // base64 of its SubjectPublicKeyInfo.
    const RFC_ED25519_SPKI: &str = "MCowBQYDK2VwAyEAJrQLj5P/89iXES9+vFgrIy29clF9CC/oPPsw3c5D0bs=";
    // RFC 9530's example body, which RFC 9421 Appendix B.2 sends too, and
    // its sha-256 Content-Digest.
    const HELLO_BODY: &[u8] = br#"{"hello": "world"}"#;
    const HELLO_SHA256: &str = "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:";

    /// A request the test owns, lent out as a [`Request`].
    #[derive(Clone)]
    struct Fixture {
        method: String,
        scheme: String,
        authority: String,
        path: String,
        query: Option<String>,
        headers: Vec<(String, Vec<u8>)>,
        body: Option<Vec<u8>>,
        body_sha256: Option<[u8; 32]>,
    }

    impl Fixture {
        /// A POST with a query and a JSON body, its Content-Digest set.
        fn new() -> Self {
            Fixture {
                method: "POST".into(),
                scheme: "https".into(),
                authority: "api.example.com".into(),
                path: "/v1/keys".into(),
                query: Some("limit=10".into()),
                headers: vec![
                    ("Host".into(), b"api.example.com".to_vec()),
                    ("Content-Type".into(), b"application/json".to_vec()),
                    ("Content-Digest".into(), HELLO_SHA256.as_bytes().to_vec()),
                ],
                body: Some(HELLO_BODY.to_vec()),
                body_sha256: None,
            }
        }

        /// The request of RFC 9421 Appendix B.2 (`test-request`).
        fn rfc() -> Self {
            Fixture {
                method: "POST".into(),
                scheme: "https".into(),
                authority: "example.com".into(),
                path: "/foo".into(),
                query: Some("param=Value&Pet=dog".into()),
                headers: vec![
                    ("Host".into(), b"example.com".to_vec()),
                    ("Date".into(), b"Tue, 20 Apr 2021 02:07:55 GMT".to_vec()),
                    ("Content-Type".into(), b"application/json".to_vec()),
                    (
                        "Content-Digest".into(),
                        b"sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:".to_vec(),
                    ),
                    ("Content-Length".into(), b"18".to_vec()),
                ],
                body: Some(HELLO_BODY.to_vec()),
                body_sha256: None,
            }
        }

        fn with<R>(&self, f: impl FnOnce(&Request<'_>) -> R) -> R {
            let headers: Vec<(&str, &[u8])> = self
                .headers
                .iter()
                .map(|(name, value)| (name.as_str(), value.as_slice()))
                .collect();
            f(&Request {
                method: &self.method,
                scheme: &self.scheme,
                authority: &self.authority,
                path: &self.path,
                query: self.query.as_deref(),
                headers: &headers,
                body: self.body.as_deref(),
                body_sha256: self.body_sha256,
            })
        }

        fn header(&mut self, name: &str) -> &mut Vec<u8> {
            let line = self
                .headers
                .iter_mut()
                .find(|(line, _)| line.eq_ignore_ascii_case(name))
                .unwrap();
            &mut line.1
        }

        fn set_header(&mut self, name: &str, value: &str) {
            *self.header(name) = value.as_bytes().to_vec();
        }

        fn remove_header(&mut self, name: &str) {
            self.headers
                .retain(|(line, _)| !line.eq_ignore_ascii_case(name));
        }

        fn base(&self, input: &str) -> Result<String, Refusal> {
            let member = parse_dictionary(format!("sig1={input}").as_bytes()).unwrap();
            let Some(ListEntry::InnerList(input)) = member.get("sig1") else {
                panic!("not an inner list: {input}");
            };
            self.with(|request| signature_base(request, input))
        }

        /// Adds Signature-Input and Signature for `input` under `label`.
        fn sign_as(mut self, label: &str, input: &str, key: &TestKey) -> Self {
            let base = self.base(input).unwrap();
            let signature = B64.encode(key.sign(base.as_bytes()));
            self.headers.push((
                "Signature-Input".into(),
                format!("{label}={input}").into_bytes(),
            ));
            self.headers.push((
                "Signature".into(),
                format!("{label}=:{signature}:").into_bytes(),
            ));
            self
        }

        fn sign(self, input: &str, key: &TestKey) -> Self {
            self.sign_as("sig1", input, key)
        }

        fn verify(&self, key: &TestKey) -> Result<Verified, Refusal> {
            self.with(|request| verify_rfc9421(request, KEY_ID, key.material()))
        }
    }

    const KEY_ID: &str = "client-1";

    enum TestKey {
        Hmac(Vec<u8>),
        Ed25519(Box<(SigningKey, VerifyingKey)>),
    }

    impl TestKey {
        fn hmac() -> Self {
            TestKey::Hmac(b"the shared secret of test client one".to_vec())
        }

        fn ed25519() -> Self {
            let signing = SigningKey::from_bytes(&[7u8; 32]);
            let public = signing.verifying_key();
            TestKey::Ed25519(Box::new((signing, public)))
        }

        fn both() -> [TestKey; 2] {
            [TestKey::hmac(), TestKey::ed25519()]
        }

        fn material(&self) -> KeyMaterial<'_> {
            match self {
                TestKey::Hmac(secret) => KeyMaterial::Hmac(secret),
                TestKey::Ed25519(pair) => KeyMaterial::Ed25519(&pair.1),
            }
        }

        fn sign(&self, message: &[u8]) -> Vec<u8> {
            match self {
                TestKey::Hmac(secret) => hmac_sha256(secret, message).unwrap().to_vec(),
                TestKey::Ed25519(pair) => pair.0.sign(message).to_bytes().to_vec(),
            }
        }
    }

    /// Keyward's policy asks for this much; `params` follow the list.
    fn input(components: &str, params: &str) -> String {
        format!(r#"({components});created=1700000000;keyid="{KEY_ID}";nonce="b5f0e1c2"{params}"#)
    }

    fn full_input(key: &TestKey) -> String {
        let alg = key.material().algorithm().as_str();
        input(
            r#""@method" "@target-uri" "content-type" "content-digest""#,
            &format!(r#";alg="{alg}""#),
        )
    }

    fn invalid(reason: &'static str) -> Result<Verified, Refusal> {
        Err(Refusal::Invalid(reason))
    }

    fn rfc_input_and_signature(input: &str, signature: &str) -> (InnerList, Vec<u8>) {
        let inputs = parse_dictionary(input.as_bytes()).unwrap();
        let Some((_, ListEntry::InnerList(list))) = inputs.first() else {
            panic!("no inner list in {input}");
        };
        let signatures = parse_dictionary(signature.as_bytes()).unwrap();
        let Some((_, ListEntry::Item(item))) = signatures.first() else {
            panic!("no item in {signature}");
        };
        let bytes = item.bare_item.as_byte_sequence().unwrap().to_vec();
        (list.clone(), bytes)
    }

    #[test]
    fn rfc_9421_b_2_5_hmac_sha256_base_and_signature() {
        let (list, signature) = rfc_input_and_signature(
            r#"sig-b25=("date" "@authority" "content-type");created=1618884473;keyid="test-shared-secret""#,
            "sig-b25=:pxcQw6G3AjtMBQjwo8XzkZf/bws5LelbaMk5rGIGtE8=:",
        );
        let base = Fixture::rfc()
            .with(|request| signature_base(request, &list))
            .unwrap();
        assert_eq!(
            base,
            concat!(
                "\"date\": Tue, 20 Apr 2021 02:07:55 GMT\n",
                "\"@authority\": example.com\n",
                "\"content-type\": application/json\n",
                "\"@signature-params\": (\"date\" \"@authority\" \"content-type\")",
                ";created=1618884473;keyid=\"test-shared-secret\"",
            )
        );
        let secret = B64.decode(RFC_SHARED_SECRET).unwrap();
        let key = KeyMaterial::Hmac(&secret);
        assert_eq!(check_signature(key, base.as_bytes(), &signature), Ok(()));
        let mut altered = signature.clone();
        altered[0] ^= 1;
        assert_eq!(
            check_signature(key, base.as_bytes(), &altered),
            Err(SIGNATURE_MISMATCH)
        );
        assert_eq!(
            check_signature(key, b"another base", &signature),
            Err(SIGNATURE_MISMATCH)
        );
    }

    #[test]
    fn rfc_9421_b_2_6_ed25519_base_and_signature() {
        let (list, signature) = rfc_input_and_signature(
            concat!(
                r#"sig-b26=("date" "@method" "@path" "@authority" "content-type" "content-length")"#,
                r#";created=1618884473;keyid="test-key-ed25519""#,
            ),
            "sig-b26=:wqcAqbmYJ2ji2glfAMaRy4gruYYnx2nEFN2HN6jrnDnQCK1u02Gb04v9EDgwUPiu4A0w6vuQv5lIp5WPpBKRCw==:",
        );
        let base = Fixture::rfc()
            .with(|request| signature_base(request, &list))
            .unwrap();
        assert_eq!(
            base,
            concat!(
                "\"date\": Tue, 20 Apr 2021 02:07:55 GMT\n",
                "\"@method\": POST\n",
                "\"@path\": /foo\n",
                "\"@authority\": example.com\n",
                "\"content-type\": application/json\n",
                "\"content-length\": 18\n",
                "\"@signature-params\": (\"date\" \"@method\" \"@path\" \"@authority\" ",
                "\"content-type\" \"content-length\");created=1618884473;keyid=\"test-key-ed25519\"",
            )
        );
        // The SubjectPublicKeyInfo of an Ed25519 key is a fixed 12-byte
        // prefix and the 32-byte key.
        let spki = B64.decode(RFC_ED25519_SPKI).unwrap();
        let (prefix, raw) = spki.split_at(12);
        assert_eq!(
            prefix,
            [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00]
        );
        let public = VerifyingKey::from_bytes(raw.try_into().unwrap()).unwrap();
        let key = KeyMaterial::Ed25519(&public);
        assert_eq!(check_signature(key, base.as_bytes(), &signature), Ok(()));
        let mut altered = signature.clone();
        altered[10] ^= 0x80;
        assert_eq!(
            check_signature(key, base.as_bytes(), &altered),
            Err(SIGNATURE_MISMATCH)
        );
        assert_eq!(
            check_signature(key, base.as_bytes(), &signature[..63]),
            Err(SIGNATURE_LENGTH)
        );
    }

    #[test]
    fn rfc_9421_test_request_content_digest_checks_out_by_sha_512() {
        let mut request = Fixture::rfc();
        assert_eq!(request.with(check_content_digest), Ok(()));
        request.body = Some(br#"{"hello": "World"}"#.to_vec());
        assert_eq!(
            request.with(check_content_digest),
            Err(Refusal::Invalid("content-digest does not match the body"))
        );
        // A SHA-512 cannot be checked against the body's SHA-256 alone.
        request.body = None;
        request.body_sha256 = Some(Sha256::digest(HELLO_BODY).into());
        assert_eq!(
            request.with(check_content_digest),
            Err(Refusal::Invalid("content-digest has no sha-256 member"))
        );
    }

    #[test]
    fn the_rfc_examples_fall_short_of_keywards_policy() {
        // B.2.5 is a valid signature, but without a nonce it could be
        // replayed, and it covers neither the method nor the target.
        let request = Fixture::rfc();
        let mut request = request;
        request.headers.push((
            "Signature-Input".into(),
            br#"sig-b25=("date" "@authority" "content-type");created=1618884473;keyid="test-shared-secret""#.to_vec(),
        ));
        request.headers.push((
            "Signature".into(),
            b"sig-b25=:pxcQw6G3AjtMBQjwo8XzkZf/bws5LelbaMk5rGIGtE8=:".to_vec(),
        ));
        let secret = B64.decode(RFC_SHARED_SECRET).unwrap();
        let verdict = request.with(|request| {
            verify_rfc9421(request, "test-shared-secret", KeyMaterial::Hmac(&secret))
        });
        assert_eq!(verdict, invalid("nonce parameter is required"));
    }

    #[test]
    fn the_signature_base_of_a_fully_covered_request_is_rfc_9421_text() {
        let base = Fixture::new().base(&full_input(&TestKey::hmac())).unwrap();
        assert_eq!(
            base,
            concat!(
                "\"@method\": POST\n",
                "\"@target-uri\": https://api.example.com/v1/keys?limit=10\n",
                "\"content-type\": application/json\n",
                "\"content-digest\": sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:\n",
                "\"@signature-params\": (\"@method\" \"@target-uri\" \"content-type\" \"content-digest\")",
                ";created=1700000000;keyid=\"client-1\";nonce=\"b5f0e1c2\";alg=\"hmac-sha256\"",
            )
        );
    }

    #[test]
    fn a_signed_request_verifies_with_either_algorithm() {
        for key in TestKey::both() {
            let signed = Fixture::new().sign(&full_input(&key), &key);
            let verified = signed.verify(&key).unwrap();
            assert_eq!(
                verified,
                Verified {
                    created_ms: 1_700_000_000_000,
                    expires_ms: None,
                    window_ms: None,
                    replay_id: replay_id(RFC9421_TAG, b"b5f0e1c2"),
                }
            );
            assert!(signed.with(|request| is_signed(request, Scheme::Rfc9421)));
        }
    }

    #[test]
    fn a_signature_input_in_another_spelling_is_signed_in_canonical_form() {
        // Extra spaces and a trailing `tag` are the client's business: the
        // base carries the canonical serialisation.
        let key = TestKey::hmac();
        let canonical = input(
            r#""@method" "@target-uri" "content-digest""#,
            r#";tag="app";x-unknown=?1"#,
        );
        let mut signed = Fixture::new().sign(&canonical, &key);
        let spaced = canonical
            .replace("(\"@method\" ", "(  \"@method\"   ")
            .replace(";tag", "; tag");
        signed.set_header("signature-input", &format!("sig1={spaced}"));
        assert!(signed.verify(&key).is_ok());
    }

    #[test]
    fn any_change_after_signing_is_refused() {
        type Change = fn(&mut Fixture);
        let changes: [(&str, Change, &str); 13] = [
            (
                "method",
                |r| r.method = "PUT".into(),
                "signature does not match",
            ),
            (
                "path",
                |r| r.path = "/v1/keyz".into(),
                "signature does not match",
            ),
            (
                "query",
                |r| r.query = Some("limit=11".into()),
                "signature does not match",
            ),
            (
                "query removed",
                |r| r.query = None,
                "signature does not match",
            ),
            (
                "authority",
                |r| r.authority = "api.example.org".into(),
                "signature does not match",
            ),
            (
                "scheme",
                |r| r.scheme = "http".into(),
                "signature does not match",
            ),
            (
                "covered header",
                |r| r.set_header("content-type", "text/plain"),
                "signature does not match",
            ),
            (
                "covered header repeated",
                |r| {
                    r.headers
                        .push(("Content-Type".into(), b"text/plain".to_vec()))
                },
                "signature does not match",
            ),
            (
                "body",
                |r| r.body = Some(br#"{"hello": "World"}"#.to_vec()),
                "content-digest does not match the body",
            ),
            (
                "body with a matching digest",
                |r| {
                    r.body = Some(b"{}".to_vec());
                    let digest = B64.encode(Sha256::digest(b"{}"));
                    r.set_header("content-digest", &format!("sha-256=:{digest}:"));
                },
                "signature does not match",
            ),
            (
                "created",
                |r| {
                    let input = String::from_utf8(r.header("signature-input").clone()).unwrap();
                    r.set_header(
                        "signature-input",
                        &input.replace("created=1700000000", "created=1700000001"),
                    );
                },
                "signature does not match",
            ),
            (
                "nonce",
                |r| {
                    let input = String::from_utf8(r.header("signature-input").clone()).unwrap();
                    r.set_header("signature-input", &input.replace("b5f0e1c2", "b5f0e1c3"));
                },
                "signature does not match",
            ),
            (
                "signature",
                |r| {
                    let field = String::from_utf8(r.header("signature").clone()).unwrap();
                    let encoded = field.trim_start_matches("sig1=:").trim_end_matches(':');
                    let mut bytes = B64.decode(encoded).unwrap();
                    bytes[5] ^= 0x01;
                    r.set_header("signature", &format!("sig1=:{}:", B64.encode(bytes)));
                },
                "signature does not match",
            ),
        ];
        for key in TestKey::both() {
            let signed = Fixture::new().sign(&full_input(&key), &key);
            assert!(signed.verify(&key).is_ok());
            for (what, change, reason) in changes {
                let mut changed = signed.clone();
                change(&mut changed);
                assert_eq!(changed.verify(&key), invalid(reason), "{what}");
            }
        }
    }

    #[test]
    fn a_signature_must_cover_the_method_the_target_and_the_body() {
        let cases = [
            (
                r#""@target-uri" "content-digest""#,
                Err("no signature covers @method"),
            ),
            (
                r#""@method" "content-digest""#,
                Err("no signature covers @target-uri, or @authority with @path"),
            ),
            (
                r#""@method" "@authority" "content-digest""#,
                Err("no signature covers @target-uri, or @authority with @path"),
            ),
            (
                r#""@method" "@path" "@query" "content-digest""#,
                Err("no signature covers @target-uri, or @authority with @path"),
            ),
            (
                r#""@method" "@authority" "@path" "content-digest""#,
                Err("no signature covers @query, and the request has a query"),
            ),
            (
                r#""@method" "@target-uri""#,
                Err("no signature covers content-digest, and the request has a body"),
            ),
            (
                r#""@method" "@authority" "@path" "@query" "content-digest""#,
                Ok(()),
            ),
            (
                r#""@method" "@authority" "@request-target" "content-digest""#,
                Ok(()),
            ),
            (r#""content-digest" "@target-uri" "@method""#, Ok(())),
        ];
        for key in TestKey::both() {
            for (components, expected) in cases {
                let signed = Fixture::new().sign(&input(components, ""), &key);
                let verdict = signed.verify(&key).map(|_| ()).map_err(|r| r.reason());
                assert_eq!(verdict, expected, "{components}");
            }
        }
    }

    #[test]
    fn a_request_without_a_body_need_not_cover_content_digest_or_an_empty_query() {
        let key = TestKey::hmac();
        type BodyAndDigest = (Option<Vec<u8>>, Option<[u8; 32]>);
        let bodiless: [BodyAndDigest; 3] = [
            (None, None),
            (Some(Vec::new()), None),
            (None, Some(Sha256::digest(b"").into())),
        ];
        for (body, body_sha256) in bodiless {
            let mut request = Fixture::new();
            request.remove_header("content-digest");
            request.query = Some(String::new());
            request.body = body;
            request.body_sha256 = body_sha256;
            let signed = request.sign(&input(r#""@method" "@authority" "@path""#, ""), &key);
            assert!(signed.verify(&key).is_ok());
        }
    }

    #[test]
    fn a_body_known_by_its_digest_is_checked_by_it() {
        let key = TestKey::ed25519();
        let mut request = Fixture::new();
        request.body = None;
        request.body_sha256 = Some(Sha256::digest(HELLO_BODY).into());
        let signed = request.sign(&full_input(&key), &key);
        assert!(signed.verify(&key).is_ok());
        let mut other = signed.clone();
        other.body_sha256 = Some(Sha256::digest(b"{}").into());
        assert_eq!(
            other.verify(&key),
            invalid("content-digest does not match the body")
        );
        // A digest-only body must be covered like any other.
        let mut uncovered = Fixture::new();
        uncovered.body = None;
        uncovered.body_sha256 = Some(Sha256::digest(HELLO_BODY).into());
        let uncovered = uncovered.sign(&input(r#""@method" "@target-uri""#, ""), &key);
        assert_eq!(
            uncovered.verify(&key),
            invalid("no signature covers content-digest, and the request has a body")
        );
    }

    #[test]
    fn content_digest_is_checked_even_when_not_covered() {
        let key = TestKey::hmac();
        let mut request = Fixture::new();
        request.body = None;
        let signed = request.sign(&input(r#""@method" "@target-uri""#, ""), &key);
        // The header still claims the hello body, which is not there.
        assert_eq!(
            signed.verify(&key),
            invalid("content-digest does not match the body")
        );
        let mut unparsable = signed.clone();
        unparsable.set_header("content-digest", "sha-256=token");
        assert_eq!(
            unparsable.verify(&key),
            invalid("a content-digest member is not a byte sequence")
        );
        let mut other_algorithm = signed.clone();
        other_algorithm.set_header("content-digest", "md5=:AAAA:");
        assert_eq!(
            other_algorithm.verify(&key),
            invalid("content-digest has no sha-256 member")
        );
        let mut garbage = signed;
        garbage.set_header("content-digest", "{{");
        assert_eq!(
            garbage.verify(&key),
            invalid("content-digest is not a structured-field dictionary")
        );
    }

    #[test]
    fn signature_parameters_follow_the_policy() {
        let components = r#""@method" "@target-uri" "content-digest""#;
        let long_nonce = "n".repeat(129);
        let cases: Vec<(String, Result<(), &str>)> = vec![
            (
                format!(r#"({components});created=1700000000;keyid="{KEY_ID}""#),
                Err("nonce parameter is required"),
            ),
            (
                format!(r#"({components});created=1700000000;keyid="{KEY_ID}";nonce="""#),
                Err("nonce parameter must be a string of 1 to 128 characters"),
            ),
            (
                format!(
                    r#"({components});created=1700000000;keyid="{KEY_ID}";nonce="{long_nonce}""#
                ),
                Err("nonce parameter must be a string of 1 to 128 characters"),
            ),
            (
                format!(r#"({components});created=1700000000;keyid="{KEY_ID}";nonce=token"#),
                Err("nonce parameter must be a string of 1 to 128 characters"),
            ),
            (
                format!(r#"({components});keyid="{KEY_ID}";nonce="n""#),
                Err("created parameter is required"),
            ),
            (
                format!(r#"({components});created="1700000000";keyid="{KEY_ID}";nonce="n""#),
                Err("created parameter must be a non-negative integer of seconds"),
            ),
            (
                format!(r#"({components});created=-1;keyid="{KEY_ID}";nonce="n""#),
                Err("created parameter must be a non-negative integer of seconds"),
            ),
            (
                format!(
                    r#"({components});created=1700000000;expires=1.5;keyid="{KEY_ID}";nonce="n""#
                ),
                Err("expires parameter must be a non-negative integer of seconds"),
            ),
            (
                input(components, r#";alg="ed25519""#),
                Err("alg does not match the key's algorithm"),
            ),
            (
                input(components, r#";alg="rsa-pss-sha512""#),
                Err("alg does not match the key's algorithm"),
            ),
            (
                input(components, ";alg=hmac-sha256"),
                Err("alg does not match the key's algorithm"),
            ),
            (
                format!(r#"({components});created=1700000000;nonce="n""#),
                Err("keyid parameter is required"),
            ),
            (
                input(components, r#";alg="hmac-sha256";tag="app";x-future=?1"#),
                Ok(()),
            ),
            (input(components, ";expires=1700000060"), Ok(())),
        ];
        let key = TestKey::hmac();
        for (input, expected) in cases {
            let signed = Fixture::new().sign(&input, &key);
            let verdict = signed.verify(&key).map(|_| ()).map_err(|r| r.reason());
            assert_eq!(verdict, expected, "{input}");
        }
        let signed = Fixture::new().sign(&input(components, ";expires=1700000060"), &key);
        assert_eq!(
            signed.verify(&key).unwrap().expires_ms,
            Some(1_700_000_060_000)
        );
    }

    #[test]
    fn only_the_signature_naming_the_key_is_checked() {
        let key = TestKey::hmac();
        let signed = Fixture::new().sign(&full_input(&key), &key);
        let other = signed.with(|request| verify_rfc9421(request, "client-2", key.material()));
        assert_eq!(other, invalid("keyid names another key"));

        // A proxy's signature under another label and key sits beside it.
        let proxy = TestKey::Hmac(b"the proxy's secret".to_vec());
        let proxy_input = r#"("@method" "@authority");created=1700000000;keyid="proxy";nonce="p""#;
        let both = signed.clone().sign_as("proxy", proxy_input, &proxy);
        assert!(both.verify(&key).is_ok());
        let proxy_verdict = both.with(|request| verify_rfc9421(request, "proxy", proxy.material()));
        assert_eq!(
            proxy_verdict,
            invalid("no signature covers @target-uri, or @authority with @path")
        );

        // Two signatures naming one key are ambiguous.
        let twice = signed.sign_as("sig2", &full_input(&key), &key);
        assert_eq!(
            twice.verify(&key),
            invalid("more than one signature names the key")
        );
    }

    #[test]
    fn a_key_of_the_other_algorithm_does_not_verify() {
        let hmac = TestKey::hmac();
        let ed25519 = TestKey::ed25519();
        let components = r#""@method" "@target-uri" "content-type" "content-digest""#;
        let signed = Fixture::new().sign(&input(components, ""), &hmac);
        assert_eq!(
            signed.verify(&ed25519),
            invalid("signature has the wrong length for the key's algorithm")
        );
        let signed = Fixture::new().sign(&input(components, ""), &ed25519);
        assert_eq!(
            signed.verify(&hmac),
            invalid("signature has the wrong length for the key's algorithm")
        );
        let signed = Fixture::new().sign(&full_input(&hmac), &hmac);
        assert_eq!(
            signed.verify(&ed25519),
            invalid("alg does not match the key's algorithm")
        );
    }

    #[test]
    fn a_request_without_signature_headers_is_missing_a_signature() {
        let key = TestKey::hmac();
        let request = Fixture::new();
        assert_eq!(
            request.verify(&key),
            Err(Refusal::Missing(
                "the request has no Signature-Input header"
            ))
        );
        assert!(request.verify(&key).unwrap_err().is_missing());
        assert!(!request.with(|request| is_signed(request, Scheme::Rfc9421)));
        let mut bare = request.clone();
        bare.headers.clear();
        assert!(bare.verify(&key).unwrap_err().is_missing());

        let mut no_signature = Fixture::new().sign(&full_input(&key), &key);
        no_signature.remove_header("signature");
        assert_eq!(
            no_signature.verify(&key),
            invalid("the request has no Signature header")
        );
        let mut other_label = Fixture::new().sign(&full_input(&key), &key);
        let field = String::from_utf8(other_label.header("signature").clone()).unwrap();
        other_label.set_header("signature", &field.replace("sig1=", "sig9="));
        assert_eq!(
            other_label.verify(&key),
            invalid("Signature has no member with the label Signature-Input gives the key")
        );
        let mut not_bytes = Fixture::new().sign(&full_input(&key), &key);
        not_bytes.set_header("signature", "sig1=\"abc\"");
        assert_eq!(
            not_bytes.verify(&key),
            invalid("the Signature member is not a byte sequence")
        );
        let mut empty = Fixture::new();
        empty.headers.push(("Signature-Input".into(), Vec::new()));
        assert_eq!(
            empty.verify(&key),
            invalid("Signature-Input names no signature")
        );
        let mut garbage = Fixture::new();
        garbage
            .headers
            .push(("Signature-Input".into(), b"sig1=(\"@method\"".to_vec()));
        assert_eq!(
            garbage.verify(&key),
            invalid("Signature-Input is not a structured-field dictionary")
        );
    }

    #[test]
    fn split_signature_headers_are_combined() {
        let key = TestKey::hmac();
        let proxy = TestKey::Hmac(b"the proxy's secret".to_vec());
        let mut signed = Fixture::new().sign(&full_input(&key), &key).sign_as(
            "proxy",
            r#"("@method");created=1;keyid="proxy";nonce="p""#,
            &proxy,
        );
        // Two lines each of Signature-Input and Signature, one per label.
        assert_eq!(
            signed
                .headers
                .iter()
                .filter(|(name, _)| name == "Signature")
                .count(),
            2
        );
        assert!(signed.verify(&key).is_ok());
        signed.headers.reverse();
        assert!(signed.verify(&key).is_ok());
    }

    #[test]
    fn components_follow_rfc_9421() {
        let fixture = Fixture::new();
        let refused = [
            (r#""content-type";sf"#, "component parameter not supported"),
            (
                r#""@query-param";name="limit""#,
                "component parameter not supported",
            ),
            (
                r#""content-digest";bs"#,
                "component parameter not supported",
            ),
            (r#""@method" "@method""#, "a component is covered twice"),
            (r#""x-absent""#, "a covered header is absent"),
            (
                r#""Content-Type""#,
                "a covered header name must be a lower-case HTTP token",
            ),
            (
                r#""content type""#,
                "a covered header name must be a lower-case HTTP token",
            ),
            (
                r#""""#,
                "a covered header name must be a lower-case HTTP token",
            ),
            (r#""@status""#, "derived component not supported"),
            (r#""@signature-params""#, "derived component not supported"),
            ("content-type", "a component identifier is not a string"),
        ];
        for (components, reason) in refused {
            assert_eq!(
                fixture.base(&format!("({components})")),
                Err(Refusal::Invalid(reason)),
                "{components}"
            );
        }
    }

    #[test]
    fn derived_components_are_normalised_as_rfc_9421_says() {
        let all = r#"("@method" "@scheme" "@authority" "@target-uri" "@request-target" "@path" "@query")"#;
        let line = |base: &str, id: &str| -> String {
            base.lines()
                .find_map(|line| line.strip_prefix(&format!("\"{id}\": ")))
                .unwrap()
                .to_owned()
        };
        let mut request = Fixture::new();
        request.scheme = "HTTPS".into();
        request.authority = "API.Example.COM:443".into();
        let base = request.base(all).unwrap();
        assert_eq!(line(&base, "@scheme"), "https");
        assert_eq!(line(&base, "@authority"), "api.example.com");
        assert_eq!(
            line(&base, "@target-uri"),
            "https://api.example.com/v1/keys?limit=10"
        );
        assert_eq!(line(&base, "@request-target"), "/v1/keys?limit=10");
        assert_eq!(line(&base, "@query"), "?limit=10");

        request.scheme = "http".into();
        request.authority = "example.com:80".into();
        request.query = None;
        request.path = String::new();
        let base = request.base(all).unwrap();
        assert_eq!(line(&base, "@authority"), "example.com");
        assert_eq!(line(&base, "@target-uri"), "http://example.com/");
        assert_eq!(line(&base, "@path"), "/");
        assert_eq!(line(&base, "@query"), "?");

        request.authority = "example.com:443".into();
        request.query = Some(String::new());
        let base = request.base(all).unwrap();
        assert_eq!(line(&base, "@authority"), "example.com:443");
        assert_eq!(line(&base, "@request-target"), "/?");
        assert_eq!(line(&base, "@query"), "?");

        type Change = fn(&mut Fixture);
        let broken: [(Change, &str); 6] = [
            (
                |r| r.scheme = "ftp".into(),
                "the scheme must be http or https",
            ),
            (
                |r| r.authority = String::new(),
                "the authority is not a host and port",
            ),
            (
                |r| r.authority = "user@example.com".into(),
                "the authority is not a host and port",
            ),
            (|r| r.path = "v1/keys".into(), "the path must start with /"),
            (
                |r| r.method = "PO ST".into(),
                "the method is not an HTTP token",
            ),
            (
                |r| r.path = "/v1/keys\n\"@method\": GET".into(),
                "a covered value holds bytes other than visible ASCII, space and tab",
            ),
        ];
        for (change, reason) in broken {
            let mut request = Fixture::new();
            change(&mut request);
            assert_eq!(request.base(all), Err(Refusal::Invalid(reason)), "{reason}");
        }
    }

    #[test]
    fn header_values_are_trimmed_unfolded_and_joined() {
        let mut request = Fixture::new();
        request.headers.push(("X-Tag".into(), b"  one \t".to_vec()));
        request
            .headers
            .push(("x-tag".into(), b"two,\r\n   three".to_vec()));
        request.headers.push(("X-Empty".into(), Vec::new()));
        let base = request.base(r#"("x-tag" "x-empty")"#).unwrap();
        assert!(
            base.starts_with("\"x-tag\": one, two, three\n\"x-empty\": \n"),
            "{base}"
        );

        for bad in [&b"caf\xc3\xa9"[..], b"a\rb", b"a\nb", b"\x00", b"a\x7f"] {
            let mut request = Fixture::new();
            request.headers.push(("X-Bad".into(), bad.to_vec()));
            assert_eq!(
                request.base(r#"("x-bad")"#),
                Err(Refusal::Invalid(
                    "a covered value holds bytes other than visible ASCII, space and tab"
                )),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn refusals_say_their_kind_and_carry_no_request_values() {
        let missing = Refusal::Missing("signature parameter is required");
        let invalid = Refusal::Invalid("signature does not match");
        assert!(missing.is_missing() && !invalid.is_missing());
        assert_eq!(missing.code(), "signature_missing");
        assert_eq!(invalid.code(), "signature_invalid");
        assert_eq!(invalid.reason(), "signature does not match");
        assert_eq!(
            invalid.to_string(),
            "the request's signature was refused: signature does not match"
        );
        assert_eq!(Algorithm::HmacSha256.as_str(), "hmac-sha256");
        assert_eq!(Algorithm::Ed25519.as_str(), "ed25519");
    }

    #[test]
    fn percent_decoding_is_strict_and_leaves_plus_alone() {
        assert_eq!(
            percent_decode(b"a%2Bb+c%3d").as_deref(),
            Some(&b"a+b+c="[..])
        );
        for bad in [&b"%"[..], b"%2", b"%zz", b"a%g1"] {
            assert_eq!(percent_decode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn form_bodies_are_told_from_others() {
        for form in [
            &b"a=1"[..],
            b"a=1&b=",
            b"symbol=LTCBTC&price=0.1",
            b"sig%6Eature=x&a[]=1",
        ] {
            assert!(looks_like_form(form), "{form:?}");
        }
        for other in [
            &b"{\"a\":\"b=c\"}"[..],
            b"a",
            b"a=1&",
            b"=1",
            b"a=1 2",
            b"a=1\n",
            b"\xff=1",
        ] {
            assert!(!looks_like_form(other), "{other:?}");
        }
    }
}
