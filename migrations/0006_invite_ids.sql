-- Invites get a stable id so admins can list and revoke them (the code itself is never stored).
CREATE TABLE invites_new (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    code_hash   TEXT    NOT NULL UNIQUE,
    role        TEXT    NOT NULL CHECK (role IN ('admin', 'user')),
    created_by  INTEGER REFERENCES users (id) ON DELETE SET NULL,
    created_at  TEXT    NOT NULL,
    expires_at  TEXT    NOT NULL,
    used_at     TEXT,
    used_by     INTEGER REFERENCES users (id) ON DELETE SET NULL
);
INSERT INTO invites_new (code_hash, role, created_by, created_at, expires_at, used_at, used_by)
    SELECT code_hash, role, created_by, created_at, expires_at, used_at, used_by
    FROM invites ORDER BY created_at;
DROP TABLE invites;
ALTER TABLE invites_new RENAME TO invites;
