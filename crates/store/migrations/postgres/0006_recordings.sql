-- Recordings a crash interrupted (same meaning in both flavours).
-- partial: TRUE when the recording was finalised at the next start from what had been written
-- before the process died (playable, but the end of the call is missing); FALSE for a recording
-- finished with its call.
ALTER TABLE recordings ADD COLUMN partial BOOLEAN NOT NULL DEFAULT FALSE;
