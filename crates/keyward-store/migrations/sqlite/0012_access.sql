-- Admin users, workspaces and roles.
--
-- Workspaces hold APIs; every API that exists moves to `default`. An API's
-- workspace is fixed at creation, so nodes may remember it.
CREATE TABLE workspaces (
    name       TEXT PRIMARY KEY,
    created_at INTEGER NOT NULL
);
INSERT INTO workspaces (name, created_at)
VALUES ('default', CAST(strftime('%s', 'now') AS INTEGER) * 1000);
ALTER TABLE apis ADD COLUMN workspace TEXT NOT NULL DEFAULT 'default';

-- Custom roles: named sets of admin scopes (JSON text).
CREATE TABLE roles (
    name       TEXT PRIMARY KEY,
    scopes     TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

-- Users sign in by e-mail (lower-cased) and an Argon2id password (a PHC
-- string). `grants` is JSON: [{role, workspace?, environments?}]. The TOTP
-- secret is a keyring envelope; `totp_last_step` is the last step accepted,
-- so no code is accepted twice; recovery codes are SHA-256 digests (JSON
-- array of hex), each removed when used.
CREATE TABLE users (
    id             TEXT PRIMARY KEY,
    email          TEXT NOT NULL UNIQUE,
    password_hash  TEXT NOT NULL,
    grants         TEXT NOT NULL,
    totp_secret    BLOB,
    totp_pending   BLOB,
    totp_last_step INTEGER,
    recovery_codes TEXT NOT NULL DEFAULT '[]',
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    disabled_at    INTEGER,
    last_login_at  INTEGER
);

-- Sessions are admin tokens with a user; service tokens may be limited to
-- workspaces.
ALTER TABLE admin_tokens ADD COLUMN workspaces TEXT;
ALTER TABLE admin_tokens ADD COLUMN user_id TEXT;
ALTER TABLE admin_tokens ADD COLUMN stepped_up_at INTEGER;
CREATE INDEX admin_tokens_by_user ON admin_tokens (user_id, id);

-- A token that held every admin scope keeps holding every one.
UPDATE admin_tokens
SET scopes = substr(scopes, 1, length(scopes) - 1) || ',"users:read","users:write"]'
WHERE (SELECT count(DISTINCT value) FROM json_each(admin_tokens.scopes)
       WHERE value IN ('apis:read','apis:write','keys:read','keys:write','keys:verify','tokens:read','tokens:write','audit:read','sys:write','secrets:read','secrets:write','transit:use','transit:write','leaks:report')) = 14
  AND NOT EXISTS (SELECT 1 FROM json_each(admin_tokens.scopes) WHERE value = 'users:read');
