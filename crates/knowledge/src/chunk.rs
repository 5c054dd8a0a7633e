//! Splitting extracted text into chunks per `rag_settings`: `chunking_strategy`, `chunk_size`
//! and `chunk_overlap`, both in characters (Unicode scalar values), as the record documents.
//!
//! - `recursive` (the default): split on paragraphs, then lines, then sentences, then words,
//!   then characters, only as far as needed for pieces of at most `chunk_size`; then merge
//!   neighbouring pieces up to `chunk_size`, each chunk starting with up to `chunk_overlap`
//!   characters of whole pieces from the end of the previous one.
//! - `sentence`: the same merge over sentences (a sentence longer than `chunk_size` is cut).
//! - `fixed`: windows of exactly `chunk_size` characters, each starting `chunk_size -
//!   chunk_overlap` after the previous one.
//!
//! Chunks never cross a section (a PDF page, a heading), so each carries one page or section.

use std::collections::VecDeque;

use crate::extract::Section;

/// How text is cut into chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChunkingStrategy {
    /// Paragraphs → lines → sentences → words → characters, merged up to the size.
    Recursive,
    /// Whole sentences merged up to the size.
    Sentence,
    /// Fixed-size character windows.
    Fixed,
}

impl ChunkingStrategy {
    /// The names the record accepts.
    pub const NAMES: [&'static str; 3] = ["recursive", "sentence", "fixed"];

    /// The strategy named `name` (case-insensitive), `None` for an unknown name.
    pub fn parse(name: &str) -> Option<ChunkingStrategy> {
        match name.trim().to_ascii_lowercase().as_str() {
            "recursive" => Some(ChunkingStrategy::Recursive),
            "sentence" => Some(ChunkingStrategy::Sentence),
            "fixed" => Some(ChunkingStrategy::Fixed),
            _ => None,
        }
    }
}

/// What chunking is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkSpec {
    /// The strategy.
    pub strategy: ChunkingStrategy,
    /// Largest chunk, characters (at least 1).
    pub size_chars: usize,
    /// Characters a chunk repeats from the previous one (less than the size).
    pub overlap_chars: usize,
}

/// A chunk and where it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextChunk {
    /// Order in the document, from 0.
    pub position: usize,
    /// Page, from 1 (PDF).
    pub page: Option<u32>,
    /// Heading it sits under.
    pub section: Option<String>,
    /// The text, trimmed.
    pub text: String,
}

/// Separators of the recursive strategy, coarsest first (each piece keeps its separator).
const RECURSIVE_SEPARATORS: [&str; 5] = ["\n\n", "\n", ". ", "? ", " "];

/// Chunks of every section, in order, numbered across the document. Empty chunks are dropped.
pub fn chunk(sections: &[Section], spec: &ChunkSpec) -> Vec<TextChunk> {
    let size = spec.size_chars.max(1);
    let overlap = spec.overlap_chars.min(size - 1);
    let mut out = Vec::new();
    for s in sections {
        let texts = match spec.strategy {
            ChunkingStrategy::Fixed => fixed(&s.text, size, overlap),
            ChunkingStrategy::Sentence => {
                let pieces = sentences(&s.text)
                    .into_iter()
                    .flat_map(|p| fixed(p, size, 0))
                    .collect();
                merge(pieces, size, overlap)
            }
            ChunkingStrategy::Recursive => merge(
                recursive(&s.text, &RECURSIVE_SEPARATORS, size),
                size,
                overlap,
            ),
        };
        for text in texts {
            let text = text.trim();
            if text.is_empty() {
                continue;
            }
            out.push(TextChunk {
                position: out.len(),
                page: s.page,
                section: s.heading.clone(),
                text: text.to_owned(),
            });
        }
    }
    out
}

fn chars(s: &str) -> usize {
    s.chars().count()
}

/// Windows of `size` characters, each starting `size - overlap` after the previous.
fn fixed(text: &str, size: usize, overlap: usize) -> Vec<String> {
    let cs: Vec<char> = text.chars().collect();
    let step = (size - overlap.min(size - 1)).max(1);
    let mut out = Vec::new();
    let mut start = 0;
    while start < cs.len() {
        let end = (start + size).min(cs.len());
        out.push(cs[start..end].iter().collect());
        if end == cs.len() {
            break;
        }
        start += step;
    }
    out
}

/// Sentences, each with its end punctuation and following space; a line end also ends one.
fn sentences(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut prev_end = false;
    for (i, c) in text.char_indices() {
        if c == '\n' {
            out.push(&text[start..i + 1]);
            start = i + 1;
            prev_end = false;
            continue;
        }
        if prev_end && c.is_whitespace() {
            out.push(&text[start..i + c.len_utf8()]);
            start = i + c.len_utf8();
            prev_end = false;
            continue;
        }
        prev_end = matches!(c, '.' | '!' | '?' | '…');
    }
    if start < text.len() {
        out.push(&text[start..]);
    }
    out.retain(|s| !s.trim().is_empty());
    out
}

