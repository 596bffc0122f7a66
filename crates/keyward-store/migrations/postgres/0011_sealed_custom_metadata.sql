-- A secret's custom_metadata is sealed by the keyring like its values: an
-- envelope bound to the secret's mount and path. Rows written before this
-- keep their clear `custom_metadata` (readable as before) until their next
-- write, which stores the envelope here and empties the clear column.
ALTER TABLE secret_meta ADD COLUMN custom_metadata_sealed BYTEA;
