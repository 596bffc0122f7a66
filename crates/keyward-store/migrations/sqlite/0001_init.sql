-- Keyward's initial schema (SQLite). Times are Unix milliseconds; JSON values
-- are stored as text; key and token digests are 32-byte SHA-256 blobs.

CREATE TABLE apis (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    prefix       TEXT NOT NULL UNIQUE,
    environments TEXT NOT NULL,
    created_at   INTEGER NOT NULL
);

CREATE TABLE keys (
    id            TEXT PRIMARY KEY,
    api_id        TEXT NOT NULL REFERENCES apis (id),
    environment   TEXT NOT NULL,
    name          TEXT NOT NULL,
    owner         TEXT NOT NULL,
    scopes        TEXT NOT NULL,
    metadata      TEXT NOT NULL,
    digest        BLOB NOT NULL UNIQUE,
    start         TEXT NOT NULL,
    enabled       BOOLEAN NOT NULL,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    expires_at    INTEGER,
    revoked_at    INTEGER,
    revoke_reason TEXT,
    rotated_from  TEXT,
    rotated_to    TEXT
);
CREATE INDEX keys_by_owner ON keys (owner, id);
CREATE INDEX keys_by_api ON keys (api_id, id);

CREATE TABLE admin_tokens (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    digest       BLOB NOT NULL UNIQUE,
    start        TEXT NOT NULL,
    scopes       TEXT NOT NULL,
    api_ids      TEXT,
    environments TEXT,
    created_by   TEXT,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER,
    revoked_at   INTEGER
);

CREATE TABLE audit_events (
    id      TEXT PRIMARY KEY,
    at      INTEGER NOT NULL,
    actor   TEXT,
    action  TEXT NOT NULL,
    target  TEXT NOT NULL,
    details TEXT NOT NULL
);
CREATE INDEX audit_events_by_target ON audit_events (target, id);

-- One row once the root admin token exists, so concurrent first starts
-- create exactly one.
CREATE TABLE bootstrap (
    singleton  INTEGER PRIMARY KEY CHECK (singleton = 1),
    at         INTEGER NOT NULL,
    root_token TEXT NOT NULL
);
