-- Run once, after migration 005, on a database made before the monitor became an
-- extension (PRAGMA user_version 5, tables api_tokens and audit_log of its own).
-- Every row is kept: tokens and audit rows move to the prefixed tables, and each event
-- gets the role its user had in the old users table (the only read of that table ever,
-- since the old monitor created it). users and sessions stay: they belong to the host.

INSERT INTO activity_api_tokens (id, user_id, name, token_hash, created_at, last_used_at, revoked_at)
SELECT id, user_id, name, token_hash, created_at, last_used_at, revoked_at FROM api_tokens;

INSERT INTO activity_audit_log (id, user_id, action, details, ip_address, created_at)
SELECT id, user_id, action, details, ip_address, created_at FROM audit_log;

UPDATE user_activity_log
SET role = COALESCE((SELECT role FROM users WHERE users.id = user_activity_log.user_id), '');

DROP TABLE api_tokens;

DROP TABLE audit_log;
