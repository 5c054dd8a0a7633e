-- Knowledge base: which instance (`server.instance_id`) is processing a document, so that
-- instance, restarted after a crash, puts its documents left `processing` back to `pending`
-- at start instead of waiting for the 15-minute takeover. NULL when not processing.
ALTER TABLE documents ADD COLUMN processing_instance TEXT;
