//! The in-memory keyword index of one assistant: BM25 over its chunks' words, built with the
//! vector index from the same load and kept in the same cache.
//!
//! Why not the store's full-text index: SQLite FTS5 (`bm25()`) and PostgreSQL (`ts_rank`) score
//! every chunk that matches any query word before they can return the best few, and a
//! question's common words match most chunks of an assistant (and, in the shared FTS5 table, of
//! every assistant in the database). That cost grows with the corpus: 75 ms p99 at 10k chunks
//! on this machine, past the 20 ms budget of the whole search
//! (docs/PERFORMANCE.md#knowledge-base-search), so migration 0013 dropped that index. Here a
//! query costs one pass over the posting lists of its words, summed into a per-thread score
//! buffer that is reused between queries.
//!
//! Words are lower-cased runs of letters and digits, English stop words left out and a plural
//! `s` folded (`refunds` finds `refund`): the same light normalisation for chunks and queries.

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use crate::index::Ranked;

/// Most distinct words of a query the keyword ranking uses (a bound on the posting lists one
/// search reads).
pub const MAX_QUERY_TERMS: usize = 32;

/// BM25 term-frequency saturation (the usual value).
const BM25_K1: f32 = 1.2;
/// BM25 length normalisation (the usual value).
const BM25_B: f32 = 0.75;

/// English words too common to say anything about a chunk (PostgreSQL's `english` configuration
/// drops the same kind of words).
const STOP_WORDS: [&str; 64] = [
    "a", "about", "an", "and", "are", "as", "at", "be", "been", "but", "by", "can", "could", "do",
    "does", "for", "from", "had", "has", "have", "how", "i", "if", "in", "into", "is", "it", "its",
    "me", "my", "no", "not", "of", "on", "or", "our", "so", "than", "that", "the", "their", "them",
    "then", "there", "these", "they", "this", "to", "us", "was", "we", "were", "what", "when",
    "where", "which", "who", "why", "will", "with", "would", "you", "your", "yours",
];

/// The index words of `text`, in order, repeats kept.
pub fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .filter(|w| !STOP_WORDS.contains(&w.as_str()))
        .map(|w| match w.strip_suffix('s') {
            Some(stem) if w.chars().count() > 3 && !stem.ends_with('s') => stem.to_owned(),
            _ => w,
        })
}

/// One chunk's occurrences of a word.
#[derive(Debug, Clone, Copy)]
struct Posting {
    /// The chunk's row (position in `ids`).
    row: u32,
    /// How often the word occurs in it.
    count: u32,
}

/// BM25 keyword index of one assistant's chunks, with their ids in ascending order.
#[derive(Debug, Clone, Default)]
pub struct KeywordIndex {
    ids: Vec<i64>,
    /// Words per chunk, by row.
    lengths: Vec<u32>,
    average_length: f32,
    postings: HashMap<String, Vec<Posting>>,
}

