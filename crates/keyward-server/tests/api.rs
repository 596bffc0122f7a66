//! The admin API and verify, end to end against the real server: every test
//! runs on SQLite and, with `--ignored` and `KEYWARD_TEST_POSTGRES_URL`, on
//! PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)] // A panic in a test is a failed test.

mod support;

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::TestApp;

on_both_backends!(
    created_key_verifies_valid_with_its_attributes,
    each_denial_code_is_reported,
    revoked_key_is_rejected_immediately,
    rotated_key_works_during_grace_and_expires_after,
    rotation_with_zero_grace_stops_the_old_key_at_once,
    bulk_revoke_hits_exactly_the_matching_keys,
    test_key_is_refused_where_live_is_required,
    malformed_keys_answer_malformed_without_a_storage_lookup,
    admin_calls_need_a_valid_token_with_the_scope,
    tokens_cannot_grant_or_revoke_more_than_they_hold,
    keys_outside_a_tokens_reach_do_not_exist_for_it,
    listing_pages_through_every_key_once,
    bad_input_gets_typed_errors,
    lifecycle_is_audited_without_plaintext,
    openapi_document_matches_the_served_routes,
    array_bodies_are_refused,
    mount_options_are_checked_beside_the_top_level_fields,
    usage_until_the_epoch_is_served,
    committed_changes_are_announced_and_refused_ones_are_not,
);

async fn setup(app: &TestApp) -> String {
    app.create_api("tm", &["live", "test"]).await
}

fn key_of(v: &Value) -> String {
    v["key"].as_str().unwrap().to_owned()
}

