//! Hybrid search over one assistant's chunks: the store's keyword index and the in-memory
//! vector index, fused by reciprocal rank ([`crate::index::reciprocal_rank_fusion`]), then
//! filtered by cosine similarity and cut to the limit.
//!
//! A search costs three indexed queries (the assistant's [`KnowledgeStamp`], the keyword
//! match, the winning chunks' rows) and one scan of the in-memory vectors. The vectors are
//! loaded from the store on the first search of an assistant and kept until its stamp changes
//! (a document processed, reprocessed or deleted, on any instance) or [`KnowledgeBase::invalidate`]
//! is called.

use std::sync::Arc;

use dashmap::DashMap;
use switchboard_store::{ChunkRow, KnowledgeStamp, Store, StoreError};

use crate::index::{VectorIndex, reciprocal_rank_fusion};

/// What a search asks for (`rag_settings`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SearchParams {
    /// Most results (`search_limit`).
    pub limit: usize,
    /// Least cosine similarity of a result with the query (`similarity_threshold`, 0 to 1).
    pub min_similarity: f32,
}

/// One result.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchHit {
    /// The chunk, with its document's name and its place.
    pub chunk: ChunkRow,
    /// Cosine similarity with the query.
    pub similarity: f32,
    /// Fused rank score (higher is better); results are ordered by it.
    pub score: f64,
}

/// Why a search failed.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Candidates taken from each ranking before fusion, per requested result (at least
/// [`MIN_CANDIDATES`]).
pub const CANDIDATES_PER_RESULT: usize = 4;
/// Least candidates taken from each ranking.
pub const MIN_CANDIDATES: usize = 20;

struct Cached {
    stamp: KnowledgeStamp,
    index: Arc<VectorIndex>,
}

/// The knowledge bases of every assistant: the store and the cached vector indexes. Cheap to
/// clone (shared cache).
#[derive(Clone)]
pub struct KnowledgeBase {
    store: Store,
    cache: Arc<DashMap<(i64, i64), Cached>>,
}

impl std::fmt::Debug for KnowledgeBase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KnowledgeBase")
            .field("cached_assistants", &self.cache.len())
            .finish_non_exhaustive()
    }
}

impl KnowledgeBase {
    /// A knowledge base over `store`, nothing cached yet.
    pub fn new(store: Store) -> KnowledgeBase {
        KnowledgeBase {
            store,
            cache: Arc::new(DashMap::new()),
        }
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Drops the cached vectors of an assistant (its documents changed here).
    pub fn invalidate(&self, org_id: i64, assistant_id: i64) {
        self.cache.remove(&(org_id, assistant_id));
    }

    /// The assistant's vector index: the cached one while the store's stamp is unchanged, else
    /// loaded anew.
    pub async fn index(
        &self,
        org_id: i64,
        assistant_id: i64,
    ) -> Result<Arc<VectorIndex>, SearchError> {
        let stamp = self.store.knowledge_stamp(org_id, assistant_id).await?;
        if let Some(c) = self.cache.get(&(org_id, assistant_id))
            && c.stamp == stamp
        {
            return Ok(Arc::clone(&c.index));
        }
        let vectors = self.store.chunk_vectors(org_id, assistant_id).await?;
        let index = Arc::new(VectorIndex::build(vectors));
        self.cache.insert(
            (org_id, assistant_id),
            Cached {
                stamp,
                index: Arc::clone(&index),
            },
        );
        Ok(index)
    }

    /// The assistant's best chunks for a query given as text (for the keyword index) and as
    /// its embedding (for the vectors): fused by rank, keeping only chunks whose cosine
    /// similarity reaches `params.min_similarity`, at most `params.limit`, best first.
    pub async fn search(
        &self,
        org_id: i64,
        assistant_id: i64,
        query_text: &str,
        query_vector: &[f32],
        params: SearchParams,
    ) -> Result<Vec<SearchHit>, SearchError> {
        if params.limit == 0 {
            return Ok(Vec::new());
        }
        let index = self.index(org_id, assistant_id).await?;
        if index.is_empty() {
            return Ok(Vec::new());
        }
        let candidates = (params.limit * CANDIDATES_PER_RESULT).max(MIN_CANDIDATES);
        let by_vector: Vec<i64> = index
            .nearest(query_vector, candidates, params.min_similarity)
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        let by_keyword = self
            .store
            .keyword_search(org_id, assistant_id, query_text, candidates as i64)
            .await?;
        let mut picked: Vec<(i64, f32, f64)> = Vec::with_capacity(params.limit);
        for (id, score) in reciprocal_rank_fusion(&[&by_vector, &by_keyword]) {
            let Some(similarity) = index.similarity(id, query_vector) else {
                continue;
            };
            if similarity >= params.min_similarity {
                picked.push((id, similarity, score));
                if picked.len() == params.limit {
                    break;
                }
            }
        }
        let ids: Vec<i64> = picked.iter().map(|p| p.0).collect();
        let mut rows = self.store.chunks_by_ids(org_id, assistant_id, &ids).await?;
        let mut hits = Vec::with_capacity(picked.len());
        for (id, similarity, score) in picked {
            // A chunk deleted since the index was loaded is simply left out.
            if let Some(pos) = rows.iter().position(|r| r.id == id) {
                hits.push(SearchHit {
                    chunk: rows.swap_remove(pos),
                    similarity,
                    score,
                });
            }
        }
        Ok(hits)
    }
}
