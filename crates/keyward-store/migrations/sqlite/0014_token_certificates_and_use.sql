-- An admin token may be bound to a client certificate of mutual TLS: the
-- SHA-256 of its DER. A bound token authenticates only on a connection
-- that presented that certificate.
ALTER TABLE admin_tokens ADD COLUMN client_cert BLOB;
-- When a token was last used, to the hour: the access review shows it.
ALTER TABLE admin_tokens ADD COLUMN last_used_at INTEGER;
