//! Key roles and critical scopes over HTTP, on both backends: a key carries
//! its roles' scopes at verify, a role changed through the API reaches keys
//! already cached on this node and on a second node of the same store, a
//! role an API does not define is refused (another API's included), a role
//! keys still hold cannot be removed, and the API's critical scopes are
//! stored, checked and shown.

#![allow(clippy::unwrap_used, clippy::expect_used)] // A panic in a test is a failed test.

mod support;

use std::time::{Duration, Instant};

use keyward_server::settings::VerifySettings;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::{Backend, TestApp};

on_both_backends!(
    a_key_carries_the_scopes_of_its_roles_and_a_role_change_reaches_it_at_once,
    roles_and_critical_scopes_are_checked_and_shown,
    a_role_the_keys_api_does_not_define_is_refused,
    a_role_keys_hold_cannot_be_removed_until_none_does,
    changing_an_api_needs_apis_write_and_every_environment_of_it,
    a_role_change_is_audited_with_what_changed,
    the_openapi_document_describes_roles_and_critical_scopes,
    keys_issued_while_their_role_is_removed_never_hold_an_undefined_role,
    the_verify_answer_names_the_critical_scopes_a_key_carries,
);
on_both_backends_raw!(a_role_changed_on_one_node_reaches_a_verify_on_a_second_node);

/// An exchange's API: `trader` reads prices and places orders, `viewer`
/// only reads; withdrawals are critical.
async fn exchange(app: &TestApp, prefix: &str) -> String {
    let api = app
        .ok(
            Method::POST,
            "/v1/apis",
            Some(json!({
                "name": format!("{prefix} exchange"),
                "prefix": prefix,
                "environments": ["live", "test"],
                "roles": {
                    "trader": ["prices:read", "orders:write"],
                    "viewer": ["prices:read"],
                },
                "critical_scopes": ["withdrawals:write"],
            })),
        )
        .await;
    api["id"].as_str().unwrap().to_owned()
}

async fn key_with(app: &TestApp, api: &str, roles: &[&str], scopes: &[&str]) -> (String, String) {
    let k = app
        .create_key(json!({
            "api_id": api, "environment": "live", "owner": "acme",
            "roles": roles, "scopes": scopes,
        }))
        .await;
    (
        k["key"].as_str().unwrap().to_owned(),
        k["id"].as_str().unwrap().to_owned(),
    )
}

async fn verify_scope(app: &TestApp, key: &str, scope: &str) -> String {
    app.verify_code(json!({"key": key, "scopes": [scope]}))
        .await
}

async fn set_roles(app: &TestApp, api: &str, roles: Value) -> (StatusCode, Value) {
    app.call(
        Method::PATCH,
        &format!("/v1/apis/{api}"),
        Some(&app.root),
        Some(json!({ "roles": roles })),
    )
    .await
}

