-- Knowledge base, two changes (SQLite flavour).
-- 1. The FTS5 keyword index goes: search ranks words in memory (BM25, loaded with the vectors,
--    crates/knowledge/src/keyword.rs) because FTS5 bm25() was 75 ms p99 at 10k chunks
--    (docs/PERFORMANCE.md#knowledge-base-search); the table and its triggers were written on
--    every chunk and read by nobody.
-- 2. processing_heartbeat_at: the last heartbeat (unix ms) of the job processing a document,
--    refreshed while it runs. A `processing` document whose heartbeat is older than the lease is
--    a job that died with its instance, whichever instance that was: any instance may put it
--    back to `pending` or take it over. NULL when not processing; rows processing now start
--    from their last status change.
DROP TRIGGER document_chunks_fts_insert;
DROP TRIGGER document_chunks_fts_delete;
DROP TABLE document_chunks_fts;

ALTER TABLE documents ADD COLUMN processing_heartbeat_at BIGINT;
UPDATE documents SET processing_heartbeat_at = updated_at WHERE status = 'processing';
