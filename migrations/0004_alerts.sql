-- Alerts raised by the monitor when the host crosses a threshold.
CREATE TABLE alerts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,          -- cpu | memory | disk
    value REAL NOT NULL,         -- the value that raised it, in percent
    threshold REAL NOT NULL,
    raised_at TEXT NOT NULL,
    cleared_at TEXT
);
CREATE INDEX alerts_open ON alerts (cleared_at);
