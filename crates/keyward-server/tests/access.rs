//! People and what they may do, tried against the real server: users and
//! their passwords, sign-in that does not tell who exists, TOTP as an
//! authenticator app makes it (each code accepted once), recovery codes,
//! step-up before every critical operation, workspaces that hide what is
//! outside them, roles that bound what can be granted, and the access
//! review.

#![allow(clippy::unwrap_used, clippy::expect_used)] // A panic in a test is a failed test.

mod support;

use keyward_crypto::totp::STEP_SECONDS;
use keyward_server::settings::AuthFileSettings;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::{enrol, login, session, spawn_with_auth, unix_now, Backend, TestApp, PASSWORD};

async fn create_user(app: &TestApp, email: &str, roles: Value) -> Value {
    let (status, user) = app
        .call(
            Method::POST,
            "/v1/users",
            Some(&app.root),
            Some(json!({"email": email, "password": PASSWORD, "roles": roles})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{user}");
    user
}

fn code_of(value: &Value) -> &str {
    value["error"]["code"].as_str().unwrap_or_default()
}

async fn passwords_are_checked_and_hashed(app: TestApp) {
    for (password, why) in [("short-one", "too short"), ("Password1234", "common")] {
        let (status, body) = app
            .call(
                Method::POST,
                "/v1/users",
                Some(&app.root),
                Some(json!({"email": "weak@example.com", "password": password, "roles": []})),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{why}: {body}");
        assert!(
            !body.to_string().contains(password),
            "the password is not echoed"
        );
    }
    let user = create_user(&app, "Ops@Example.com", json!([{"role": "operator"}])).await;
    assert_eq!(user["email"], "ops@example.com");
    assert_eq!(user["totp_enrolled"], false);
    assert!(!user.to_string().contains("argon2"), "no hash is shown");
    let (status, body) = app
        .call(
            Method::POST,
            "/v1/users",
            Some(&app.root),
            Some(json!({"email": "ops@example.com", "password": PASSWORD})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    // Stored as Argon2id with OWASP's parameters and a salt of its own.
    let listed = app.ok(Method::GET, "/v1/users", None).await;
    assert_eq!(listed["users"].as_array().unwrap().len(), 1);
}

async fn sign_in_does_not_tell_who_exists(app: TestApp) {
    create_user(&app, "ops@example.com", json!([{"role": "operator"}])).await;
    let (wrong_status, wrong) = app
        .call(
            Method::POST,
            "/v1/auth/login",
            None,
            Some(json!({"email": "ops@example.com", "password": "not-the-password-1"})),
        )
        .await;
    let (unknown_status, unknown) = app
        .call(
            Method::POST,
            "/v1/auth/login",
            None,
            Some(json!({"email": "nobody@example.com", "password": "not-the-password-1"})),
        )
        .await;
    assert_eq!(wrong_status, StatusCode::UNAUTHORIZED);
    assert_eq!((wrong_status, &wrong), (unknown_status, &unknown));
    // The failures are audited.
    let audit = app
        .ok(Method::GET, "/v1/audit?action=user.login_failed", None)
        .await;
    assert_eq!(audit["events"].as_array().unwrap().len(), 2, "{audit}");
    // A session works, shows its user, and is listed under it.
    let token = session(&app, "ops@example.com", None).await;
    let (status, me) = app
        .call(Method::GET, "/v1/auth/whoami", Some(&token), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["user"]["email"], "ops@example.com");
    assert!(me["scopes"]
        .as_array()
        .unwrap()
        .contains(&json!("keys:write")));
    let id = me["user"]["id"].as_str().unwrap();
    let sessions = app
        .ok(Method::GET, &format!("/v1/users/{id}/sessions"), None)
        .await;
    assert_eq!(sessions["sessions"].as_array().unwrap().len(), 1);
    // Signing out ends it.
    let (status, _) = app
        .call(Method::POST, "/v1/auth/logout", Some(&token), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = app
        .call(Method::GET, "/v1/auth/whoami", Some(&token), None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
}

async fn failed_sign_ins_are_limited(app: TestApp) {
    create_user(&app, "ops@example.com", json!([{"role": "operator"}])).await;
    let mut last = (StatusCode::OK, Value::Null);
    for _ in 0..11 {
        last = app
            .call(
                Method::POST,
                "/v1/auth/login",
                None,
                Some(json!({"email": "ops@example.com", "password": "guess-guess-guess"})),
            )
            .await;
    }
    assert_eq!(last.0, StatusCode::TOO_MANY_REQUESTS, "{}", last.1);
    assert_eq!(code_of(&last.1), "TOO_MANY_ATTEMPTS");
    // Even the right password waits now.
    let (status, _) = login(&app, "ops@example.com", None).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
}

async fn a_totp_code_is_accepted_once(app: TestApp) {
    create_user(&app, "ops@example.com", json!([{"role": "admin"}])).await;
    let first = session(&app, "ops@example.com", None).await;
    let (mut phone, recovery) = enrol(&app, &first).await;
    // Now the password alone is not enough.
    let (status, body) = login(&app, "ops@example.com", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(code_of(&body), "MFA_REQUIRED");
    let code = phone.code().await;
    session(&app, "ops@example.com", Some(&code)).await;
    // The same code, again: refused, and answered as a wrong one is.
    let (status, body) = login(&app, "ops@example.com", Some(&code)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(code_of(&body), "UNAUTHENTICATED");
    // Two steps of drift are too many.
    let now = unix_now() / STEP_SECONDS;
    for step in [now - 3, now + 3] {
        let (status, _) = login(&app, "ops@example.com", Some(&phone.code_at(step))).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    // A recovery code works once.
    session(&app, "ops@example.com", Some(&recovery[0])).await;
    let (status, _) = login(&app, "ops@example.com", Some(&recovery[0])).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    session(&app, "ops@example.com", Some(&recovery[1].to_uppercase())).await;
}

/// Records for the critical operations to act on; returns the
/// operations, each as method, path and body.
async fn critical_operations(app: &TestApp) -> Vec<(Method, &'static str, Option<Value>)> {
    let api = app.create_api("px", &["live"]).await;
    app.ok(
        Method::POST,
        "/v1/transit/keys/doomed",
        Some(json!({"type": "aes256-gcm96"})),
    )
    .await;
    app.ok(
        Method::POST,
        "/v1/transit/keys/doomed/config",
        Some(json!({"deletion_allowed": true})),
    )
    .await;
    app.ok(
        Method::POST,
        "/v1/secret/data/desk/binance",
        Some(json!({"data": {"secret": "x"}})),
    )
    .await;
    vec![
        (
            Method::POST,
            "/v1/keys/bulk-revoke",
            Some(json!({"api_id": api, "reason": "drill"})),
        ),
        (Method::POST, "/v1/sys/rotate", None),
        (
            Method::POST,
            "/v1/users",
            Some(json!({"email": "new@example.com", "password": PASSWORD, "roles": []})),
        ),
        (
            Method::PUT,
            "/v1/roles/viewer",
            Some(json!({"scopes": ["keys:read"]})),
        ),
        (
            Method::POST,
            "/v1/tokens",
            Some(json!({"name": "deployer", "scopes": ["tokens:write", "keys:read"]})),
        ),
        (
            Method::POST,
            "/v1/secret/destroy/desk/binance",
            Some(json!({"versions": [1]})),
        ),
        (Method::DELETE, "/v1/transit/keys/doomed", None),
    ]
}

async fn critical_operations_need_a_recent_second_factor(app: TestApp) {
    create_user(&app, "owner@example.com", json!([{"role": "owner"}])).await;
    // Signed in before enrolling: no second factor given yet.
    let token = session(&app, "owner@example.com", None).await;
    let (mut phone, _) = enrol(&app, &token).await;
    let critical = critical_operations(&app).await;
    for (method, path, body) in &critical {
        let (status, answer) = app
            .call(method.clone(), path, Some(&token), body.clone())
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {answer}");
        assert_eq!(code_of(&answer), "STEP_UP_REQUIRED", "{path}");
    }
    // What is not critical needs nothing more.
    let (status, _) = app
        .call(
            Method::POST,
            "/v1/tokens",
            Some(&token),
            Some(json!({"name": "reader", "scopes": ["keys:read"]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let code = phone.code().await;
    let (status, up) = app
        .call(
            Method::POST,
            "/v1/auth/step-up",
            Some(&token),
            Some(json!({"otp": code})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{up}");
    for (method, path, body) in &critical {
        let (status, answer) = app
            .call(method.clone(), path, Some(&token), body.clone())
            .await;
        assert!(status.is_success(), "{path}: {status} {answer}");
    }
    // The code stepped up with is spent.
    let (status, _) = app
        .call(
            Method::POST,
            "/v1/auth/step-up",
            Some(&token),
            Some(json!({"otp": code})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // The seal is critical too; it goes last.
    let (status, answer) = app
        .call(Method::POST, "/v1/sys/seal", Some(&token), None)
        .await;
    assert!(status.is_success(), "seal: {status} {answer}");
}

async fn the_step_up_window_closes(backend: Backend) {
    let app = spawn_with_auth(
        backend,
        AuthFileSettings {
            step_up_window: "2s".into(),
            ..Default::default()
        },
    )
    .await;
    create_user(&app, "owner@example.com", json!([{"role": "owner"}])).await;
    let first = session(&app, "owner@example.com", None).await;
    let (mut phone, _) = enrol(&app, &first).await;
    // The code given at sign-in counts as a step-up.
    let code = phone.code().await;
    let token = session(&app, "owner@example.com", Some(&code)).await;
    let rotate = || app.call(Method::POST, "/v1/sys/rotate", Some(&token), None);
    let (status, body) = rotate().await;
    assert!(status.is_success(), "{body}");
    let critical = critical_operations(&app).await;
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let mut critical = critical;
    critical.push((Method::POST, "/v1/sys/seal", None));
    for (method, path, body) in critical {
        let (status, answer) = app.call(method, path, Some(&token), body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {answer}");
        assert_eq!(code_of(&answer), "STEP_UP_REQUIRED", "{path}");
    }
}

async fn service_tokens_never_step_up(app: TestApp) {
    let ci = app
        .token(json!({"name": "ci", "scopes": ["sys:write", "keys:write"]}))
        .await;
    let (status, body) = app
        .call(Method::POST, "/v1/sys/rotate", Some(&ci), None)
        .await;
    assert!(status.is_success(), "{body}");
    let (status, body) = app
        .call(
            Method::POST,
            "/v1/auth/step-up",
            Some(&ci),
            Some(json!({"otp": "123456"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

async fn workspaces_hide_what_is_outside_them(app: TestApp) {
    app.ok(
        Method::POST,
        "/v1/workspaces",
        Some(json!({"name": "desk"})),
    )
    .await;
    let outside = app.create_api("px", &["live", "test"]).await;
    let inside = app
        .ok(
            Method::POST,
            "/v1/apis",
            Some(json!({"name": "Desk", "prefix": "dk", "workspace": "desk"})),
        )
        .await;
    assert_eq!(inside["workspace"], "desk");
    let inside = inside["id"].as_str().unwrap().to_owned();
    let key_outside = app
        .create_key(json!({"api_id": outside, "environment": "live", "owner": "acme"}))
        .await;
    let key_inside = app
        .create_key(json!({"api_id": inside, "environment": "live", "owner": "acme"}))
        .await;
    create_user(
        &app,
        "desk@example.com",
        json!([{"role": "operator", "workspace": "desk"}]),
    )
    .await;
    let token = session(&app, "desk@example.com", None).await;
    let get = |path: String| {
        let token = token.clone();
        let app = &app;
        async move { app.call(Method::GET, &path, Some(&token), None).await }
    };
    let (status, _) = get(format!("/v1/apis/{inside}")).await;
    assert_eq!(status, StatusCode::OK);
    let (out_status, out) = get(format!("/v1/apis/{outside}")).await;
    let (absent_status, absent) = get("/v1/apis/api_0000000000000000000000".into()).await;
    assert_eq!((out_status, &out), (absent_status, &absent));
    assert_eq!(out_status, StatusCode::NOT_FOUND);
    let id_in = key_inside["id"].as_str().unwrap();
    let id_out = key_outside["id"].as_str().unwrap();
    assert_eq!(get(format!("/v1/keys/{id_in}")).await.0, StatusCode::OK);
    assert_eq!(
        get(format!("/v1/keys/{id_out}")).await.0,
        StatusCode::NOT_FOUND
    );
    let (_, listed) = get("/v1/keys".into()).await;
    let listed = listed.to_string();
    assert!(
        listed.contains(id_in) && !listed.contains(id_out),
        "{listed}"
    );
    let (_, apis) = get("/v1/apis".into()).await;
    assert_eq!(apis["apis"].as_array().unwrap().len(), 1, "{apis}");
    // Verify sees only the workspace's keys.
    for (key, expect) in [(&key_inside, "VALID"), (&key_outside, "NOT_FOUND")] {
        let (status, answer) = app
            .call(
                Method::POST,
                "/v1/keys/verify",
                Some(&token),
                Some(json!({"key": key["key"]})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(answer["code"], expect);
    }
    // It cannot create APIs elsewhere, nor workspaces.
    let (status, _) = app
        .call(
            Method::POST,
            "/v1/apis",
            Some(&token),
            Some(json!({"name": "Else", "prefix": "el"})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = app
        .call(
            Method::POST,
            "/v1/apis",
            Some(&token),
            Some(json!({"name": "Desk 2", "prefix": "dk2", "workspace": "desk"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    // Bulk revocation takes only what the workspace holds.
    let token_admin = app
        .token(json!({"name": "ws admin", "scopes": ["keys:write", "keys:read"], "workspaces": ["desk"]}))
        .await;
    let (status, body) = app
        .call(
            Method::POST,
            "/v1/keys/bulk-revoke",
            Some(&token_admin),
            Some(json!({"owner": "acme", "reason": "drill"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["revoked"], 1, "{body}");
    assert_eq!(
        app.verify_code(json!({"key": key_outside["key"]})).await,
        "VALID"
    );
}

async fn developers_reach_test_and_dev_only(app: TestApp) {
    let api = app.create_api("px", &["live", "test"]).await;
    create_user(&app, "dev@example.com", json!([{"role": "developer"}])).await;
    let token = session(&app, "dev@example.com", None).await;
    let (status, _) = app
        .call(
            Method::POST,
            "/v1/keys",
            Some(&token),
            Some(json!({"api_id": api, "environment": "test", "owner": "acme"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = app
        .call(
            Method::POST,
            "/v1/keys",
            Some(&token),
            Some(json!({"api_id": api, "environment": "live", "owner": "acme"})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
}

async fn grants_are_bounded_by_the_granter(app: TestApp) {
    create_user(&app, "admin@example.com", json!([{"role": "admin"}])).await;
    let first = session(&app, "admin@example.com", None).await;
    let (mut phone, _) = enrol(&app, &first).await;
    let code = phone.code().await;
    let token = session(&app, "admin@example.com", Some(&code)).await;
    // An admin cannot make an owner (sys:write is not its to give).
    let (status, body) = app
        .call(
            Method::POST,
            "/v1/users",
            Some(&token),
            Some(json!({"email": "o@example.com", "password": PASSWORD,
                        "roles": [{"role": "owner"}]})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = app
        .call(
            Method::POST,
            "/v1/users",
            Some(&token),
            Some(json!({"email": "op@example.com", "password": PASSWORD,
                        "roles": [{"role": "operator"}]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = app
        .call(
            Method::POST,
            "/v1/users",
            Some(&token),
            Some(json!({"email": "x@example.com", "password": PASSWORD,
                        "roles": [{"role": "emperor"}]})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    // Nor take over an owner: no new password, no disabling, no new roles.
    let owner = create_user(&app, "boss@example.com", json!([{"role": "owner"}])).await;
    let boss = format!("/v1/users/{}", owner["id"].as_str().unwrap());
    for change in [
        json!({"password": "a-brand-new-passphrase-9"}),
        json!({"disabled": true}),
        json!({"roles": [{"role": "read-only"}]}),
    ] {
        let (status, body) = app
            .call(Method::PATCH, &boss, Some(&token), Some(change.clone()))
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{change}: {body}");
    }
    session(&app, "boss@example.com", None).await;
}

async fn a_session_token_takes_the_limits_of_its_grant(app: TestApp) {
    app.ok(
        Method::POST,
        "/v1/workspaces",
        Some(json!({"name": "desk"})),
    )
    .await;
    app.ok(
        Method::PUT,
        "/v1/roles/ci-maker",
        Some(json!({"scopes": ["tokens:write", "keys:read"]})),
    )
    .await;
    create_user(
        &app,
        "dev@example.com",
        json!([{"role": "ci-maker", "workspace": "desk", "environments": ["test", "dev"]}]),
    )
    .await;
    let token = session(&app, "dev@example.com", None).await;
    let (status, made) = app
        .call(
            Method::POST,
            "/v1/tokens",
            Some(&token),
            Some(json!({"name": "ci", "scopes": ["keys:read"]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    assert_eq!(made["workspaces"], json!(["desk"]));
    assert_eq!(made["environments"], json!(["test", "dev"]));
    let (status, body) = app
        .call(
            Method::POST,
            "/v1/tokens",
            Some(&token),
            Some(json!({"name": "ci", "scopes": ["keys:read"], "environments": ["live"]})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
}

async fn role_changes_reach_sessions_at_once(app: TestApp) {
    app.ok(
        Method::PUT,
        "/v1/roles/viewer",
        Some(json!({"scopes": ["apis:read"]})),
    )
    .await;
    let user = create_user(&app, "v@example.com", json!([{"role": "viewer"}])).await;
    let token = session(&app, "v@example.com", None).await;
    let keys = || app.call(Method::GET, "/v1/keys", Some(&token), None);
    assert_eq!(keys().await.0, StatusCode::FORBIDDEN);
    app.ok(
        Method::PUT,
        "/v1/roles/viewer",
        Some(json!({"scopes": ["apis:read", "keys:read"]})),
    )
    .await;
    assert_eq!(keys().await.0, StatusCode::OK);
    // Taking the role away, then disabling the user.
    let id = user["id"].as_str().unwrap();
    app.ok(
        Method::PATCH,
        &format!("/v1/users/{id}"),
        Some(json!({"roles": []})),
    )
    .await;
    assert_eq!(keys().await.0, StatusCode::FORBIDDEN);
    app.ok(
        Method::PATCH,
        &format!("/v1/users/{id}"),
        Some(json!({"disabled": true})),
    )
    .await;
    assert_eq!(keys().await.0, StatusCode::UNAUTHORIZED);
    let (status, _) = login(&app, "v@example.com", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // A held role cannot be deleted.
    create_user(&app, "w@example.com", json!([{"role": "viewer"}])).await;
    let (status, _) = app
        .call(Method::DELETE, "/v1/roles/viewer", Some(&app.root), None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
}

async fn the_access_review_lists_every_subject(app: TestApp) {
    create_user(&app, "audit@example.com", json!([{"role": "auditor"}])).await;
    create_user(
        &app,
        "dev@example.com",
        json!([{"role": "developer", "environments": ["test"]}]),
    )
    .await;
    let auditor = session(&app, "audit@example.com", None).await;
    let (status, review) = app
        .call(Method::GET, "/v1/access-review", Some(&auditor), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{review}");
    let subjects = review["subjects"].as_array().unwrap();
    let users: Vec<_> = subjects.iter().filter(|s| s["kind"] == "user").collect();
    let tokens: Vec<_> = subjects.iter().filter(|s| s["kind"] == "token").collect();
    assert_eq!(users.len(), 2);
    assert_eq!(tokens.len(), 1, "the root token");
    assert!(
        tokens[0]["last_seen_at"].is_string(),
        "the root token was used"
    );
    let dev = users
        .iter()
        .find(|u| u["name"] == "dev@example.com")
        .unwrap();
    assert_eq!(dev["grants"][0]["role"], "developer");
    assert_eq!(dev["grants"][0]["environments"], json!(["test"]));
    assert_eq!(dev["totp_enrolled"], false);
    let audit = users
        .iter()
        .find(|u| u["name"] == "audit@example.com")
        .unwrap();
    assert!(audit["last_seen_at"].is_string());
    // The auditor changes nothing.
    let (status, _) = app
        .call(
            Method::POST,
            "/v1/apis",
            Some(&auditor),
            Some(json!({"name": "X", "prefix": "xx"})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

on_both_backends!(
    passwords_are_checked_and_hashed,
    sign_in_does_not_tell_who_exists,
    failed_sign_ins_are_limited,
    a_totp_code_is_accepted_once,
    critical_operations_need_a_recent_second_factor,
    service_tokens_never_step_up,
    workspaces_hide_what_is_outside_them,
    developers_reach_test_and_dev_only,
    grants_are_bounded_by_the_granter,
    a_session_token_takes_the_limits_of_its_grant,
    role_changes_reach_sessions_at_once,
    the_access_review_lists_every_subject,
);
on_both_backends_raw!(the_step_up_window_closes);
