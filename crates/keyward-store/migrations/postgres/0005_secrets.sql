-- Secrets in Vault's KV v2 shape. A mount is a named store bound to one
-- environment; each secret path has metadata and numbered versions. Values
-- are envelopes made by the server's keyring (see keyward-crypto), bound to
-- mount, path and version; a destroyed version keeps its row without value.
CREATE TABLE secret_mounts (
    path          TEXT PRIMARY KEY,
    environment   TEXT NOT NULL,
    -- Defaults for the mount's secrets; 0 versions = the default (10).
    max_versions  BIGINT NOT NULL DEFAULT 0,
    cas_required  BIGINT NOT NULL DEFAULT 0,
    created_at    BIGINT NOT NULL
);

CREATE TABLE secret_meta (
    mount           TEXT NOT NULL REFERENCES secret_mounts (path),
    path            TEXT COLLATE "C" NOT NULL,
    current_version BIGINT NOT NULL,
    oldest_version  BIGINT NOT NULL,
    -- 0 = the mount's setting.
    max_versions    BIGINT NOT NULL DEFAULT 0,
    cas_required    BIGINT NOT NULL DEFAULT 0,
    custom_metadata TEXT NOT NULL DEFAULT '{}',
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    PRIMARY KEY (mount, path)
);

CREATE TABLE secret_versions (
    mount      TEXT NOT NULL,
    path       TEXT NOT NULL,
    version    BIGINT NOT NULL,
    -- NULL once destroyed.
    value      BYTEA,
    created_at BIGINT NOT NULL,
    deleted_at BIGINT,
    destroyed  BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (mount, path, version),
    FOREIGN KEY (mount, path) REFERENCES secret_meta (mount, path) ON DELETE CASCADE
);
