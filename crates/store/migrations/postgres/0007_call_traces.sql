-- The call's flight recorder (same in both flavours): what the call core was fed and what it
-- decided, written when a call with `recording_settings.enabled` ends; read by
-- `switchboard replay` and `GET /api/v1/calls/{id}/replay`. One row per call, keyed by the
-- organisation like everything else.
-- trace: base64 of the DEFLATE-compressed trace (switchboard_core::call::trace::Trace bytes:
-- settings, timestamped events, decisions, caller audio); size_bytes: its uncompressed size.
CREATE TABLE call_traces (
    call_id          BIGINT  PRIMARY KEY REFERENCES calls(id) ON DELETE CASCADE,
    organization_id  BIGINT  NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    format_version   BIGINT  NOT NULL,
    size_bytes       BIGINT  NOT NULL,
    trace            TEXT    NOT NULL,
    created_at       BIGINT  NOT NULL
);
CREATE INDEX call_traces_org ON call_traces (organization_id, call_id);
