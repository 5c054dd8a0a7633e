//! Strings for fuzzing: every ASCII byte (controls, quotes and backslashes included) plus a set
//! of multi-byte characters, so escaping, trimming and UTF-8 boundaries all get exercised.

use std::fmt;

use bolero::generator::TypeGenerator;

/// Multi-byte characters a fuzz byte of 0x80 or more turns into: accents, a combining mark,
/// line and paragraph separators, a byte-order mark, zero-width space, the replacement
/// character, the ellipsis our secret masks use, CJK, emoji and the largest scalar value.
pub const NON_ASCII: &[char] = &[
    'é',
    'ß',
    '€',
    '…',
    '\u{0301}',
    '\u{2028}',
    '\u{2029}',
    '\u{FEFF}',
    '\u{200B}',
    '\u{FFFD}',
    '中',
    '😀',
    '\u{10FFFF}',
    'Ω',
    '\u{85}',
    '\u{A0}',
];

/// The string that `bytes` stand for: bytes below 0x80 are that ASCII character, the others
/// pick from [`NON_ASCII`]. Total, so every fuzz input maps to some string.
pub fn text_from_bytes(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| {
            if b < 0x80 {
                char::from(b)
            } else {
                NON_ASCII[usize::from(b - 0x80) % NON_ASCII.len()]
            }
        })
        .collect()
}

/// A generated string of up to 48 characters (see [`text_from_bytes`]). `Debug` prints the
/// string, so a failing input reads as what the parser saw.
#[derive(Clone, PartialEq, Eq, TypeGenerator)]
pub struct Text(#[generator(Vec::produce().with().len(0usize..48))] pub Vec<u8>);

impl Text {
    /// The string this input stands for.
    pub fn string(&self) -> String {
        text_from_bytes(&self.0)
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.string(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_stays_and_high_bytes_pick_multibyte_characters() {
        assert_eq!(text_from_bytes(b"a\"\\\n"), "a\"\\\n");
        assert_eq!(text_from_bytes(&[0x80, 0x83]), "é…");
        assert!(
            text_from_bytes(&(0x80..=0xFFu8).collect::<Vec<_>>())
                .chars()
                .all(|c| !c.is_ascii() || c == '\u{85}')
        );
    }
}
