-- Web console sign-ins (issue 14): one row per signed-in browser. The cookie carries a random
-- 32-byte token; only its SHA-256 (hex) is stored, so a copy of this table signs no one in.
-- A session acts with its API key's rights and ends with it: every request joins api_keys and
-- refuses a revoked key, and revoking deletes nothing here (the rows expire or are signed out).
-- csrf_token: the per-session anti-forgery token echoed in forms and X-CSRF-Token headers.
-- created_at / expires_at: unix ms.
CREATE TABLE console_sessions (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    token_hash       TEXT    NOT NULL UNIQUE,
    api_key_id       BIGINT  NOT NULL REFERENCES api_keys(id) ON DELETE CASCADE,
    organization_id  BIGINT  NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    csrf_token       TEXT    NOT NULL,
    created_at       BIGINT  NOT NULL,
    expires_at       BIGINT  NOT NULL
);
CREATE INDEX console_sessions_expiry ON console_sessions (expires_at);
