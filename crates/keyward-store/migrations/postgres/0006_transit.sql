-- Transit keys: named, versioned keys that encrypt and sign for callers who
-- never see them. Each version's material is an envelope of the keyring,
-- bound to the key's name and version; public keys are kept in the clear.
CREATE TABLE transit_keys (
    name                   TEXT COLLATE "C" PRIMARY KEY,
    key_type               TEXT NOT NULL,
    derived                BIGINT NOT NULL DEFAULT 0,
    latest_version         BIGINT NOT NULL,
    min_decryption_version BIGINT NOT NULL DEFAULT 1,
    min_encryption_version BIGINT NOT NULL DEFAULT 0,
    deletion_allowed       BIGINT NOT NULL DEFAULT 0,
    created_at             BIGINT NOT NULL,
    updated_at             BIGINT NOT NULL
);

CREATE TABLE transit_key_versions (
    name       TEXT NOT NULL REFERENCES transit_keys (name) ON DELETE CASCADE,
    version    BIGINT NOT NULL,
    material   BYTEA NOT NULL,
    public_key BYTEA,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (name, version)
);
