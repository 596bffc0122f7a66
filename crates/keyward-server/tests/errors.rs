//! Secrets in error answers and logs, and messages that say what to do,
//! against the real server: a key or the root token pasted into every field
//! of every request, every query parameter and every path segment is never
//! repeated in the answer or the log; name fields refuse key shapes; KV
//! custom metadata is not stored in the clear.

#![allow(clippy::unwrap_used, clippy::expect_used)] // A panic in a test is a failed test.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::{Backend, TestApp};

/// Everything the server logged while the tests of this file ran.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs, once, a subscriber that writes every event at `info` and above
/// (the level the server logs requests at) to memory.
fn captured_logs() -> Captured {
    static LOGS: OnceLock<Captured> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Captured::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
        logs
    })
    .clone()
}

/// A secret and the parts of it that must never come back.
struct Pasted {
    what: &'static str,
    text: String,
}

impl Pasted {
    /// The plaintext and its 43-digit body (a body alone is as secret).
    fn needles(&self) -> [String; 2] {
        let body = self.text.rsplit('_').next().unwrap();
        [self.text.clone(), body[..43].to_owned()]
    }

    fn leaked_in(&self, text: &str) -> bool {
        self.needles().iter().any(|n| text.contains(n.as_str()))
    }
}

/// One route of the admin API with a body that exercises every field it
/// takes; `{key_id}` and `{api_id}` are filled in.
struct Route {
    method: &'static str,
    path: &'static str,
    body: Option<Value>,
    query: &'static [&'static str],
}

