//! Rule-based incomplete-utterance classifier (`stt_settings.incomplete_utterance_detection`).
//!
//! An utterance is judged unfinished when:
//! - it ends with an ellipsis ("…" or "..."), or a dash;
//! - its last word is a `trailing` word of the language (conjunction, preposition, article,
//!   filler: "and", "to", "the", "um", "because" …), e.g. "I want to", "my number is five and";
//! - it is short (fewer than [`SHORT_UTTERANCE_WORDS`] words) and its last word is a `short_open`
//!   word ("I want", "my name is").
//!
//! A final question mark or exclamation mark always counts as finished. The word lists are data
//! (`turn/lexicon.txt`). The record also describes an LLM classifier; the runtime can add one and
//! feed its verdict in as a provider end-of-turn signal, the rule-based one is always on when the
//! setting is.

use super::lexicon::{Lexicon, words};

/// Utterances with fewer words than this are "short" for the `short_open` rule.
pub const SHORT_UTTERANCE_WORDS: usize = 5;

/// Whether `text` sounds unfinished in the language of `lexicon`.
pub fn is_incomplete(text: &str, lexicon: &Lexicon) -> bool {
    let trimmed = text.trim_end();
    if trimmed.is_empty() {
        return false;
    }
    if trimmed.ends_with('…')
        || trimmed.ends_with("...")
        || trimmed.ends_with('-')
        || trimmed.ends_with('—')
    {
        return true;
    }
    if trimmed.ends_with('?') || trimmed.ends_with('!') {
        return false;
    }
    let all: Vec<String> = words(trimmed).collect();
    let Some(last) = all.last() else {
        return false;
    };
    lexicon.is_trailing(last) || (all.len() < SHORT_UTTERANCE_WORDS && lexicon.is_short_open(last))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_english() {
        let en = Lexicon::for_language("en-US");
        for t in [
            "I want to",
            "I want to…",
            "so...",
            "my number is five and",
            "Um",
            "I want",
            "because",
        ] {
            assert!(is_incomplete(t, en), "{t}");
        }
        for t in [
            "I want to book a table.",
            "yes",
            "What time is it?",
            "",
            "the end is near now",
            "I want a pizza",
        ] {
            assert!(!is_incomplete(t, en), "{t}");
        }
    }

    #[test]
    fn short_open_only_for_short_utterances() {
        let en = Lexicon::for_language("en");
        assert!(is_incomplete("my name is", en));
        assert!(!is_incomplete(
            "the thing I told you about yesterday is",
            en
        ));
    }

    #[test]
    fn other_languages() {
        assert!(is_incomplete("quiero ir a la", Lexicon::for_language("es")));
        assert!(is_incomplete("ich möchte", Lexicon::for_language("de")));
    }
}
