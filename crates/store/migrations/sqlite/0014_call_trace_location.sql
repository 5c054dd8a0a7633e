-- Call traces move out of the database (SQLite flavour): the trace is written, DEFLATE-compressed,
-- through the recordings' storage (a local file or an S3 object, `location`), and the row keeps
-- only what finds it. A trace stored inline was ~100 KB of base64 per recorded call, written into
-- the database (and its WAL) by every call that ended; under load those writes held the one
-- SQLite writer. Rows written before keep their inline `trace` (NULL `location`) and stay
-- readable. Exactly one of the two is set.
-- SQLite cannot drop a NOT NULL constraint, so the table is rebuilt (nothing references it).
CREATE TABLE call_traces_new (
    call_id          BIGINT  PRIMARY KEY REFERENCES calls(id) ON DELETE CASCADE,
    organization_id  BIGINT  NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    format_version   BIGINT  NOT NULL,
    size_bytes       BIGINT  NOT NULL,
    trace            TEXT,
    location         TEXT,
    created_at       BIGINT  NOT NULL,
    CHECK ((trace IS NULL) <> (location IS NULL))
);
INSERT INTO call_traces_new (call_id, organization_id, format_version, size_bytes, trace, created_at)
    SELECT call_id, organization_id, format_version, size_bytes, trace, created_at FROM call_traces;
DROP TABLE call_traces;
ALTER TABLE call_traces_new RENAME TO call_traces;
CREATE INDEX call_traces_org ON call_traces (organization_id, call_id);
