//! The turn-taking lexicon (backchannels, bot cues, unfinished-sentence words) per language.
//!
//! The words are data in `lexicon.txt` (embedded at build time), not code: adding a language or a
//! phrase is a one-line change there. Parsing happens once per process.

use std::collections::HashMap;
use std::sync::OnceLock;

const LEXICON_TXT: &str = include_str!("lexicon.txt");

/// The phrases of one language.
#[derive(Debug, Clone, Default)]
pub struct Lexicon {
    /// Backchannel phrases as normalised word sequences, longest first.
    backchannels: Vec<Vec<String>>,
    /// Backchannel phrases that also answer a yes/no question, normalised.
    answers: Vec<Vec<String>>,
    /// Listening cues the bot may speak, as written.
    cues: Vec<String>,
    /// Words that leave a sentence unfinished when last.
    trailing: Vec<String>,
    /// Words that leave a short utterance unfinished when last.
    short_open: Vec<String>,
}

/// Splits text into normalised words: lower case, separated by anything that is not a letter,
/// digit or apostrophe (so "Uh-huh!" is `["uh", "huh"]`). Typographic apostrophes become `'`.
pub fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !(c.is_alphanumeric() || c == '\'' || c == '’'))
        .filter(|w| !w.is_empty() && w.chars().any(char::is_alphanumeric))
        .map(|w| w.to_lowercase().replace('’', "'"))
}

/// Number of words in `text` (as [`words`] splits them).
pub fn word_count(text: &str) -> usize {
    words(text).count()
}

fn all_languages() -> &'static HashMap<String, Lexicon> {
    static ALL: OnceLock<HashMap<String, Lexicon>> = OnceLock::new();
    ALL.get_or_init(|| parse(LEXICON_TXT))
}

fn parse(src: &str) -> HashMap<String, Lexicon> {
    let mut out: HashMap<String, Lexicon> = HashMap::new();
    for line in src.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut parts = line.splitn(3, char::is_whitespace);
        let (Some(lang), Some(kind), Some(phrase)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let phrase = phrase.trim();
        let entry = out.entry(lang.to_ascii_lowercase()).or_default();
        match kind {
            "backchannel" => {
                let w: Vec<String> = words(phrase).collect();
                if !w.is_empty() {
                    entry.backchannels.push(w);
                }
            }
            "answer" => {
                let w: Vec<String> = words(phrase).collect();
                if !w.is_empty() {
                    entry.answers.push(w);
                }
            }
            "cue" => entry.cues.push(phrase.to_owned()),
            "trailing" => entry.trailing.extend(words(phrase)),
            "short_open" => entry.short_open.extend(words(phrase)),
            _ => {}
        }
    }
    for lex in out.values_mut() {
        lex.backchannels.sort_by_key(|p| std::cmp::Reverse(p.len()));
    }
    out
}

impl Lexicon {
    /// The lexicon for a BCP-47 language tag (`en-US` → `en`); English when the language has no
    /// entries.
    pub fn for_language(language: &str) -> &'static Lexicon {
        let primary = language
            .split(['-', '_'])
            .next()
            .unwrap_or("en")
            .to_ascii_lowercase();
        let all = all_languages();
        all.get(&primary)
            .or_else(|| all.get("en"))
            .unwrap_or_else(|| empty())
    }

    /// Whether `text` consists only of backchannel phrases (at least one word). "Yeah, okay",
    /// "uh-huh right" are; "yeah but wait" is not.
    pub fn is_backchannel(&self, text: &str) -> bool {
        let w: Vec<String> = words(text).collect();
        if w.is_empty() {
            return false;
        }
        let mut i = 0;
        'outer: while i < w.len() {
            for phrase in &self.backchannels {
                let end = i + phrase.len();
                if end <= w.len() && w[i..end] == phrase[..] {
                    i = end;
                    continue 'outer;
                }
            }
            return false;
        }
        true
    }

    /// Whether `text` holds a phrase that answers a yes/no question ("yeah", "okay, sure"):
    /// such a backchannel over the end of a question is a turn; "mm-hmm" or "I see" is not.
    pub fn has_answer(&self, text: &str) -> bool {
        let w: Vec<String> = words(text).collect();
        self.answers
            .iter()
            .any(|p| w.windows(p.len()).any(|win| win == &p[..]))
    }

    /// The `n`-th listening cue of this language (cycling), e.g. "mm-hmm".
    pub fn cue(&self, n: usize) -> Option<&str> {
        if self.cues.is_empty() {
            return None;
        }
        self.cues.get(n % self.cues.len()).map(String::as_str)
    }

    /// Whether `word` (normalised) leaves a sentence unfinished when it is the last word.
    pub fn is_trailing(&self, word: &str) -> bool {
        self.trailing.iter().any(|t| t == word)
    }

    /// Whether `word` (normalised) leaves a short utterance unfinished when it is the last word.
    pub fn is_short_open(&self, word: &str) -> bool {
        self.short_open.iter().any(|t| t == word)
    }
}

fn empty() -> &'static Lexicon {
    static EMPTY: OnceLock<Lexicon> = OnceLock::new();
    EMPTY.get_or_init(Lexicon::default)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_normalised() {
        let w: Vec<String> = words("Uh-huh! I’m OK, 42.").collect();
        assert_eq!(w, ["uh", "huh", "i'm", "ok", "42"]);
        assert_eq!(word_count("  ...  "), 0);
    }

    #[test]
    fn english_backchannels() {
        let en = Lexicon::for_language("en-US");
        for t in [
            "uh-huh",
            "Mm-hmm.",
            "yeah",
            "Yeah, okay.",
            "got it",
            "I see",
            "right right",
            "mhm",
        ] {
            assert!(en.is_backchannel(t), "{t}");
        }
        for t in ["yeah but wait", "stop", "", "I see a problem", "no"] {
            assert!(!en.is_backchannel(t), "{t}");
        }
    }

    #[test]
    fn other_languages_and_fallback() {
        assert!(Lexicon::for_language("es-ES").is_backchannel("vale, claro"));
        assert!(Lexicon::for_language("fr").is_backchannel("d'accord"));
        assert!(Lexicon::for_language("de-DE").is_backchannel("ja genau"));
        assert!(!Lexicon::for_language("de").is_backchannel("yeah"));
        assert!(Lexicon::for_language("xx-YY").is_backchannel("yeah"));
        assert!(Lexicon::for_language("en").cue(0).is_some());
        assert!(Lexicon::for_language("en").is_trailing("and"));
    }

    #[test]
    fn answers_are_backchannels_that_say_yes() {
        let en = Lexicon::for_language("en-US");
        for t in ["yeah", "Okay, sure.", "uh-huh yes", "all right"] {
            assert!(en.has_answer(t) && en.is_backchannel(t), "{t}");
        }
        for t in ["uh-huh", "Mm-hmm.", "I see", "right", ""] {
            assert!(!en.has_answer(t), "{t}");
        }
        assert!(Lexicon::for_language("es").has_answer("vale"));
        assert!(!Lexicon::for_language("es").has_answer("ajá"));
        assert!(Lexicon::for_language("fr").has_answer("d'accord"));
        assert!(!Lexicon::for_language("fr").has_answer("je vois"));
        assert!(Lexicon::for_language("de").has_answer("alles klar"));
        assert!(!Lexicon::for_language("de").has_answer("mhm"));
    }
}
