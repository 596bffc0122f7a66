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
use sfv::visitor::{
    DictionaryVisitor, EntryVisitor, Ignored, InnerListVisitor, ItemVisitor, ParameterVisitor,
};
use sfv::{BareItemFromInput, KeyRef, Parser, RefBareItem, StringRef, Version};
use sha2::{Digest, Sha256, Sha512};
use std::borrow::Cow;
use std::convert::Infallible;
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
    /// a scheme tag, the RFC 9421 nonce and the key id it was signed for,
    /// or over a scheme tag and the Binance signature's bytes, since
    /// Binance has no nonce and its signature changes with every
    /// timestamp. Either way no two keys' requests share an id, unless
    /// they are the same request signed with the same key material.
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
    let input = select_input(&inputs, key_id)?;
    let params = SignatureParams::read(&input, key.algorithm())?;
    let signature = signature_member(request, input.label)?;
    let mut base = String::with_capacity(BASE_CAPACITY);
    write_base(&mut base, request, &input)?;
    require_coverage(request, &input)?;
    check_content_digest(request)?;
    check_signature(key, base.as_bytes(), &signature)?;
    Ok(Verified {
        created_ms: params.created_ms,
        expires_ms: params.expires_ms,
        window_ms: None,
        replay_id: rfc9421_replay_id(key_id, params.nonce),
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
            if !same_bytes(&expected, &claimed) {
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
// signature can never give the same id. Short, so that an id over a
// typical key id and nonce is one SHA-256 block.
const RFC9421_TAG: &[u8] = b"kw/9421\0";
const BINANCE_TAG: &[u8] = b"kw/mbx\0\0";

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

/// The replay id of an RFC 9421 request: its nonce under the key it names,
/// since two keys' clients may well count nonces the same way. The
/// nonce's length comes first (it is at most 128 bytes), so no key id and
/// nonce run into another pair's.
fn rfc9421_replay_id(key_id: &str, nonce: &str) -> [u8; 32] {
    let length = u8::try_from(nonce.len()).unwrap_or(u8::MAX);
    Sha256::new()
        .chain_update(RFC9421_TAG)
        .chain_update([length])
        .chain_update(nonce.as_bytes())
        .chain_update(key_id.as_bytes())
        .finalize()
        .into()
}

/// Whether `a` and `b` are the same bytes, in time that depends only on
/// their lengths: the differences are gathered over every byte and only
/// the result is compared, in constant time. `subtle`'s slice comparison
/// does the same one byte at a time.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let difference = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    bool::from(difference.ct_eq(&0))
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

/// Room for a typical signature base, so that building one allocates once.
const BASE_CAPACITY: usize = 512;

/// A Signature-Input member that is an inner list, borrowed from the
/// header wherever no escape had to be undone. Only the member naming the
/// key is kept; the others are checked for syntax and dropped.
#[derive(Default)]
struct Input<'de> {
    label: &'de str,
    /// The covered component identifiers, in order.
    components: Vec<Cow<'de, StringRef>>,
    /// Why a covered item cannot be a component, if one cannot.
    odd_component: Option<&'static str>,
    /// Every signature parameter in order, as `@signature-params` signs them.
    params: Vec<(&'de KeyRef, BareItemFromInput<'de>)>,
    repeated_param: bool,
    /// The member's inner list and parameters as the client wrote them,
    /// when that is already the canonical form `@signature-params` signs.
    canonical: Option<&'de str>,
}

impl<'de> Input<'de> {
    fn start(&mut self, label: &'de str) {
        self.label = label;
        self.components.clear();
        self.odd_component = None;
        self.params.clear();
        self.repeated_param = false;
        self.canonical = None;
    }

    fn param(&self, name: &str) -> Option<&BareItemFromInput<'de>> {
        self.params
            .iter()
            .find(|(key, _)| key.as_str() == name)
            .map(|(_, value)| value)
    }

    fn covers(&self, id: &str) -> bool {
        self.components.iter().any(|c| c.as_str() == id)
    }
}

/// Reads Signature-Input in one pass, keeping the member whose `keyid` is
/// the key's.
struct Inputs<'de, 'k> {
    key_id: &'k str,
    labels: Vec<&'de str>,
    current: Input<'de>,
    found: Option<Input<'de>>,
    repeated_label: bool,
    named_twice: bool,
    any_keyid: bool,
}

impl<'de, 'k> Inputs<'de, 'k> {
    fn new(key_id: &'k str) -> Self {
        Inputs {
            key_id,
            labels: Vec::new(),
            current: Input::default(),
            found: None,
            repeated_label: false,
            named_twice: false,
            any_keyid: false,
        }
    }

    /// Reads a Signature-Input field: by the canonical reader when it can,
    /// by `sfv` otherwise.
    fn read(key_id: &'k str, field: &'de [u8]) -> Result<Self, Refusal> {
        let mut inputs = Inputs::new(key_id);
        if canonical::read_inputs(field, &mut inputs).is_some() {
            return Ok(inputs);
        }
        let mut inputs = Inputs::new(key_id);
        parser(field)
            .parse_dictionary_with_visitor(&mut inputs)
            .map_err(|_| {
                Refusal::Invalid("Signature-Input is not a structured-field dictionary")
            })?;
        Ok(inputs)
    }

    /// The member just read is complete: keep it if it names the key.
    fn end_member(&mut self) {
        let Some(BareItemFromInput::String(keyid)) = self.current.param("keyid") else {
            return;
        };
        self.any_keyid = true;
        if keyid.as_str() != self.key_id {
            return;
        }
        if self.found.is_some() {
            self.named_twice = true;
        } else {
            self.found = Some(std::mem::take(&mut self.current));
        }
    }
}

impl<'de> DictionaryVisitor<'de> for &mut Inputs<'de, '_> {
    type Out = ();
    type Error = Infallible;

    fn entry(&mut self, key: &'de KeyRef) -> Result<impl EntryVisitor<'de>, Infallible> {
        let label = key.as_str();
        self.repeated_label |= self.labels.contains(&label);
        self.labels.push(label);
        self.current.start(label);
        Ok(InputMember(self))
    }

    fn finish(self) -> Result<(), Infallible> {
        Ok(())
    }
}

struct InputMember<'v, 'de, 'k>(&'v mut Inputs<'de, 'k>);

impl<'de> EntryVisitor<'de> for InputMember<'_, 'de, '_> {
    type Error = Infallible;

    /// A member that is not an inner list names no signature.
    fn item(self) -> Result<impl ItemVisitor<'de>, Infallible> {
        Ok(Ignored)
    }

    fn inner_list(self) -> Result<impl InnerListVisitor<'de>, Infallible> {
        Ok(self)
    }
}