async fn token_id_named(app: &TestApp, name: &str) -> String {
    let tokens = app.ok(Method::GET, "/v1/tokens", None).await;
    let token = tokens["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name);
    id_of(token.unwrap())
}

fn id_of(v: &Value) -> String {
    v["id"].as_str().unwrap().to_owned()
}

async fn created_key_verifies_valid_with_its_attributes(app: TestApp) {
    let api = setup(&app).await;
    let issued = app
        .create_key(json!({
            "api_id": api, "environment": "live", "name": "acme prod", "owner": "acme",
            "scopes": ["signals:read", "prices:read"], "metadata": {"plan": "pro"},
        }))
        .await;
    let key = key_of(&issued);
    assert!(key.starts_with("tm_live_"));
    assert_eq!(issued["start"], key[..12]);
    assert_eq!(issued["state"], "active");
    let v = app
        .verify(json!({"key": key, "scopes": ["prices:read"], "environment": "live"}))
        .await;
    assert_eq!(v["valid"], true);
    assert_eq!(v["code"], "VALID");
    assert_eq!(v["key_id"], issued["id"]);
    assert_eq!(v["owner"], "acme");
    assert_eq!(v["scopes"], json!(["prices:read", "signals:read"]));
    assert_eq!(v["metadata"], json!({"plan": "pro"}));
    assert_eq!(v["expires_at"], Value::Null);

    let fetched = app
        .ok(Method::GET, &format!("/v1/keys/{}", id_of(&issued)), None)
        .await;
    assert!(
        fetched.get("key").is_none(),
        "the plaintext is shown only once"
    );
}

async fn each_denial_code_is_reported(app: TestApp) {
    let api = setup(&app).await;
    let make = |extra: Value| {
        let mut body = json!({"api_id": api, "environment": "live", "owner": "acme",
                              "scopes": ["prices:read"]});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };
    let valid = key_of(&app.create_key(make(json!({}))).await);

    // NOT_FOUND: well-formed, never issued.
    let unknown = keyward_core::PlaintextKey::generate(
        &keyward_core::Prefix::parse("tm").unwrap(),
        keyward_core::Environment::Live,
    )
    .unwrap();
    assert_eq!(
        app.verify_code(json!({"key": unknown.expose()})).await,
        "NOT_FOUND"
    );

    // EXPIRED: an expiry that has passed.
    let soon = time::OffsetDateTime::now_utc() + time::Duration::milliseconds(1500);
    let soon = soon
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let expiring = key_of(&app.create_key(make(json!({"expires_at": soon}))).await);
    assert_eq!(app.verify_code(json!({"key": expiring})).await, "VALID");
    tokio::time::sleep(Duration::from_millis(1700)).await;
    assert_eq!(app.verify_code(json!({"key": expiring})).await, "EXPIRED");

    // DISABLED, and back.
    let issued = app.create_key(make(json!({}))).await;
    let path = format!("/v1/keys/{}", id_of(&issued));
    app.ok(Method::PATCH, &path, Some(json!({"enabled": false})))
        .await;
    assert_eq!(
        app.verify_code(json!({"key": key_of(&issued)})).await,
        "DISABLED"
    );
    app.ok(Method::PATCH, &path, Some(json!({"enabled": true})))
        .await;
    assert_eq!(
        app.verify_code(json!({"key": key_of(&issued)})).await,
        "VALID"
    );

    // WRONG_ENVIRONMENT and INSUFFICIENT_SCOPE.
    let body = json!({"key": valid, "environment": "test"});
    assert_eq!(app.verify_code(body).await, "WRONG_ENVIRONMENT");
    let body = json!({"key": valid, "scopes": ["prices:read", "orders:write"]});
    assert_eq!(app.verify_code(body).await, "INSUFFICIENT_SCOPE");

    // A scope change applies on the next verify.
    let id = app.verify(json!({"key": valid})).await["key_id"].clone();
    let path = format!("/v1/keys/{}", id.as_str().unwrap());
    app.ok(
        Method::PATCH,
        &path,
        Some(json!({"scopes": ["orders:write", "prices:read"]})),
    )
    .await;
    let body = json!({"key": valid, "scopes": ["prices:read", "orders:write"]});
    assert_eq!(app.verify_code(body).await, "VALID");

    // REVOKED and MALFORMED.
    app.ok(Method::POST, &format!("{path}/revoke"), None).await;
    assert_eq!(app.verify_code(json!({"key": valid})).await, "REVOKED");
    assert_eq!(
        app.verify_code(json!({"key": "tm_live_nope"})).await,
        "MALFORMED"
    );
}

async fn revoked_key_is_rejected_immediately(app: TestApp) {
    let api = setup(&app).await;
    let issued = app
        .create_key(json!({"api_id": api, "environment": "live", "owner": "acme"}))
        .await;
    let key = key_of(&issued);
    assert_eq!(app.verify_code(json!({"key": key})).await, "VALID");
    let revoked = app
        .ok(
            Method::POST,
            &format!("/v1/keys/{}/revoke", id_of(&issued)),
            Some(json!({"reason": "leaked in a gist"})),
        )
        .await;
    assert_eq!(revoked["state"], "revoked");
    assert_eq!(revoked["revoke_reason"], "leaked in a gist");
    // The very next verify, with no wait, refuses it.
    let v = app.verify(json!({"key": key})).await;
    assert_eq!(
        (v["valid"].clone(), v["code"].clone()),
        (json!(false), json!("REVOKED"))
    );
    // Revoking again is harmless and keeps the first reason.
    let again = app
        .ok(
            Method::POST,
            &format!("/v1/keys/{}/revoke", id_of(&issued)),
            None,
        )
        .await;
    assert_eq!(again["revoke_reason"], "leaked in a gist");
}

async fn rotated_key_works_during_grace_and_expires_after(app: TestApp) {
    let api = setup(&app).await;
    let old = app
        .create_key(
            json!({"api_id": api, "environment": "live", "owner": "acme",
                           "scopes": ["orders:write"], "metadata": {"desk": "fx"}}),
        )
        .await;
    let rotated = app
        .ok(
            Method::POST,
            &format!("/v1/keys/{}/rotate", id_of(&old)),
            Some(json!({"grace_period_seconds": 2})),
        )
        .await;
    let new_key = key_of(&rotated);
    assert_ne!(new_key, key_of(&old));
    assert_eq!(rotated["rotated_from"], old["id"]);
    assert_eq!(rotated["scopes"], json!(["orders:write"]));
    assert_eq!(rotated["metadata"], json!({"desk": "fx"}));
    assert_eq!(app.verify_code(json!({"key": key_of(&old)})).await, "VALID");
    assert_eq!(app.verify_code(json!({"key": new_key})).await, "VALID");
    tokio::time::sleep(Duration::from_millis(2300)).await;
    assert_eq!(
        app.verify_code(json!({"key": key_of(&old)})).await,
        "EXPIRED"
    );
    assert_eq!(app.verify_code(json!({"key": new_key})).await, "VALID");

    // A key is rotated once; its successor can be rotated in turn.
    let (status, body) = app
        .call(
            Method::POST,
            &format!("/v1/keys/{}/rotate", id_of(&old)),
            Some(&app.root),
            None,
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (StatusCode::CONFLICT, json!("CONFLICT"))
    );
    app.ok(
        Method::POST,
        &format!("/v1/keys/{}/rotate", id_of(&rotated)),
        None,
    )
    .await;
}

async fn rotation_with_zero_grace_stops_the_old_key_at_once(app: TestApp) {
    let api = setup(&app).await;
    let old = app
        .create_key(json!({"api_id": api, "environment": "live", "owner": "acme"}))
        .await;
    let rotated = app
        .ok(
            Method::POST,
            &format!("/v1/keys/{}/rotate", id_of(&old)),
            None,
        )
        .await;
    assert_eq!(
        app.verify_code(json!({"key": key_of(&old)})).await,
        "EXPIRED"
    );
    assert_eq!(
        app.verify_code(json!({"key": key_of(&rotated)})).await,
        "VALID"
    );
    // A revoked key cannot be rotated back to life.
    app.ok(
        Method::POST,
        &format!("/v1/keys/{}/revoke", id_of(&rotated)),
        None,
    )
    .await;
    let (status, _) = app
        .call(
            Method::POST,
            &format!("/v1/keys/{}/rotate", id_of(&rotated)),
            Some(&app.root),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
}

async fn bulk_revoke_hits_exactly_the_matching_keys(app: TestApp) {
    let tm = setup(&app).await;
    let other = app.create_api("ex", &["live"]).await;
    let mut keys = Vec::new();
    for (api, env, owner, scopes) in [
        (
            &tm,
            "live",
            "acme",
            json!(["withdrawals:write", "prices:read"]),
        ), // hit
        (&tm, "test", "acme", json!(["withdrawals:write"])), // hit
        (&tm, "live", "acme", json!(["prices:read"])),       // wrong scope
        (&tm, "live", "zeta", json!(["withdrawals:write"])), // wrong owner
        (&other, "live", "acme", json!(["withdrawals:write"])), // wrong API
    ] {
        let k = app
            .create_key(
                json!({"api_id": api, "environment": env, "owner": owner, "scopes": scopes}),
            )
            .await;
        keys.push(key_of(&k));
    }
    let (status, body) = app
        .call(
            Method::POST,
            "/v1/keys/bulk-revoke",
            Some(&app.root),
            Some(json!({"reason": "all"})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (StatusCode::BAD_REQUEST, json!("EMPTY_FILTER"))
    );

    let result = app
        .ok(
            Method::POST,
            "/v1/keys/bulk-revoke",
            Some(
                json!({"owner": "acme", "api_id": tm, "scope": "withdrawals:write",
                        "reason": "incident 42"}),
            ),
        )
        .await;
    assert_eq!(result["revoked"], 2);
    let mut codes = Vec::new();
    for key in &keys {
        codes.push(app.verify_code(json!({"key": key})).await);
    }
    assert_eq!(codes, ["REVOKED", "REVOKED", "VALID", "VALID", "VALID"]);

    // A creation window: everything created before now in the other API.
    let now = time::OffsetDateTime::now_utc() + time::Duration::seconds(1);
    let now = now
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let result = app
        .ok(
            Method::POST,
            "/v1/keys/bulk-revoke",
            Some(json!({"api_id": other, "created_before": now, "reason": "rotate all"})),
        )
        .await;
    assert_eq!(result["revoked"], 1);
    assert_eq!(app.verify_code(json!({"key": keys[4]})).await, "REVOKED");
    assert_eq!(app.verify_code(json!({"key": keys[2]})).await, "VALID");
}

async fn test_key_is_refused_where_live_is_required(app: TestApp) {
    let api = setup(&app).await;
    let test_key = key_of(
        &app.create_key(
            json!({"api_id": api, "environment": "test", "owner": "acme",
                               "scopes": ["orders:write"]}),
        )
        .await,
    );
    assert!(test_key.starts_with("tm_test_"));
    let body = json!({"key": test_key, "environment": "live", "scopes": ["orders:write"]});
    assert_eq!(app.verify_code(body).await, "WRONG_ENVIRONMENT");
    let body = json!({"key": test_key, "environment": "test", "scopes": ["orders:write"]});
    assert_eq!(app.verify_code(body).await, "VALID");
    // A token limited to live cannot see test keys at all.
    let live_only = app
        .token(json!({"name": "live gateway", "scopes": ["keys:verify"], "environments": ["live"]}))
        .await;
    let (_, v) = app
        .call(
            Method::POST,
            "/v1/keys/verify",
            Some(&live_only),
            Some(json!({"key": test_key})),
        )
        .await;
    assert_eq!(v["code"], "NOT_FOUND");
    assert_eq!(v["key_id"], Value::Null);
}

async fn malformed_keys_answer_malformed_without_a_storage_lookup(app: TestApp) {
    let api = setup(&app).await;
    let good = key_of(
        &app.create_key(json!({"api_id": api, "environment": "live", "owner": "acme"}))
            .await,
    );
    let last = good.chars().last().unwrap();
    let flipped = format!(
        "{}{}",
        &good[..good.len() - 1],
        if last == 'A' { 'B' } else { 'A' }
    );
    let cases = [
        flipped,                                    // wrong checksum
        good.replace("_live_", "_prod_"),           // unknown environment
        good.to_uppercase(),                        // wrong case
        format!("{good}{good}"),                    // too long
        "k".repeat(20_000),                         // oversized
        String::new(),                              // empty
        "tm_live_".to_owned(),                      // no body
        format!("{} {}", &good[..20], &good[21..]), // a space inside
    ];
    let before = app.store.lookups();
    for key in &cases {
        let v = app.verify(json!({"key": key})).await;
        assert_eq!(v["code"], "MALFORMED", "{key:.40}");
        assert_eq!(v["valid"], false);
    }
    // Bytes that are not UTF-8, sent raw in the body.
    let mut raw = b"{\"key\":\"tm_live_".to_vec();
    raw.extend_from_slice(&[0xff, 0xfe, 0x80]);
    raw.extend_from_slice(&good.as_bytes()[11..]);
    raw.extend_from_slice(b"\"}");
    let response = app
        .client
        .post(format!("{}/v1/keys/verify", app.base))
        .bearer_auth(&app.root)
        .header("content-type", "application/json")
        .body(raw)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let v: Value = response.json().await.unwrap();
    assert_eq!(v["code"], "MALFORMED");
    assert_eq!(
        app.store.lookups(),
        before,
        "no malformed key reached the store"
    );
    assert_eq!(app.verify_code(json!({"key": good})).await, "VALID");
    assert_eq!(app.store.lookups(), before + 1);
}

async fn admin_calls_need_a_valid_token_with_the_scope(app: TestApp) {
    let api = setup(&app).await;
    let body = json!({"api_id": api, "environment": "live", "owner": "acme"});
    let unauthenticated = |s: StatusCode, v: &Value| {
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
        assert_eq!(v["error"]["code"], "UNAUTHENTICATED");
    };
    let (s, v) = app
        .call(Method::POST, "/v1/keys", None, Some(body.clone()))
        .await;
    unauthenticated(s, &v);
    let (s, v) = app
        .call(
            Method::POST,
            "/v1/keys",
            Some("not-a-token"),
            Some(body.clone()),
        )
        .await;
    unauthenticated(s, &v);
    // An API key is not an admin token, even a valid one.
    let api_key = key_of(&app.create_key(body.clone()).await);
    let (s, v) = app
        .call(Method::GET, "/v1/apis", Some(&api_key), None)
        .await;
    unauthenticated(s, &v);
    // A well-formed admin token that was never issued.
    let forged = keyward_core::PlaintextKey::generate(
        &keyward_core::Prefix::admin(),
        keyward_core::Environment::Live,
    )
    .unwrap();
    let (s, v) = app
        .call(Method::GET, "/v1/apis", Some(forged.expose()), None)
        .await;
    unauthenticated(s, &v);

    // A token without keys:write cannot issue keys, but can verify.
    let verifier = app
        .token(json!({"name": "gateway", "scopes": ["keys:verify"]}))
        .await;
    let (s, v) = app
        .call(
            Method::POST,
            "/v1/keys",
            Some(&verifier),
            Some(body.clone()),
        )
        .await;
    assert_eq!(
        (s, v["error"]["code"].clone()),
        (StatusCode::FORBIDDEN, json!("FORBIDDEN"))
    );
    let (s, v) = app
        .call(
            Method::POST,
            "/v1/keys/verify",
            Some(&verifier),
            Some(json!({"key": api_key})),
        )
        .await;
    assert_eq!((s, v["code"].clone()), (StatusCode::OK, json!("VALID")));

    // Once revoked, the token opens nothing, at once.
    let id = token_id_named(&app, "gateway").await;
    app.ok(Method::POST, &format!("/v1/tokens/{id}/revoke"), None)
        .await;
    let (s, v) = app
        .call(
            Method::POST,
            "/v1/keys/verify",
            Some(&verifier),
            Some(json!({"key": api_key})),
        )
        .await;
    unauthenticated(s, &v);

    // An expired token is refused too.
    let soon = time::OffsetDateTime::now_utc() + time::Duration::milliseconds(800);
    let soon = soon
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let brief = app
        .token(json!({"name": "brief", "scopes": ["apis:read"], "expires_at": soon}))
        .await;
    let (s, _) = app.call(Method::GET, "/v1/apis", Some(&brief), None).await;
    assert_eq!(s, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let (s, v) = app.call(Method::GET, "/v1/apis", Some(&brief), None).await;
    unauthenticated(s, &v);
}

async fn tokens_cannot_grant_or_revoke_more_than_they_hold(app: TestApp) {
    let api = setup(&app).await;
    let manager = app
        .token(
            json!({"name": "manager", "scopes": ["tokens:write", "tokens:read", "keys:verify"],
                      "api_ids": [api]}),
        )
        .await;
    let escalate = json!({"name": "x", "scopes": ["keys:write"]});
    let (s, v) = app
        .call(Method::POST, "/v1/tokens", Some(&manager), Some(escalate))
        .await;
    assert_eq!(
        (s, v["error"]["code"].clone()),
        (StatusCode::FORBIDDEN, json!("FORBIDDEN"))
    );
    let wider = json!({"name": "x", "scopes": ["keys:verify"]});
    let (s, _) = app
        .call(Method::POST, "/v1/tokens", Some(&manager), Some(wider))
        .await;
    assert_eq!(
        s,
        StatusCode::FORBIDDEN,
        "an unrestricted token is wider than its creator"
    );
    let narrower = json!({"name": "x", "scopes": ["keys:verify"], "api_ids": [api]});
    let (s, _) = app
        .call(Method::POST, "/v1/tokens", Some(&manager), Some(narrower))
        .await;
    assert_eq!(s, StatusCode::CREATED);

    let root_id = token_id_named(&app, "root").await;
    let (s, _) = app
        .call(
            Method::POST,
            &format!("/v1/tokens/{root_id}/revoke"),
            Some(&manager),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "a stronger token is out of reach");
    let (s, _) = app
        .call(Method::GET, "/v1/apis", Some(&app.root), None)
        .await;
    assert_eq!(s, StatusCode::OK, "the root token still works");
}

async fn keys_outside_a_tokens_reach_do_not_exist_for_it(app: TestApp) {
    let tm = setup(&app).await;
    let other = app.create_api("ex", &["live"]).await;
    let theirs = app
        .create_key(json!({"api_id": other, "environment": "live", "owner": "acme"}))
        .await;
    let scoped = app
        .token(
            json!({"name": "tm only", "scopes": ["keys:verify", "keys:read", "keys:write"],
                      "api_ids": [tm]}),
        )
        .await;
    let (_, v) = app
        .call(
            Method::POST,
            "/v1/keys/verify",
            Some(&scoped),
            Some(json!({"key": key_of(&theirs)})),
        )
        .await;
    assert_eq!(v["code"], "NOT_FOUND");
    assert_eq!(v["owner"], Value::Null);
    let (s, v) = app
        .call(
            Method::GET,
            &format!("/v1/keys/{}", id_of(&theirs)),
            Some(&scoped),
            None,
        )
        .await;
    assert_eq!(
        (s, v["error"]["code"].clone()),
        (StatusCode::NOT_FOUND, json!("NOT_FOUND"))
    );
    let (s, _) = app
        .call(
            Method::POST,
            &format!("/v1/keys/{}/revoke", id_of(&theirs)),
            Some(&scoped),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let bulk = json!({"owner": "acme", "reason": "scoped incident"});
    let (_, v) = app
        .call(
            Method::POST,
            "/v1/keys/bulk-revoke",
            Some(&scoped),
            Some(bulk),
        )
        .await;
    assert_eq!(v["revoked"], 0, "bulk revocation stays within reach");
    let (_, v) = app.call(Method::GET, "/v1/keys", Some(&scoped), None).await;
    assert_eq!(v["keys"], json!([]));
    let body = json!({"api_id": other, "environment": "live", "owner": "acme"});
    let (s, _) = app
        .call(Method::POST, "/v1/keys", Some(&scoped), Some(body))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(
        app.verify_code(json!({"key": key_of(&theirs)})).await,
        "VALID"
    );
}

async fn listing_pages_through_every_key_once(app: TestApp) {
    let api = setup(&app).await;
    let mut made = Vec::new();
    for i in 0..7 {
        let owner = if i < 4 { "acme" } else { "zeta" };
        let k = app
            .create_key(json!({"api_id": api, "environment": "live", "owner": owner}))
            .await;
        made.push(id_of(&k));
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/keys?limit=3&cursor={c}"),
            None => "/v1/keys?limit=3".to_owned(),
        };
        let page = app.ok(Method::GET, &path, None).await;
        seen.extend(page["keys"].as_array().unwrap().iter().map(id_of));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, made);
    let zeta = app
        .ok(Method::GET, "/v1/keys?owner=zeta&state=active", None)
        .await;
    assert_eq!(zeta["keys"].as_array().unwrap().len(), 3);
    app.ok(Method::POST, &format!("/v1/keys/{}/revoke", made[0]), None)
        .await;
    let revoked = app.ok(Method::GET, "/v1/keys?state=revoked", None).await;
    assert_eq!(
        revoked["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(id_of)
            .collect::<Vec<_>>(),
        [made[0].clone()]
    );
}

async fn bad_input_gets_typed_errors(app: TestApp) {
    let api = setup(&app).await;
    let root = Some(app.root.clone());
    let root = root.as_deref();
    let cases: Vec<(Method, &str, Value, StatusCode, &str)> = vec![
        (
            Method::POST,
            "/v1/apis",
            json!({"name": "x", "prefix": "kwa"}),
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
        ),
        (
            Method::POST,
            "/v1/apis",
            json!({"name": "x", "prefix": "Bad_Prefix"}),
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
        ),
        (
            Method::POST,
            "/v1/apis",
            json!({"name": "x", "prefix": "tm"}),
            StatusCode::CONFLICT,
            "CONFLICT",
        ),
        (
            Method::POST,
            "/v1/apis",
            json!({"name": "x"}),
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
        ),
        (
            Method::POST,
            "/v1/keys",
            json!({"api_id": api, "environment": "dev", "owner": "a"}),
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
        ),
        (
            Method::POST,
            "/v1/keys",
            json!({"api_id": api, "environment": "prod", "owner": "a"}),
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
        ),
        (
            Method::POST,
            "/v1/keys",
            json!({"api_id": "api_nope", "environment": "live", "owner": "a"}),
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
        ),
        (
            Method::POST,
            "/v1/keys",
            json!({"api_id": api, "environment": "live", "owner": ""}),
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
        ),
        (
            Method::POST,
            "/v1/keys",
            json!({"api_id": api, "environment": "live", "owner": "a", "scopes": ["no spaces"]}),
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
        ),
        (
            Method::POST,
            "/v1/keys",
            json!({"api_id": api, "environment": "live", "owner": "a", "metadata": [1]}),
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
        ),
        (
            Method::POST,
            "/v1/keys",
            json!({"api_id": api, "environment": "live", "owner": "a", "expires_at": "2001-01-01T00:00:00Z"}),
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
        ),
        (
            Method::POST,
            "/v1/keys",
            json!({"api_id": api, "environment": "live", "owner": "a", "expires_at": "tomorrow"}),
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
        ),
        (
            Method::POST,
            "/v1/keys",
            json!({"api_id": api, "environment": "live", "owner": "a", "surprise": 1}),
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
        ),
        (
            Method::GET,
            "/v1/keys/key_doesnotexist",
            Value::Null,
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
        ),
        (
            Method::GET,
            "/v1/keys?limit=0",
            Value::Null,
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
        ),
        (
            Method::GET,
            "/v1/keys?state=sleepy",
            Value::Null,
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
        ),
        (
            Method::POST,
            "/v1/keys/verify",
            json!({"key": 42}),
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
        ),
        (
            Method::POST,
            "/v1/keys/verify",
            json!({"key": "x", "scopes": ["bad scope"]}),
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
        ),
        (
            Method::GET,
            "/v1/nothing-here",
            Value::Null,
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
        ),
    ];
    for (method, path, body, status, code) in cases {
        let body = (!body.is_null()).then_some(body.clone());
        let (s, v) = app.call(method.clone(), path, root, body.clone()).await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (status, Some(code)),
            "{method} {path} {body:?}: {v}"
        );
        assert!(v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
    }
    // Not JSON at all, and a body far too large.
    let r = app
        .client
        .post(format!("{}/v1/keys", app.base))
        .bearer_auth(&app.root)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let big =
        json!({"api_id": api, "environment": "live", "owner": "a", "name": "n".repeat(200_000)});
    let (s, v) = app.call(Method::POST, "/v1/keys", root, Some(big)).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("PAYLOAD_TOO_LARGE"))
    );
    // A key pasted into the wrong field is not echoed back.
    let key = key_of(
        &app.create_key(json!({"api_id": api, "environment": "live", "owner": "a"}))
            .await,
    );
    let (s, v) = app
        .call(
            Method::POST,
            "/v1/keys/abc/rotate",
            root,
            Some(json!({"grace_period_seconds": key})),
        )
        .await;
    assert!(s.is_client_error());
    assert!(!v.to_string().contains(&key), "{v}");
}

async fn lifecycle_is_audited_without_plaintext(app: TestApp) {
    let api = setup(&app).await;
    let issued = app
        .create_key(json!({"api_id": api, "environment": "live", "owner": "acme"}))
        .await;
    let id = id_of(&issued);
    app.ok(
        Method::PATCH,
        &format!("/v1/keys/{id}"),
        Some(json!({"scopes": ["a:b"]})),
    )
    .await;
    let rotated = app
        .ok(
            Method::POST,
            &format!("/v1/keys/{id}/rotate"),
            Some(json!({"grace_period_seconds": 60})),
        )
        .await;
    app.ok(
        Method::POST,
        &format!("/v1/keys/{id}/revoke"),
        Some(json!({"reason": "done"})),
    )
    .await;
    let trail = app
        .ok(Method::GET, &format!("/v1/audit?target={id}"), None)
        .await;
    let actions: Vec<&str> = trail["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["key.create", "key.update", "key.rotate", "key.revoke"]
    );
    let tokens = app.ok(Method::GET, "/v1/tokens", None).await;
    let root_id = tokens["tokens"][0]["id"].clone();
    assert!(trail["events"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["actor"] == root_id));

    let everything = app
        .ok(Method::GET, "/v1/audit?limit=1000", None)
        .await
        .to_string();
    let planted = [key_of(&issued), key_of(&rotated), app.root.clone()];
    for secret in &planted {
        assert!(
            !everything.contains(secret.as_str()),
            "audit holds a plaintext"
        );
    }
    if let Some(db) = &app.db_file {
        // Every file SQLite keeps: the database, its WAL and shared memory.
        let dir = db.parent().unwrap();
        for entry in std::fs::read_dir(dir).unwrap() {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            for secret in &planted {
                assert!(
                    !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                    "a plaintext key is on disk"
                );
            }
        }
    }
}

async fn openapi_document_matches_the_served_routes(app: TestApp) {
    let (status, doc) = app.call(Method::GET, "/v1/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths = doc["paths"].as_object().unwrap();
    let contract = [
        ("post", "/v1/apis"),
        ("get", "/v1/apis"),
        ("get", "/v1/apis/{id}"),
        ("post", "/v1/keys"),
        ("get", "/v1/keys"),
        ("get", "/v1/keys/{id}"),
        ("patch", "/v1/keys/{id}"),
        ("post", "/v1/keys/{id}/revoke"),
        ("post", "/v1/keys/{id}/rotate"),
        ("post", "/v1/keys/bulk-revoke"),
        ("post", "/v1/keys/verify"),
        ("post", "/v1/leaks"),
        ("get", "/health"),
        ("get", "/ready"),
        // The KV v2 and transit engines, dispatched from the fallback.
        ("get", "/v1/{mount}/data/{path}"),
        ("post", "/v1/{mount}/data/{path}"),
        ("patch", "/v1/{mount}/data/{path}"),
        ("delete", "/v1/{mount}/data/{path}"),
        ("post", "/v1/{mount}/delete/{path}"),
        ("post", "/v1/{mount}/undelete/{path}"),
        ("post", "/v1/{mount}/destroy/{path}"),
        ("get", "/v1/{mount}/metadata/{path}"),
        ("post", "/v1/{mount}/metadata/{path}"),
        ("delete", "/v1/{mount}/metadata/{path}"),
        ("get", "/v1/{mount}/metadata"),
        ("get", "/v1/{mount}/config"),
        ("post", "/v1/{mount}/config"),
        ("get", "/v1/transit/keys"),
        ("post", "/v1/transit/keys/{name}"),
        ("get", "/v1/transit/keys/{name}"),
        ("delete", "/v1/transit/keys/{name}"),
        ("post", "/v1/transit/keys/{name}/rotate"),
        ("post", "/v1/transit/keys/{name}/config"),
        ("post", "/v1/transit/encrypt/{name}"),
        ("post", "/v1/transit/decrypt/{name}"),
        ("post", "/v1/transit/rewrap/{name}"),
        ("post", "/v1/transit/datakey/{kind}/{name}"),
        ("post", "/v1/transit/sign/{name}"),
        ("post", "/v1/transit/verify/{name}"),
        ("post", "/v1/transit/hmac/{name}"),
        ("post", "/v1/transit/random"),
    ];
    for (method, path) in contract {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} undocumented"
        );
    }
    // The answers every route shares are stated where they apply: 401 and
    // 403 on each operation that needs a token, 400 and 413 on each that
    // takes a body, each with the error body.
    for (path, item) in paths {
        for (method, operation) in item.as_object().unwrap() {
            let responses = operation["responses"].as_object().unwrap();
            let mut needed = Vec::new();
            if operation["security"]
                .as_array()
                .is_some_and(|s| !s.is_empty())
            {
                needed.extend(["401", "403"]);
            }
            if operation.get("requestBody").is_some() {
                needed.extend(["400", "413"]);
            }
            for status in needed {
                let schema = &responses
                    .get(status)
                    .unwrap_or_else(|| panic!("{method} {path} does not document {status}"))
                    ["content"]["application/json"]["schema"];
                assert!(
                    schema["$ref"] == "#/components/schemas/ErrorResponse",
                    "{method} {path} {status}: {schema}"
                );
            }
            assert!(operation["tags"].as_array().is_some_and(|t| !t.is_empty()));
        }
    }
    let tagged = |tag: &str| {
        paths
            .values()
            .flat_map(|item| item.as_object().unwrap().values())
            .filter(|op| op["tags"].as_array().unwrap().iter().any(|t| t == tag))
            .count()
    };
    assert_eq!(tagged("secrets"), 13);
    assert_eq!(tagged("transit"), 14);
    // Actions whose parameters all have defaults take no body: the document
    // says the body may be left out, and the server agrees.
    let api = setup(&app).await;
    let key = app
        .create_key(json!({"api_id": api, "environment": "live", "owner": "acme"}))
        .await;
    let id = key["id"].as_str().unwrap();
    for action in ["revoke", "rotate"] {
        let path = format!("/v1/keys/{{id}}/{action}");
        assert_eq!(
            paths[&path]["post"]["requestBody"]["required"], false,
            "{path}"
        );
    }
    let (status, _) = app
        .call(
            Method::POST,
            &format!("/v1/keys/{id}/revoke"),
            Some(&app.root),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "a revoke without a body");
    // Every bound the document states is the server's: `limit` is 1..=1000
    // on every listing, and a value just outside is refused, inside served.
    for listing in ["/v1/keys", "/v1/tokens", "/v1/audit"] {
        let limit = paths[listing]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "limit")
            .unwrap();
        assert_eq!(limit["schema"]["minimum"], 1, "{listing}");
        assert_eq!(limit["schema"]["maximum"], 1000, "{listing}");
        for (limit, ok) in [(0, false), (1, true), (1000, true), (1001, false)] {
            let (status, body) = app
                .call(
                    Method::GET,
                    &format!("{listing}?limit={limit}"),
                    Some(&app.root),
                    None,
                )
                .await;
            if ok {
                assert_eq!(status, StatusCode::OK, "{listing}?limit={limit}");
            } else {
                assert_eq!(status, StatusCode::BAD_REQUEST, "{listing}?limit={limit}");
                assert_eq!(body["error"]["code"], "INVALID_REQUEST");
            }
        }
    }
    // Every unsigned integer states its range, not only its format.
    let text = doc.to_string();
    let mut unsigned = 0;
    walk(&doc, &mut |v| {
        if v["format"]
            .as_str()
            .is_some_and(|f| ["uint8", "uint16", "uint32", "uint64"].contains(&f))
        {
            unsigned += 1;
            assert!(v.get("maximum").is_some(), "no maximum: {v}");
        }
    });
    assert!(unsigned > 0);
    assert!(!text.contains("u-int"), "an unregistered integer format");
    // Every documented operation is served: none answers 404 for the route
    // or 405, whatever its inputs.
    for (path, item) in paths {
        for (method, operation) in item.as_object().unwrap() {
            let mut concrete = path
                .replace("{id}", "key_0000000000000000000000")
                .replace("{mount}", "secret")
                .replace("{path}", "a")
                .replace("{name}", "a")
                .replace("{kind}", "plaintext")
                .replace("{owner}", "acme");
            let required_query = operation["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "query" && p["required"] == true)
                .map(|p| p["name"].as_str().unwrap())
                .collect::<Vec<_>>();
            if required_query == ["list"] {
                concrete.push_str("?list=true");
            } else {
                assert!(
                    required_query.is_empty(),
                    "{method} {path}: {required_query:?}"
                );
            }
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let (status, body) = app
                .call(method.clone(), &concrete, Some(&app.root), None)
                .await;
            assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            assert!(
                status != StatusCode::NOT_FOUND || body["error"]["message"] != "route not found",
                "{method} {path} is documented but not routed"
            );
        }
    }
    // Every request and response schema the document refers to is defined.
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for reference in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
        let name = reference.split('"').next().unwrap();
        assert!(
            schemas.contains_key(name),
            "{name} is referenced but not defined"
        );
    }
}

// serde reads a struct from an array of its fields in order, so
// `["arr", "arr", null]` created an API (201) and `[null, null]` was a valid
// transit `random` request (200): every body is a JSON object, or (transit)
// no body or `null` for actions whose parameters all have defaults.
async fn array_bodies_are_refused(app: TestApp) {
    let root = Some(app.root.as_str());
    for (path, body) in [
        ("/v1/apis", json!(["arr", "arr", null])),
        (
            "/v1/keys/verify",
            json!(["kw_live_x", [], null, null, null]),
        ),
        (
            "/v1/tokens",
            json!(["t", ["keys:verify"], null, null, null]),
        ),
        ("/v1/transit/random", json!([null, null])),
        ("/v1/transit/keys/k1", json!([null, false, false])),
        ("/v1/secret/data/a", json!([{"k": "v"}])),
        ("/v1/secret/metadata/a", json!([10])),
    ] {
        let (status, answer) = app.call(Method::POST, path, root, Some(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {answer}");
        assert_eq!(answer["error"]["code"], "INVALID_REQUEST", "{path}");
    }
    let (status, answer) = app
        .call(Method::POST, "/v1/transit/keys/k2", root, Some(Value::Null))
        .await;
    assert_eq!(
        status,
        StatusCode::NO_CONTENT,
        "a null body is no body: {answer}"
    );
    let (status, answer) = app
        .call(Method::POST, "/v1/transit/random", root, Some(Value::Null))
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert!(answer["data"]["random_bytes"].is_string());
}

// A mount's `options.environment` was read only when `environment` was
// absent, and a `kv-v2` mount's `options.version` not at all: both are
// checked whenever given.
async fn mount_options_are_checked_beside_the_top_level_fields(app: TestApp) {
    let root = Some(app.root.as_str());
    for (path, body) in [
        (
            "/v1/sys/mounts/m1",
            json!({"type": "kv", "environment": "live",
                   "options": {"version": "2", "environment": "AAA"}}),
        ),
        (
            "/v1/sys/mounts/m2",
            json!({"type": "kv-v2", "options": {"version": [null, null]}}),
        ),
        (
            "/v1/sys/mounts/m3",
            json!({"type": "kv-v2", "options": {"version": "1"}}),
        ),
        (
            "/v1/sys/mounts/m4",
            json!({"type": "kv", "options": {"environment": 7, "version": "2"}}),
        ),
    ] {
        let (status, answer) = app.call(Method::POST, path, root, Some(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {answer}");
    }
    for (path, body) in [
        ("/v1/sys/mounts/m5", json!({"type": "kv-v2"})),
        (
            "/v1/sys/mounts/m6",
            json!({"type": "kv", "options": {"version": "2", "environment": "test"}}),
        ),
        (
            "/v1/sys/mounts/m7",
            json!({"type": "kv-v2", "environment": null}),
        ),
    ] {
        let (status, answer) = app.call(Method::POST, path, root, Some(body)).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{path}: {answer}");
    }
    let (_, mounts) = app.call(Method::GET, "/v1/sys/mounts", root, None).await;
    assert_eq!(mounts["data"]["m6/"]["options"]["environment"], "test");
}

// `until=0` alone made the default `since` (a day earlier) negative, and a
// schema-valid request was refused (400).
async fn usage_until_the_epoch_is_served(app: TestApp) {
    let api = setup(&app).await;
    let key = app
        .create_key(json!({"api_id": api, "environment": "live", "owner": "acme"}))
        .await;
    let id = key["id"].as_str().unwrap();
    let (status, answer) = app
        .call(
            Method::GET,
            &format!("/v1/keys/{id}/usage?until=0"),
            Some(&app.root),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["usage"], json!([]));
}

/// Calls `visit` on every object in `value`, depth first.
/// The next event the server announces, within a few seconds.
async fn next_event(app: &TestApp) -> keyward_service::events::Event {
    let mut events = app.events.lock().await;
    let next = tokio::time::timeout(Duration::from_secs(5), events.next())
        .await
        .expect("an event is announced")
        .expect("the feed is open");
    match next {
        keyward_service::events::Next::Event(event) => event,
        other => panic!("expected an event, got {other:?}"),
    }
}

async fn committed_changes_are_announced_and_refused_ones_are_not(app: TestApp) {
    use keyward_core::AuditAction;
    let api = setup(&app).await;
    let created = next_event(&app).await;
    assert_eq!(created.action, Some(AuditAction::ApiCreate));
    assert_eq!(created.record.target, api);

    let issued = app
        .create_key(json!({"api_id": api, "environment": "live", "owner": "acme"}))
        .await;
    let key_id = id_of(&issued);
    let event = next_event(&app).await;
    assert_eq!(event.action, Some(AuditAction::KeyCreate));
    assert_eq!(event.record.target, key_id);
    // The event records the change, never the key.
    assert!(!format!("{:?}", event.record).contains(&key_of(&issued)));

    // Refused writes change nothing and announce nothing: a key for an API
    // that does not exist, a revocation without the scope.
    let root = app.root.clone();
    let missing = json!({"api_id": "api_00000000000000000000000000", "environment": "live"});
    let (status, _) = app
        .call(Method::POST, "/v1/keys", Some(&root), Some(missing))
        .await;
    assert!(status.is_client_error(), "{status}");
    let reader = app
        .token(json!({"name": "reader", "scopes": ["keys:read"]}))
        .await;
    assert_eq!(
        next_event(&app).await.action,
        Some(AuditAction::TokenCreate)
    );
    let revoke = format!("/v1/keys/{key_id}/revoke");
    let (status, _) = app
        .call(Method::POST, &revoke, Some(&reader), Some(json!({})))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // The next event is the revocation that was allowed, in its order.
    app.ok(
        Method::POST,
        &format!("/v1/keys/{key_id}/revoke"),
        Some(json!({"reason": "leaked"})),
    )
    .await;
    let revoked = next_event(&app).await;
    assert_eq!(revoked.action, Some(AuditAction::KeyRevoke));
    assert_eq!(revoked.record.target, key_id);
}

fn walk(value: &Value, visit: &mut impl FnMut(&Value)) {
    match value {
        Value::Object(map) => {
            visit(value);
            map.values().for_each(|v| walk(v, visit));
        }
        Value::Array(items) => items.iter().for_each(|v| walk(v, visit)),
        _ => {}
    }
}

// The API's HTTP front answers verify and /health itself and hands any
// other request, with its connection, to hyper: these tests speak raw
// HTTP/1.1 to tell the two apart and prove the answers do not differ.

mod front {
    use super::*;
    use support::{spawn, Backend};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    /// One answer read off a connection.
    #[derive(Debug)]
    struct Answer {
        status: u16,
        /// Header lines, names lowercased.
        headers: Vec<(String, String)>,
        body: String,
    }

    impl Answer {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        }

        fn json(&self) -> Value {
            serde_json::from_str(&self.body).unwrap_or_else(|_| panic!("{self:?}"))
        }
    }

    /// Reads answers off one connection, keeping what it read past each.
    struct Conn {
        stream: TcpStream,
        buf: Vec<u8>,
    }

    impl Conn {
        async fn open(app: &TestApp) -> Conn {
            let stream = TcpStream::connect(app.base.trim_start_matches("http://"))
                .await
                .unwrap();
            Conn {
                stream,
                buf: Vec::new(),
            }
        }

        async fn send(&mut self, bytes: &[u8]) {
            self.stream.write_all(bytes).await.unwrap();
        }

        async fn more(&mut self) -> bool {
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout(Duration::from_secs(10), self.stream.read(&mut chunk))
                .await
                .expect("an answer within 10 s")
                .unwrap();
            self.buf.extend_from_slice(&chunk[..n]);
            n > 0
        }

        /// The next answer, framed by its `content-length`.
        async fn answer(&mut self) -> Answer {
            let end = loop {
                if let Some(at) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break at + 4;
                }
                assert!(self.more().await, "closed before an answer");
            };
            let head = String::from_utf8(self.buf[..end].to_vec()).unwrap();
            let mut lines = head.split("\r\n");
            let status_line = lines.next().unwrap();
            assert!(status_line.starts_with("HTTP/1.1 "), "{status_line}");
            let status = status_line[9..12].parse().unwrap();
            let headers: Vec<(String, String)> = lines
                .filter(|l| !l.is_empty())
                .map(|l| {
                    let (n, v) = l.split_once(':').unwrap();
                    (n.to_ascii_lowercase(), v.trim().to_owned())
                })
                .collect();
            let len: usize = headers
                .iter()
                .find(|(n, _)| n == "content-length")
                .map_or(0, |(_, v)| v.parse().unwrap());
            while self.buf.len() < end + len {
                assert!(self.more().await, "closed inside a body");
            }
            let body = String::from_utf8(self.buf[end..end + len].to_vec()).unwrap();
            self.buf.drain(..end + len);
            Answer {
                status,
                headers,
                body,
            }
        }

        /// Whether the server closes the connection with nothing more to say.
        async fn closed(&mut self) -> bool {
            self.buf.is_empty() && !self.more().await
        }
    }

    fn verify_request(root: &str, key: &str, extra: &str) -> String {
        let body = format!(r#"{{"key":"{key}"}}"#);
        format!(
            "POST /v1/keys/verify HTTP/1.1\r\nHost: k\r\nAuthorization: Bearer {root}\r\n\
             {extra}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
    }

    async fn keyed() -> (TestApp, String) {
        let app = spawn(Backend::Sqlite).await;
        let api = setup(&app).await;
        let issued = app
            .create_key(json!({"api_id": api, "environment": "live", "owner": "acme"}))
            .await;
        let key = key_of(&issued);
        (app, key)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn verify_health_and_admin_requests_share_one_connection() {
        let (app, key) = keyed().await;
        let verify = verify_request(&app.root, &key, "");
        let health = "GET /health HTTP/1.1\r\nHost: k\r\n\r\n";
        let apis = format!(
            "GET /v1/apis HTTP/1.1\r\nHost: k\r\nAuthorization: Bearer {}\r\n\r\n",
            app.root
        );
        // Pipelined, in one write: the front answers the first two, hyper
        // the rest, from the bytes the front had already read.
        let mut conn = Conn::open(&app).await;
        conn.send(format!("{verify}{health}{apis}{verify}{health}").as_bytes())
            .await;
        let answers = [
            conn.answer().await,
            conn.answer().await,
            conn.answer().await,
            conn.answer().await,
            conn.answer().await,
        ];
        for answer in &answers {
            assert_eq!(answer.status, 200, "{answer:?}");
            assert_eq!(answer.header("content-type"), Some("application/json"));
            assert!(answer.header("date").is_some(), "{answer:?}");
        }
        for verified in [&answers[0], &answers[3]] {
            assert_eq!(verified.json()["valid"], true);
            assert_eq!(verified.json()["owner"], "acme");
        }
        assert_eq!(answers[0].body, answers[3].body, "both paths answer alike");
        assert_eq!(answers[1].json(), json!({"status": "ok"}));
        assert_eq!(answers[4].body, answers[1].body);
        assert!(answers[2].json()["apis"].is_array(), "{:?}", answers[2]);

        // A request dribbled in a byte at a time is still one request.
        let mut slow = Conn::open(&app).await;
        for byte in verify.as_bytes() {
            slow.send(&[*byte]).await;
        }
        let answer = slow.answer().await;
        assert_eq!(answer.json()["valid"], true, "{answer:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn verify_answers_alike_in_every_http_form() {
        let (app, key) = keyed().await;
        let body = format!(r#"{{"key":"{key}"}}"#);
        let valid = |answer: &Answer| answer.status == 200 && answer.json()["valid"] == true;

        // Chunked, as some clients stream bodies.
        let mut conn = Conn::open(&app).await;
        conn.send(
            format!(
                "POST /v1/keys/verify HTTP/1.1\r\nHost: k\r\nAuthorization: Bearer {}\r\n\
                 Transfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
                app.root,
                body.len()
            )
            .as_bytes(),
        )
        .await;
        let answer = conn.answer().await;
        assert!(valid(&answer), "chunked: {answer:?}");

        // Expect: 100-continue gets its interim answer before the body.
        let mut conn = Conn::open(&app).await;
        let expecting = verify_request(&app.root, &key, "Expect: 100-continue\r\n");
        let (head, _) = expecting.split_at(expecting.find("\r\n\r\n").unwrap() + 4);
        conn.send(head.as_bytes()).await;
        assert_eq!(conn.answer().await.status, 100);
        conn.send(body.as_bytes()).await;
        let answer = conn.answer().await;
        assert!(valid(&answer), "100-continue: {answer:?}");

        // Connection: close is honoured, saying so.
        let mut conn = Conn::open(&app).await;
        conn.send(verify_request(&app.root, &key, "Connection: close\r\n").as_bytes())
            .await;
        let answer = conn.answer().await;
        assert!(valid(&answer), "close: {answer:?}");
        assert_eq!(answer.header("connection"), Some("close"));
        assert!(
            conn.closed().await,
            "the connection is closed after the answer"
        );

        // Vault's token header authenticates as Authorization does.
        let mut conn = Conn::open(&app).await;
        conn.send(
            format!(
                "POST /v1/keys/verify HTTP/1.1\r\nHost: k\r\nX-Vault-Token: {}\r\n\
                 Content-Length: {}\r\n\r\n{body}",
                app.root,
                body.len()
            )
            .as_bytes(),
        )
        .await;
        let answer = conn.answer().await;
        assert!(valid(&answer), "X-Vault-Token: {answer:?}");

        // Refusals carry the router's codes, and the connection goes on.
        let mut conn = Conn::open(&app).await;
        let unknown = "kwa_live_".to_owned() + &"A".repeat(app.root.len() - 9);
        let bad_bytes = format!(
            "POST /v1/keys/verify HTTP/1.1\r\nAuthorization: Bearer {}\u{e9}\r\n\
             Content-Length: {}\r\n\r\n{body}",
            app.root,
            body.len()
        );
        let huge = format!(
            "POST /v1/keys/verify HTTP/1.1\r\nAuthorization: Bearer {}\r\n\
             Content-Length: 70000\r\n\r\n{}",
            app.root,
            " ".repeat(70000)
        );
        for (request, status, code) in [
            (verify_request(&unknown, &key, ""), 401, "UNAUTHENTICATED"),
            (bad_bytes, 401, "UNAUTHENTICATED"),
            (
                "POST /v1/keys/verify HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}".to_owned(),
                401,
                "UNAUTHENTICATED",
            ),
            (
                format!(
                    "POST /v1/keys/verify HTTP/1.1\r\nAuthorization: Bearer {}\r\n\
                     Content-Length: 9\r\n\r\n{{\"key\":1}}",
                    app.root
                ),
                400,
                "INVALID_REQUEST",
            ),
            (huge, 413, "PAYLOAD_TOO_LARGE"),
        ] {
            conn.send(request.as_bytes()).await;
            let answer = conn.answer().await;
            assert_eq!(answer.status, status, "{answer:?}");
            assert_eq!(answer.json()["error"]["code"], code, "{answer:?}");
            assert_eq!(answer.header("content-type"), Some("application/json"));
        }

        // HTTP/1.0 is served, and closed after its answer.
        let mut conn = Conn::open(&app).await;
        conn.send(
            format!(
                "POST /v1/keys/verify HTTP/1.0\r\nAuthorization: Bearer {}\r\n\
                 Content-Length: {}\r\n\r\n{body}",
                app.root,
                body.len()
            )
            .as_bytes(),
        )
        .await;
        let mut answer = Vec::new();
        tokio::time::timeout(
            Duration::from_secs(10),
            conn.stream.read_to_end(&mut answer),
        )
        .await
        .unwrap()
        .unwrap();
        let answer = String::from_utf8(answer).unwrap();
        assert!(answer.starts_with("HTTP/1.0 200"), "{answer}");
        let (_, body) = answer.split_once("\r\n\r\n").unwrap();
        let body: Value = serde_json::from_str(body).unwrap();
        assert_eq!(body["valid"], true, "{answer}");

        // A malformed request is refused and the connection closed.
        let mut conn = Conn::open(&app).await;
        conn.send(b"POST /v1/keys/verify HTTP/1.1\r\nBad Header\r\n\r\n")
            .await;
        assert_eq!(conn.answer().await.status, 400);
        assert!(conn.closed().await);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stopping_closes_idle_connections_of_both_paths() {
        let (mut app, key) = keyed().await;
        let mut ours = Conn::open(&app).await;
        ours.send(verify_request(&app.root, &key, "").as_bytes())
            .await;
        assert_eq!(ours.answer().await.status, 200);
        let mut handed = Conn::open(&app).await;
        handed
            .send(
                format!(
                    "GET /v1/apis HTTP/1.1\r\nAuthorization: Bearer {}\r\n\r\n",
                    app.root
                )
                .as_bytes(),
            )
            .await;
        assert_eq!(handed.answer().await.status, 200);
        // Both stay open and idle: stopping must not wait for them.
        tokio::time::timeout(Duration::from_secs(10), app.stop())
            .await
            .expect("the server stops with idle connections open");
        assert!(ours.closed().await);
        assert!(handed.closed().await);
    }
}
