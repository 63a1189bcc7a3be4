-- Web Push: each user's subscribed devices, their notification preferences, muted instances and
-- the single-use tokens that notification actions carry.

CREATE TABLE push_subscriptions (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id         INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    device          TEXT    NOT NULL,
    -- One browser profile has one endpoint per site; it belongs to whoever subscribed last.
    endpoint        TEXT    NOT NULL UNIQUE,
    p256dh          TEXT    NOT NULL,
    auth            TEXT    NOT NULL,
    created_at      TEXT    NOT NULL,
    last_success_at TEXT
);
CREATE INDEX push_subscriptions_user ON push_subscriptions (user_id);

CREATE TABLE push_preferences (
    user_id            INTEGER PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    waiting_delay_secs INTEGER NOT NULL,
    -- Minutes after local midnight; both NULL when there are no quiet hours.
    quiet_start        INTEGER,
    quiet_end          INTEGER,
    -- The device's offset from UTC when the quiet hours were set.
    utc_offset_minutes INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE push_mutes (
    instance_id TEXT    NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    user_id     INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    PRIMARY KEY (instance_id, user_id)
);

CREATE TABLE push_action_tokens (
    token_hash  TEXT    PRIMARY KEY,
    instance_id TEXT    NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    user_id     INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- The approval it answers; NULL while approvals are read from the screen only.
    approval_id TEXT,
    -- The choice ids it may carry, as a JSON array.
    choices     TEXT    NOT NULL,
    expires_at  TEXT    NOT NULL,
    used_at     TEXT
);
CREATE INDEX push_action_tokens_instance ON push_action_tokens (instance_id);
