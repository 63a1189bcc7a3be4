-- Spending limits an admin sets: per account, or for the whole server (user_id NULL), per day or
-- per month, in money and/or tokens.
CREATE TABLE budgets (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id     INTEGER REFERENCES users (id) ON DELETE CASCADE,
    period      TEXT    NOT NULL CHECK (period IN ('day', 'month')),
    cost_micros INTEGER,          -- at most this much money per period, in millionths
    tokens      INTEGER,          -- at most this many tokens per period
    lifted_on   TEXT,             -- a day (UTC) on which an admin lifted it
    warned_for  TEXT,             -- the period (its first day) whose 80 % was announced
    reached_for TEXT,             -- the period whose 100 % was announced
    created_at  TEXT    NOT NULL,
    CHECK (cost_micros IS NOT NULL OR tokens IS NOT NULL)
);
CREATE UNIQUE INDEX budgets_scope ON budgets (COALESCE(user_id, 0), period);
