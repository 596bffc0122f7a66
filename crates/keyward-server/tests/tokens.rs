//! Admin tokens and the audit log, attacked as issue 16 found them: a child
//! token that outlives or survives its parent, a limited token reading the
//! root token's metadata or other APIs' audit events, revoke answering 403
//! for a token that exists and 404 for one that does not, the root token
//! revoking itself, and one bad audit row failing the whole listing.

#![allow(clippy::unwrap_used, clippy::expect_used)] // A panic in a test is a failed test.

mod support;

use keyward_core::TokenId;
use keyward_store::{AuditEntry, AuditFilter, Change, Page};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::TestApp;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

on_both_backends!(
    child_token_never_outlives_its_parent,
    revoking_a_token_revokes_every_token_it_minted,
    child_of_a_token_revoked_as_leaked_stops_working,
    limited_token_lists_only_tokens_within_its_reach,
    revoking_a_forbidden_token_answers_like_an_absent_one,
    last_full_token_cannot_be_revoked_through_the_api,
    leaked_root_token_is_revoked_and_said_loudly,
    audit_reads_are_filtered_by_reach,
);

on_both_backends_raw!(a_cascade_reaches_the_caches_of_other_nodes);

/// A token cached as valid on another node stops working there when its
/// parent is revoked here: the feed carries every token of the cascade.
async fn a_cascade_reaches_the_caches_of_other_nodes(backend: support::Backend) {
    let here = support::spawn(backend).await;
    let there = support::spawn_on(
        here.inner_store(),
        None,
        tempfile::tempdir().unwrap(),
        keyward_server::settings::VerifySettings::default(),
        Some(here.root.clone()),
    )
    .await;
    let (parent, parent_record) = mint(
        &here,
        &here.root,
        json!({"name": "parent", "scopes": MANAGER_SCOPES}),
    )
    .await;
    let (child, _) = mint(
        &here,
        &parent,
        json!({"name": "child", "scopes": ["apis:read"]}),
    )
    .await;
    let (grandchild, _) = mint(
        &here,
        &child_minter(&here, &parent).await,
        json!({"name": "grandchild", "scopes": ["apis:read"]}),
    )
    .await;
    for token in [&child, &grandchild] {
        assert_eq!(works(&there, token).await, StatusCode::OK, "cached there");
    }
    here.ok(
        Method::POST,
        &format!("/v1/tokens/{}/revoke", id_of(&parent_record)),
        None,
    )
    .await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    for token in [&child, &grandchild] {
        while works(&there, token).await != StatusCode::UNAUTHORIZED {
            assert!(
                std::time::Instant::now() < deadline,
                "the other node still accepts a token below a revoked one"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}

/// A token minted by `parent` that can mint in turn.
async fn child_minter(app: &TestApp, parent: &str) -> String {
    mint(
        app,
        parent,
        json!({"name": "minter", "scopes": MANAGER_SCOPES}),
    )
    .await
    .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_audit_row_is_reported_and_the_rest_served() {
    let app = support::spawn(support::Backend::Sqlite).await;
    unreadable_audit_row(app).await;
}

/// Creates a token with `creator` and returns (plaintext, record).
async fn mint(app: &TestApp, creator: &str, body: Value) -> (String, Value) {
    let (status, v) = app
        .call(Method::POST, "/v1/tokens", Some(creator), Some(body))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    (v["token"].as_str().unwrap().to_owned(), v)
}

fn id_of(v: &Value) -> String {
    v["id"].as_str().unwrap().to_owned()
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap()
}

fn parse_time(v: &Value) -> OffsetDateTime {
    OffsetDateTime::parse(v.as_str().unwrap(), &Rfc3339).unwrap()
}

/// The status of a call that needs a usable token with `apis:read`.
async fn works(app: &TestApp, token: &str) -> StatusCode {
    app.call(Method::GET, "/v1/apis", Some(token), None).await.0
}

const MANAGER_SCOPES: [&str; 3] = ["tokens:read", "tokens:write", "apis:read"];

async fn child_token_never_outlives_its_parent(app: TestApp) {
    let parent_expiry = OffsetDateTime::now_utc() + time::Duration::seconds(30);
    let (parent, parent_record) = mint(
        &app,
        &app.root,
        json!({"name": "brief", "scopes": MANAGER_SCOPES, "expires_at": rfc3339(parent_expiry)}),
    )
    .await;
    let limit = parse_time(&parent_record["expires_at"]);

    // No expiry asked: the child gets the parent's.
    let (_, forever) = mint(
        &app,
        &parent,
        json!({"name": "forever", "scopes": ["apis:read"]}),
    )
    .await;
    assert_eq!(parse_time(&forever["expires_at"]), limit);
    // A later expiry is capped to the parent's.
    let later = OffsetDateTime::now_utc() + time::Duration::days(365);
    let (_, capped) = mint(
        &app,
        &parent,
        json!({"name": "later", "scopes": ["apis:read"], "expires_at": rfc3339(later)}),
    )
    .await;
    assert_eq!(parse_time(&capped["expires_at"]), limit);
    // An earlier one is kept.
    let sooner = OffsetDateTime::now_utc() + time::Duration::seconds(10);
    let (_, kept) = mint(
        &app,
        &parent,
        json!({"name": "sooner", "scopes": ["apis:read"], "expires_at": rfc3339(sooner)}),
    )
    .await;
    assert!(parse_time(&kept["expires_at"]) < limit);

    // What the listing says is what is stored.
    let listed = app.ok(Method::GET, "/v1/tokens", None).await;
    let forever_listed = listed["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "forever")
        .unwrap()
        .clone();
    assert_eq!(parse_time(&forever_listed["expires_at"]), limit);
    // Nor does a child outrank its parent.
    let (status, _) = app
        .call(
            Method::POST,
            "/v1/tokens",
            Some(&parent),
            Some(json!({"name": "wider", "scopes": ["keys:write"]})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

async fn revoking_a_token_revokes_every_token_it_minted(app: TestApp) {
    let (a, a_record) = mint(
        &app,
        &app.root,
        json!({"name": "a", "scopes": MANAGER_SCOPES}),
    )
    .await;
    let (b, b_record) = mint(&app, &a, json!({"name": "b", "scopes": MANAGER_SCOPES})).await;
    let (c, c_record) = mint(&app, &b, json!({"name": "c", "scopes": ["apis:read"]})).await;
    let (sibling, _) = mint(
        &app,
        &app.root,
        json!({"name": "sibling", "scopes": ["apis:read"]}),
    )
    .await;
    for token in [&a, &b, &c, &sibling] {
        assert_eq!(works(&app, token).await, StatusCode::OK);
    }
    let before = app.store.inner.latest_change().await.unwrap();

    let a_id = id_of(&a_record);
    let revoked = app
        .ok(Method::POST, &format!("/v1/tokens/{a_id}/revoke"), None)
        .await;
    assert!(revoked["revoked_at"].is_string());
    // This node drops all three at once; the sibling is untouched.
    for token in [&a, &b, &c] {
        assert_eq!(works(&app, token).await, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(works(&app, &sibling).await, StatusCode::OK);

    // One audit event per revoked token, naming where the cascade began.
    let audit = app
        .ok(Method::GET, "/v1/audit?action=token.revoke", None)
        .await;
    let events = audit["events"].as_array().unwrap();
    let targets: Vec<&str> = events
        .iter()
        .map(|e| e["target"].as_str().unwrap())
        .collect();
    assert_eq!(targets.len(), 3, "{audit}");
    for record in [&a_record, &b_record, &c_record] {
        assert!(targets.contains(&record["id"].as_str().unwrap()));
    }
    for event in events.iter().filter(|e| e["target"] != a_id.as_str()) {
        assert_eq!(event["details"]["cascade_from"], a_id.as_str());
    }

    // Other nodes learn of each from the change feed.
    let changes = app.store.inner.changes_after(before, 100).await.unwrap();
    let tokens = changes
        .iter()
        .filter(|c| matches!(c.change, Change::Token(_)))
        .count();
    assert_eq!(tokens, 3, "{changes:?}");

    // Revoked in the store, not only in this node's cache.
    let b_id = TokenId::parse(b_record["id"].as_str().unwrap()).unwrap();
    let stored = app.store.inner.get_token(&b_id).await.unwrap().unwrap();
    assert!(stored.revoked_at.is_some());
}

async fn child_of_a_token_revoked_as_leaked_stops_working(app: TestApp) {
    let (parent, _) = mint(
        &app,
        &app.root,
        json!({"name": "parent", "scopes": MANAGER_SCOPES}),
    )
    .await;
    let (child, _) = mint(
        &app,
        &parent,
        json!({"name": "child", "scopes": ["apis:read"]}),
    )
    .await;
    let (grandchild, _) = mint(
        &app,
        &parent,
        json!({"name": "grandchild", "scopes": ["apis:read"]}),
    )
    .await;
    assert_eq!(works(&app, &child).await, StatusCode::OK);
    let reporter = app
        .token(json!({"name": "scanner", "scopes": ["leaks:report"]}))
        .await;
    let (status, v) = app
        .call(
            Method::POST,
            "/v1/leaks",
            Some(&reporter),
            Some(json!({"leaks": [{"key": parent, "location": "ci.log:3"}]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(works(&app, &parent).await, StatusCode::UNAUTHORIZED);
    assert_eq!(works(&app, &child).await, StatusCode::UNAUTHORIZED);
    assert_eq!(works(&app, &grandchild).await, StatusCode::UNAUTHORIZED);
    assert_eq!(works(&app, &app.root).await, StatusCode::OK);
}

async fn limited_token_lists_only_tokens_within_its_reach(app: TestApp) {
    let x = app.create_api("tx", &["live", "test"]).await;
    let y = app.create_api("ty", &["live", "test"]).await;
    let manager = app
        .token(
            json!({"name": "manager", "scopes": ["tokens:read", "keys:verify"],
                      "api_ids": [x], "environments": ["test"]}),
        )
        .await;
    for (name, body) in [
        ("peer", json!({"api_ids": [x], "environments": ["test"]})),
        (
            "other api",
            json!({"api_ids": [y], "environments": ["test"]}),
        ),
        ("live", json!({"api_ids": [x], "environments": ["live"]})),
        ("every api", json!({"environments": ["test"]})),
        (
            "more scopes",
            json!({"api_ids": [x], "environments": ["test"], "scopes": ["keys:verify", "keys:read"]}),
        ),
    ] {
        let mut body = body;
        body["name"] = json!(name);
        if body.get("scopes").is_none() {
            body["scopes"] = json!(["keys:verify"]);
        }
        app.ok(Method::POST, "/v1/tokens", Some(body)).await;
    }
    // Page by one to walk the cursor past tokens out of reach.
    let mut names = Vec::new();
    let mut cursor = String::new();
    loop {
        let path = format!("/v1/tokens?limit=1{cursor}");
        let (status, page) = app.call(Method::GET, &path, Some(&manager), None).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        for t in page["tokens"].as_array().unwrap() {
            names.push(t["name"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => break,
        }
    }
    assert_eq!(names, ["manager", "peer"]);
    let all = app.ok(Method::GET, "/v1/tokens", None).await;
    assert_eq!(all["tokens"].as_array().unwrap().len(), 7, "root sees all");
}

async fn revoking_a_forbidden_token_answers_like_an_absent_one(app: TestApp) {
    let api = app.create_api("tm", &["live"]).await;
    let manager = app
        .token(
            json!({"name": "manager", "scopes": ["tokens:write", "tokens:read", "keys:verify"],
                      "api_ids": [api]}),
        )
        .await;
    let all = app.ok(Method::GET, "/v1/tokens", None).await;
    let root_id = all["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "root")
        .map(id_of)
        .unwrap();
    let absent = TokenId::generate(OffsetDateTime::now_utc()).unwrap();
    let revoke = |id: String| {
        let app = &app;
        let manager = manager.clone();
        async move {
            app.call(
                Method::POST,
                &format!("/v1/tokens/{id}/revoke"),
                Some(&manager),
                None,
            )
            .await
        }
    };
    let forbidden = revoke(root_id).await;
    let missing = revoke(absent.as_str().to_owned()).await;
    assert_eq!(forbidden.0, StatusCode::NOT_FOUND);
    assert_eq!(forbidden, missing, "the same status and body");
    assert_eq!(forbidden.1["error"]["code"], "NOT_FOUND");
    assert_eq!(works(&app, &app.root).await, StatusCode::OK);
}

async fn last_full_token_cannot_be_revoked_through_the_api(app: TestApp) {
    let all = app.ok(Method::GET, "/v1/tokens", None).await;
    let root_id = id_of(&all["tokens"][0]);
    let (status, v) = app
        .call(
            Method::POST,
            &format!("/v1/tokens/{root_id}/revoke"),
            Some(&app.root),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["error"]["code"], "LAST_ROOT_TOKEN");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("keyward operator root-token"), "{message}");
    assert_eq!(works(&app, &app.root).await, StatusCode::OK);

    // A full token minted by root dies with root, so it does not make root
    // revocable either; revoking that child itself is fine.
    let every: Vec<&str> = keyward_core::AdminScope::ALL
        .iter()
        .map(|s| s.as_str())
        .collect();
    let (backup, backup_record) =
        mint(&app, &app.root, json!({"name": "backup", "scopes": every})).await;
    let (status, v) = app
        .call(
            Method::POST,
            &format!("/v1/tokens/{root_id}/revoke"),
            Some(&backup),
            None,
        )
        .await;
    assert_eq!(
        (status, v["error"]["code"].clone()),
        (StatusCode::CONFLICT, json!("LAST_ROOT_TOKEN"))
    );
    assert_eq!(works(&app, &backup).await, StatusCode::OK);
    app.ok(
        Method::POST,
        &format!("/v1/tokens/{}/revoke", id_of(&backup_record)),
        None,
    )
    .await;
    assert_eq!(works(&app, &backup).await, StatusCode::UNAUTHORIZED);
    assert_eq!(works(&app, &app.root).await, StatusCode::OK);
    let (_, ready) = app.call(Method::GET, "/ready", None, None).await;
    assert_eq!(ready, json!({"status": "ready"}));
}

async fn leaked_root_token_is_revoked_and_said_loudly(app: TestApp) {
    let (_, ready) = app.call(Method::GET, "/ready", None, None).await;
    assert!(ready.get("warnings").is_none(), "{ready}");
    let reporter = app
        .token(json!({"name": "scanner", "scopes": ["leaks:report"]}))
        .await;
    let (status, v) = app
        .call(
            Method::POST,
            "/v1/leaks",
            Some(&reporter),
            Some(json!({"leaks": [{"key": app.root, "location": "README.md:12"}]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(works(&app, &app.root).await, StatusCode::UNAUTHORIZED);

    let (status, ready) = app.call(Method::GET, "/ready", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ready["status"], "ready");
    let warning = ready["warnings"][0].as_str().unwrap();
    assert!(warning.contains("keyward operator root-token"), "{ready}");
    assert!(!warning.contains(&app.root));

    let audit = app
        .store
        .inner
        .list_audit(
            &AuditFilter {
                action: Some("token.last_full_revoked".into()),
                ..AuditFilter::default()
            },
            &Page {
                after: None,
                limit: 10,
            },
        )
        .await
        .unwrap();
    assert_eq!(audit.len(), 1, "{audit:?}");
    let AuditEntry::Event(event) = &audit[0] else {
        panic!("unreadable: {audit:?}")
    };
    assert!(!event.details.to_string().contains(&app.root));
}

/// The actions and targets of the audit events `token` reads.
async fn audit_as(app: &TestApp, token: &str) -> Vec<(String, String)> {
    let (status, v) = app
        .call(Method::GET, "/v1/audit?limit=1000", Some(token), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["target"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

async fn audit_reads_are_filtered_by_reach(app: TestApp) {
    let x = app.create_api("ax", &["live", "test"]).await;
    let y = app.create_api("ay", &["live", "test"]).await;
    let key = |api: &str, env: &str| {
        let body = json!({"api_id": api, "environment": env, "owner": "acme"});
        let app = &app;
        async move { id_of(&app.create_key(body).await) }
    };
    let (x_test, x_live, y_test) = (
        key(&x, "test").await,
        key(&x, "live").await,
        key(&y, "test").await,
    );
    app.ok(
        Method::POST,
        &format!("/v1/keys/{x_live}/revoke"),
        Some(json!({"reason": "done"})),
    )
    .await;
    let x_test_auditor = app
        .token(json!({"name": "x test", "scopes": ["audit:read"], "api_ids": [x], "environments": ["test"]}))
        .await;
    let y_auditor = app
        .token(json!({"name": "y", "scopes": ["audit:read"], "api_ids": [y]}))
        .await;
    let test_auditor = app
        .token(json!({"name": "test", "scopes": ["audit:read"], "environments": ["test"]}))
        .await;

    let seen = audit_as(&app, &x_test_auditor).await;
    assert_eq!(
        seen,
        [("key.create".to_owned(), x_test.clone())],
        "{seen:?}"
    );

    let seen = audit_as(&app, &y_auditor).await;
    let targets: Vec<&str> = seen.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(targets, [y.as_str(), y_test.as_str()], "{seen:?}");

    let seen = audit_as(&app, &test_auditor).await;
    let targets: Vec<&str> = seen.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(targets, [x_test.as_str(), y_test.as_str()], "{seen:?}");

    // A filter by target does not reach past the reach either.
    let (_, v) = app
        .call(
            Method::GET,
            &format!("/v1/audit?target={x_live}"),
            Some(&x_test_auditor),
            None,
        )
        .await;
    assert_eq!(v["events"], json!([]));

    let everything = audit_as(&app, &app.root).await;
    for target in [&x, &y, &x_test, &x_live, &y_test] {
        assert!(everything.iter().any(|(_, t)| t == target), "{target}");
    }
    assert!(everything.iter().any(|(a, _)| a == "token.create"));
}

async fn unreadable_audit_row(app: TestApp) {
    let api = app.create_api("ur", &["live"]).await;
    let first = app
        .create_key(json!({"api_id": api, "environment": "live", "owner": "a"}))
        .await;
    let second = app
        .create_key(json!({"api_id": api, "environment": "live", "owner": "b"}))
        .await;
    let db = app.db_file.clone().unwrap();
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    // A hand edit leaves one row that is not JSON and one whose time is not
    // a number.
    sqlx::query("UPDATE audit_events SET details = '{not json' WHERE target = $1")
        .bind(id_of(&first))
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("UPDATE audit_events SET at = 'yesterday' WHERE target = $1")
        .bind(id_of(&second))
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;

    let (status, v) = app
        .call(Method::GET, "/v1/audit?limit=1000", Some(&app.root), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let events = v["events"].as_array().unwrap();
    let unreadable: Vec<&Value> = events.iter().filter(|e| e.get("error").is_some()).collect();
    assert_eq!(unreadable.len(), 2, "{v}");
    for e in &unreadable {
        assert_eq!(e["error"], "unreadable");
        assert!(e["id"].as_str().unwrap().starts_with("evt_"));
    }
    assert!(events.iter().any(|e| e["action"] == "api.create"));
    // Paging by one walks past them too.
    let (status, v) = app
        .call(Method::GET, "/v1/audit?limit=1", Some(&app.root), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
}
