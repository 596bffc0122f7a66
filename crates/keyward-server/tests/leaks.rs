//! Leak reports against the real server: a reported key is revoked at once
//! with where it was found in the audit log; the reporter learns nothing of
//! which keys existed; GitHub's signed reports are checked before anything
//! is done, and a bad signature changes nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)] // A panic in a test is a failed test.

mod support;

use base64::Engine as _;
use keyward_core::{Environment, PlaintextKey, Prefix};
use keyward_server::settings::{LeakSettings, PartnerKeySettings};
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::EncodePublicKey as _;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::{Backend, TestApp};

on_both_backends!(reported_keys_are_revoked_and_the_answer_tells_nothing);
on_both_backends_raw!(github_reports_are_acted_on_only_when_signed_by_a_trusted_key);

async fn issue(app: &TestApp, api: &str) -> String {
    let issued = app
        .create_key(json!({"api_id": api, "environment": "live", "owner": "acme"}))
        .await;
    issued["key"].as_str().unwrap().to_owned()
}

async fn reported_keys_are_revoked_and_the_answer_tells_nothing(app: TestApp) {
    let api = app.create_api("tm", &["live", "test"]).await;
    let (leaked, other) = (issue(&app, &api).await, issue(&app, &api).await);
    let unknown = PlaintextKey::generate(&Prefix::parse("tm").unwrap(), Environment::Live).unwrap();
    let reporter = app
        .token(json!({"name": "ci scanner", "scopes": ["leaks:report"]}))
        .await;

    let report = |leaks: Value| json!({ "leaks": leaks });
    let (status, body) = app
        .call(
            Method::POST,
            "/v1/leaks",
            None,
            Some(report(json!([{"key": leaked}]))),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let verifier = app
        .token(json!({"name": "verify only", "scopes": ["keys:verify"]}))
        .await;
    let (status, _) = app
        .call(
            Method::POST,
            "/v1/leaks",
            Some(&verifier),
            Some(report(json!([{"key": leaked}]))),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(app.verify_code(json!({"key": leaked})).await, "VALID");

    let (status, receipt) = app
        .call(
            Method::POST,
            "/v1/leaks",
            Some(&reporter),
            Some(report(json!([
                {"key": leaked, "location": "deploy/prod.env:3", "commit": "4f2a9c1", "source": "keyward scan"},
                {"key": unknown.expose(), "location": "deploy/prod.env:4"},
                {"key": "tm_live_not-a-key"},
            ]))),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{receipt}");
    assert_eq!(receipt["received"], 3);
    assert_eq!(receipt["malformed"], 1);
    assert_eq!(app.verify_code(json!({"key": leaked})).await, "REVOKED");
    assert_eq!(app.verify_code(json!({"key": other})).await, "VALID");

    // A real key and an unknown one get the same answer.
    let answer = |key: String| {
        let app = &app;
        let reporter = reporter.clone();
        async move {
            app.call(
                Method::POST,
                "/v1/leaks",
                Some(&reporter),
                Some(json!({"leaks": [{"key": key}]})),
            )
            .await
        }
    };
    let for_real = answer(other.clone()).await;
    let unknown_again =
        PlaintextKey::generate(&Prefix::parse("tm").unwrap(), Environment::Live).unwrap();
    let for_unknown = answer(unknown_again.expose().to_owned()).await;
    assert_eq!(for_real, for_unknown);
    assert_eq!(app.verify_code(json!({"key": other})).await, "REVOKED");

    // The revocation is audited with where the key was found, not the key.
    let key_id = app.ok(Method::GET, "/v1/keys?owner=acme", None).await["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["start"].as_str().is_some_and(|s| leaked.starts_with(s)))
        .map(|k| k["id"].as_str().unwrap().to_owned())
        .unwrap();
    let key = app
        .ok(Method::GET, &format!("/v1/keys/{key_id}"), None)
        .await;
    assert_eq!(key["revoke_reason"], "leaked", "{key}");
    let trail = app
        .ok(Method::GET, &format!("/v1/audit?target={key_id}"), None)
        .await;
    let revoke = trail["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "key.revoke")
        .unwrap()
        .clone();
    assert_eq!(revoke["details"]["reason"], "leaked");
    assert_eq!(revoke["details"]["found"]["location"], "deploy/prod.env:3");
    assert_eq!(revoke["details"]["found"]["commit"], "4f2a9c1");
    let everything = app.ok(Method::GET, "/v1/audit?limit=1000", None).await;
    assert!(!everything.to_string().contains(&leaked[8..]));

    // Too many leaks, or not JSON: typed errors.
    let many: Vec<Value> = (0..1001).map(|_| json!({"key": "x"})).collect();
    let (status, body) = app
        .call(
            Method::POST,
            "/v1/leaks",
            Some(&reporter),
            Some(report(json!(many))),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "INVALID_REQUEST");
    let (status, body) = app
        .call(
            Method::POST,
            "/v1/leaks",
            Some(&reporter),
            Some(json!({"leak": [{"key": leaked}]})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(!body.to_string().contains(&leaked[8..]));
}

fn encode(signature: Signature) -> String {
    base64::engine::general_purpose::STANDARD.encode(signature.to_der())
}

async fn post_github(app: &TestApp, body: &str, headers: &[(&str, String)]) -> (StatusCode, Value) {
    let mut request = app
        .client
        .post(format!("{}/v1/leaks", app.base))
        .header("content-type", "application/json")
        .body(body.to_owned());
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn github_reports_are_acted_on_only_when_signed_by_a_trusted_key(backend: Backend) {
    let github = SigningKey::from_slice(&[0x42; 32]).unwrap();
    let pem = github
        .verifying_key()
        .to_public_key_pem(p256::pkcs8::LineEnding::LF)
        .unwrap();
    let app = support::spawn_with_leaks(
        backend,
        LeakSettings {
            partner_keys: vec![PartnerKeySettings {
                id: "github-key-1".into(),
                pem,
            }],
        },
    )
    .await;
    let api = app.create_api("tm", &["live"]).await;
    let leaked = issue(&app, &api).await;
    let unknown = PlaintextKey::generate(&Prefix::parse("tm").unwrap(), Environment::Live).unwrap();
    let body = json!([
        {"token": leaked, "type": "keyward_api_key", "url": "https://github.com/acme/bot/blob/abc/config.py", "source": "content"},
        {"token": unknown.expose(), "type": "keyward_api_key", "url": "https://gist.github.com/x", "source": "gist"},
    ])
    .to_string();
    let id = |v: &str| ("Github-Public-Key-Identifier", v.to_owned());
    let sig = |v: String| ("Github-Public-Key-Signature", v);

    let impostor = SigningKey::from_slice(&[0x43; 32]).unwrap();
    let refusals = [
        vec![id("github-key-1")],
        vec![sig(encode(github.sign(body.as_bytes())))],
        vec![
            id("github-key-2"),
            sig(encode(github.sign(body.as_bytes()))),
        ],
        vec![
            id("github-key-1"),
            sig(encode(impostor.sign(body.as_bytes()))),
        ],
        vec![id("github-key-1"), sig(encode(github.sign(b"[]")))],
        vec![id("github-key-1"), sig("bm90IGRlcg==".into())],
    ];
    for headers in &refusals {
        let (status, answer) = post_github(&app, &body, headers).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{headers:?}: {answer}");
        assert_eq!(answer["error"]["code"], "SIGNATURE_INVALID");
    }
    assert_eq!(app.verify_code(json!({"key": leaked})).await, "VALID");

    let (status, labels) = post_github(
        &app,
        &body,
        &[
            id("github-key-1"),
            sig(encode(github.sign(body.as_bytes()))),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{labels}");
    assert_eq!(labels[0]["label"], "true_positive");
    assert_eq!(labels[1]["label"], "false_positive");
    assert_eq!(labels[0]["token_type"], "keyward_api_key");
    assert_eq!(labels[0]["token_hash"].as_str().unwrap().len(), 64);
    assert_eq!(app.verify_code(json!({"key": leaked})).await, "REVOKED");
}
