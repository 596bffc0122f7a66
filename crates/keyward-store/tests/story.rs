//! One storage story, generic over [`Store`], told against SQLite (a fresh
//! file per test) and against PostgreSQL (a fresh schema per test on the
//! server `KEYWARD_TEST_POSTGRES_URL` names; run with `--ignored`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // A panic in a test is a failed test.

use std::sync::Arc;

use keyward_core::limits::{Cidr, Credits, RateLimit, Refill, RefillInterval};
use keyward_core::{
    AdminScope, AdminToken, Api, ApiId, AuditEvent, Environment, EventId, KeyId, KeyRecord,
    KeyState, PlaintextKey, Prefix, RoleName, Scope, TokenId,
};
use keyward_store::{
    ApiPatch, AuditEntry, AuditFilter, BulkRevokeFilter, Change, CreditsPatch, EnvelopeColumn,
    EnvelopeCursor, KeyFilter, KeyPatch, KeyringEntry, LastFullToken, Page, PgStore, Rotation,
    SealKind, SealRecord, SecretMetaPatch, SecretMount, SecretWrite, Store, StoreError,
    StoredEnvelope, TransitKey, TransitKeyVersion, UsageRow, UseTarget, VersionAction,
};
use time::{Duration, OffsetDateTime};

fn now() -> OffsetDateTime {
    // Millisecond precision, as stored.
    let t = OffsetDateTime::now_utc();
    t.replace_nanosecond(t.millisecond() as u32 * 1_000_000)
        .unwrap()
}

fn event(action: &str, target: &str) -> AuditEvent {
    AuditEvent {
        id: EventId::generate(now()).unwrap(),
        at: now(),
        actor: None,
        action: action.into(),
        target: target.into(),
        details: serde_json::json!({"why": "story"}),
    }
}

fn api(prefix: &str) -> Api {
    Api {
        id: ApiId::generate(now()).unwrap(),
        name: format!("{prefix} api"),
        prefix: Prefix::parse(prefix).unwrap(),
        environments: vec![Environment::Live, Environment::Test],
        workspace: keyward_core::DEFAULT_WORKSPACE.to_owned(),
        created_at: now(),
        roles: Default::default(),
        critical_scopes: Vec::new(),
        signing: Default::default(),
    }
}

fn key(api: &Api, env: Environment, owner: &str, scopes: &[&str]) -> (KeyRecord, PlaintextKey) {
    let plain = PlaintextKey::generate(&api.prefix, env).unwrap();
    let mut record = KeyRecord::new(api.id.clone(), env, owner.into(), &plain, now()).unwrap();
    record.name = "story key".into();
    record.scopes = scopes.iter().map(|s| Scope::parse(s).unwrap()).collect();
    record.metadata = serde_json::json!({"plan": "pro"});
    (record, plain)
}

fn token(scopes: Vec<AdminScope>) -> (AdminToken, PlaintextKey) {
    let plain = PlaintextKey::generate(&Prefix::admin(), Environment::Live).unwrap();
    let token = AdminToken {
        id: TokenId::generate(now()).unwrap(),
        name: "story token".into(),
        digest: plain.digest(),
        start: plain.display_start(),
        scopes,
        api_ids: None,
        environments: None,
        created_by: None,
        created_at: now(),
        expires_at: None,
        revoked_at: None,
        workspaces: None,
        user_id: None,
        grants: Vec::new(),
        stepped_up_at: None,
        client_cert: None,
        last_used_at: None,
    };
    (token, plain)
}

/// The events of a listing, all of which must be readable.
fn events(entries: &[AuditEntry]) -> Vec<&AuditEvent> {
    entries
        .iter()
        .map(|e| match e {
            AuditEntry::Event(e) => e,
            AuditEntry::Unreadable { id, detail } => panic!("unreadable {id}: {detail}"),
        })
        .collect()
}

fn page(limit: u32) -> Page {
    Page { after: None, limit }
}

async fn apis_and_keys(store: Arc<dyn Store>) {
    store.ping().await.unwrap();
    let tm = api("tm");
    store
        .create_api(&tm, &event("api.create", tm.id.as_str()))
        .await
        .unwrap();
    assert_eq!(store.get_api(&tm.id).await.unwrap(), Some(tm.clone()));
    let clash = Api {
        id: ApiId::generate(now()).unwrap(),
        ..tm.clone()
    };
    assert!(matches!(
        store.create_api(&clash, &event("api.create", "x")).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.list_apis().await.unwrap(), vec![tm.clone()]);

    let (k, plain) = key(&tm, Environment::Live, "acme", &["prices:read"]);
    store
        .create_key(&k, &event("key.create", k.id.as_str()))
        .await
        .unwrap();
    assert_eq!(store.get_key(&k.id).await.unwrap(), Some(k.clone()));
    assert_eq!(
        store.find_key_by_digest(&plain.digest()).await.unwrap(),
        Some(k.clone())
    );
    let other = PlaintextKey::generate(&tm.prefix, Environment::Live).unwrap();
    assert_eq!(
        store.find_key_by_digest(&other.digest()).await.unwrap(),
        None
    );

    let patched = store
        .update_key(
            &k.id,
            &KeyPatch {
                scopes: Some(vec![Scope::parse("signals:read").unwrap()]),
                expires_at: Some(Some(now() + Duration::hours(1))),
                enabled: Some(false),
                ..KeyPatch::default()
            },
            now(),
            &event("key.update", k.id.as_str()),
        )
        .await
        .unwrap();
    assert_eq!(patched.name, k.name, "untouched fields stay");
    assert_eq!(patched.scopes, vec![Scope::parse("signals:read").unwrap()]);
    assert!(!patched.enabled && patched.expires_at.is_some());
    let cleared = store
        .update_key(
            &k.id,
            &KeyPatch {
                expires_at: Some(None),
                ..KeyPatch::default()
            },
            now(),
            &event("key.update", k.id.as_str()),
        )
        .await
        .unwrap();
    assert_eq!(cleared.expires_at, None);
    let missing = KeyId::generate(now()).unwrap();
    assert!(matches!(
        store
            .update_key(
                &missing,
                &KeyPatch::default(),
                now(),
                &event("key.update", "x")
            )
            .await,
        Err(StoreError::NotFound)
    ));

    let (revoked, first) = store
        .revoke_key(
            &k.id,
            "customer asked",
            now(),
            &event("key.revoke", k.id.as_str()),
        )
        .await
        .unwrap();
    assert!(first && revoked.revoked_at.is_some());
    assert_eq!(revoked.revoke_reason.as_deref(), Some("customer asked"));
    let (_, again) = store
        .revoke_key(&k.id, "again", now(), &event("key.revoke", k.id.as_str()))
        .await
        .unwrap();
    assert!(!again, "a second revoke changes nothing");

    let trail = store
        .list_audit(
            &AuditFilter {
                target: Some(k.id.to_string()),
                ..AuditFilter::default()
            },
            &page(100),
        )
        .await
        .unwrap();
    let actions: Vec<&str> = events(&trail).iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        ["key.create", "key.update", "key.update", "key.revoke"]
    );
}

