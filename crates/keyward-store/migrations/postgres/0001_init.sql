-- Keyward's initial schema (PostgreSQL). Times are Unix milliseconds; JSON values
-- are stored as text; key and token digests are 32-byte SHA-256 values. Ids
-- sort bytewise (COLLATE "C"), so cursor pagination follows creation order.

CREATE TABLE apis (
    id           TEXT COLLATE "C" PRIMARY KEY,
    name         TEXT NOT NULL,
    prefix       TEXT NOT NULL UNIQUE,
    environments TEXT NOT NULL,
    created_at   BIGINT NOT NULL
);

CREATE TABLE keys (
    id            TEXT COLLATE "C" PRIMARY KEY,
    api_id        TEXT COLLATE "C" NOT NULL REFERENCES apis (id),
    environment   TEXT NOT NULL,
    name          TEXT NOT NULL,
    owner         TEXT NOT NULL,
    scopes        TEXT NOT NULL,
    metadata      TEXT NOT NULL,
    digest        BYTEA NOT NULL UNIQUE,
    start         TEXT NOT NULL,
    enabled       BOOLEAN NOT NULL,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    expires_at    BIGINT,
    revoked_at    BIGINT,
    revoke_reason TEXT,
    rotated_from  TEXT,
    rotated_to    TEXT
);
CREATE INDEX keys_by_owner ON keys (owner, id);
CREATE INDEX keys_by_api ON keys (api_id, id);

CREATE TABLE admin_tokens (
    id           TEXT COLLATE "C" PRIMARY KEY,
    name         TEXT NOT NULL,
    digest       BYTEA NOT NULL UNIQUE,
    start        TEXT NOT NULL,
    scopes       TEXT NOT NULL,
    api_ids      TEXT,
    environments TEXT,
    created_by   TEXT,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT,
    revoked_at   BIGINT
);

CREATE TABLE audit_events (
    id      TEXT COLLATE "C" PRIMARY KEY,
    at      BIGINT NOT NULL,
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
    at         BIGINT NOT NULL,
    root_token TEXT NOT NULL
);
