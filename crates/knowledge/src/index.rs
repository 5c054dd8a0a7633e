//! The in-memory vector index of one assistant, and reciprocal-rank fusion.
//!
//! Vectors are L2-normalised once when the index is built and kept int8-quantised in one
//! contiguous array (one byte per dimension and a scale per vector: a quarter of the f32
//! memory, so 100k chunks of 1536 dimensions take 154 MB and fit the cache). A query is
//! quantised the same way, and its approximate cosine with every chunk is one integer dot
//! product per chunk over memory read in order (an exhaustive scan). That scan only makes a
//! shortlist ([`VectorIndex::shortlist`]); the search then ranks the shortlist by the exact f32
//! cosine of the stored embeddings ([`exact_cosine`]), so results are those of an exact search
//! whenever the exact best candidates are among the shortlisted ([`SHORTLIST_FACTOR`] times
//! as many), which the bench checks (docs/PERFORMANCE.md#knowledge-base-search).

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};

use switchboard_store::ChunkVector;

/// How many more chunks the approximate (int8) scan shortlists than the search ranks: the
/// margin for quantisation error (about 1e-3 of cosine) before the exact re-rank.
pub const SHORTLIST_FACTOR: usize = 4;

/// Chunk vectors of one assistant, normalised and int8-quantised, with their chunk ids in
/// ascending order.
#[derive(Debug, Clone, Default)]
pub struct VectorIndex {
    dims: usize,
    ids: Vec<i64>,
    /// `dims` codes per vector: the normalised vector divided by its scale, rounded.
    codes: Vec<i8>,
    /// Per vector: its largest absolute component / 127 (a code times it is the component).
    scales: Vec<f32>,
}

/// A query made for [`VectorIndex::shortlist`]: unit length, and quantised like the vectors.
#[derive(Debug, Clone)]
pub struct IndexQuery {
    /// The query scaled to unit length (for [`exact_cosine`]).
    pub unit: Vec<f32>,
    codes: Vec<i8>,
    scale: f32,
}

/// A vector scaled to unit length; `None` for a zero (or non-finite) vector.
pub fn normalised(v: &[f32]) -> Option<Vec<f32>> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    (norm.is_finite() && norm > 0.0).then(|| v.iter().map(|x| x / norm).collect())
}

/// The int8 codes of `v` and their scale (its largest absolute component / 127; 0 for a zero
/// vector, whose codes are all 0).
fn quantised(v: &[f32]) -> (Vec<i8>, f32) {
    let max = v.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    if max == 0.0 || !max.is_finite() {
        return (vec![0; v.len()], 0.0);
    }
    let scale = max / 127.0;
    let codes = v.iter().map(|x| (x / scale).round() as i8).collect();
    (codes, scale)
}

/// The cosine similarity of a stored embedding with a unit-length query: exact (f32), what
/// results are ranked, thresholded and reported by. `None` when the sizes differ or the
/// embedding is zero.
pub fn exact_cosine(embedding: &[f32], unit_query: &[f32]) -> Option<f32> {
    if embedding.len() != unit_query.len() {
        return None;
    }
    normalised(embedding).map(|e| dot(&e, unit_query))
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

/// The integer dot product of two code vectors (exact: 1536 products of at most 127² fit an
/// i32 many times over).
fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    // Sixteen independent sums of widened products: the compiler turns them into packed
    // multiply-adds.
    let mut acc = [0i32; 16];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for ((s, a), b) in acc.iter_mut().zip(x).zip(y) {
            *s += i32::from(*a) * i32::from(*b);
        }
    }
    let tail: i32 = ra
        .iter()
        .zip(rb)
        .map(|(x, y)| i32::from(*x) * i32::from(*y))
        .sum();
    acc.iter().sum::<i32>() + tail
}

