//! Every body the CLI client sends, built as the client builds it, written
//! as the client writes it and read back as the server's handlers read it
//! (`serde_json::from_slice` into the same type). Each case pins the JSON on
//! the wire: what the caller did not set is absent, and in PATCH bodies
//! `null` (clear the value) stays apart from absent (keep it). The answers
//! the client reads are checked the other way round: written as the server
//! writes them, read as the client reads them, and nothing lost.

#![allow(clippy::unwrap_used, clippy::expect_used)] // A panic in a test is a failed test.

use keyward_core::limits::{RateLimit, Refill, RefillInterval};
use keyward_core::{ApiId, Environment, KeyId, KeyState, Prefix, Scope, TokenId, VerifyCode};
use keyward_proto::{
    ApiCreate, ApiList, ApiUpdate, ApiView, BulkRevokeRequest, BulkRevokeResult, CreditsInput,
    CreditsView, ErrorDetail, ErrorResponse, IssuedKey, IssuedToken, KeyCreate, KeyList, KeyUpdate,
    KeyView, KeyringRotated, Leak, LeakReceipt, LeakReport, OwnerRateLimits, RateLimitView,
    RekeyRequest, RevokeRequest, RewrapCounts, RewrapResult, RotateRequest, SealInit,
    SealInitResult, SealStatusView, TokenCreate, TokenList, TokenView, UnsealRequest, VerifyAnswer,
    VerifyRequest, VerifyResult,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};
use time::macros::datetime;
use time::OffsetDateTime;

const LATER: OffsetDateTime = datetime!(2100-01-01 0:00 UTC);
const API: &str = "api_0abcdefghijklmnopqrstu";

/// Writes `body` as the client does, checks the JSON on the wire, and reads
/// it back as the server does. Returns what the server read.
fn check<T: Serialize + DeserializeOwned>(body: &T, expected: Value) -> T {
    let bytes = serde_json::to_vec(body).unwrap();
    // The server's `Json` refuses any body that is not an object.
    assert_eq!(bytes.first(), Some(&b'{'));
    let wire: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(wire, expected);
    let read: T =
        serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("the server refuses {wire}: {e}"));
    assert_eq!(
        serde_json::to_value(&read).unwrap(),
        wire,
        "{wire} is read as something else"
    );
    read
}

/// Writes `answer` as the server does and reads it as the client does into
/// `R`; nothing the server wrote may be lost or changed.
fn reads_back<W: Serialize, R: Serialize + DeserializeOwned>(answer: &W) -> R {
    let bytes = serde_json::to_vec(answer).unwrap();
    let written: Value = serde_json::from_slice(&bytes).unwrap();
    let read: R = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("the client cannot read {written}: {e}"));
    assert_eq!(serde_json::to_value(&read).unwrap(), written);
    read
}

fn burst() -> RateLimit {
    RateLimit {
        name: "burst".into(),
        limit: 10,
        duration_ms: 1000,
    }
}

fn monthly_credits() -> CreditsInput {
    CreditsInput {
        remaining: 5,
        refill: Some(Refill {
            interval: RefillInterval::Monthly,
            amount: 5,
            day: Some(3),
        }),
    }
}

#[test]
fn api_create_sends_environments_only_when_given() {
    let minimal = ApiCreate {
        name: "Prices".into(),
        prefix: "px".into(),
        environments: None,
        workspace: None,
        roles: Default::default(),
        critical_scopes: Vec::new(),
        signing: Default::default(),
    };
    check(&minimal, json!({"name": "Prices", "prefix": "px"}));
    let some = ApiCreate {
        environments: Some(vec![Environment::Live, Environment::Test]),
        workspace: Some("desk".into()),
        ..minimal
    };
    check(
        &some,
        json!({"name": "Prices", "prefix": "px", "environments": ["live", "test"],
               "workspace": "desk"}),
    );
}

