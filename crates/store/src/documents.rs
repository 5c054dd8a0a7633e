//! The knowledge base's persistence (`rag_settings`): uploaded documents, their processing
//! status (with the claim and heartbeat of the job processing them), and their chunks with
//! embeddings (`migrations/*/0005_documents.sql`, `0012`, `0013`).
//!
//! Every query is keyed by organisation (and assistant): a document or chunk of another tenant
//! is [`StoreError::NotFound`] or simply absent. Chunks exist only for processed documents: a
//! (re)processing replaces a document's chunks and marks it `ready` in one transaction, and
//! deleting a document deletes its chunks (and with them their vectors).
//! Search is not done here: callers load [`Store::indexed_chunks`] once per assistant, rank
//! keywords and vectors in memory, and reload when [`Store::knowledge_stamp`] changes. (The
//! FTS5 / `tsvector` keyword index was dropped by migration 0013: its ranking cost 75 ms p99 at
//! 10k chunks, see docs/PERFORMANCE.md#knowledge-base-search.)

use std::fmt;

use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Store, StoreError, now_ms};

/// Where a document's processing stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DocumentStatus {
    /// Uploaded, not processed yet (`auto_process` off, or the background job has not run).
    Pending,
    /// The background job is extracting, chunking and embedding it.
    Processing,
    /// Processed: its chunks are searchable.
    Ready,
    /// Processing failed; `error` says why. It can be processed again.
    Failed,
}

impl DocumentStatus {
    /// The stored and wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            DocumentStatus::Pending => "pending",
            DocumentStatus::Processing => "processing",
            DocumentStatus::Ready => "ready",
            DocumentStatus::Failed => "failed",
        }
    }

    /// The status read from a stored string; anything unknown reads as `failed` (it cannot be
    /// searched and can be processed again).
    pub fn from_stored(s: &str) -> DocumentStatus {
        match s {
            "pending" => DocumentStatus::Pending,
            "processing" => DocumentStatus::Processing,
            "ready" => DocumentStatus::Ready,
            _ => DocumentStatus::Failed,
        }
    }
}

impl fmt::Display for DocumentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A document to store, as uploaded.
#[derive(Debug, Clone)]
pub struct NewDocument {
    /// Owning organisation.
    pub organization_id: i64,
    /// The assistant whose knowledge base it joins.
    pub assistant_id: i64,
    /// Display name (the upload's `name`, else the file name).
    pub name: String,
    /// The uploaded file's name.
    pub file_name: String,
    /// Media type (`application/pdf`, `text/markdown`, …) as the engine classified it.
    pub content_type: String,
    /// The upload's `category`, free text.
    pub category: Option<String>,
    /// The upload's `tags`, free text.
    pub tags: Option<String>,
    /// The file's bytes, kept for (re)processing.
    pub content: Vec<u8>,
}

/// A stored document, without its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DocumentRow {
    /// Database id.
    pub id: i64,
    /// Owning organisation.
    pub organization_id: i64,
    /// The assistant it belongs to.
    pub assistant_id: i64,
    /// Display name.
    pub name: String,
    /// The uploaded file's name.
    pub file_name: String,
    /// Media type.
    pub content_type: String,
    /// Size of the upload, bytes.
    pub size_bytes: i64,
    /// Free-text category.
    pub category: Option<String>,
    /// Free-text tags.
    pub tags: Option<String>,
    /// Processing status.
    pub status: DocumentStatus,
    /// Why processing failed (`failed` only).
    pub error: Option<String>,
    /// Searchable chunks (0 until processed).
    pub chunk_count: i64,
    /// Upload time, unix ms.
    pub created_at_ms: i64,
    /// Last status change, unix ms.
    pub updated_at_ms: i64,
    /// When processing last succeeded, unix ms.
    pub processed_at_ms: Option<i64>,
    /// The last heartbeat of the job processing it (`processing` only), unix ms: a job whose
    /// heartbeat is older than the lease is dead and its document may be taken over.
    pub processing_heartbeat_ms: Option<i64>,
}