fn routes() -> Vec<Route> {
    let ratelimits = json!([{"name": "burst", "limit": 10, "duration_ms": 1000}]);
    let credits = json!({"remaining": 5, "refill": {"interval": "daily", "amount": 5, "day": 1}});
    vec![
        Route {
            method: "POST",
            path: "/v1/apis",
            body: Some(json!({
                "name": "n", "prefix": "zz", "environments": ["live", "test"],
                "roles": {"trader": ["a:b"]}, "critical_scopes": ["c:d"],
            })),
            query: &[],
        },
        Route {
            method: "PATCH",
            path: "/v1/apis/{api_id}",
            body: Some(json!({
                "name": "n", "roles": {"trader": ["a:b"]}, "critical_scopes": ["c:d"],
            })),
            query: &[],
        },
        Route {
            method: "GET",
            path: "/v1/apis",
            body: None,
            query: &["cursor", "limit"],
        },
        Route {
            method: "POST",
            path: "/v1/keys",
            body: Some(json!({
                "api_id": "{api_id}", "environment": "live", "name": "n", "owner": "o",
                "scopes": ["a:b"], "metadata": {"plan": "pro"},
                "expires_at": "2999-01-01T00:00:00Z", "enabled": true,
                "ratelimits": ratelimits, "credits": credits, "ip_allowlist": ["10.0.0.0/8"],
                "roles": ["trader"],
            })),
            query: &[],
        },
        Route {
            method: "GET",
            path: "/v1/keys",
            body: None,
            query: &["api_id", "owner", "environment", "state", "cursor", "limit"],
        },
        Route {
            method: "PATCH",
            path: "/v1/keys/{key_id}",
            body: Some(json!({
                "name": "n", "scopes": ["a:b"], "metadata": {"plan": "pro"},
                "expires_at": "2999-01-01T00:00:00Z", "enabled": true,
                "ratelimits": ratelimits, "credits": credits, "ip_allowlist": ["10.0.0.0/8"],
                "roles": ["trader"],
            })),
            query: &[],
        },
        Route {
            method: "POST",
            path: "/v1/keys/{key_id}/revoke",
            body: Some(json!({"reason": "r"})),
            query: &[],
        },
        Route {
            method: "POST",
            path: "/v1/keys/{key_id}/rotate",
            body: Some(json!({"grace_period_seconds": 5, "expires_at": "2999-01-01T00:00:00Z"})),
            query: &[],
        },
        Route {
            method: "POST",
            path: "/v1/keys/bulk-revoke",
            body: Some(json!({
                "owner": "nobody", "api_id": "{api_id}", "environment": "test",
                "created_before": "2000-01-01T00:00:00Z", "scope": "a:b", "reason": "r",
            })),
            query: &[],
        },
        Route {
            method: "POST",
            path: "/v1/keys/verify",
            body: Some(json!({
                "key": "x", "scopes": ["a:b"], "environment": "live", "ip": "10.0.0.1", "cost": 1,
            })),
            query: &[],
        },
        Route {
            method: "GET",
            path: "/v1/keys/{key_id}/usage",
            body: None,
            query: &["since", "until"],
        },
        Route {
            method: "PUT",
            path: "/v1/owners/o/ratelimits",
            body: Some(json!({"ratelimits": ratelimits})),
            query: &[],
        },
        Route {
            method: "POST",
            path: "/v1/tokens",
            body: Some(json!({
                "name": "n", "scopes": ["keys:read"], "api_ids": ["{api_id}"],
                "environments": ["test"], "expires_at": "2999-01-01T00:00:00Z",
            })),
            query: &[],
        },
        Route {
            method: "GET",
            path: "/v1/tokens",
            body: None,
            query: &["cursor", "limit"],
        },
        Route {
            method: "GET",
            path: "/v1/audit",
            body: None,
            query: &["target", "action", "cursor", "limit"],
        },
        Route {
            method: "POST",
            path: "/v1/sys/init",
            body: Some(json!({"secret_shares": 3, "secret_threshold": 2})),
            query: &[],
        },
        Route {
            method: "POST",
            path: "/v1/sys/unseal",
            body: Some(json!({"key": "x", "reset": false})),
            query: &[],
        },
        Route {
            method: "POST",
            path: "/v1/sys/mounts/m1",
            body: Some(
                json!({"type": "kv-v2", "options": {"version": "2", "environment": "test"}}),
            ),
            query: &[],
        },
        Route {
            method: "POST",
            path: "/v1/secret/data/a/b",
            body: Some(json!({"data": {"k": "v"}, "options": {"cas": 0}})),
            query: &[],
        },
        Route {
            method: "POST",
            path: "/v1/secret/metadata/a/b",
            body: Some(json!({
                "max_versions": 3, "cas_required": false,
                "custom_metadata": {"team": "x"}, "delete_version_after": "0s",
            })),
            query: &[],
        },
        Route {
            method: "GET",
            path: "/v1/secret/data/a/b",
            body: None,
            query: &["version"],
        },
        Route {
            method: "POST",
            path: "/v1/secret/config",
            body: Some(
                json!({"max_versions": 3, "cas_required": false, "delete_version_after": "0s"}),
            ),
            query: &[],
        },
        Route {
            method: "POST",
            path: "/v1/secret/destroy/a/b",
            body: Some(json!({"versions": [1]})),
            query: &[],
        },
        Route {
            method: "POST",
            path: "/v1/transit/keys/t1",
            body: Some(json!({"type": "aes256-gcm96"})),
            query: &[],
        },
        Route {
            method: "POST",
            path: "/v1/transit/encrypt/t1",
            body: Some(json!({"plaintext": "aGk=", "context": "aGk="})),
            query: &[],
        },
    ]
}

/// Path templates with one segment the caller chooses, `{}`.
const PATHS: &[(&str, &str)] = &[
    ("GET", "/v1/keys/{}"),
    ("GET", "/v1/apis/{}"),
    ("PATCH", "/v1/apis/{}"),
    ("PATCH", "/v1/keys/{}"),
    ("POST", "/v1/keys/{}/revoke"),
    ("GET", "/v1/keys/{}/usage"),
    ("GET", "/v1/owners/{}/ratelimits"),
    ("POST", "/v1/tokens/{}/revoke"),
    ("POST", "/v1/sys/mounts/{}"),
    ("GET", "/v1/{}/data/a"),
    ("POST", "/v1/secret/data/{}"),
    ("GET", "/v1/secret/metadata/{}"),
    ("POST", "/v1/transit/keys/{}"),
    ("POST", "/v1/transit/encrypt/{}"),
];