#[test]
fn api_create_sends_roles_and_critical_scopes_only_when_given() {
    let body = ApiCreate {
        signing: None,
        name: "Exchange".into(),
        prefix: "ex".into(),
        environments: None,
        workspace: None,
        roles: [
            (
                "trader".to_owned(),
                vec!["prices:read".to_owned(), "orders:write".to_owned()],
            ),
            ("empty".to_owned(), Vec::new()),
        ]
        .into(),
        critical_scopes: vec!["withdrawals:write".into()],
    };
    let read = check(
        &body,
        json!({
            "name": "Exchange", "prefix": "ex",
            "roles": {"empty": [], "trader": ["prices:read", "orders:write"]},
            "critical_scopes": ["withdrawals:write"],
        }),
    );
    assert_eq!(read.roles["trader"], ["prices:read", "orders:write"]);
}

#[test]
fn api_update_tells_absent_from_empty() {
    check(&ApiUpdate::default(), json!({}));
    let cleared = check(
        &ApiUpdate {
            roles: Some(Default::default()),
            critical_scopes: Some(Vec::new()),
            ..ApiUpdate::default()
        },
        json!({"roles": {}, "critical_scopes": []}),
    );
    assert_eq!(cleared.roles.map(|r| r.len()), Some(0));
    assert!(cleared.name.is_none());
    check(
        &ApiUpdate {
            signing: None,
            name: Some("Renamed".into()),
            roles: Some([("viewer".to_owned(), vec!["prices:read".to_owned()])].into()),
            critical_scopes: None,
        },
        json!({"name": "Renamed", "roles": {"viewer": ["prices:read"]}}),
    );
}

#[test]
fn key_create_leaves_out_what_was_not_given() {
    let minimal = KeyCreate {
        signing: None,
        api_id: API.into(),
        environment: Environment::Live,
        name: None,
        owner: "acme".into(),
        scopes: Vec::new(),
        metadata: None,
        expires_at: None,
        enabled: None,
        ratelimits: Vec::new(),
        credits: None,
        ip_allowlist: Vec::new(),
        roles: Vec::new(),
    };
    let read = check(
        &minimal,
        json!({"api_id": API, "environment": "live", "owner": "acme"}),
    );
    assert!(read.scopes.is_empty() && read.ratelimits.is_empty() && read.ip_allowlist.is_empty());

    let full = KeyCreate {
        name: Some("signals".into()),
        scopes: vec!["signals:read".into()],
        metadata: Some(json!({"plan": "pro"})),
        expires_at: Some(LATER),
        enabled: Some(false),
        ratelimits: vec![burst()],
        credits: Some(monthly_credits()),
        ip_allowlist: vec!["10.0.0.0/8".into()],
        roles: vec!["trader".into()],
        ..minimal
    };
    let read = check(
        &full,
        json!({
            "api_id": API, "environment": "live", "owner": "acme", "name": "signals",
            "scopes": ["signals:read"], "metadata": {"plan": "pro"},
            "expires_at": "2100-01-01T00:00:00Z", "enabled": false,
            "ratelimits": [{"name": "burst", "limit": 10, "duration_ms": 1000}],
            "credits": {"remaining": 5, "refill": {"interval": "monthly", "amount": 5, "day": 3}},
            "ip_allowlist": ["10.0.0.0/8"], "roles": ["trader"],
        }),
    );
    assert_eq!(read.expires_at, Some(LATER));
}

#[test]
fn credits_leave_out_a_refill_not_given() {
    let no_refill = CreditsInput {
        remaining: 7,
        refill: None,
    };
    let body = KeyUpdate {
        credits: Some(Some(no_refill)),
        ..empty_update()
    };
    check(&body, json!({"credits": {"remaining": 7}}));
    let daily = CreditsInput {
        remaining: 7,
        refill: Some(Refill {
            interval: RefillInterval::Daily,
            amount: 7,
            day: None,
        }),
    };
    let body = KeyUpdate {
        credits: Some(Some(daily)),
        ..empty_update()
    };
    // Core's `Refill` writes a missing day as `null`, which it reads as
    // missing.
    check(
        &body,
        json!({"credits": {"remaining": 7, "refill": {"interval": "daily", "amount": 7, "day": null}}}),
    );
}

fn empty_update() -> KeyUpdate {
    KeyUpdate {
        signing: None,
        name: None,
        scopes: None,
        metadata: None,
        expires_at: None,
        enabled: None,
        ratelimits: None,
        credits: None,
        ip_allowlist: None,
        roles: None,
    }
}

