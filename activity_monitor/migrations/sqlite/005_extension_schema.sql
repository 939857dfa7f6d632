-- The monitor as an extension of someone else's app: its own identity, its own tokens
-- and audit log, and the host's role stored on each event (no join on any host table).

-- A single row: this install's random id. Every key the monitor keeps in a shared
-- Redis carries it, so two installs sharing one Redis never see each other's data.
CREATE TABLE IF NOT EXISTS activity_install (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    install_id TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now'))
);

INSERT OR IGNORE INTO activity_install (id, install_id) VALUES (1, lower(hex(randomblob(16))));

-- The host's role name at the time of the request; user_distribution counts these.
ALTER TABLE user_activity_log ADD COLUMN role TEXT NOT NULL DEFAULT '';

-- Sessions of events without a session key are derived from gaps longer than this
-- many minutes; a row computed with another value is recomputed.
ALTER TABLE activity_summary_daily ADD COLUMN session_idle_minutes INTEGER NOT NULL DEFAULT 30;

-- API tokens act for a host user (user_id is the host's id, of whatever type); only the
-- SHA-256 of a token is stored.
CREATE TABLE IF NOT EXISTS activity_api_tokens (
    id INTEGER PRIMARY KEY,
    user_id NOT NULL,
    name TEXT NOT NULL,
    token_hash TEXT UNIQUE NOT NULL,
    created_at TEXT NOT NULL,
    last_used_at TEXT,
    revoked_at TEXT
);

CREATE TABLE IF NOT EXISTS activity_audit_log (
    id INTEGER PRIMARY KEY,
    user_id,
    action TEXT NOT NULL,
    details TEXT,
    ip_address TEXT,
    created_at TEXT NOT NULL
);

CREATE INDEX IF NOT EXISTS idx_activity_audit_log_created ON activity_audit_log(created_at);
CREATE INDEX IF NOT EXISTS idx_activity_audit_log_action ON activity_audit_log(action, created_at);
