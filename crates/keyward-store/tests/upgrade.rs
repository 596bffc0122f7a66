//! Data written before migration 0009 (the token tree and audit reach),
//! upgraded by it, and rows a hand edit left unreadable: on SQLite always,
//! on PostgreSQL with `KEYWARD_TEST_POSTGRES_URL` and `--ignored`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // A panic in a test is a failed test.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use keyward_core::{ApiId, Environment, EventId, KeyId, PlaintextKey, Prefix, TokenId};
use keyward_store::{AuditEntry, AuditFilter, Page, PgStore, SqliteStore, Store};
use time::OffsetDateTime;

/// The migrations before 0009 of `backend`, copied to a directory of their
/// own, so that a database can be left where a release before 0009 left it.
fn migrations_before_0009(backend: &str, into: &Path) -> PathBuf {
    let from = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(backend);
    let to = into.join(format!("old-{backend}"));
    std::fs::create_dir_all(&to).unwrap();
    for entry in std::fs::read_dir(&from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        if name.as_str() < "0009" {
            std::fs::copy(entry.path(), to.join(&name)).unwrap();
        }
    }
    to
}

/// What a release before 0009 could hold.
struct Legacy {
    root: TokenId,
    /// Revoked at `revoked_at`, with a child and a grandchild that are not.
    revoked: TokenId,
    revoked_at: i64,
    child: TokenId,
    grandchild: TokenId,
    /// Expires at `expires_at`; its children expire never and later.
    expiring: TokenId,
    expires_at: i64,
    forever: TokenId,
    later: TokenId,
    api: ApiId,
    key: KeyId,
}

fn ms(at: OffsetDateTime) -> i64 {
    (at.unix_timestamp_nanos() / 1_000_000) as i64
}

impl Legacy {
    fn new() -> Legacy {
        let now = OffsetDateTime::now_utc();
        let t = || TokenId::generate(now).unwrap();
        Legacy {
            root: t(),
            revoked: t(),
            revoked_at: ms(now) - 60_000,
            child: t(),
            grandchild: t(),
            expiring: t(),
            expires_at: ms(now) + 30_000,
            forever: t(),
            later: t(),
            api: ApiId::generate(now).unwrap(),
            key: KeyId::generate(now).unwrap(),
        }
    }

    /// Each token as stored.
    fn tokens(&self) -> Vec<LegacyToken> {
        let s = |t: &TokenId| t.as_str().to_owned();
        let root = Some(s(&self.root));
        vec![
            (s(&self.root), None, None, None),
            (s(&self.revoked), root.clone(), None, Some(self.revoked_at)),
            (s(&self.child), Some(s(&self.revoked)), None, None),
            (s(&self.grandchild), Some(s(&self.child)), None, None),
            (s(&self.expiring), root, Some(self.expires_at), None),
            (s(&self.forever), Some(s(&self.expiring)), None, None),
            (
                s(&self.later),
                Some(s(&self.expiring)),
                Some(self.expires_at + 86_400_000),
                None,
            ),
        ]
    }

    /// The statements that write it, with `$N` placeholders both drivers
    /// take, and their text and integer values.
    fn statements(&self) -> Vec<(&'static str, Vec<Value>)> {
        let now = ms(OffsetDateTime::now_utc());
        let mut out = Vec::new();
        for (id, created_by, expires_at, revoked_at) in self.tokens() {
            let plain = PlaintextKey::generate(&Prefix::admin(), Environment::Live).unwrap();
            out.push((
                "INSERT INTO admin_tokens (id, name, digest, start, scopes, created_by, \
                 created_at, expires_at, revoked_at) \
                 VALUES ($1, 'legacy', $2, 'kwa_live_', '[\"apis:read\"]', $3, $4, $5, $6)",
                vec![
                    Value::Text(Some(id)),
                    Value::Bytes(plain.digest().as_bytes().to_vec()),
                    Value::Text(created_by),
                    Value::Int(Some(now)),
                    Value::Int(expires_at),
                    Value::Int(revoked_at),
                ],
            ));
        }
        let event = |target: &str| {
            (
                "INSERT INTO audit_events (id, at, action, target, details) \
                 VALUES ($1, $2, 'legacy', $3, '{}')",
                vec![
                    Value::Text(Some(
                        EventId::generate(OffsetDateTime::now_utc())
                            .unwrap()
                            .as_str()
                            .to_owned(),
                    )),
                    Value::Int(Some(now)),
                    Value::Text(Some(target.to_owned())),
                ],
            )
        };
        let plain =
            PlaintextKey::generate(&Prefix::parse("lg").unwrap(), Environment::Test).unwrap();
        out.push((
            "INSERT INTO apis (id, name, prefix, environments, created_at) \
             VALUES ($1, 'legacy', 'lg', '[\"test\"]', $2)",
            vec![
                Value::Text(Some(self.api.as_str().to_owned())),
                Value::Int(Some(now)),
            ],
        ));
        out.push((
            "INSERT INTO keys (id, api_id, environment, name, owner, scopes, metadata, digest, \
             start, enabled, created_at, updated_at, ratelimits, ip_allowlist) \
             VALUES ($1, $2, 'test', '', 'acme', '[]', '{}', $3, 'lg_test_', TRUE, $4, $4, '[]', '[]')",
            vec![
                Value::Text(Some(self.key.as_str().to_owned())),
                Value::Text(Some(self.api.as_str().to_owned())),
                Value::Bytes(plain.digest().as_bytes().to_vec()),
                Value::Int(Some(now)),
            ],
        ));
        out.push(event(self.key.as_str()));
        out.push(event(self.api.as_str()));
        out.push(event("seal"));
        out
    }

