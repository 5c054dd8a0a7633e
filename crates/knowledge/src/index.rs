//! The in-memory vector index of one assistant, and reciprocal-rank fusion.
//!
//! Vectors are L2-normalised once when the index is built and kept in one contiguous `f32`
//! array, so a query's cosine similarity with every chunk is one dot product per chunk over
//! memory read in order (an exhaustive scan: exact, and fast enough for the sizes measured in
//! docs/PERFORMANCE.md).

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};

use switchboard_store::ChunkVector;

/// Chunk vectors of one assistant, normalised, with their chunk ids in ascending order.
#[derive(Debug, Clone, Default)]
pub struct VectorIndex {
    dims: usize,
    ids: Vec<i64>,
    data: Vec<f32>,
}

/// A vector scaled to unit length; `None` for a zero (or non-finite) vector.
pub fn normalised(v: &[f32]) -> Option<Vec<f32>> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    (norm.is_finite() && norm > 0.0).then(|| v.iter().map(|x| x / norm).collect())
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    // Eight independent sums let the compiler keep them in vector registers.
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for ((s, a), b) in acc.iter_mut().zip(x).zip(y) {
            *s += a * b;
        }
    }
    let tail: f32 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

impl VectorIndex {
    /// The index of `vectors`. Its size is the first vector's; vectors of another size (made
    /// with another model) and zero vectors are left out.
    pub fn build(mut vectors: Vec<ChunkVector>) -> VectorIndex {
        vectors.sort_by_key(|v| v.id);
        let dims = vectors.first().map_or(0, |v| v.embedding.len());
        let mut ids = Vec::with_capacity(vectors.len());
        let mut data = Vec::with_capacity(vectors.len() * dims);
        let mut skipped = 0usize;
        for v in vectors {
            match normalised(&v.embedding).filter(|n| n.len() == dims) {
                Some(n) => {
                    ids.push(v.id);
                    data.extend_from_slice(&n);
                }
                None => skipped += 1,
            }
        }
        if skipped > 0 {
            tracing::warn!(
                skipped,
                dims,
                "chunk vectors left out of the index (size or zero)"
            );
        }
        VectorIndex { dims, ids, data }
    }

    /// Vectors in the index.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether it holds no vector.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The size of its vectors (0 when empty).
    pub fn dims(&self) -> usize {
        self.dims
    }

    /// Bytes its vectors take.
    pub fn memory_bytes(&self) -> usize {
        self.data.len() * 4 + self.ids.len() * 8
    }

    /// `query` scaled to unit length, `None` when its size differs from the index's (or it is
    /// zero): what [`VectorIndex::nearest_to`] and [`VectorIndex::similarity_to`] take, so a
    /// search normalises its query once.
    pub fn query(&self, query: &[f32]) -> Option<Vec<f32>> {
        normalised(query).filter(|q| q.len() == self.dims)
    }

    /// The `k` chunks most similar to `query` (cosine, best first, ties by id) among those at
    /// least `min_similarity`. Empty when the query's size differs from the index's.
    pub fn nearest(&self, query: &[f32], k: usize, min_similarity: f32) -> Vec<(i64, f32)> {
        match self.query(query) {
            Some(q) => self.nearest_to(&q, k, min_similarity),
            None => Vec::new(),
        }
    }

    /// [`VectorIndex::nearest`] for a query already made by [`VectorIndex::query`]: one pass
    /// over the vectors keeping the best `k` in a bounded heap (no per-chunk allocation).
    pub fn nearest_to(&self, q: &[f32], k: usize, min_similarity: f32) -> Vec<(i64, f32)> {
        if k == 0 || q.len() != self.dims || self.dims == 0 {
            return Vec::new();
        }
        let mut best: BinaryHeap<Reverse<Ranked>> = BinaryHeap::with_capacity(k + 1);
        for (v, id) in self.data.chunks_exact(self.dims).zip(&self.ids) {
            let score = dot(v, q);
            if score.is_nan() || score < min_similarity {
                continue;
            }
            let r = Ranked { score, id: *id };
            if best.len() < k {
                best.push(Reverse(r));
            } else if best.peek().is_some_and(|worst| r > worst.0) {
                best.pop();
                best.push(Reverse(r));
            }
        }
        let mut hits: Vec<Ranked> = best.into_iter().map(|r| r.0).collect();
        hits.sort_by(|a, b| b.cmp(a));
        hits.into_iter().map(|r| (r.id, r.score)).collect()
    }

    /// The cosine similarity of chunk `id` with `query`; `None` when the chunk is not indexed
    /// or the sizes differ.
    pub fn similarity(&self, id: i64, query: &[f32]) -> Option<f32> {
        self.similarity_to(id, &self.query(query)?)
    }

