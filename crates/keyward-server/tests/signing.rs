//! Signed requests and owners' second factors, on both backends: keys that
//! must sign, checked by `POST /v1/keys/verify` and by the gateway, in
//! RFC 9421's scheme and the exchange ("binance") one; windows and their
//! edges, replays on one node and on a second node sharing the store, the
//! wrong algorithm, Ed25519 keys that leave no secret on the server, a
//! sealed node, API signing rules, and TOTP codes for critical scopes.
//! `signing_clients` (below) drives independent clients from PyPI.

#![allow(clippy::unwrap_used, clippy::expect_used)] // A panic in a test is a failed test.

mod support;

use std::sync::{Arc, Mutex};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use support::{Backend, TestApp};

on_both_backends_raw!(
    an_hmac_key_verifies_signed_requests_once,
    signing_times_are_held_to_the_keys_window,
    the_exchange_style_verifies_and_refuses_replays,
    an_ed25519_key_keeps_no_secret_and_refuses_other_algorithms,
    a_replay_is_refused_at_a_second_node,
    api_rules_say_which_requests_must_be_signed,
    critical_scopes_need_the_owners_code_once,
    a_sealed_node_cannot_check_hmac_signatures,
    the_gateway_checks_signatures_before_the_upstream,
    rotation_gives_an_hmac_key_a_new_secret,
);

/// An Ed25519 key pair for the customer: only the public half reaches the
/// server.
const CUSTOMER_SEED: [u8; 32] = [7; 32];

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn now_s() -> i64 {
    support::unix_now() as i64
}

fn now_ms() -> i64 {
    (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()) as i64
}

/// How a test signs: the shared secret's text, or the customer's key.
enum Signer<'a> {
    Hmac(&'a str),
    Ed25519(&'a ed25519_dalek::SigningKey),
}

impl Signer<'_> {
    fn alg(&self) -> &'static str {
        match self {
            Signer::Hmac(_) => "hmac-sha256",
            Signer::Ed25519(_) => "ed25519",
        }
    }

    fn sign(&self, base: &[u8]) -> Vec<u8> {
        match self {
            Signer::Hmac(secret) => {
                let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
                mac.update(base);
                mac.finalize().into_bytes().to_vec()
            }
            Signer::Ed25519(key) => {
                use ed25519_dalek::Signer as _;
                key.sign(base).to_bytes().to_vec()
            }
        }
    }
}

/// A request signed as RFC 9421 says, by hand: the components a Keyward
/// verifier requires and nothing clever.
struct Signed {
    method: String,
    authority: String,
    path: String,
    query: Option<String>,
    body: Vec<u8>,
    headers: Vec<(String, String)>,
}

fn rfc9421(
    signer: &Signer<'_>,
    key_id: &str,
    method: &str,
    target: &str,
    body: &[u8],
    created: i64,
    nonce: &str,
) -> Signed {
    rfc9421_on(
        "api.example.com",
        signer,
        key_id,
        method,
        target,
        body,
        created,
        nonce,
    )
}

/// [`rfc9421`] for a request to `authority`.
#[allow(clippy::too_many_arguments)]
fn rfc9421_on(
    authority: &str,
    signer: &Signer<'_>,
    key_id: &str,
    method: &str,
    target: &str,
    body: &[u8],
    created: i64,
    nonce: &str,
) -> Signed {
    let authority = authority.to_owned();
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
        None => (target.to_owned(), None),
    };
    let digest = format!("sha-256=:{}:", b64(&Sha256::digest(body)));
    let mut components = vec!["\"@method\"", "\"@authority\"", "\"@path\"", "\"@query\""];
    let mut base = format!(
        "\"@method\": {method}\n\"@authority\": {authority}\n\"@path\": {path}\n\"@query\": ?{}\n",
        query.as_deref().unwrap_or("")
    );
    if !body.is_empty() {
        components.push("\"content-digest\"");
        base.push_str(&format!("\"content-digest\": {digest}\n"));
    }
    let params = format!(
        "({});created={created};keyid=\"{key_id}\";nonce=\"{nonce}\";alg=\"{}\"",
        components.join(" "),
        signer.alg()
    );
    base.push_str(&format!("\"@signature-params\": {params}"));
    let signature = signer.sign(base.as_bytes());
    let mut headers = vec![("Host".to_owned(), authority.clone())];
    if !body.is_empty() {
        headers.push(("Content-Digest".to_owned(), digest));
        headers.push(("Content-Type".to_owned(), "application/json".to_owned()));
    }
    headers.push(("Signature-Input".to_owned(), format!("sig1={params}")));
    headers.push((
        "Signature".to_owned(),
        format!("sig1=:{}:", b64(&signature)),
    ));
    Signed {
        method: method.to_owned(),
        authority,
        path,
        query,
        body: body.to_vec(),
        headers,
    }
}

impl Signed {
    /// The `request` a provider's server passes to verify.
    fn parts(&self) -> Value {
        json!({
            "method": self.method,
            "authority": self.authority,
            "path": self.path,
            "query": self.query,
            "headers": self.headers.iter().map(|(n, v)| json!([n, v])).collect::<Vec<_>>(),
            "body": String::from_utf8(self.body.clone()).unwrap(),
        })
    }
}