    /// Checks the upgraded store: the tree bounds every token, and old
    /// audit events carry the reach of their records.
    async fn check(&self, store: Arc<dyn Store>) {
        let token = |id: &TokenId| {
            let store = Arc::clone(&store);
            let id = id.clone();
            async move { store.get_token(&id).await.unwrap().unwrap() }
        };
        let at = |v: Option<OffsetDateTime>| v.map(ms);
        assert_eq!(at(token(&self.root).await.revoked_at), None);
        for id in [&self.revoked, &self.child, &self.grandchild] {
            assert_eq!(
                at(token(id).await.revoked_at),
                Some(self.revoked_at),
                "revoked as of the ancestor's revocation"
            );
        }
        for id in [&self.expiring, &self.forever, &self.later] {
            let t = token(id).await;
            assert_eq!(at(t.expires_at), Some(self.expires_at));
            assert_eq!(t.revoked_at, None);
        }
        let listed = |filter: AuditFilter| {
            let store = Arc::clone(&store);
            async move {
                store
                    .list_audit(
                        &filter,
                        &Page {
                            after: None,
                            limit: 100,
                        },
                    )
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|e| match e {
                        AuditEntry::Event(e) => e.target,
                        AuditEntry::Unreadable { id, detail } => panic!("{id}: {detail}"),
                    })
                    .collect::<Vec<_>>()
            }
        };
        assert_eq!(
            listed(AuditFilter {
                api_ids_within: Some(vec![self.api.clone()]),
                environments_within: Some(vec![Environment::Test]),
                ..AuditFilter::default()
            })
            .await,
            [self.key.as_str()]
        );
        assert_eq!(
            listed(AuditFilter {
                api_ids_within: Some(vec![self.api.clone()]),
                ..AuditFilter::default()
            })
            .await,
            [self.key.as_str(), self.api.as_str()]
        );
        assert_eq!(listed(AuditFilter::default()).await.len(), 3);
        // The events written before the chain were chained as they were,
        // in id order, when the store first opened; and they still are.
        let mut check = keyward_core::chain::ChainCheck::new();
        for row in store.chain_rows(0, 100).await.unwrap() {
            check.push(row);
        }
        let report = check.finish(store.chain_head().await.unwrap());
        assert_eq!(report.finding, None);
        assert_eq!(report.rows, 3);
        assert_eq!(report.head.sequence, 3);
        assert_eq!(store.first_unchained().await.unwrap(), None);
    }
}

/// A token's id, created_by, expires_at and revoked_at.
type LegacyToken = (String, Option<String>, Option<i64>, Option<i64>);

/// A value bound to a statement.
enum Value {
    Text(Option<String>),
    Int(Option<i64>),
    Bytes(Vec<u8>),
}

macro_rules! write_all {
    ($pool:expr, $statements:expr) => {
        for (sql, values) in $statements {
            let mut q = sqlx::query(sql);
            for v in values {
                q = match v {
                    Value::Text(t) => q.bind(t),
                    Value::Int(i) => q.bind(i),
                    Value::Bytes(b) => q.bind(b),
                };
            }
            q.execute($pool).await.unwrap();
        }
    };
}