async fn a_key_carries_the_scopes_of_its_roles_and_a_role_change_reaches_it_at_once(app: TestApp) {
    let api = exchange(&app, "rx").await;
    let (key, id) = key_with(&app, &api, &["trader"], &["me:read"]).await;

    let view = app.ok(Method::GET, &format!("/v1/keys/{id}"), None).await;
    assert_eq!(view["roles"], json!(["trader"]));
    assert_eq!(
        view["scopes"],
        json!(["me:read"]),
        "its own scopes stay its own"
    );

    for scope in ["me:read", "prices:read", "orders:write"] {
        assert_eq!(verify_scope(&app, &key, scope).await, "VALID", "{scope}");
    }
    assert_eq!(
        verify_scope(&app, &key, "withdrawals:write").await,
        "INSUFFICIENT_SCOPE"
    );
    let answer = app.verify(json!({"key": key})).await;
    assert_eq!(
        answer["scopes"],
        json!(["me:read", "orders:write", "prices:read"]),
        "the verify answer shows what the key carries in effect"
    );

    // The key is cached now. Taking orders:write from the role takes it
    // from the key at its next verify.
    let lookups = app.store.lookups();
    assert_eq!(verify_scope(&app, &key, "orders:write").await, "VALID");
    assert_eq!(app.store.lookups(), lookups, "answered from the cache");
    let (status, body) = set_roles(
        &app,
        &api,
        json!({"trader": ["prices:read"], "viewer": ["prices:read"]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["roles"]["trader"], json!(["prices:read"]));
    assert_eq!(
        verify_scope(&app, &key, "orders:write").await,
        "INSUFFICIENT_SCOPE"
    );
    assert_eq!(verify_scope(&app, &key, "prices:read").await, "VALID");

    // Granting more through the role grants it to the key.
    let (status, _) = set_roles(
        &app,
        &api,
        json!({"trader": ["prices:read", "orders:write", "withdrawals:write"], "viewer": ["prices:read"]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    // The key carries the scope now; it is critical, so using it needs the
    // owner's one-time code (tests/signing.rs has the rest of that).
    assert_eq!(
        verify_scope(&app, &key, "withdrawals:write").await,
        "MFA_REQUIRED"
    );

    // Taking the role from the key leaves its own scopes.
    let (status, body) = app
        .call(
            Method::PATCH,
            &format!("/v1/keys/{id}"),
            Some(&app.root),
            Some(json!({"roles": []})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["roles"], json!([]));
    assert_eq!(
        verify_scope(&app, &key, "prices:read").await,
        "INSUFFICIENT_SCOPE"
    );
    assert_eq!(verify_scope(&app, &key, "me:read").await, "VALID");

    // A key of another API, cached, is not touched by this API's change.
    let other = exchange(&app, "ry").await;
    let (other_key, _) = key_with(&app, &other, &["viewer"], &[]).await;
    assert_eq!(verify_scope(&app, &other_key, "prices:read").await, "VALID");
    let (status, _) = set_roles(&app, &api, json!({"trader": ["prices:read"]})).await;
    assert_eq!(status, StatusCode::OK);
    let lookups = app.store.lookups();
    assert_eq!(verify_scope(&app, &other_key, "prices:read").await, "VALID");
    assert_eq!(app.store.lookups(), lookups, "other APIs' keys stay cached");
}

async fn roles_and_critical_scopes_are_checked_and_shown(app: TestApp) {
    let api = exchange(&app, "rc").await;
    let view = app.ok(Method::GET, &format!("/v1/apis/{api}"), None).await;
    assert_eq!(
        view["roles"],
        json!({"trader": ["orders:write", "prices:read"], "viewer": ["prices:read"]})
    );
    assert_eq!(view["critical_scopes"], json!(["withdrawals:write"]));
    let list = app.ok(Method::GET, "/v1/apis", None).await;
    assert_eq!(
        list["apis"][0]["critical_scopes"],
        json!(["withdrawals:write"])
    );

    // An API made without them shows them empty.
    let plain = app.create_api("rp", &["live"]).await;
    let view = app
        .ok(Method::GET, &format!("/v1/apis/{plain}"), None)
        .await;
    assert_eq!(view["roles"], json!({}));
    assert_eq!(view["critical_scopes"], json!([]));

    let prefix = keyward_core::Prefix::parse("rc").unwrap();
    let pasted = keyward_core::PlaintextKey::generate(&prefix, keyward_core::Environment::Live)
        .unwrap()
        .expose()
        .to_owned();
    let too_many: serde_json::Map<String, Value> =
        (0..65).map(|i| (format!("r{i}"), json!(["a:b"]))).collect();
    let refused = [
        (json!({"roles": {"has space": ["a:b"]}}), "role name"),
        (json!({"roles": {"": ["a:b"]}}), "role name"),
        (json!({"roles": {"r".repeat(65): ["a:b"]}}), "role name"),
        (json!({"roles": {"ctl\u{7}": ["a:b"]}}), "role name"),
        (json!({"roles": {pasted.clone(): ["a:b"]}}), "API key"),
        (json!({"roles": {"trader": ["not a scope"]}}), "scope"),
        (json!({"roles": {"trader": [pasted.clone()]}}), "API key"),
        (json!({"roles": too_many}), "at most 64 roles"),
        (json!({"critical_scopes": ["with space"]}), "scope"),
        (json!({"critical_scopes": [""]}), "scope"),
        (json!({"critical_scopes": [pasted.clone()]}), "API key"),
        (json!({"roles": ["trader"]}), "roles"),
    ];
    for (i, (fields, says)) in refused.iter().enumerate() {
        for (method, path, mut body) in [
            (
                Method::POST,
                "/v1/apis".to_owned(),
                json!({"name": "bad", "prefix": format!("bad{i}")}),
            ),
            (Method::PATCH, format!("/v1/apis/{api}"), json!({})),
        ] {
            for (k, v) in fields.as_object().unwrap() {
                body[k] = v.clone();
            }
            let (status, answer) = app.call(method, &path, Some(&app.root), Some(body)).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{fields} {answer}");
            assert_eq!(answer["error"]["code"], "INVALID_REQUEST");
            let message = answer["error"]["message"].as_str().unwrap();
            assert!(message.contains(says), "{fields}: {message}");
            assert!(!message.contains(&pasted), "{message}");
        }
    }
    // Nothing refused changed the API.
    let after = app.ok(Method::GET, &format!("/v1/apis/{api}"), None).await;
    assert_eq!(after["roles"], view_roles());
    assert_eq!(after["critical_scopes"], json!(["withdrawals:write"]));

    // Critical scopes are replaced, sorted and deduplicated, and cleared.
    let (status, body) = app
        .call(
            Method::PATCH,
            &format!("/v1/apis/{api}"),
            Some(&app.root),
            Some(json!({"critical_scopes": ["b:write", "a:write", "b:write"]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["critical_scopes"], json!(["a:write", "b:write"]));
    assert_eq!(body["roles"], view_roles(), "roles left out stay");
    let body = app
        .ok(
            Method::PATCH,
            &format!("/v1/apis/{api}"),
            Some(json!({"critical_scopes": [], "name": "renamed"})),
        )
        .await;
    assert_eq!(body["critical_scopes"], json!([]));
    assert_eq!(body["name"], "renamed");

    // An absent or malformed API is 404.
    for path in ["/v1/apis/api_0000000000000000000000", "/v1/apis/nonsense"] {
        let (status, _) = app
            .call(
                Method::PATCH,
                path,
                Some(&app.root),
                Some(json!({"name": "x"})),
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
}

fn view_roles() -> Value {
    json!({"trader": ["orders:write", "prices:read"], "viewer": ["prices:read"]})
}

async fn a_role_the_keys_api_does_not_define_is_refused(app: TestApp) {
    let api = exchange(&app, "ru").await;
    let other = app
        .ok(
            Method::POST,
            "/v1/apis",
            Some(json!({
                "name": "admin api", "prefix": "rv", "roles": {"admin": ["everything:write"]},
            })),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let plain = app.create_api("rw", &["live"]).await;
    let create = |api: &str, roles: Value| json!({"api_id": api, "environment": "live", "owner": "acme", "roles": roles});
    let cases = [
        // A role of another API is no role of this one.
        (create(&api, json!(["admin"])), "roles[0]"),
        (create(&api, json!(["viewer", "gone"])), "roles[1]"),
        (create(&plain, json!(["trader"])), "defines no roles"),
        (create(&api, json!(["bad name"])), "role name"),
        (create(&other, json!(["trader"])), "its roles are admin"),
    ];
    for (body, says) in &cases {
        let (status, answer) = app
            .call(
                Method::POST,
                "/v1/keys",
                Some(&app.root),
                Some(body.clone()),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body} {answer}");
        assert_eq!(answer["error"]["code"], "INVALID_REQUEST");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{message}");
        assert!(!message.contains("gone"), "the value given is not repeated");
    }
    let listed = app.ok(Method::GET, "/v1/keys", None).await;
    assert!(
        listed["keys"].as_array().unwrap().is_empty(),
        "no key was issued"
    );

    // The same on update; a refused update changes nothing.
    let (key, id) = key_with(&app, &api, &["viewer"], &[]).await;
    let (status, answer) = app
        .call(
            Method::PATCH,
            &format!("/v1/keys/{id}"),
            Some(&app.root),
            Some(json!({"roles": ["admin"], "scopes": ["x:y"]})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(answer["error"]["message"]
        .as_str()
        .unwrap()
        .contains("roles[0]"));
    let view = app.ok(Method::GET, &format!("/v1/keys/{id}"), None).await;
    assert_eq!(view["roles"], json!(["viewer"]));
    assert_eq!(view["scopes"], json!([]));
    assert_eq!(verify_scope(&app, &key, "prices:read").await, "VALID");

    // Roles are kept sorted and once each; a rotation keeps them.
    let view = app
        .ok(
            Method::PATCH,
            &format!("/v1/keys/{id}"),
            Some(json!({"roles": ["viewer", "trader", "viewer"]})),
        )
        .await;
    assert_eq!(view["roles"], json!(["trader", "viewer"]));
    let rotated = app
        .ok(
            Method::POST,
            &format!("/v1/keys/{id}/rotate"),
            Some(json!({"grace_period_seconds": 60})),
        )
        .await;
    assert_eq!(rotated["roles"], json!(["trader", "viewer"]));
    let successor = rotated["key"].as_str().unwrap();
    assert_eq!(verify_scope(&app, successor, "orders:write").await, "VALID");
}

async fn a_role_keys_hold_cannot_be_removed_until_none_does(app: TestApp) {
    let api = exchange(&app, "rr").await;
    let (key, a) = key_with(&app, &api, &["trader"], &[]).await;
    let (_, b) = key_with(&app, &api, &["trader", "viewer"], &[]).await;
    // A key of another API holding a role of the same name does not count.
    let other = exchange(&app, "rs").await;
    key_with(&app, &other, &["trader"], &[]).await;

    let (status, body) = set_roles(&app, &api, json!({"viewer": ["prices:read"]})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "CONFLICT");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("trader") && message.contains("2 unrevoked"),
        "{message}"
    );
    // Nothing changed, and the keys still carry the role.
    let view = app.ok(Method::GET, &format!("/v1/apis/{api}"), None).await;
    assert_eq!(view["roles"], view_roles());
    assert_eq!(verify_scope(&app, &key, "orders:write").await, "VALID");

    // Its scopes may change meanwhile: the role stays defined.
    let (status, _) = set_roles(
        &app,
        &api,
        json!({"trader": ["orders:write"], "viewer": ["prices:read"]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    // Once one key gives it up and the other is revoked, it can go.
    app.ok(
        Method::PATCH,
        &format!("/v1/keys/{a}"),
        Some(json!({"roles": []})),
    )
    .await;
    let (status, body) = set_roles(&app, &api, json!({"viewer": ["prices:read"]})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("1 unrevoked"));
    app.ok(
        Method::POST,
        &format!("/v1/keys/{b}/revoke"),
        Some(json!({})),
    )
    .await;
    let (status, body) = set_roles(&app, &api, json!({"viewer": ["prices:read"]})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["roles"], json!({"viewer": ["prices:read"]}));

    // The revoked key keeps naming the roles it held, for the record.
    let revoked = app.ok(Method::GET, &format!("/v1/keys/{b}"), None).await;
    assert_eq!(revoked["roles"], json!(["trader", "viewer"]));
    // Every role at once, now that no unrevoked key of this API holds one.
    let (status, body) = set_roles(&app, &api, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["roles"], json!({}));
}

async fn changing_an_api_needs_apis_write_and_every_environment_of_it(app: TestApp) {
    let api = exchange(&app, "ra").await;
    let other = exchange(&app, "rb").await;
    let body = json!({"roles": {}});
    let path = format!("/v1/apis/{api}");
    let reader = app
        .token(json!({"name": "reader", "scopes": ["apis:read", "keys:write"]}))
        .await;
    let (status, answer) = app
        .call(Method::PATCH, &path, Some(&reader), Some(body.clone()))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    let test_only = app
        .token(json!({"name": "test only", "scopes": ["apis:read", "apis:write"], "environments": ["test"]}))
        .await;
    let (status, answer) = app
        .call(Method::PATCH, &path, Some(&test_only), Some(body.clone()))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    assert!(answer["error"]["message"]
        .as_str()
        .unwrap()
        .contains("every one"));
    let other_api = app
        .token(json!({"name": "other", "scopes": ["apis:read", "apis:write"], "api_ids": [other]}))
        .await;
    let (status, _) = app
        .call(Method::PATCH, &path, Some(&other_api), Some(body.clone()))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "out of reach looks absent");
    let (status, _) = app
        .call(Method::PATCH, &path, None, Some(body.clone()))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // A token limited to this API in all its environments may.
    let own = app
        .token(json!({"name": "own", "scopes": ["apis:read", "apis:write"], "api_ids": [api]}))
        .await;
    let (status, answer) = app
        .call(
            Method::PATCH,
            &path,
            Some(&own),
            Some(json!({"critical_scopes": ["a:b"]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
}

async fn a_role_change_is_audited_with_what_changed(app: TestApp) {
    let api = exchange(&app, "rd").await;
    let (status, _) = set_roles(&app, &api, json!({"viewer": ["prices:read"]})).await;
    assert_eq!(status, StatusCode::OK);
    let audit = app
        .ok(Method::GET, "/v1/audit?action=api.update", None)
        .await;
    let events = audit["events"].as_array().unwrap();
    let event = events
        .iter()
        .find(|e| e["action"] == "api.update")
        .unwrap_or_else(|| panic!("{audit}"));
    assert_eq!(event["target"], api.as_str());
    assert_eq!(event["details"]["fields"], json!(["roles"]));
    assert_eq!(
        event["details"]["roles"],
        json!({"viewer": ["prices:read"]})
    );
    let created = app
        .ok(Method::GET, "/v1/audit?action=api.create", None)
        .await;
    let created = created["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["target"] == api.as_str())
        .cloned()
        .unwrap();
    assert_eq!(
        created["details"]["critical_scopes"],
        json!(["withdrawals:write"])
    );
}

async fn a_role_changed_on_one_node_reaches_a_verify_on_a_second_node(backend: Backend) {
    let verify = VerifySettings {
        change_poll_interval_ms: 100,
        ..VerifySettings::default()
    };
    let mut first = support::spawn_with(backend, verify.clone()).await;
    let api = exchange(&first, "rn").await;
    let (key, _) = key_with(&first, &api, &["trader"], &[]).await;
    let root = first.root.clone();
    let store = first.inner_store();
    let dir = first.backend_dir.take().unwrap();
    let db_file = first.db_file.clone();
    let second = support::spawn_on(store, db_file, dir, verify, Some(root)).await;

    // The second node caches the key with the role as it is.
    assert_eq!(verify_scope(&second, &key, "orders:write").await, "VALID");
    let lookups = second.store.lookups();
    assert_eq!(verify_scope(&second, &key, "orders:write").await, "VALID");
    assert_eq!(second.store.lookups(), lookups, "cached on the second node");

    // The first node takes orders:write from the role.
    let (status, body) = set_roles(
        &first,
        &api,
        json!({"trader": ["prices:read"], "viewer": ["prices:read"]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        verify_scope(&first, &key, "orders:write").await,
        "INSUFFICIENT_SCOPE"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let code = verify_scope(&second, &key, "orders:write").await;
        if code == "INSUFFICIENT_SCOPE" {
            break;
        }
        assert_eq!(code, "VALID");
        assert!(
            Instant::now() < deadline,
            "the second node never saw the role change"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(verify_scope(&second, &key, "prices:read").await, "VALID");

    // And back: a scope given to the role reaches the second node too.
    let (status, _) = set_roles(
        &first,
        &api,
        json!({"trader": ["prices:read", "orders:write"], "viewer": ["prices:read"]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let deadline = Instant::now() + Duration::from_secs(10);
    while verify_scope(&second, &key, "orders:write").await != "VALID" {
        assert!(
            Instant::now() < deadline,
            "the second node never saw the grant"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn the_openapi_document_describes_roles_and_critical_scopes(app: TestApp) {
    let doc = app.ok(Method::GET, "/v1/openapi.json", None).await;
    let schemas = &doc["components"]["schemas"];
    for name in ["ApiCreate", "ApiUpdate"] {
        let roles = &schemas[name]["properties"]["roles"];
        assert_eq!(
            roles["propertyNames"]["pattern"], r"^[A-Za-z0-9_.:-]{1,64}$",
            "{name}: {roles}"
        );
        assert_eq!(roles["maxProperties"], 64, "{name}: {roles}");
        let critical = &schemas[name]["properties"]["critical_scopes"];
        assert_eq!(critical["maxItems"], 64, "{name}: {critical}");
    }
    for (name, field) in [
        ("ApiView", "roles"),
        ("ApiView", "critical_scopes"),
        ("KeyCreate", "roles"),
        ("KeyUpdate", "roles"),
        ("KeyView", "roles"),
    ] {
        assert!(
            schemas[name]["properties"][field].is_object(),
            "{name}.{field} is undocumented"
        );
    }
    let patch = &doc["paths"]["/v1/apis/{id}"]["patch"];
    assert!(patch["responses"]["409"].is_object(), "{patch}");
}

async fn keys_issued_while_their_role_is_removed_never_hold_an_undefined_role(app: TestApp) {
    let app = std::sync::Arc::new(app);
    let api = exchange(&app, "rt").await;
    for round in 0..6 {
        let (status, _) = set_roles(
            &app,
            &api,
            json!({"trader": ["orders:write"], "viewer": ["prices:read"], "temp": ["t:w"]}),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let mut tasks = Vec::new();
        for i in 0..6 {
            let app = std::sync::Arc::clone(&app);
            let api = api.clone();
            tasks.push(tokio::spawn(async move {
                if i == 3 {
                    // Removing `temp` midway through the issuing.
                    set_roles(
                        &app,
                        &api,
                        json!({"trader": ["orders:write"], "viewer": ["prices:read"]}),
                    )
                    .await
                    .0
                } else {
                    let body = json!({
                        "api_id": api, "environment": "live",
                        "owner": format!("race-{round}-{i}"), "roles": ["temp"],
                    });
                    app.call(Method::POST, "/v1/keys", Some(&app.root), Some(body))
                        .await
                        .0
                }
            }));
        }
        let mut removed = false;
        for (i, task) in tasks.into_iter().enumerate() {
            let status = task.await.unwrap();
            if i == 3 {
                assert!(
                    status == StatusCode::OK || status == StatusCode::CONFLICT,
                    "{status}"
                );
                removed = status == StatusCode::OK;
            } else {
                // Issued, or refused for a role gone (checked before the
                // write, or inside it).
                assert!(matches!(status.as_u16(), 201 | 400 | 409), "{status}");
            }
        }
        let view = app.ok(Method::GET, &format!("/v1/apis/{api}"), None).await;
        let defined = view["roles"].get("temp").is_some();
        assert_eq!(defined, !removed);
        let keys = app
            .ok(
                Method::GET,
                &format!("/v1/keys?api_id={api}&state=active&limit=1000"),
                None,
            )
            .await;
        let holders: Vec<&Value> = keys["keys"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|k| k["roles"].as_array().unwrap().contains(&json!("temp")))
            .collect();
        if !defined {
            assert!(
                holders.is_empty(),
                "round {round}: keys hold a removed role"
            );
        }
        // Clear the way for the next round.
        for key in holders {
            let id = key["id"].as_str().unwrap();
            app.ok(
                Method::POST,
                &format!("/v1/keys/{id}/revoke"),
                Some(json!({})),
            )
            .await;
        }
    }
}

async fn the_verify_answer_names_the_critical_scopes_a_key_carries(app: TestApp) {
    let api = exchange(&app, "rq").await;
    let (trader, _) = key_with(&app, &api, &["trader"], &[]).await;
    let (direct, _) = key_with(&app, &api, &[], &["withdrawals:write", "prices:read"]).await;
    let answer = app.verify(json!({"key": trader})).await;
    assert!(
        answer.get("critical_scopes").is_none(),
        "none held: {answer}"
    );
    let answer = app.verify(json!({"key": direct})).await;
    assert_eq!(answer["critical_scopes"], json!(["withdrawals:write"]));

    // Marking a scope critical, or a role granting one, shows at the next
    // verify of keys already cached.
    app.ok(
        Method::PATCH,
        &format!("/v1/apis/{api}"),
        Some(json!({"critical_scopes": ["orders:write", "withdrawals:write"]})),
    )
    .await;
    let answer = app.verify(json!({"key": trader})).await;
    assert_eq!(answer["critical_scopes"], json!(["orders:write"]));
    app.ok(
        Method::PATCH,
        &format!("/v1/apis/{api}"),
        Some(json!({"critical_scopes": []})),
    )
    .await;
    let answer = app.verify(json!({"key": direct})).await;
    assert!(answer.get("critical_scopes").is_none(), "{answer}");
    // No longer critical, it verifies without a code.
    assert_eq!(
        verify_scope(&app, &direct, "withdrawals:write").await,
        "VALID"
    );
}