async fn keys_created_in_bulk_are_all_or_nothing(store: Arc<dyn Store>) {
    let tm = api("bulk");
    store
        .create_api(&tm, &event("api.create", tm.id.as_str()))
        .await
        .unwrap();
    let made: Vec<KeyRecord> = (0..5)
        .map(|_| key(&tm, Environment::Live, "acme", &[]).0)
        .collect();
    let events: Vec<AuditEvent> = made
        .iter()
        .map(|k| event("key.create", k.id.as_str()))
        .collect();
    store.create_keys(&made, &events).await.unwrap();
    for k in &made {
        assert_eq!(store.get_key(&k.id).await.unwrap().as_ref(), Some(k));
    }
    // A duplicate digest fails the whole batch.
    let fresh = key(&tm, Environment::Live, "acme", &[]).0;
    let clash = KeyRecord {
        id: KeyId::generate(now()).unwrap(),
        ..made[0].clone()
    };
    let result = store.create_keys(&[fresh.clone(), clash], &[]).await;
    assert!(matches!(result, Err(StoreError::Conflict(_))));
    assert_eq!(store.get_key(&fresh.id).await.unwrap(), None);
}

async fn listing_and_pagination(store: Arc<dyn Store>) {
    let tm = api("pg");
    store
        .create_api(&tm, &event("api.create", tm.id.as_str()))
        .await
        .unwrap();
    let mut ids = Vec::new();
    for i in 0..7 {
        let env = if i % 2 == 0 {
            Environment::Live
        } else {
            Environment::Test
        };
        let (k, _) = key(
            &tm,
            env,
            if i < 5 { "acme" } else { "zeta" },
            &["prices:read"],
        );
        store
            .create_key(&k, &event("key.create", k.id.as_str()))
            .await
            .unwrap();
        ids.push(k.id);
    }
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let batch = store
            .list_keys(
                &KeyFilter::default(),
                &Page {
                    after: after.clone(),
                    limit: 3,
                },
                now(),
            )
            .await
            .unwrap();
        if batch.is_empty() {
            break;
        }
        after = batch.last().map(|k| k.id.to_string());
        seen.extend(batch.into_iter().map(|k| k.id));
    }
    assert_eq!(seen, ids, "pages cover every key once, in creation order");

    let acme_live = store
        .list_keys(
            &KeyFilter {
                owner: Some("acme".into()),
                environment: Some(Environment::Live),
                ..KeyFilter::default()
            },
            &page(100),
            now(),
        )
        .await
        .unwrap();
    assert_eq!(acme_live.len(), 3);
    let within_other_api = store
        .list_keys(
            &KeyFilter {
                api_ids_within: Some(vec![]),
                ..KeyFilter::default()
            },
            &page(100),
            now(),
        )
        .await
        .unwrap();
    assert!(within_other_api.is_empty());

    store
        .revoke_key(&ids[0], "r", now(), &event("key.revoke", ids[0].as_str()))
        .await
        .unwrap();
    store
        .update_key(
            &ids[1],
            &KeyPatch {
                expires_at: Some(Some(now() - Duration::seconds(1))),
                ..Default::default()
            },
            now(),
            &event("key.update", ids[1].as_str()),
        )
        .await
        .unwrap();
    store
        .update_key(
            &ids[2],
            &KeyPatch {
                enabled: Some(false),
                ..Default::default()
            },
            now(),
            &event("key.update", ids[2].as_str()),
        )
        .await
        .unwrap();
    for (state, expected) in [
        (KeyState::Revoked, vec![ids[0].clone()]),
        (KeyState::Expired, vec![ids[1].clone()]),
        (KeyState::Disabled, vec![ids[2].clone()]),
        (KeyState::Active, ids[3..].to_vec()),
    ] {
        let got: Vec<KeyId> = store
            .list_keys(
                &KeyFilter {
                    state: Some(state),
                    ..Default::default()
                },
                &page(100),
                now(),
            )
            .await
            .unwrap()
            .into_iter()
            .map(|k| k.id)
            .collect();
        assert_eq!(got, expected, "{state:?}");
    }
}

