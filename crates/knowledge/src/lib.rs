//! The knowledge base of an assistant (`rag_settings`): what happens between an uploaded file
//! and the excerpts an LLM sees.
//!
//! - [`format`] and [`extract`]: which files are accepted (PDF, DOCX, TXT, Markdown, HTML, CSV)
//!   and their text, by page or section, with pure-Rust parsers (no shelling out).
//! - [`chunk`]: splitting that text per `chunking_strategy` (`recursive`, `sentence`, `fixed`)
//!   into chunks of `chunk_size` characters overlapping by `chunk_overlap`, with metadata.
//! - [`embed`]: the OpenAI-compatible embeddings API (`POST {api_root}/embeddings`), batched
//!   and retried, through the tenant outbound policy.
//! - [`process`]: one document from `pending` to `ready` (or `failed`), run by a background
//!   job, never on a call.
//! - [`index`], [`keyword`] and [`search`]: hybrid search: an in-memory BM25 keyword index and
//!   cosine index per assistant (loaded from the stored chunks, reloaded when the assistant's
//!   documents change, cached within a cap in bytes), fused by reciprocal rank and filtered by
//!   cosine similarity.
//! - [`context`]: the retrieved chunks as a prompt section within a token budget, or as the
//!   `searchKnowledgeBase` tool's result.
//!
//! Pure functions (extraction, chunking, the index, fusion, rendering) do no I/O; the store is
//! the only persistence and every query is keyed by organisation.

pub mod chunk;
pub mod context;
pub mod embed;
pub mod extract;
pub mod format;
pub mod index;
pub mod keyword;
pub mod pdf_limits;
pub mod process;
pub mod search;

pub use chunk::{ChunkSpec, ChunkingStrategy, TextChunk};
pub use embed::{EmbedError, Embedder, EmbeddingTarget};
pub use extract::{ExtractError, Section};
pub use format::DocumentFormat;
pub use index::VectorIndex;
pub use keyword::KeywordIndex;
pub use process::{ProcessError, ProcessOutcome, process_document};
pub use search::{
    ChunkIndex, DEFAULT_CACHE_MAX_BYTES, KnowledgeBase, SearchError, SearchHit, SearchParams,
};
