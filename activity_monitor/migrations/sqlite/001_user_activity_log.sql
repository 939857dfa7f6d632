-- One row per authenticated request; timestamp is UTC 'YYYY-MM-DD HH:MM:SS[.ffffff]'.

CREATE TABLE IF NOT EXISTS user_activity_log (
    id INTEGER PRIMARY KEY,
    session_id TEXT NOT NULL,
    user_id INTEGER NOT NULL,
    timestamp TEXT NOT NULL,
    page_url TEXT NOT NULL,
    action_type TEXT NOT NULL CHECK (action_type IN ('page_view', 'api_call', 'file_download')),
    status_code INTEGER,
    duration_ms REAL,
    ip_address TEXT,
    user_agent TEXT
);

CREATE INDEX IF NOT EXISTS idx_user_activity_log_timestamp ON user_activity_log(timestamp);