/// Every body made from `base` by putting `pasted` in one place: each value
/// (objects and arrays walked down), an added field named by it, and the
/// whole body.
fn variants(base: &Value, pasted: &str) -> Vec<(String, Value)> {
    fn walk(value: &Value, at: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        match value {
            Value::Object(map) => {
                for (k, v) in map {
                    at.push(k.clone());
                    out.push(at.clone());
                    walk(v, at, out);
                    at.pop();
                }
            }
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    at.push(i.to_string());
                    out.push(at.clone());
                    walk(v, at, out);
                    at.pop();
                }
            }
            _ => {}
        }
    }
    fn set(value: &mut Value, at: &[String], to: Value) {
        let (first, rest) = at.split_first().unwrap();
        let slot = match value {
            Value::Object(map) => map.get_mut(first).unwrap(),
            Value::Array(items) => &mut items[first.parse::<usize>().unwrap()],
            _ => unreachable!(),
        };
        if rest.is_empty() {
            *slot = to;
        } else {
            set(slot, rest, to);
        }
    }
    let mut places = Vec::new();
    walk(base, &mut Vec::new(), &mut places);
    let mut out: Vec<(String, Value)> = places
        .into_iter()
        .map(|at| {
            let mut body = base.clone();
            set(&mut body, &at, Value::String(pasted.to_owned()));
            (at.join("."), body)
        })
        .collect();
    let mut extra = base.clone();
    extra
        .as_object_mut()
        .unwrap()
        .insert(pasted.to_owned(), json!(1));
    out.push(("an added field".into(), extra));
    out.push(("the whole body".into(), Value::String(pasted.to_owned())));
    out
}

