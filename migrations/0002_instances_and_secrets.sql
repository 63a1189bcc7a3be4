-- Per-user secrets (encrypted) and agent instances.

CREATE TABLE secrets (
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name       TEXT    NOT NULL,
    nonce      BLOB    NOT NULL,
    ciphertext BLOB    NOT NULL,
    hint       TEXT    NOT NULL,
    updated_at TEXT    NOT NULL,
    PRIMARY KEY (user_id, name)
);

CREATE TABLE instances (
    id               TEXT    PRIMARY KEY,
    user_id          INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name             TEXT    NOT NULL,
    profile          TEXT    NOT NULL,
    -- Relative to the owner's workspace; '' is the workspace itself.
    workdir          TEXT    NOT NULL,
    state            TEXT    NOT NULL CHECK (state IN ('starting', 'running', 'exited', 'stopped')),
    created_at       TEXT    NOT NULL,
    started_at       TEXT,
    ended_at         TEXT,
    exit_code        INTEGER,
    end_reason       TEXT,
    -- The screen and recent history when the agent ended, readable after its session is gone.
    last_screen      TEXT,
    -- The agent's own conversation id (Claude Code's --session-id), to resume after a restart.
    agent_session_id TEXT
);
CREATE INDEX instances_user ON instances (user_id);
CREATE INDEX instances_state ON instances (state);
