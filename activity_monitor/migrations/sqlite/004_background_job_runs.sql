-- One row per background job run, whichever worker or host ran it: the history ops
-- read to see that the nightly summaries ran, and ran once.

CREATE TABLE IF NOT EXISTS activity_job_runs (
    id INTEGER PRIMARY KEY,
    job TEXT NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    duration_ms REAL,
    status TEXT NOT NULL CHECK (status IN ('running', 'ok', 'failed')),
    error TEXT,
    host TEXT NOT NULL DEFAULT '',
    pid INTEGER NOT NULL DEFAULT 0
);

CREATE INDEX IF NOT EXISTS idx_activity_job_runs_job ON activity_job_runs(job, started_at);
