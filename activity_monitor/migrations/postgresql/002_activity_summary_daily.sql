-- One summary row per local day, the days whose row late data made stale,
-- the data version the trends cache keys on, and how far raw rows were purged.
-- Column for column the schema of migrations/sqlite/002 (see there for their meaning).

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

CREATE TABLE IF NOT EXISTS activity_dirty_days (
    date TEXT PRIMARY KEY,
    marked_at TEXT NOT NULL DEFAULT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.MS')
);

CREATE TABLE IF NOT EXISTS activity_data_version (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version BIGINT NOT NULL,
    updated_at TEXT
);

INSERT INTO activity_data_version (id, version, updated_at)
VALUES (1, 0, to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.MS'))
ON CONFLICT (id) DO NOTHING;

CREATE TABLE IF NOT EXISTS activity_raw_retention (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    kept_from_date TEXT NOT NULL DEFAULT '',
    kept_from_utc TEXT NOT NULL DEFAULT ''
);

INSERT INTO activity_raw_retention (id) VALUES (1) ON CONFLICT (id) DO NOTHING;

-- See migrations/sqlite/002: a window's utc_end lies within 7 days after any timestamp it holds.
CREATE INDEX IF NOT EXISTS idx_activity_summary_daily_utc_end
    ON activity_summary_daily(utc_end);

-- Marks dirty every final day whose event window holds the timestamp. The text arithmetic
-- gives what SQLite's datetime(ts, '+7 days') gives: whole seconds. PL/pgSQL, not SQL: a
-- SQL function's INSERT is planned again on every call (every tracked request), PL/pgSQL
-- keeps the plan for the session.
CREATE OR REPLACE FUNCTION activity_mark_days_dirty(ts TEXT) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO activity_dirty_days (date)
    SELECT date
    FROM activity_summary_daily
    WHERE utc_end > ts
      AND utc_end <= to_char(ts::timestamp + interval '7 days', 'YYYY-MM-DD HH24:MI:SS')
      AND window_start_utc <= ts
      AND is_partial = 0
    ON CONFLICT (date) DO NOTHING;
END;
$$;

-- One trigger function for the three triggers SQLite has. A bulk load sets
-- activity_monitor.bulk_load for its transaction and marks its span itself.
CREATE OR REPLACE FUNCTION activity_log_marks_days_dirty() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('activity_monitor.bulk_load', true) = 'on' THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'INSERT' THEN
        PERFORM activity_mark_days_dirty(NEW.timestamp);
    ELSIF TG_OP = 'UPDATE' THEN
        PERFORM activity_mark_days_dirty(OLD.timestamp);
        PERFORM activity_mark_days_dirty(NEW.timestamp);
    -- The retention purge only deletes rows before kept_from_utc, which it moves
    -- forward first; any other deletion (a user's data removed) marks its day dirty.
    ELSIF OLD.timestamp >= (SELECT kept_from_utc FROM activity_raw_retention WHERE id = 1) THEN
        PERFORM activity_mark_days_dirty(OLD.timestamp);
    END IF;
    RETURN NULL;
END;
$$;

CREATE OR REPLACE TRIGGER trg_user_activity_log_insert_marks_dirty
AFTER INSERT ON user_activity_log
FOR EACH ROW EXECUTE FUNCTION activity_log_marks_days_dirty();

CREATE OR REPLACE TRIGGER trg_user_activity_log_update_marks_dirty
AFTER UPDATE OF session_id, user_id, timestamp, page_url, action_type ON user_activity_log
FOR EACH ROW EXECUTE FUNCTION activity_log_marks_days_dirty();

CREATE OR REPLACE TRIGGER trg_user_activity_log_delete_marks_dirty
AFTER DELETE ON user_activity_log
FOR EACH ROW EXECUTE FUNCTION activity_log_marks_days_dirty();