/// Pieces of at most `size` characters: `text` split on the first separator it contains,
/// pieces still too long split further with the next separators, characters last.
fn recursive(text: &str, separators: &[&str], size: usize) -> Vec<String> {
    if chars(text) <= size {
        return vec![text.to_owned()];
    }
    let Some((sep, finer)) = separators.split_first() else {
        return fixed(text, size, 0);
    };
    if !text.contains(sep) {
        return recursive(text, finer, size);
    }
    let mut out = Vec::new();
    for piece in text.split_inclusive(sep) {
        if chars(piece) <= size {
            out.push(piece.to_owned());
        } else {
            out.extend(recursive(piece, finer, size));
        }
    }
    out
}

/// Neighbouring pieces joined into chunks of at most `size` characters; a new chunk starts
/// with the last pieces of the previous one that fit in `overlap` characters (and leave room).
fn merge(pieces: Vec<String>, size: usize, overlap: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut window: VecDeque<(String, usize)> = VecDeque::new();
    let mut len = 0usize;
    for piece in pieces {
        let n = chars(&piece);
        if len + n > size && !window.is_empty() {
            out.push(window.iter().map(|(p, _)| p.as_str()).collect::<String>());
            while let Some((_, first)) = window.front() {
                if len > overlap || len + n > size {
                    len -= first;
                    window.pop_front();
                } else {
                    break;
                }
            }
        }
        len += n;
        window.push_back((piece, n));
    }
    if !window.is_empty() {
        out.push(window.iter().map(|(p, _)| p.as_str()).collect::<String>());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(text: &str) -> Section {
        Section {
            page: Some(2),
            heading: Some("H".into()),
            text: text.into(),
        }
    }

    fn spec(strategy: ChunkingStrategy, size: usize, overlap: usize) -> ChunkSpec {
        ChunkSpec {
            strategy,
            size_chars: size,
            overlap_chars: overlap,
        }
    }

    #[test]
    fn parses_names() {
        for n in ChunkingStrategy::NAMES {
            assert!(ChunkingStrategy::parse(n).is_some());
        }
        assert_eq!(
            ChunkingStrategy::parse(" Sentence "),
            Some(ChunkingStrategy::Sentence)
        );
        assert_eq!(ChunkingStrategy::parse("semantic"), None);
    }

    #[test]
    fn fixed_windows_overlap_exactly() {
        let c = chunk(
            &[section("abcdefghij")],
            &spec(ChunkingStrategy::Fixed, 4, 1),
        );
        let texts: Vec<&str> = c.iter().map(|c| c.text.as_str()).collect();
        assert_eq!(texts, ["abcd", "defg", "ghij"]);
        assert_eq!(c[2].position, 2);
        assert_eq!(c[0].page, Some(2));
        assert_eq!(c[0].section.as_deref(), Some("H"));
        // Multi-byte characters count as one.
        let c = chunk(&[section("ééééé")], &spec(ChunkingStrategy::Fixed, 2, 0));
        assert_eq!(c.len(), 3);
    }

    #[test]
    fn sentence_chunks_keep_sentences_whole_with_overlap() {
        let text = "One two. Three four five. Six. Seven eight nine ten.";
        let c = chunk(&[section(text)], &spec(ChunkingStrategy::Sentence, 30, 10));
        let texts: Vec<&str> = c.iter().map(|c| c.text.as_str()).collect();
        assert_eq!(
            texts,
            ["One two. Three four five.", "Six. Seven eight nine ten."]
        );
        for t in &texts {
            assert!(chars(t) <= 30);
        }
        // Overlap: a short sentence is carried over.
        let c = chunk(
            &[section("Aa. Bb. Cc. Dd.")],
            &spec(ChunkingStrategy::Sentence, 8, 4),
        );
        let texts: Vec<&str> = c.iter().map(|c| c.text.as_str()).collect();
        assert_eq!(texts, ["Aa. Bb.", "Bb. Cc.", "Cc. Dd."]);
    }

    #[test]
    fn recursive_prefers_paragraphs_and_respects_size() {
        let text = "First paragraph is here.\n\nSecond paragraph, a bit longer than the first one.\n\nThird.";
        let c = chunk(&[section(text)], &spec(ChunkingStrategy::Recursive, 40, 0));
        let texts: Vec<&str> = c.iter().map(|c| c.text.as_str()).collect();
        assert!(texts[0].starts_with("First paragraph is here."));
        for t in &texts {
            assert!(chars(t) <= 40, "{t}");
        }
        // Every word survives, in order.
        let joined = texts.join(" ");
        assert!(joined.contains("Second paragraph"));
        assert!(joined.ends_with("Third."));
    }

    #[test]
    fn recursive_overlap_repeats_the_tail() {
        let words: Vec<String> = (0..50).map(|i| format!("w{i}")).collect();
        let text = words.join(" ");
        let c = chunk(
            &[section(&text)],
            &spec(ChunkingStrategy::Recursive, 30, 10),
        );
        assert!(c.len() > 2);
        for pair in c.windows(2) {
            let last_word = pair[0].text.split(' ').next_back().unwrap();
            assert!(pair[1].text.contains(last_word), "{pair:?}");
            assert!(chars(&pair[1].text) <= 30);
        }
    }

    #[test]
    fn sections_are_not_crossed_and_positions_run_on() {
        let sections = [
            section("alpha beta"),
            Section {
                page: Some(3),
                heading: None,
                text: "gamma".into(),
            },
        ];
        let c = chunk(&sections, &spec(ChunkingStrategy::Recursive, 100, 10));
        assert_eq!(c.len(), 2);
        assert_eq!((c[1].position, c[1].page), (1, Some(3)));
    }
}
