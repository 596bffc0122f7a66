//! What Vault clients and Vault-aware load balancers ask of any Vault:
//! `auth/token/lookup-self` shows the presented admin token in Vault's shape
//! without ever echoing it, and refuses every unusable token with Vault's
//! 403; `sys/health` answers with Vault's fields, status codes and query
//! parameters, for unsealed, sealed and uninitialised nodes.

#![allow(clippy::unwrap_used, clippy::expect_used)] // A panic in a test is a failed test.

mod support;

use keyward_service::seal::{SealSettings, SealType};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::{fresh_store, spawn_sealed, Backend, TestApp};

on_both_backends!(
    lookup_self_shows_the_token_in_vaults_shape_and_never_the_token,
    lookup_self_refuses_every_unusable_token_with_vaults_403,
    sys_health_answers_an_unsealed_node_as_vault_does,
);

async fn lookup(app: &TestApp, header: &str, value: &str) -> (StatusCode, String) {
    let response = app
        .client
        .get(format!("{}/v1/auth/token/lookup-self", app.base))
        .header(header, value)
        .send()
        .await
        .unwrap();
    (response.status(), response.text().await.unwrap())
}

async fn lookup_self_shows_the_token_in_vaults_shape_and_never_the_token(app: TestApp) {
    for (header, value) in [
        ("authorization", format!("Bearer {}", app.root)),
        ("x-vault-token", app.root.clone()),
    ] {
        let (status, text) = lookup(&app, header, &value).await;
        assert_eq!(status, StatusCode::OK, "{text}");
        assert!(!text.contains(&app.root), "the token is never echoed");
        let body: Value = serde_json::from_str(&text).unwrap();
        let data = &body["data"];
        assert!(data["id"].as_str().unwrap().starts_with("tok_"), "{body}");
        assert_eq!(data["accessor"], data["id"]);
        assert_eq!(data["type"], "service");
        assert_eq!(data["renewable"], false);
        assert_eq!(data["orphan"], true, "the root token has no creator");
        assert_eq!(data["expire_time"], Value::Null);
        assert_eq!(data["ttl"], 0);
        let policies: Vec<&str> = data["policies"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap())
            .collect();
        assert_eq!(policies, keyward_core::AdminScope::NAMES.to_vec());
        assert!(data["creation_time"].as_i64().unwrap() > 1_700_000_000);
        assert_eq!(body["renewable"], false);
        assert_eq!(body["lease_duration"], 0);
        assert_eq!(body["auth"], Value::Null);
    }

    // A limited token with an expiry: its own scopes, its time left.
    let later = time::OffsetDateTime::now_utc() + time::Duration::hours(2);
    let expiry = later
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let token = app
        .token(json!({"name": "ci deploy", "scopes": ["keys:read"], "expires_at": expiry}))
        .await;
    let (status, text) = lookup(&app, "x-vault-token", &token).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(!text.contains(&token));
    let data = &serde_json::from_str::<Value>(&text).unwrap()["data"];
    assert_eq!(data["policies"], json!(["keys:read"]));
    assert_eq!(data["display_name"], "ci deploy");
    assert_eq!(data["orphan"], false);
    let ttl = data["ttl"].as_i64().unwrap();
    assert!((7000..=7200).contains(&ttl), "{ttl}");
    let expire_time = data["expire_time"].as_str().unwrap();
    let parsed =
        time::OffsetDateTime::parse(expire_time, &time::format_description::well_known::Rfc3339)
            .unwrap();
    assert_eq!(parsed.unix_timestamp(), later.unix_timestamp());
}

