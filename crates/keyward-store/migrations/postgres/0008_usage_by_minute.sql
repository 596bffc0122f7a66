-- Usage is indexed in minute order: each flush writes one minute for every
-- key in use, which now lands at the end of the index instead of in a page
-- per key across all of it. Pruning takes the oldest minutes from the
-- front, and one key's usage is read one (minute, key) lookup per minute
-- asked for.
ALTER TABLE key_usage DROP CONSTRAINT key_usage_pkey;
ALTER TABLE key_usage ADD PRIMARY KEY (minute, key_id, code);
