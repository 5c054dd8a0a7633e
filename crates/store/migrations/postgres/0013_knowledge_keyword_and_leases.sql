-- Knowledge base, two changes (PostgreSQL flavour).
-- 1. The full-text keyword index goes: search ranks words in memory (BM25, loaded with the
--    vectors, crates/knowledge/src/keyword.rs) because ts_rank / FTS5 bm25() were 75 ms p99 at
--    10k chunks (docs/PERFORMANCE.md#knowledge-base-search); the generated tsvector column and
--    its GIN index were computed on every chunk and read by nobody.
-- 2. processing_heartbeat_at: the last heartbeat (unix ms) of the job processing a document,
--    refreshed while it runs. A `processing` document whose heartbeat is older than the lease is
--    a job that died with its instance, whichever instance that was: any instance may put it
--    back to `pending` or take it over. NULL when not processing; rows processing now start
--    from their last status change.
DROP INDEX IF EXISTS document_chunks_tsv;
ALTER TABLE document_chunks DROP COLUMN tsv;

ALTER TABLE documents ADD COLUMN processing_heartbeat_at BIGINT;
UPDATE documents SET processing_heartbeat_at = updated_at WHERE status = 'processing';
