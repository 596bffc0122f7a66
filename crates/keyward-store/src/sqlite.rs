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
    commit_feed: crate::CommitFeed,
}

impl SqliteStore {
    const DIALECT: Dialect = Dialect {
        scope_match_open: "EXISTS (SELECT 1 FROM json_each(keys.scopes) WHERE json_each.value = ",
        scope_match_close: ")",
        role_match_open: "EXISTS (SELECT 1 FROM json_each(keys.roles) WHERE json_each.value = ",
        for_update: "",
        for_share: "",
        notify_changes: "",
        id_collation: "",
        // A recursive CTE counts the minutes of the span; each is one
        // lookup in the (minute, key_id, code) primary key.
        // hex(NULL) is '', which reads as a hash of the wrong length.
        chain_page: "SELECT json_group_array(json_array(seq, id, at, actor, action, target, \
            details, api_id, environment, hex(prev_hash), hex(hash))) \
            FROM (SELECT * FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2)",
        usage_of_key: "WITH RECURSIVE span(minute) AS \
            (SELECT $2 UNION ALL SELECT minute + 1 FROM span WHERE minute < $3) \
            SELECT u.minute, u.code, u.count FROM span \
            JOIN key_usage AS u ON u.minute = span.minute AND u.key_id = $1 \
            ORDER BY u.minute, u.code",
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
        let store = SqliteStore {
            readers,
            writer,
            commit_feed: crate::CommitFeed::new(),
        };
        store.start_chain().await?;
        Ok(store)
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
