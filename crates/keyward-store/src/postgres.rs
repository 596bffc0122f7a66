//! The multi-node store: PostgreSQL as the shared source of truth.
//!
//! Migrations run under sqlx's advisory lock, so several nodes starting at
//! once apply them exactly once.

use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres};

use crate::common::{impl_store, Dialect};

/// Connections per node.
const CONNECTIONS: u32 = 16;

/// A Keyward store in a PostgreSQL database.
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    const DIALECT: Dialect = Dialect {
        scope_match_open: "(keys.scopes::jsonb ? ",
        scope_match_close: ")",
        for_update: " FOR UPDATE",
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
        Ok(PgStore { pool })
    }

    fn reader(&self) -> &PgPool {
        &self.pool
    }

    fn writer(&self) -> &PgPool {
        &self.pool
    }
}

impl_store!(PgStore, Postgres);
