//! The verify hot path under its limits — rate limits, owner limits, credits,
//! IP allowlists — and its cache, against the real server on both backends.

#![allow(clippy::unwrap_used, clippy::expect_used)] // A panic in a test is a failed test.

mod support;

use std::time::Duration;

use keyward_server::settings::VerifySettings;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::{Backend, TestApp};
use time::OffsetDateTime;

on_both_backends!(
    rate_limit_allows_exactly_the_limit_then_refuses_until_reset,
    cost_counts_against_limits_and_credits,
    every_limit_must_allow_and_the_tightest_is_reported,
    owner_limits_are_shared_by_all_keys_of_the_owner,
    credits_are_never_overspent_under_concurrent_verifies,
    ip_allowlists_admit_only_their_ranges,
    changes_apply_on_the_next_verify_with_a_warm_cache,
    limit_changes_apply_on_the_next_verify,
    the_feed_echo_of_a_credit_change_keeps_the_lease_taken_since,
    a_lookup_that_read_before_a_revocation_cannot_cache_the_key,
    a_token_lookup_that_read_before_a_revocation_cannot_cache_the_token,
    every_answer_read_from_the_store_is_cached,
);

on_both_backends_raw!(
    credits_and_limits_survive_a_restart,
    a_crash_never_hands_out_more_credits_than_the_quota,
    negative_cache_cannot_hide_a_key_created_afterwards,
    cache_ttl_bounds_staleness_of_changes_made_elsewhere,
    changes_made_on_another_node_arrive_through_the_change_feed,
    usage_is_counted_in_memory_and_flushed_in_batches,
    a_credit_reset_on_another_node_voids_this_nodes_lease,
);

/// Two nodes on one store, each with its own caches.
async fn two_nodes(backend: Backend, verify: VerifySettings) -> (TestApp, TestApp) {
    let a = support::spawn_with(backend, verify.clone()).await;
    let b = support::spawn_on(
        a.inner_store(),
        None,
        tempfile::tempdir().unwrap(),
        verify,
        Some(a.root.clone()),
    )
    .await;
    (a, b)
}

async fn api(app: &TestApp) -> String {
    app.create_api("lim", &["live", "test"]).await
}

async fn key(app: &TestApp, api: &str, extra: Value) -> (String, String) {
    let mut body = json!({"api_id": api, "environment": "live", "owner": "acme",
                          "scopes": ["prices:read"]});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let issued = app.create_key(body).await;
    (
        issued["key"].as_str().unwrap().to_owned(),
        issued["id"].as_str().unwrap().to_owned(),
    )
}

fn now_ms() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

async fn rate_limit_allows_exactly_the_limit_then_refuses_until_reset(app: TestApp) {
    let api = api(&app).await;
    // 5 per 2 s: one unit comes back every 400 ms.
    let limits = json!({"ratelimits": [{"name": "burst", "limit": 5, "duration_ms": 2000}]});
    let (k, _) = key(&app, &api, limits).await;
    for expected_remaining in (0..5).rev() {
        let v = app.verify(json!({"key": k})).await;
        assert_eq!(v["code"], "VALID");
        assert_eq!(v["ratelimit"]["limit"], 5);
        assert_eq!(v["ratelimit"]["remaining"], expected_remaining);
    }
    let refused = app.verify(json!({"key": k})).await;
    assert_eq!(refused["code"], "RATE_LIMITED");
    assert_eq!(refused["valid"], false);
    assert_eq!(refused["ratelimit"]["remaining"], 0);
    let reset = refused["ratelimit"]["reset"].as_i64().unwrap();
    let wait = reset - now_ms();
    assert!(
        (0..=400).contains(&wait),
        "reset is within one unit: {wait} ms"
    );
    // Refused requests do not push the reset further out.
    let again = app.verify(json!({"key": k})).await;
    assert_eq!(again["code"], "RATE_LIMITED");
    assert!(again["ratelimit"]["reset"].as_i64().unwrap() <= reset + 5);
    tokio::time::sleep(Duration::from_millis((reset - now_ms()).max(0) as u64 + 30)).await;
    assert_eq!(
        app.verify_code(json!({"key": k})).await,
        "VALID",
        "reset is honoured"
    );
}

