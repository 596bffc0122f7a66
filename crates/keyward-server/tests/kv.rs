//! Secrets in Vault's KV v2 shape against the real server: versions,
//! check-and-set, soft delete, undelete, destroy, version limits, listing,
//! environment walls between mounts, auditing without values, and
//! ciphertexts that do not survive being moved to another secret.

#![allow(clippy::unwrap_used, clippy::expect_used)] // A panic in a test is a failed test.

mod support;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::TestApp;

/// A KV call with Vault's token header, as Vault clients send it.
async fn vault(
    app: &TestApp,
    method: &str,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = app
        .client
        .request(
            Method::from_bytes(method.as_bytes()).unwrap(),
            format!("{}{}", app.base, path),
        )
        .header("X-Vault-Token", token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn kv_versions_cas_and_deletion(app: TestApp) {
    let root = app.root.clone();
    let (code, mounts) = vault(&app, "GET", "/v1/sys/mounts", &root, None).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(mounts["data"]["secret/"]["options"]["environment"], "live");

    let path = "/v1/secret/data/exchanges/binance";
    let (code, written) = vault(
        &app,
        "POST",
        path,
        &root,
        Some(json!({"data": {"api_key": "bn-key-1", "api_secret": "planted-secret-v1"}})),
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{written}");
    assert_eq!(written["data"]["version"], 1);
    let (code, read) = vault(&app, "GET", path, &root, None).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(read["data"]["data"]["api_secret"], "planted-secret-v1");
    assert_eq!(read["data"]["metadata"]["version"], 1);
    assert_eq!(read["data"]["metadata"]["deletion_time"], "");

    // Check-and-set: the right version wins, a stale one is refused.
    let v2 = json!({"options": {"cas": 1}, "data": {"api_secret": "planted-secret-v2"}});
    let (code, written) = vault(&app, "POST", path, &root, Some(v2.clone())).await;
    assert_eq!(
        (code, written["data"]["version"].clone()),
        (StatusCode::OK, json!(2))
    );
    let (code, body) = vault(&app, "POST", path, &root, Some(v2)).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert!(body["errors"][0]
        .as_str()
        .unwrap()
        .contains("check-and-set"));
    let (code, _) = vault(
        &app,
        "POST",
        path,
        &root,
        Some(json!({"options": {"cas": 0}, "data": {"x": "y"}})),
    )
    .await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "cas 0 means only if absent");

    // Older versions stay readable by number.
    let (_, read) = vault(&app, "GET", &format!("{path}?version=1"), &root, None).await;
    assert_eq!(read["data"]["data"]["api_secret"], "planted-secret-v1");

    // A patch merges into the latest version.
    let (code, _) = vault(
        &app,
        "PATCH",
        path,
        &root,
        Some(json!({"data": {"note": "rotated"}})),
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    let (_, read) = vault(&app, "GET", path, &root, None).await;
    assert_eq!(read["data"]["metadata"]["version"], 3);
    assert_eq!(read["data"]["data"]["note"], "rotated");
    assert_eq!(read["data"]["data"]["api_secret"], "planted-secret-v2");

    // Soft delete, undelete, destroy.
    let (code, _) = vault(&app, "DELETE", path, &root, None).await;
    assert_eq!(code, StatusCode::NO_CONTENT);
    let (code, read) = vault(&app, "GET", path, &root, None).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert_ne!(read["data"]["metadata"]["deletion_time"], "");
    assert!(read["data"]["data"].is_null());
    let undelete = json!({"versions": [3]});
    let (code, _) = vault(
        &app,
        "POST",
        "/v1/secret/undelete/exchanges/binance",
        &root,
        Some(undelete.clone()),
    )
    .await;
    assert_eq!(code, StatusCode::NO_CONTENT);
    let (code, _) = vault(&app, "GET", path, &root, None).await;
    assert_eq!(code, StatusCode::OK);
    let (code, _) = vault(
        &app,
        "POST",
        "/v1/secret/destroy/exchanges/binance",
        &root,
        Some(json!({"versions": [1]})),
    )
    .await;
    assert_eq!(code, StatusCode::NO_CONTENT);
    let (code, read) = vault(&app, "GET", &format!("{path}?version=1"), &root, None).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert_eq!(read["data"]["metadata"]["destroyed"], true);
    vault(
        &app,
        "POST",
        "/v1/secret/undelete/exchanges/binance",
        &root,
        Some(json!({"versions": [1]})),
    )
    .await;
    let (code, _) = vault(&app, "GET", &format!("{path}?version=1"), &root, None).await;
    assert_eq!(code, StatusCode::NOT_FOUND, "destroyed stays destroyed");

    // Metadata: versions, and cas_required on one secret.
    let meta_path = "/v1/secret/metadata/exchanges/binance";
    let (_, meta) = vault(&app, "GET", meta_path, &root, None).await;
    assert_eq!(meta["data"]["current_version"], 3);
    assert_eq!(meta["data"]["versions"]["1"]["destroyed"], true);
    let (code, _) = vault(
        &app,
        "POST",
        meta_path,
        &root,
        Some(json!({"cas_required": true, "max_versions": 2})),
    )
    .await;
    assert_eq!(code, StatusCode::NO_CONTENT);
    let (code, body) = vault(&app, "POST", path, &root, Some(json!({"data": {"a": "b"}}))).await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{body}");
    let (code, _) = vault(
        &app,
        "POST",
        path,
        &root,
        Some(json!({"options": {"cas": 3}, "data": {"a": "b"}})),
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    // Only the newest two versions are kept.
    let (_, meta) = vault(&app, "GET", meta_path, &root, None).await;
    assert_eq!(meta["data"]["oldest_version"], 3);
    assert!(meta["data"]["versions"].get("2").is_none());
    let (code, _) = vault(&app, "GET", &format!("{path}?version=2"), &root, None).await;
    assert_eq!(code, StatusCode::NOT_FOUND);

    // Listing, by Vault's LIST method and by ?list=true.
    vault(
        &app,
        "POST",
        "/v1/secret/data/exchanges/okx",
        &root,
        Some(json!({"data": {"k": "v"}})),
    )
    .await;
    vault(
        &app,
        "POST",
        "/v1/secret/data/db/main",
        &root,
        Some(json!({"data": {"k": "v"}})),
    )
    .await;
    let (code, listed) = vault(&app, "LIST", "/v1/secret/metadata/", &root, None).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(listed["data"]["keys"], json!(["db/", "exchanges/"]));
    let (_, listed) = vault(
        &app,
        "GET",
        "/v1/secret/metadata/exchanges?list=true",
        &root,
        None,
    )
    .await;
    assert_eq!(listed["data"]["keys"], json!(["binance", "okx"]));
    let (code, _) = vault(&app, "LIST", "/v1/secret/metadata/nothing", &root, None).await;
    assert_eq!(code, StatusCode::NOT_FOUND);

    // Deleting the metadata removes every version.
    let (code, _) = vault(
        &app,
        "DELETE",
        "/v1/secret/metadata/exchanges/okx",
        &root,
        None,
    )
    .await;
    assert_eq!(code, StatusCode::NO_CONTENT);
    let (code, _) = vault(&app, "GET", "/v1/secret/data/exchanges/okx", &root, None).await;
    assert_eq!(code, StatusCode::NOT_FOUND);

    // Bad input is a 400, never a 500.
    for (method, bad_path, body) in [
        ("POST", "/v1/secret/data/x", Some(json!({"nodata": 1}))),
        ("POST", "/v1/secret/data/x", Some(json!("text"))),
        ("POST", "/v1/secret/data/a//b", Some(json!({"data": {}}))),
        ("GET", "/v1/secret/data/x?version=abc", None),
        (
            "POST",
            "/v1/secret/destroy/x",
            Some(json!({"versions": []})),
        ),
        (
            "POST",
            "/v1/secret/metadata/x",
            Some(json!({"custom_metadata": {"a": 1}})),
        ),
    ] {
        let (code, body) = vault(&app, method, bad_path, &root, body).await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{method} {bad_path}: {body}");
        assert!(body["errors"].is_array());
    }

    // Audited with path and version, never the value.
    let audit = app.ok(Method::GET, "/v1/audit?limit=1000", None).await;
    let events = audit["events"].as_array().unwrap();
    let reads = events
        .iter()
        .filter(|e| e["action"] == "secret.read" && e["target"] == "secret/exchanges/binance")
        .count();
    assert_eq!(reads, 4, "one audit event per successful read");
    assert!(events
        .iter()
        .any(|e| e["action"] == "secret.write" && e["details"]["version"] == 2));
    let text = audit.to_string();
    assert!(!text.contains("planted-secret"));
}

async fn environments_wall_off_mounts_and_scopes_are_checked(app: TestApp) {
    let root = app.root.clone();
    let (code, body) = vault(
        &app,
        "POST",
        "/v1/sys/mounts/secret-test",
        &root,
        Some(json!({"type": "kv", "options": {"version": "2", "environment": "test"}})),
    )
    .await;
    assert_eq!(code, StatusCode::NO_CONTENT, "{body}");
    let (code, _) = vault(
        &app,
        "POST",
        "/v1/sys/mounts/secret-test",
        &root,
        Some(json!({"type": "kv", "options": {"version": "2"}})),
    )
    .await;
    assert_eq!(code, StatusCode::CONFLICT);
    for bad in [
        json!({"type": "kv", "options": {"version": "1"}}),
        json!({"type": "transit"}),
    ] {
        let (code, _) = vault(&app, "POST", "/v1/sys/mounts/other", &root, Some(bad)).await;
        assert_eq!(code, StatusCode::BAD_REQUEST);
    }
    let (code, _) = vault(
        &app,
        "POST",
        "/v1/sys/mounts/sys",
        &root,
        Some(json!({"type": "kv-v2"})),
    )
    .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);

    vault(
        &app,
        "POST",
        "/v1/secret/data/live-only",
        &root,
        Some(json!({"data": {"v": "live"}})),
    )
    .await;
    let test_token = app
        .token(json!({"name": "ci", "scopes": ["secrets:read", "secrets:write"], "environments": ["test"]}))
        .await;
    let (code, _) = vault(
        &app,
        "POST",
        "/v1/secret-test/data/ci",
        &test_token,
        Some(json!({"data": {"v": "t"}})),
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    let (code, read) = vault(&app, "GET", "/v1/secret-test/data/ci", &test_token, None).await;
    assert_eq!(
        (code, read["data"]["data"]["v"].clone()),
        (StatusCode::OK, json!("t"))
    );
    // A test token never reads a live secret: the live mount looks absent.
    let (code, _) = vault(&app, "GET", "/v1/secret/data/live-only", &test_token, None).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    let (code, _) = vault(
        &app,
        "POST",
        "/v1/secret/data/live-only",
        &test_token,
        Some(json!({"data": {}})),
    )
    .await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    let (_, mounts) = vault(&app, "GET", "/v1/sys/mounts", &test_token, None).await;
    assert!(mounts["data"].get("secret/").is_none());
    assert!(mounts["data"].get("secret-test/").is_some());

    // Scopes: read-only tokens cannot write; no token, no secret.
    let reader = app
        .token(json!({"name": "r", "scopes": ["secrets:read"]}))
        .await;
    let (code, _) = vault(
        &app,
        "POST",
        "/v1/secret/data/live-only",
        &reader,
        Some(json!({"data": {}})),
    )
    .await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    let (code, _) = vault(&app, "GET", "/v1/secret/data/live-only", &reader, None).await;
    assert_eq!(code, StatusCode::OK);
    let keys_only = app
        .token(json!({"name": "k", "scopes": ["keys:read"]}))
        .await;
    let (code, _) = vault(&app, "GET", "/v1/secret/data/live-only", &keys_only, None).await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    let (code, _) = app
        .call(Method::GET, "/v1/secret/data/live-only", None, None)
        .await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    // Bearer works as well as X-Vault-Token.
    let (code, _) = app
        .call(Method::GET, "/v1/secret/data/live-only", Some(&root), None)
        .await;
    assert_eq!(code, StatusCode::OK);
    // Unknown mounts and routes are plain 404s.
    let (code, _) = vault(&app, "GET", "/v1/nowhere/data/x", &root, None).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
}

async fn a_value_moved_to_another_secret_does_not_decrypt(app: TestApp) {
    let root = app.root.clone();
    vault(
        &app,
        "POST",
        "/v1/secret/data/a",
        &root,
        Some(json!({"data": {"v": "planted-a"}})),
    )
    .await;
    let store = app.inner_store();
    let stolen = store.secret_versions("secret", "a").await.unwrap()[0]
        .value
        .clone()
        .unwrap();
    // Written straight into the store as the first version of `b`.
    let write = keyward_store::SecretWrite {
        mount: "secret".into(),
        path: "b".into(),
        version: 1,
        replaces: 0,
        value: stolen,
        keep: 10,
        at: time::OffsetDateTime::now_utc(),
    };
    let event = keyward_core::AuditEvent {
        id: keyward_core::EventId::generate(time::OffsetDateTime::now_utc()).unwrap(),
        at: time::OffsetDateTime::now_utc(),
        actor: None,
        action: "test.swap".into(),
        target: "secret/b".into(),
        details: json!({}),
    };
    store.write_secret(&write, &event).await.unwrap();
    let (code, body) = vault(&app, "GET", "/v1/secret/data/b", &root, None).await;
    assert_eq!(code, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(body["error"]["code"], "TAMPERED");
    assert!(!body.to_string().contains("planted-a"));
    let (code, _) = vault(&app, "GET", "/v1/secret/data/a", &root, None).await;
    assert_eq!(code, StatusCode::OK);
}

on_both_backends!(
    kv_versions_cas_and_deletion,
    environments_wall_off_mounts_and_scopes_are_checked,
    a_value_moved_to_another_secret_does_not_decrypt,
);
