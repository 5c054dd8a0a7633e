//! Exact percentiles over collected samples (sort, nearest rank). The harness keeps every sample
//! (a few hundred thousand f64 at 1000 calls), so no approximation is needed.

use serde::{Deserialize, Serialize};

/// The `p`-th percentile (0–100) of `sorted` by the nearest-rank method: the smallest value such
/// that at least `p`% of the samples are ≤ it. `None` for no samples. `sorted` must be ascending.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() || !p.is_finite() {
        return None;
    }
    let n = sorted.len();
    let rank = ((p.clamp(0.0, 100.0) / 100.0) * n as f64).ceil() as usize;
    sorted.get(rank.clamp(1, n) - 1).copied()
}

/// Sorts `values` ascending (NaN dropped) so [`percentile`] can read it.
pub fn sort_samples(values: &mut Vec<f64>) {
    values.retain(|v| v.is_finite());
    values.sort_by(f64::total_cmp);
}

/// Rounds to µs precision (3 decimals of a ms) so reports stay readable.
fn round_ms(v: Option<f64>) -> Option<f64> {
    v.map(|x| (x * 1000.0).round() / 1000.0)
}

/// p50/p95/p99/max of a latency, ms; `null` fields when nothing was measured.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Pct4 {
    /// Median, ms.
    pub p50: Option<f64>,
    /// 95th percentile, ms.
    pub p95: Option<f64>,
    /// 99th percentile, ms.
    pub p99: Option<f64>,
    /// Largest sample, ms.
    pub max: Option<f64>,
}

/// p50/p99/max of a latency, ms; `null` fields when nothing was measured.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Pct3 {
    /// Median, ms.
    pub p50: Option<f64>,
    /// 99th percentile, ms.
    pub p99: Option<f64>,
    /// Largest sample, ms.
    pub max: Option<f64>,
}

impl Pct4 {
    /// Percentiles of `values` (sorted in place).
    pub fn of(values: &mut Vec<f64>) -> Pct4 {
        sort_samples(values);
        Pct4 {
            p50: round_ms(percentile(values, 50.0)),
            p95: round_ms(percentile(values, 95.0)),
            p99: round_ms(percentile(values, 99.0)),
            max: round_ms(values.last().copied()),
        }
    }
}

impl Pct3 {
    /// Percentiles of `values` (sorted in place).
    pub fn of(values: &mut Vec<f64>) -> Pct3 {
        sort_samples(values);
        Pct3 {
            p50: round_ms(percentile(values, 50.0)),
            p99: round_ms(percentile(values, 99.0)),
            max: round_ms(values.last().copied()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_on_one_to_hundred() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(50.0));
        assert_eq!(percentile(&v, 95.0), Some(95.0));
        assert_eq!(percentile(&v, 99.0), Some(99.0));
        assert_eq!(percentile(&v, 100.0), Some(100.0));
        assert_eq!(percentile(&v, 0.0), Some(1.0));
    }

    #[test]
    fn small_and_empty_sets() {
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[7.0], 99.0), Some(7.0));
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(percentile(&v, 50.0), Some(2.0));
        assert_eq!(percentile(&v, 51.0), Some(3.0));
        assert_eq!(percentile(&v, 99.0), Some(4.0));
        assert_eq!(percentile(&v, f64::NAN), None);
    }

    #[test]
    fn summaries_sort_and_are_ordered() {
        let mut v = vec![9.0, 1.0, f64::NAN, 5.0, 3.0, 7.0, 2.0];
        let p = Pct4::of(&mut v);
        assert_eq!(v, vec![1.0, 2.0, 3.0, 5.0, 7.0, 9.0]);
        assert_eq!(p.p50, Some(3.0));
        assert_eq!(p.max, Some(9.0));
        assert!(p.p50 <= p.p95 && p.p95 <= p.p99 && p.p99 <= p.max);
        let mut empty = Vec::new();
        assert_eq!(Pct3::of(&mut empty), Pct3::default());
    }

    #[test]
    fn rounding_keeps_microseconds() {
        let mut v = vec![1.234_567];
        assert_eq!(Pct3::of(&mut v).p50, Some(1.235));
    }
}
