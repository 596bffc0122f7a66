//! Transit against the real server: every key type, rotation and rewrap,
//! `min_decryption_version`, batches, derived keys, data keys, signatures,
//! HMACs, tampering, deletion rules, scopes, and reach: tokens limited to
//! other environments or APIs find no key outside their reach.

#![allow(clippy::unwrap_used, clippy::expect_used)] // A panic in a test is a failed test.

mod support;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::TestApp;

async fn post(app: &TestApp, path: &str, body: Value) -> (StatusCode, Value) {
    app.call(Method::POST, path, Some(&app.root.clone()), Some(body))
        .await
}

fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

async fn encryption_rotation_rewrap_and_policy(app: TestApp) {
    for kind in ["aes256-gcm96", "chacha20-poly1305"] {
        let name = format!("orders-{kind}");
        let (code, body) = post(
            &app,
            &format!("/v1/transit/keys/{name}"),
            json!({"type": kind}),
        )
        .await;
        assert_eq!(code, StatusCode::NO_CONTENT, "{body}");
        let (code, sealed) = post(
            &app,
            &format!("/v1/transit/encrypt/{name}"),
            json!({"plaintext": b64(b"fill 42 BTC")}),
        )
        .await;
        assert_eq!(code, StatusCode::OK);
        let v1 = sealed["data"]["ciphertext"].as_str().unwrap().to_owned();
        assert!(v1.starts_with("kw:v1:"), "{v1}");
        let (_, opened) = post(
            &app,
            &format!("/v1/transit/decrypt/{name}"),
            json!({"ciphertext": v1}),
        )
        .await;
        assert_eq!(opened["data"]["plaintext"], b64(b"fill 42 BTC"));

        // Tampering and swapping are refused.
        let mut raw = STANDARD.decode(v1.trim_start_matches("kw:v1:")).unwrap();
        raw[15] ^= 1;
        let tampered = format!("kw:v1:{}", b64(&raw));
        let (code, _) = post(
            &app,
            &format!("/v1/transit/decrypt/{name}"),
            json!({"ciphertext": tampered}),
        )
        .await;
        assert_eq!(code, StatusCode::BAD_REQUEST);
        for junk in [
            "",
            "kw:v1:",
            "vault:v1:AAAA",
            "kw:v9:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        ] {
            let (code, _) = post(
                &app,
                &format!("/v1/transit/decrypt/{name}"),
                json!({"ciphertext": junk}),
            )
            .await;
            assert_eq!(code, StatusCode::BAD_REQUEST, "{junk}");
        }

        // Rotation: new data under v2, old data still opens, rewrap moves it.
        let (code, key) = post(&app, &format!("/v1/transit/keys/{name}/rotate"), json!({})).await;
        assert_eq!(code, StatusCode::OK);
        assert_eq!(key["data"]["latest_version"], 2);
        let (_, sealed) = post(
            &app,
            &format!("/v1/transit/encrypt/{name}"),
            json!({"plaintext": b64(b"v2 data")}),
        )
        .await;
        assert!(sealed["data"]["ciphertext"]
            .as_str()
            .unwrap()
            .starts_with("kw:v2:"));
        let (code, _) = post(
            &app,
            &format!("/v1/transit/decrypt/{name}"),
            json!({"ciphertext": v1}),
        )
        .await;
        assert_eq!(code, StatusCode::OK);
        let (_, rewrapped) = post(
            &app,
            &format!("/v1/transit/rewrap/{name}"),
            json!({"ciphertext": v1}),
        )
        .await;
        let moved = rewrapped["data"]["ciphertext"].as_str().unwrap().to_owned();
        assert!(moved.starts_with("kw:v2:"));

        // min_decryption_version refuses older ciphertexts.
        let (code, _) = post(
            &app,
            &format!("/v1/transit/keys/{name}/config"),
            json!({"min_decryption_version": 2}),
        )
        .await;
        assert_eq!(code, StatusCode::OK);
        let (code, body) = post(
            &app,
            &format!("/v1/transit/decrypt/{name}"),
            json!({"ciphertext": v1}),
        )
        .await;
        assert_eq!(code, StatusCode::BAD_REQUEST);
        assert!(body["errors"][0]
            .as_str()
            .unwrap()
            .contains("min_decryption_version"));
        let (_, opened) = post(
            &app,
            &format!("/v1/transit/decrypt/{name}"),
            json!({"ciphertext": moved}),
        )
        .await;
        assert_eq!(opened["data"]["plaintext"], b64(b"fill 42 BTC"));
        for bad in [
            json!({"min_decryption_version": 0}),
            json!({"min_decryption_version": 3}),
            json!({"min_encryption_version": 1}),
        ] {
            let (code, _) = post(
                &app,
                &format!("/v1/transit/keys/{name}/config"),
                bad.clone(),
            )
            .await;
            assert_eq!(code, StatusCode::BAD_REQUEST, "{bad}");
        }
    }

    // Batches report errors per item.
    let (_, batch) = post(
        &app,
        "/v1/transit/encrypt/orders-aes256-gcm96",
        json!({"batch_input": [
            {"plaintext": b64(b"one")}, {"plaintext": "not base64!"}, {"plaintext": b64(b"three")}
        ]}),
    )
    .await;
    let results = batch["data"]["batch_results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    assert!(results[1]["error"].is_string());
    let inputs: Vec<Value> = [&results[0], &results[2]]
        .iter()
        .map(|r| json!({"ciphertext": r["ciphertext"]}))
        .collect();
    let (_, opened) = post(
        &app,
        "/v1/transit/decrypt/orders-aes256-gcm96",
        json!({"batch_input": inputs}),
    )
    .await;
    let opened = opened["data"]["batch_results"].as_array().unwrap();
    assert_eq!(opened[0]["plaintext"], b64(b"one"));
    assert_eq!(opened[1]["plaintext"], b64(b"three"));

    // Derived keys need a context, and only that context opens.
    post(&app, "/v1/transit/keys/tenants", json!({"derived": true})).await;
    let (code, _) = post(
        &app,
        "/v1/transit/encrypt/tenants",
        json!({"plaintext": b64(b"x")}),
    )
    .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    let (_, sealed) = post(
        &app,
        "/v1/transit/encrypt/tenants",
        json!({"plaintext": b64(b"x"), "context": b64(b"acme")}),
    )
    .await;
    let ct = sealed["data"]["ciphertext"].clone();
    let (code, _) = post(
        &app,
        "/v1/transit/decrypt/tenants",
        json!({"ciphertext": ct, "context": b64(b"other")}),
    )
    .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    let (code, _) = post(
        &app,
        "/v1/transit/decrypt/tenants",
        json!({"ciphertext": ct, "context": b64(b"acme")}),
    )
    .await;
    assert_eq!(code, StatusCode::OK);

    // Data keys: the wrapped form opens to the plaintext form.
    let (_, data_key) = post(
        &app,
        "/v1/transit/datakey/plaintext/orders-aes256-gcm96",
        json!({}),
    )
    .await;
    let plain = data_key["data"]["plaintext"].as_str().unwrap().to_owned();
    assert_eq!(STANDARD.decode(&plain).unwrap().len(), 32);
    let (_, opened) = post(
        &app,
        "/v1/transit/decrypt/orders-aes256-gcm96",
        json!({"ciphertext": data_key["data"]["ciphertext"]}),
    )
    .await;
    assert_eq!(opened["data"]["plaintext"], plain);
    let (_, wrapped) = post(
        &app,
        "/v1/transit/datakey/wrapped/orders-aes256-gcm96",
        json!({"bits": 512}),
    )
    .await;
    assert!(wrapped["data"].get("plaintext").is_none());
    assert!(wrapped["data"]["ciphertext"].is_string());
}

async fn signatures_hmacs_random_and_key_rules(app: TestApp) {
    let message = b64(b"withdraw 5 ETH to 0xabc");
    for kind in ["ed25519", "ecdsa-p256", "ecdsa-secp256k1"] {
        let name = format!("signer-{kind}");
        post(
            &app,
            &format!("/v1/transit/keys/{name}"),
            json!({"type": kind}),
        )
        .await;
        let key = app
            .ok(Method::GET, &format!("/v1/transit/keys/{name}"), None)
            .await;
        assert_eq!(key["data"]["type"], kind);
        assert!(key["data"]["keys"]["1"]["public_key"].is_string());
        assert_eq!(key["data"]["supports_signing"], true);
        let (code, signed) = post(
            &app,
            &format!("/v1/transit/sign/{name}"),
            json!({"input": message}),
        )
        .await;
        assert_eq!(code, StatusCode::OK, "{signed}");
        let signature = signed["data"]["signature"].clone();
        let (_, verified) = post(
            &app,
            &format!("/v1/transit/verify/{name}"),
            json!({"input": message, "signature": signature}),
        )
        .await;
        assert_eq!(verified["data"]["valid"], true);
        let (_, verified) = post(
            &app,
            &format!("/v1/transit/verify/{name}"),
            json!({"input": b64(b"withdraw 500 ETH"), "signature": signature}),
        )
        .await;
        assert_eq!(verified["data"]["valid"], false);
        let (code, _) = post(
            &app,
            &format!("/v1/transit/encrypt/{name}"),
            json!({"plaintext": message}),
        )
        .await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "signing keys do not encrypt");
    }
    // Ethereum-style: sign a 32-byte hash the caller made, with a recovery id.
    let hash = b64(&[0x11u8; 32]);
    let (code, signed) = post(
        &app,
        "/v1/transit/sign/signer-ecdsa-secp256k1",
        json!({"input": hash, "prehashed": true, "marshaling_algorithm": "recoverable"}),
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    let sig = signed["data"]["signature"].as_str().unwrap();
    assert_eq!(
        STANDARD
            .decode(sig.trim_start_matches("kw:v1:"))
            .unwrap()
            .len(),
        65
    );
    let (code, _) = post(
        &app,
        "/v1/transit/sign/signer-ecdsa-secp256k1",
        json!({"input": b64(b"short"), "prehashed": true}),
    )
    .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);

    // HMAC, checked by verify.
    post(&app, "/v1/transit/keys/webhooks", json!({"type": "hmac"})).await;
    let (_, mac) = post(
        &app,
        "/v1/transit/hmac/webhooks/sha2-512",
        json!({"input": message}),
    )
    .await;
    let mac = mac["data"]["hmac"].clone();
    assert!(mac.as_str().unwrap().starts_with("kw:v1:"));
    let (_, verified) = post(
        &app,
        "/v1/transit/verify/webhooks",
        json!({"input": message, "hmac": mac, "algorithm": "sha2-512"}),
    )
    .await;
    assert_eq!(verified["data"]["valid"], true);
    let (_, verified) = post(
        &app,
        "/v1/transit/verify/webhooks",
        json!({"input": b64(b"other"), "hmac": mac, "algorithm": "sha2-512"}),
    )
    .await;
    assert_eq!(verified["data"]["valid"], false);

    let (_, random) = post(&app, "/v1/transit/random/48", json!({"format": "hex"})).await;
    assert_eq!(random["data"]["random_bytes"].as_str().unwrap().len(), 96);
    let (code, _) = post(&app, "/v1/transit/random", json!({"bytes": 0})).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);

    // Key rules: names, types, no export, deletion only when allowed.
    for (path, body) in [
        ("/v1/transit/keys/bad name", json!({})),
        ("/v1/transit/keys/x", json!({"type": "rsa-4096"})),
        ("/v1/transit/keys/y", json!({"exportable": true})),
        (
            "/v1/transit/keys/z",
            json!({"type": "ed25519", "derived": true}),
        ),
    ] {
        let (code, _) = post(&app, path, body).await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{path}");
    }
    let (code, _) = post(&app, "/v1/transit/keys/webhooks", json!({"type": "hmac"})).await;
    assert_eq!(code, StatusCode::CONFLICT);
    let (code, _) = app
        .call(
            Method::DELETE,
            "/v1/transit/keys/webhooks",
            Some(&app.root),
            None,
        )
        .await;
    assert_eq!(code, StatusCode::CONFLICT);
    post(
        &app,
        "/v1/transit/keys/webhooks/config",
        json!({"deletion_allowed": true}),
    )
    .await;
    let (code, _) = app
        .call(
            Method::DELETE,
            "/v1/transit/keys/webhooks",
            Some(&app.root),
            None,
        )
        .await;
    assert_eq!(code, StatusCode::NO_CONTENT);
    let (code, _) = post(&app, "/v1/transit/hmac/webhooks", json!({"input": message})).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    let (code, listed) = app
        .call(
            Method::GET,
            "/v1/transit/keys?list=true",
            Some(&app.root),
            None,
        )
        .await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(listed["data"]["keys"].as_array().unwrap().len(), 3);

    // Scopes: transit:use cannot manage keys; other tokens cannot use them.
    let user = app
        .token(json!({"name": "u", "scopes": ["transit:use"]}))
        .await;
    let (code, _) = app
        .call(
            Method::POST,
            "/v1/transit/keys/new",
            Some(&user),
            Some(json!({})),
        )
        .await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    let (code, _) = app
        .call(
            Method::POST,
            "/v1/transit/sign/signer-ed25519",
            Some(&user),
            Some(json!({"input": message})),
        )
        .await;
    assert_eq!(code, StatusCode::OK);
    let keys_only = app
        .token(json!({"name": "k", "scopes": ["keys:read"]}))
        .await;
    let (code, _) = app
        .call(
            Method::POST,
            "/v1/transit/sign/signer-ed25519",
            Some(&keys_only),
            Some(json!({"input": message})),
        )
        .await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    // No key material in what a key read shows.
    let key = app
        .ok(Method::GET, "/v1/transit/keys/signer-ed25519", None)
        .await;
    let text = key.to_string();
    assert!(!text.contains("material") && !text.contains("private"));
}

