//! Seeds a store with an API and many keys, writing their plaintexts one a
//! line, for the load benchmarks in `bench/`.
//!
//!     seed_keys DATABASE_URL PREFIX COUNT KEYS_FILE
//!
//! Keys carry the scopes the benchmark routes need and no limits, as keys
//! of a plain read API would.

#![allow(clippy::unwrap_used, clippy::expect_used)] // A benchmark tool: failing loudly is right.

use std::io::Write;

use keyward_core::{
    Api, ApiId, AuditEvent, Environment, EventId, KeyRecord, PlaintextKey, Prefix, Scope,
};
use time::OffsetDateTime;

/// Keys stored per transaction.
const BATCH: usize = 20_000;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, prefix, count, out] = args.as_slice() else {
        eprintln!("usage: seed_keys DATABASE_URL PREFIX COUNT KEYS_FILE");
        std::process::exit(2);
    };
    let count: usize = count.parse().expect("COUNT is a number");
    if let Some(path) = url.strip_prefix("sqlite://") {
        if let Some(dir) = std::path::Path::new(path).parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
    }
    let store = keyward_store::open(url).await.expect("the store opens");
    let now = OffsetDateTime::now_utc();
    let event = |action: &str, target: &str| AuditEvent {
        id: EventId::generate(now).unwrap(),
        at: now,
        actor: None,
        action: action.into(),
        target: target.into(),
        details: serde_json::json!({ "seeded": true }),
    };
    let api = Api {
        id: ApiId::generate(now).unwrap(),
        name: format!("{prefix} benchmark API"),
        prefix: Prefix::parse(prefix).expect("PREFIX is 1-12 of a-z0-9"),
        environments: vec![Environment::Live],
        workspace: keyward_core::DEFAULT_WORKSPACE.to_owned(),
        created_at: now,
        roles: Default::default(),
        critical_scopes: Vec::new(),
        signing: Default::default(),
    };
    store
        .create_api(&api, &event("api.create", api.id.as_str()))
        .await
        .unwrap();
    let scopes = vec![Scope::parse("prices:read").unwrap()];
    let mut file = std::io::BufWriter::new(std::fs::File::create(out).unwrap());
    let started = std::time::Instant::now();
    let mut done = 0;
    while done < count {
        let n = BATCH.min(count - done);
        let mut keys = Vec::with_capacity(n);
        let mut events = Vec::with_capacity(n);
        for i in 0..n {
            let plain = PlaintextKey::generate(&api.prefix, Environment::Live).unwrap();
            writeln!(file, "{}", plain.expose()).unwrap();
            let mut record = KeyRecord::new(
                api.id.clone(),
                Environment::Live,
                format!("customer{}", done + i),
                &plain,
                now,
            )
            .unwrap();
            record.name = format!("customer {}", done + i);
            record.scopes = scopes.clone();
            events.push(event("key.create", record.id.as_str()));
            keys.push(record);
        }
        store.create_keys(&keys, &events).await.unwrap();
        done += n;
    }
    file.flush().unwrap();
    eprintln!(
        "seeded {count} keys in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
