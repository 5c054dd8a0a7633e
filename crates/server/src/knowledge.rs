//! The knowledge base in the server (`rag_settings`, crate `switchboard-knowledge`): the shared
//! search cache and embeddings client, document processing as background jobs (spawned on
//! `state.tasks`, at most `knowledge.processing_concurrency` at a time), and what a call needs
//! to search ([`CallKnowledge`]).
//!
//! Processing never runs on a call: uploads start it (`auto_process`) or
//! `POST /api/v1/assistants/{id}/documents/{doc_id}/process` does. A call only searches: one
//! query embedding and one indexed search per question.

use std::sync::{Arc, Mutex};

use switchboard_assistant::{AssistantConfig, RagSettings};
use switchboard_knowledge::process::{PROCESSING_LEASE, lease_expired_before_ms};
use switchboard_knowledge::{
    ChunkSpec, ChunkingStrategy, EmbedError, Embedder, EmbeddingTarget, KnowledgeBase,
    ProcessError, ProcessOutcome, SearchError, SearchHit, SearchParams, process_document,
};
use switchboard_netguard::GuardedClient;
use switchboard_store::{Store, StoreError};
use tokio::sync::Semaphore;

use crate::call::resolve::{self, KeySources, ResolveError};
use crate::config::KnowledgeSettings;
use crate::state::AppState;

/// The server's knowledge-base services, shared by the API and the calls.
#[derive(Debug, Clone)]
pub struct Knowledge {
    /// Search and its per-assistant vector cache.
    pub base: KnowledgeBase,
    /// Embeddings for document processing (batched, retried).
    pub embedder: Embedder,
    /// Embeddings for a call's query (fewer retries, short timeout).
    pub query_embedder: Embedder,
    jobs: Arc<Semaphore>,
}

impl Knowledge {
    /// The services over `store`, reaching embeddings APIs through the tenant client `http`,
    /// processing at most `settings.processing_concurrency` documents at once (claimed as
    /// `instance_id`), caching at most `settings.cache_max_bytes` of search indexes.
    pub fn new(
        store: Store,
        http: GuardedClient,
        settings: &KnowledgeSettings,
        instance_id: &str,
    ) -> Knowledge {
        let embedder = Embedder::new(http);
        Knowledge {
            base: KnowledgeBase::with_cache_max_bytes(store, settings.cache_max_bytes)
                .with_instance_id(instance_id),
            query_embedder: embedder.for_queries(),
            embedder,
            jobs: Arc::new(Semaphore::new(settings.processing_concurrency.max(1))),
        }
    }
}

/// The chunking an assistant's record asks for; an unknown strategy (refused by validation,
/// but a record may predate it) is `recursive`.
pub fn chunk_spec(r: &RagSettings) -> ChunkSpec {
    ChunkSpec {
        strategy: ChunkingStrategy::parse(&r.chunking_strategy)
            .unwrap_or(ChunkingStrategy::Recursive),
        size_chars: r.chunk_size.max(1) as usize,
        overlap_chars: r.chunk_overlap as usize,
    }
}

/// The key sources of organisation `org_id`, as its calls have them.
pub async fn key_sources(state: &AppState, org_id: i64) -> Result<KeySources, StoreError> {
    let name = state
        .store
        .get_organization(org_id)
        .await?
        .map(|o| o.name)
        .unwrap_or_default();
    let keys = state.store.get_org_provider_keys(org_id).await?;
    Ok(KeySources::for_organization(
        &name,
        keys,
        &state.settings.providers,
    ))
}

/// Puts the documents whose processing died back to `pending` and queues them again when
/// their assistant's `rag_settings.auto_process` is on. Which documents: those claimed by this
/// instance's id (`server.instance_id`; its previous process is gone, since this one has not
/// processed anything yet; a random id names no earlier process and matches nothing) and those
/// of any instance whose heartbeat lapsed ([`PROCESSING_LEASE`]: that job stopped renewing its
/// claim). Live jobs of other instances are left alone, so the rule holds with any number of
/// instances, with or without Redis. Call once at start, before serving; [`spawn_claim_sweep`]
/// then catches claims that lapse later. Returns how many documents were put back.
pub async fn requeue_interrupted(state: &AppState) -> usize {
    requeue(state, Some(state.instance_id.as_str())).await
}

/// Every [`PROCESSING_LEASE`] / 2 until shutdown, puts back to `pending` (and requeues) the
/// documents whose processing job stopped renewing its claim on any instance, so a document
/// whose instance died is processed again without waiting for that instance to come back.
pub fn spawn_claim_sweep(state: &AppState) {
    let state = state.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(PROCESSING_LEASE / 2);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await; // start already swept
        let stop = state.shutdown.clone();
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick() => {
                    requeue_lapsed(&state).await;
                }
            }
        }
    });
}

/// One sweep of [`spawn_claim_sweep`]: the documents of lapsed claims (any instance) back to
/// `pending`, requeued when `auto_process` is on. Returns how many were put back.
pub async fn requeue_lapsed(state: &AppState) -> usize {
    requeue(state, None).await
}

