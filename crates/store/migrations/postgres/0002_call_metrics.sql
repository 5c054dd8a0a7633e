-- Whole-call counters the call runtime records at the end of a call (turns, interruptions,
-- speculative starts, provider failures …), as one JSON object.
ALTER TABLE calls ADD COLUMN metrics TEXT NOT NULL DEFAULT '{}';