async fn cost_counts_against_limits_and_credits(app: TestApp) {
    let api = api(&app).await;
    let (k, _) = key(
        &app,
        &api,
        json!({"ratelimits": [{"name": "m", "limit": 10, "duration_ms": 60000}],
               "credits": {"remaining": 8}}),
    )
    .await;
    let v = app.verify(json!({"key": k, "cost": 3})).await;
    assert_eq!(
        (v["code"].clone(), v["ratelimit"]["remaining"].clone()),
        (json!("VALID"), json!(7))
    );
    assert_eq!(v["credits_remaining"], 5);
    let v = app.verify(json!({"key": k, "cost": 6})).await;
    assert_eq!(
        v["code"], "USAGE_EXCEEDED",
        "6 credits are more than the 5 left"
    );
    assert_eq!(v["credits_remaining"], 5);
    let v = app.verify(json!({"key": k, "cost": 5})).await;
    assert_eq!(v["code"], "VALID");
    assert_eq!(v["credits_remaining"], 0);
    // The request refused for credits did not use up the rate limit:
    // 10 - 3 - 5 = 2.
    assert_eq!(v["ratelimit"]["remaining"], 2);
    let (k2, _) = key(
        &app,
        &api,
        json!({"ratelimits": [{"name": "m", "limit": 10, "duration_ms": 60000}]}),
    )
    .await;
    let v = app.verify(json!({"key": k2, "cost": 11})).await;
    assert_eq!(
        v["code"], "RATE_LIMITED",
        "a cost above the limit never fits"
    );
    let v = app.verify(json!({"key": k2, "cost": 10})).await;
    assert_eq!(v["code"], "VALID");
    let (s, body) = app
        .call(
            Method::POST,
            "/v1/keys/verify",
            Some(&app.root),
            Some(json!({"key": k2, "cost": 2_000_000})),
        )
        .await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("INVALID_REQUEST"))
    );
}

async fn every_limit_must_allow_and_the_tightest_is_reported(app: TestApp) {
    let api = api(&app).await;
    let limits = json!({"ratelimits": [
        {"name": "second", "limit": 10, "duration_ms": 1000},
        {"name": "minute", "limit": 3, "duration_ms": 60000},
    ]});
    let (k, _) = key(&app, &api, limits).await;
    let mut remaining = Vec::new();
    for _ in 0..3 {
        let v = app.verify(json!({"key": k})).await;
        assert_eq!(v["code"], "VALID");
        assert_eq!(
            v["ratelimit"]["limit"], 3,
            "the per-minute limit is the tighter one"
        );
        remaining.push(v["ratelimit"]["remaining"].as_u64().unwrap());
    }
    assert_eq!(remaining, [2, 1, 0]);
    let v = app.verify(json!({"key": k})).await;
    assert_eq!(v["code"], "RATE_LIMITED");
    assert_eq!(v["ratelimit"]["limit"], 3);
}

