-- The seal: how the master key is kept. One row, written once at
-- initialisation and replaced by a rekey. Nothing here is secret: Shamir
-- shares are kept only as SHA-256 digests, an HSM-wrapped master key only
-- wrapped.
CREATE TABLE seal (
    id             INTEGER PRIMARY KEY CHECK (id = 1),
    -- 'file', 'shamir' or 'pkcs11'.
    kind           TEXT NOT NULL,
    -- shamir: the share set id, the threshold, and the digests of the
    -- shares in index order (32 bytes each).
    share_set      BLOB,
    threshold      INTEGER,
    share_digests  BLOB,
    -- pkcs11: the master key wrapped by the HSM's key.
    wrapped_master BLOB,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL
);

-- The keyring: key-encryption keys by version, each wrapped by the master
-- key. New data is encrypted under the highest version.
CREATE TABLE keyring (
    version     INTEGER PRIMARY KEY,
    wrapped_key BLOB NOT NULL,
    created_at  BIGINT NOT NULL
);
