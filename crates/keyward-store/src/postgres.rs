//! The multi-node store: PostgreSQL as the shared source of truth.
//!
//! Migrations run under sqlx's advisory lock, so several nodes starting at
//! once apply them exactly once.

use std::str::FromStr;

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use sqlx::{PgPool, Postgres};

use crate::common::{impl_store, Dialect};

/// The channel change-feed writes notify.
const CHANGES_CHANNEL: &str = "keyward_changes";

/// Connections per node.
const CONNECTIONS: u32 = 16;

/// A Keyward store in a PostgreSQL database.
pub struct PgStore {
    pool: PgPool,
    /// A connection listening on the change-feed channel, opened on first
    /// use and again after it was lost.
    listener: tokio::sync::Mutex<Option<PgListener>>,
    commit_feed: crate::CommitFeed,
}

impl PgStore {
    const DIALECT: Dialect = Dialect {
        scope_match_open: "(keys.scopes::jsonb ? ",
        scope_match_close: ")",
        role_match_open: "(keys.roles::jsonb ? ",
        for_update: " FOR UPDATE",
        for_share: " FOR SHARE",
        notify_changes: "SELECT pg_notify('keyward_changes', '')",
        id_collation: " COLLATE \"C\"",
        // LATERAL keeps it one index lookup per minute of the span.
        chain_page: "SELECT COALESCE(json_agg(json_build_array(seq, id, at, actor, action, \
            target, details, api_id, environment, encode(prev_hash, 'hex'), \
            encode(hash, 'hex')) ORDER BY seq), '[]')::text \
            FROM (SELECT * FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2) AS e",
        usage_of_key: "SELECT u.minute, u.code, u.count \
            FROM generate_series($2::bigint, $3::bigint) AS span(minute) \
            CROSS JOIN LATERAL (SELECT minute, code, count FROM key_usage \
                WHERE minute = span.minute AND key_id = $1) AS u \
            ORDER BY u.minute, u.code",
    };

    /// Connects to `url` and migrates. With `schema`, everything lives in
    /// that schema, created if missing: tests use it for a fresh database
    /// each, and operators may use it to share one database.
    pub async fn connect(url: &str, schema: Option<&str>) -> crate::Result<Self> {
        let mut options = PgConnectOptions::from_str(url)?;
        if let Some(schema) = schema {
            if !schema
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            {
                return Err(crate::StoreError::Conflict(
                    "schema names are limited to a-z, 0-9 and _",
                ));
            }
            let setup = PgPoolOptions::new()
                .max_connections(1)
                .connect_with(options.clone())
                .await?;
            sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
                .execute(&setup)
                .await?;
            setup.close().await;
            options = options.options([("search_path", schema)]);
        }
        let pool = PgPoolOptions::new()
            .max_connections(CONNECTIONS)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        let store = PgStore {
            pool,
            listener: tokio::sync::Mutex::new(None),
            commit_feed: crate::CommitFeed::new(),
        };
        store.start_chain().await?;
        Ok(store)
    }

    fn reader(&self) -> &PgPool {
        &self.pool
    }

    fn writer(&self) -> &PgPool {
        &self.pool
    }

    /// Waits for a notification on the change-feed channel. Notifications
    /// sent while the listener was disconnected are lost; the feed itself is
    /// not, since callers read it after every wait.
    async fn wait_for_notification(&self, timeout: Duration) {
        let mut listener = self.listener.lock().await;
        if listener.is_none() {
            match PgListener::connect_with(&self.pool).await {
                Ok(mut fresh) => match fresh.listen(CHANGES_CHANNEL).await {
                    Ok(()) => *listener = Some(fresh),
                    Err(e) => tracing::warn!(error = %e, "could not listen for changes"),
                },
                Err(e) => tracing::warn!(error = %e, "could not listen for changes"),
            }
        }
        let Some(active) = listener.as_mut() else {
            drop(listener);
            tokio::time::sleep(timeout).await;
            return;
        };
        match tokio::time::timeout(timeout, active.try_recv()).await {
            Ok(Ok(Some(_))) | Err(_) => {}
            // The connection was lost (`None`) or failed: open a new one
            // next time.
            Ok(Ok(None)) | Ok(Err(_)) => *listener = None,
        }
    }
}

impl_store!(PgStore, Postgres);
