//! `httpsig` through its public API: Binance's documented HMAC examples,
//! an Ed25519 Binance request, an RFC 9421 request whose signature base is
//! written out by hand, and a property test that no input panics.

#![allow(clippy::unwrap_used, clippy::expect_used)] // A panic in a test is a failed test.

use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey};
use hmac::{Hmac, Mac};
use keyward_crypto::httpsig::{
    is_signed, verify_binance, verify_rfc9421, KeyMaterial, Refusal, Request, Scheme, Verified,
};
use proptest::prelude::*;
use sha2::{Digest, Sha256};

// The example of Binance's documentation for SIGNED endpoints (HMAC).
const BINANCE_SECRET: &[u8] = b"NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j";
const BINANCE_PARAMS: &str = "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559";
const BINANCE_SIGNATURE: &str = "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71";
// Its third example: the same parameters split between query and body,
// which Binance signs as the two concatenated with no `&` between them.
const BINANCE_SPLIT_QUERY: &str = "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC";
const BINANCE_SPLIT_BODY: &str = "quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559";
const BINANCE_SPLIT_SIGNATURE: &str =
    "0fd168b8ddb4876a0358a8d14d0c9f3da0e9b20c5d52b2a00fcf7d1c602f9a77";
// Its example of a symbol outside ASCII, signed as sent: percent-encoded.
const BINANCE_ENCODED_PARAMS: &str = "symbol=%EF%BC%91%EF%BC%92%EF%BC%93%EF%BC%94%EF%BC%95%EF%BC%96&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559";
const BINANCE_ENCODED_SIGNATURE: &str =
    "e1353ec6b14d888f1164ae9af8228a3dbd508bc82eb867db8ab6046442f33ef3";

/// A request with only a query and a body, as Binance's examples send.
fn binance<'a>(query: Option<&'a str>, body: Option<&'a [u8]>) -> Request<'a> {
    Request {
        method: "POST",
        scheme: "https",
        authority: "api.example.com",
        path: "/api/v3/order",
        query,
        headers: &[],
        body,
        body_sha256: None,
    }
}

fn binance_hmac(query: Option<&str>, body: Option<&str>) -> Result<Verified, Refusal> {
    verify_binance(
        &binance(query, body.map(str::as_bytes)),
        KeyMaterial::Hmac(BINANCE_SECRET),
    )
}

#[test]
fn binance_documented_example_verifies_from_the_query() {
    let query = format!("{BINANCE_PARAMS}&signature={BINANCE_SIGNATURE}");
    let verified = binance_hmac(Some(&query), None).unwrap();
    assert_eq!(verified.created_ms, 1_499_827_319_559);
    assert_eq!(verified.window_ms, Some(5000));
    assert_eq!(verified.expires_ms, None);
    assert!(is_signed(&binance(Some(&query), None), Scheme::Binance));
}

#[test]
fn binance_documented_example_verifies_from_the_body() {
    let body = format!("{BINANCE_PARAMS}&signature={BINANCE_SIGNATURE}");
    assert!(binance_hmac(None, Some(&body)).is_ok());
    assert!(binance_hmac(Some(""), Some(&body)).is_ok());
    assert!(is_signed(
        &binance(None, Some(body.as_bytes())),
        Scheme::Binance
    ));
}

#[test]
fn binance_documented_example_verifies_split_between_query_and_body() {
    let body = format!("{BINANCE_SPLIT_BODY}&signature={BINANCE_SPLIT_SIGNATURE}");
    let verified = binance_hmac(Some(BINANCE_SPLIT_QUERY), Some(&body)).unwrap();
    assert_eq!(verified.created_ms, 1_499_827_319_559);
    // The signature may sit in the query while parameters follow in the body.
    let query = format!("{BINANCE_SPLIT_QUERY}&signature={BINANCE_SPLIT_SIGNATURE}");
    assert!(binance_hmac(Some(&query), Some(BINANCE_SPLIT_BODY)).is_ok());
    let query = format!("signature={BINANCE_SPLIT_SIGNATURE}&{BINANCE_SPLIT_QUERY}");
    assert!(binance_hmac(Some(&query), Some(BINANCE_SPLIT_BODY)).is_ok());
}

#[test]
fn binance_parameters_are_signed_as_sent_percent_encoding_included() {
    let query = format!("{BINANCE_ENCODED_PARAMS}&signature={BINANCE_ENCODED_SIGNATURE}");
    assert!(binance_hmac(Some(&query), None).is_ok());
}

