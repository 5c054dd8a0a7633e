-- Every tool the LLM ran during a call (built-in or custom): what it was asked, what it gave
-- back (capped; `result_truncated` says when), how it ended (`ok`, `error`, `timeout`,
-- `cancelled`), when it started (unix ms) and how long it ran (ms). Keyed by organisation as
-- well as call, so every read is scoped by tenant without a join.
CREATE TABLE tool_executions (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    organization_id   BIGINT  NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    call_id           BIGINT  NOT NULL REFERENCES calls(id) ON DELETE CASCADE,
    tool_call_id      TEXT    NOT NULL,
    tool_name         TEXT    NOT NULL,
    arguments         TEXT    NOT NULL,
    result            TEXT,
    result_truncated  INTEGER NOT NULL,
    status            TEXT    NOT NULL,
    error             TEXT,
    started_at        BIGINT  NOT NULL,
    duration_ms       BIGINT  NOT NULL,
    created_at        BIGINT  NOT NULL
);
CREATE INDEX tool_executions_org_call ON tool_executions (organization_id, call_id, started_at);
