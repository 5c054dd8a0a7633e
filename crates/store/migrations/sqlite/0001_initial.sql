-- Switchboard schema, SQLite flavour. Keep in step with ../postgres/0001_initial.sql:
-- same tables, columns and meaning; only the type names differ.
-- Timestamps are unix epoch milliseconds (BIGINT); booleans are INTEGER 0/1;
-- JSON documents are TEXT.

CREATE TABLE organizations (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    name                TEXT    NOT NULL UNIQUE,
    twilio_account_sid  TEXT,
    twilio_auth_token   TEXT,
    provider_keys       TEXT    NOT NULL DEFAULT '{}',
    created_at          BIGINT  NOT NULL,
    updated_at          BIGINT  NOT NULL
);

CREATE TABLE users (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    organization_id  BIGINT  NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    name             TEXT    NOT NULL,
    created_at       BIGINT  NOT NULL,
    UNIQUE (organization_id, name)
);

CREATE TABLE api_keys (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    organization_id  BIGINT  NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    user_id          BIGINT  NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    key_hash         TEXT    NOT NULL UNIQUE,
    key_prefix       TEXT    NOT NULL,
    label            TEXT,
    created_at       BIGINT  NOT NULL,
    last_used_at     BIGINT,
    revoked_at       BIGINT
);
CREATE INDEX api_keys_org ON api_keys (organization_id, id);

CREATE TABLE assistants (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    organization_id  BIGINT  NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    user_id          BIGINT  NOT NULL,
    name             TEXT    NOT NULL,
    is_active        INTEGER NOT NULL DEFAULT 1,
    config           TEXT    NOT NULL,
    created_at       BIGINT  NOT NULL,
    updated_at       BIGINT  NOT NULL
);
CREATE INDEX assistants_org ON assistants (organization_id, id);
CREATE INDEX assistants_org_active ON assistants (organization_id, is_active, id);

CREATE TABLE phone_numbers (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    organization_id  BIGINT  NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    assistant_id     BIGINT  REFERENCES assistants(id) ON DELETE SET NULL,
    number           TEXT    NOT NULL UNIQUE,
    created_at       BIGINT  NOT NULL,
    updated_at       BIGINT  NOT NULL
);
CREATE INDEX phone_numbers_assistant ON phone_numbers (assistant_id);

CREATE TABLE calls (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    organization_id  BIGINT  NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    assistant_id     BIGINT  REFERENCES assistants(id) ON DELETE SET NULL,
    call_sid         TEXT    NOT NULL UNIQUE,
    direction        TEXT    NOT NULL,
    from_number      TEXT    NOT NULL,
    to_number        TEXT    NOT NULL,
    status           TEXT    NOT NULL,
    started_at       BIGINT  NOT NULL,
    ended_at         BIGINT,
    duration_s       BIGINT,
    ended_reason     TEXT,
    metadata         TEXT    NOT NULL DEFAULT '{}',
    created_at       BIGINT  NOT NULL,
    updated_at       BIGINT  NOT NULL
);
CREATE INDEX calls_org ON calls (organization_id, id);
CREATE INDEX calls_org_assistant ON calls (organization_id, assistant_id, id);
CREATE INDEX calls_org_from ON calls (organization_id, from_number, started_at);
CREATE INDEX calls_org_to ON calls (organization_id, to_number, started_at);

CREATE TABLE transcripts (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    call_id      BIGINT  NOT NULL REFERENCES calls(id) ON DELETE CASCADE,
    role         TEXT    NOT NULL,
    content      TEXT    NOT NULL,
    start_ms     BIGINT  NOT NULL,
    end_ms       BIGINT  NOT NULL,
    confidence   REAL,
    is_final     INTEGER NOT NULL,
    interrupted  INTEGER NOT NULL,
    created_at   BIGINT  NOT NULL
);
CREATE INDEX transcripts_call ON transcripts (call_id, start_ms, id);

CREATE TABLE turn_metrics (
    id                   INTEGER PRIMARY KEY AUTOINCREMENT,
    call_id              BIGINT  NOT NULL REFERENCES calls(id) ON DELETE CASCADE,
    turn_index           BIGINT  NOT NULL,
    user_speech_end_ms   BIGINT,
    stt_final_ms         BIGINT,
    llm_request_ms       BIGINT,
    llm_first_token_ms   BIGINT,
    tts_first_byte_ms    BIGINT,
    first_audio_sent_ms  BIGINT,
    playback_done_ms     BIGINT,
    llm_provider         TEXT,
    stt_provider         TEXT,
    tts_provider         TEXT,
    interrupted          INTEGER NOT NULL,
    extra                TEXT    NOT NULL DEFAULT '{}',
    created_at           BIGINT  NOT NULL
);
CREATE INDEX turn_metrics_call ON turn_metrics (call_id, turn_index, id);

CREATE TABLE recordings (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    call_id         BIGINT  NOT NULL REFERENCES calls(id) ON DELETE CASCADE,
    kind            TEXT    NOT NULL,
    format          TEXT    NOT NULL,
    path_or_url     TEXT    NOT NULL,
    duration_ms     BIGINT  NOT NULL,
    size_bytes      BIGINT  NOT NULL,
    sample_rate     BIGINT  NOT NULL,
    created_at      BIGINT  NOT NULL
);
CREATE INDEX recordings_call ON recordings (call_id, id);

CREATE TABLE webhook_logs (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    call_id        BIGINT  REFERENCES calls(id) ON DELETE CASCADE,
    event          TEXT    NOT NULL,
    url            TEXT    NOT NULL,
    status_code    BIGINT,
    attempt        BIGINT  NOT NULL,
    success        INTEGER NOT NULL,
    error          TEXT,
    request_body   TEXT    NOT NULL,
    response_body  TEXT,
    duration_ms    BIGINT  NOT NULL,
    created_at     BIGINT  NOT NULL
);
CREATE INDEX webhook_logs_call ON webhook_logs (call_id, id);
