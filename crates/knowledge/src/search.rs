//! Hybrid search over one assistant's chunks: the in-memory keyword (BM25,
//! [`crate::keyword`]) and vector (cosine, [`crate::index`]) rankings, fused by reciprocal
//! rank ([`crate::index::reciprocal_rank_fusion`]), then filtered by cosine similarity and cut
//! to the limit.
//!
//! A search costs two indexed queries (the assistant's [`KnowledgeStamp`], the winning chunks'
//! rows), one pass over the posting lists of the query's words and one scan of the vectors.
//! Both indexes are loaded from the store on the first search of an assistant
//! ([`Store::indexed_chunks`]) and kept until its stamp changes (a document processed,
//! reprocessed or deleted, on any instance) or [`KnowledgeBase::invalidate`] is called, within
//! a cap in bytes over all assistants (least recently searched dropped first).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use switchboard_store::{ChunkRow, ChunkVector, IndexedChunk, KnowledgeStamp, Store, StoreError};

use crate::index::{VectorIndex, reciprocal_rank_fusion};
use crate::keyword::KeywordIndex;

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

/// Bytes of cached indexes kept by [`KnowledgeBase::new`] (`knowledge.cache_max_bytes` in the
/// server): 512 MiB, about 80k chunks of 1536-float embeddings.
pub const DEFAULT_CACHE_MAX_BYTES: usize = 512 * 1024 * 1024;

/// The search indexes of one assistant: its chunks' vectors and words, loaded together.
#[derive(Debug, Default)]
pub struct ChunkIndex {
    /// Cosine ranking over the normalised embeddings.
    pub vectors: VectorIndex,
    /// BM25 ranking over the chunks' words.
    pub keywords: KeywordIndex,
}

impl ChunkIndex {
    /// The indexes of `chunks` (the store's [`IndexedChunk`]s of one assistant).
    pub fn build(chunks: Vec<IndexedChunk>) -> ChunkIndex {
        let keywords = KeywordIndex::build(chunks.iter().map(|c| (c.id, c.content.as_str())));
        let vectors = VectorIndex::build(
            chunks
                .into_iter()
                .map(|c| ChunkVector {
                    id: c.id,
                    embedding: c.embedding,
                })
                .collect(),
        );
        ChunkIndex { vectors, keywords }
    }

    /// Bytes both indexes take (what the cache's cap counts).
    pub fn memory_bytes(&self) -> usize {
        self.vectors.memory_bytes() + self.keywords.memory_bytes()
    }
}

struct Cached {
    stamp: KnowledgeStamp,
    index: Arc<ChunkIndex>,
    bytes: usize,
    /// [`Cache::clock`] at its last use: the smallest is evicted first.
    last_used: u64,
}

/// The cached indexes, least recently used evicted first once their bytes pass `max_bytes`.
#[derive(Default)]
struct Cache {
    entries: HashMap<(i64, i64), Cached>,
    bytes: usize,
    clock: u64,
}

impl Cache {
    fn get(&mut self, key: (i64, i64), stamp: KnowledgeStamp) -> Option<Arc<ChunkIndex>> {
        self.clock += 1;
        let now = self.clock;
        let c = self.entries.get_mut(&key).filter(|c| c.stamp == stamp)?;
        c.last_used = now;
        Some(Arc::clone(&c.index))
    }

    fn remove(&mut self, key: (i64, i64)) {
        if let Some(c) = self.entries.remove(&key) {
            self.bytes -= c.bytes;
        }
    }

    /// Keeps `index` unless it alone is larger than `max_bytes`, evicting the least recently
    /// used indexes until the total fits.
    fn insert(
        &mut self,
        key: (i64, i64),
        stamp: KnowledgeStamp,
        index: &Arc<ChunkIndex>,
        max_bytes: usize,
    ) {
        self.remove(key);
        let bytes = index.memory_bytes();
        if bytes > max_bytes {
            tracing::warn!(
                org_id = key.0,
                assistant_id = key.1,
                bytes,
                max_bytes,
                "knowledge index larger than knowledge.cache_max_bytes: not cached, every search reloads it"
            );
            return;
        }
        while self.bytes + bytes > max_bytes {
            let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, c)| c.last_used)
                .map(|(k, _)| *k)
            else {
                break;
            };
            self.remove(oldest);
        }
        self.clock += 1;
        self.entries.insert(
            key,
            Cached {
                stamp,
                index: Arc::clone(index),
                bytes,
                last_used: self.clock,
            },
        );
        self.bytes += bytes;
    }
}

/// The knowledge bases of every assistant: the store and the cached search indexes, at most
/// `max_bytes` of them. Cheap to clone (shared cache).
#[derive(Clone)]
pub struct KnowledgeBase {
    store: Store,
    cache: Arc<Mutex<Cache>>,
    max_bytes: usize,
    instance_id: Arc<str>,
    heartbeat: std::time::Duration,
}