thread_local! {
    /// Scores of one query by row, reused by the next query on this thread (no allocation of
    /// a corpus-sized array per search).
    static SCORES: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

impl KeywordIndex {
    /// The index of `chunks` (id and text).
    pub fn build<'a>(chunks: impl IntoIterator<Item = (i64, &'a str)>) -> KeywordIndex {
        let mut chunks: Vec<(i64, &str)> = chunks.into_iter().collect();
        chunks.sort_by_key(|c| c.0);
        let mut index = KeywordIndex {
            ids: Vec::with_capacity(chunks.len()),
            lengths: Vec::with_capacity(chunks.len()),
            average_length: 0.0,
            postings: HashMap::new(),
        };
        let mut counts: HashMap<String, u32> = HashMap::new();
        let mut total: u64 = 0;
        for (row, (id, text)) in chunks.into_iter().enumerate() {
            counts.clear();
            let mut length = 0u32;
            for w in words(text) {
                *counts.entry(w).or_default() += 1;
                length = length.saturating_add(1);
            }
            for (w, count) in counts.drain() {
                index.postings.entry(w).or_default().push(Posting {
                    row: row as u32,
                    count,
                });
            }
            index.ids.push(id);
            index.lengths.push(length);
            total += u64::from(length);
        }
        if !index.ids.is_empty() {
            index.average_length = (total as f64 / index.ids.len() as f64).max(1.0) as f32;
        }
        index
    }

    /// Chunks in the index.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether it holds no chunk.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Bytes it takes, approximately (ids, lengths, postings and words).
    pub fn memory_bytes(&self) -> usize {
        let per_word = std::mem::size_of::<String>() + std::mem::size_of::<Vec<Posting>>() + 8;
        self.ids.len() * (8 + 4)
            + self
                .postings
                .iter()
                .map(|(w, p)| w.len() + per_word + p.capacity() * std::mem::size_of::<Posting>())
                .sum::<usize>()
    }

    /// The `k` chunk ids that best match the words of `query` (BM25, best first, ties by id);
    /// only chunks holding at least one of its first [`MAX_QUERY_TERMS`] distinct words.
    pub fn search(&self, query: &str, k: usize) -> Vec<i64> {
        let mut terms: Vec<String> = Vec::new();
        for w in words(query) {
            if !terms.contains(&w) {
                terms.push(w);
                if terms.len() == MAX_QUERY_TERMS {
                    break;
                }
            }
        }
        let lists: Vec<&Vec<Posting>> = terms.iter().filter_map(|t| self.postings.get(t)).collect();
        if k == 0 || lists.is_empty() {
            return Vec::new();
        }
        let n = self.ids.len() as f32;
        SCORES.with(|cell| {
            let mut scores = cell.borrow_mut();
            scores.clear();
            scores.resize(self.ids.len(), 0.0);
            for list in &lists {
                let df = list.len() as f32;
                // Lucene's form: always positive, so a word in most chunks still counts a little.
                let idf = (1.0 + (n - df + 0.5) / (df + 0.5)).ln();
                for p in list.iter() {
                    let tf = p.count as f32;
                    let len = self.lengths[p.row as usize] as f32;
                    let norm = BM25_K1 * (1.0 - BM25_B + BM25_B * len / self.average_length);
                    scores[p.row as usize] += idf * tf * (BM25_K1 + 1.0) / (tf + norm);
                }
            }
            let mut best: BinaryHeap<Reverse<Ranked>> = BinaryHeap::with_capacity(k + 1);
            for (row, &score) in scores.iter().enumerate() {
                if score > 0.0 {
                    let r = Ranked {
                        score,
                        id: self.ids[row],
                    };
                    if best.len() < k {
                        best.push(Reverse(r));
                    } else if best.peek().is_some_and(|worst| r > worst.0) {
                        best.pop();
                        best.push(Reverse(r));
                    }
                }
            }
            let mut out: Vec<Ranked> = best.into_iter().map(|r| r.0).collect();
            out.sort_by(|a, b| b.cmp(a));
            out.into_iter().map(|r| r.id).collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_drop_stop_words_and_fold_plurals() {
        let w: Vec<String> = words("How do I get REFUNDS for my boss? Bus, 3 cats.").collect();
        assert_eq!(w, ["get", "refund", "boss", "bus", "3", "cat"]);
    }

    #[test]
    fn ranks_by_bm25_and_bounds_the_result() {
        let idx = KeywordIndex::build([
            (7, "parking is free in the garage behind the building"),
            (3, "refunds are paid to the card within five days"),
            (
                5,
                "a refund for a refund for a refund: ask the desk about the refund",
            ),
            (9, "the clinic is open from nine to five"),
        ]);
        assert_eq!(idx.len(), 4);
        // More occurrences rank first; a chunk without the word is not a candidate.
        assert_eq!(idx.search("refund", 10), [5, 3]);
        assert_eq!(idx.search("How do I get a refund?", 1), [5]);
        // A rare word outweighs a common one; for the same word a shorter chunk ranks first.
        assert_eq!(idx.search("five garage", 10), [7, 9, 3]);
        assert!(idx.search("refund", 0).is_empty());
        assert!(idx.search("the and of", 10).is_empty());
        assert!(idx.search("zebra", 10).is_empty());
        assert!(KeywordIndex::build([]).search("refund", 3).is_empty());
        assert!(idx.memory_bytes() > 0);
    }

    #[test]
    fn equal_scores_rank_by_id() {
        let idx = KeywordIndex::build([(4, "router"), (2, "router"), (8, "router")]);
        assert_eq!(idx.search("routers", 2), [2, 4]);
    }
}
