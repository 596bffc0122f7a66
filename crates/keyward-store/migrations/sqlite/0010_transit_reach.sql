-- Transit keys belong to an environment, and to some APIs when their
-- creator chose (NULL: to no API in particular), like secrets mounts; a
-- token reaches a key only within its own environments and APIs. Keys made
-- before this belong to `live`.
ALTER TABLE transit_keys ADD COLUMN environment TEXT NOT NULL DEFAULT 'live';
ALTER TABLE transit_keys ADD COLUMN api_ids TEXT;
