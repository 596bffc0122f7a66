//! Vault-client compatibility: hvac, the Python Vault client, drives the KV v2
//! and transit engines, token lookup and health of a real server
//! (`tests/hvac/*.py`). Needs a Python with hvac
//! named by `KEYWARD_TEST_HVAC_PYTHON`; `.ci/run` makes one in a virtual
//! environment. Ignored by default; asked for without it, it fails.

#![allow(clippy::unwrap_used, clippy::expect_used)] // A panic in a test is a failed test.

mod support;

use support::Backend;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs hvac: set KEYWARD_TEST_HVAC_PYTHON to a Python with hvac, pass --ignored"]
async fn hvac_drives_kv_v2() {
    run_script("kv_v2.py").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs hvac: set KEYWARD_TEST_HVAC_PYTHON to a Python with hvac, pass --ignored"]
async fn hvac_drives_transit() {
    run_script("transit.py").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs hvac: set KEYWARD_TEST_HVAC_PYTHON to a Python with hvac, pass --ignored"]
async fn hvac_sees_a_real_token_and_a_healthy_node() {
    run_script("auth.py").await;
}

async fn run_script(name: &str) {
    let python = std::env::var("KEYWARD_TEST_HVAC_PYTHON")
        .expect("KEYWARD_TEST_HVAC_PYTHON must name a Python with hvac installed");
    let app = support::spawn(Backend::Sqlite).await;
    let revoked = app
        .token(serde_json::json!({"name": "revoked", "scopes": ["keys:read"]}))
        .await;
    let tokens = app.ok(reqwest::Method::GET, "/v1/tokens", None).await;
    let id = tokens["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "revoked")
        .and_then(|t| t["id"].as_str())
        .unwrap()
        .to_owned();
    app.ok(
        reqwest::Method::POST,
        &format!("/v1/tokens/{id}/revoke"),
        Some(serde_json::json!({})),
    )
    .await;
    let script = format!("{}/tests/hvac/{name}", env!("CARGO_MANIFEST_DIR"));
    let output = tokio::process::Command::new(python)
        .arg(&script)
        .env("VAULT_ADDR", &app.base)
        .env("VAULT_TOKEN", &app.root)
        .env("VAULT_REVOKED_TOKEN", &revoked)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("checks passed"), "{stdout}");
    println!("{stdout}");
}
