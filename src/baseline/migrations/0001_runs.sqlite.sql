-- Every probe run, its headline figures, and the accept markers (SQLite).
CREATE TABLE runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    probe TEXT NOT NULL,
    started_at_us INTEGER NOT NULL,
    fingerprint TEXT NOT NULL,
    grade TEXT NOT NULL,
    document TEXT NOT NULL,
    histogram BLOB,
    recorded_at_us INTEGER NOT NULL,
    UNIQUE (probe, started_at_us)
);
CREATE INDEX runs_series ON runs (probe, fingerprint, started_at_us);

CREATE TABLE figures (
    run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    value REAL NOT NULL,
    PRIMARY KEY (run_id, name)
);

CREATE TABLE accepts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    probe TEXT NOT NULL,
    from_us INTEGER NOT NULL,
    pinned_run_id INTEGER REFERENCES runs (id) ON DELETE SET NULL,
    accepted_at_us INTEGER NOT NULL,
    note TEXT NOT NULL
);
CREATE INDEX accepts_probe ON accepts (probe, id);