#[test]
fn binance_hex_signatures_are_accepted_in_either_case_with_one_replay_id() {
    let lower = format!("{BINANCE_PARAMS}&signature={BINANCE_SIGNATURE}");
    let upper = format!(
        "{BINANCE_PARAMS}&signature={}",
        BINANCE_SIGNATURE.to_uppercase()
    );
    let lower = binance_hmac(Some(&lower), None).unwrap();
    let upper = binance_hmac(Some(&upper), None).unwrap();
    assert_eq!(lower.replay_id, upper.replay_id);
    let split_body = format!("{BINANCE_SPLIT_BODY}&signature={BINANCE_SPLIT_SIGNATURE}");
    let split = binance_hmac(Some(BINANCE_SPLIT_QUERY), Some(&split_body)).unwrap();
    assert_ne!(lower.replay_id, split.replay_id);
}

#[test]
fn binance_tampered_requests_are_refused() {
    let mismatch = Err(Refusal::Invalid("signature does not match"));
    let tampered = [
        BINANCE_PARAMS.replace("quantity=1", "quantity=2"),
        BINANCE_PARAMS.replace("timestamp=1499827319559", "timestamp=1499827319560"),
        BINANCE_PARAMS.replace("&side=BUY", "&side=BUY&"),
        BINANCE_PARAMS.replace("recvWindow=5000&", ""),
    ];
    for params in tampered {
        let query = format!("{params}&signature={BINANCE_SIGNATURE}");
        assert_eq!(binance_hmac(Some(&query), None), mismatch, "{params}");
    }
    let forged = BINANCE_SIGNATURE.replace("c8db", "c8dc");
    let query = format!("{BINANCE_PARAMS}&signature={forged}");
    assert_eq!(binance_hmac(Some(&query), None), mismatch);
    // Moving a parameter from the query to the body changes the payload.
    let body = format!("{BINANCE_SPLIT_BODY}&signature={BINANCE_SIGNATURE}");
    assert_eq!(
        binance_hmac(Some(BINANCE_SPLIT_QUERY), Some(&body)),
        mismatch
    );
    // Another secret does not verify.
    let query = format!("{BINANCE_PARAMS}&signature={BINANCE_SIGNATURE}");
    let other = verify_binance(&binance(Some(&query), None), KeyMaterial::Hmac(b"another"));
    assert_eq!(other, mismatch);
}

#[test]
fn binance_signature_must_appear_exactly_once() {
    let once = format!("{BINANCE_PARAMS}&signature={BINANCE_SIGNATURE}");
    let twice = format!("{once}&signature={BINANCE_SIGNATURE}");
    let refused = Err(Refusal::Invalid("signature appears more than once"));
    assert_eq!(binance_hmac(Some(&twice), None), refused);
    assert_eq!(binance_hmac(Some(&once), Some(&once)), refused);
    let encoded_name = format!("{once}&%73ignature=x");
    assert_eq!(binance_hmac(Some(&encoded_name), None), refused);

    let missing = binance_hmac(Some(BINANCE_PARAMS), None).unwrap_err();
    assert_eq!(missing, Refusal::Missing("signature parameter is required"));
    assert!(missing.is_missing());
    assert!(!is_signed(
        &binance(Some(BINANCE_PARAMS), None),
        Scheme::Binance
    ));
    assert!(binance_hmac(None, None).unwrap_err().is_missing());
}

#[test]
fn binance_timestamp_is_required_and_windows_are_bounded() {
    let without = BINANCE_PARAMS.replace("&timestamp=1499827319559", "");
    let query = format!("{without}&signature={BINANCE_SIGNATURE}");
    assert_eq!(
        binance_hmac(Some(&query), None),
        Err(Refusal::Invalid("timestamp parameter is required"))
    );
    let cases = [
        (
            "timestamp=1499827319559",
            "timestamp=soon",
            "timestamp must be a whole number of milliseconds",
        ),
        (
            "timestamp=1499827319559",
            "timestamp=-1",
            "timestamp must be a whole number of milliseconds",
        ),
        (
            "timestamp=1499827319559",
            "timestamp=",
            "timestamp must be a whole number of milliseconds",
        ),
        (
            "timestamp=1499827319559",
            "timestamp=1&timestamp=2",
            "timestamp appears more than once",
        ),
        (
            "recvWindow=5000",
            "recvWindow=0",
            "recvWindow must be a whole number of milliseconds from 1 to 60000",
        ),
        (
            "recvWindow=5000",
            "recvWindow=60001",
            "recvWindow must be a whole number of milliseconds from 1 to 60000",
        ),
        (
            "recvWindow=5000",
            "recvWindow=5000.5",
            "recvWindow must be a whole number of milliseconds from 1 to 60000",
        ),
        (
            "recvWindow=5000",
            "recvWindow=1&recvWindow=2",
            "recvWindow appears more than once",
        ),
    ];
    for (from, to, reason) in cases {
        let params = BINANCE_PARAMS.replace(from, to);
        let query = format!("{params}&signature={BINANCE_SIGNATURE}");
        assert_eq!(
            binance_hmac(Some(&query), None),
            Err(Refusal::Invalid(reason)),
            "{to}"
        );
    }
}

