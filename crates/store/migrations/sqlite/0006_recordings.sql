-- Recordings a crash interrupted (same meaning in both flavours).
-- partial: 1 when the recording was finalised at the next start from what had been written
-- before the process died (playable, but the end of the call is missing); 0 for a recording
-- finished with its call.
ALTER TABLE recordings ADD COLUMN partial INTEGER NOT NULL DEFAULT 0;
