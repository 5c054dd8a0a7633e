//! One document from uploaded bytes to searchable chunks: claim it (`processing`), extract its
//! text, chunk it, embed the chunks, store them and mark it `ready`, or mark it `failed` with
//! the reason. Run by a background job (never on a call); extraction and chunking run on the
//! blocking pool.
//!
//! The claim is a lease: the job renews its heartbeat every [`HEARTBEAT_INTERVAL`] while it
//! runs, and a claim whose heartbeat is older than [`PROCESSING_LEASE`] is a job that died with
//! its instance (any instance may take the document over or put it back to `pending`). A job
//! that finds its claim taken over stops without writing.

use std::time::Duration;

use switchboard_store::{DocumentRow, NewChunk, StoreError, now_ms};

use crate::chunk::{ChunkSpec, chunk};
use crate::embed::{EmbedError, Embedder, EmbeddingTarget};
use crate::extract::{ExtractError, extract};
use crate::format::DocumentFormat;
use crate::search::KnowledgeBase;

/// A `processing` claim whose heartbeat is older than this is a job that died with its
/// instance: another job may take the document over, and any instance puts it back to
/// `pending`. Four missed heartbeats, so a slow store write does not lose a live claim.
pub const PROCESSING_LEASE: Duration = Duration::from_secs(60);

/// How often a processing job renews its claim's heartbeat.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(15);

/// The unix ms before which a heartbeat has lapsed, now ([`PROCESSING_LEASE`] ago).
pub fn lease_expired_before_ms() -> i64 {
    now_ms() - PROCESSING_LEASE.as_millis() as i64
}

/// Most chunks one document may make (a bound on embedding cost and index memory).
pub const MAX_CHUNKS_PER_DOCUMENT: usize = 20_000;

/// What a processing request did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcessOutcome {
    /// The document is `ready` with its new chunks.
    Processed(Box<DocumentRow>),
    /// Another job is processing it; nothing was done.
    AlreadyRunning,
}

/// Why a document could not be processed (also stored, in words, as its `error`).
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The document does not exist (or belongs to another organisation), or was deleted
    /// while it was processed.
    #[error("document not found")]
    NotFound,
    /// The stored media type is not one the engine reads.
    #[error("unsupported document type `{0}`")]
    UnsupportedType(String),
    /// No text could be taken out of it.
    #[error(transparent)]
    Extract(#[from] ExtractError),
    /// It makes more chunks than [`MAX_CHUNKS_PER_DOCUMENT`].
    #[error("the document makes {0} chunks, more than the {MAX_CHUNKS_PER_DOCUMENT} allowed")]
    TooManyChunks(usize),
    /// The embeddings API failed.
    #[error(transparent)]
    Embed(#[from] EmbedError),
    /// Another instance took the document over after this job's heartbeat lapsed (the store
    /// was unreachable for longer than [`PROCESSING_LEASE`]); this job stopped without writing.
    #[error("processing was taken over by another instance")]
    TakenOver,
    /// The store failed.
    #[error("store: {0}")]
    Store(StoreError),
}

impl From<StoreError> for ProcessError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => ProcessError::NotFound,
            other => ProcessError::Store(other),
        }
    }
}

/// Processes document `document_id` of the organisation's assistant with `chunking` and
/// embeddings from `target`. On failure the document is marked `failed` with the error (its
/// previous chunks, if any, stay searchable) and the error is returned.
pub async fn process_document(
    kb: &KnowledgeBase,
    embedder: &Embedder,
    org_id: i64,
    assistant_id: i64,
    document_id: i64,
    chunking: ChunkSpec,
    target: &EmbeddingTarget,
) -> Result<ProcessOutcome, ProcessError> {
    let store = kb.store();
    if !store
        .claim_document(
            org_id,
            assistant_id,
            document_id,
            lease_expired_before_ms(),
            kb.instance_id(),
        )
        .await?
    {
        return Ok(ProcessOutcome::AlreadyRunning);
    }
    let outcome = tokio::select! {
        done = run(kb, embedder, org_id, assistant_id, document_id, chunking, target) => done,
        () = keep_claim(kb, org_id, assistant_id, document_id) => Err(ProcessError::TakenOver),
    };
    match outcome {
        Ok(row) => {
            kb.invalidate(org_id, assistant_id);
            tracing::info!(
                org_id,
                assistant_id,
                document_id,
                chunks = row.chunk_count,
                "document processed"
            );
            Ok(ProcessOutcome::Processed(Box::new(row)))
        }
        Err(e) => {
            tracing::warn!(org_id, assistant_id, document_id, error = %e, "document processing failed");
            if !matches!(e, ProcessError::NotFound | ProcessError::TakenOver) {
                store
                    .fail_document(org_id, assistant_id, document_id, &e.to_string())
                    .await?;
            }
            Err(e)
        }
    }
}

/// Renews the job's claim every [`KnowledgeBase::processing_heartbeat`] ([`HEARTBEAT_INTERVAL`]
/// unless set); returns once the claim is no longer
/// this instance's. A failed renewal (store unreachable) is retried at the next beat: the claim
/// holds for [`PROCESSING_LEASE`] without one.
async fn keep_claim(kb: &KnowledgeBase, org_id: i64, assistant_id: i64, document_id: i64) {
    let mut beats = tokio::time::interval(kb.processing_heartbeat());
    beats.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    beats.tick().await; // the claim itself was the first beat
    loop {
        beats.tick().await;
        match kb
            .store()
            .heartbeat_document(org_id, assistant_id, document_id, kb.instance_id())
            .await
        {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                tracing::warn!(org_id, assistant_id, document_id, error = %e, "document processing heartbeat not written");
            }
        }
    }
}

async fn run(
    kb: &KnowledgeBase,
    embedder: &Embedder,
    org_id: i64,
    assistant_id: i64,
    document_id: i64,
    chunking: ChunkSpec,
    target: &EmbeddingTarget,
) -> Result<DocumentRow, ProcessError> {
    let store = kb.store();
    let doc = store
        .get_document(org_id, assistant_id, document_id)
        .await?
        .ok_or(ProcessError::NotFound)?;
    let format = DocumentFormat::from_media_type(&doc.content_type)
        .ok_or_else(|| ProcessError::UnsupportedType(doc.content_type.clone()))?;
    let bytes = store
        .document_content(org_id, assistant_id, document_id)
        .await?;
    let chunks = tokio::task::spawn_blocking(move || {
        extract(format, &bytes).map(|sections| chunk(&sections, &chunking))
    })
    .await
    .map_err(|e| {
        ProcessError::Extract(ExtractError::Malformed {
            format: "document",
            detail: format!("extraction stopped: {e}"),
        })
    })??;
    if chunks.len() > MAX_CHUNKS_PER_DOCUMENT {
        return Err(ProcessError::TooManyChunks(chunks.len()));
    }
    let texts: Vec<String> = chunks.iter().map(|c| c.text.clone()).collect();
    let vectors = embedder.embed(target, &texts).await?;
    let rows: Vec<NewChunk> = chunks
        .into_iter()
        .zip(vectors)
        .map(|(c, embedding)| NewChunk {
            position: c.position as i64,
            page: c.page.map(i64::from),
            section: c.section,
            content: c.text,
            embedding,
        })
        .collect();
    Ok(store
        .store_document_chunks(org_id, assistant_id, document_id, &rows)
        .await?)
}
