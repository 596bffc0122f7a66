-- How many encryptions each key may have made: nodes reserve uses in
-- blocks before encrypting, so the count is an upper bound that survives
-- restarts and is shared by every node. A key is rotated long before 2^32
-- encryptions (the limit of AES-GCM with random nonces).
ALTER TABLE keyring ADD COLUMN uses BIGINT NOT NULL DEFAULT 0;
ALTER TABLE transit_key_versions ADD COLUMN uses BIGINT NOT NULL DEFAULT 0;
