-- Call traces move out of the database (PostgreSQL flavour): the trace is written,
-- DEFLATE-compressed, through the recordings' storage (a local file or an S3 object, `location`),
-- and the row keeps only what finds it. A trace stored inline was ~100 KB of base64 per recorded
-- call, written into the database by every call that ended. Rows written before keep their
-- inline `trace` (NULL `location`) and stay readable. Exactly one of the two is set.
ALTER TABLE call_traces ALTER COLUMN trace DROP NOT NULL;
ALTER TABLE call_traces ADD COLUMN location TEXT;
ALTER TABLE call_traces ADD CONSTRAINT call_traces_one_body
    CHECK ((trace IS NULL) <> (location IS NULL));