/// Whether each clearable field of a PATCH was absent (`None`), `null`
/// (`Some(None)`) or a value (`Some(Some(_))`), comparable across types.
fn clearable(u: &KeyUpdate) -> (Option<Option<OffsetDateTime>>, Option<Option<u64>>) {
    (u.expires_at, u.credits.map(|c| c.map(|c| c.remaining)))
}

#[test]
fn key_update_tells_absent_from_null() {
    let cases = [
        (empty_update(), json!({})),
        (
            KeyUpdate {
                expires_at: Some(None),
                ..empty_update()
            },
            json!({"expires_at": null}),
        ),
        (
            KeyUpdate {
                expires_at: Some(Some(LATER)),
                ..empty_update()
            },
            json!({"expires_at": "2100-01-01T00:00:00Z"}),
        ),
        (
            KeyUpdate {
                credits: Some(None),
                ..empty_update()
            },
            json!({"credits": null}),
        ),
        (
            KeyUpdate {
                credits: Some(Some(monthly_credits())),
                ..empty_update()
            },
            json!({"credits": {"remaining": 5, "refill": {"interval": "monthly", "amount": 5, "day": 3}}}),
        ),
        (
            KeyUpdate {
                expires_at: Some(None),
                credits: Some(None),
                ratelimits: Some(Vec::new()),
                ip_allowlist: Some(Vec::new()),
                roles: Some(Vec::new()),
                ..empty_update()
            },
            json!({
                "expires_at": null, "credits": null, "ratelimits": [], "ip_allowlist": [],
                "roles": [],
            }),
        ),
        (
            KeyUpdate {
                name: Some("renamed".into()),
                scopes: Some(vec!["a".into(), "b".into()]),
                metadata: Some(json!({})),
                enabled: Some(false),
                ratelimits: Some(vec![burst()]),
                ip_allowlist: Some(vec!["10.2.3.4".into()]),
                roles: Some(vec!["trader".into()]),
                ..empty_update()
            },
            json!({
                "name": "renamed", "scopes": ["a", "b"], "metadata": {}, "enabled": false,
                "ratelimits": [{"name": "burst", "limit": 10, "duration_ms": 1000}],
                "ip_allowlist": ["10.2.3.4"], "roles": ["trader"],
            }),
        ),
    ];
    for (body, expected) in cases {
        let read = check(&body, expected);
        assert_eq!(clearable(&read), clearable(&body));
    }
}

