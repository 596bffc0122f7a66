-- Signed checkpoints of the audit chain. `audit_keys` holds the Ed25519
-- key that signs them: its public half in the clear, its private half as
-- a keyring envelope (bound to audit_keys/<id>/private_key). One key,
-- `signing`, made on the first checkpoint of an unsealed store.
CREATE TABLE audit_keys (
    id          TEXT COLLATE "C" PRIMARY KEY,
    public_key  BYTEA NOT NULL,
    private_key BYTEA NOT NULL,
    created_at  BIGINT NOT NULL
);

-- Each a signature by `key_id` over (seq, hash, at) as
-- keyward_core::chain::checkpoint_message lays them out.
CREATE TABLE audit_checkpoints (
    seq       BIGINT PRIMARY KEY,
    hash      BYTEA NOT NULL,
    at        BIGINT NOT NULL,
    key_id    TEXT NOT NULL,
    signature BYTEA NOT NULL
);