    /// [`VectorIndex::similarity`] for a query already made by [`VectorIndex::query`].
    pub fn similarity_to(&self, id: i64, q: &[f32]) -> Option<f32> {
        if q.len() != self.dims {
            return None;
        }
        let row = self.ids.binary_search(&id).ok()?;
        Some(dot(&self.data[row * self.dims..(row + 1) * self.dims], q))
    }
}

/// A chunk id with its score, ordered from worst to best: by score, then the lower id as the
/// better (so ties rank by id). Scores are compared with `f32::total_cmp`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ranked {
    pub(crate) score: f32,
    pub(crate) id: i64,
}

impl Ord for Ranked {
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then(other.id.cmp(&self.id))
    }
}

impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Ranked {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Ranked {}

/// The constant of reciprocal-rank fusion: a rank r in a list adds `1 / (RRF_K + r)` (r from
/// 1), the value of Cormack et al. that damps the weight of the very first ranks.
pub const RRF_K: f64 = 60.0;

/// Reciprocal-rank fusion of ranked lists of ids: each id scores the sum over the lists it is
/// in of `1 / (RRF_K + rank)`; best first, ties by id.
pub fn reciprocal_rank_fusion(lists: &[&[i64]]) -> Vec<(i64, f64)> {
    let mut scores: HashMap<i64, f64> = HashMap::new();
    for list in lists {
        for (rank, id) in list.iter().enumerate() {
            *scores.entry(*id).or_default() += 1.0 / (RRF_K + rank as f64 + 1.0);
        }
    }
    let mut fused: Vec<(i64, f64)> = scores.into_iter().collect();
    fused.sort_by(|a, b| {
        b.1.partial_cmp(&a.1)
            .unwrap_or(Ordering::Equal)
            .then(a.0.cmp(&b.0))
    });
    fused
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(id: i64, e: &[f32]) -> ChunkVector {
        ChunkVector {
            id,
            embedding: e.to_vec(),
        }
    }

    #[test]
    fn nearest_is_cosine_ranked_and_thresholded() {
        let idx = VectorIndex::build(vec![
            v(3, &[0.0, 1.0]),
            v(1, &[1.0, 0.0]),
            v(2, &[2.0, 2.0]),
            v(4, &[0.0, 0.0]),
            v(5, &[1.0, 0.0, 0.0]),
        ]);
        assert_eq!((idx.len(), idx.dims()), (3, 2));
        let hits = idx.nearest(&[10.0, 0.0], 10, 0.0);
        let ids: Vec<i64> = hits.iter().map(|h| h.0).collect();
        assert_eq!(ids, [1, 2, 3]);
        assert!((hits[0].1 - 1.0).abs() < 1e-6);
        assert!((hits[1].1 - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-6);
        // Threshold: only cosine >= 0.7 (0.7071 passes, 0 does not); k limits.
        assert_eq!(idx.nearest(&[1.0, 0.0], 10, 0.7).len(), 2);
        assert_eq!(idx.nearest(&[1.0, 0.0], 10, 0.71).len(), 1);
        assert_eq!(idx.nearest(&[1.0, 0.0], 1, 0.0), vec![(1, 1.0)]);
        assert!(idx.nearest(&[1.0, 0.0], 0, 0.0).is_empty());
        assert!(idx.nearest(&[1.0, 0.0, 0.0], 10, 0.0).is_empty());
        assert!(idx.nearest(&[0.0, 0.0], 10, 0.0).is_empty());
        assert!((idx.similarity(3, &[0.0, 5.0]).unwrap() - 1.0).abs() < 1e-6);
        assert_eq!(idx.similarity(4, &[0.0, 5.0]), None);
    }

    #[test]
    fn long_vectors_match_a_plain_dot_product() {
        let a: Vec<f32> = (0..1537).map(|i| (i as f32).sin()).collect();
        let b: Vec<f32> = (0..1537).map(|i| (i as f32 * 0.5).cos()).collect();
        let plain: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!((dot(&a, &b) - plain).abs() < 1e-3);
    }

    #[test]
    fn fusion_rewards_agreement() {
        let fused = reciprocal_rank_fusion(&[&[1, 2, 3], &[3, 1]]);
        let ids: Vec<i64> = fused.iter().map(|f| f.0).collect();
        assert_eq!(ids, [1, 3, 2]);
        assert!((fused[0].1 - (1.0 / 61.0 + 1.0 / 62.0)).abs() < 1e-12);
        assert!(reciprocal_rank_fusion(&[]).is_empty());
    }
}