#[test]
fn the_server_reads_absent_and_null_as_the_client_means_them() {
    let read = |text: &str| clearable(&serde_json::from_str::<KeyUpdate>(text).unwrap());
    assert_eq!(read("{}"), (None, None));
    assert_eq!(
        read(r#"{"expires_at": null, "credits": null}"#),
        (Some(None), Some(None))
    );
    let rotate: RotateRequest = serde_json::from_str(r#"{"expires_at": null}"#).unwrap();
    assert_eq!(rotate.expires_at, Some(None));
    let rotate: RotateRequest = serde_json::from_str("{}").unwrap();
    assert_eq!(rotate.expires_at, None);
}

#[test]
fn rotate_sends_the_grace_period_and_an_expiry_only_when_given() {
    let plain = RotateRequest {
        grace_period_seconds: 3600,
        expires_at: None,
    };
    let read = check(&plain, json!({"grace_period_seconds": 3600}));
    assert_eq!(read.expires_at, None);
    let cleared = RotateRequest {
        grace_period_seconds: 0,
        expires_at: Some(None),
    };
    let read = check(
        &cleared,
        json!({"grace_period_seconds": 0, "expires_at": null}),
    );
    assert_eq!(read.expires_at, Some(None));
    let later = RotateRequest {
        grace_period_seconds: 0,
        expires_at: Some(Some(LATER)),
    };
    let read = check(
        &later,
        json!({"grace_period_seconds": 0, "expires_at": "2100-01-01T00:00:00Z"}),
    );
    assert_eq!(read.expires_at, Some(Some(LATER)));
}

#[test]
fn revoke_sends_a_reason_only_when_given() {
    check(&RevokeRequest { reason: None }, json!({}));
    let read = check(
        &RevokeRequest {
            reason: Some("tour".into()),
        },
        json!({"reason": "tour"}),
    );
    assert_eq!(read.reason.as_deref(), Some("tour"));
}

#[test]
fn bulk_revoke_sends_only_the_filters_given() {
    let owner_only = BulkRevokeRequest {
        owner: Some("acme".into()),
        api_id: None,
        environment: None,
        created_before: None,
        scope: None,
        reason: "offboarded".into(),
    };
    check(
        &owner_only,
        json!({"owner": "acme", "reason": "offboarded"}),
    );
    let all = BulkRevokeRequest {
        api_id: Some(API.into()),
        environment: Some(Environment::Test),
        created_before: Some(LATER),
        scope: Some("orders:write".into()),
        ..owner_only
    };
    let read = check(
        &all,
        json!({
            "owner": "acme", "api_id": API, "environment": "test",
            "created_before": "2100-01-01T00:00:00Z", "scope": "orders:write",
            "reason": "offboarded",
        }),
    );
    assert_eq!(read.created_before, Some(LATER));
}

#[test]
fn verify_sends_only_the_requirements_given() {
    let bare = VerifyRequest {
        request: None,
        otp: None,
        key: "px_live_x".into(),
        scopes: Vec::new(),
        environment: None,
        ip: None,
        cost: None,
    };
    check(&bare, json!({"key": "px_live_x"}));
    let all = VerifyRequest {
        scopes: vec!["signals:read".into()],
        environment: Some(Environment::Live),
        ip: Some("10.2.3.4".into()),
        cost: Some(2),
        ..bare
    };
    check(
        &all,
        json!({
            "key": "px_live_x", "scopes": ["signals:read"], "environment": "live",
            "ip": "10.2.3.4", "cost": 2,
        }),
    );
}

#[test]
fn a_leak_report_sends_only_what_the_scan_knows() {
    let from_history = Leak {
        key: "px_live_x".into(),
        location: Some("deploy/prod.env:3".into()),
        commit: Some("4f2a9c1".into()),
        source: Some("keyward scan".into()),
    };
    let from_files = Leak {
        key: "px_live_y".into(),
        location: Some("bot.env:1".into()),
        commit: None,
        source: Some("keyward scan".into()),
    };
    let bare = Leak {
        key: "px_live_z".into(),
        location: None,
        commit: None,
        source: None,
    };
    let read = check(
        &LeakReport {
            leaks: vec![from_history, from_files, bare],
        },
        json!({"leaks": [
            {"key": "px_live_x", "location": "deploy/prod.env:3", "commit": "4f2a9c1",
             "source": "keyward scan"},
            {"key": "px_live_y", "location": "bot.env:1", "source": "keyward scan"},
            {"key": "px_live_z"},
        ]}),
    );
    assert_eq!(read.leaks[1].commit, None);
    assert_eq!(read.leaks[2].source, None);
    check(&LeakReport { leaks: Vec::new() }, json!({"leaks": []}));
    // The server refuses fields it does not know, in a leak or around it,
    // and reads an explicit `null` as absent.
    assert!(serde_json::from_str::<LeakReport>(r#"{"leak": []}"#).is_err());
    assert!(serde_json::from_str::<LeakReport>(r#"{"leaks": [{"key": "k", "line": 3}]}"#).is_err());
    let read: LeakReport =
        serde_json::from_str(r#"{"leaks": [{"key": "k", "commit": null}]}"#).unwrap();
    assert_eq!(read.leaks[0].commit, None);
}

#[test]
fn owner_rate_limits_send_an_empty_list_to_remove_them() {
    let none = OwnerRateLimits {
        ratelimits: Vec::new(),
    };
    check(&none, json!({"ratelimits": []}));
    let day = OwnerRateLimits {
        ratelimits: vec![RateLimit {
            name: "day".into(),
            limit: 1,
            duration_ms: 86_400_000,
        }],
    };
    check(
        &day,
        json!({"ratelimits": [{"name": "day", "limit": 1, "duration_ms": 86_400_000}]}),
    );
}

#[test]
fn token_create_sends_limits_only_when_given() {
    let plain = TokenCreate {
        name: "ci".into(),
        scopes: vec!["keys:read".into()],
        api_ids: None,
        environments: None,
        workspaces: None,
        client_cert: None,
        expires_at: None,
    };
    check(&plain, json!({"name": "ci", "scopes": ["keys:read"]}));
    let limited = TokenCreate {
        api_ids: Some(vec![API.into()]),
        environments: Some(vec![Environment::Live]),
        workspaces: Some(vec!["desk".into()]),
        client_cert: Some("ab".repeat(32)),
        expires_at: Some(LATER),
        ..plain
    };
    check(
        &limited,
        json!({
            "name": "ci", "scopes": ["keys:read"], "api_ids": [API],
            "environments": ["live"], "workspaces": ["desk"],
            "client_cert": "ab".repeat(32), "expires_at": "2100-01-01T00:00:00Z",
        }),
    );
}

#[test]
fn seal_bodies_send_what_each_operation_takes() {
    check(
        &SealInit {
            secret_shares: 5,
            secret_threshold: 3,
        },
        json!({"secret_shares": 5, "secret_threshold": 3}),
    );
    let read = check(
        &UnsealRequest {
            key: None,
            reset: true,
        },
        json!({"reset": true}),
    );
    assert!(read.reset && read.key.is_none());
    let read = check(
        &UnsealRequest {
            key: Some("share".into()),
            reset: false,
        },
        json!({"key": "share"}),
    );
    assert!(!read.reset);
    check(
        &RekeyRequest {
            keys: vec!["one".into(), "two".into()],
            secret_shares: Some(2),
            secret_threshold: Some(2),
        },
        json!({"keys": ["one", "two"], "secret_shares": 2, "secret_threshold": 2}),
    );
    // A pkcs11 rekey takes no fields.
    check(
        &RekeyRequest {
            keys: Vec::new(),
            secret_shares: None,
            secret_threshold: None,
        },
        json!({}),
    );
}

fn key_view() -> KeyView {
    let now = datetime!(2030-05-06 7:08:09.123 UTC);
    KeyView {
        signing: None,
        id: KeyId::generate(now).unwrap(),
        api_id: ApiId::parse(API).unwrap(),
        environment: Environment::Live,
        name: "acme".into(),
        owner: "acme".into(),
        scopes: vec!["signals:read".into()],
        roles: vec!["trader".into()],
        metadata: json!({"plan": "pro"}),
        start: "px_live_4eC3".into(),
        enabled: true,
        state: KeyState::Revoked,
        created_at: now,
        updated_at: now,
        expires_at: Some(LATER),
        revoked_at: Some(now),
        revoke_reason: Some("tour".into()),
        rotated_from: None,
        rotated_to: Some(KeyId::generate(now).unwrap()),
        ratelimits: vec![burst()],
        credits: Some(CreditsView {
            remaining: 3,
            refill: monthly_credits().refill,
            refilled_at: now,
        }),
        ip_allowlist: vec!["10.0.0.0/8".into()],
        last_used_at: None,
    }
}

fn token_view() -> TokenView {
    let now = datetime!(2030-05-06 7:08:09 UTC);
    TokenView {
        id: TokenId::generate(now).unwrap(),
        name: "ci".into(),
        start: "kwa_live_3xY".into(),
        scopes: vec!["keys:read".into()],
        api_ids: Some(vec![ApiId::parse(API).unwrap()]),
        environments: Some(vec![Environment::Test]),
        workspaces: Some(vec!["desk".into()]),
        client_cert: Some("cd".repeat(32)),
        created_by: Some(TokenId::generate(now).unwrap()),
        created_at: now,
        expires_at: None,
        revoked_at: Some(now),
        last_used_at: Some(now),
    }
}

#[test]
fn the_client_reads_every_answer_it_summarises_without_loss() {
    let api = ApiView {
        signing: Default::default(),
        id: ApiId::parse(API).unwrap(),
        name: "Prices".into(),
        prefix: Prefix::parse("px").unwrap(),
        environments: vec![Environment::Live],
        workspace: "desk".into(),
        created_at: datetime!(2030-05-06 7:08:09 UTC),
        roles: [("trader".to_owned(), vec!["orders:write".to_owned()])].into(),
        critical_scopes: vec!["withdrawals:write".into()],
    };
    reads_back::<_, ApiView>(&api);
    reads_back::<_, ApiList>(&ApiList { apis: vec![api] });
    reads_back::<_, KeyView>(&key_view());
    let issued: IssuedKey = reads_back(&IssuedKey {
        signing_secret: None,
        record: key_view(),
        key: "px_live_plaintext".into(),
    });
    assert_eq!(issued.key, "px_live_plaintext");
    reads_back::<_, KeyList>(&KeyList {
        keys: vec![key_view(), key_view()],
        next_cursor: Some("key_next".into()),
    });
    reads_back::<_, KeyList>(&KeyList {
        keys: Vec::new(),
        next_cursor: None,
    });
    reads_back::<_, BulkRevokeResult>(&BulkRevokeResult { revoked: 3 });
    let receipt: LeakReceipt = reads_back(&LeakReceipt {
        received: 3,
        malformed: 1,
        message: "every reported key that was valid is now revoked".into(),
    });
    assert_eq!((receipt.received, receipt.malformed), (3, 1));
    reads_back::<_, TokenView>(&token_view());
    reads_back::<_, IssuedToken>(&IssuedToken {
        record: token_view(),
        token: "kwa_live_plaintext".into(),
    });
    reads_back::<_, TokenList>(&TokenList {
        tokens: vec![token_view()],
        next_cursor: None,
    });
    reads_back::<_, SealStatusView>(&SealStatusView {
        kind: "shamir".into(),
        initialized: true,
        sealed: true,
        t: 2,
        n: 3,
        progress: 1,
        keyring_version: None,
    });
    reads_back::<_, SealInitResult>(&SealInitResult {
        keys: vec!["a".into(), "b".into()],
        secret_shares: 2,
        secret_threshold: 2,
    });
    reads_back::<_, KeyringRotated>(&KeyringRotated { keyring_version: 2 });
    reads_back::<_, RewrapResult>(&RewrapResult {
        data: RewrapCounts {
            moved: 4,
            current: 1,
            failed: 0,
        },
    });
    let refusal: ErrorResponse = reads_back(&ErrorResponse {
        error: ErrorDetail {
            code: "NOT_FOUND".into(),
            message: "no such key".into(),
        },
    });
    assert_eq!(refusal.error.code, "NOT_FOUND");
}

#[test]
fn a_verify_answer_reads_everything_the_server_writes() {
    let scopes = [
        Scope::parse("signals:read").unwrap(),
        Scope::parse("withdrawals:write").unwrap(),
    ];
    let metadata = serde_json::value::RawValue::from_string(r#"{"plan":"pro"}"#.into()).unwrap();
    let id = KeyId::generate(LATER).unwrap();
    let found = VerifyResult {
        reason: None,
        valid: true,
        code: VerifyCode::Valid,
        key_id: Some(id.as_str()),
        owner: Some("acme"),
        environment: Some(Environment::Live),
        scopes: Some(&scopes),
        metadata: Some(&metadata),
        expires_at: Some(LATER),
        ratelimit: Some(RateLimitView {
            limit: 2,
            remaining: 0,
            reset: 4_102_444_800_000,
        }),
        credits_remaining: Some(3),
        critical_scopes: Some(&scopes[1..]),
    };
    let answer: VerifyAnswer = reads_back(&found);
    assert!(answer.valid);
    assert_eq!(answer.key_id.as_ref(), Some(&id));
    assert_eq!(
        answer.critical_scopes,
        Some(vec!["withdrawals:write".to_owned()])
    );
    let none_critical = VerifyResult {
        critical_scopes: Some(&[]),
        ..found
    };
    let written = serde_json::to_value(&none_critical).unwrap();
    assert!(
        written.get("critical_scopes").is_none(),
        "absent when the key has none: {written}"
    );
    let unknown = VerifyResult {
        reason: None,
        valid: false,
        code: VerifyCode::NotFound,
        key_id: None,
        owner: None,
        environment: None,
        scopes: None,
        metadata: None,
        expires_at: None,
        ratelimit: None,
        credits_remaining: None,
        critical_scopes: None,
    };
    let answer: VerifyAnswer = reads_back(&unknown);
    assert_eq!(answer.code, VerifyCode::NotFound);
}