impl<'de> InnerListVisitor<'de> for InputMember<'_, 'de, '_> {
    type Error = Infallible;

    fn item(&mut self) -> Result<impl ItemVisitor<'de>, Infallible> {
        Ok(Component(&mut self.0.current))
    }

    fn finish(self) -> Result<impl ParameterVisitor<'de>, Infallible> {
        Ok(self)
    }
}

impl<'de> ParameterVisitor<'de> for InputMember<'_, 'de, '_> {
    type Out = ();
    type Error = Infallible;

    fn parameter(
        &mut self,
        key: &'de KeyRef,
        value: BareItemFromInput<'de>,
    ) -> Result<(), Infallible> {
        let current = &mut self.0.current;
        current.repeated_param |= current.params.iter().any(|(seen, _)| *seen == key);
        current.params.push((key, value));
        Ok(())
    }

    fn finish(self) -> Result<(), Infallible> {
        self.0.end_member();
        Ok(())
    }
}

/// One covered item of a Signature-Input member.
struct Component<'v, 'de>(&'v mut Input<'de>);

impl<'de> ItemVisitor<'de> for Component<'_, 'de> {
    type Out = ();
    type Error = Infallible;

    fn bare_item(
        self,
        item: BareItemFromInput<'de>,
    ) -> Result<impl ParameterVisitor<'de, Out = ()>, Infallible> {
        match item {
            BareItemFromInput::String(id) => self.0.components.push(id),
            _ => {
                self.0
                    .odd_component
                    .get_or_insert("a component identifier is not a string");
            }
        }
        Ok(self)
    }
}

impl<'de> ParameterVisitor<'de> for Component<'_, 'de> {
    type Out = ();
    type Error = Infallible;

    fn parameter(&mut self, _: &'de KeyRef, _: BareItemFromInput<'de>) -> Result<(), Infallible> {
        self.0
            .odd_component
            .get_or_insert("component parameter not supported");
        Ok(())
    }

    fn finish(self) -> Result<(), Infallible> {
        Ok(())
    }
}

/// The one Signature-Input member whose `keyid` is `key_id`. Two members
/// naming the same key, or two under one label, are refused rather than
/// one picked, so what is checked never depends on member order.
fn select_input<'de>(field: &'de [u8], key_id: &str) -> Result<Input<'de>, Refusal> {
    let inputs = Inputs::read(key_id, field)?;
    if inputs.labels.is_empty() {
        return Err(Refusal::Invalid("Signature-Input names no signature"));
    }
    if inputs.repeated_label {
        return Err(Refusal::Invalid("Signature-Input repeats a label"));
    }
    if inputs.named_twice {
        return Err(Refusal::Invalid("more than one signature names the key"));
    }
    match inputs.found {
        Some(found) if found.repeated_param => Err(Refusal::Invalid(
            "a signature parameter appears more than once",
        )),
        Some(found) => Ok(found),
        None if inputs.any_keyid => Err(Refusal::Invalid("keyid names another key")),
        None => Err(Refusal::Invalid("keyid parameter is required")),
    }
}

/// The signature parameters Keyward's policy reads. Others (`tag`, and any
/// unknown one) stay in `@signature-params` as received and are ignored.
struct SignatureParams<'i> {
    created_ms: i64,
    expires_ms: Option<i64>,
    nonce: &'i str,
}

