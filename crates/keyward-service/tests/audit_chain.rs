//! The audit log's hash chain against a database changed behind Keyward's
//! back, as someone with write access to it would: every edit, deletion,
//! insertion, reordering and cut tail is found at its sequence number and
//! named, and an untouched log verifies clean. On SQLite always, on
//! PostgreSQL with `KEYWARD_TEST_POSTGRES_URL` and `--ignored`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // A panic in a test is a failed test.

use std::sync::Arc;

use ed25519_dalek::Signer as _;
use keyward_core::chain::{checkpoint_message, link, ChainedEvent, Checkpoint, Tamper};
use keyward_core::{AuditAction, AuditEvent, TokenId};
use keyward_service::audit_log::{check_chain, check_chain_with, Evidence, Witnessed};
use keyward_store::{PgStore, SqliteStore, Store};
use serde_json::json;
use time::OffsetDateTime;

/// The database under a store, reached directly.
enum Raw {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl Raw {
    async fn run(&self, sql: &str) {
        match self {
            Raw::Sqlite(pool) => {
                sqlx::raw_sql(sql).execute(pool).await.unwrap();
            }
            Raw::Postgres(pool) => {
                sqlx::raw_sql(sql).execute(pool).await.unwrap();
            }
        }
    }

    async fn hash_at(&self, seq: i64) -> Vec<u8> {
        let sql = "SELECT hash FROM audit_events WHERE seq = $1";
        match self {
            Raw::Sqlite(pool) => sqlx::query_scalar(sql).bind(seq).fetch_one(pool).await,
            Raw::Postgres(pool) => sqlx::query_scalar(sql).bind(seq).fetch_one(pool).await,
        }
        .unwrap()
    }

