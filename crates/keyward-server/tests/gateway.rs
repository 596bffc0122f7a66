//! The gateway in front of a stand-in upstream that records what reaches it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // A panic in a test is a failed test.

mod support;

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse;
use keyward_server::gateway::GatewayConfig;
use serde_json::{json, Value};
use support::{Backend, TestApp};

on_both_backends_raw!(
    valid_requests_reach_the_upstream_with_identity_and_without_the_key,
    refused_requests_never_reach_the_upstream,
    an_unreachable_upstream_answers_502,
    an_upstream_that_closes_connections_is_reconnected,
    limits_hold_across_concurrent_connections,
    an_upstream_base_path_prefixes_every_request,
);

/// What the upstream saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
}

/// A stand-in API: answers 418 with a fixed body and header, and records
/// every request.
async fn upstream() -> (String, Arc<Mutex<Vec<Seen>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let app = axum::Router::new().fallback(
        move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let log = Arc::clone(&log);
            async move {
                log.lock().unwrap().push(Seen {
                    method,
                    uri,
                    headers,
                    body,
                });
                (
                    StatusCode::IM_A_TEAPOT,
                    [("x-upstream", "yes"), ("content-type", "text/plain")],
                    "brewed upstream",
                )
                    .into_response()
            }
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), seen)
}

fn config(upstream: &str) -> GatewayConfig {
    let text = json!({
        "listen": "127.0.0.1:0",
        "upstream": upstream,
        "environment": "live",
        "route": [
            {"method": "GET", "path": "/v1/prices", "scopes": ["prices:read"]},
            {"method": "POST", "path": "/v1/orders", "scopes": ["orders:write"]},
            {"path": "/v1/public"},
        ],
    });
    serde_json::from_value(text).unwrap()
}

async fn setup(backend: Backend, upstream: &str) -> (TestApp, String) {
    let app = support::spawn_with_gateway(backend, config(upstream)).await;
    let api = app.create_api("gw", &["live", "test"]).await;
    (app, api)
}

async fn issue(app: &TestApp, api: &str, extra: Value) -> (String, String) {
    let mut body = json!({"api_id": api, "environment": "live", "owner": "acme",
                          "scopes": ["prices:read"]});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let k = app.create_key(body).await;
    (
        k["key"].as_str().unwrap().to_owned(),
        k["id"].as_str().unwrap().to_owned(),
    )
}

async fn valid_requests_reach_the_upstream_with_identity_and_without_the_key(backend: Backend) {
    let (up, seen) = upstream().await;
    let (app, api) = setup(backend, &up).await;
    let gw = app.gateway.clone().unwrap();
    let (key, id) = issue(
        &app,
        &api,
        json!({"scopes": ["prices:read", "orders:write"],
        "ratelimits": [{"name": "m", "limit": 100, "duration_ms": 60000}]}),
    )
    .await;
    let client = reqwest::Client::new();

    let r = client
        .get(format!("{gw}/v1/prices/btc?quote=usd&depth=5"))
        .bearer_auth(&key)
        .header("x-keyward-owner", "forged")
        .header("x-keyward-key-id", "key_forged")
        .header("x-request-id", "abc")
        .header("connection", "keep-alive, x-hop")
        .header("x-hop", "1")
        .header("keep-alive", "timeout=5")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::IM_A_TEAPOT,
        "the upstream status passes through"
    );
    assert_eq!(r.headers()["x-upstream"], "yes");
    assert_eq!(r.headers()["x-ratelimit-limit"], "100");
    assert_eq!(r.headers()["x-ratelimit-remaining"], "99");
    assert_eq!(r.text().await.unwrap(), "brewed upstream");

    let r = client
        .post(format!("{gw}/v1/orders"))
        .header("x-api-key", &key)
        .body("{\"side\":\"buy\"}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::IM_A_TEAPOT);

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    let get = &seen[0];
    assert_eq!(get.method, Method::GET);
    assert_eq!(get.uri.path(), "/v1/prices/btc");
    assert_eq!(get.uri.query(), Some("quote=usd&depth=5"));
    assert_eq!(get.headers["x-keyward-key-id"], id.as_str());
    assert_eq!(get.headers["x-keyward-owner"], "acme");
    assert_eq!(get.headers["x-keyward-scopes"], "orders:write prices:read");
    assert_eq!(
        get.headers["x-request-id"], "abc",
        "other headers pass through"
    );
    assert!(
        get.headers.get("authorization").is_none(),
        "the key is stripped"
    );
    for hop in ["connection", "keep-alive", "x-hop"] {
        assert!(
            get.headers.get(hop).is_none(),
            "hop-by-hop header {hop} is not forwarded"
        );
    }
    assert_eq!(
        get.headers.get_all("x-keyward-owner").iter().count(),
        1,
        "forgeries are dropped"
    );
    let post = &seen[1];
    assert_eq!(post.method, Method::POST);
    assert_eq!(&post.body[..], b"{\"side\":\"buy\"}");
    assert!(
        post.headers.get("x-api-key").is_none(),
        "the key is stripped"
    );
    for s in &seen {
        for (_, value) in s.headers.iter() {
            assert!(!value
                .as_bytes()
                .windows(key.len())
                .any(|w| w == key.as_bytes()));
        }
    }
}

