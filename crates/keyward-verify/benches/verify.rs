//! Verify on a cache hit — a key with scopes, two rate limits and an IP
//! allowlist — next to SHA-256 of the same key alone, the floor every verify
//! pays. `bench/run.sh` reads both results and reports their ratio.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Setup failures end the benchmark.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use keyward_core::limits::{Cidr, RateLimit};
use keyward_core::{Environment, KeyRecord, PlaintextKey, Requirements, Scope};
use keyward_store::Store;
use keyward_verify::{Verifier, VerifierConfig};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

mod setup;
use setup::Everywhere;

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (verifier, key) = runtime.block_on(async {
        let (store, api) = setup::store_with_api(dir.path()).await;
        let now = OffsetDateTime::now_utc();
        let plain = PlaintextKey::generate(&api.prefix, Environment::Live).unwrap();
        let huge = |name: &str, ms| RateLimit {
            name: name.into(),
            limit: 1_000_000_000,
            duration_ms: ms,
        };
        let mut record = KeyRecord::new(
            api.id.clone(),
            Environment::Live,
            "acme".into(),
            &plain,
            now,
        )
        .unwrap();
        record.name = "bench".into();
        record.scopes = ["orders:write", "prices:read", "signals:read"]
            .iter()
            .map(|s| Scope::parse(s).unwrap())
            .collect();
        record.metadata = serde_json::json!({"plan": "pro"});
        record.ratelimits = vec![huge("second", 1000), huge("minute", 60_000)];
        record.ip_allowlist = ["10.0.0.0/8", "192.168.0.0/16", "2001:db8::/32"]
            .iter()
            .map(|c| Cidr::parse(c).unwrap())
            .collect();
        setup::add_key(&store, &record).await;
        let store: Arc<dyn Store> = Arc::new(store);
        let config = VerifierConfig {
            cache_ttl: std::time::Duration::from_secs(3600),
            ..VerifierConfig::default()
        };
        (Verifier::new(store, config), plain.expose().to_owned())
    });
    let required = Requirements {
        scopes: vec![
            Scope::parse("prices:read").unwrap(),
            Scope::parse("signals:read").unwrap(),
        ]
        .into(),
        environment: Some(Environment::Live),
        ip: Some("192.168.7.9".parse().unwrap()),
    };
    // Warm the cache and the owner limits through the full path once.
    let warm = runtime
        .block_on(verifier.verify(&Everywhere, &key, &required, 1))
        .unwrap();
    assert_eq!(warm.code, keyward_core::VerifyCode::Valid);
    let hit = verifier
        .verify_in_memory(&Everywhere, &key, &required, 1)
        .unwrap();
    assert_eq!(hit.code, keyward_core::VerifyCode::Valid);

    let mut group = c.benchmark_group("hot_path");
    group.bench_function("sha256_of_key", |b| {
        b.iter(|| Sha256::digest(black_box(key.as_bytes())))
    });
    group.bench_function("verify_cache_hit", |b| {
        b.iter(|| {
            verifier
                .verify_in_memory(&Everywhere, black_box(&key), &required, 1)
                .map(|v| v.code)
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
