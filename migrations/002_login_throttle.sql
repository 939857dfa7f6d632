-- Failed logins, counted per (username, client address) and per client address.
--
-- A lock on the pair keeps one attacker from guessing an account's password, without
-- locking its owner out from anywhere else; the per-address count stops one address
-- from trying many accounts. Rows are written before the password is checked, in one
-- write transaction, so parallel attempts cannot exceed the limit.

CREATE TABLE IF NOT EXISTS login_failures (
    username TEXT NOT NULL,
    ip_address TEXT NOT NULL,
    failures INTEGER NOT NULL,
    first_failed_at TEXT NOT NULL,
    locked_until TEXT,
    PRIMARY KEY (username, ip_address)
);

CREATE TABLE IF NOT EXISTS login_address_failures (
    ip_address TEXT PRIMARY KEY,
    failures INTEGER NOT NULL,
    first_failed_at TEXT NOT NULL,
    locked_until TEXT
);
