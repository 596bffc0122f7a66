//! The embedded default: one SQLite file in WAL mode with `synchronous=FULL`,
//! so a commit is on disk before it is acknowledged.
//!
//! SQLite allows one writer at a time. Writes go through a pool of exactly one
//! connection, which serializes them in Keyward instead of failing with
//! `SQLITE_BUSY` when two deferred transactions both try to upgrade; reads use
//! a separate pool and run concurrently with the writer thanks to WAL.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool};

use crate::common::{impl_store, Dialect};

/// Connections for concurrent reads.
const READERS: u32 = 8;

/// A Keyward store in one SQLite database file.
pub struct SqliteStore {
    /// Serves every read; WAL lets these run beside the writer.
    readers: SqlitePool,
    /// The single connection all writes go through.
    writer: SqlitePool,
}

impl SqliteStore {
    const DIALECT: Dialect = Dialect {
        scope_match_open: "EXISTS (SELECT 1 FROM json_each(keys.scopes) WHERE json_each.value = ",
        scope_match_close: ")",
        for_update: "",
        notify_changes: "",
        add_usage: "INSERT INTO key_usage (key_id, minute, code, count) \
            SELECT value ->> 0, value ->> 1, value ->> 2, SUM(value ->> 3) \
            FROM json_each($1) GROUP BY 1, 2, 3 \
            ON CONFLICT (key_id, minute, code) DO UPDATE SET count = key_usage.count + excluded.count",
        touch_keys: "UPDATE keys SET last_used_at = v.at \
            FROM (SELECT value ->> 0 AS id, MAX(value ->> 1) AS at FROM json_each($1) GROUP BY 1) AS v \
            WHERE keys.id = v.id AND (keys.last_used_at IS NULL OR keys.last_used_at < v.at)",
    };

    /// Opens (creating if needed) the database file at `path` and migrates it.
    pub async fn open(path: &Path) -> crate::Result<Self> {
        let options = SqliteConnectOptions::from_str("sqlite://")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&writer).await?;
        let readers = SqlitePoolOptions::new()
            .max_connections(READERS)
            .connect_with(options.read_only(true))
            .await?;
        Ok(SqliteStore { readers, writer })
    }

    fn reader(&self) -> &SqlitePool {
        &self.readers
    }

    fn writer(&self) -> &SqlitePool {
        &self.writer
    }

    /// SQLite has no notifications across processes: followers poll.
    async fn wait_for_notification(&self, timeout: Duration) {
        tokio::time::sleep(timeout).await;
    }
}

impl_store!(SqliteStore, Sqlite);