#[test]
fn binance_signatures_cannot_leave_a_body_uncovered() {
    let query = format!("{BINANCE_PARAMS}&signature={BINANCE_SIGNATURE}");
    assert_eq!(
        binance_hmac(Some(&query), Some(r#"{"quantity":"100"}"#)),
        Err(Refusal::Invalid(
            "the body is not form parameters, so the signature cannot cover it"
        ))
    );
    let mut request = binance(Some(&query), None);
    request.body_sha256 = Some(Sha256::digest(b"quantity=100").into());
    assert_eq!(
        verify_binance(&request, KeyMaterial::Hmac(BINANCE_SECRET)),
        Err(Refusal::Invalid(
            "the body is needed to check this signature, and only its digest was given"
        ))
    );
    // An empty body, or the digest of one, is no body.
    assert!(binance_hmac(Some(&query), Some("")).is_ok());
    request.body_sha256 = Some(Sha256::digest(b"").into());
    assert!(verify_binance(&request, KeyMaterial::Hmac(BINANCE_SECRET)).is_ok());
}

#[test]
fn binance_signature_must_be_hex_for_an_hmac_key() {
    for bad in ["", "c8db", "zz", "%zz", &format!("{BINANCE_SIGNATURE}00")] {
        let query = format!("{BINANCE_PARAMS}&signature={bad}");
        let refusal = binance_hmac(Some(&query), None).unwrap_err();
        assert!(!refusal.is_missing(), "{bad}");
        assert_ne!(refusal.reason(), "signature does not match", "{bad}");
    }
}

#[test]
fn binance_ed25519_signatures_verify_percent_encoded_or_not() {
    let signing = SigningKey::from_bytes(&[9u8; 32]);
    let public = signing.verifying_key();
    let key = KeyMaterial::Ed25519(&public);
    let params = "symbol=BTCUSDT&side=SELL&type=MARKET&quantity=0.01&timestamp=1700000000123";
    // 64 bytes in base64 always end in `==`, so the percent-encoded form
    // python-binance sends differs from the raw one.
    let signature = base64::engine::general_purpose::STANDARD
        .encode(signing.sign(params.as_bytes()).to_bytes());
    let encoded = signature
        .replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D");
    for sent in [&signature, &encoded] {
        let query = format!("{params}&signature={sent}");
        let verified = verify_binance(&binance(Some(&query), None), key).unwrap();
        assert_eq!(verified.created_ms, 1_700_000_000_123);
        assert_eq!(verified.window_ms, None);
    }
    let tampered = format!("{}&signature={encoded}", params.replace("0.01", "10"));
    assert_eq!(
        verify_binance(&binance(Some(&tampered), None), key),
        Err(Refusal::Invalid("signature does not match"))
    );
    let query = format!("{params}&signature={BINANCE_SIGNATURE}");
    assert_eq!(
        verify_binance(&binance(Some(&query), None), key),
        Err(Refusal::Invalid(
            "signature must be the Ed25519 signature in standard base64"
        ))
    );
    // An HMAC key does not take an Ed25519 signature.
    let query = format!("{params}&signature={encoded}");
    assert!(verify_binance(&binance(Some(&query), None), KeyMaterial::Hmac(b"k")).is_err());
}

#[test]
fn rfc_9421_request_signed_by_hand_verifies() {
    // The signature base is written out as RFC 9421 §2.5 defines it, so
    // this pins the verifier to the text, not to its own builder.
    let secret = b"client two's shared secret";
    let body = br#"{"hello": "world"}"#;
    let input = r#"sig1=("@method" "@authority" "@path" "@query" "content-digest");created=1700000000;keyid="client-2";nonce="d9c6a4";expires=1700000300"#;
    let base = concat!(
        "\"@method\": DELETE\n",
        "\"@authority\": keys.example.net\n",
        "\"@path\": /v1/keys/abc\n",
        "\"@query\": ?force=true\n",
        "\"content-digest\": sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:\n",
        "\"@signature-params\": (\"@method\" \"@authority\" \"@path\" \"@query\" \"content-digest\")",
        ";created=1700000000;keyid=\"client-2\";nonce=\"d9c6a4\";expires=1700000300",
    );
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).unwrap();
    mac.update(base.as_bytes());
    let signature = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    let signature = format!("sig1=:{signature}:");
    let headers: [(&str, &[u8]); 4] = [
        ("Host", b"Keys.Example.NET:443"),
        (
            "Content-Digest",
            b"sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:",
        ),
        ("signature-input", input.as_bytes()),
        ("SIGNATURE", signature.as_bytes()),
    ];
    let request = Request {
        method: "DELETE",
        scheme: "https",
        authority: "Keys.Example.NET:443",
        path: "/v1/keys/abc",
        query: Some("force=true"),
        headers: &headers,
        body: Some(body),
        body_sha256: None,
    };
    assert!(is_signed(&request, Scheme::Rfc9421));
    let verified = verify_rfc9421(&request, "client-2", KeyMaterial::Hmac(secret)).unwrap();
    assert_eq!(verified.created_ms, 1_700_000_000_000);
    assert_eq!(verified.expires_ms, Some(1_700_000_300_000));
    assert_eq!(verified.window_ms, None);
    // The nonce under the key it was signed for: tag, nonce length, nonce,
    // key id.
    let replay: [u8; 32] = Sha256::new()
        .chain_update(b"kw/9421\0")
        .chain_update([6])
        .chain_update(b"d9c6a4")
        .chain_update(b"client-2")
        .finalize()
        .into();
    assert_eq!(verified.replay_id, replay);
    assert_eq!(
        verify_rfc9421(&request, "client-2", KeyMaterial::Hmac(b"another secret")),
        Err(Refusal::Invalid("signature does not match"))
    );
    assert!(!is_signed(&request, Scheme::Binance));
}

// --- No input panics ---------------------------------------------------

fn header_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("Signature-Input".to_owned()),
        Just("signature".to_owned()),
        Just("Content-Digest".to_owned()),
        Just("content-type".to_owned()),
        "[A-Za-z-]{1,12}",
    ]
}

