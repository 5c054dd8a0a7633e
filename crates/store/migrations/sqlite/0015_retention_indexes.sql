-- Retention ([recordings] retention_days, trace_retention_days): the hourly sweep finds the
-- recordings and call traces stored before a cutoff, oldest first.
CREATE INDEX recordings_created ON recordings (created_at, id);
CREATE INDEX call_traces_created ON call_traces (created_at, call_id);