async fn send(
    app: &TestApp,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> (StatusCode, String) {
    let mut request = app
        .client
        .request(
            Method::from_bytes(method.as_bytes()).unwrap(),
            format!("{}{}", app.base, path),
        )
        .bearer_auth(&app.root);
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pasted_keys_are_never_echoed_in_answers_or_logs() {
    let logs = captured_logs();
    let app = support::spawn(Backend::Sqlite).await;
    let api = app
        .ok(
            Method::POST,
            "/v1/apis",
            Some(json!({"name": "tm", "prefix": "tm", "roles": {"trader": ["a:b"]}})),
        )
        .await;
    let api_id = api["id"].as_str().unwrap().to_owned();
    let issued = app
        .create_key(json!({"api_id": api_id, "environment": "live", "owner": "acme"}))
        .await;
    let key_id = issued["id"].as_str().unwrap().to_owned();
    let pasted = [
        Pasted {
            what: "an API key",
            text: issued["key"].as_str().unwrap().to_owned(),
        },
        Pasted {
            what: "the root token",
            text: app.root.clone(),
        },
    ];
    let fill = |s: &str| s.replace("{key_id}", &key_id).replace("{api_id}", &api_id);
    let mut sent = 0;
    for secret in &pasted {
        let mut leaks = Vec::new();
        let mut check = |what: String, status: StatusCode, text: String| {
            assert!(status.as_u16() < 500, "{what}: {status} {text}");
            if secret.leaked_in(&text) {
                leaks.push(format!("{what}: {status} {text}"));
            }
        };
        for route in routes() {
            let path = fill(route.path);
            if let Some(base) = &route.body {
                let base: Value = serde_json::from_str(&fill(&base.to_string())).unwrap();
                for (place, body) in variants(&base, &secret.text) {
                    let (status, text) = send(&app, route.method, &path, Some(&body)).await;
                    sent += 1;
                    check(
                        format!("{} {} at {place}", route.method, route.path),
                        status,
                        text,
                    );
                }
            }
            for param in route.query {
                let uri = format!("{path}?{param}={}", secret.text);
                let (status, text) = send(&app, route.method, &uri, None).await;
                sent += 1;
                check(
                    format!("{} {} ?{param}", route.method, route.path),
                    status,
                    text,
                );
            }
        }
        for (method, template) in PATHS {
            let path = template.replace("{}", &secret.text);
            let body = json!({"type": "kv-v2", "data": {"k": "v"}, "plaintext": "aGk="});
            let (status, text) = send(&app, method, &path, Some(&body)).await;
            sent += 1;
            check(format!("{method} {template}"), status, text);
        }
        assert!(
            leaks.is_empty(),
            "{} came back in {} answers:\n{}",
            secret.what,
            leaks.len(),
            leaks.join("\n")
        );
    }
    assert!(sent > 300, "only {sent} requests were generated");
    let logged = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    assert!(
        logged.contains("/v1/keys/[redacted key]"),
        "the pasted path was not logged redacted"
    );
    for secret in &pasted {
        assert!(
            !secret.leaked_in(&logged),
            "{} is in the log:\n{logged}",
            secret.what
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_escaped_key_in_a_path_is_logged_redacted() {
    let logs = captured_logs();
    let app = support::spawn(Backend::Sqlite).await;
    let escaped: String = app
        .root
        .chars()
        .map(|c| format!("%{:02X}", c as u32))
        .collect();
    let (status, text) = send(&app, "GET", &format!("/v1/keys/{escaped}"), None).await;
    assert!(status.is_client_error(), "{status} {text}");
    let logged = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    assert!(!logged.contains(&escaped) && !logged.contains(&app.root));
}

async fn name_fields_refuse_key_shapes(app: TestApp) {
    let api_id = app.create_api("tm", &["live", "test"]).await;
    let issued = app
        .create_key(json!({"api_id": api_id, "environment": "live", "owner": "acme"}))
        .await;
    let key = issued["key"].as_str().unwrap().to_owned();
    let id = issued["id"].as_str().unwrap().to_owned();
    let limit = |name: &str| json!([{"name": name, "limit": 10, "duration_ms": 1000}]);
    let cases: Vec<(Method, String, Value)> = vec![
        (
            Method::POST,
            "/v1/apis".into(),
            json!({"name": key, "prefix": "zz"}),
        ),
        (
            Method::POST,
            "/v1/keys".into(),
            json!({"api_id": api_id, "environment": "live", "owner": "acme", "name": key}),
        ),
        (
            Method::POST,
            "/v1/keys".into(),
            json!({"api_id": api_id, "environment": "live", "owner": key}),
        ),
        (
            Method::POST,
            "/v1/keys".into(),
            json!({"api_id": api_id, "environment": "live", "owner": "acme",
                   "ratelimits": limit(&key)}),
        ),
        (
            Method::POST,
            "/v1/keys".into(),
            json!({"api_id": api_id, "environment": "live", "owner": "acme",
                   "name": format!("copy of {key}")}),
        ),
        (
            Method::PATCH,
            format!("/v1/keys/{id}"),
            json!({"name": key}),
        ),
        (
            Method::PATCH,
            format!("/v1/keys/{id}"),
            json!({"ratelimits": limit(&app.root)}),
        ),
        (
            Method::PUT,
            "/v1/owners/acme/ratelimits".into(),
            json!({"ratelimits": limit(&key)}),
        ),
        (
            Method::POST,
            "/v1/tokens".into(),
            json!({"name": app.root, "scopes": ["keys:read"]}),
        ),
        (
            Method::POST,
            format!("/v1/sys/mounts/{key}"),
            json!({"type": "kv-v2"}),
        ),
    ];
    for (method, path, body) in cases {
        let (status, answer) = app
            .call(method.clone(), &path, Some(&app.root), Some(body.clone()))
            .await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "{method} {path} {body}: {answer}"
        );
        assert_eq!(answer["error"]["code"], "INVALID_REQUEST");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(
            !message.contains(&key) && !message.contains(&app.root),
            "{message}"
        );
        assert!(
            message.contains("API key or admin token"),
            "{method} {path}: {message}"
        );
    }
    // Nothing was stored under a key's name.
    let listing = app.ok(Method::GET, "/v1/keys", None).await.to_string();
    assert!(!listing.contains(&key[8..]), "{listing}");
}

/// Whether `needle` is anywhere in the database's files (the WAL included).
fn on_disk(app: &TestApp, needle: &[u8]) -> bool {
    let file = app.db_file.as_ref().unwrap();
    let mut found = false;
    for suffix in ["", "-wal"] {
        let path = format!("{}{suffix}", file.display());
        if let Ok(bytes) = std::fs::read(&path) {
            found |= bytes.windows(needle.len()).any(|w| w == needle);
        }
    }
    found
}

async fn kv_custom_metadata_is_sealed_in_the_database(app: TestApp) {
    let marker = "metadata-marker-7f3a9c";
    let body = json!({"custom_metadata": {"owner_email": marker}});
    let (status, answer) = app
        .call(
            Method::POST,
            "/v1/secret/metadata/db/main",
            Some(&app.root),
            Some(body),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{answer}");
    let (status, answer) = app
        .call(
            Method::POST,
            "/v1/secret/data/db/main",
            Some(&app.root),
            Some(json!({"data": {"password": "p"}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["data"]["custom_metadata"]["owner_email"], marker);
    let read = app
        .ok(Method::GET, "/v1/secret/metadata/db/main", None)
        .await;
    assert_eq!(read["data"]["custom_metadata"]["owner_email"], marker);
    let read = app.ok(Method::GET, "/v1/secret/data/db/main", None).await;
    assert_eq!(
        read["data"]["metadata"]["custom_metadata"]["owner_email"],
        marker
    );
    // The row holds an envelope and no clear copy (PostgreSQL and SQLite).
    let meta = app
        .inner_store()
        .secret_meta("secret", "db/main")
        .await
        .unwrap()
        .unwrap();
    assert!(
        meta.custom_metadata.is_empty(),
        "{:?}",
        meta.custom_metadata
    );
    let sealed = meta.custom_metadata_sealed.unwrap();
    assert!(!sealed.windows(marker.len()).any(|w| w == marker.as_bytes()));
    if app.db_file.is_some() {
        assert!(
            !on_disk(&app, marker.as_bytes()),
            "the metadata is on disk in the clear"
        );
    }
    // The envelope is bound to its secret: moved to another, it does not open.
    let other = "db/other";
    app.ok(
        Method::POST,
        &format!("/v1/secret/data/{other}"),
        Some(json!({"data": {"x": "y"}})),
    )
    .await;
    let patch = keyward_store::SecretMetaPatch {
        custom_metadata_sealed: Some(sealed),
        ..Default::default()
    };
    let event = keyward_server::handlers::audit_event(
        None,
        keyward_core::AuditAction::SecretMetadata,
        "x",
        json!({}),
        keyward_server::handlers::now(),
    )
    .unwrap();
    app.inner_store()
        .patch_secret_meta(
            "secret",
            other,
            &patch,
            keyward_server::handlers::now(),
            &event,
        )
        .await
        .unwrap();
    let (status, answer) = app
        .call(
            Method::GET,
            &format!("/v1/secret/metadata/{other}"),
            Some(&app.root),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{answer}");
    assert_eq!(answer["error"]["code"], "TAMPERED");
}

async fn kv_clear_metadata_from_before_is_read_and_sealed_on_the_next_write(app: TestApp) {
    let marker = "legacy-marker-51c0de";
    let mut custom = serde_json::Map::new();
    custom.insert("team".into(), marker.into());
    // Written as a server before the migration did: in the clear.
    let patch = keyward_store::SecretMetaPatch {
        custom_metadata: Some(custom),
        ..Default::default()
    };
    let at = keyward_server::handlers::now();
    let event = keyward_server::handlers::audit_event(
        None,
        keyward_core::AuditAction::SecretMetadata,
        "x",
        json!({}),
        at,
    )
    .unwrap();
    app.inner_store()
        .patch_secret_meta("secret", "old/one", &patch, at, &event)
        .await
        .unwrap();
    let read = app
        .ok(Method::GET, "/v1/secret/metadata/old/one", None)
        .await;
    assert_eq!(read["data"]["custom_metadata"]["team"], marker);
    app.ok(
        Method::POST,
        "/v1/secret/data/old/one",
        Some(json!({"data": {"k": "v"}})),
    )
    .await;
    let meta = app
        .inner_store()
        .secret_meta("secret", "old/one")
        .await
        .unwrap()
        .unwrap();
    assert!(meta.custom_metadata.is_empty());
    assert!(meta.custom_metadata_sealed.is_some());
    let read = app
        .ok(Method::GET, "/v1/secret/metadata/old/one", None)
        .await;
    assert_eq!(read["data"]["custom_metadata"]["team"], marker);
}

async fn kv_call_to_a_missing_mount_says_how_to_create_one(app: TestApp) {
    let (status, answer) = app
        .call(
            Method::POST,
            "/v1/nosuchmount/data/a",
            Some(&app.root),
            Some(json!({"data": {"k": "v"}})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(answer["error"]["code"], "NOT_FOUND");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(message.contains("no secrets mount"), "{message}");
    assert!(message.contains("POST /v1/sys/mounts/NAME"), "{message}");
    assert!(!message.contains("nosuchmount"), "{message}");
    // A mount out of the token's reach answers the same words.
    let token = app
        .token(json!({"name": "t", "scopes": ["secrets:write"], "environments": ["test"]}))
        .await;
    let (status, other) = app
        .call(
            Method::POST,
            "/v1/secret/data/a",
            Some(&token),
            Some(json!({"data": {"k": "v"}})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(other["error"], answer["error"]);
}

async fn a_test_token_creating_a_live_key_hears_it_is_out_of_reach(app: TestApp) {
    let api_id = app.create_api("tm", &["live", "test"]).await;
    let token = app
        .token(json!({"name": "t", "scopes": ["keys:write"], "environments": ["test"]}))
        .await;
    let (status, answer) = app
        .call(
            Method::POST,
            "/v1/keys",
            Some(&token),
            Some(json!({"api_id": api_id, "environment": "live", "owner": "acme"})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("does not reach the environment"),
        "{message}"
    );
    // The same for an API that does not exist: the answer reveals nothing
    // about which APIs exist.
    let (status, absent) = app
        .call(
            Method::POST,
            "/v1/keys",
            Some(&token),
            Some(json!({"api_id": "api_0000000000000000000000", "environment": "live", "owner": "acme"})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(absent, answer);
    // In its own environment the token issues keys.
    let (status, _) = app
        .call(
            Method::POST,
            "/v1/keys",
            Some(&token),
            Some(json!({"api_id": api_id, "environment": "test", "owner": "acme"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
}

async fn unseal_on_a_file_seal_says_it_unseals_itself(app: TestApp) {
    let (status, answer) = app
        .call(
            Method::POST,
            "/v1/sys/unseal",
            None,
            Some(json!({"key": "kws1_anything"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(message.contains("seal is `file`"), "{message}");
    assert!(
        message.contains("master.key in its data directory"),
        "{message}"
    );
}

async fn serde_errors_name_the_field_and_what_it_accepts(app: TestApp) {
    let api_id = app.create_api("tm", &["live"]).await;
    let cases = [
        (
            json!({"api_id": api_id, "environment": "prod", "owner": "o"}),
            "environment: unknown value, expected one of `live`, `test`, `dev`",
        ),
        (
            json!({"api_id": api_id, "environment": "live", "owner": "o",
                   "credits": {"remaining": "many"}}),
            "credits.remaining: wrong type, expected u64",
        ),
    ];
    for (body, expected) in cases {
        let (status, answer) = app
            .call(Method::POST, "/v1/keys", Some(&app.root), Some(body))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(answer["error"]["message"], expected);
    }
    let (status, answer) = app
        .call(Method::GET, "/v1/keys?limit=lots", Some(&app.root), None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("invalid query string: limit:"),
        "{message}"
    );
    assert!(!message.contains("lots"), "{message}");
}

on_both_backends!(
    name_fields_refuse_key_shapes,
    kv_custom_metadata_is_sealed_in_the_database,
    kv_clear_metadata_from_before_is_read_and_sealed_on_the_next_write,
    kv_call_to_a_missing_mount_says_how_to_create_one,
    a_test_token_creating_a_live_key_hears_it_is_out_of_reach,
    unseal_on_a_file_seal_says_it_unseals_itself,
    serde_errors_name_the_field_and_what_it_accepts,
);
