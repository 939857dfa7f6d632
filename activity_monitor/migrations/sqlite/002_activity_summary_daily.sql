-- One summary row per local day, the days whose row late data made stale,
-- the data version the trends cache keys on, and how far raw rows were purged.

-- The metric columns are pinned by the issue; the rest describe how the row was
-- computed: the zone and idle minutes used, whether the day was still running,
-- and the UTC window of events it read ([window_start_utc, utc_end), where the
-- window starts ACTIVITY_IDLE_MINUTES before the local day because an event
-- shortly before midnight keeps its user online into the day).
CREATE TABLE IF NOT EXISTS activity_summary_daily (
    date TEXT PRIMARY KEY,
    unique_users INTEGER NOT NULL DEFAULT 0,
    total_sessions INTEGER NOT NULL DEFAULT 0,
    total_page_views INTEGER NOT NULL DEFAULT 0,
    total_api_calls INTEGER NOT NULL DEFAULT 0,
    avg_session_duration_seconds INTEGER NOT NULL DEFAULT 0,
    peak_concurrent_users INTEGER NOT NULL DEFAULT 0,
    peak_hour INTEGER,
    top_pages TEXT NOT NULL DEFAULT '[]',
    user_distribution TEXT NOT NULL DEFAULT '{}',
    computed_at TEXT,
    total_events INTEGER NOT NULL DEFAULT 0,
    is_partial INTEGER NOT NULL DEFAULT 0,
    time_zone TEXT NOT NULL DEFAULT 'UTC',
    idle_minutes INTEGER NOT NULL DEFAULT 5,
    window_start_utc TEXT NOT NULL DEFAULT '',
    utc_start TEXT NOT NULL DEFAULT '',
    utc_end TEXT NOT NULL DEFAULT ''
);

-- Days whose final row no longer matches the raw log; the next run recomputes them.
CREATE TABLE IF NOT EXISTS activity_dirty_days (
    date TEXT PRIMARY KEY,
    marked_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now'))
);

-- A single row: bumped in the same transaction as every change to the summaries.
CREATE TABLE IF NOT EXISTS activity_data_version (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL,
    updated_at TEXT
);

INSERT OR IGNORE INTO activity_data_version (id, version, updated_at)
VALUES (1, 0, strftime('%Y-%m-%d %H:%M:%f', 'now'));

-- A single row: raw rows before kept_from_utc were purged on purpose, so their
-- deletion marks nothing dirty and the days before kept_from_date are never recomputed.
CREATE TABLE IF NOT EXISTS activity_raw_retention (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    kept_from_date TEXT NOT NULL DEFAULT '',
    kept_from_utc TEXT NOT NULL DEFAULT ''
);

INSERT OR IGNORE INTO activity_raw_retention (id) VALUES (1);

-- The late-data triggers find the final rows whose window holds a timestamp. A
-- window is at most 25 hours plus the idle minutes long, so its utc_end lies
-- within 7 days after any timestamp it holds (the processor refuses idle times
-- above 6 days); that bound keeps each lookup to a handful of index entries even
-- for old timestamps, and to none for the present.
CREATE INDEX IF NOT EXISTS idx_activity_summary_daily_utc_end
    ON activity_summary_daily(utc_end);

CREATE TRIGGER IF NOT EXISTS trg_user_activity_log_insert_marks_dirty
AFTER INSERT ON user_activity_log
BEGIN
    INSERT OR IGNORE INTO activity_dirty_days (date)
    SELECT date
    FROM activity_summary_daily
    WHERE utc_end > NEW.timestamp
      AND utc_end <= datetime(NEW.timestamp, '+7 days')
      AND window_start_utc <= NEW.timestamp
      AND is_partial = 0;
END;

CREATE TRIGGER IF NOT EXISTS trg_user_activity_log_update_marks_dirty
AFTER UPDATE OF session_id, user_id, timestamp, page_url, action_type ON user_activity_log
BEGIN
    INSERT OR IGNORE INTO activity_dirty_days (date)
    SELECT date
    FROM activity_summary_daily
    WHERE is_partial = 0
      AND ((utc_end > OLD.timestamp
            AND utc_end <= datetime(OLD.timestamp, '+7 days')
            AND window_start_utc <= OLD.timestamp)
        OR (utc_end > NEW.timestamp
            AND utc_end <= datetime(NEW.timestamp, '+7 days')
            AND window_start_utc <= NEW.timestamp));
END;

-- The retention purge only deletes rows before kept_from_utc, which it moves
-- forward first; any other deletion (a user's data removed) marks its day dirty.
CREATE TRIGGER IF NOT EXISTS trg_user_activity_log_delete_marks_dirty
AFTER DELETE ON user_activity_log
WHEN OLD.timestamp >= (SELECT kept_from_utc FROM activity_raw_retention WHERE id = 1)
BEGIN
    INSERT OR IGNORE INTO activity_dirty_days (date)
    SELECT date
    FROM activity_summary_daily
    WHERE utc_end > OLD.timestamp
      AND utc_end <= datetime(OLD.timestamp, '+7 days')
      AND window_start_utc <= OLD.timestamp
      AND is_partial = 0;
END;
