//! What the verify benchmarks share: a store with one API in it, and a
//! caller allowed to reach every API.

use keyward_core::{ApiId, AuditEvent, Environment, EventId, KeyRecord, Prefix};
use keyward_store::prelude::*;
use keyward_store::SqliteStore;
use keyward_verify::Reach;
use time::OffsetDateTime;

/// A caller whose reach covers every API.
pub struct Everywhere;

impl Reach for Everywhere {
    fn can_access(&self, _: &ApiId, _: Option<&str>, _: Environment) -> bool {
        true
    }
}

/// A SQLite store in `dir` holding one live API with the prefix `tm`.
pub async fn store_with_api(dir: &std::path::Path) -> (SqliteStore, keyward_core::Api) {
    let store = SqliteStore::open(&dir.join("bench.db")).await.unwrap();
    let now = OffsetDateTime::now_utc();
    let api = keyward_core::Api {
        id: ApiId::generate(now).unwrap(),
        name: "bench".into(),
        prefix: Prefix::parse("tm").unwrap(),
        environments: vec![Environment::Live],
        workspace: keyward_core::DEFAULT_WORKSPACE.to_owned(),
        created_at: now,
        roles: Default::default(),
        critical_scopes: Vec::new(),
        signing: Default::default(),
    };
    store
        .create_api(&api, &event(api.id.as_str()))
        .await
        .unwrap();
    (store, api)
}

/// Stores `record` as a new key.
pub async fn add_key(store: &SqliteStore, record: &KeyRecord) {
    store
        .create_key(record, &event(record.id.as_str()))
        .await
        .unwrap();
}

fn event(target: &str) -> AuditEvent {
    let now = OffsetDateTime::now_utc();
    AuditEvent {
        id: EventId::generate(now).unwrap(),
        at: now,
        actor: None,
        action: "bench".into(),
        target: target.into(),
        details: serde_json::json!({}),
    }
}
