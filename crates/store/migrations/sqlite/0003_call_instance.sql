-- Crash recovery (same in both flavours).
-- instance_id: the engine instance (`server.instance_id`, or a random id per process) whose
-- media stream carries or carried the call; NULL until a stream started. Claiming a call sets it
-- in one conditional write, so a call never runs on two instances.
-- stream_deadline_at: unix ms by which the media stream our TwiML handed out must start, else
-- the call is closed as `stream_never_started`; NULL once it started or when none was handed out.
ALTER TABLE calls ADD COLUMN instance_id TEXT;
ALTER TABLE calls ADD COLUMN stream_deadline_at BIGINT;
-- Open calls by instance and by age (closed as `engine_restart` at start), and pending stream
-- deadlines (the periodic sweep); partial, so they stay as small as the set of open calls.
CREATE INDEX calls_open_instance ON calls (instance_id) WHERE ended_at IS NULL;
CREATE INDEX calls_open_started ON calls (started_at) WHERE ended_at IS NULL;
CREATE INDEX calls_stream_deadline ON calls (stream_deadline_at)
    WHERE stream_deadline_at IS NOT NULL;
