//! `keyward audit verify`'s check over a large chain: events a second read
//! from SQLite and checked (`check_chain`), and the same rows checked in
//! memory alone (the hashing, without the reads). `N` events (default
//! 1,000,000) are written first, 500 to an audited write. Prints its
//! figures; `bench/README.md` reports them.
//!
//!     cargo bench -p keyward-service --bench audit_chain
//!     N=200000 cargo bench -p keyward-service --bench audit_chain

#![allow(clippy::unwrap_used, clippy::expect_used)] // Setup failures end the benchmark.

use std::time::Instant;

use keyward_core::chain::ChainCheck;
use keyward_core::{AuditAction, AuditEvent, TokenId};
use keyward_store::prelude::*;
use keyward_store::SqliteStore;
use serde_json::json;
use time::OffsetDateTime;

fn main() {
    let n: usize = std::env::var("N")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("keyward.db"))
            .await
            .unwrap();
        let actor = TokenId::generate(OffsetDateTime::now_utc()).unwrap();
        let started = Instant::now();
        let mut written = 0;
        while written < n {
            let now = OffsetDateTime::now_utc();
            let batch: Vec<AuditEvent> = (written..(written + 500).min(n))
                .map(|i| AuditEvent {
                    id: keyward_store::event_id(now).unwrap(),
                    at: now,
                    actor: Some(actor.clone()),
                    action: AuditAction::KeyRevoke.as_str().to_owned(),
                    target: format!("key_035AqA3DhvmcSBzd28G{i:07}"),
                    details: json!({"reason": "rotated", "owner": "acme", "cascade_from": null}),
                })
                .collect();
            written += batch.len();
            store.append_audit(&batch).await.unwrap();
        }
        let wrote = started.elapsed();
        println!(
            "wrote {n} events in {:.1} s ({:.0} events/s, 500 a write)",
            wrote.as_secs_f64(),
            n as f64 / wrote.as_secs_f64()
        );
        let mut best = f64::MAX;
        for _ in 0..3 {
            let started = Instant::now();
            let report = keyward_service::audit_log::check_chain(&store)
                .await
                .unwrap();
            let took = started.elapsed().as_secs_f64();
            assert_eq!(report.finding, None);
            assert_eq!(report.rows as usize, n);
            best = best.min(took);
        }
        println!(
            "check_chain (SQLite reads and check): {best:.2} s, {:.0} events/s",
            n as f64 / best
        );
        let mut rows = Vec::with_capacity(n);
        let mut after = 0;
        loop {
            let page = store.chain_rows(after, 10_000).await.unwrap();
            if page.is_empty() {
                break;
            }
            after = u64::try_from(page.last().unwrap().sequence).unwrap();
            rows.extend(page);
        }
        let mut best = f64::MAX;
        for _ in 0..3 {
            let rows = rows.clone();
            let started = Instant::now();
            let mut check = ChainCheck::new();
            for row in rows {
                check.push(row);
            }
            let report = check.finish(store.chain_head().await.unwrap());
            let took = started.elapsed().as_secs_f64();
            assert_eq!(report.finding, None);
            best = best.min(took);
        }
        println!(
            "ChainCheck alone (rows in memory): {best:.2} s, {:.0} events/s",
            n as f64 / best
        );
    });
}