impl std::fmt::Debug for KnowledgeBase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KnowledgeBase")
            .field("cached_bytes", &self.cached_bytes())
            .field("max_bytes", &self.max_bytes)
            .finish_non_exhaustive()
    }
}

impl KnowledgeBase {
    /// A knowledge base over `store`, nothing cached yet, at most
    /// [`DEFAULT_CACHE_MAX_BYTES`] cached.
    pub fn new(store: Store) -> KnowledgeBase {
        KnowledgeBase::with_cache_max_bytes(store, DEFAULT_CACHE_MAX_BYTES)
    }

    /// A knowledge base over `store` caching at most `max_bytes` of indexes (least recently
    /// searched assistants are dropped first; an assistant larger than the cap alone is loaded
    /// for each search and never kept).
    pub fn with_cache_max_bytes(store: Store, max_bytes: usize) -> KnowledgeBase {
        KnowledgeBase {
            store,
            cache: Arc::new(Mutex::new(Cache::default())),
            max_bytes,
            instance_id: Arc::from(""),
            heartbeat: crate::process::HEARTBEAT_INTERVAL,
        }
    }

    /// The same knowledge base, recording `instance_id` (`server.instance_id`) on the
    /// documents it processes, so that instance can put them back to `pending` when it
    /// restarts after a crash ([`Store::requeue_processing_documents`]).
    pub fn with_instance_id(mut self, instance_id: &str) -> KnowledgeBase {
        self.instance_id = Arc::from(instance_id);
        self
    }

    /// The same knowledge base, renewing its processing claims every `interval` instead of
    /// [`HEARTBEAT_INTERVAL`](crate::process::HEARTBEAT_INTERVAL). Keep it well under
    /// [`PROCESSING_LEASE`](crate::process::PROCESSING_LEASE).
    pub fn with_processing_heartbeat(mut self, interval: std::time::Duration) -> KnowledgeBase {
        self.heartbeat = interval;
        self
    }

    /// How often a processing job of this knowledge base renews its claim.
    pub fn processing_heartbeat(&self) -> std::time::Duration {
        self.heartbeat
    }

    /// The instance id recorded on the documents this process claims.
    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Bytes of indexes cached now (at most the cap).
    pub fn cached_bytes(&self) -> usize {
        self.cache.lock().map_or(0, |c| c.bytes)
    }

    /// Assistants whose indexes are cached now.
    pub fn cached_assistants(&self) -> usize {
        self.cache.lock().map_or(0, |c| c.entries.len())
    }

    /// Whether the assistant's indexes are cached now (whatever their stamp).
    pub fn is_cached(&self, org_id: i64, assistant_id: i64) -> bool {
        self.cache
            .lock()
            .is_ok_and(|c| c.entries.contains_key(&(org_id, assistant_id)))
    }

    /// Drops the cached indexes of an assistant (its documents changed here).
    pub fn invalidate(&self, org_id: i64, assistant_id: i64) {
        if let Ok(mut c) = self.cache.lock() {
            c.remove((org_id, assistant_id));
        }
    }

    /// The assistant's search indexes: the cached ones while the store's stamp is unchanged,
    /// else loaded anew (and cached within the cap).
    pub async fn index(
        &self,
        org_id: i64,
        assistant_id: i64,
    ) -> Result<Arc<ChunkIndex>, SearchError> {
        let key = (org_id, assistant_id);
        let stamp = self.store.knowledge_stamp(org_id, assistant_id).await?;
        if let Some(index) = self.cache.lock().ok().and_then(|mut c| c.get(key, stamp)) {
            return Ok(index);
        }
        let chunks = self.store.indexed_chunks(org_id, assistant_id).await?;
        let index = Arc::new(ChunkIndex::build(chunks));
        if let Ok(mut c) = self.cache.lock() {
            c.insert(key, stamp, &index, self.max_bytes);
        }
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
        let Some(q) = index.vectors.query(query_vector) else {
            return Ok(Vec::new());
        };
        let candidates = (params.limit * CANDIDATES_PER_RESULT).max(MIN_CANDIDATES);
        let by_vector: Vec<i64> = index
            .vectors
            .nearest_to(&q, candidates, params.min_similarity)
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        let by_keyword = index.keywords.search(query_text, candidates);
        let mut picked: Vec<(i64, f32, f64)> = Vec::with_capacity(params.limit);
        for (id, score) in reciprocal_rank_fusion(&[&by_vector, &by_keyword]) {
            let Some(similarity) = index.vectors.similarity_to(id, &q) else {
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
