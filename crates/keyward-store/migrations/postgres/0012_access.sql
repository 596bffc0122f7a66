-- Admin users, workspaces and roles.
--
-- Workspaces hold APIs; every API that exists moves to `default`. An API's
-- workspace is fixed at creation, so nodes may remember it.
CREATE TABLE workspaces (
    name       TEXT COLLATE "C" PRIMARY KEY,
    created_at BIGINT NOT NULL
);
INSERT INTO workspaces (name, created_at)
VALUES ('default', (extract(epoch FROM now()) * 1000)::BIGINT);
ALTER TABLE apis ADD COLUMN workspace TEXT NOT NULL DEFAULT 'default' REFERENCES workspaces (name);

-- Custom roles: named sets of admin scopes (JSON text).
CREATE TABLE roles (
    name       TEXT COLLATE "C" PRIMARY KEY,
    scopes     TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- Users sign in by e-mail (lower-cased) and an Argon2id password (a PHC
-- string). `grants` is JSON: [{role, workspace?, environments?}]. The TOTP
-- secret is a keyring envelope; `totp_last_step` is the last step accepted,
-- so no code is accepted twice; recovery codes are SHA-256 digests (JSON
-- array of hex), each removed when used.
CREATE TABLE users (
    id             TEXT COLLATE "C" PRIMARY KEY,
    email          TEXT NOT NULL UNIQUE,
    password_hash  TEXT NOT NULL,
    grants         TEXT NOT NULL,
    totp_secret    BYTEA,
    totp_pending   BYTEA,
    totp_last_step BIGINT,
    recovery_codes TEXT NOT NULL DEFAULT '[]',
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL,
    disabled_at    BIGINT,
    last_login_at  BIGINT
);

-- Sessions are admin tokens with a user; service tokens may be limited to
-- workspaces.
ALTER TABLE admin_tokens ADD COLUMN workspaces TEXT;
ALTER TABLE admin_tokens ADD COLUMN user_id TEXT COLLATE "C";
ALTER TABLE admin_tokens ADD COLUMN stepped_up_at BIGINT;
CREATE INDEX admin_tokens_by_user ON admin_tokens (user_id, id);

-- A token that held every admin scope keeps holding every one.
UPDATE admin_tokens
SET scopes = left(scopes, length(scopes) - 1) || ',"users:read","users:write"]'
WHERE scopes::jsonb ?& array['apis:read','apis:write','keys:read','keys:write','keys:verify','tokens:read','tokens:write','audit:read','sys:write','secrets:read','secrets:write','transit:use','transit:write','leaks:report']
  AND NOT scopes::jsonb ? 'users:read';
