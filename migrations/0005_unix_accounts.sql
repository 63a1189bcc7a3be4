-- The Unix user each account runs as when isolation is on. A row outlives its account
-- (removed_at set), so a uid is never given to anyone else: files a deleted account left
-- behind must not become a new account's.
CREATE TABLE unix_accounts (
    uid INTEGER PRIMARY KEY,
    gid INTEGER NOT NULL,
    name TEXT NOT NULL,
    user_id INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    removed_at TEXT
);
CREATE UNIQUE INDEX unix_accounts_live ON unix_accounts (user_id) WHERE removed_at IS NULL;