impl<'i> SignatureParams<'i> {
    fn read(input: &'i Input<'_>, algorithm: Algorithm) -> Result<Self, Refusal> {
        let created_ms = match input.param("created") {
            None => return Err(Refusal::Invalid("created parameter is required")),
            Some(value) => seconds_to_ms(value).ok_or(Refusal::Invalid(
                "created parameter must be a non-negative integer of seconds",
            ))?,
        };
        let expires_ms = match input.param("expires") {
            None => None,
            Some(value) => Some(seconds_to_ms(value).ok_or(Refusal::Invalid(
                "expires parameter must be a non-negative integer of seconds",
            ))?),
        };
        let nonce = match input.param("nonce") {
            None => return Err(Refusal::Invalid("nonce parameter is required")),
            Some(BareItemFromInput::String(nonce))
                if (1..=MAX_NONCE_LEN).contains(&nonce.as_str().len()) =>
            {
                nonce.as_str()
            }
            Some(_) => {
                return Err(Refusal::Invalid(
                    "nonce parameter must be a string of 1 to 128 characters",
                ))
            }
        };
        if let Some(alg) = input.param("alg") {
            let named = match alg {
                BareItemFromInput::String(alg) => Some(alg.as_str()),
                _ => None,
            };
            if named != Some(algorithm.as_str()) {
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

fn seconds_to_ms(value: &BareItemFromInput<'_>) -> Option<i64> {
    let BareItemFromInput::Integer(seconds) = value else {
        return None;
    };
    let seconds = i64::from(*seconds);
    // Structured-field integers have at most 15 digits, so this cannot
    // overflow; it is checked rather than assumed.
    (seconds >= 0).then(|| seconds.checked_mul(1000)).flatten()
}

/// A byte-sequence member of a dictionary, picked out by name while the
/// rest is only checked for syntax.
#[derive(Debug, Default, PartialEq, Eq)]
enum Member {
    #[default]
    Absent,
    Bytes(Vec<u8>),
    NotBytes,
}

/// Reads a dictionary for the byte sequences under the names it is asked
/// for; `names` and `found` line up.
struct ByteMembers<'n, const N: usize> {
    names: [&'n str; N],
    found: [Member; N],
}

impl<const N: usize> ByteMembers<'_, N> {
    /// Reads `field` for the members asked for: by the canonical reader
    /// when it can, by `sfv` otherwise. `false`: not a dictionary.
    fn read(&mut self, field: &[u8]) -> bool {
        if canonical::read_byte_members(field, &self.names, &mut self.found).is_some() {
            return true;
        }
        self.found = std::array::from_fn(|_| Member::Absent);
        parser(field).parse_dictionary_with_visitor(self).is_ok()
    }
}

impl<'de, const N: usize> DictionaryVisitor<'de> for &mut ByteMembers<'_, N> {
    type Out = ();
    type Error = Infallible;

    fn entry(&mut self, key: &'de KeyRef) -> Result<impl EntryVisitor<'de>, Infallible> {
        let slot = self
            .names
            .iter()
            .position(|name| *name == key.as_str())
            .and_then(|at| self.found.get_mut(at));
        Ok(ByteMember(slot))
    }

    fn finish(self) -> Result<(), Infallible> {
        Ok(())
    }
}

struct ByteMember<'v>(Option<&'v mut Member>);

impl<'de> EntryVisitor<'de> for ByteMember<'_> {
    type Error = Infallible;

    fn item(self) -> Result<impl ItemVisitor<'de>, Infallible> {
        Ok(self)
    }

    fn inner_list(self) -> Result<impl InnerListVisitor<'de>, Infallible> {
        if let Some(slot) = self.0 {
            *slot = Member::NotBytes;
        }
        Ok(Ignored)
    }
}

impl<'de> ItemVisitor<'de> for ByteMember<'_> {
    type Out = ();
    type Error = Infallible;

    fn bare_item(
        self,
        item: BareItemFromInput<'de>,
    ) -> Result<impl ParameterVisitor<'de, Out = ()>, Infallible> {
        if let Some(slot) = self.0 {
            // A later member of the same name replaces an earlier one, as
            // RFC 8941 §4.2.2 says.
            *slot = match item {
                BareItemFromInput::ByteSequence(bytes) => Member::Bytes(bytes),
                _ => Member::NotBytes,
            };
        }
        Ok(Ignored)
    }
}

/// The bytes of the Signature member under `label`.
fn signature_member(request: &Request<'_>, label: &str) -> Result<Vec<u8>, Refusal> {
    let Some(field) = combined_field(request, "signature") else {
        return Err(Refusal::Invalid("the request has no Signature header"));
    };
    let mut members = ByteMembers {
        names: [label],
        found: [Member::Absent],
    };
    if !members.read(&field) {
        return Err(Refusal::Invalid(
            "Signature is not a structured-field dictionary",
        ));
    }
    let [found] = members.found;
    match found {
        Member::Bytes(bytes) => Ok(bytes),
        Member::Absent => Err(Refusal::Invalid(
            "Signature has no member with the label Signature-Input gives the key",
        )),
        Member::NotBytes => Err(Refusal::Invalid(
            "the Signature member is not a byte sequence",
        )),
    }
}

