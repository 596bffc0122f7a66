-- The audit log's hash chain (keyward_core::chain). Each event gets its
-- sequence number, the hash of the event before it and its own hash; the
-- head row keeps the last of each, so that a cut tail is noticed. The
-- head's hash stays NULL until the store has chained the events written
-- before this migration, in id order, once.
ALTER TABLE audit_events ADD COLUMN seq BIGINT;
ALTER TABLE audit_events ADD COLUMN prev_hash BYTEA;
ALTER TABLE audit_events ADD COLUMN hash BYTEA;
CREATE UNIQUE INDEX audit_events_by_seq ON audit_events (seq);

CREATE TABLE audit_chain (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    seq       BIGINT NOT NULL,
    hash      BYTEA
);
INSERT INTO audit_chain (singleton, seq, hash) VALUES (1, 0, NULL);