    /// Inserts a forged event with the chain columns given.
    async fn insert(&self, seq: Option<i64>, prev: &[u8], event: &ChainedEvent) {
        let hash = link(&prev.try_into().unwrap(), event);
        let sql = "INSERT INTO audit_events \
            (id, at, actor, action, target, details, api_id, environment, seq, prev_hash, hash) \
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";
        macro_rules! insert {
            ($pool:expr) => {
                sqlx::query(sql)
                    .bind(&event.id)
                    .bind(event.at_ms)
                    .bind(&event.actor)
                    .bind(&event.action)
                    .bind(&event.target)
                    .bind(&event.details)
                    .bind(&event.api_id)
                    .bind(&event.environment)
                    .bind(seq)
                    .bind(prev.to_vec())
                    .bind(hash.to_vec())
                    .execute($pool)
                    .await
                    .unwrap();
            };
        }
        match self {
            Raw::Sqlite(pool) => {
                insert!(pool);
            }
            Raw::Postgres(pool) => {
                insert!(pool);
            }
        }
    }
}

#[derive(Clone, Copy)]
enum Backend {
    Sqlite,
    Postgres,
}

/// A fresh store on `backend` and a direct connection to its database.
async fn open(backend: Backend, dir: &std::path::Path) -> (Arc<dyn Store>, Raw) {
    match backend {
        Backend::Sqlite => {
            let path = dir.join("keyward.db");
            let store = SqliteStore::open(&path).await.unwrap();
            let raw = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
                .await
                .unwrap();
            (Arc::new(store), Raw::Sqlite(raw))
        }
        Backend::Postgres => {
            let (url, schema) = postgres_schema();
            let store = PgStore::connect(&url, Some(&schema)).await.unwrap();
            let options: sqlx::postgres::PgConnectOptions = url.parse().unwrap();
            let raw = sqlx::PgPool::connect_with(options.options([("search_path", &schema)]))
                .await
                .unwrap();
            (Arc::new(store), Raw::Postgres(raw))
        }
    }
}

/// The PostgreSQL server to test against and a schema of this test's own.
fn postgres_schema() -> (String, String) {
    let url = std::env::var("KEYWARD_TEST_POSTGRES_URL")
        .expect("KEYWARD_TEST_POSTGRES_URL must name the PostgreSQL server to test against");
    let id = keyward_core::KeyId::generate(OffsetDateTime::now_utc()).unwrap();
    (
        url,
        format!("kw_chain_{}", id.as_str()[4..].to_ascii_lowercase()),
    )
}

fn event(n: usize) -> AuditEvent {
    let now = OffsetDateTime::now_utc();
    AuditEvent {
        id: keyward_store::event_id(now).unwrap(),
        at: now,
        actor: (n % 2 == 0).then(|| TokenId::generate(now).unwrap()),
        action: AuditAction::KeyCreate.as_str().to_owned(),
        target: format!("key_{n}"),
        details: json!({ "n": n, "note": "ninth" }),
    }
}

/// Twelve events: nine written one by one, then three by one write.
async fn twelve_events(store: &dyn Store) {
    for n in 1..=9 {
        store.append_audit(&[event(n)]).await.unwrap();
    }
    store
        .append_audit(&[event(10), event(11), event(12)])
        .await
        .unwrap();
}

async fn finding(store: &dyn Store) -> Option<(u64, Tamper)> {
    check_chain(store)
        .await
        .unwrap()
        .finding
        .map(|f| (f.sequence, f.kind))
}

fn forged(n: usize) -> ChainedEvent {
    ChainedEvent {
        id: keyward_store::event_id(OffsetDateTime::now_utc())
            .unwrap()
            .as_str()
            .to_owned(),
        at_ms: 1_700_000_000_000,
        actor: None,
        action: "key.revoke".into(),
        target: format!("key_{n}"),
        details: r#"{"reason":"forged"}"#.into(),
        api_id: None,
        environment: None,
    }
}

/// Each way of changing the log, on a fresh log of twelve events, and the
/// sequence number and kind the check names.
async fn each_tampering_is_found_and_named(backend: Backend) {
    type Tampering = (&'static str, Option<(u64, Tamper)>);
    let cases: [Tampering; 10] = [
        ("untouched", None),
        ("edit a field", Some((5, Tamper::Edited))),
        ("edit the reach", Some((8, Tamper::Edited))),
        ("delete an event", Some((4, Tamper::Deleted))),
        ("insert one between two", Some((7, Tamper::Inserted))),
        (
            "insert one with no sequence number",
            Some((13, Tamper::Inserted)),
        ),
        ("swap two", Some((3, Tamper::Reordered))),
        ("delete the tail", Some((10, Tamper::Truncated))),
        ("append past the head", Some((13, Tamper::Inserted))),
        // SQLite keeps a value of any type in any column.
        ("text where the time goes", Some((2, Tamper::Edited))),
    ];
    for (case, expected) in cases {
        if case == "text where the time goes" && matches!(backend, Backend::Postgres) {
            continue;
        }
        let dir = tempfile::tempdir().unwrap();
        let (store, raw) = open(backend, dir.path()).await;
        twelve_events(store.as_ref()).await;
        match case {
            "untouched" => {}
            "edit a field" => {
                raw.run(
                    r#"UPDATE audit_events SET details = '{"n":5,"note":"tenth"}' WHERE seq = 5"#,
                )
                .await
            }
            "edit the reach" => {
                raw.run("UPDATE audit_events SET api_id = 'api_other' WHERE seq = 8")
                    .await
            }
            "delete an event" => raw.run("DELETE FROM audit_events WHERE seq = 4").await,
            "insert one between two" => {
                // Later events move up one, and the forged one is chained
                // after the sixth as the server would have.
                raw.run("UPDATE audit_events SET seq = -seq WHERE seq >= 7")
                    .await;
                raw.run("UPDATE audit_events SET seq = 1 - seq WHERE seq <= -7")
                    .await;
                let prev = raw.hash_at(6).await;
                raw.insert(Some(7), &prev, &forged(7)).await;
            }
            "insert one with no sequence number" => {
                raw.insert(None, &[0; 32], &forged(0)).await;
            }
            "swap two" => {
                raw.run("UPDATE audit_events SET seq = -3 WHERE seq = 3")
                    .await;
                raw.run("UPDATE audit_events SET seq = 3 WHERE seq = 4")
                    .await;
                raw.run("UPDATE audit_events SET seq = 4 WHERE seq = -3")
                    .await;
            }
            "delete the tail" => raw.run("DELETE FROM audit_events WHERE seq > 9").await,
            "append past the head" => {
                let prev = raw.hash_at(12).await;
                raw.insert(Some(13), &prev, &forged(13)).await;
            }
            "text where the time goes" => {
                raw.run("UPDATE audit_events SET at = 'yesterday' WHERE seq = 2")
                    .await
            }
            other => unreachable!("{other}"),
        }
        assert_eq!(finding(store.as_ref()).await, expected, "{case}");
    }
}

/// Writes from several stores at once (on PostgreSQL, as several nodes
/// would) form one chain with no gap.
async fn concurrent_writes_form_one_gapless_chain(backend: Backend) {
    const WRITERS: usize = 4;
    const EACH: usize = 25;
    let dir = tempfile::tempdir().unwrap();
    let (first, raw) = open(backend, dir.path()).await;
    let mut stores = vec![first];
    if let (Backend::Postgres, Raw::Postgres(pool)) = (backend, &raw) {
        let schema: String = sqlx::query_scalar("SELECT current_schema()")
            .fetch_one(pool)
            .await
            .unwrap();
        let url = std::env::var("KEYWARD_TEST_POSTGRES_URL").unwrap();
        for _ in 1..3 {
            stores.push(Arc::new(
                PgStore::connect(&url, Some(&schema)).await.unwrap(),
            ));
        }
    }
    let mut tasks = Vec::new();
    for writer in 0..WRITERS {
        for store in &stores {
            let store = Arc::clone(store);
            tasks.push(tokio::spawn(async move {
                for n in 0..EACH {
                    store
                        .append_audit(&[event(writer * 1000 + n)])
                        .await
                        .unwrap();
                }
            }));
        }
    }
    for task in tasks {
        task.await.unwrap();
    }
    let report = check_chain(stores[0].as_ref()).await.unwrap();
    let written = (WRITERS * EACH * stores.len()) as u64;
    assert_eq!(report.finding, None);
    assert_eq!(report.rows, written);
    assert_eq!(report.head.sequence, written);
    assert_eq!(stores[0].chain_head().await.unwrap(), Some(report.head));
}

/// The key a test signs checkpoints with, stored as the store's audit
/// key (its private half is the server's business, not the check's).
async fn audit_key(store: &dyn Store, seed: u8) -> ed25519_dalek::SigningKey {
    let signing = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
    store
        .put_audit_key(&keyward_store::AuditKey {
            id: "signing".into(),
            public_key: signing.verifying_key().to_bytes().to_vec(),
            private_key: b"sealed".to_vec(),
            created_at: OffsetDateTime::now_utc(),
        })
        .await
        .unwrap();
    signing
}

/// A checkpoint of event `seq` as stored, signed by `signing`.
async fn checkpoint_at(raw: &Raw, signing: &ed25519_dalek::SigningKey, seq: u64) -> Checkpoint {
    let hash: [u8; 32] = raw
        .hash_at(i64::try_from(seq).unwrap())
        .await
        .try_into()
        .unwrap();
    let at_ms = 1_700_000_000_000 + i64::try_from(seq).unwrap();
    Checkpoint {
        sequence: seq,
        hash,
        at_ms,
        key_id: "signing".into(),
        signature: signing
            .sign(&checkpoint_message(seq, &hash, at_ms))
            .to_bytes()
            .to_vec(),
    }
}

/// Re-chains every event from `from` on after the one before it, as an
/// attacker who edited event `from` would to hide it, and moves the head.
async fn rechain_from(store: &dyn Store, raw: &Raw, from: u64) {
    let rows = store.chain_rows(0, 100).await.unwrap();
    let mut prev = [0u8; 32];
    for row in rows {
        let seq = u64::try_from(row.sequence).unwrap();
        if seq < from {
            prev = row.hash.unwrap().try_into().unwrap();
            continue;
        }
        let hash = link(&prev, &row.event);
        let sql = "UPDATE audit_events SET prev_hash = $1, hash = $2 WHERE seq = $3";
        match raw {
            Raw::Sqlite(pool) => {
                sqlx::query(sql)
                    .bind(prev.to_vec())
                    .bind(hash.to_vec())
                    .bind(row.sequence)
                    .execute(pool)
                    .await
                    .unwrap();
            }
            Raw::Postgres(pool) => {
                sqlx::query(sql)
                    .bind(prev.to_vec())
                    .bind(hash.to_vec())
                    .bind(row.sequence)
                    .execute(pool)
                    .await
                    .unwrap();
            }
        }
        prev = hash;
    }
    let sql = "UPDATE audit_chain SET hash = $1";
    match raw {
        Raw::Sqlite(pool) => sqlx::query(sql)
            .bind(prev.to_vec())
            .execute(pool)
            .await
            .map(|_| ()),
        Raw::Postgres(pool) => sqlx::query(sql)
            .bind(prev.to_vec())
            .execute(pool)
            .await
            .map(|_| ()),
    }
    .unwrap();
}

/// Signed checkpoints at events 6 and 12, kept in the store and by a
/// witness: what each tampering that gets past the chain itself looks
/// like against them.
async fn checkpoints_and_witnesses_catch_what_the_chain_cannot(backend: Backend) {
    type Case = (&'static str, Option<(u64, Tamper)>, Option<(u64, Tamper)>);
    // Each case, what the store alone finds, and what the witness (and the
    // auditor's own copy of the public key) adds.
    let cases: [Case; 5] = [
        ("untouched", None, None),
        (
            "edit an event and re-chain the rest",
            Some((6, Tamper::Edited)),
            Some((6, Tamper::Edited)),
        ),
        (
            "replace the public key",
            Some((6, Tamper::BadSignature)),
            Some((6, Tamper::BadSignature)),
        ),
        (
            "replace the key and re-sign every checkpoint",
            None,
            Some((6, Tamper::BadSignature)),
        ),
        (
            "cut the tail with its checkpoints and head",
            None,
            Some((10, Tamper::Truncated)),
        ),
    ];
    for (case, alone, witnessed) in cases {
        let dir = tempfile::tempdir().unwrap();
        let (store, raw) = open(backend, dir.path()).await;
        twelve_events(store.as_ref()).await;
        let signing = audit_key(store.as_ref(), 7).await;
        let public = signing.verifying_key().to_bytes();
        let mut witness = Vec::new();
        for seq in [6, 12] {
            let checkpoint = checkpoint_at(&raw, &signing, seq).await;
            store.put_checkpoint(&checkpoint).await.unwrap();
            witness.push(Witnessed {
                checkpoint,
                public_key: public,
            });
        }
        match case {
            "untouched" => {}
            "edit an event and re-chain the rest" => {
                raw.run(r#"UPDATE audit_events SET details = '{"n":3}' WHERE seq = 3"#)
                    .await;
                rechain_from(store.as_ref(), &raw, 3).await;
            }
            "replace the public key" => {
                let other = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
                let hex: String = other
                    .verifying_key()
                    .to_bytes()
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                let literal = match backend {
                    Backend::Sqlite => format!("X'{hex}'"),
                    Backend::Postgres => format!("'\\x{hex}'::bytea"),
                };
                raw.run(&format!("UPDATE audit_keys SET public_key = {literal}"))
                    .await;
            }
            "replace the key and re-sign every checkpoint" => {
                raw.run("DELETE FROM audit_checkpoints").await;
                raw.run("DELETE FROM audit_keys").await;
                let forger = audit_key(store.as_ref(), 9).await;
                for seq in [6, 12] {
                    let checkpoint = checkpoint_at(&raw, &forger, seq).await;
                    store.put_checkpoint(&checkpoint).await.unwrap();
                }
            }
            "cut the tail with its checkpoints and head" => {
                let hash = raw.hash_at(9).await;
                raw.run("DELETE FROM audit_events WHERE seq > 9").await;
                raw.run("DELETE FROM audit_checkpoints WHERE seq > 9").await;
                let sql = "UPDATE audit_chain SET seq = 9, hash = $1";
                match &raw {
                    Raw::Sqlite(pool) => {
                        sqlx::query(sql).bind(hash).execute(pool).await.map(|_| ())
                    }
                    Raw::Postgres(pool) => {
                        sqlx::query(sql).bind(hash).execute(pool).await.map(|_| ())
                    }
                }
                .unwrap();
            }
            other => unreachable!("{other}"),
        }
        let report = check_chain(store.as_ref()).await.unwrap();
        assert_eq!(
            report.finding.map(|f| (f.sequence, f.kind)),
            alone,
            "{case}, the store alone"
        );
        let evidence = Evidence {
            public_key: Some(public),
            witnessed: witness,
        };
        let report = check_chain_with(store.as_ref(), &evidence).await.unwrap();
        assert_eq!(
            report.finding.map(|f| (f.sequence, f.kind)),
            witnessed,
            "{case}, with the witness and the pinned key"
        );
        assert!(report.checkpoints >= 2, "{case}");
    }
}

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Backend::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[ignore = "needs PostgreSQL: set KEYWARD_TEST_POSTGRES_URL, pass --ignored"]
                async fn $name() {
                    super::$name(super::Backend::Postgres).await;
                }
            )*
        }
    };
}

on_both_backends!(
    each_tampering_is_found_and_named,
    checkpoints_and_witnesses_catch_what_the_chain_cannot,
    concurrent_writes_form_one_gapless_chain,
);