/// An exchange-style signed query: `params` with `timestamp` (and
/// `recvWindow`), signed as Binance documents.
fn binance_query(secret: &str, params: &str, timestamp: i64, window: Option<u64>) -> String {
    let mut query = format!("{params}&timestamp={timestamp}");
    if let Some(window) = window {
        query.push_str(&format!("&recvWindow={window}"));
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(query.as_bytes());
    let signature: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{query}&signature={signature}")
}

async fn exchange_api(app: &TestApp, prefix: &str, extra: Value) -> String {
    let mut body = json!({"name": "Exchange", "prefix": prefix, "environments": ["live"],
        "critical_scopes": ["withdraw"]});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let api = app.ok(Method::POST, "/v1/apis", Some(body)).await;
    api["id"].as_str().unwrap().to_owned()
}

/// Issues a key; returns the answer (key, id, signing secret).
async fn issue(app: &TestApp, api: &str, extra: Value) -> Value {
    let mut body = json!({"api_id": api, "environment": "live", "owner": "acme",
        "scopes": ["trade", "read", "withdraw"]});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let (status, answer) = app
        .call(Method::POST, "/v1/keys", Some(&app.root), Some(body))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    answer
}

fn s(v: &Value, field: &str) -> String {
    v[field].as_str().unwrap_or_default().to_owned()
}

async fn verify(app: &TestApp, key: &str, scopes: &[&str], request: Option<Value>) -> Value {
    let mut body = json!({"key": key, "scopes": scopes});
    if let Some(request) = request {
        body["request"] = request;
    }
    app.verify(body).await
}

async fn an_hmac_key_verifies_signed_requests_once(backend: Backend) {
    let app = support::spawn(backend).await;
    let api = exchange_api(&app, "ex", json!({})).await;
    let issued = issue(&app, &api, json!({"signing": {"algorithm": "hmac-sha256"}})).await;
    let (key, id, secret) = (
        s(&issued, "key"),
        s(&issued, "id"),
        s(&issued, "signing_secret"),
    );
    assert_eq!(secret.len(), 64, "{issued}");
    assert_eq!(issued["signing"]["algorithm"], "hmac-sha256");
    assert_eq!(issued["signing"]["window_ms"], 5000);
    // The secret is shown once: reading the key shows its algorithm only.
    let read = app.ok(Method::GET, &format!("/v1/keys/{id}"), None).await;
    assert!(!read.to_string().contains(&secret), "{read}");

    let signer = Signer::Hmac(&secret);
    let body = br#"{"symbol":"BTCUSDT","side":"BUY","qty":"1"}"#;
    let signed = rfc9421(
        &signer,
        &id,
        "POST",
        "/v1/orders?test=1",
        body,
        now_s(),
        "n-1",
    );
    let answer = verify(&app, &key, &["trade"], Some(signed.parts())).await;
    assert_eq!(answer["code"], "VALID", "{answer}");
    // The same request again, inside its window.
    let answer = verify(&app, &key, &["trade"], Some(signed.parts())).await;
    assert_eq!(answer["code"], "REPLAYED", "{answer}");
    assert!(
        answer["reason"].as_str().unwrap().contains("nonce"),
        "{answer}"
    );

    // No signature at all: the key alone proves nothing.
    let answer = verify(&app, &key, &["trade"], None).await;
    assert_eq!(answer["code"], "SIGNATURE_REQUIRED", "{answer}");
    assert_eq!(answer["valid"], false);

    // Any change after signing fails: method, path, query, covered header,
    // body, and a signature made with another secret.
    let fresh = |n: &str| rfc9421(&signer, &id, "POST", "/v1/orders?test=1", body, now_s(), n);
    let mut tampered = Vec::new();
    let mut t = fresh("n-2");
    t.method = "PUT".into();
    tampered.push(("method", t));
    let mut t = fresh("n-3");
    t.path = "/v1/withdrawals".into();
    tampered.push(("path", t));
    let mut t = fresh("n-4");
    t.query = Some("test=2".into());
    tampered.push(("query", t));
    let mut t = fresh("n-5");
    t.authority = "evil.example.com".into();
    tampered.push(("authority", t));
    let mut t = fresh("n-6");
    t.body = br#"{"symbol":"BTCUSDT","side":"BUY","qty":"100"}"#.to_vec();
    tampered.push(("body", t));
    let mut t = fresh("n-7");
    for (name, value) in &mut t.headers {
        if name == "Content-Digest" {
            *value = format!("sha-256=:{}:", b64(&Sha256::digest(b"other")));
        }
    }
    tampered.push(("content-digest", t));
    let other = "0".repeat(64);
    tampered.push((
        "secret",
        rfc9421(
            &Signer::Hmac(&other),
            &id,
            "POST",
            "/v1/orders?test=1",
            body,
            now_s(),
            "n-8",
        ),
    ));
    for (what, request) in tampered {
        let answer = verify(&app, &key, &["trade"], Some(request.parts())).await;
        assert_eq!(answer["code"], "SIGNATURE_INVALID", "{what}: {answer}");
        let reason = answer["reason"].as_str().unwrap();
        assert!(
            !reason.contains(&secret) && !reason.contains("evil"),
            "{reason}"
        );
    }
    // A signature that names another key is not this key's.
    let elsewhere = rfc9421(
        &signer,
        "key_0000000000000000000000",
        "POST",
        "/v1/orders",
        b"",
        now_s(),
        "n-9",
    );
    let answer = verify(&app, &key, &["trade"], Some(elsewhere.parts())).await;
    assert_eq!(answer["code"], "SIGNATURE_INVALID", "{answer}");
    // Refusals consumed nothing: a fresh request still verifies.
    let answer = verify(&app, &key, &["trade"], Some(fresh("n-10").parts())).await;
    assert_eq!(answer["code"], "VALID", "{answer}");
}

async fn signing_times_are_held_to_the_keys_window(backend: Backend) {
    let app = support::spawn(backend).await;
    let api = exchange_api(&app, "ew", json!({})).await;
    let issued = issue(
        &app,
        &api,
        json!({"signing": {"algorithm": "hmac-sha256", "window_ms": 10000}}),
    )
    .await;
    let (key, id, secret) = (
        s(&issued, "key"),
        s(&issued, "id"),
        s(&issued, "signing_secret"),
    );
    let signer = Signer::Hmac(&secret);
    let at = |created: i64, nonce: &str| {
        rfc9421(&signer, &id, "GET", "/v1/prices", b"", created, nonce).parts()
    };
    // RFC 9421 times are seconds: 8 s old is inside 10 s, 12 s is not;
    // 8 s ahead is inside, 12 s ahead is not.
    for (offset, nonce, code) in [
        (-8, "w-1", "VALID"),
        (-12, "w-2", "SIGNATURE_EXPIRED"),
        (8, "w-3", "VALID"),
        (12, "w-4", "SIGNATURE_EXPIRED"),
    ] {
        let answer = verify(&app, &key, &["read"], Some(at(now_s() + offset, nonce))).await;
        assert_eq!(answer["code"], code, "{offset} s: {answer}");
    }
    // The exchange style counts milliseconds, and a client's recvWindow
    // narrows the key's window but never widens it.
    let exchange = |query: String| {
        json!({"method": "GET", "path": "/api/v3/account", "query": query,
        "headers": [["Host", "api.example.com"]], "scheme": "binance"})
    };
    for (offset, window, code) in [
        (-9_500, None, "VALID"),
        (-10_500, None, "SIGNATURE_EXPIRED"),
        (-3_000, Some(2_000), "SIGNATURE_EXPIRED"),
        (-1_000, Some(2_000), "VALID"),
        (-12_000, Some(60_000), "SIGNATURE_EXPIRED"),
    ] {
        let query = binance_query(&secret, "omitZeroBalances=true", now_ms() + offset, window);
        let answer = verify(&app, &key, &["read"], Some(exchange(query))).await;
        assert_eq!(
            answer["code"], code,
            "{offset} ms, window {window:?}: {answer}"
        );
    }
}

async fn the_exchange_style_verifies_and_refuses_replays(backend: Backend) {
    let app = support::spawn(backend).await;
    let api = exchange_api(&app, "eb", json!({})).await;
    let issued = issue(&app, &api, json!({"signing": {"algorithm": "hmac-sha256"}})).await;
    let (key, secret) = (s(&issued, "key"), s(&issued, "signing_secret"));
    let body = binance_query(
        &secret,
        "symbol=BTCUSDT&side=BUY&type=LIMIT&quantity=1&price=100",
        now_ms(),
        Some(5000),
    );
    let request = json!({"method": "POST", "path": "/api/v3/order", "body": body,
        "headers": [["Host", "api.example.com"], ["Content-Type", "application/x-www-form-urlencoded"]]});
    let answer = verify(&app, &key, &["trade"], Some(request.clone())).await;
    assert_eq!(answer["code"], "VALID", "{answer}");
    let answer = verify(&app, &key, &["trade"], Some(request)).await;
    assert_eq!(answer["code"], "REPLAYED", "{answer}");
    // Another quantity under the old signature.
    let forged = body.replace("quantity=1", "quantity=9");
    let request = json!({"method": "POST", "path": "/api/v3/order", "body": forged,
        "headers": [["Host", "api.example.com"]]});
    let answer = verify(&app, &key, &["trade"], Some(request)).await;
    assert_eq!(answer["code"], "SIGNATURE_INVALID", "{answer}");
}

async fn an_ed25519_key_keeps_no_secret_and_refuses_other_algorithms(backend: Backend) {
    let app = support::spawn(backend).await;
    let api = exchange_api(&app, "ed", json!({})).await;
    let customer = ed25519_dalek::SigningKey::from_bytes(&CUSTOMER_SEED);
    let public = b64(customer.verifying_key().as_bytes());
    let issued = issue(
        &app,
        &api,
        json!({"signing": {"algorithm": "ed25519", "public_key": public}}),
    )
    .await;
    let (key, id) = (s(&issued, "key"), s(&issued, "id"));
    assert!(issued.get("signing_secret").is_none(), "{issued}");
    assert_eq!(issued["signing"]["public_key"], public.as_str());
    // The server holds the public key and nothing secret for it.
    let stored = app
        .inner_store()
        .get_key(&keyward_core::KeyId::parse(&id).unwrap())
        .await
        .unwrap()
        .unwrap();
    let signing = stored.signing.unwrap();
    assert_eq!(signing.sealed_secret, None);
    assert_eq!(
        signing.public_key,
        Some(*customer.verifying_key().as_bytes())
    );

    let signer = Signer::Ed25519(&customer);
    let signed = rfc9421(&signer, &id, "POST", "/v1/orders", b"{}", now_s(), "e-1");
    let answer = verify(&app, &key, &["trade"], Some(signed.parts())).await;
    assert_eq!(answer["code"], "VALID", "{answer}");
    // A MAC in place of the customer's signature: refused by its alg, and
    // by the key's algorithm when it says none.
    let forged = rfc9421(
        &Signer::Hmac(&public),
        &id,
        "POST",
        "/v1/orders",
        b"{}",
        now_s(),
        "e-2",
    );
    let answer = verify(&app, &key, &["trade"], Some(forged.parts())).await;
    assert_eq!(answer["code"], "SIGNATURE_INVALID", "{answer}");
    // Another customer's key does not sign for this one.
    let other = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
    let forged = rfc9421(
        &Signer::Ed25519(&other),
        &id,
        "POST",
        "/v1/orders",
        b"{}",
        now_s(),
        "e-3",
    );
    let answer = verify(&app, &key, &["trade"], Some(forged.parts())).await;
    assert_eq!(answer["code"], "SIGNATURE_INVALID", "{answer}");

    // Public keys are checked when registered: PEM works, a short or weak
    // key is refused.
    let mut der = vec![
        0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
    ];
    der.extend_from_slice(customer.verifying_key().as_bytes());
    let pem = format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        b64(&der)
    );
    issue(
        &app,
        &api,
        json!({"signing": {"algorithm": "ed25519", "public_key": pem}}),
    )
    .await;
    for bad in [json!("AAAA"), json!(b64(&[0u8; 32])), json!(null)] {
        let (status, answer) = app
            .call(
                Method::POST,
                "/v1/keys",
                Some(&app.root),
                Some(
                    json!({"api_id": api, "environment": "live", "owner": "acme",
                    "signing": {"algorithm": "ed25519", "public_key": bad}}),
                ),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        assert_eq!(answer["error"]["code"], "INVALID_REQUEST");
    }
}

async fn a_replay_is_refused_at_a_second_node(backend: Backend) {
    let verify_settings = keyward_server::settings::VerifySettings {
        replay: Some(keyward_server::settings::ReplayScope::Database),
        ..Default::default()
    };
    let first = support::spawn_with(backend, verify_settings.clone()).await;
    let api = exchange_api(&first, "er", json!({})).await;
    let issued = issue(
        &first,
        &api,
        json!({"signing": {"algorithm": "hmac-sha256"}}),
    )
    .await;
    let (key, id, secret) = (
        s(&issued, "key"),
        s(&issued, "id"),
        s(&issued, "signing_secret"),
    );
    // The second node shares the store and the file seal's master key.
    let dir = tempfile::tempdir().unwrap();
    let first_dir = first.backend_dir.as_ref().unwrap().path();
    std::fs::copy(first_dir.join("master.key"), dir.path().join("master.key")).unwrap();
    let second = support::spawn_on(
        first.inner_store(),
        first.db_file.clone(),
        dir,
        verify_settings,
        Some(first.root.clone()),
    )
    .await;
    let signer = Signer::Hmac(&secret);
    for n in 0..5 {
        let signed = rfc9421(
            &signer,
            &id,
            "POST",
            "/v1/orders",
            b"{}",
            now_s(),
            &format!("r-{n}"),
        );
        let (at, again) = if n % 2 == 0 {
            (&first, &second)
        } else {
            (&second, &first)
        };
        let answer = verify(at, &key, &["trade"], Some(signed.parts())).await;
        assert_eq!(answer["code"], "VALID", "{answer}");
        let answer = verify(again, &key, &["trade"], Some(signed.parts())).await;
        assert_eq!(answer["code"], "REPLAYED", "at the other node: {answer}");
    }
}

async fn api_rules_say_which_requests_must_be_signed(backend: Backend) {
    let app = support::spawn(backend).await;
    let some = exchange_api(&app, "es", json!({"signing": {"scopes": ["trade"]}})).await;
    let view = app.ok(Method::GET, &format!("/v1/apis/{some}"), None).await;
    assert_eq!(view["signing"]["scopes"], json!(["trade"]));
    let plain = issue(&app, &some, json!({})).await;
    let key = s(&plain, "key");
    let answer = verify(&app, &key, &["read"], None).await;
    assert_eq!(answer["code"], "VALID", "{answer}");
    let answer = verify(&app, &key, &["trade"], None).await;
    assert_eq!(answer["code"], "SIGNATURE_REQUIRED", "{answer}");
    assert!(
        answer["reason"]
            .as_str()
            .unwrap()
            .contains("no signing key"),
        "{answer}"
    );

    let all = exchange_api(&app, "ea", json!({"signing": {"all": true}})).await;
    let (status, answer) = app
        .call(
            Method::POST,
            "/v1/keys",
            Some(&app.root),
            Some(json!({"api_id": all, "environment": "live", "owner": "acme"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    let signed = issue(&app, &all, json!({"signing": {"algorithm": "hmac-sha256"}})).await;
    let (status, answer) = app
        .call(
            Method::PATCH,
            &format!("/v1/keys/{}", s(&signed, "id")),
            Some(&app.root),
            Some(json!({"signing": null})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");

    // A rule added later reaches keys already cached, on every verify.
    app.ok(
        Method::PATCH,
        &format!("/v1/apis/{some}"),
        Some(json!({"signing": {"scopes": ["read"]}})),
    )
    .await;
    let answer = verify(&app, &key, &["read"], None).await;
    assert_eq!(answer["code"], "SIGNATURE_REQUIRED", "{answer}");
    let answer = verify(&app, &key, &["trade"], None).await;
    assert_eq!(answer["code"], "VALID", "{answer}");
}

async fn critical_scopes_need_the_owners_code_once(backend: Backend) {
    let app = support::spawn(backend).await;
    let api = exchange_api(&app, "em", json!({})).await;
    let issued = issue(&app, &api, json!({})).await;
    let key = s(&issued, "key");
    let with_otp = |otp: Option<String>| {
        let mut body = json!({"key": key, "scopes": ["withdraw"]});
        if let Some(otp) = otp {
            body["otp"] = json!(otp);
        }
        body
    };
    // No second factor enrolled: a critical scope is refused, others pass.
    let answer = app.verify(with_otp(Some("123456".into()))).await;
    assert_eq!(answer["code"], "MFA_REQUIRED", "{answer}");
    assert!(
        answer["reason"].as_str().unwrap().contains("enrolled"),
        "{answer}"
    );
    let answer = verify(&app, &key, &["trade"], None).await;
    assert_eq!(answer["code"], "VALID", "{answer}");

    let enrolment = app.ok(Method::POST, "/v1/owners/acme/totp", None).await;
    let phone = support::Authenticator::from_enrolment(&enrolment);
    let step = support::unix_now() / keyward_crypto::totp::STEP_SECONDS;
    let (status, answer) = app
        .call(
            Method::POST,
            "/v1/owners/acme/totp/confirm",
            Some(&app.root),
            Some(json!({"otp": "000000"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    let (status, answer) = app
        .call(
            Method::POST,
            "/v1/owners/acme/totp/confirm",
            Some(&app.root),
            Some(json!({"otp": phone.code_at(step - 1)})),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{answer}");

    let answer = app.verify(with_otp(None)).await;
    assert_eq!(answer["code"], "MFA_REQUIRED", "{answer}");
    // The step that confirmed is used; the current one works once.
    let answer = app.verify(with_otp(Some(phone.code_at(step - 1)))).await;
    assert_eq!(answer["code"], "MFA_REQUIRED", "{answer}");
    let answer = app.verify(with_otp(Some(phone.code_at(step)))).await;
    assert_eq!(answer["code"], "VALID", "{answer}");
    let answer = app.verify(with_otp(Some(phone.code_at(step)))).await;
    assert_eq!(answer["code"], "MFA_REQUIRED", "{answer}");
    assert!(
        answer["reason"].as_str().unwrap().contains("used"),
        "{answer}"
    );
    // Two steps of drift are too many; one is accepted.
    let answer = app.verify(with_otp(Some(phone.code_at(step + 2)))).await;
    assert_eq!(answer["code"], "MFA_REQUIRED", "{answer}");
    let answer = app.verify(with_otp(Some(phone.code_at(step + 1)))).await;
    assert_eq!(answer["code"], "VALID", "{answer}");
    let answer = app.verify(with_otp(Some("12345x".into()))).await;
    assert_eq!(answer["code"], "MFA_REQUIRED", "{answer}");

    // Removing the factor refuses the scope again.
    let (status, _) = app
        .call(
            Method::DELETE,
            "/v1/owners/acme/totp",
            Some(&app.root),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let answer = app.verify(with_otp(Some(phone.code_at(step + 1)))).await;
    assert_eq!(answer["code"], "MFA_REQUIRED", "{answer}");
    // Every refusal was audited nowhere but counted; the enrolment was
    // audited.
    let audit = app.ok(Method::GET, "/v1/audit?limit=100", None).await;
    let actions: Vec<&str> = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    for action in [
        "owner.totp_enroll",
        "owner.totp_confirm",
        "owner.totp_remove",
    ] {
        assert!(actions.contains(&action), "{action}: {actions:?}");
    }
}

async fn a_sealed_node_cannot_check_hmac_signatures(backend: Backend) {
    let app = support::spawn(backend).await;
    let api = exchange_api(&app, "ez", json!({})).await;
    let hmac = issue(&app, &api, json!({"signing": {"algorithm": "hmac-sha256"}})).await;
    let customer = ed25519_dalek::SigningKey::from_bytes(&CUSTOMER_SEED);
    let ed = issue(
        &app,
        &api,
        json!({"signing": {"algorithm": "ed25519", "public_key": b64(customer.verifying_key().as_bytes())}}),
    )
    .await;
    let secret = s(&hmac, "signing_secret");
    let signed = rfc9421(
        &Signer::Hmac(&secret),
        &s(&hmac, "id"),
        "GET",
        "/v1/prices",
        b"",
        now_s(),
        "z-1",
    );
    let answer = verify(&app, &s(&hmac, "key"), &["read"], Some(signed.parts())).await;
    assert_eq!(answer["code"], "VALID", "{answer}");

    app.ok(Method::POST, "/v1/sys/seal", Some(json!({}))).await;
    let signed = rfc9421(
        &Signer::Hmac(&secret),
        &s(&hmac, "id"),
        "GET",
        "/v1/prices",
        b"",
        now_s(),
        "z-2",
    );
    let (status, answer) = app
        .call(
            Method::POST,
            "/v1/keys/verify",
            Some(&app.root),
            Some(json!({"key": s(&hmac, "key"), "scopes": ["read"], "request": signed.parts()})),
        )
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
    assert_eq!(answer["error"]["code"], "SEALED");
    assert!(!answer.to_string().contains(&secret));
    // Ed25519 keys need nothing sealed; unsigned keys neither.
    let signed = rfc9421(
        &Signer::Ed25519(&customer),
        &s(&ed, "id"),
        "GET",
        "/v1/prices",
        b"",
        now_s(),
        "z-3",
    );
    let answer = verify(&app, &s(&ed, "key"), &["read"], Some(signed.parts())).await;
    assert_eq!(answer["code"], "VALID", "{answer}");
    // No HMAC key is issued while sealed.
    let (status, answer) = app
        .call(
            Method::POST,
            "/v1/keys",
            Some(&app.root),
            Some(
                json!({"api_id": api, "environment": "live", "owner": "acme",
                "signing": {"algorithm": "hmac-sha256"}}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
}

async fn rotation_gives_an_hmac_key_a_new_secret(backend: Backend) {
    let app = support::spawn(backend).await;
    let api = exchange_api(&app, "eo", json!({})).await;
    let issued = issue(
        &app,
        &api,
        json!({"signing": {"algorithm": "hmac-sha256", "window_ms": 7000}}),
    )
    .await;
    let rotated = app
        .ok(
            Method::POST,
            &format!("/v1/keys/{}/rotate", s(&issued, "id")),
            Some(json!({"grace_period_seconds": 60})),
        )
        .await;
    let (key, id, secret) = (
        s(&rotated, "key"),
        s(&rotated, "id"),
        s(&rotated, "signing_secret"),
    );
    assert_eq!(secret.len(), 64, "{rotated}");
    assert_ne!(secret, s(&issued, "signing_secret"));
    assert_eq!(rotated["signing"]["window_ms"], 7000);
    let signed = rfc9421(
        &Signer::Hmac(&secret),
        &id,
        "GET",
        "/v1/prices",
        b"",
        now_s(),
        "o-1",
    );
    let answer = verify(&app, &key, &["read"], Some(signed.parts())).await;
    assert_eq!(answer["code"], "VALID", "{answer}");
    // The old secret does not sign for the successor.
    let old = s(&issued, "signing_secret");
    let signed = rfc9421(
        &Signer::Hmac(&old),
        &id,
        "GET",
        "/v1/prices",
        b"",
        now_s(),
        "o-2",
    );
    let answer = verify(&app, &key, &["read"], Some(signed.parts())).await;
    assert_eq!(answer["code"], "SIGNATURE_INVALID", "{answer}");
}

/// A stand-in exchange: answers every request 200 with a JSON body, and
/// records what reached it (marked ` +otp` when a one-time code header
/// did, which must never happen).
pub async fn upstream() -> (String, Arc<Mutex<Vec<(String, String)>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let app = axum::Router::new().fallback(
        move |method: axum::http::Method,
              uri: axum::http::Uri,
              headers: axum::http::HeaderMap,
              body: axum::body::Bytes| {
            let log = Arc::clone(&log);
            let otp = headers.keys().any(|name| name.as_str().contains("otp"));
            async move {
                log.lock().unwrap().push((
                    format!("{method} {uri}{}", if otp { " +otp" } else { "" }),
                    String::from_utf8_lossy(&body).into_owned(),
                ));
                axum::Json(json!({"orderId": 1, "status": "FILLED", "balances": []}))
            }
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), seen)
}

/// A gateway in front of `upstream` with a route of each scheme.
pub fn gateway_config(upstream: &str) -> keyward_gateway::GatewayConfig {
    serde_json::from_value(json!({
        "listen": "127.0.0.1:0",
        "upstream": upstream,
        "environment": "live",
        "route": [
            {"path": "/api/v3/order", "scopes": ["trade"], "signature": "binance"},
            {"path": "/api/v3", "scopes": ["read"], "signature": "binance"},
            {"method": "POST", "path": "/v1/orders", "scopes": ["trade"], "signature": "rfc9421"},
            {"method": "POST", "path": "/v1/withdrawals", "scopes": ["withdraw"], "signature": "rfc9421"},
            {"path": "/v1/any", "scopes": ["trade"], "signature": "rfc9421"},
            {"path": "/v1/prices", "scopes": ["read"]},
        ],
    }))
    .unwrap()
}

async fn the_gateway_checks_signatures_before_the_upstream(backend: Backend) {
    let (up, seen) = upstream().await;
    let app = support::spawn_with_gateway(backend, gateway_config(&up)).await;
    let gw = app.gateway.clone().unwrap();
    let api = exchange_api(&app, "eg", json!({})).await;
    let issued = issue(&app, &api, json!({"signing": {"algorithm": "hmac-sha256"}})).await;
    let (key, id, secret) = (
        s(&issued, "key"),
        s(&issued, "id"),
        s(&issued, "signing_secret"),
    );
    let client = reqwest::Client::new();
    let authority = gw.trim_start_matches("http://").to_owned();
    let send = |signed: &Signed| {
        let mut request = client
            .request(
                Method::from_bytes(signed.method.as_bytes()).unwrap(),
                format!(
                    "{gw}{}{}",
                    signed.path,
                    signed
                        .query
                        .as_ref()
                        .map(|q| format!("?{q}"))
                        .unwrap_or_default()
                ),
            )
            .header("Authorization", format!("Bearer {key}"))
            .body(signed.body.clone());
        for (name, value) in &signed.headers {
            if name != "Host" {
                request = request.header(name, value);
            }
        }
        request.send()
    };
    // Signed for the gateway's own address, as a client addresses it.
    let sign = |target: &str, body: &[u8], nonce: &str| {
        let signer = Signer::Hmac(&secret);
        rfc9421_on(
            &authority,
            &signer,
            &id,
            "POST",
            target,
            body,
            now_s(),
            nonce,
        )
    };
    let signed = sign("/v1/orders?symbol=BTCUSDT", br#"{"qty":"1"}"#, "g-1");
    let r = send(&signed).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    assert_eq!(seen.lock().unwrap().len(), 1);
    // The same request again never reaches the upstream.
    let r = send(&signed).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "REPLAYED", "{body}");
    // Neither does one with a body changed after signing.
    let mut changed = sign("/v1/orders", br#"{"qty":"1"}"#, "g-2");
    changed.body = br#"{"qty":"9"}"#.to_vec();
    let r = send(&changed).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "SIGNATURE_INVALID", "{body}");
    // Unsigned, on a signed route or not: the key must sign everywhere.
    for path in ["/v1/orders", "/v1/prices"] {
        let r = client
            .post(format!("{gw}{path}"))
            .header("Authorization", format!("Bearer {key}"))
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{path}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(
            body["error"]["code"], "SIGNATURE_REQUIRED",
            "{path}: {body}"
        );
    }
    // A critical scope needs the owner's code in X-Keyward-OTP, which never
    // reaches the upstream.
    let enrolment = app.ok(Method::POST, "/v1/owners/acme/totp", None).await;
    let phone = support::Authenticator::from_enrolment(&enrolment);
    let step = support::unix_now() / keyward_crypto::totp::STEP_SECONDS;
    app.ok(
        Method::POST,
        "/v1/owners/acme/totp/confirm",
        Some(json!({"otp": phone.code_at(step - 1)})),
    )
    .await;
    let withdrawal = sign("/v1/withdrawals", br#"{"amount":"1"}"#, "g-3");
    let r = send(&withdrawal).await.unwrap();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "MFA_REQUIRED", "{body}");
    let withdrawal = sign("/v1/withdrawals", br#"{"amount":"1"}"#, "g-4");
    let mut request = client
        .post(format!("{gw}/v1/withdrawals"))
        .header("Authorization", format!("Bearer {key}"))
        .header("X-Keyward-OTP", phone.code_at(step))
        .body(withdrawal.body.clone());
    for (name, value) in &withdrawal.headers {
        if name != "Host" {
            request = request.header(name, value);
        }
    }
    let r = request.send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    assert_eq!(seen.lock().unwrap().len(), 2);
    assert!(
        seen.lock()
            .unwrap()
            .iter()
            .all(|(line, _)| !line.ends_with("+otp")),
        "{:?}",
        seen.lock().unwrap()
    );
    // A chunked body on a signed route cannot be checked before it is
    // relayed: refused.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut raw = tokio::net::TcpStream::connect(&authority).await.unwrap();
    let head = format!(
        "POST /v1/orders HTTP/1.1\r\nHost: {authority}\r\nAuthorization: Bearer {key}\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n2\r\n{{}}\r\n0\r\n\r\n"
    );
    raw.write_all(head.as_bytes()).await.unwrap();
    let mut answer = String::new();
    raw.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 411"), "{answer}");
    assert!(answer.contains("LENGTH_REQUIRED"), "{answer}");
    assert_eq!(seen.lock().unwrap().len(), 2);
}

/// Independent clients from PyPI against the gateway: http-message-signatures
/// (RFC 9421) and python-binance, unmodified. Needs a Python with both,
/// named by `KEYWARD_TEST_SIGNING_PYTHON`; `.ci/run` makes one.
mod clients {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs KEYWARD_TEST_SIGNING_PYTHON: a Python with http-message-signatures"]
    async fn an_independent_rfc_9421_client_signs_for_the_gateway() {
        run_script("rfc9421_client.py").await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs KEYWARD_TEST_SIGNING_PYTHON: a Python with python-binance"]
    async fn python_binance_places_signed_orders_through_the_gateway() {
        run_script("binance_client.py").await;
    }

    async fn run_script(name: &str) {
        let python = std::env::var("KEYWARD_TEST_SIGNING_PYTHON")
            .expect("KEYWARD_TEST_SIGNING_PYTHON must name a Python with the signing clients");
        let (up, seen) = upstream().await;
        let app = support::spawn_with_gateway(Backend::Sqlite, gateway_config(&up)).await;
        let api = exchange_api(&app, "py", json!({})).await;
        let hmac = issue(&app, &api, json!({"signing": {"algorithm": "hmac-sha256"}})).await;
        let customer = ed25519_dalek::SigningKey::from_bytes(&CUSTOMER_SEED);
        let public = b64(customer.verifying_key().as_bytes());
        let ed = issue(
            &app,
            &api,
            json!({"signing": {"algorithm": "ed25519", "public_key": public}}),
        )
        .await;
        let seed: String = CUSTOMER_SEED.iter().map(|b| format!("{b:02x}")).collect();
        let script = format!("{}/tests/signing/{name}", env!("CARGO_MANIFEST_DIR"));
        let output = tokio::process::Command::new(python)
            .arg(&script)
            .env("GATEWAY", app.gateway.clone().unwrap())
            .env("KEY", s(&hmac, "key"))
            .env("KEY_ID", s(&hmac, "id"))
            .env("SECRET", s(&hmac, "signing_secret"))
            .env("ED_KEY", s(&ed, "key"))
            .env("ED_KEY_ID", s(&ed, "id"))
            .env("ED_SEED", seed)
            .output()
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{stdout}\n{stderr}");
        assert!(stdout.contains("checks passed"), "{stdout}");
        // Only the admitted requests reached the upstream.
        let reached = seen.lock().unwrap().len();
        assert!(reached >= 2, "{reached}");
        println!("{stdout}");
        println!("{reached} requests reached the upstream");
    }
}

/// Two nodes sharing Redis (`[redis] url`) and a SQLite store, each
/// remembering in its own memory and Redis, so only Redis can
/// tell the second node what the first saw. Needs `KEYWARD_TEST_REDIS_URL`.
mod redis {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs Redis: set KEYWARD_TEST_REDIS_URL, pass --ignored"]
    async fn a_replay_is_refused_at_a_second_node_through_redis() {
        let url = std::env::var("KEYWARD_TEST_REDIS_URL")
            .expect("KEYWARD_TEST_REDIS_URL must name the Redis to test against");
        let settings = || keyward_server::Settings {
            redis: Some(keyward_server::settings::RedisSettings { url: url.clone() }),
            // Memory alone would refuse nothing the other node saw.
            verify: keyward_server::settings::VerifySettings {
                replay: Some(keyward_server::settings::ReplayScope::Memory),
                ..Default::default()
            },
            ..Default::default()
        };
        let dir = tempfile::tempdir().unwrap();
        let (inner, db_file) = support::fresh_store(Backend::Sqlite, dir.path()).await;
        let first = support::start_settings(inner, db_file, dir, None, settings()).await;
        let api = exchange_api(&first, "rd", json!({})).await;
        let issued = issue(
            &first,
            &api,
            json!({"signing": {"algorithm": "hmac-sha256"}}),
        )
        .await;
        let (key, id, secret) = (
            s(&issued, "key"),
            s(&issued, "id"),
            s(&issued, "signing_secret"),
        );
        let dir = tempfile::tempdir().unwrap();
        let first_dir = first.backend_dir.as_ref().unwrap().path();
        std::fs::copy(first_dir.join("master.key"), dir.path().join("master.key")).unwrap();
        let second = support::start_settings(
            first.inner_store(),
            first.db_file.clone(),
            dir,
            Some(first.root.clone()),
            settings(),
        )
        .await;
        let signer = Signer::Hmac(&secret);
        // Nonces of this run only: Redis outlives the test's servers.
        let run = now_ms();
        for n in 0..5 {
            let nonce = format!("redis-{run}-{n}");
            let signed = rfc9421(&signer, &id, "POST", "/v1/orders", b"{}", now_s(), &nonce);
            let (at, again) = if n % 2 == 0 {
                (&first, &second)
            } else {
                (&second, &first)
            };
            let answer = verify(at, &key, &["trade"], Some(signed.parts())).await;
            assert_eq!(answer["code"], "VALID", "{answer}");
            let answer = verify(again, &key, &["trade"], Some(signed.parts())).await;
            assert_eq!(answer["code"], "REPLAYED", "at the other node: {answer}");
        }
        // The entry lives as long as the window, in milliseconds.
        let client = ::redis::Client::open(url.as_str()).unwrap();
        let mut connection = client.get_multiplexed_async_connection().await.unwrap();
        let keys: Vec<String> = ::redis::cmd("KEYS")
            .arg(format!("kw:seen:{id}:*"))
            .query_async(&mut connection)
            .await
            .unwrap();
        assert_eq!(keys.len(), 5, "{keys:?}");
        let ttl: i64 = ::redis::cmd("PTTL")
            .arg(&keys[0])
            .query_async(&mut connection)
            .await
            .unwrap();
        assert!((1..=6_001).contains(&ttl), "{ttl}");
    }
}