async fn lookup_self_refuses_every_unusable_token_with_vaults_403(app: TestApp) {
    let revoked = app
        .token(json!({"name": "revoked", "scopes": ["keys:read"]}))
        .await;
    let tokens = app.ok(Method::GET, "/v1/tokens", None).await;
    let id = tokens["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "revoked")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.ok(
        Method::POST,
        &format!("/v1/tokens/{id}/revoke"),
        Some(json!({})),
    )
    .await;
    let prefix = keyward_core::Prefix::parse("kwa").unwrap();
    let unknown = keyward_core::PlaintextKey::generate(&prefix, keyward_core::Environment::Live)
        .unwrap()
        .expose()
        .to_owned();
    let cases = [
        ("x-vault-token", revoked.clone()),
        ("authorization", format!("Bearer {revoked}")),
        ("x-vault-token", unknown),
        ("x-vault-token", "s.garbage".to_owned()),
        ("authorization", "Basic Zm9vOmJhcg==".to_owned()),
    ];
    for (header, value) in &cases {
        let (status, text) = lookup(&app, header, value).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{header}: {text}");
        let body: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(body, json!({"errors": ["permission denied"]}));
    }
    let response = app
        .client
        .get(format!("{}/v1/auth/token/lookup-self", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN, "no token at all");
}

async fn health(app: &TestApp, query: &str) -> (StatusCode, Value) {
    let response = app
        .client
        .get(format!("{}/v1/sys/health{query}", app.base))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn sys_health_answers_an_unsealed_node_as_vault_does(app: TestApp) {
    let (status, body) = health(&app, "").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["initialized"], true);
    assert_eq!(body["sealed"], false);
    assert_eq!(body["standby"], false);
    assert_eq!(body["performance_standby"], false);
    assert_eq!(body["replication_performance_mode"], "disabled");
    assert_eq!(body["replication_dr_mode"], "disabled");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    assert!(body["cluster_name"].is_string() && body["cluster_id"].is_string());
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    assert!((body["server_time_utc"].as_i64().unwrap() - now).abs() < 60);

    // The codes a load balancer asks for; an active node never answers a
    // standby's.
    for (query, expected) in [
        ("?activecode=299", 299),
        ("?standbyok=true", 200),
        ("?standbyok", 200),
        ("?standbycode=200&sealedcode=200", 200),
        ("?perfstandbyok=true&activecode=204", 204),
        ("?uninitcode=299", 200),
        ("?unknown=1", 200),
    ] {
        let (status, body) = health(&app, query).await;
        assert_eq!(status.as_u16(), expected, "{query}: {body}");
    }
    for query in [
        "?activecode=abc",
        "?activecode=99",
        "?activecode=150",
        "?activecode=600",
        "?sealedcode=",
        "?standbyok=maybe",
    ] {
        let (status, body) = health(&app, query).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert!(body["errors"][0].as_str().unwrap().contains("parameter"));
    }
    // HEAD, as load balancers and hvac send by default.
    let head = app
        .client
        .head(format!("{}/v1/sys/health", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    assert!(head.text().await.unwrap().is_empty());
    // It needs no token, and a bad one does not matter.
    let (status, _) = app
        .call(Method::GET, "/v1/sys/health", Some("garbage"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sys_health_answers_uninitialised_and_sealed_nodes_as_vault_does() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_owned();
    let (store, db_file) = fresh_store(Backend::Sqlite, &data).await;
    let shamir = SealSettings {
        kind: SealType::Shamir,
        ..SealSettings::default()
    };
    let app = spawn_sealed(store, db_file, dir, shamir, None).await;
    let (status, body) = health(&app, "").await;
    assert_eq!(status, StatusCode::NOT_IMPLEMENTED, "{body}");
    assert_eq!(body["initialized"], false);
    assert_eq!(body["sealed"], true);
    let (status, _) = health(&app, "?uninitcode=200").await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = app.call(Method::GET, "/v1/sys/init", None, None).await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({"initialized": false}))
    );

    let init = app
        .ok(
            Method::POST,
            "/v1/sys/init",
            Some(json!({"secret_shares": 2, "secret_threshold": 2})),
        )
        .await;
    let (status, body) = health(&app, "").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["initialized"], true);
    assert_eq!(body["sealed"], true);
    let (status, _) = health(&app, "?sealedcode=299&uninitcode=200").await;
    assert_eq!(status.as_u16(), 299);
    let (_, body) = app.call(Method::GET, "/v1/sys/init", None, None).await;
    assert_eq!(body, json!({"initialized": true}));

    for share in init["keys"].as_array().unwrap() {
        app.ok(Method::POST, "/v1/sys/unseal", Some(json!({"key": share})))
            .await;
    }
    let (status, body) = health(&app, "?sealedcode=299").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["sealed"], false);
}
