-- Tokens and money agents spent, read from their own records (Claude Code's transcripts).
-- Kept when an instance is deleted (the account's figures stay), gone with the account.
CREATE TABLE usage_daily (
    instance_id        TEXT    NOT NULL,
    user_id            INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    instance_name      TEXT    NOT NULL,
    day                TEXT    NOT NULL,  -- YYYY-MM-DD, UTC
    model              TEXT    NOT NULL,
    input_tokens       INTEGER NOT NULL DEFAULT 0,
    output_tokens      INTEGER NOT NULL DEFAULT 0,
    cache_write_tokens INTEGER NOT NULL DEFAULT 0,
    cache_read_tokens  INTEGER NOT NULL DEFAULT 0,
    replies            INTEGER NOT NULL DEFAULT 0,
    -- At the price in force when the reply was read, in millionths of the currency.
    cost_micros        INTEGER NOT NULL DEFAULT 0,
    -- Tokens of models without a price: they cost nothing here, and the figures say so.
    unpriced_tokens    INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (instance_id, day, model)
);
CREATE INDEX usage_daily_by_user ON usage_daily (user_id, day);

-- How far each followed transcript has been read, so nothing is counted twice after a restart.
CREATE TABLE usage_files (
    instance_id  TEXT    NOT NULL,
    path         TEXT    NOT NULL,  -- below the account's home
    read_to      INTEGER NOT NULL DEFAULT 0,
    last_message TEXT,
    -- This conversation's totals.
    tokens       INTEGER NOT NULL DEFAULT 0,
    cost_micros  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (instance_id, path)
);