/// Audit rows a hand edit made unreadable are listed as such, in their
/// place, and the others are served.
async fn unreadable_rows_are_reported(store: Arc<dyn Store>, corrupt: impl AsyncFnOnce(&str)) {
    let now = OffsetDateTime::now_utc();
    let events: Vec<_> = ["first", "bad", "last"]
        .iter()
        .map(|target| keyward_core::AuditEvent {
            id: EventId::generate(now).unwrap(),
            at: now,
            actor: None,
            action: "story".into(),
            target: (*target).into(),
            details: serde_json::json!({}),
        })
        .collect();
    store.append_audit(&events).await.unwrap();
    corrupt(events[1].id.as_str()).await;
    let listed = store
        .list_audit(
            &AuditFilter::default(),
            &Page {
                after: None,
                limit: 100,
            },
        )
        .await
        .unwrap();
    assert_eq!(listed.len(), 3);
    assert!(matches!(&listed[0], AuditEntry::Event(e) if e.target == "first"));
    assert!(matches!(&listed[1], AuditEntry::Unreadable { id, .. } if id == events[1].id.as_str()));
    assert!(matches!(&listed[2], AuditEntry::Event(e) if e.target == "last"));
}

#[tokio::test]
async fn sqlite_upgrade_bounds_old_tokens_and_audit_events() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.db");
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&path)
        .create_if_missing(true);
    let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
    sqlx::migrate::Migrator::new(migrations_before_0009("sqlite", dir.path()))
        .await
        .unwrap()
        .run(&pool)
        .await
        .unwrap();
    let legacy = Legacy::new();
    write_all!(&pool, legacy.statements());
    pool.close().await;
    let store = Arc::new(SqliteStore::open(&path).await.unwrap());
    legacy.check(store).await;
}

#[tokio::test]
async fn sqlite_unreadable_audit_rows_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.db");
    let store = Arc::new(SqliteStore::open(&path).await.unwrap());
    unreadable_rows_are_reported(store, async |id: &str| {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        sqlx::query("UPDATE audit_events SET details = '{oops', actor = 'nobody' WHERE id = $1")
            .bind(id)
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
    })
    .await;
}

/// A pool on a fresh schema of the server `KEYWARD_TEST_POSTGRES_URL`
/// names, and the schema's name.
async fn postgres_schema() -> (String, String, sqlx::PgPool) {
    let url = std::env::var("KEYWARD_TEST_POSTGRES_URL")
        .expect("KEYWARD_TEST_POSTGRES_URL must name the PostgreSQL server to test against");
    let id = EventId::generate(OffsetDateTime::now_utc()).unwrap();
    let schema = format!("kw_upgrade_{}", id.as_str()[4..].to_ascii_lowercase());
    let setup = sqlx::PgPool::connect(&url).await.unwrap();
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&setup)
        .await
        .unwrap();
    setup.close().await;
    let options = sqlx::postgres::PgConnectOptions::from_str(&url)
        .unwrap()
        .options([("search_path", schema.as_str())]);
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .unwrap();
    (url, schema, pool)
}

#[tokio::test]
#[ignore = "needs PostgreSQL: set KEYWARD_TEST_POSTGRES_URL, pass --ignored"]
async fn postgres_upgrade_bounds_old_tokens_and_audit_events() {
    let dir = tempfile::tempdir().unwrap();
    let (url, schema, pool) = postgres_schema().await;
    sqlx::migrate::Migrator::new(migrations_before_0009("postgres", dir.path()))
        .await
        .unwrap()
        .run(&pool)
        .await
        .unwrap();
    let legacy = Legacy::new();
    write_all!(&pool, legacy.statements());
    pool.close().await;
    let store = Arc::new(PgStore::connect(&url, Some(&schema)).await.unwrap());
    legacy.check(store).await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL: set KEYWARD_TEST_POSTGRES_URL, pass --ignored"]
async fn postgres_unreadable_audit_rows_are_reported() {
    let (url, schema, pool) = postgres_schema().await;
    let store = Arc::new(PgStore::connect(&url, Some(&schema)).await.unwrap());
    unreadable_rows_are_reported(store, async |id: &str| {
        sqlx::query("UPDATE audit_events SET details = '{oops' WHERE id = $1")
            .bind(id)
            .execute(&pool)
            .await
            .unwrap();
    })
    .await;
}
