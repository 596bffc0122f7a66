-- Admin tokens form a tree (created_by): a token never outlives or outlasts
-- the token that minted it. Tokens minted before this rule are brought
-- under it: a token whose creator (or any ancestor) is revoked is revoked
-- as of that revocation, and an expiry later than an ancestor's (or none)
-- becomes the ancestor's.
WITH RECURSIVE bound (id, revoked_at, expires_at) AS (
    SELECT id, revoked_at, expires_at FROM admin_tokens
    WHERE created_by IS NULL OR created_by NOT IN (SELECT id FROM admin_tokens)
    UNION
    SELECT t.id,
        CASE WHEN b.revoked_at IS NULL THEN t.revoked_at
             WHEN t.revoked_at IS NULL OR b.revoked_at < t.revoked_at THEN b.revoked_at
             ELSE t.revoked_at END,
        CASE WHEN b.expires_at IS NULL THEN t.expires_at
             WHEN t.expires_at IS NULL OR b.expires_at < t.expires_at THEN b.expires_at
             ELSE t.expires_at END
    FROM admin_tokens t JOIN bound b ON t.created_by = b.id
),
tightest (id, revoked_at, expires_at) AS (
    SELECT id, MIN(revoked_at), MIN(expires_at) FROM bound GROUP BY id
)
UPDATE admin_tokens
SET revoked_at = (SELECT revoked_at FROM tightest WHERE tightest.id = admin_tokens.id),
    expires_at = (SELECT expires_at FROM tightest WHERE tightest.id = admin_tokens.id)
WHERE id IN (
    SELECT tightest.id FROM tightest JOIN admin_tokens a ON a.id = tightest.id
    WHERE (a.revoked_at IS NULL AND tightest.revoked_at IS NOT NULL)
       OR (a.expires_at IS NULL AND tightest.expires_at IS NOT NULL)
       OR a.expires_at > tightest.expires_at
);

-- Each audit event records the API and environment of the record it is
-- about, so that audit reads are filtered by an admin token's reach like
-- every other read. Filled on write from the record (a key, an API, a
-- secret's mount); NULL when the event is about no such record or the
-- record is unknown, and then only tokens unlimited in that dimension see it.
ALTER TABLE audit_events ADD COLUMN api_id TEXT;
ALTER TABLE audit_events ADD COLUMN environment TEXT;

-- Existing events, derived the same way.
UPDATE audit_events SET
    api_id = COALESCE(
        (SELECT k.api_id FROM keys k WHERE k.id = audit_events.target COLLATE "C"),
        (SELECT a.id FROM apis a WHERE a.id = audit_events.target COLLATE "C")),
    environment = COALESCE(
        (SELECT k.environment FROM keys k WHERE k.id = audit_events.target COLLATE "C"),
        (SELECT m.environment FROM secret_mounts m
         WHERE audit_events.target = m.path
            OR substr(audit_events.target, 1, length(m.path) + 1) = m.path || '/'
         ORDER BY length(m.path) DESC LIMIT 1));