/// One chunk to store for a document.
#[derive(Debug, Clone, PartialEq)]
pub struct NewChunk {
    /// Order of the chunk in its document, from 0.
    pub position: i64,
    /// Page it comes from (PDF), from 1.
    pub page: Option<i64>,
    /// Section it comes from (a heading, a sheet row range), when known.
    pub section: Option<String>,
    /// The chunk's text.
    pub content: String,
    /// Its embedding.
    pub embedding: Vec<f32>,
}

/// A stored chunk with its document's name, as search results show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChunkRow {
    /// Database id.
    pub id: i64,
    /// The document it belongs to.
    pub document_id: i64,
    /// That document's display name.
    pub document_name: String,
    /// Order in the document, from 0.
    pub position: i64,
    /// Page (PDF), from 1.
    pub page: Option<i64>,
    /// Section, when known.
    pub section: Option<String>,
    /// The text.
    pub content: String,
}

/// A chunk's id and embedding, for the in-memory vector index.
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkVector {
    /// Chunk id.
    pub id: i64,
    /// The embedding as stored.
    pub embedding: Vec<f32>,
}

/// A chunk's id, text and embedding: what the in-memory search indexes are built from.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexedChunk {
    /// Chunk id.
    pub id: i64,
    /// The chunk's text (for the keyword index).
    pub content: String,
    /// The embedding as stored (for the vector index).
    pub embedding: Vec<f32>,
}

/// A summary of an assistant's searchable documents that changes whenever their chunks do
/// (a document processed, reprocessed or deleted): an in-memory index built when it had one
/// value is stale once it has another, on any instance sharing the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct KnowledgeStamp {
    /// Ready documents.
    pub documents: i64,
    /// Their chunks.
    pub chunks: i64,
    /// The latest processing time among them, unix ms.
    pub last_processed_ms: i64,
}