async fn refused_requests_never_reach_the_upstream(backend: Backend) {
    let (up, seen) = upstream().await;
    let (app, api) = setup(backend, &up).await;
    let gw = app.gateway.clone().unwrap();
    let client = reqwest::Client::new();
    let (key, id) = issue(&app, &api, json!({})).await;
    let (limited, _) = issue(
        &app,
        &api,
        json!({"ratelimits": [{"name": "m", "limit": 1, "duration_ms": 60000}]}),
    )
    .await;
    let (test_key, _) = issue(&app, &api, json!({"environment": "test"})).await;
    let (fenced, _) = issue(&app, &api, json!({"ip_allowlist": ["192.0.2.0/24"]})).await;

    let get = |path: &str, key: Option<&str>| {
        let mut r = client.get(format!("{gw}{path}"));
        if let Some(key) = key {
            r = r.bearer_auth(key);
        }
        r.send()
    };
    let code = |r: reqwest::Response| async move {
        let status = r.status();
        let body: Value = r.json().await.unwrap();
        (status, body["error"]["code"].as_str().unwrap().to_owned())
    };
    let cases: Vec<(&str, Option<&str>, StatusCode, &str)> = vec![
        ("/v1/prices", None, StatusCode::UNAUTHORIZED, "MISSING_KEY"),
        (
            "/v1/prices",
            Some("garbage"),
            StatusCode::UNAUTHORIZED,
            "MALFORMED",
        ),
        (
            "/v1/prices",
            Some(&test_key),
            StatusCode::UNAUTHORIZED,
            "WRONG_ENVIRONMENT",
        ),
        (
            "/v1/prices",
            Some(&fenced),
            StatusCode::FORBIDDEN,
            "IP_NOT_ALLOWED",
        ),
        ("/v1/admin", Some(&key), StatusCode::NOT_FOUND, "NO_ROUTE"),
        ("/v1/pricesX", Some(&key), StatusCode::NOT_FOUND, "NO_ROUTE"),
    ];
    for (path, key, status, expected) in cases {
        assert_eq!(
            code(get(path, key).await.unwrap()).await,
            (status, expected.to_owned()),
            "{path}"
        );
    }
    let r = client
        .post(format!("{gw}/v1/orders"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(
        code(r).await,
        (StatusCode::FORBIDDEN, "INSUFFICIENT_SCOPE".to_owned())
    );
    let unknown = keyward_core::PlaintextKey::generate(
        &keyward_core::Prefix::parse("gw").unwrap(),
        keyward_core::Environment::Live,
    )
    .unwrap();
    let r = get("/v1/prices", Some(unknown.expose())).await.unwrap();
    assert_eq!(
        code(r).await,
        (StatusCode::UNAUTHORIZED, "NOT_FOUND".to_owned())
    );

    assert_eq!(
        get("/v1/prices", Some(&limited)).await.unwrap().status(),
        StatusCode::IM_A_TEAPOT
    );
    let r = get("/v1/prices", Some(&limited)).await.unwrap();
    assert_eq!(r.headers()["x-ratelimit-remaining"], "0");
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(
        code(r).await,
        (StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED".to_owned())
    );

    app.ok(
        reqwest::Method::POST,
        &format!("/v1/keys/{id}/revoke"),
        None,
    )
    .await;
    let r = get("/v1/prices", Some(&key)).await.unwrap();
    assert_eq!(
        code(r).await,
        (StatusCode::UNAUTHORIZED, "REVOKED".to_owned())
    );
    // A route without scopes still needs a valid key.
    let r = get("/v1/public/status", None).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let (other, _) = issue(&app, &api, json!({"scopes": []})).await;
    assert_eq!(
        get("/v1/public/status", Some(&other))
            .await
            .unwrap()
            .status(),
        StatusCode::IM_A_TEAPOT
    );

    let paths: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|s| s.uri.path().to_owned())
        .collect();
    assert_eq!(
        paths,
        ["/v1/prices", "/v1/public/status"],
        "only admitted requests reached it"
    );
}

async fn an_unreachable_upstream_answers_502(backend: Backend) {
    // A port that was just free: nothing listens there.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (app, api) = setup(backend, &format!("http://127.0.0.1:{port}")).await;
    let (key, _) = issue(&app, &api, json!({})).await;
    let gw = app.gateway.clone().unwrap();
    let r = reqwest::Client::new()
        .get(format!("{gw}/v1/prices"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "UPSTREAM_UNAVAILABLE");
}

/// An upstream that closes every connection after one answer: each request
/// of a kept-alive client connection still gets through.
async fn an_upstream_that_closes_connections_is_reconnected(backend: Backend) {
    let served = Arc::new(Mutex::new(0_usize));
    let count = Arc::clone(&served);
    let app = axum::Router::new().fallback(move || {
        let count = Arc::clone(&count);
        async move {
            *count.lock().unwrap() += 1;
            ([("connection", "close")], "one and done").into_response()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let (app, api) = setup(backend, &up).await;
    let gw = app.gateway.clone().unwrap();
    let (key, _) = issue(&app, &api, json!({})).await;
    let client = reqwest::Client::new();
    for _ in 0..5 {
        let r = client
            .get(format!("{gw}/v1/prices"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.text().await.unwrap(), "one and done");
    }
    assert_eq!(*served.lock().unwrap(), 5);
}

/// A key's limit is one limit however many connections its requests come
/// on at once: of 15 concurrent requests on 15 connections against a limit
/// of 10, exactly 10 reach the upstream.
async fn limits_hold_across_concurrent_connections(backend: Backend) {
    let (up, seen) = upstream().await;
    let app = support::spawn_with_gateway(backend, config(&up)).await;
    let api = app.create_api("gw", &["live"]).await;
    let (key, _) = issue(
        &app,
        &api,
        json!({"ratelimits": [{"name": "m", "limit": 10, "duration_ms": 600000}]}),
    )
    .await;
    let gw = app.gateway.clone().unwrap();
    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..15 {
        // A client of its own: a connection of its own.
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        let (gw, key) = (gw.clone(), key.clone());
        requests.spawn(async move {
            client
                .get(format!("{gw}/v1/prices"))
                .bearer_auth(&key)
                .send()
                .await
                .unwrap()
                .status()
        });
    }
    let statuses = requests.join_all().await;
    let passed = statuses
        .iter()
        .filter(|s| **s == StatusCode::IM_A_TEAPOT)
        .count();
    let limited = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!((passed, limited), (10, 5), "{statuses:?}");
    assert_eq!(seen.lock().unwrap().len(), 10);
}

/// An upstream URL with a path: every request goes below it, query kept.
async fn an_upstream_base_path_prefixes_every_request(backend: Backend) {
    let (up, seen) = upstream().await;
    let (app, api) = setup(backend, &format!("{up}/base/")).await;
    let (key, _) = issue(&app, &api, json!({})).await;
    let gw = app.gateway.clone().unwrap();
    let r = reqwest::Client::new()
        .get(format!("{gw}/v1/prices/eth?depth=2"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::IM_A_TEAPOT);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].uri.path(), "/base/v1/prices/eth");
    assert_eq!(seen[0].uri.query(), Some("depth=2"));
}
