-- The change feed: one row for every change that a node may hold in a cache
-- (a key's record, an owner's rate limits, an admin token), written in the
-- same transaction as the change. Every node polls it, so a change made on
-- one node reaches the caches of all of them within a poll interval.
-- Old rows are pruned; a node that fell further behind drops its caches.
CREATE TABLE cache_changes (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    -- 'key' or 'token' (with digest), or 'owner' (with owner).
    kind       TEXT NOT NULL,
    digest     BLOB,
    owner      TEXT,
    changed_at BIGINT NOT NULL
);
CREATE INDEX cache_changes_changed_at ON cache_changes (changed_at);