async fn owner_limits_are_shared_by_all_keys_of_the_owner(app: TestApp) {
    let api = api(&app).await;
    let (a, _) = key(&app, &api, json!({})).await;
    let (b, _) = key(&app, &api, json!({})).await;
    let (other, _) = key(&app, &api, json!({"owner": "zeta"})).await;
    let limits =
        json!({"ratelimits": [{"name": "owner-minute", "limit": 3, "duration_ms": 60000}]});
    let set = app
        .ok(
            Method::PUT,
            "/v1/owners/acme/ratelimits",
            Some(limits.clone()),
        )
        .await;
    assert_eq!(set, limits);
    assert_eq!(
        app.ok(Method::GET, "/v1/owners/acme/ratelimits", None)
            .await,
        limits
    );
    assert_eq!(app.verify_code(json!({"key": a})).await, "VALID");
    assert_eq!(app.verify_code(json!({"key": b})).await, "VALID");
    assert_eq!(app.verify_code(json!({"key": a})).await, "VALID");
    assert_eq!(app.verify_code(json!({"key": b})).await, "RATE_LIMITED");
    assert_eq!(app.verify_code(json!({"key": a})).await, "RATE_LIMITED");
    for _ in 0..5 {
        assert_eq!(app.verify_code(json!({"key": other})).await, "VALID");
    }
    // Removing the owner limits applies on the next verify.
    app.ok(
        Method::PUT,
        "/v1/owners/acme/ratelimits",
        Some(json!({"ratelimits": []})),
    )
    .await;
    assert_eq!(app.verify_code(json!({"key": a})).await, "VALID");
    let bad = json!({"ratelimits": [{"name": "x", "limit": 0, "duration_ms": 1000}]});
    let (s, _) = app
        .call(
            Method::PUT,
            "/v1/owners/acme/ratelimits",
            Some(&app.root),
            Some(bad),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

async fn credits_are_never_overspent_under_concurrent_verifies(app: TestApp) {
    let api = api(&app).await;
    let (k, id) = key(&app, &api, json!({"credits": {"remaining": 50}})).await;
    let app = std::sync::Arc::new(app);
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let app = std::sync::Arc::clone(&app);
        let k = k.clone();
        tasks.push(tokio::spawn(async move {
            app.verify_code(json!({"key": k})).await
        }));
    }
    let mut valid = 0;
    let mut exceeded = 0;
    for task in tasks {
        match task.await.unwrap().as_str() {
            "VALID" => valid += 1,
            "USAGE_EXCEEDED" => exceeded += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!((valid, exceeded), (50, 14));
    let v = app.verify(json!({"key": k})).await;
    assert_eq!(
        (v["code"].clone(), v["credits_remaining"].clone()),
        (json!("USAGE_EXCEEDED"), json!(0))
    );
    let record = app.ok(Method::GET, &format!("/v1/keys/{id}"), None).await;
    assert_eq!(record["credits"]["remaining"], 0);
    // Topping up applies at once.
    app.ok(
        Method::PATCH,
        &format!("/v1/keys/{id}"),
        Some(json!({"credits": {"remaining": 2}})),
    )
    .await;
    assert_eq!(app.verify_code(json!({"key": k})).await, "VALID");
    assert_eq!(app.verify_code(json!({"key": k})).await, "VALID");
    assert_eq!(app.verify_code(json!({"key": k})).await, "USAGE_EXCEEDED");
    // And null makes the key unmetered.
    app.ok(
        Method::PATCH,
        &format!("/v1/keys/{id}"),
        Some(json!({"credits": null})),
    )
    .await;
    let v = app.verify(json!({"key": k})).await;
    assert_eq!(
        (v["code"].clone(), v["credits_remaining"].clone()),
        (json!("VALID"), Value::Null)
    );
}

async fn ip_allowlists_admit_only_their_ranges(app: TestApp) {
    let api = api(&app).await;
    let (k, id) = key(
        &app,
        &api,
        json!({"ip_allowlist": ["10.0.0.0/8", "2001:db8::/32", "192.0.2.7"]}),
    )
    .await;
    for (ip, expected) in [
        (Some("10.1.2.3"), "VALID"),
        (Some("::ffff:10.1.2.3"), "VALID"),
        (Some("2001:db8:1::5"), "VALID"),
        (Some("192.0.2.7"), "VALID"),
        (Some("192.0.2.8"), "IP_NOT_ALLOWED"),
        (Some("11.0.0.1"), "IP_NOT_ALLOWED"),
        (Some("2001:db9::1"), "IP_NOT_ALLOWED"),
        (None, "IP_NOT_ALLOWED"),
    ] {
        let body = match ip {
            Some(ip) => json!({"key": k, "ip": ip}),
            None => json!({"key": k}),
        };
        assert_eq!(app.verify_code(body).await, expected, "{ip:?}");
    }
    let record = app.ok(Method::GET, &format!("/v1/keys/{id}"), None).await;
    assert_eq!(
        record["ip_allowlist"],
        json!(["10.0.0.0/8", "2001:db8::/32", "192.0.2.7/32"])
    );
    let (s, _) = app
        .call(
            Method::POST,
            "/v1/keys/verify",
            Some(&app.root),
            Some(json!({"key": k, "ip": "not-an-ip"})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    for bad in [json!(["10.0.0.0/33"]), json!(["banana"]), json!(["::/129"])] {
        let body = json!({"api_id": api, "environment": "live", "owner": "a", "ip_allowlist": bad});
        let (s, v) = app
            .call(Method::POST, "/v1/keys", Some(&app.root), Some(body))
            .await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("INVALID_REQUEST"))
        );
    }
    // Opening the allowlist to everyone: /0 for each family.
    app.ok(
        Method::PATCH,
        &format!("/v1/keys/{id}"),
        Some(json!({"ip_allowlist": ["0.0.0.0/0", "::/0"]})),
    )
    .await;
    assert_eq!(
        app.verify_code(json!({"key": k, "ip": "203.0.113.1"}))
            .await,
        "VALID"
    );
    assert_eq!(
        app.verify_code(json!({"key": k, "ip": "2001:db9::1"}))
            .await,
        "VALID"
    );
}

async fn changes_apply_on_the_next_verify_with_a_warm_cache(app: TestApp) {
    let api = api(&app).await;
    let (k, id) = key(&app, &api, json!({})).await;
    let path = format!("/v1/keys/{id}");
    assert_eq!(app.verify_code(json!({"key": k})).await, "VALID"); // now cached
    app.ok(Method::PATCH, &path, Some(json!({"enabled": false})))
        .await;
    assert_eq!(app.verify_code(json!({"key": k})).await, "DISABLED");
    app.ok(
        Method::PATCH,
        &path,
        Some(json!({"enabled": true, "scopes": ["orders:write"]})),
    )
    .await;
    assert_eq!(
        app.verify_code(json!({"key": k, "scopes": ["prices:read"]}))
            .await,
        "INSUFFICIENT_SCOPE"
    );
    let bulk = json!({"owner": "acme", "reason": "incident"});
    app.ok(Method::POST, "/v1/keys/bulk-revoke", Some(bulk))
        .await;
    assert_eq!(app.verify_code(json!({"key": k})).await, "REVOKED");
    // Rotation with no grace, after the old key was cached.
    let (k2, id2) = key(&app, &api, json!({})).await;
    assert_eq!(app.verify_code(json!({"key": k2})).await, "VALID");
    app.ok(Method::POST, &format!("/v1/keys/{id2}/rotate"), None)
        .await;
    assert_eq!(app.verify_code(json!({"key": k2})).await, "EXPIRED");
}

async fn limit_changes_apply_on_the_next_verify(app: TestApp) {
    let api = api(&app).await;
    let (k, id) = key(&app, &api, json!({})).await;
    let path = format!("/v1/keys/{id}");
    for _ in 0..3 {
        assert_eq!(app.verify_code(json!({"key": k})).await, "VALID");
    }
    let limits = json!({"ratelimits": [{"name": "m", "limit": 1, "duration_ms": 60000}]});
    app.ok(Method::PATCH, &path, Some(limits)).await;
    assert_eq!(app.verify_code(json!({"key": k})).await, "VALID");
    assert_eq!(app.verify_code(json!({"key": k})).await, "RATE_LIMITED");
    app.ok(Method::PATCH, &path, Some(json!({"ratelimits": []})))
        .await;
    assert_eq!(app.verify_code(json!({"key": k})).await, "VALID");
}

async fn credits_and_limits_survive_a_restart(backend: Backend) {
    let mut first = support::spawn(backend).await;
    let api = api(&first).await;
    let (k, id) = key(
        &first,
        &api,
        json!({"credits": {"remaining": 10},
               "ratelimits": [{"name": "m", "limit": 100, "duration_ms": 60000}]}),
    )
    .await;
    for _ in 0..3 {
        assert_eq!(first.verify_code(json!({"key": k})).await, "VALID");
    }
    first.stop().await; // a clean shutdown gives back the unused lease
    let root = first.root.clone();
    let store = first.inner_store();
    let dir = first.backend_dir.take().unwrap();
    let second = support::spawn_on(
        store,
        first.db_file.clone(),
        dir,
        VerifySettings::default(),
        Some(root),
    )
    .await;
    let record = second
        .ok(Method::GET, &format!("/v1/keys/{id}"), None)
        .await;
    assert_eq!(record["credits"]["remaining"], 7);
    assert_eq!(record["ratelimits"][0]["limit"], 100);
    let mut valid = 0;
    for _ in 0..10 {
        let v = second.verify(json!({"key": k})).await;
        if v["code"] == "VALID" {
            valid += 1;
            assert_eq!(v["ratelimit"]["limit"], 100);
        } else {
            assert_eq!(v["code"], "USAGE_EXCEEDED");
        }
    }
    assert_eq!(valid, 7, "exactly the credits left before the restart");
}

async fn a_crash_never_hands_out_more_credits_than_the_quota(backend: Backend) {
    let mut first = support::spawn(backend).await;
    let api = api(&first).await;
    let (k, _) = key(&first, &api, json!({"credits": {"remaining": 10}})).await;
    let mut valid = 0;
    for _ in 0..3 {
        if first.verify_code(json!({"key": k})).await == "VALID" {
            valid += 1;
        }
    }
    // A second node on the same store while the first still holds its lease
    // (as after a crash: the lease is never given back).
    let root = first.root.clone();
    let store = first.inner_store();
    let dir = first.backend_dir.take().unwrap();
    let second = support::spawn_on(store, None, dir, VerifySettings::default(), Some(root)).await;
    for _ in 0..15 {
        if second.verify_code(json!({"key": k})).await == "VALID" {
            valid += 1;
        }
    }
    assert!(valid <= 10, "{valid} credits handed out from a quota of 10");
    assert_eq!(
        valid, 3,
        "the first node leased all ten; the second gets none"
    );
}

async fn negative_cache_cannot_hide_a_key_created_afterwards(backend: Backend) {
    let verify = VerifySettings {
        negative_ttl_ms: 300,
        ..VerifySettings::default()
    };
    let app = support::spawn_with(backend, verify).await;
    let api_id = api(&app).await;
    // A well-formed key that does not exist yet.
    let prefix = keyward_core::Prefix::parse("lim").unwrap();
    let plain =
        keyward_core::PlaintextKey::generate(&prefix, keyward_core::Environment::Live).unwrap();
    let body = json!({"key": plain.expose()});
    assert_eq!(app.verify_code(body.clone()).await, "NOT_FOUND");
    let lookups = app.store.lookups();
    for _ in 0..20 {
        assert_eq!(app.verify_code(body.clone()).await, "NOT_FOUND");
    }
    assert_eq!(
        app.store.lookups(),
        lookups,
        "unknown keys are answered from memory"
    );
    // Another node issues exactly that key.
    let template = app.ok(Method::GET, "/v1/keys?limit=1", None).await;
    assert!(template["keys"].as_array().unwrap().is_empty());
    let now = OffsetDateTime::now_utc();
    let mut record = keyward_core::KeyRecord::new(
        keyward_core::ApiId::parse(&api_id).unwrap(),
        keyward_core::Environment::Live,
        "acme".into(),
        &plain,
        now,
    )
    .unwrap();
    record.name = "elsewhere".into();
    let event = keyward_core::AuditEvent {
        id: keyward_core::EventId::generate(now).unwrap(),
        at: now,
        actor: None,
        action: "key.create".into(),
        target: record.id.to_string(),
        details: json!({}),
    };
    app.inner_store().create_key(&record, &event).await.unwrap();
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(
        app.verify_code(body).await,
        "VALID",
        "the negative entry expired"
    );
}

async fn cache_ttl_bounds_staleness_of_changes_made_elsewhere(backend: Backend) {
    let verify = VerifySettings {
        cache_ttl_ms: 300,
        // The change feed is not read in time: only the TTL can help.
        change_poll_interval_ms: 3_600_000,
        ..VerifySettings::default()
    };
    let app = support::spawn_with(backend, verify).await;
    let api = api(&app).await;
    let (k, id) = key(&app, &api, json!({})).await;
    assert_eq!(app.verify_code(json!({"key": k})).await, "VALID");
    // Another node revokes it: this node hears nothing but the TTL.
    let now = OffsetDateTime::now_utc();
    let event = keyward_core::AuditEvent {
        id: keyward_core::EventId::generate(now).unwrap(),
        at: now,
        actor: None,
        action: "key.revoke".into(),
        target: id.clone(),
        details: json!({}),
    };
    let key_id = keyward_core::KeyId::parse(&id).unwrap();
    app.inner_store()
        .revoke_key(&key_id, "elsewhere", now, &event)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(app.verify_code(json!({"key": k})).await, "REVOKED");
}

/// Polls `check` until it holds or `within` passes.
async fn eventually<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Two nodes on one store, caches warm and trusted for an hour: what an
/// operator changes through one node reaches the other through the feed.
async fn changes_made_on_another_node_arrive_through_the_change_feed(backend: Backend) {
    let verify = VerifySettings {
        cache_ttl_ms: 3_600_000,
        negative_ttl_ms: 3_600_000,
        change_poll_interval_ms: 50,
        ..VerifySettings::default()
    };
    let (a, b) = two_nodes(backend, verify).await;
    let api = api(&a).await;
    let (revoked, revoked_id) = key(&a, &api, json!({})).await;
    let (limited, limited_id) = key(&a, &api, json!({"owner": "zeta"})).await;
    let token = a
        .token(json!({"name": "svc", "scopes": ["keys:verify"]}))
        .await;
    let token_id = a.ok(Method::GET, "/v1/tokens", None).await["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "svc")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Node B caches everything.
    assert_eq!(b.verify_code(json!({"key": revoked})).await, "VALID");
    assert_eq!(b.verify_code(json!({"key": limited})).await, "VALID");
    let verify_with = |token: String, key: String| {
        let b = &b;
        async move {
            b.call(
                Method::POST,
                "/v1/keys/verify",
                Some(&token),
                Some(json!({ "key": key })),
            )
            .await
            .0
        }
    };
    assert_eq!(
        verify_with(token.clone(), limited.clone()).await,
        StatusCode::OK
    );

    // Node A revokes a key, narrows another's scopes, limits its owner to
    // nothing and revokes the token.
    a.ok(
        Method::POST,
        &format!("/v1/keys/{revoked_id}/revoke"),
        Some(json!({"reason": "incident"})),
    )
    .await;
    a.ok(
        Method::PATCH,
        &format!("/v1/keys/{limited_id}"),
        Some(json!({"scopes": []})),
    )
    .await;
    a.ok(
        Method::POST,
        &format!("/v1/tokens/{token_id}/revoke"),
        Some(json!({})),
    )
    .await;

    let within = Duration::from_secs(10);
    assert!(
        eventually(within, || async {
            b.verify_code(json!({"key": revoked})).await == "REVOKED"
        })
        .await,
        "revocation reached node B"
    );
    assert!(
        eventually(within, || async {
            b.verify_code(json!({"key": limited, "scopes": ["prices:read"]}))
                .await
                == "INSUFFICIENT_SCOPE"
        })
        .await,
        "the scope change reached node B"
    );
    assert!(
        eventually(within, || async {
            verify_with(token.clone(), limited.clone()).await == StatusCode::UNAUTHORIZED
        })
        .await,
        "the token revocation reached node B"
    );

    // Owner limits set through A apply on B.
    a.ok(
        Method::PUT,
        "/v1/owners/zeta/ratelimits",
        Some(json!({"ratelimits": [{"name": "burst", "limit": 1, "duration_ms": 3_600_000}]})),
    )
    .await;
    assert!(
        eventually(within, || async {
            b.verify_code(json!({"key": limited})).await == "RATE_LIMITED"
        })
        .await,
        "the owner's limit reached node B"
    );
}

async fn usage_is_counted_in_memory_and_flushed_in_batches(backend: Backend) {
    let verify = VerifySettings {
        usage_flush_interval_ms: 3_600_000,
        ..VerifySettings::default()
    };
    let mut app = support::spawn_with(backend, verify.clone()).await;
    let api = api(&app).await;
    let (k, id) = key(&app, &api, json!({})).await;
    let writes = app.store.writes();
    for _ in 0..50 {
        assert_eq!(app.verify_code(json!({"key": k})).await, "VALID");
    }
    for _ in 0..2 {
        let body = json!({"key": k, "scopes": ["orders:write"]});
        assert_eq!(app.verify_code(body).await, "INSUFFICIENT_SCOPE");
    }
    // A change reloads the cached record; counts of both copies add up.
    app.ok(
        Method::PATCH,
        &format!("/v1/keys/{id}"),
        Some(json!({"name": "renamed"})),
    )
    .await;
    for _ in 0..10 {
        assert_eq!(app.verify_code(json!({"key": k})).await, "VALID");
    }
    assert_eq!(app.store.writes(), writes, "no write per verify");
    let record = app.ok(Method::GET, &format!("/v1/keys/{id}"), None).await;
    assert_eq!(record["last_used_at"], Value::Null, "nothing flushed yet");
    let before_stop = now_ms();
    app.stop().await;
    assert_eq!(app.store.writes(), writes + 1, "one batch at shutdown");
    let store = app.inner_store();
    let key_id = keyward_core::KeyId::parse(&id).unwrap();
    let last = store
        .get_key(&key_id)
        .await
        .unwrap()
        .unwrap()
        .last_used_at
        .unwrap();
    assert!((last.unix_timestamp_nanos() / 1_000_000) as i64 <= before_stop);

    // What was flushed is what the usage endpoint of the next node shows.
    let root = app.root.clone();
    let dir = app.backend_dir.take().unwrap();
    let next = support::spawn_on(store, app.db_file.clone(), dir, verify, Some(root)).await;
    let usage = |query: String| {
        let next = &next;
        let id = &id;
        async move {
            next.ok(Method::GET, &format!("/v1/keys/{id}/usage{query}"), None)
                .await["usage"]
                .as_array()
                .unwrap()
                .clone()
        }
    };
    let count = |usage: &[Value], code: &str| {
        usage
            .iter()
            .filter(|u| u["code"] == code)
            .map(|u| u["count"].as_u64().unwrap())
            .sum::<u64>()
    };
    let today = usage(String::new()).await;
    assert_eq!(
        (count(&today, "VALID"), count(&today, "INSUFFICIENT_SCOPE")),
        (60, 2)
    );
    let minute = today[0]["minute"].as_i64().unwrap();
    assert_eq!(minute % 60, 0, "minutes are given by their first second");
    // A span is read from the minute holding `since` to the one holding
    // `until`.
    let that_minute = usage(format!("?since={}&until={}", minute + 59, minute + 59)).await;
    let in_that_minute: Vec<Value> = today
        .iter()
        .filter(|u| u["minute"] == minute)
        .cloned()
        .collect();
    assert!(!that_minute.is_empty());
    assert_eq!(that_minute, in_that_minute);
    let all_of_it = usage(format!("?since={}", minute - 3600)).await;
    assert_eq!(all_of_it, today);
    let before = usage(format!("?since={}&until={}", minute - 3600, minute - 1)).await;
    assert_eq!(before, Vec::<Value>::new());
    for query in [
        format!("?since={}&until={}", minute, minute - 60),
        format!("?since={}&until={}", minute - 8 * 24 * 3600, minute),
        "?since=-5".to_owned(),
        "?since=yesterday".to_owned(),
    ] {
        let (status, body) = next
            .call(
                Method::GET,
                &format!("/v1/keys/{id}/usage{query}"),
                Some(&next.root.clone()),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert_eq!(body["error"]["code"], "INVALID_REQUEST", "{query}");
    }
}

/// The change feed brings a node's own changes back after they were
/// applied and acknowledged. A lease taken in between is of the new credit
/// period and stays good: the echo must not refuse verifies it pays for.
async fn the_feed_echo_of_a_credit_change_keeps_the_lease_taken_since(app: TestApp) {
    let api = api(&app).await;
    let (k, id) = key(&app, &api, json!({"credits": {"remaining": 5}})).await;
    assert_eq!(app.verify_code(json!({"key": k})).await, "VALID");
    app.ok(
        Method::PATCH,
        &format!("/v1/keys/{id}"),
        Some(json!({"credits": {"remaining": 2}})),
    )
    .await;
    // The first verify leases both credits of the new period.
    assert_eq!(app.verify_code(json!({"key": k})).await, "VALID");
    // Then the feed delivers the PATCH, as it does on every node.
    let digest = keyward_core::ParsedKey::parse(&k).unwrap().digest();
    app.verifier.key_changed_elsewhere(&digest);
    assert_eq!(app.verify_code(json!({"key": k})).await, "VALID");
    assert_eq!(app.verify_code(json!({"key": k})).await, "USAGE_EXCEEDED");
}

/// A node holding leased credits while another node resets them: the
/// credits of the old period are void once the change arrives, and the
/// node hands out exactly the new amount.
async fn a_credit_reset_on_another_node_voids_this_nodes_lease(backend: Backend) {
    let verify = VerifySettings {
        change_poll_interval_ms: 50,
        credit_block: 100,
        ..VerifySettings::default()
    };
    let (a, b) = two_nodes(backend, verify).await;
    let api = api(&a).await;
    let (k, id) = key(&a, &api, json!({"credits": {"remaining": 50}})).await;
    // Node B leases all 50 and spends one.
    assert_eq!(b.verify_code(json!({"key": k})).await, "VALID");
    // Node A resets the key to 3 credits.
    a.ok(
        Method::PATCH,
        &format!("/v1/keys/{id}"),
        Some(json!({"credits": {"remaining": 3}})),
    )
    .await;
    // Until B reads the change it spends its lease (staleness the feed
    // bounds); once it has, it hands out the 3 and no more.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let v = b.verify(json!({"key": k})).await;
        if v["credits_remaining"].as_u64().is_some_and(|c| c <= 3) {
            assert_eq!(v["code"], "VALID");
            assert_eq!(v["credits_remaining"], 2);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the reset never arrived"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(b.verify_code(json!({"key": k})).await, "VALID");
    assert_eq!(b.verify_code(json!({"key": k})).await, "VALID");
    assert_eq!(b.verify_code(json!({"key": k})).await, "USAGE_EXCEEDED");
}

/// Sends a verify of `key` with `token` on its own task.
fn verify_in_background(app: &TestApp, token: &str, key: &str) -> tokio::task::JoinHandle<Value> {
    let request = app
        .client
        .post(format!("{}/v1/keys/verify", app.base))
        .bearer_auth(token)
        .json(&json!({ "key": key }));
    tokio::spawn(async move {
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let mut body: Value = response.json().await.unwrap();
        body["status"] = json!(status);
        body
    })
}

async fn a_lookup_that_read_before_a_revocation_cannot_cache_the_key(app: TestApp) {
    let api_id = api(&app).await;
    let (plain, id) = key(&app, &api_id, json!({})).await;
    // A verify misses the cache and reads the key while it is still live;
    // its answer is held until the revocation has been acknowledged.
    let (held, release) = app.store.key_gate.arm();
    let early = verify_in_background(&app, &app.root, &plain);
    held.await.unwrap();
    app.ok(Method::POST, &format!("/v1/keys/{id}/revoke"), None)
        .await;
    release.send(()).unwrap();
    // It began before the revocation, so either answer is right for it.
    let early = early.await.unwrap();
    assert!(
        early["code"] == "VALID" || early["code"] == "REVOKED",
        "{early}"
    );
    // What it read must not outlive the revocation in the cache.
    assert_eq!(
        app.verify_code(json!({ "key": plain })).await,
        "REVOKED",
        "a revocation is visible to the next verify after it returns"
    );
}

async fn a_token_lookup_that_read_before_a_revocation_cannot_cache_the_token(app: TestApp) {
    let api_id = api(&app).await;
    let (plain, _) = key(&app, &api_id, json!({})).await;
    let created = app
        .ok(
            Method::POST,
            "/v1/tokens",
            Some(json!({"name": "verifier", "scopes": ["keys:verify"]})),
        )
        .await;
    let token = created["token"].as_str().unwrap().to_owned();
    let token_id = created["id"].as_str().unwrap().to_owned();
    let (held, release) = app.store.token_gate.arm();
    let early = verify_in_background(&app, &token, &plain);
    held.await.unwrap();
    app.ok(Method::POST, &format!("/v1/tokens/{token_id}/revoke"), None)
        .await;
    release.send(()).unwrap();
    let early = early.await.unwrap();
    assert!(early["status"] == 200 || early["status"] == 401, "{early}");
    let (status, body) = app
        .call(
            Method::POST,
            "/v1/keys/verify",
            Some(&token),
            Some(json!({ "key": plain })),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
}

async fn every_answer_read_from_the_store_is_cached(app: TestApp) {
    let api_id = api(&app).await;
    let mut keys = Vec::new();
    for _ in 0..20 {
        keys.push(key(&app, &api_id, json!({})).await.0);
    }
    let unknown = keyward_core::PlaintextKey::generate(
        &keyward_core::Prefix::parse("lim").unwrap(),
        keyward_core::Environment::Live,
    )
    .unwrap();
    keys.push(unknown.expose().to_owned());
    // The change feed brings this node's own creations back; a lookup in
    // flight when the echo of its key arrives is not cached, so let it pass.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let first: Vec<_> = keys
        .iter()
        .map(|k| verify_in_background(&app, &app.root, k))
        .collect();
    for (verified, plain) in first.into_iter().zip(&keys) {
        let expected = if *plain == keys[20] {
            "NOT_FOUND"
        } else {
            "VALID"
        };
        assert_eq!(verified.await.unwrap()["code"], expected);
    }
    // Each answer was cached, the unknown key's as unknown, although other
    // keys changed since the server started.
    let lookups = app.store.lookups();
    for plain in &keys {
        app.verify(json!({ "key": plain })).await;
    }
    assert_eq!(app.store.lookups(), lookups);
}
