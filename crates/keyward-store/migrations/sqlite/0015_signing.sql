-- A key may require signed requests. `signing` is JSON:
-- {algorithm, window_ms, public_key?} (the Ed25519 public key in hex);
-- `signing_secret` is the HMAC secret as a keyring envelope, and stays NULL
-- for Ed25519 keys, whose private half only the customer holds.
ALTER TABLE keys ADD COLUMN signing TEXT;
ALTER TABLE keys ADD COLUMN signing_secret BLOB;
-- Which requests to an API's keys must be signed: JSON
-- {all, scopes, ed25519_replaces_otp}.
ALTER TABLE apis ADD COLUMN signing TEXT NOT NULL DEFAULT '{}';

-- Signed requests seen inside their window, so a replay at any node sharing
-- the database is refused: the SHA-256 of the request's nonce (or, with no
-- nonce, of its signature) per key, kept until the window has passed.
CREATE TABLE signature_nonces (
    key_id     TEXT NOT NULL,
    nonce      BLOB NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (key_id, nonce)
);
CREATE INDEX signature_nonces_expiry ON signature_nonces (expires_at);

-- A key owner's (the provider's customer's) second factor for critical
-- scopes: a TOTP secret as a keyring envelope, pending until a first code
-- confirms it, and the last step accepted, so no code is accepted twice.
CREATE TABLE owner_factors (
    owner          TEXT PRIMARY KEY,
    totp_secret    BLOB,
    totp_pending   BLOB,
    totp_last_step INTEGER,
    updated_at     INTEGER NOT NULL
);