async fn rotation(store: Arc<dyn Store>) {
    let tm = api("rot");
    store
        .create_api(&tm, &event("api.create", tm.id.as_str()))
        .await
        .unwrap();
    let (old, _) = key(&tm, Environment::Live, "acme", &["orders:write"]);
    store
        .create_key(&old, &event("key.create", old.id.as_str()))
        .await
        .unwrap();
    let (mut successor, _) = key(&tm, Environment::Live, "acme", &["orders:write"]);
    successor.rotated_from = Some(old.id.clone());
    let until = now() + Duration::minutes(5);
    let rotation = Rotation {
        old: old.id.clone(),
        old_expires_at: until,
        successor: successor.clone(),
    };
    store
        .rotate_key(&rotation, &[event("key.rotate", old.id.as_str())])
        .await
        .unwrap();
    let old_now = store.get_key(&old.id).await.unwrap().unwrap();
    assert_eq!(old_now.rotated_to, Some(successor.id.clone()));
    assert_eq!(old_now.expires_at, Some(until));
    assert_eq!(
        store.get_key(&successor.id).await.unwrap(),
        Some(successor.clone())
    );

    let (again, _) = key(&tm, Environment::Live, "acme", &[]);
    let twice = Rotation {
        old: old.id.clone(),
        old_expires_at: until,
        successor: again.clone(),
    };
    assert!(matches!(
        store.rotate_key(&twice, &[]).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        store.get_key(&again.id).await.unwrap(),
        None,
        "nothing half-written"
    );
}

async fn bulk_revocation(store: Arc<dyn Store>) {
    let a = api("bulka");
    let b = api("bulkb");
    for x in [&a, &b] {
        store
            .create_api(x, &event("api.create", x.id.as_str()))
            .await
            .unwrap();
    }
    let mut made = Vec::new();
    for (api, env, owner, scopes) in [
        (
            &a,
            Environment::Live,
            "acme",
            vec!["withdrawals:write", "prices:read"],
        ),
        (&a, Environment::Test, "acme", vec!["prices:read"]),
        (&a, Environment::Live, "zeta", vec!["withdrawals:write"]),
        (&b, Environment::Live, "acme", vec!["withdrawals:write"]),
    ] {
        let (k, _) = key(api, env, owner, &scopes);
        store
            .create_key(&k, &event("key.create", k.id.as_str()))
            .await
            .unwrap();
        made.push(k.id);
    }
    let template = event("key.revoke", "");
    assert!(store
        .bulk_revoke(&BulkRevokeFilter::default(), "all", now(), &template)
        .await
        .is_err());
    let n = store
        .bulk_revoke(
            &BulkRevokeFilter {
                owner: Some("acme".into()),
                scope: Some(Scope::parse("withdrawals:write").unwrap()),
                api_ids_within: Some(vec![a.id.clone()]),
                ..Default::default()
            },
            "incident 7",
            now(),
            &template,
        )
        .await
        .unwrap()
        .len();
    assert_eq!(n, 1);
    let states: Vec<bool> = futures_states(&store, &made).await;
    assert_eq!(states, [true, false, false, false]);
    let n = store
        .bulk_revoke(
            &BulkRevokeFilter {
                environment: Some(Environment::Live),
                ..Default::default()
            },
            "incident 8",
            now(),
            &template,
        )
        .await
        .unwrap()
        .len();
    assert_eq!(n, 2, "already revoked keys are not counted again");
    let events = store
        .list_audit(
            &AuditFilter {
                action: Some("key.revoke".into()),
                ..AuditFilter::default()
            },
            &page(100),
        )
        .await
        .unwrap();
    assert_eq!(events.len(), 3, "one audit event per revoked key");
}

async fn limits_credits_and_usage(store: Arc<dyn Store>) {
    let tm = api("lim");
    store
        .create_api(&tm, &event("api.create", tm.id.as_str()))
        .await
        .unwrap();
    let (mut k, _) = key(&tm, Environment::Live, "acme", &[]);
    k.ratelimits = vec![RateLimit {
        name: "burst".into(),
        limit: 10,
        duration_ms: 1000,
    }];
    k.ip_allowlist = vec![Cidr::parse("10.0.0.0/8").unwrap()];
    k.credits = Some(Credits {
        remaining: 25,
        refill: None,
        refilled_at: now(),
    });
    store
        .create_key(&k, &event("key.create", k.id.as_str()))
        .await
        .unwrap();
    assert_eq!(store.get_key(&k.id).await.unwrap(), Some(k.clone()));

    // Leases never hand out more than there is.
    let first = store
        .lease_credits(&k.id, 10, now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((first.granted, first.remaining), (10, 15));
    let second = store
        .lease_credits(&k.id, 20, now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((second.granted, second.remaining), (15, 0));
    let third = store.lease_credits(&k.id, 5, now()).await.unwrap().unwrap();
    assert_eq!(third.granted, 0);
    store.return_credits(&k.id, 4, second.period).await.unwrap();
    assert_eq!(
        store
            .get_key(&k.id)
            .await
            .unwrap()
            .unwrap()
            .credits
            .unwrap()
            .remaining,
        4
    );
    // A lease from before a refill is void when given back.
    store
        .return_credits(&k.id, 4, second.period - Duration::days(1))
        .await
        .unwrap();
    assert_eq!(
        store
            .get_key(&k.id)
            .await
            .unwrap()
            .unwrap()
            .credits
            .unwrap()
            .remaining,
        4
    );

    // A refill period that began since the last refill resets the credits.
    let daily = Refill {
        interval: RefillInterval::Daily,
        amount: 100,
        day: None,
    };
    let patch = KeyPatch {
        credits: Some(Some(CreditsPatch {
            remaining: 0,
            refill: Some(daily),
        })),
        ratelimits: Some(vec![]),
        ip_allowlist: Some(vec![]),
        ..KeyPatch::default()
    };
    let patched = store
        .update_key(&k.id, &patch, now(), &event("key.update", "k"))
        .await
        .unwrap();
    assert!(patched.ratelimits.is_empty() && patched.ip_allowlist.is_empty());
    assert_eq!(patched.credits.unwrap().remaining, 0);
    assert_eq!(
        store
            .lease_credits(&k.id, 5, now())
            .await
            .unwrap()
            .unwrap()
            .granted,
        0
    );
    let tomorrow = now() + Duration::days(1);
    let refilled = store
        .lease_credits(&k.id, 5, tomorrow)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((refilled.granted, refilled.remaining), (5, 95));
    let unmetered = KeyPatch {
        credits: Some(None),
        ..KeyPatch::default()
    };
    store
        .update_key(&k.id, &unmetered, now(), &event("key.update", "k"))
        .await
        .unwrap();
    assert_eq!(store.lease_credits(&k.id, 5, now()).await.unwrap(), None);

    // Usage adds up across flushes; last_used_at only moves forward.
    let row = |minute, code: &str, count| UsageRow {
        key_id: k.id.clone(),
        minute,
        code: code.into(),
        count,
    };
    let later = now();
    store
        .record_usage(
            &[row(1, "VALID", 3), row(1, "RATE_LIMITED", 1)],
            &[(k.id.clone(), later)],
        )
        .await
        .unwrap();
    store
        .record_usage(
            // Rows repeated within one batch add up; the latest use counts.
            &[row(1, "VALID", 1), row(2, "VALID", 1), row(1, "VALID", 1)],
            &[
                (k.id.clone(), later - Duration::hours(1)),
                (k.id.clone(), later - Duration::hours(2)),
            ],
        )
        .await
        .unwrap();
    let usage = store.key_usage(&k.id, 0..=10).await.unwrap();
    assert_eq!(
        usage,
        vec![
            row(1, "RATE_LIMITED", 1),
            row(1, "VALID", 5),
            row(2, "VALID", 1)
        ]
    );
    assert_eq!(
        store.get_key(&k.id).await.unwrap().unwrap().last_used_at,
        Some(later)
    );
    // Only the minutes asked for are read, both ends included.
    assert_eq!(
        store.key_usage(&k.id, 2..=2).await.unwrap(),
        vec![row(2, "VALID", 1)]
    );
    assert_eq!(store.key_usage(&k.id, 3..=10).await.unwrap(), vec![]);
    #[allow(clippy::reversed_empty_ranges)]
    let backwards = 2..=1;
    assert_eq!(store.key_usage(&k.id, backwards).await.unwrap(), vec![]);

    // A flush of more rows than one statement carries, for many keys and
    // repeats of one row, adds up the same.
    let (other, _) = key(&tm, Environment::Live, "acme", &[]);
    store
        .create_key(&other, &event("key.create", other.id.as_str()))
        .await
        .unwrap();
    let many: Vec<UsageRow> = (0..2600)
        .map(|i| UsageRow {
            key_id: if i % 2 == 0 {
                k.id.clone()
            } else {
                other.id.clone()
            },
            minute: 3 + i64::from(i % 5),
            code: if i % 3 == 0 { "VALID" } else { "FORBIDDEN" }.into(),
            count: 1,
        })
        .collect();
    store.record_usage(&many, &[]).await.unwrap();
    let mut both = store.key_usage(&k.id, 3..=7).await.unwrap();
    both.extend(store.key_usage(&other.id, 3..=7).await.unwrap());
    assert_eq!(both.iter().map(|u| u.count).sum::<u64>(), 2600);
    for u in &both {
        let expected = many
            .iter()
            .filter(|m| m.key_id == u.key_id && m.minute == u.minute && m.code == u.code)
            .count();
        assert_eq!(u.count, expected as u64, "{u:?}");
    }

    // Pruning takes the oldest minute at a time, and only minutes before
    // the cut.
    assert_eq!(store.prune_usage(1).await.unwrap(), 0);
    assert_eq!(store.prune_usage(3).await.unwrap(), 2);
    assert_eq!(store.prune_usage(3).await.unwrap(), 1);
    assert_eq!(store.prune_usage(3).await.unwrap(), 0);
    assert_eq!(store.key_usage(&k.id, 0..=2).await.unwrap(), vec![]);
    assert_eq!(store.key_usage(&k.id, 3..=7).await.unwrap().len(), 10);

    // Owner limits are stored per owner and replaced whole.
    assert!(store.owner_ratelimits("acme").await.unwrap().is_empty());
    let limits = vec![RateLimit {
        name: "day".into(),
        limit: 1000,
        duration_ms: 86_400_000,
    }];
    store
        .set_owner_ratelimits("acme", &limits, now(), &event("owner.ratelimits", "acme"))
        .await
        .unwrap();
    store
        .set_owner_ratelimits("acme", &limits, now(), &event("owner.ratelimits", "acme"))
        .await
        .unwrap();
    assert_eq!(store.owner_ratelimits("acme").await.unwrap(), limits);
    assert!(store.owner_ratelimits("zeta").await.unwrap().is_empty());
}

async fn futures_states(store: &Arc<dyn Store>, ids: &[KeyId]) -> Vec<bool> {
    let mut out = Vec::new();
    for id in ids {
        out.push(
            store
                .get_key(id)
                .await
                .unwrap()
                .unwrap()
                .revoked_at
                .is_some(),
        );
    }
    out
}

async fn tokens_and_bootstrap(store: Arc<dyn Store>) {
    let (root, plain) = token(AdminScope::ALL.to_vec());
    assert!(store
        .bootstrap(&root, &event("token.create", root.id.as_str()))
        .await
        .unwrap());
    let (second, _) = token(AdminScope::ALL.to_vec());
    assert!(!store
        .bootstrap(&second, &event("token.create", "x"))
        .await
        .unwrap());
    assert_eq!(store.get_token(&second.id).await.unwrap(), None);
    assert_eq!(
        store.find_token_by_digest(&plain.digest()).await.unwrap(),
        Some(root.clone())
    );

    let (mut limited, _) = token(vec![AdminScope::KeysVerify]);
    limited.api_ids = Some(vec![ApiId::generate(now()).unwrap()]);
    limited.environments = Some(vec![Environment::Test]);
    limited.created_by = Some(root.id.clone());
    store
        .create_token(&limited, &event("token.create", limited.id.as_str()))
        .await
        .unwrap();
    assert_eq!(
        store.get_token(&limited.id).await.unwrap(),
        Some(limited.clone())
    );
    assert_eq!(store.list_tokens(&page(10)).await.unwrap().len(), 2);
    assert!(store
        .revoke_token(&limited.id, now(), &event("token.revoke", "t"))
        .await
        .unwrap());
    assert!(!store
        .revoke_token(&limited.id, now(), &event("token.revoke", "t"))
        .await
        .unwrap());
    let after = store.get_token(&limited.id).await.unwrap().unwrap();
    assert!(!after.is_usable(now()));
}

/// A child of `parent` with `scopes`.
fn child(parent: &AdminToken, scopes: Vec<AdminScope>) -> AdminToken {
    let (mut t, _) = token(scopes);
    t.created_by = Some(parent.id.clone());
    t
}

/// Tokens form a tree: revoking one revokes everything below it in one
/// transaction, with an event and a change-feed entry each; nothing is
/// minted under a revoked token; the guard keeps the last full token.
async fn token_tree(store: Arc<dyn Store>) {
    let (root, _) = token(AdminScope::ALL.to_vec());
    store
        .bootstrap(&root, &event("token.create", root.id.as_str()))
        .await
        .unwrap();
    assert!(store.has_full_token(now()).await.unwrap());
    let a = child(&root, vec![AdminScope::TokensWrite, AdminScope::ApisRead]);
    let b = child(&a, vec![AdminScope::ApisRead]);
    let c = child(&b, vec![AdminScope::ApisRead]);
    let sibling = child(&root, vec![AdminScope::ApisRead]);
    for t in [&a, &b, &c, &sibling] {
        store
            .create_token(t, &event("token.create", t.id.as_str()))
            .await
            .unwrap();
    }

    // The root is the last full token: the guarded revocation refuses and
    // changes nothing; the unguarded one (a leak) goes through.
    let before = store.latest_change().await.unwrap();
    assert!(matches!(
        store
            .revoke_token_tree(
                &root.id,
                now(),
                &event("token.revoke", root.id.as_str()),
                LastFullToken::Keep
            )
            .await,
        Err(StoreError::LastFullToken)
    ));
    assert_eq!(store.latest_change().await.unwrap(), before);
    assert!(store
        .get_token(&a.id)
        .await
        .unwrap()
        .unwrap()
        .is_usable(now()));

    let revoked = store
        .revoke_token_tree(
            &a.id,
            now(),
            &event("token.revoke", a.id.as_str()),
            LastFullToken::Keep,
        )
        .await
        .unwrap();
    let ids: Vec<&TokenId> = revoked.iter().map(|t| &t.id).collect();
    assert_eq!(
        ids,
        [&a.id, &b.id, &c.id],
        "the origin first, then its tree"
    );
    for t in [&a, &b, &c] {
        assert!(!store
            .get_token(&t.id)
            .await
            .unwrap()
            .unwrap()
            .is_usable(now()));
    }
    assert!(store
        .get_token(&sibling.id)
        .await
        .unwrap()
        .unwrap()
        .is_usable(now()));
    let changes = store.changes_after(before, 100).await.unwrap();
    let digests: Vec<Change> = changes.into_iter().map(|c| c.change).collect();
    assert_eq!(
        digests,
        [&a, &b, &c].map(|t| Change::Token(t.digest)),
        "one change-feed entry per revoked token"
    );
    let audit = store
        .list_audit(
            &AuditFilter {
                action: Some("token.revoke".into()),
                ..AuditFilter::default()
            },
            &page(100),
        )
        .await
        .unwrap();
    let audit = events(&audit);
    assert_eq!(audit.len(), 3);
    for e in audit.iter().filter(|e| e.target != a.id.as_str()) {
        assert_eq!(e.details["cascade_from"], a.id.as_str());
        assert_eq!(e.details["why"], "story", "the origin's details are kept");
    }
    // Again: nothing left to revoke, nothing written.
    assert!(store
        .revoke_token_tree(
            &a.id,
            now(),
            &event("token.revoke", "a"),
            LastFullToken::Keep
        )
        .await
        .unwrap()
        .is_empty());
    assert!(!store
        .revoke_token(&b.id, now(), &event("token.revoke", "b"))
        .await
        .unwrap());
    assert!(matches!(
        store
            .revoke_token_tree(
                &TokenId::generate(now()).unwrap(),
                now(),
                &event("token.revoke", "x"),
                LastFullToken::Keep
            )
            .await,
        Err(StoreError::NotFound)
    ));

    // Nothing is minted under a revoked token, nor under an unknown one.
    let late = child(&b, vec![AdminScope::ApisRead]);
    assert!(matches!(
        store
            .create_token(&late, &event("token.create", late.id.as_str()))
            .await,
        Err(StoreError::Conflict(_))
    ));
    let (mut orphan, _) = token(vec![AdminScope::ApisRead]);
    orphan.created_by = Some(TokenId::generate(now()).unwrap());
    assert!(store
        .create_token(&orphan, &event("token.create", "o"))
        .await
        .is_err());

    // A second full token elsewhere in the tree makes root revocable; a
    // limited or expired one does not count.
    let (mut limited, _) = token(AdminScope::ALL.to_vec());
    limited.created_by = Some(root.id.clone());
    limited.environments = Some(vec![Environment::Test]);
    let (mut expired, _) = token(AdminScope::ALL.to_vec());
    expired.created_by = Some(root.id.clone());
    expired.expires_at = Some(now() - Duration::seconds(1));
    for t in [&limited, &expired] {
        store
            .create_token(t, &event("token.create", t.id.as_str()))
            .await
            .unwrap();
    }
    assert!(matches!(
        store
            .revoke_token_tree(
                &root.id,
                now(),
                &event("token.revoke", "r"),
                LastFullToken::Keep
            )
            .await,
        Err(StoreError::LastFullToken)
    ));
    let revoked = store
        .revoke_token_tree(
            &root.id,
            now(),
            &event("token.revoke", "r"),
            LastFullToken::Revoke,
        )
        .await
        .unwrap();
    assert_eq!(revoked.len(), 4, "root, the sibling, limited and expired");
    assert!(!store.has_full_token(now()).await.unwrap());
}

/// Audit events carry the API and environment of their record, and the
/// reach filters keep the rest out.
async fn audit_reach(store: Arc<dyn Store>) {
    let (x, y) = (api("ax"), api("ay"));
    for a in [&x, &y] {
        store
            .create_api(a, &event("api.create", a.id.as_str()))
            .await
            .unwrap();
    }
    let (x_live, _) = key(&x, Environment::Live, "acme", &[]);
    let (y_test, _) = key(&y, Environment::Test, "acme", &[]);
    for k in [&x_live, &y_test] {
        store
            .create_key(k, &event("key.create", k.id.as_str()))
            .await
            .unwrap();
    }
    let mount = SecretMount {
        path: "team/app".into(),
        environment: Environment::Test,
        max_versions: 0,
        cas_required: false,
        created_at: now(),
    };
    store
        .create_mount(&mount, &event("mount.create", "team/app"))
        .await
        .unwrap();
    store
        .append_audit(&[
            event("secret.read", "team/app/db"),
            event("seal.unseal", "seal"),
        ])
        .await
        .unwrap();
    let targets = |filter: AuditFilter| {
        let store = Arc::clone(&store);
        async move {
            let listed = store.list_audit(&filter, &page(100)).await.unwrap();
            events(&listed)
                .iter()
                .map(|e| e.target.clone())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(targets(AuditFilter::default()).await.len(), 7);
    assert_eq!(
        targets(AuditFilter {
            api_ids_within: Some(vec![x.id.clone()]),
            ..AuditFilter::default()
        })
        .await,
        [x.id.to_string(), x_live.id.to_string()]
    );
    assert_eq!(
        targets(AuditFilter {
            environments_within: Some(vec![Environment::Test]),
            ..AuditFilter::default()
        })
        .await,
        [
            y_test.id.to_string(),
            "team/app".into(),
            "team/app/db".into()
        ]
    );
    assert_eq!(
        targets(AuditFilter {
            api_ids_within: Some(vec![y.id.clone()]),
            environments_within: Some(vec![Environment::Live]),
            ..AuditFilter::default()
        })
        .await,
        Vec::<String>::new()
    );
    assert_eq!(
        targets(AuditFilter {
            api_ids_within: Some(vec![]),
            ..AuditFilter::default()
        })
        .await,
        Vec::<String>::new(),
        "an empty reach sees nothing"
    );
}

/// Every change a node may cache is in the feed, in order, written with the
/// change itself; nothing else is; pruning drops old entries only.
async fn change_feed(store: Arc<dyn Store>) {
    assert_eq!(store.latest_change().await.unwrap(), 0);
    let tm = api("feed");
    store
        .create_api(&tm, &event("api.create", tm.id.as_str()))
        .await
        .unwrap();
    let (a, _) = key(&tm, Environment::Live, "acme", &[]);
    let (b, _) = key(&tm, Environment::Live, "acme", &[]);
    let (c, _) = key(&tm, Environment::Test, "zeta", &[]);
    for k in [&a, &b, &c] {
        store
            .create_key(k, &event("key.create", k.id.as_str()))
            .await
            .unwrap();
    }
    assert_eq!(
        store.latest_change().await.unwrap(),
        0,
        "a new key is nobody's cache entry yet"
    );
    let start = store.latest_change().await.unwrap();
    store
        .update_key(
            &a.id,
            &KeyPatch {
                enabled: Some(false),
                ..Default::default()
            },
            now(),
            &event("key.update", a.id.as_str()),
        )
        .await
        .unwrap();
    store
        .revoke_key(&b.id, "gone", now(), &event("key.revoke", b.id.as_str()))
        .await
        .unwrap();
    // Revoking again changes nothing and writes nothing.
    store
        .revoke_key(&b.id, "gone", now(), &event("key.revoke", b.id.as_str()))
        .await
        .unwrap();
    let (successor, _) = key(&tm, Environment::Test, "zeta", &[]);
    store
        .rotate_key(
            &Rotation {
                old: c.id.clone(),
                old_expires_at: now(),
                successor,
            },
            &[event("key.rotate", c.id.as_str())],
        )
        .await
        .unwrap();
    store
        .set_owner_ratelimits(
            "acme",
            &[RateLimit {
                name: "s".into(),
                limit: 5,
                duration_ms: 1000,
            }],
            now(),
            &event("owner.ratelimits", "acme"),
        )
        .await
        .unwrap();
    let (t, _) = token(vec![AdminScope::KeysRead]);
    store
        .create_token(&t, &event("token.create", t.id.as_str()))
        .await
        .unwrap();
    store
        .revoke_token(&t.id, now(), &event("token.revoke", t.id.as_str()))
        .await
        .unwrap();
    let revoked = store
        .bulk_revoke(
            &BulkRevokeFilter {
                owner: Some("acme".into()),
                ..Default::default()
            },
            "incident",
            now(),
            &event("key.revoke", ""),
        )
        .await
        .unwrap();
    assert_eq!(revoked, vec![a.digest]);

    let feed = store.changes_after(start, 100).await.unwrap();
    let changes: Vec<Change> = feed.iter().map(|e| e.change.clone()).collect();
    assert_eq!(
        changes,
        vec![
            Change::Key(a.digest),
            Change::Key(b.digest),
            Change::Key(c.digest),
            Change::Owner("acme".into()),
            Change::Token(t.digest),
            Change::Key(a.digest),
        ]
    );
    assert!(feed.windows(2).all(|w| w[0].seq < w[1].seq));
    let latest = store.latest_change().await.unwrap();
    assert_eq!(latest, feed.last().unwrap().seq);
    // Reading on from the middle, in pages.
    let page = store.changes_after(feed[1].seq, 2).await.unwrap();
    assert_eq!(page, feed[2..4].to_vec());
    assert!(store.changes_after(latest, 10).await.unwrap().is_empty());

    assert_eq!(
        store
            .prune_changes(now() - Duration::minutes(1))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store
            .prune_changes(now() + Duration::seconds(1))
            .await
            .unwrap(),
        6
    );
    assert!(store.changes_after(0, 10).await.unwrap().is_empty());
}

async fn seal_and_keyring(store: Arc<dyn Store>) {
    assert!(store.seal().await.unwrap().is_none());
    assert!(store.keyring().await.unwrap().is_empty());
    let seal = SealRecord {
        kind: SealKind::Shamir,
        share_set: Some([1, 2, 3, 4]),
        threshold: Some(2),
        share_digests: vec![[7u8; 32], [8u8; 32], [9u8; 32]],
        wrapped_master: None,
        created_at: now(),
        updated_at: now(),
    };
    let first = KeyringEntry {
        version: 1,
        wrapped_key: vec![1; 60],
        created_at: now(),
    };
    store
        .init_seal(&seal, &first, &event("seal.init", "seal"))
        .await
        .unwrap();
    assert_eq!(store.seal().await.unwrap().as_ref(), Some(&seal));
    // A second initialisation (another node, a retry) changes nothing.
    let other = SealRecord {
        kind: SealKind::File,
        share_set: None,
        threshold: None,
        share_digests: vec![],
        ..seal.clone()
    };
    let err = store
        .init_seal(&other, &first, &event("seal.init", "seal"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)));
    assert_eq!(store.seal().await.unwrap().as_ref(), Some(&seal));

    let second = KeyringEntry {
        version: 2,
        wrapped_key: vec![2; 60],
        created_at: now(),
    };
    store
        .add_keyring_key(&second, &event("keyring.rotate", "keyring"))
        .await
        .unwrap();
    let err = store
        .add_keyring_key(&second, &event("keyring.rotate", "keyring"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)));
    assert_eq!(
        store.keyring().await.unwrap(),
        vec![first.clone(), second.clone()]
    );
    // Uses are reserved in blocks and only ever add up.
    let target = UseTarget::Keyring { version: 2 };
    assert_eq!(store.reserve_uses(&target, 4096).await.unwrap(), 4096);
    assert_eq!(store.reserve_uses(&target, 10).await.unwrap(), 4106);
    assert!(matches!(
        store
            .reserve_uses(&UseTarget::Keyring { version: 7 }, 1)
            .await,
        Err(StoreError::NotFound)
    ));

    // A rekey replaces the seal and every wrapping at once.
    let rekeyed = SealRecord {
        kind: SealKind::Pkcs11,
        share_set: None,
        threshold: None,
        share_digests: vec![],
        wrapped_master: Some(vec![5; 60]),
        updated_at: now(),
        ..seal.clone()
    };
    let rewrapped = vec![
        KeyringEntry {
            wrapped_key: vec![3; 60],
            ..first.clone()
        },
        KeyringEntry {
            wrapped_key: vec![4; 60],
            ..second.clone()
        },
    ];
    store
        .rekey_seal(&rekeyed, &rewrapped, &event("seal.rekey", "seal"))
        .await
        .unwrap();
    assert_eq!(store.seal().await.unwrap(), Some(rekeyed.clone()));
    assert_eq!(store.keyring().await.unwrap(), rewrapped);
    // A rekey that names a version the keyring lacks changes nothing.
    let stray = vec![KeyringEntry {
        version: 9,
        wrapped_key: vec![6; 60],
        created_at: now(),
    }];
    assert!(store
        .rekey_seal(&seal, &stray, &event("seal.rekey", "seal"))
        .await
        .is_err());
    assert_eq!(store.seal().await.unwrap(), Some(rekeyed));

    store
        .append_audit(&[event("seal.unseal", "seal")])
        .await
        .unwrap();
    let actions: Vec<String> = store
        .list_audit(&AuditFilter::default(), &page(100))
        .await
        .unwrap()
        .into_iter()
        .map(|e| match e {
            AuditEntry::Event(e) => e.action,
            AuditEntry::Unreadable { id, detail } => panic!("unreadable {id}: {detail}"),
        })
        .collect();
    for action in ["seal.init", "keyring.rotate", "seal.rekey", "seal.unseal"] {
        assert_eq!(
            actions.iter().filter(|a| *a == action).count(),
            1,
            "{action} in {actions:?}"
        );
    }
}

async fn secrets(store: Arc<dyn Store>) {
    let mount = SecretMount {
        path: "secret".into(),
        environment: Environment::Live,
        max_versions: 0,
        cas_required: false,
        created_at: now(),
    };
    store
        .create_mount(&mount, &event("mount.create", "secret"))
        .await
        .unwrap();
    assert!(matches!(
        store
            .create_mount(&mount, &event("mount.create", "secret"))
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        store.get_mount("secret").await.unwrap(),
        Some(mount.clone())
    );
    assert_eq!(store.list_mounts().await.unwrap(), vec![mount]);
    store
        .configure_mount("secret", 5, true, &event("mount.config", "secret"))
        .await
        .unwrap();
    let configured = store.get_mount("secret").await.unwrap().unwrap();
    assert_eq!(
        (configured.max_versions, configured.cas_required),
        (5, true)
    );

    let write = |version: u64, replaces: u64, value: &[u8]| SecretWrite {
        mount: "secret".into(),
        path: "exchanges/binance".into(),
        version,
        replaces,
        value: value.to_vec(),
        keep: 2,
        at: now(),
    };
    store
        .write_secret(&write(1, 0, b"v1"), &event("secret.write", "x"))
        .await
        .unwrap();
    // A second "first write" loses: the secret exists.
    assert!(matches!(
        store
            .write_secret(&write(1, 0, b"v1b"), &event("secret.write", "x"))
            .await,
        Err(StoreError::Conflict(_))
    ));
    store
        .write_secret(&write(2, 1, b"v2"), &event("secret.write", "x"))
        .await
        .unwrap();
    assert!(matches!(
        store
            .write_secret(&write(2, 1, b"late"), &event("secret.write", "x"))
            .await,
        Err(StoreError::Conflict(_))
    ));
    store
        .write_secret(&write(3, 2, b"v3"), &event("secret.write", "x"))
        .await
        .unwrap();
    let meta = store
        .secret_meta("secret", "exchanges/binance")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((meta.current_version, meta.oldest_version), (3, 2));
    let versions = store
        .secret_versions("secret", "exchanges/binance")
        .await
        .unwrap();
    assert_eq!(
        versions.iter().map(|v| v.version).collect::<Vec<_>>(),
        vec![2, 3]
    );
    assert_eq!(versions[1].value.as_deref(), Some(&b"v3"[..]));

    let at = now();
    store
        .act_on_versions(
            "secret",
            "exchanges/binance",
            &[2, 9],
            VersionAction::Delete(at),
            &event("secret.delete", "x"),
        )
        .await
        .unwrap();
    store
        .act_on_versions(
            "secret",
            "exchanges/binance",
            &[3],
            VersionAction::Destroy,
            &event("secret.destroy", "x"),
        )
        .await
        .unwrap();
    let versions = store
        .secret_versions("secret", "exchanges/binance")
        .await
        .unwrap();
    assert_eq!(versions[0].deleted_at, Some(at));
    assert!(versions[1].destroyed && versions[1].value.is_none());
    store
        .act_on_versions(
            "secret",
            "exchanges/binance",
            &[2, 3],
            VersionAction::Undelete,
            &event("secret.undelete", "x"),
        )
        .await
        .unwrap();
    let versions = store
        .secret_versions("secret", "exchanges/binance")
        .await
        .unwrap();
    assert_eq!(versions[0].deleted_at, None);
    assert!(versions[1].destroyed);

    let mut custom = serde_json::Map::new();
    custom.insert("owner".into(), "treasury".into());
    store
        .patch_secret_meta(
            "secret",
            "db/main",
            &SecretMetaPatch {
                max_versions: Some(3),
                cas_required: None,
                custom_metadata: Some(custom.clone()),
                custom_metadata_sealed: None,
            },
            now(),
            &event("secret.metadata", "x"),
        )
        .await
        .unwrap();
    let meta = store
        .secret_meta("secret", "db/main")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((meta.current_version, meta.max_versions), (0, 3));
    assert_eq!(meta.custom_metadata, custom);
    assert_eq!(
        store.secret_paths("secret", "").await.unwrap(),
        vec!["db/main".to_owned(), "exchanges/binance".to_owned()]
    );
    assert_eq!(
        store.secret_paths("secret", "exch").await.unwrap(),
        vec!["exchanges/binance".to_owned()]
    );
    assert!(store
        .delete_secret(
            "secret",
            "exchanges/binance",
            &event("secret.destroy_all", "x")
        )
        .await
        .unwrap());
    assert!(!store
        .delete_secret(
            "secret",
            "exchanges/binance",
            &event("secret.destroy_all", "x")
        )
        .await
        .unwrap());
    assert!(store
        .secret_versions("secret", "exchanges/binance")
        .await
        .unwrap()
        .is_empty());
    // A secret under a mount that does not exist cannot be written.
    let stray = SecretWrite {
        mount: "nowhere".into(),
        ..write(1, 0, b"x")
    };
    assert!(store
        .write_secret(&stray, &event("secret.write", "x"))
        .await
        .is_err());
}

async fn transit_keys(store: Arc<dyn Store>) {
    let key = TransitKey {
        name: "orders".into(),
        key_type: "ed25519".into(),
        derived: false,
        latest_version: 1,
        min_decryption_version: 1,
        min_encryption_version: 0,
        deletion_allowed: false,
        environment: Environment::Test,
        api_ids: Some(vec![ApiId::generate(now()).unwrap()]),
        created_at: now(),
        updated_at: now(),
    };
    let version = |v: u32| TransitKeyVersion {
        version: v,
        material: vec![v as u8; 93],
        public_key: Some(vec![9; 32]),
        created_at: now(),
    };
    store
        .create_transit_key(&key, &version(1), &event("transit.create", "orders"))
        .await
        .unwrap();
    assert!(matches!(
        store
            .create_transit_key(&key, &version(1), &event("transit.create", "orders"))
            .await,
        Err(StoreError::Conflict(_))
    ));
    store
        .add_transit_key_version("orders", &version(2), &event("transit.rotate", "orders"))
        .await
        .unwrap();
    // Two rotations racing for version 2: one wins.
    assert!(matches!(
        store
            .add_transit_key_version("orders", &version(2), &event("transit.rotate", "orders"))
            .await,
        Err(StoreError::Conflict(_))
    ));
    let (read, versions) = store.get_transit_key("orders").await.unwrap().unwrap();
    assert_eq!(read.latest_version, 2);
    // Where the key belongs is kept as given.
    assert_eq!(
        (read.environment, &read.api_ids),
        (key.environment, &key.api_ids)
    );
    assert_eq!(
        versions.iter().map(|v| v.version).collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert_eq!(versions[1].material, vec![2; 93]);
    let target = UseTarget::Transit {
        name: "orders".into(),
        version: 2,
    };
    assert_eq!(store.reserve_uses(&target, 3).await.unwrap(), 3);
    assert_eq!(store.reserve_uses(&target, 3).await.unwrap(), 6);
    assert!(matches!(
        store
            .delete_transit_key("orders", &event("transit.delete", "orders"))
            .await,
        Err(StoreError::Conflict(_))
    ));
    store
        .configure_transit_key("orders", 2, 0, true, &event("transit.config", "orders"))
        .await
        .unwrap();
    let (read, _) = store.get_transit_key("orders").await.unwrap().unwrap();
    assert_eq!(
        (read.min_decryption_version, read.deletion_allowed),
        (2, true)
    );
    assert_eq!(
        store
            .list_transit_keys()
            .await
            .unwrap()
            .into_iter()
            .map(|k| (k.name, k.environment, k.api_ids))
            .collect::<Vec<_>>(),
        vec![("orders".to_owned(), key.environment, key.api_ids.clone())]
    );
    store
        .delete_transit_key("orders", &event("transit.delete", "orders"))
        .await
        .unwrap();
    assert!(store.get_transit_key("orders").await.unwrap().is_none());
    assert!(matches!(
        store
            .delete_transit_key("orders", &event("transit.delete", "orders"))
            .await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store
            .configure_transit_key("orders", 1, 0, false, &event("transit.config", "orders"))
            .await,
        Err(StoreError::NotFound)
    ));
}

async fn key_roles(store: Arc<dyn Store>) {
    let role = |r: &str| RoleName::parse(r).unwrap();
    let scope = |s: &str| Scope::parse(s).unwrap();
    let mut ex = api("kr");
    ex.roles = [
        (
            role("trader"),
            vec![scope("orders:write"), scope("prices:read")],
        ),
        (role("viewer"), vec![scope("prices:read")]),
    ]
    .into();
    ex.critical_scopes = vec![scope("withdrawals:write")];
    store
        .create_api(&ex, &event("api.create", ex.id.as_str()))
        .await
        .unwrap();
    assert_eq!(store.get_api(&ex.id).await.unwrap(), Some(ex.clone()));
    assert_eq!(store.list_apis().await.unwrap(), vec![ex.clone()]);

    // Keys hold roles their API defines; any other is refused in the write.
    let (mut k, _) = key(&ex, Environment::Live, "acme", &["me:read"]);
    k.roles = vec![role("trader")];
    store
        .create_key(&k, &event("key.create", k.id.as_str()))
        .await
        .unwrap();
    assert_eq!(store.get_key(&k.id).await.unwrap().unwrap().roles, k.roles);
    let (mut stray, _) = key(&ex, Environment::Live, "acme", &[]);
    stray.roles = vec![role("admin")];
    assert!(matches!(
        store
            .create_key(&stray, &event("key.create", stray.id.as_str()))
            .await,
        Err(StoreError::UndefinedRole)
    ));
    assert_eq!(store.get_key(&stray.id).await.unwrap(), None);
    let undefined = KeyPatch {
        roles: Some(vec![role("viewer"), role("admin")]),
        ..KeyPatch::default()
    };
    assert!(matches!(
        store
            .update_key(
                &k.id,
                &undefined,
                now(),
                &event("key.update", k.id.as_str())
            )
            .await,
        Err(StoreError::UndefinedRole)
    ));
    let both = KeyPatch {
        roles: Some(vec![role("trader"), role("viewer")]),
        ..KeyPatch::default()
    };
    let updated = store
        .update_key(&k.id, &both, now(), &event("key.update", k.id.as_str()))
        .await
        .unwrap();
    assert_eq!(updated.roles, vec![role("trader"), role("viewer")]);
    assert_eq!(updated.scopes, k.scopes, "roles leave scopes alone");

    // Changing a role's scopes writes one `api` feed entry; a name alone
    // writes none.
    let start = store.latest_change().await.unwrap();
    let changed = store
        .update_api(
            &ex.id,
            &ApiPatch {
                roles: Some(
                    [
                        (role("trader"), vec![scope("prices:read")]),
                        (role("viewer"), vec![scope("prices:read")]),
                    ]
                    .into(),
                ),
                ..ApiPatch::default()
            },
            now(),
            &event("api.update", ex.id.as_str()),
        )
        .await
        .unwrap();
    assert_eq!(changed.roles[&role("trader")], vec![scope("prices:read")]);
    assert_eq!(
        changed.critical_scopes, ex.critical_scopes,
        "left out, kept"
    );
    let renamed = store
        .update_api(
            &ex.id,
            &ApiPatch {
                name: Some("renamed".into()),
                ..ApiPatch::default()
            },
            now(),
            &event("api.update", ex.id.as_str()),
        )
        .await
        .unwrap();
    assert_eq!(renamed.name, "renamed");
    let critical = store
        .update_api(
            &ex.id,
            &ApiPatch {
                critical_scopes: Some(Vec::new()),
                ..ApiPatch::default()
            },
            now(),
            &event("api.update", ex.id.as_str()),
        )
        .await
        .unwrap();
    assert!(critical.critical_scopes.is_empty());
    let feed: Vec<Change> = store
        .changes_after(start, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.change)
        .collect();
    assert_eq!(
        feed,
        vec![Change::Api(ex.id.clone()), Change::Api(ex.id.clone())]
    );

    // A role unrevoked keys hold stays; the refusal counts them and
    // changes nothing.
    let (mut second, _) = key(&ex, Environment::Test, "acme", &[]);
    second.roles = vec![role("trader")];
    store
        .create_key(&second, &event("key.create", second.id.as_str()))
        .await
        .unwrap();
    let only_viewer = ApiPatch {
        roles: Some([(role("viewer"), vec![scope("prices:read")])].into()),
        ..ApiPatch::default()
    };
    let refused = store
        .update_api(
            &ex.id,
            &only_viewer,
            now(),
            &event("api.update", ex.id.as_str()),
        )
        .await;
    match refused {
        Err(StoreError::RoleInUse { role: r, keys }) => {
            assert_eq!((r, keys), (role("trader"), 2));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(store.get_api(&ex.id).await.unwrap().unwrap().roles.len(), 2);
    assert_eq!(store.latest_change().await.unwrap(), {
        let all = store.changes_after(start, 10).await.unwrap();
        all.last().unwrap().seq
    });
    for held in [&k, &second] {
        store
            .revoke_key(
                &held.id,
                "done",
                now(),
                &event("key.revoke", held.id.as_str()),
            )
            .await
            .unwrap();
    }
    let after = store
        .update_api(
            &ex.id,
            &only_viewer,
            now(),
            &event("api.update", ex.id.as_str()),
        )
        .await
        .unwrap();
    assert_eq!(after.roles.len(), 1);
    assert!(matches!(
        store
            .update_api(
                &ApiId::generate(now()).unwrap(),
                &only_viewer,
                now(),
                &event("api.update", "x"),
            )
            .await,
        Err(StoreError::NotFound)
    ));
}

/// The columns holding one envelope per row are walked in id order, page
/// by page, and an envelope is replaced only while it is still the one read.
async fn envelope_columns(store: Arc<dyn Store>) {
    for owner in ["carol", "alice", "bob"] {
        let sealed = format!("sealed-for-{owner}");
        store
            .set_owner_totp_pending(owner, sealed.as_bytes(), now(), &event("owner.totp", owner))
            .await
            .unwrap();
    }
    store
        .confirm_owner_totp("bob", 7, now(), &event("owner.totp.confirm", "bob"))
        .await
        .unwrap();
    let mut walked = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .row_envelopes(EnvelopeColumn::OwnerTotpPending, after.as_ref(), 1)
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.at.clone());
        walked.extend(page);
    }
    let at = |id: &str| EnvelopeCursor::Row {
        column: EnvelopeColumn::OwnerTotpPending,
        id: id.to_owned(),
    };
    assert_eq!(
        walked,
        vec![
            StoredEnvelope {
                at: at("alice"),
                envelope: b"sealed-for-alice".to_vec()
            },
            StoredEnvelope {
                at: at("carol"),
                envelope: b"sealed-for-carol".to_vec()
            },
        ]
    );
    let confirmed = store
        .row_envelopes(EnvelopeColumn::OwnerTotp, None, 10)
        .await
        .unwrap();
    assert_eq!(confirmed.len(), 1);
    assert_eq!(confirmed[0].envelope, b"sealed-for-bob");
    // Another column's cursor starts the walk over, it does not skip rows.
    let from_other = store
        .row_envelopes(EnvelopeColumn::OwnerTotp, after.as_ref(), 10)
        .await
        .unwrap();
    assert_eq!(from_other, confirmed);

    let bob = &confirmed[0].at;
    assert!(!store.replace_envelope(bob, b"stale", b"new").await.unwrap());
    assert!(store
        .replace_envelope(bob, b"sealed-for-bob", b"rewrapped")
        .await
        .unwrap());
    let factor = store.get_owner_factor("bob").await.unwrap().unwrap();
    assert_eq!(factor.totp_secret.as_deref(), Some(&b"rewrapped"[..]));
    // The pending column is its own: replacing there leaves bob alone.
    assert!(!store
        .replace_envelope(&at("bob"), b"rewrapped", b"other")
        .await
        .unwrap());
    for column in EnvelopeColumn::ALL {
        if !matches!(
            column,
            EnvelopeColumn::OwnerTotp | EnvelopeColumn::OwnerTotpPending
        ) {
            assert!(store
                .row_envelopes(column, None, 10)
                .await
                .unwrap()
                .is_empty());
        }
    }
    assert!(store.metadata_envelopes(None, 10).await.unwrap().is_empty());
}

macro_rules! story {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let dir = tempfile::tempdir().unwrap();
                    let store = keyward_store::SqliteStore::open(&dir.path().join("k.db"))
                        .await
                        .unwrap();
                    super::$name(std::sync::Arc::new(store)).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                #[ignore = "needs PostgreSQL: set KEYWARD_TEST_POSTGRES_URL, pass --ignored"]
                async fn $name() {
                    super::$name(super::postgres_store().await).await;
                }
            )*
        }
    };
}

story!(
    apis_and_keys,
    listing_and_pagination,
    rotation,
    bulk_revocation,
    tokens_and_bootstrap,
    limits_credits_and_usage,
    keys_created_in_bulk_are_all_or_nothing,
    change_feed,
    seal_and_keyring,
    secrets,
    transit_keys,
    token_tree,
    audit_reach,
    key_roles,
    envelope_columns,
);

/// A store in a fresh schema of the server `KEYWARD_TEST_POSTGRES_URL` names.
/// These tests are ignored by default; asked for without a server, they fail.
async fn postgres_store() -> Arc<dyn Store> {
    let url = std::env::var("KEYWARD_TEST_POSTGRES_URL")
        .expect("KEYWARD_TEST_POSTGRES_URL must name the PostgreSQL server to test against");
    // The id's random tail makes the schema unique to this test.
    let id = EventId::generate(now()).unwrap();
    let schema = format!("kw_test_{}", id.as_str()[4..].to_ascii_lowercase());
    Arc::new(
        PgStore::connect(&url, Some(&schema))
            .await
            .expect("PostgreSQL reachable"),
    )
}

/// On PostgreSQL a change wakes the nodes waiting for one at once, instead
/// of after their poll interval.
#[tokio::test]
#[ignore = "needs PostgreSQL: set KEYWARD_TEST_POSTGRES_URL, pass --ignored"]
async fn postgres_notifies_changes() {
    let store = postgres_store().await;
    // The first wait opens the listening connection.
    store
        .wait_for_change(std::time::Duration::from_millis(10))
        .await;
    store
        .set_owner_ratelimits("acme", &[], now(), &event("owner.ratelimits", "acme"))
        .await
        .unwrap();
    tokio::time::timeout(
        std::time::Duration::from_secs(20),
        store.wait_for_change(std::time::Duration::from_secs(60)),
    )
    .await
    .expect("the notification ends the wait long before its timeout");
}