async fn requeue(state: &AppState, dead_instance: Option<&str>) -> usize {
    let reset = match state
        .store
        .requeue_processing_documents(dead_instance, lease_expired_before_ms())
        .await
    {
        Ok(reset) => reset,
        Err(e) => {
            tracing::error!(error = %e, "could not put interrupted document processing back to pending");
            return 0;
        }
    };
    for d in &reset {
        let auto = match state
            .store
            .get_assistant(d.organization_id, d.assistant_id)
            .await
        {
            Ok(Some(row)) => switchboard_assistant::deserialize_config(row.config)
                .is_ok_and(|c| c.rag_settings.auto_process),
            Ok(None) => false,
            Err(e) => {
                tracing::warn!(document_id = d.id, error = %e, "assistant of an interrupted document not read");
                false
            }
        };
        tracing::warn!(
            organization_id = d.organization_id,
            assistant_id = d.assistant_id,
            document_id = d.id,
            requeued = auto,
            "document processing interrupted (instance restarted or its heartbeat lapsed): back to pending"
        );
        if auto {
            spawn_processing(state, d.organization_id, d.assistant_id, d.id);
        }
    }
    reset.len()
}

/// Why a processing job could not start processing.
#[derive(Debug, thiserror::Error)]
enum JobError {
    #[error("assistant not found")]
    NoAssistant,
    #[error("stored assistant record does not parse: {0}")]
    Record(String),
    #[error("embeddings: {0}")]
    Resolve(#[from] ResolveError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Process(#[from] ProcessError),
}

/// Processes document `document_id` of the organisation's assistant in the background, with
/// the assistant's current `rag_settings` and keys. The outcome is the document's status.
pub fn spawn_processing(state: &AppState, org_id: i64, assistant_id: i64, document_id: i64) {
    let state2 = state.clone();
    state.tasks.spawn(async move {
        let Ok(_permit) = state2.knowledge.jobs.clone().acquire_owned().await else {
            return;
        };
        match process_job(&state2, org_id, assistant_id, document_id).await {
            Ok(_) | Err(JobError::Process(_)) => {} // logged and recorded by process_document
            Err(e) => {
                tracing::warn!(org_id, assistant_id, document_id, error = %e, "document processing could not start");
                let _ = state2
                    .store
                    .fail_document(org_id, assistant_id, document_id, &e.to_string())
                    .await;
            }
        }
    });
}

async fn process_job(
    state: &AppState,
    org_id: i64,
    assistant_id: i64,
    document_id: i64,
) -> Result<ProcessOutcome, JobError> {
    let row = state
        .store
        .get_assistant(org_id, assistant_id)
        .await?
        .ok_or(JobError::NoAssistant)?;
    let config = switchboard_assistant::deserialize_config(row.config.clone())
        .map_err(|e| JobError::Record(e.to_string()))?;
    let keys = key_sources(state, org_id).await?;
    let target = resolve::embedding_target(&config, &keys)?;
    let k = &state.knowledge;
    Ok(process_document(
        &k.base,
        &k.embedder,
        org_id,
        assistant_id,
        document_id,
        chunk_spec(&config.rag_settings),
        &target,
    )
    .await?)
}

/// What a call searches with: resolved once at call start when `rag_settings.enabled`.
#[derive(Debug)]
pub struct CallKnowledge {
    /// The call's organisation.
    pub organization_id: i64,
    /// The assistant whose documents are searched.
    pub assistant_id: i64,
    /// Where the query is embedded.
    pub target: EmbeddingTarget,
    /// `search_limit` and `similarity_threshold`.
    pub params: SearchParams,
    /// `rag_inject_before_llm`: context goes into the prompt; otherwise the tool is offered.
    pub inject: bool,
    /// `include_metadata`.
    pub include_metadata: bool,
    /// `context_window_tokens`: budget of injected context (estimated tokens).
    pub context_tokens: usize,
    /// The last question injected and its context: the LLM rounds of one reply (around tool
    /// calls) ask the same question, which is searched once.
    pub last_context: Mutex<Option<(String, Option<String>)>>,
}

/// Why a call's search failed (the call goes on without context).
#[derive(Debug, thiserror::Error)]
pub enum RetrieveError {
    /// The query could not be embedded.
    #[error(transparent)]
    Embed(#[from] EmbedError),
    /// The search failed.
    #[error(transparent)]
    Search(#[from] SearchError),
}

impl CallKnowledge {
    /// The call's knowledge settings, `None` when `rag_settings.enabled` is off.
    pub fn for_call(
        a: &AssistantConfig,
        keys: &KeySources,
        organization_id: i64,
        assistant_id: i64,
    ) -> Result<Option<CallKnowledge>, ResolveError> {
        let r = &a.rag_settings;
        if !r.enabled {
            return Ok(None);
        }
        Ok(Some(CallKnowledge {
            organization_id,
            assistant_id,
            target: resolve::embedding_target(a, keys)?,
            params: SearchParams {
                limit: r.search_limit as usize,
                min_similarity: r.similarity_threshold as f32,
            },
            inject: r.rag_inject_before_llm,
            include_metadata: r.include_metadata,
            context_tokens: r.context_window_tokens as usize,
            last_context: Mutex::new(None),
        }))
    }

    /// The best chunks for `query`: one embedding request and one search.
    pub async fn retrieve(
        &self,
        k: &Knowledge,
        query: &str,
    ) -> Result<Vec<SearchHit>, RetrieveError> {
        let vector = k.query_embedder.embed_one(&self.target, query).await?;
        Ok(k.base
            .search(
                self.organization_id,
                self.assistant_id,
                query,
                &vector,
                self.params,
            )
            .await?)
    }
}
