-- Key roles. An API names sets of scopes (`roles`, a JSON object of role
-- name to scope array) and marks some scopes critical (`critical_scopes`, a
-- JSON array); a key names roles of its API (`roles`, a JSON array), and
-- carries their scopes as its API defines them at each verify.
ALTER TABLE apis ADD COLUMN roles TEXT NOT NULL DEFAULT '{}';
ALTER TABLE apis ADD COLUMN critical_scopes TEXT NOT NULL DEFAULT '[]';
ALTER TABLE keys ADD COLUMN roles TEXT NOT NULL DEFAULT '[]';
-- A change-feed row of kind 'api' names the API whose roles (or critical
-- scopes) changed; nodes drop that API's cached keys.
ALTER TABLE cache_changes ADD COLUMN api_id TEXT;
