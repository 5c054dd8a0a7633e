//! Language tags and word forms as the STT vendors and the core want them: the record writes BCP 47 (`en-US`), Soniox and
//! ElevenLabs take ISO 639 codes (`en`), ElevenLabs may report ISO 639-3 (`eng`).

/// The primary language subtag of a BCP 47 tag (`en-US` → `en`), lower case; `None` for an
/// empty tag or Deepgram's `multi` (no single language to name).
pub(crate) fn primary_language(tag: &str) -> Option<String> {
    let primary = tag.trim().split(['-', '_']).next()?.to_ascii_lowercase();
    (!primary.is_empty() && primary != "multi").then_some(primary)
}

/// Whether a detected language code (ISO 639-1 `en`, ISO 639-3 `eng`, or a BCP 47 tag) is
/// English.
pub(crate) fn is_english(code: &str) -> bool {
    matches!(primary_language(code).as_deref(), Some("en" | "eng"))
}

/// Lower case, no punctuation: the form `Word::word` promises.
pub(crate) fn bare_word(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_alphanumeric() || *c == '\'' || *c == '-')
        .flat_map(char::to_lowercase)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_reduce_to_their_primary_language() {
        assert_eq!(primary_language("en-US").as_deref(), Some("en"));
        assert_eq!(primary_language("PT_br").as_deref(), Some("pt"));
        assert_eq!(primary_language("multi"), None);
        assert_eq!(primary_language(" "), None);
        assert!(is_english("en") && is_english("eng") && is_english("en-GB"));
        assert_eq!(bare_word("World."), "world");
        assert_eq!(bare_word("don't"), "don't");
        assert!(!is_english("es") && !is_english("") && !is_english("english-ish-no"));
    }
}