/// What a request as `token` answers: status and body.
async fn as_token(
    app: &TestApp,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    app.call(method, path, Some(token), body).await
}

/// Every operation on one key name, with a body each accepts.
fn operations(name: &str, ciphertext: &str) -> Vec<(Method, String, Option<Value>)> {
    let input = b64(b"order 7");
    vec![
        (Method::GET, format!("/v1/transit/keys/{name}"), None),
        (
            Method::POST,
            format!("/v1/transit/decrypt/{name}"),
            Some(json!({"ciphertext": ciphertext})),
        ),
        (
            Method::POST,
            format!("/v1/transit/encrypt/{name}"),
            Some(json!({"plaintext": input})),
        ),
        (
            Method::POST,
            format!("/v1/transit/rewrap/{name}"),
            Some(json!({"ciphertext": ciphertext})),
        ),
        (
            Method::POST,
            format!("/v1/transit/datakey/wrapped/{name}"),
            Some(json!({})),
        ),
        (
            Method::POST,
            format!("/v1/transit/hmac/{name}"),
            Some(json!({"input": input})),
        ),
        (
            Method::POST,
            format!("/v1/transit/verify/{name}"),
            Some(json!({"input": input, "hmac": "kw:v1:AAAA"})),
        ),
        (
            Method::POST,
            format!("/v1/transit/sign/{name}"),
            Some(json!({"input": input})),
        ),
        (
            Method::POST,
            format!("/v1/transit/keys/{name}/rotate"),
            Some(json!({})),
        ),
        (
            Method::POST,
            format!("/v1/transit/keys/{name}/config"),
            Some(json!({"deletion_allowed": true})),
        ),
        (Method::DELETE, format!("/v1/transit/keys/{name}"), None),
    ]
}

