//! Word-level similarity of two transcripts, for speculative replies.
//!
//! Similarity = 1 − (word-level Levenshtein distance) / (number of words of the longer text),
//! over normalised words ([`super::lexicon::words`]: lower case, punctuation dropped). 1.0 means
//! the same words in the same order; two empty texts are identical (1.0); one empty is 0.0.
//! "I want to book a table" vs "I want to book a table tonight" = 1 − 1/7 ≈ 0.857.

use super::lexicon::words;

/// Similarity of `a` and `b` in 0.0..=1.0 (see the module doc).
pub fn similarity(a: &str, b: &str) -> f32 {
    let a: Vec<String> = words(a).collect();
    let b: Vec<String> = words(b).collect();
    let longest = a.len().max(b.len());
    if longest == 0 {
        return 1.0;
    }
    let d = levenshtein(&a, &b);
    1.0 - d as f32 / longest as f32
}

fn levenshtein(a: &[String], b: &[String]) -> usize {
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, wa) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, wb) in b.iter().enumerate() {
            let cost = usize::from(wa != wb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_and_empty() {
        assert_eq!(similarity("Hello, there!", "hello there"), 1.0);
        assert_eq!(similarity("", ""), 1.0);
        assert_eq!(similarity("", "a"), 0.0);
    }

    #[test]
    fn one_extra_word() {
        let s = similarity("I want to book a table", "I want to book a table tonight");
        assert!((s - (1.0 - 1.0 / 7.0)).abs() < 1e-6);
    }

    #[test]
    fn different() {
        assert!(similarity("book a table", "cancel my order please") < 0.3);
    }
}