/// The signature base of the first member of `field` (a Signature-Input
/// value) over `request`, exactly as RFC 9421 §2.5 builds it, without
/// Keyward's coverage policy.
#[cfg(test)]
pub(crate) fn signature_base(request: &Request<'_>, field: &str) -> Result<String, Refusal> {
    let inputs = Inputs::read("", field.as_bytes())?;
    let mut base = String::new();
    write_base(&mut base, request, &inputs.current)?;
    Ok(base)
}

/// Writes the signature base (RFC 9421 §2.5) of `input` over `request`
/// into `base`: each covered component's line, then `@signature-params`.
fn write_base(base: &mut String, request: &Request<'_>, input: &Input<'_>) -> Result<(), Refusal> {
    if let Some(reason) = input.odd_component {
        return Err(Refusal::Invalid(reason));
    }
    for (at, id) in input.components.iter().enumerate() {
        let id = id.as_str();
        if input
            .components
            .get(..at)
            .is_some_and(|before| before.iter().any(|c| c.as_str() == id))
        {
            return Err(Refusal::Invalid("a component is covered twice"));
        }
        base.push('"');
        base.push_str(id);
        base.push_str("\": ");
        let start = base.len();
        if id.starts_with('@') {
            write_derived(base, request, id)?;
        } else {
            write_field(base, request, id)?;
        }
        if !is_visible(base.get(start..).unwrap_or_default().as_bytes()) {
            return Err(NOT_VISIBLE);
        }
        base.push('\n');
    }
    base.push_str("\"@signature-params\": ");
    match input.canonical {
        Some(canonical) => base.push_str(canonical),
        None => serialize_member(base, input),
    }
    Ok(())
}

/// Writes the member's inner list and parameters as sfv serialises them,
/// which is the canonical form RFC 9421 §2.3 signs, whatever spacing the
/// client sent.
fn serialize_member(base: &mut String, input: &Input<'_>) {
    let mut list = sfv::ListSerializer::with_buffer(base);
    {
        let mut inner = list.inner_list();
        for id in &input.components {
            _ = inner.bare_item(RefBareItem::String(&**id));
        }
        let mut params = inner.finish();
        for (key, value) in &input.params {
            params = params.parameter(key, value);
        }
    }
    _ = list.finish();
}

fn write_derived(base: &mut String, request: &Request<'_>, id: &str) -> Result<(), Refusal> {
    match id {
        "@method" => {
            if !is_token(request.method.as_bytes()) {
                return Err(Refusal::Invalid("the method is not an HTTP token"));
            }
            base.push_str(request.method);
        }
        "@scheme" => base.push_str(scheme(request)?),
        "@authority" => write_authority(base, request)?,
        // The authority is normalised here as for `@authority`, which is
        // how HTTP client libraries write the URI they were given.
        "@target-uri" => {
            base.push_str(scheme(request)?);
            base.push_str("://");
            write_authority(base, request)?;
            base.push_str(path(request)?);
            if let Some(query) = request.query {
                base.push('?');
                base.push_str(query);
            }
        }
        "@request-target" => {
            base.push_str(path(request)?);
            if let Some(query) = request.query {
                base.push('?');
                base.push_str(query);
            }
        }
        "@path" => base.push_str(path(request)?),
        "@query" => {
            base.push('?');
            base.push_str(request.query.unwrap_or(""));
        }
        _ => return Err(Refusal::Invalid("derived component not supported")),
    }
    Ok(())
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

/// Writes the authority normalised as RFC 9110 §4.2.3 asks: lower-case,
/// without the scheme's default port.
fn write_authority(base: &mut String, request: &Request<'_>) -> Result<(), Refusal> {
    const NOT_AUTHORITY: Refusal = Refusal::Invalid("the authority is not a host and port");
    let host = request.authority;
    let well_formed = host
        .bytes()
        .all(|byte| byte.is_ascii_graphic() && !b"/?#@".contains(&byte));
    if !well_formed {
        return Err(NOT_AUTHORITY);
    }
    let default_port = if scheme(request)? == "https" {
        ":443"
    } else {
        ":80"
    };
    // An empty port means the default one too (RFC 3986 §6.2.3).
    let without_port = host
        .strip_suffix(default_port)
        .or_else(|| host.strip_suffix(':'))
        .unwrap_or(host);
    if without_port.is_empty() {
        return Err(NOT_AUTHORITY);
    }
    base.extend(without_port.chars().map(|c| c.to_ascii_lowercase()));
    Ok(())
}

fn path<'a>(request: &Request<'a>) -> Result<&'a str, Refusal> {
    match request.path {
        // RFC 9421 §2.2.6: an empty path is `/`.
        "" => Ok("/"),
        path if path.starts_with('/') => Ok(path),
        _ => Err(Refusal::Invalid("the path must start with /")),
    }
}