/// Bytes of an embedding as stored: f32 little-endian, one after the other.
pub fn encode_embedding(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// The embedding stored as `bytes` (a trailing partial float is ignored).
pub fn decode_embedding(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

const DOCUMENT_COLS: &str = "id, organization_id, assistant_id, name, file_name, content_type, \
     size_bytes, category, tags, status, error, chunk_count, created_at, updated_at, processed_at, \
     processing_heartbeat_at";

fn document_from_row(r: &AnyRow) -> Result<DocumentRow, StoreError> {
    Ok(DocumentRow {
        id: r.try_get("id")?,
        organization_id: r.try_get("organization_id")?,
        assistant_id: r.try_get("assistant_id")?,
        name: r.try_get("name")?,
        file_name: r.try_get("file_name")?,
        content_type: r.try_get("content_type")?,
        size_bytes: r.try_get("size_bytes")?,
        category: r.try_get("category")?,
        tags: r.try_get("tags")?,
        status: DocumentStatus::from_stored(&r.try_get::<String, _>("status")?),
        error: r.try_get("error")?,
        chunk_count: r.try_get("chunk_count")?,
        created_at_ms: r.try_get("created_at")?,
        updated_at_ms: r.try_get("updated_at")?,
        processed_at_ms: r.try_get("processed_at")?,
        processing_heartbeat_ms: r.try_get("processing_heartbeat_at")?,
    })
}

impl Store {
    /// Stores an uploaded document as `pending`. `NotFound` when the organisation has no such
    /// assistant.
    pub async fn create_document(&self, doc: &NewDocument) -> Result<DocumentRow, StoreError> {
        if self
            .get_assistant(doc.organization_id, doc.assistant_id)
            .await?
            .is_none()
        {
            return Err(StoreError::NotFound);
        }
        let now = now_ms();
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO documents (organization_id, assistant_id, name, file_name, content_type, \
             size_bytes, category, tags, status, chunk_count, content, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 0, $10, $11, $11) RETURNING {DOCUMENT_COLS}"
        )))
        .bind(doc.organization_id)
        .bind(doc.assistant_id)
        .bind(&doc.name)
        .bind(&doc.file_name)
        .bind(&doc.content_type)
        .bind(doc.content.len() as i64)
        .bind(&doc.category)
        .bind(&doc.tags)
        .bind(DocumentStatus::Pending.as_str())
        .bind(&doc.content)
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        document_from_row(&row)
    }

    /// The assistant's documents, oldest first.
    pub async fn list_documents(
        &self,
        org_id: i64,
        assistant_id: i64,
    ) -> Result<Vec<DocumentRow>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {DOCUMENT_COLS} FROM documents WHERE organization_id = $1 \
             AND assistant_id = $2 ORDER BY id"
        )))
        .bind(org_id)
        .bind(assistant_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(document_from_row).collect()
    }

    /// One document of the assistant, `None` when the organisation has no such document there.
    pub async fn get_document(
        &self,
        org_id: i64,
        assistant_id: i64,
        id: i64,
    ) -> Result<Option<DocumentRow>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {DOCUMENT_COLS} FROM documents WHERE id = $1 AND organization_id = $2 \
             AND assistant_id = $3"
        )))
        .bind(id)
        .bind(org_id)
        .bind(assistant_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(document_from_row).transpose()
    }

    /// The uploaded bytes of a document, for processing.
    pub async fn document_content(
        &self,
        org_id: i64,
        assistant_id: i64,
        id: i64,
    ) -> Result<Vec<u8>, StoreError> {
        let row = sqlx::query(
            "SELECT content FROM documents WHERE id = $1 AND organization_id = $2 \
             AND assistant_id = $3",
        )
        .bind(id)
        .bind(org_id)
        .bind(assistant_id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)?;
        Ok(row.try_get("content")?)
    }

    /// Marks the document `processing` by `instance` (`server.instance_id`) with a fresh
    /// heartbeat, unless a job is processing it already (whose heartbeat is at or after
    /// `lease_expired_before_ms`, unix ms: an older heartbeat is a job that died with its
    /// instance and may be taken over): true when this caller took it. One conditional write,
    /// so two workers never process the same document at once. `NotFound` when the
    /// organisation has no such document.
    pub async fn claim_document(
        &self,
        org_id: i64,
        assistant_id: i64,
        id: i64,
        lease_expired_before_ms: i64,
        instance: &str,
    ) -> Result<bool, StoreError> {
        let res = sqlx::query(
            "UPDATE documents SET status = $1, error = NULL, updated_at = $2, \
             processing_heartbeat_at = $2, processing_instance = $7 WHERE id = $3 \
             AND organization_id = $4 AND assistant_id = $5 \
             AND (status <> $1 OR COALESCE(processing_heartbeat_at, updated_at) < $6)",
        )
        .bind(DocumentStatus::Processing.as_str())
        .bind(now_ms())
        .bind(id)
        .bind(org_id)
        .bind(assistant_id)
        .bind(lease_expired_before_ms)
        .bind(instance)
        .execute(&self.pool)
        .await?;
        if res.rows_affected() == 1 {
            return Ok(true);
        }
        match self.get_document(org_id, assistant_id, id).await? {
            Some(_) => Ok(false),
            None => Err(StoreError::NotFound),
        }
    }

    /// Renews the claim of `instance` on the document it is processing (its heartbeat, now):
    /// false when the claim is no longer its own (taken over after its heartbeat lapsed,
    /// deleted, or finished), in which case the job should stop without writing.
    pub async fn heartbeat_document(
        &self,
        org_id: i64,
        assistant_id: i64,
        id: i64,
        instance: &str,
    ) -> Result<bool, StoreError> {
        let res = sqlx::query(
            "UPDATE documents SET processing_heartbeat_at = $1 WHERE id = $2 \
             AND organization_id = $3 AND assistant_id = $4 AND status = $5 \
             AND processing_instance = $6",
        )
        .bind(now_ms())
        .bind(id)
        .bind(org_id)
        .bind(assistant_id)
        .bind(DocumentStatus::Processing.as_str())
        .bind(instance)
        .execute(&self.pool)
        .await?;
        Ok(res.rows_affected() == 1)
    }

    /// Puts the documents whose processing died back to `pending`: those left `processing` by
    /// `dead_instance` (this instance's id at start, before it processes anything: a claim of
    /// that id is a job of its previous process) and those of any instance whose heartbeat is
    /// older than `lease_expired_before_ms` (unix ms: the job stopped renewing its claim, so
    /// its instance is gone or cut off). Live jobs of other instances are left alone. Returns
    /// the documents reset (any organisation).
    pub async fn requeue_processing_documents(
        &self,
        dead_instance: Option<&str>,
        lease_expired_before_ms: i64,
    ) -> Result<Vec<DocumentRow>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE documents SET status = $1, processing_instance = NULL, \
             processing_heartbeat_at = NULL, updated_at = $2 WHERE status = $3 \
             AND (processing_instance = $4 \
             OR COALESCE(processing_heartbeat_at, updated_at) < $5) \
             RETURNING {DOCUMENT_COLS}"
        )))
        .bind(DocumentStatus::Pending.as_str())
        .bind(now_ms())
        .bind(DocumentStatus::Processing.as_str())
        .bind(dead_instance)
        .bind(lease_expired_before_ms)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(document_from_row).collect()
    }

    /// Replaces the document's chunks with `chunks` and marks it `ready`, in one transaction.
    /// `NotFound` when the document is gone (deleted while it was processed): nothing is written.
    pub async fn store_document_chunks(
        &self,
        org_id: i64,
        assistant_id: i64,
        document_id: i64,
        chunks: &[NewChunk],
    ) -> Result<DocumentRow, StoreError> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        let res = sqlx::query(
            "UPDATE documents SET status = $1, error = NULL, chunk_count = $2, updated_at = $3, \
             processed_at = $3, processing_instance = NULL, processing_heartbeat_at = NULL \
             WHERE id = $4 AND organization_id = $5 AND assistant_id = $6",
        )
        .bind(DocumentStatus::Ready.as_str())
        .bind(chunks.len() as i64)
        .bind(now)
        .bind(document_id)
        .bind(org_id)
        .bind(assistant_id)
        .execute(&mut *tx)
        .await?;
        if res.rows_affected() != 1 {
            return Err(StoreError::NotFound);
        }
        sqlx::query("DELETE FROM document_chunks WHERE document_id = $1 AND organization_id = $2")
            .bind(document_id)
            .bind(org_id)
            .execute(&mut *tx)
            .await?;
        for c in chunks {
            sqlx::query(
                "INSERT INTO document_chunks (organization_id, assistant_id, document_id, \
                 position, page, section, content, embedding, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(org_id)
            .bind(assistant_id)
            .bind(document_id)
            .bind(c.position)
            .bind(c.page)
            .bind(&c.section)
            .bind(&c.content)
            .bind(encode_embedding(&c.embedding))
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        self.get_document(org_id, assistant_id, document_id)
            .await?
            .ok_or(StoreError::NotFound)
    }

    /// Marks the document `failed` with `error` (its previous chunks, if any, stay searchable).
    pub async fn fail_document(
        &self,
        org_id: i64,
        assistant_id: i64,
        id: i64,
        error: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE documents SET status = $1, error = $2, updated_at = $3, \
             processing_instance = NULL, processing_heartbeat_at = NULL WHERE id = $4 \
             AND organization_id = $5 AND assistant_id = $6",
        )
        .bind(DocumentStatus::Failed.as_str())
        .bind(error)
        .bind(now_ms())
        .bind(id)
        .bind(org_id)
        .bind(assistant_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Deletes the document with its chunks (vectors included).
    /// `NotFound` when the organisation has no such document.
    pub async fn delete_document(
        &self,
        org_id: i64,
        assistant_id: i64,
        id: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "DELETE FROM document_chunks WHERE document_id = $1 AND organization_id = $2 \
             AND assistant_id = $3",
        )
        .bind(id)
        .bind(org_id)
        .bind(assistant_id)
        .execute(&mut *tx)
        .await?;
        let res = sqlx::query(
            "DELETE FROM documents WHERE id = $1 AND organization_id = $2 AND assistant_id = $3",
        )
        .bind(id)
        .bind(org_id)
        .bind(assistant_id)
        .execute(&mut *tx)
        .await?;
        if res.rows_affected() != 1 {
            return Err(StoreError::NotFound);
        }
        tx.commit().await?;
        Ok(())
    }

    /// The assistant's [`KnowledgeStamp`]: one indexed aggregate over its documents.
    pub async fn knowledge_stamp(
        &self,
        org_id: i64,
        assistant_id: i64,
    ) -> Result<KnowledgeStamp, StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n, CAST(COALESCE(SUM(chunk_count), 0) AS BIGINT) AS chunks, \
             CAST(COALESCE(MAX(processed_at), 0) AS BIGINT) AS last FROM documents \
             WHERE organization_id = $1 AND assistant_id = $2 AND status = $3",
        )
        .bind(org_id)
        .bind(assistant_id)
        .bind(DocumentStatus::Ready.as_str())
        .fetch_one(&self.pool)
        .await?;
        Ok(KnowledgeStamp {
            documents: row.try_get("n")?,
            chunks: row.try_get("chunks")?,
            last_processed_ms: row.try_get("last")?,
        })
    }

    /// Every chunk of the assistant with its text and embedding, by chunk id: one indexed
    /// query, run when a search cache loads the assistant (not per search).
    pub async fn indexed_chunks(
        &self,
        org_id: i64,
        assistant_id: i64,
    ) -> Result<Vec<IndexedChunk>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, content, embedding FROM document_chunks WHERE organization_id = $1 \
             AND assistant_id = $2 ORDER BY id",
        )
        .bind(org_id)
        .bind(assistant_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let bytes: Vec<u8> = r.try_get("embedding")?;
                Ok(IndexedChunk {
                    id: r.try_get("id")?,
                    content: r.try_get("content")?,
                    embedding: decode_embedding(&bytes),
                })
            })
            .collect()
    }

    /// The assistant's chunks with these ids, with their documents' names, in no set order.
    pub async fn chunks_by_ids(
        &self,
        org_id: i64,
        assistant_id: i64,
        ids: &[i64],
    ) -> Result<Vec<ChunkRow>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        // Only placeholders are formatted into the text; the ids are bound.
        let placeholders = (0..ids.len())
            .map(|i| format!("${}", i + 3))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT c.id, c.document_id, d.name, c.position, c.page, c.section, c.content \
             FROM document_chunks c JOIN documents d ON d.id = c.document_id \
             WHERE c.organization_id = $1 AND c.assistant_id = $2 AND c.id IN ({placeholders})"
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(org_id)
            .bind(assistant_id);
        for id in ids {
            q = q.bind(*id);
        }
        let rows = q.fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                Ok(ChunkRow {
                    id: r.try_get("id")?,
                    document_id: r.try_get("document_id")?,
                    document_name: r.try_get("name")?,
                    position: r.try_get("position")?,
                    page: r.try_get("page")?,
                    section: r.try_get("section")?,
                    content: r.try_get("content")?,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embeddings_round_trip() {
        let v = vec![0.0, -1.5, 3.25e-7, f32::MAX];
        assert_eq!(decode_embedding(&encode_embedding(&v)), v);
        assert_eq!(encode_embedding(&v).len(), 16);
    }
}