fn header_value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..80),
        // Near-valid Signature-Input members, to reach past the parser.
        r#"[a-z0-9]{1,4}=\(("[@a-z-]{0,12}"( "[@a-z;=-]{0,14}"){0,5})?\)(;(created|expires|keyid|nonce|alg|tag)=("[a-z0-9-]{0,8}"|-?[0-9]{1,16}|[a-z]{1,3})){0,6}"#
            .prop_map(String::into_bytes),
        // Near-valid Signature and Content-Digest members.
        "(sig1|sha-256|sha-512|[a-z]{1,3})=:[A-Za-z0-9+/=]{0,90}:".prop_map(String::into_bytes),
        ".{0,40}".prop_map(String::into_bytes),
    ]
}

fn query() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(prop_oneof![
        "((signature|timestamp|recvWindow|%73ignature|[a-z]{1,4})=[0-9a-fA-F%+/=]{0,70}&?){0,5}",
        ".{0,60}",
    ])
}

fn body() -> impl Strategy<Value = Option<Vec<u8>>> {
    proptest::option::of(prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..80),
        "((signature|timestamp|recvWindow|[a-z]{1,4})=[0-9a-f%]{0,66}&?){0,4}"
            .prop_map(String::into_bytes),
    ])
}

proptest! {
    #[test]
    fn no_request_makes_either_verifier_panic(
        method in "[A-Z]{0,7}|.{0,8}",
        scheme in "https?|.{0,6}",
        authority in ".{0,24}",
        path in "/[ -~]{0,30}|.{0,12}",
        query in query(),
        headers in proptest::collection::vec((header_name(), header_value()), 0..6),
        body in body(),
        body_sha256 in proptest::option::of(any::<[u8; 32]>()),
        key_id in prop_oneof![Just("k".to_owned()), ".{0,6}"],
        secret in proptest::collection::vec(any::<u8>(), 0..40),
        public_seed in any::<[u8; 32]>(),
    ) {
        let headers: Vec<(&str, &[u8])> = headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_slice()))
            .collect();
        let request = Request {
            method: &method,
            scheme: &scheme,
            authority: &authority,
            path: &path,
            query: query.as_deref(),
            headers: &headers,
            body: body.as_deref(),
            body_sha256,
        };
        let public = SigningKey::from_bytes(&public_seed).verifying_key();
        for key in [KeyMaterial::Hmac(&secret), KeyMaterial::Ed25519(&public)] {
            // Anything random is refused; what matters is that nothing
            // panics and every refusal has a reason.
            if let Err(refusal) = verify_rfc9421(&request, &key_id, key) {
                prop_assert!(!refusal.reason().is_empty());
            }
            if let Err(refusal) = verify_binance(&request, key) {
                prop_assert!(!refusal.reason().is_empty());
            }
        }
        let _ = is_signed(&request, Scheme::Rfc9421);
        let _ = is_signed(&request, Scheme::Binance);
    }
}