/// Writes a header field's component value (RFC 9421 §2.1): every line's
/// value, unfolded and trimmed, joined with ", ".
fn write_field(base: &mut String, request: &Request<'_>, name: &str) -> Result<(), Refusal> {
    if !is_token(name.as_bytes()) || name.bytes().any(|byte| byte.is_ascii_uppercase()) {
        return Err(Refusal::Invalid(
            "a covered header name must be a lower-case HTTP token",
        ));
    }
    let mut any = false;
    for line in field_lines(request, name) {
        if any {
            base.push_str(", ");
        }
        any = true;
        let unfolded: Cow<'_, [u8]> = if line.iter().any(|byte| matches!(byte, b'\r' | b'\n')) {
            Cow::Owned(unfold(line))
        } else {
            Cow::Borrowed(line)
        };
        let value = trim(&unfolded);
        if !is_visible(value) {
            return Err(NOT_VISIBLE);
        }
        base.push_str(std::str::from_utf8(value).map_err(|_| NOT_VISIBLE)?);
    }
    if !any {
        return Err(Refusal::Invalid("a covered header is absent"));
    }
    Ok(())
}

/// Replaces each obsolete line folding (optional whitespace, a line break,
/// whitespace) with one space, as RFC 9421 §2.1 asks. A line break that is
/// not a fold is left for `is_visible` to refuse.
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

/// Whether every byte is visible ASCII, a space or a tab. Any other byte
/// could forge a line of the signature base, or be read differently by the
/// application behind the check.
fn is_visible(value: &[u8]) -> bool {
    // Folded without an early exit, so that the loop is vectorised:
    // refusal is the rare case, and the whole value is read anyway.
    value.iter().fold(true, |visible, &byte| {
        visible & matches!(byte, b'\t' | b' '..=b'~')
    })
}

const NOT_VISIBLE: Refusal =
    Refusal::Invalid("a covered value holds bytes other than visible ASCII, space and tab");

/// Keyward's coverage policy: a signature that leaves the method, the
/// target or the body out could be moved onto another request.
fn require_coverage(request: &Request<'_>, input: &Input<'_>) -> Result<(), Refusal> {
    let has = |id: &str| input.covers(id);
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
    let mut members = ByteMembers {
        names: ["sha-256", "sha-512"],
        found: Default::default(),
    };
    if !members.read(&field) {
        return Err(Refusal::Invalid(
            "content-digest is not a structured-field dictionary",
        ));
    }
    let [sha256, sha512] = &members.found;
    if matches!(sha256, Member::NotBytes) || matches!(sha512, Member::NotBytes) {
        return Err(Refusal::Invalid(
            "a content-digest member is not a byte sequence",
        ));
    }
    let body = body_of(request);
    let mut checked = false;
    let mut matches = true;
    if let Member::Bytes(claimed) = sha256 {
        let actual: [u8; 32] = match body {
            Body::None => Sha256::digest(b"").into(),
            Body::Bytes(bytes) => Sha256::digest(bytes).into(),
            Body::Digest(digest) => digest,
        };
        checked = true;
        matches &= same_bytes(claimed, &actual);
    }
    if let Member::Bytes(claimed) = sha512 {
        // SHA-512 cannot be checked against a SHA-256 of the body.
        let actual = match body {
            Body::None => Some(Sha512::digest(b"")),
            Body::Bytes(bytes) => Some(Sha512::digest(bytes)),
            Body::Digest(_) => None,
        };
        if let Some(actual) = actual {
            checked = true;
            matches &= same_bytes(claimed, actual.as_slice());
        }
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
            if same_bytes(&expected, signature) {
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
fn field_lines<'a: 'r, 'r>(
    request: &'r Request<'a>,
    name: &'r str,
) -> impl Iterator<Item = &'a [u8]> + 'r {
    request
        .headers
        .iter()
        .filter(move |(line_name, _)| line_name.eq_ignore_ascii_case(name))
        .map(|(_, value)| *value)
}

/// The lines of a structured header combined into one value as RFC 9110
/// §5.3 does, skipping empty ones; `None` when the header is absent. One
/// line, the usual case, is borrowed as it is.
fn combined_field<'a>(request: &Request<'a>, name: &str) -> Option<Cow<'a, [u8]>> {
    let mut combined: Option<Cow<'a, [u8]>> = None;
    for line in field_lines(request, name) {
        let line = trim(line);
        match &mut combined {
            None => combined = Some(Cow::Borrowed(line)),
            Some(_) if line.is_empty() => {}
            Some(value) if value.is_empty() => *value = Cow::Borrowed(line),
            Some(value) => {
                let value = value.to_mut();
                value.extend_from_slice(b", ");
                value.extend_from_slice(line);
            }
        }
    }
    combined
}

/// RFC 9421 refers to RFC 8941, so the newer Date and Display String
/// types are refused.
fn parser(field: &[u8]) -> Parser<'_> {
    Parser::new(field).with_version(Version::Rfc8941)
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

// --- The canonical fast path --------------------------------------------

/// Readers for structured fields that are already in canonical form, which
/// is how signing clients write them. Each reads one narrow grammar and
/// gives up (`None`) on anything else, which `sfv` then reads in full; on
/// what they accept they agree with `sfv` exactly, as a property test
/// checks. Canonical input lets the Signature-Input member be signed as it
/// stands, without parsing it into values and serialising them again.
mod canonical {
    use super::{Input, Inputs, Member};
    use base64::Engine as _;
    use sfv::{BareItemFromInput, Integer, KeyRef, StringRef, TokenRef};
    use std::borrow::Cow;

