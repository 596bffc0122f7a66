-- Limits enforced by verify, and usage aggregated off the hot path.

-- JSON array of {name, limit, duration_ms}.
ALTER TABLE keys ADD COLUMN ratelimits TEXT NOT NULL DEFAULT '[]';
-- NULL when the key is unmetered. Nodes lease credits from this column in
-- blocks, so it never counts more than the quota allows.
ALTER TABLE keys ADD COLUMN credits_remaining BIGINT;
-- JSON {interval, amount, day}, or NULL for no refill.
ALTER TABLE keys ADD COLUMN credits_refill TEXT;
-- Start of the refill period the credits belong to (Unix ms).
ALTER TABLE keys ADD COLUMN credits_refilled_at BIGINT;
-- JSON array of CIDR strings; empty means any address.
ALTER TABLE keys ADD COLUMN ip_allowlist TEXT NOT NULL DEFAULT '[]';
ALTER TABLE keys ADD COLUMN last_used_at BIGINT;

-- Rate limits shared by all keys of one owner.
CREATE TABLE owner_ratelimits (
    owner      TEXT PRIMARY KEY,
    ratelimits TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- Verifications per key per minute per result code.
CREATE TABLE key_usage (
    key_id TEXT NOT NULL,
    minute BIGINT NOT NULL,
    code   TEXT NOT NULL,
    count  BIGINT NOT NULL,
    PRIMARY KEY (key_id, minute, code)
);