/// Asserts that every operation on `name` answers `token` exactly as it
/// answers for a key that does not exist.
async fn looks_absent(app: &TestApp, token: &str, name: &str, ciphertext: &str) {
    let absent = operations("no-such-key", ciphertext);
    for ((method, path, body), (_, absent_path, absent_body)) in
        operations(name, ciphertext).into_iter().zip(absent)
    {
        let got = as_token(app, token, method.clone(), &path, body).await;
        let expected = as_token(app, token, method, &absent_path, absent_body).await;
        assert_eq!(got.0, StatusCode::NOT_FOUND, "{path}: {}", got.1);
        assert_eq!(got, expected, "{path} answers unlike an absent key");
    }
}

async fn test_limited_token_cannot_use_or_manage_live_transit_keys(app: TestApp) {
    let (code, body) = post(&app, "/v1/transit/keys/payouts", json!({})).await;
    assert_eq!(code, StatusCode::NO_CONTENT, "{body}");
    let (_, sealed) = post(
        &app,
        "/v1/transit/encrypt/payouts",
        json!({"plaintext": b64(b"live customer data")}),
    )
    .await;
    let ciphertext = sealed["data"]["ciphertext"].as_str().unwrap().to_owned();
    let key = app.ok(Method::GET, "/v1/transit/keys/payouts", None).await;
    assert_eq!(key["data"]["environment"], "live", "{key}");

    let tester = app
        .token(
            json!({"name": "t", "scopes": ["transit:use", "transit:write"],
                      "environments": ["test"]}),
        )
        .await;
    looks_absent(&app, &tester, "payouts", &ciphertext).await;
    // Nothing listed either: the listing of a token that reaches no key is
    // the empty listing's answer.
    let (code, listed) = as_token(
        &app,
        &tester,
        Method::GET,
        "/v1/transit/keys?list=true",
        None,
    )
    .await;
    assert_eq!(code, StatusCode::NOT_FOUND, "{listed}");

    // It cannot make a key in live (the default) and can in test.
    let (code, body) = as_token(
        &app,
        &tester,
        Method::POST,
        "/v1/transit/keys/sandbox",
        Some(json!({})),
    )
    .await;
    assert_eq!(code, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "FORBIDDEN");
    let (code, body) = as_token(
        &app,
        &tester,
        Method::POST,
        "/v1/transit/keys/sandbox",
        Some(json!({"environment": "test"})),
    )
    .await;
    assert_eq!(code, StatusCode::NO_CONTENT, "{body}");
    let (_, listed) = as_token(
        &app,
        &tester,
        Method::GET,
        "/v1/transit/keys?list=true",
        None,
    )
    .await;
    assert_eq!(listed["data"]["keys"], json!(["sandbox"]));
    let listed = app
        .ok(Method::GET, "/v1/transit/keys?list=true", None)
        .await;
    assert_eq!(listed["data"]["keys"], json!(["payouts", "sandbox"]));

    // The live key is untouched and still opens its ciphertext for root.
    let (code, opened) = post(
        &app,
        "/v1/transit/decrypt/payouts",
        json!({"ciphertext": ciphertext}),
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(opened["data"]["plaintext"], b64(b"live customer data"));
    let key = app.ok(Method::GET, "/v1/transit/keys/payouts", None).await;
    assert_eq!(key["data"]["latest_version"], 1);
}

async fn other_api_token_cannot_reach_an_api_bound_transit_key(app: TestApp) {
    let prices = app.create_api("prices", &["live", "test"]).await;
    let orders = app.create_api("orders", &["live", "test"]).await;
    let (code, body) = post(
        &app,
        "/v1/transit/keys/orders-signing",
        json!({"type": "ed25519", "api_ids": [orders]}),
    )
    .await;
    assert_eq!(code, StatusCode::NO_CONTENT, "{body}");
    let key = app
        .ok(Method::GET, "/v1/transit/keys/orders-signing", None)
        .await;
    assert_eq!(key["data"]["api_ids"], json!([orders]));
    let (_, signed) = post(
        &app,
        "/v1/transit/sign/orders-signing",
        json!({"input": b64(b"x")}),
    )
    .await;
    let text = signed["data"]["signature"].as_str().unwrap().to_owned();

    let scopes = json!(["transit:use", "transit:write"]);
    let prices_token = app
        .token(json!({"name": "p", "scopes": scopes, "api_ids": [prices]}))
        .await;
    looks_absent(&app, &prices_token, "orders-signing", &text).await;
    let orders_token = app
        .token(json!({"name": "o", "scopes": scopes, "api_ids": [orders]}))
        .await;
    let (code, body) = as_token(
        &app,
        &orders_token,
        Method::POST,
        "/v1/transit/sign/orders-signing",
        Some(json!({"input": b64(b"order 7")})),
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{body}");

    // A key made by a token limited to APIs belongs to them; naming an API
    // beyond its reach is refused without saying whether it exists.
    let (code, _) = as_token(
        &app,
        &prices_token,
        Method::POST,
        "/v1/transit/keys/prices-data",
        Some(json!({})),
    )
    .await;
    assert_eq!(code, StatusCode::NO_CONTENT);
    let key = app
        .ok(Method::GET, "/v1/transit/keys/prices-data", None)
        .await;
    assert_eq!(key["data"]["api_ids"], json!([prices]));
    let (code, _) = as_token(
        &app,
        &orders_token,
        Method::GET,
        "/v1/transit/keys/prices-data",
        None,
    )
    .await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    let (code, refused) = as_token(
        &app,
        &prices_token,
        Method::POST,
        "/v1/transit/keys/sneaky",
        Some(json!({"api_ids": [orders]})),
    )
    .await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{refused}");
    let (code, _) = as_token(
        &app,
        &prices_token,
        Method::GET,
        "/v1/transit/keys/sneaky",
        None,
    )
    .await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    let (_, listed) = as_token(
        &app,
        &prices_token,
        Method::GET,
        "/v1/transit/keys?list=true",
        None,
    )
    .await;
    assert_eq!(listed["data"]["keys"], json!(["prices-data"]));
}

on_both_backends!(
    encryption_rotation_rewrap_and_policy,
    signatures_hmacs_random_and_key_rules,
    test_limited_token_cannot_use_or_manage_live_transit_keys,
    other_api_token_cannot_reach_an_api_bound_transit_key,
);