    struct Cursor<'de> {
        text: &'de str,
        at: usize,
    }

    impl<'de> Cursor<'de> {
        fn peek(&self) -> Option<u8> {
            self.text.as_bytes().get(self.at).copied()
        }

        fn eat(&mut self, byte: u8) -> Option<()> {
            (self.peek()? == byte).then(|| self.at += 1)
        }

        fn done(&self) -> bool {
            self.at >= self.text.len()
        }

        /// Bytes while `keep` holds, as text; at least one.
        fn run(&mut self, keep: impl Fn(u8) -> bool) -> Option<&'de str> {
            let start = self.at;
            while self.peek().is_some_and(&keep) {
                self.at += 1;
            }
            (self.at > start)
                .then(|| self.text.get(start..self.at))
                .flatten()
        }

        fn key(&mut self) -> Option<&'de KeyRef> {
            let first = self.peek()?;
            if !(first.is_ascii_lowercase() || first == b'*') {
                return None;
            }
            let key =
                self.run(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-.*".contains(&b))?;
            KeyRef::from_str(key).ok()
        }

        /// A string with no escapes; one with escapes is left to `sfv`.
        fn string(&mut self) -> Option<&'de StringRef> {
            self.eat(b'"')?;
            let start = self.at;
            while let Some(byte) = self.peek() {
                match byte {
                    b'"' => break,
                    b' ' | b'!' | b'#'..=b'[' | b']'..=b'~' => self.at += 1,
                    _ => return None,
                }
            }
            let text = self.text.get(start..self.at)?;
            self.eat(b'"')?;
            StringRef::from_str(text).ok()
        }

        /// An integer as RFC 8941 serialises it: no `+`, no leading zero,
        /// no `-0`, and not the start of a decimal.
        fn integer(&mut self) -> Option<Integer> {
            let start = self.at;
            let negative = self.eat(b'-').is_some();
            let digits = self.run(|b| b.is_ascii_digit())?;
            let canonical = digits.len() <= 15
                && (digits == "0" && !negative || !digits.starts_with('0'))
                && self.peek() != Some(b'.');
            if !canonical {
                return None;
            }
            let value: i64 = self.text.get(start..self.at)?.parse().ok()?;
            Integer::try_from(value).ok()
        }

        fn token(&mut self) -> Option<&'de TokenRef> {
            let first = self.peek()?;
            if !(first.is_ascii_alphabetic() || first == b'*') {
                return None;
            }
            let token = self.run(|b| super::is_token(&[b]) || b == b':' || b == b'/')?;
            TokenRef::from_str(token).ok()
        }

        /// A parameter's value after `=`. `?1` is never written after `=`
        /// in canonical form, and decimals and byte sequences are left to
        /// `sfv`.
        fn value(&mut self) -> Option<BareItemFromInput<'de>> {
            match self.peek()? {
                b'"' => Some(BareItemFromInput::String(Cow::Borrowed(self.string()?))),
                b'-' | b'0'..=b'9' => Some(BareItemFromInput::Integer(self.integer()?)),
                b'?' => {
                    self.at += 1;
                    self.eat(b'0')?;
                    Some(BareItemFromInput::Boolean(false))
                }
                _ => Some(BareItemFromInput::Token(self.token()?)),
            }
        }

        /// Spaces and tabs between dictionary members, which are not part
        /// of any member's canonical text.
        fn skip_ows(&mut self) {
            while matches!(self.peek(), Some(b' ' | b'\t')) {
                self.at += 1;
            }
        }

        /// Between members: a comma, then another member must follow.
        fn next_member(&mut self) -> Option<bool> {
            self.skip_ows();
            if self.done() {
                return Some(false);
            }
            self.eat(b',')?;
            self.skip_ows();
            (!self.done()).then_some(true)
        }
    }

    /// Reads a canonical Signature-Input field into `inputs` as the `sfv`
    /// visitor would, each member's inner list kept as written. `None`:
    /// the field is not in the canonical grammar, and `inputs` is to be
    /// discarded.
    pub(super) fn read_inputs<'de>(field: &'de [u8], inputs: &mut Inputs<'de, '_>) -> Option<()> {
        each_member(field, |cursor, label| {
            let label = label.as_str();
            if inputs.labels.contains(&label) {
                return None;
            }
            inputs.labels.push(label);
            inputs.current.start(label);
            read_member(cursor, &mut inputs.current)?;
            inputs.end_member();
            Some(())
        })
    }

    /// Reads the members of a dictionary, `read` taking each after its
    /// `key=`. `None` when `read` gives up or the members are not
    /// separated as RFC 8941 allows.
    fn each_member<'de>(
        field: &'de [u8],
        mut read: impl FnMut(&mut Cursor<'de>, &'de KeyRef) -> Option<()>,
    ) -> Option<()> {
        let mut cursor = Cursor {
            text: std::str::from_utf8(field).ok()?,
            at: 0,
        };
        if cursor.done() {
            return Some(());
        }
        loop {
            let key = cursor.key()?;
            cursor.eat(b'=')?;
            read(&mut cursor, key)?;
            if !cursor.next_member()? {
                return Some(());
            }
        }
    }

    /// One inner list of strings and its parameters, exactly as RFC 8941
    /// serialises them.
    fn read_member<'de>(cursor: &mut Cursor<'de>, input: &mut Input<'de>) -> Option<()> {
        let start = cursor.at;
        cursor.eat(b'(')?;
        if cursor.eat(b')').is_none() {
            loop {
                input.components.push(Cow::Borrowed(cursor.string()?));
                if cursor.eat(b')').is_some() {
                    break;
                }
                cursor.eat(b' ')?;
            }
        }
        while cursor.eat(b';').is_some() {
            let key = cursor.key()?;
            let value = if cursor.eat(b'=').is_some() {
                cursor.value()?
            } else {
                BareItemFromInput::Boolean(true)
            };
            if input.params.iter().any(|(seen, _)| *seen == key) {
                return None;
            }
            input.params.push((key, value));
        }
        input.canonical = Some(cursor.text.get(start..cursor.at)?);
        Some(())
    }

    /// Reads a dictionary whose members are all byte sequences without
    /// parameters, in canonical base64, keeping those `names` asks for
    /// into `found` as the `sfv` visitor would. `None`: anything else.
    pub(super) fn read_byte_members<const N: usize>(
        field: &[u8],
        names: &[&str; N],
        found: &mut [Member; N],
    ) -> Option<()> {
        each_member(field, |cursor, key| {
            cursor.eat(b':')?;
            let encoded = cursor.run(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b))?;
            cursor.eat(b':')?;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .ok()?;
            if let Some(slot) = names
                .iter()
                .position(|name| *name == key.as_str())
                .and_then(|at| found.get_mut(at))
            {
                *slot = Member::Bytes(bytes);
            }
            Some(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer as _, SigningKey};
    use proptest::prelude::{prop_oneof, Just, Strategy};

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
            self.with(|request| signature_base(request, &format!("sig1={input}")))
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

    /// The RFC's Signature-Input member as given, and the bytes of its
    /// Signature member.
    fn rfc_input_and_signature(input: &str, signature: &str) -> (String, Vec<u8>) {
        let encoded = signature.split(':').nth(1).unwrap();
        (input.to_owned(), B64.decode(encoded).unwrap())
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
                    replay_id: rfc9421_replay_id(KEY_ID, "b5f0e1c2"),
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
            (
                input(components, r#";nonce="another""#),
                Err("a signature parameter appears more than once"),
            ),
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

        // Two members under one label could be read either way.
        let relabelled = signed.clone().sign_as("sig1", proxy_input, &proxy);
        assert_eq!(
            relabelled.verify(&key),
            invalid("Signature-Input repeats a label")
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

    // --- The canonical readers agree with sfv ------------------------

    /// What a read of Signature-Input found, comparable across readers.
    fn inputs_summary(inputs: &Inputs<'_, '_>) -> String {
        let found = inputs.found.as_ref().map(|input| {
            let mut text = String::new();
            serialize_member(&mut text, input);
            (
                input.label,
                input
                    .components
                    .iter()
                    .map(|c| c.as_str().to_owned())
                    .collect::<Vec<_>>(),
                format!("{:?}", input.params),
                input.odd_component,
                input.repeated_param,
                text,
            )
        });
        format!(
            "{:?} {:?} {} {} {}",
            inputs.labels, found, inputs.repeated_label, inputs.named_twice, inputs.any_keyid
        )
    }

    fn member_piece() -> impl Strategy<Value = String> {
        let label = prop_oneof![
            Just("sig1"),
            Just("sig2"),
            Just("a-b.c"),
            Just("Sig"),
            Just("*x"),
            Just("1a")
        ];
        let item = prop_oneof![
            Just(r#""@method""#),
            Just(r#""@path""#),
            Just(r#""content-digest""#),
            Just(r#""a\"b""#),
            Just("@x"),
            Just(r#""x";p"#),
            Just(r#""é""#),
            Just(r#""""#)
        ];
        let param = prop_oneof![
            Just(";created=1700000000"),
            Just(";created=01"),
            Just(";created=-0"),
            Just(";created=-5"),
            Just(";created=0"),
            Just(";expires=1.5"),
            Just(";created=1234567890123456"),
            Just(r#";keyid="k""#),
            Just(";keyid=k"),
            Just(r#";keyid="other""#),
            Just(r#";nonce="n""#),
            Just(r#"; nonce="n""#),
            Just(";x"),
            Just(";x=?1"),
            Just(";x=?0"),
            Just(";t=:AQ==:"),
            Just(";alg=hmac-sha256"),
            Just(";tok=a:b/c"),
            Just(";Up=1"),
            Just(r#";s="a b""#)
        ];
        let gap = prop_oneof![Just(" "), Just("  "), Just("")];
        (
            label,
            proptest::collection::vec((item, gap.clone()), 0..4),
            proptest::collection::vec(param, 0..6),
            prop_oneof![Just("("), Just("( ")],
            prop_oneof![Just(")"), Just(" )")],
            prop_oneof![Just("="), Just("")],
        )
            .prop_map(|(label, items, params, open, close, equals)| {
                let mut member = format!("{label}{equals}{open}");
                for (at, (item, gap)) in items.iter().enumerate() {
                    if at > 0 {
                        member.push_str(gap);
                    }
                    member.push_str(item);
                }
                member.push_str(close);
                member.extend(params);
                member
            })
    }

    fn byte_member_piece() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("sha-256=:AQID:"),
            Just("sha-512=:AQ==:"),
            Just("x=:AQ:"),
            Just("sig1=:AQID:;p"),
            Just("sig1=AQ"),
            Just("sig1=:AQID:"),
            Just("sig1=:AQ=D:"),
            Just("sha-256=::"),
            Just("sha-256=:@@:"),
            Just("sig1"),
            Just("Sig=:AQID:")
        ]
        .prop_map(str::to_owned)
    }

    fn separator() -> impl Strategy<Value = &'static str> {
        prop_oneof![Just(", "), Just(","), Just(" ,\t"), Just(",,"), Just(" ")]
    }

    fn field(piece: impl Strategy<Value = String>) -> impl Strategy<Value = String> {
        (
            proptest::collection::vec((piece, separator()), 0..4),
            prop_oneof![Just(""), Just(" "), Just(",")],
        )
            .prop_map(|(members, tail)| {
                let mut field = String::new();
                for (at, (member, sep)) in members.iter().enumerate() {
                    if at > 0 {
                        field.push_str(sep);
                    }
                    field.push_str(member);
                }
                field.push_str(tail);
                field
            })
    }

    proptest::proptest! {
        #[test]
        fn the_canonical_signature_input_reader_agrees_with_sfv(field in field(member_piece())) {
            let mut fast = Inputs::new("k");
            if canonical::read_inputs(field.as_bytes(), &mut fast).is_some() {
                let mut slow = Inputs::new("k");
                let parsed = parser(field.as_bytes()).parse_dictionary_with_visitor(&mut slow);
                proptest::prop_assert!(parsed.is_ok(), "sfv refused {field:?}");
                proptest::prop_assert_eq!(inputs_summary(&fast), inputs_summary(&slow));
                if let Some(found) = &fast.found {
                    let mut serialized = String::new();
                    serialize_member(&mut serialized, found);
                    proptest::prop_assert_eq!(found.canonical, Some(serialized.as_str()));
                }
            }
        }

        #[test]
        fn the_canonical_byte_member_reader_agrees_with_sfv(field in field(byte_member_piece())) {
            let names = ["sha-256", "sig1"];
            let mut fast: [Member; 2] = Default::default();
            if canonical::read_byte_members(field.as_bytes(), &names, &mut fast).is_some() {
                let mut slow = ByteMembers { names, found: Default::default() };
                let parsed = parser(field.as_bytes()).parse_dictionary_with_visitor(&mut slow);
                proptest::prop_assert!(parsed.is_ok(), "sfv refused {field:?}");
                proptest::prop_assert_eq!(fast, slow.found);
            }
        }
    }

    #[test]
    fn canonical_fields_take_the_canonical_readers() {
        let field = br#"sig1=("@method" "@path");created=1;keyid="k";nonce="n", proxy=("@method");keyid="p""#;
        let mut inputs = Inputs::new("k");
        assert!(canonical::read_inputs(field, &mut inputs).is_some());
        assert_eq!(
            inputs.found.and_then(|input| input.canonical),
            Some(r#"("@method" "@path");created=1;keyid="k";nonce="n""#)
        );
        let mut found: [Member; 1] = Default::default();
        assert!(
            canonical::read_byte_members(b"sha-256=:AQID:, sig=:AA==:", &["sig"], &mut found)
                .is_some()
        );
        assert_eq!(found, [Member::Bytes(vec![0])]);
        for odd in [
            &br#"sig1=( "@method");keyid="k""#[..],
            br#"sig1=("@method");created=01"#,
        ] {
            assert!(canonical::read_inputs(odd, &mut Inputs::new("k")).is_none());
        }
    }

    #[test]
    fn bytes_are_the_same_only_when_every_byte_and_the_length_are() {
        let mac = [0x5au8; 32];
        assert!(same_bytes(&mac, &mac));
        assert!(same_bytes(b"", b""));
        assert!(!same_bytes(&mac, &mac[..31]));
        for at in [0, 17, 31] {
            for bit in [0x01, 0x80] {
                let mut other = mac;
                other[at] ^= bit;
                assert!(!same_bytes(&mac, &other), "byte {at} bit {bit:#x}");
            }
        }
    }

    #[test]
    fn visible_means_printable_ascii_space_and_tab() {
        assert!(is_visible(b"sha-256=:X48E9q=: \t~"));
        for odd in [b"a\nb".as_slice(), b"\r", b"\x7f", b"\x00", "é".as_bytes()] {
            assert!(!is_visible(odd), "{odd:?}");
        }
    }
}
