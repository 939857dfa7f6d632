-- Rows the monitor could not write at once wait in the event spool (event_spool.py) and are
-- replayed later with their spool entry's key. The key is unique where it is set, so a row
-- replayed twice (a crash between the commit and the spool's truncation) lands once; ordinary
-- inserts leave it NULL and the partial index costs them nothing.
ALTER TABLE user_activity_log ADD COLUMN spool_key TEXT;
CREATE UNIQUE INDEX IF NOT EXISTS idx_user_activity_log_spool_key
    ON user_activity_log(spool_key) WHERE spool_key IS NOT NULL;

ALTER TABLE activity_audit_log ADD COLUMN spool_key TEXT;
CREATE UNIQUE INDEX IF NOT EXISTS idx_activity_audit_log_spool_key
    ON activity_audit_log(spool_key) WHERE spool_key IS NOT NULL;

-- A single row the health check updates in a transaction: a database that answers reads but
-- cannot commit a write (read-only, full, gone) is not healthy.
CREATE TABLE IF NOT EXISTS activity_health_probe (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    writes INTEGER NOT NULL DEFAULT 0
);

INSERT OR IGNORE INTO activity_health_probe (id, writes) VALUES (1, 0);