impl VectorIndex {
    /// The index of `vectors`. Its size is the first vector's; vectors of another size (made
    /// with another model) and zero vectors are left out.
    pub fn build(mut vectors: Vec<ChunkVector>) -> VectorIndex {
        vectors.sort_by_key(|v| v.id);
        let dims = vectors.first().map_or(0, |v| v.embedding.len());
        let mut ids = Vec::with_capacity(vectors.len());
        let mut codes = Vec::with_capacity(vectors.len() * dims);
        let mut scales = Vec::with_capacity(vectors.len());
        let mut skipped = 0usize;
        for v in vectors {
            match normalised(&v.embedding).filter(|n| n.len() == dims) {
                Some(n) => {
                    let (c, scale) = quantised(&n);
                    ids.push(v.id);
                    codes.extend_from_slice(&c);
                    scales.push(scale);
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
        VectorIndex {
            dims,
            ids,
            codes,
            scales,
        }
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

    /// Bytes its vectors take (codes, scales, ids).
    pub fn memory_bytes(&self) -> usize {
        self.codes.len() + self.scales.len() * 4 + self.ids.len() * 8
    }

    /// `query` made for [`VectorIndex::shortlist`] (unit length, quantised); `None` when its
    /// size differs from the index's (or it is zero). A search makes it once.
    pub fn query(&self, query: &[f32]) -> Option<IndexQuery> {
        let unit = normalised(query).filter(|q| q.len() == self.dims)?;
        let (codes, scale) = quantised(&unit);
        Some(IndexQuery { unit, codes, scale })
    }

    /// The `k` chunks whose approximate (int8) cosine with `query` is highest, best first,
    /// ties by id, with that approximate cosine: one pass over the codes keeping the best `k`
    /// in a bounded heap (no per-chunk allocation). Candidates for an exact re-rank, not a
    /// ranking: shortlist [`SHORTLIST_FACTOR`] times the chunks wanted.
    pub fn shortlist(&self, query: &IndexQuery, k: usize) -> Vec<(i64, f32)> {
        if k == 0 || query.codes.len() != self.dims || self.dims == 0 {
            return Vec::new();
        }
        let mut best: BinaryHeap<Reverse<Ranked>> = BinaryHeap::with_capacity(k + 1);
        let rows = self.codes.chunks_exact(self.dims);
        for ((v, scale), id) in rows.zip(&self.scales).zip(&self.ids) {
            let score = dot_i8(v, &query.codes) as f32 * scale * query.scale;
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
    fn shortlist_is_cosine_ranked() {
        let idx = VectorIndex::build(vec![
            v(3, &[0.0, 1.0]),
            v(1, &[1.0, 0.0]),
            v(2, &[2.0, 2.0]),
            v(4, &[0.0, 0.0]),
            v(5, &[1.0, 0.0, 0.0]),
        ]);
        assert_eq!((idx.len(), idx.dims()), (3, 2));
        let q = idx.query(&[10.0, 0.0]).expect("query");
        let hits = idx.shortlist(&q, 10);
        let ids: Vec<i64> = hits.iter().map(|h| h.0).collect();
        assert_eq!(ids, [1, 2, 3]);
        assert!((hits[0].1 - 1.0).abs() < 1e-2);
        assert!((hits[1].1 - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-2);
        assert_eq!(idx.shortlist(&q, 1).len(), 1);
        assert!(idx.shortlist(&q, 0).is_empty());
        assert!(idx.query(&[1.0, 0.0, 0.0]).is_none());
        assert!(idx.query(&[0.0, 0.0]).is_none());
        assert_eq!(idx.memory_bytes(), 3 * 2 + 3 * 4 + 3 * 8);
        // The exact cosine is the f32 one.
        let e = exact_cosine(&[2.0, 2.0], &q.unit).expect("cosine");
        assert!((e - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-6);
        assert_eq!(exact_cosine(&[0.0, 0.0], &q.unit), None);
        assert_eq!(exact_cosine(&[1.0], &q.unit), None);
    }

    /// Pseudo-random vectors (xorshift): dense, like real embeddings.
    fn dense(n: usize, dims: usize, seed: u64) -> Vec<Vec<f32>> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                (0..dims)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        (x % 2001) as f32 / 1000.0 - 1.0
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn the_shortlist_holds_the_exact_best() {
        let dims = 384;
        let corpus = dense(3000, dims, 7);
        let idx = VectorIndex::build(
            corpus
                .iter()
                .enumerate()
                .map(|(i, e)| v(i as i64, e))
                .collect(),
        );
        for (n, query) in dense(20, dims, 99).iter().enumerate() {
            let q = idx.query(query).expect("query");
            let mut exact: Vec<Ranked> = corpus
                .iter()
                .enumerate()
                .map(|(i, e)| Ranked {
                    score: exact_cosine(e, &q.unit).expect("cosine"),
                    id: i as i64,
                })
                .collect();
            exact.sort_by(|a, b| b.cmp(a));
            let short: Vec<i64> = idx
                .shortlist(&q, 20 * SHORTLIST_FACTOR)
                .iter()
                .map(|h| h.0)
                .collect();
            for r in &exact[..20] {
                assert!(
                    short.contains(&r.id),
                    "query {n}: exact hit {} not shortlisted",
                    r.id
                );
            }
        }
    }

    #[test]
    fn long_vectors_match_a_plain_dot_product() {
        let a: Vec<f32> = (0..1537).map(|i| (i as f32).sin()).collect();
        let b: Vec<f32> = (0..1537).map(|i| (i as f32 * 0.5).cos()).collect();
        let plain: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!((dot(&a, &b) - plain).abs() < 1e-3);
        let ca: Vec<i8> = (0..1537).map(|i| (i % 255) as u8 as i8).collect();
        let cb: Vec<i8> = (0..1537).map(|i| (i * 7 % 255) as u8 as i8).collect();
        let plain: i32 = ca
            .iter()
            .zip(&cb)
            .map(|(x, y)| i32::from(*x) * i32::from(*y))
            .sum();
        assert_eq!(dot_i8(&ca, &cb), plain);
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
