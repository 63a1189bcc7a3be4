-- Suspended instances: the agent's process is gone, the record keeps what resuming needs.
-- SQLite cannot change a CHECK constraint in place, so the table is rebuilt. This runs in the
-- migrator's transaction, where foreign keys cannot be turned off: dropping the old table
-- deletes the rows that refer to it, so they are kept aside and put back.
CREATE TEMP TABLE kept_push_mutes AS SELECT * FROM push_mutes;
CREATE TEMP TABLE kept_push_action_tokens AS SELECT * FROM push_action_tokens;

CREATE TABLE instances_new (
    id               TEXT    PRIMARY KEY,
    user_id          INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name             TEXT    NOT NULL,
    profile          TEXT    NOT NULL,
    workdir          TEXT    NOT NULL,
    state            TEXT    NOT NULL
        CHECK (state IN ('starting', 'running', 'suspended', 'exited', 'stopped')),
    created_at       TEXT    NOT NULL,
    started_at       TEXT,
    ended_at         TEXT,
    exit_code        INTEGER,
    end_reason       TEXT,
    last_screen      TEXT,
    agent_session_id TEXT,
    hook_token_hash  TEXT,
    -- When it was suspended, why (idle, user, memory, budget) and the memory its process tree
    -- held then.
    suspended_at     TEXT,
    suspend_reason   TEXT,
    freed_bytes      INTEGER,
    -- The terminal's size when it was suspended, so it comes back at that size.
    cols             INTEGER,
    rows             INTEGER,
    -- Input sent while it was suspended (a JSON array), typed once the agent is ready again.
    pending_input    TEXT,
    -- What resuming lost (a turn cut mid-way, a pending tool call), as a JSON object the
    -- terminal's banner shows until the user sends it again or dismisses it.
    interrupted      TEXT
);

INSERT INTO instances_new (id, user_id, name, profile, workdir, state, created_at, started_at,
    ended_at, exit_code, end_reason, last_screen, agent_session_id, hook_token_hash)
SELECT id, user_id, name, profile, workdir, state, created_at, started_at,
    ended_at, exit_code, end_reason, last_screen, agent_session_id, hook_token_hash
FROM instances;

DROP TABLE instances;
ALTER TABLE instances_new RENAME TO instances;
CREATE INDEX instances_user ON instances (user_id);
CREATE INDEX instances_state ON instances (state);

INSERT INTO push_mutes SELECT * FROM kept_push_mutes;
INSERT INTO push_action_tokens SELECT * FROM kept_push_action_tokens;
DROP TABLE kept_push_mutes;
DROP TABLE kept_push_action_tokens;

