-- Knowledge base (`rag_settings`): uploaded documents and their chunks (SQLite flavour).
-- documents: one uploaded file of an assistant, with its bytes (processing runs later, in the
-- background) and where processing stands (`status`: pending, processing, ready, failed).
-- document_chunks: the searchable pieces of a processed document, with their metadata (page or
-- section, position in the document) and their embedding (f32 little-endian, as a BLOB).
-- document_chunks_fts: the keyword index (FTS5, porter stemming), kept in step by triggers.
CREATE TABLE documents (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    organization_id  BIGINT  NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    assistant_id     BIGINT  NOT NULL REFERENCES assistants(id) ON DELETE CASCADE,
    name             TEXT    NOT NULL,
    file_name        TEXT    NOT NULL,
    content_type     TEXT    NOT NULL,
    size_bytes       BIGINT  NOT NULL,
    category         TEXT,
    tags             TEXT,
    status           TEXT    NOT NULL,
    error            TEXT,
    chunk_count      BIGINT  NOT NULL DEFAULT 0,
    content          BLOB    NOT NULL,
    created_at       BIGINT  NOT NULL,
    updated_at       BIGINT  NOT NULL,
    processed_at     BIGINT
);
CREATE INDEX documents_assistant ON documents (organization_id, assistant_id, id);
CREATE INDEX documents_status ON documents (status, id);

CREATE TABLE document_chunks (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    organization_id  BIGINT  NOT NULL,
    assistant_id     BIGINT  NOT NULL,
    document_id      BIGINT  NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    position         BIGINT  NOT NULL,
    page             BIGINT,
    section          TEXT,
    content          TEXT    NOT NULL,
    embedding        BLOB    NOT NULL,
    created_at       BIGINT  NOT NULL
);
CREATE INDEX document_chunks_assistant ON document_chunks (organization_id, assistant_id, id);
CREATE INDEX document_chunks_document ON document_chunks (document_id, position);

CREATE VIRTUAL TABLE document_chunks_fts USING fts5(
    content,
    content = 'document_chunks',
    content_rowid = 'id',
    tokenize = 'porter unicode61'
);
CREATE TRIGGER document_chunks_fts_insert AFTER INSERT ON document_chunks BEGIN
    INSERT INTO document_chunks_fts (rowid, content) VALUES (new.id, new.content);
END;
CREATE TRIGGER document_chunks_fts_delete AFTER DELETE ON document_chunks BEGIN
    INSERT INTO document_chunks_fts (document_chunks_fts, rowid, content)
        VALUES ('delete', old.id, old.content);
END;
