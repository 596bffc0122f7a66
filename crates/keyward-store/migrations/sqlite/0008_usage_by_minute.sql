-- Usage is kept in minute order. Each flush writes one minute for every key
-- in use, so with the key first it touched a page per key across the whole
-- table, and more of them as the table grew; with the minute first it
-- appends at the end. Pruning takes the oldest minutes from the front, and
-- one key's usage is read one (minute, key) lookup per minute asked for.
CREATE TABLE key_usage_by_minute (
    minute BIGINT NOT NULL,
    key_id TEXT NOT NULL,
    code   TEXT NOT NULL,
    count  BIGINT NOT NULL,
    PRIMARY KEY (minute, key_id, code)
) WITHOUT ROWID;
INSERT INTO key_usage_by_minute (minute, key_id, code, count)
    SELECT minute, key_id, code, count FROM key_usage;
DROP TABLE key_usage;
ALTER TABLE key_usage_by_minute RENAME TO key_usage;
