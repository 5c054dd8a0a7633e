//! Byte-level damage to a valid seed message: the inputs a parser meets when a peer is buggy or
//! hostile are mostly *almost* valid, and these edits produce exactly that.

use bolero::generator::TypeGenerator;

/// JSON fragments an [`Edit::Token`] can insert (besides the caller's own dictionary): structure,
/// literals, boundary numbers, escapes and invalid UTF-16 surrogates.
const JSON_TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    ":",
    ",",
    "\"",
    "\\",
    "null",
    "true",
    "false",
    "0",
    "-1",
    "-0",
    "1.5",
    "1e999",
    "-1e999",
    "18446744073709551615",
    "18446744073709551616",
    "4294967296",
    "65536",
    "\"\\u0000\"",
    "\"\\ud800\"",
    "\"\\udc00\\ud800\"",
    "\\u00e9",
    "\\n",
    "\"\"",
    "{}",
    "[]",
    " ",
    "\r\n",
];

/// One change to a byte string. Positions wrap around the current length, so every edit
/// applies to every input.
#[derive(Debug, Clone, TypeGenerator)]
pub enum Edit {
    /// Overwrite one byte.
    Set {
        /// Position (modulo the length).
        at: u16,
        /// New byte.
        byte: u8,
    },
    /// Insert one byte.
    Insert {
        /// Position (modulo the length + 1).
        at: u16,
        /// Inserted byte.
        byte: u8,
    },
    /// Remove up to `len` bytes.
    Remove {
        /// First removed position (modulo the length).
        at: u16,
        /// How many bytes, 1 to 16.
        #[generator(1..=16)]
        len: u8,
    },
    /// Insert a token: the caller's dictionary first, then JSON fragments.
    Token {
        /// Position (modulo the length + 1).
        at: u16,
        /// Index into dictionary ++ JSON fragments (modulo their count).
        index: u8,
    },
    /// Repeat a range right after itself (deeper nesting, duplicate fields).
    Repeat {
        /// Start of the range (modulo the length).
        at: u16,
        /// Length of the range, 1 to 64.
        #[generator(1..=64)]
        len: u8,
    },
    /// Cut the input at a position.
    Truncate {
        /// New length (modulo the length + 1).
        at: u16,
    },
}

/// `seed` with `edits` applied in order; `dictionary` holds tokens of the format under test
/// (field names, enum values) that [`Edit::Token`] inserts before the generic JSON fragments.
pub fn apply_edits(seed: &[u8], edits: &[Edit], dictionary: &[&str]) -> Vec<u8> {
    let mut out = seed.to_vec();
    for edit in edits {
        let len = out.len();
        let pos = |at: u16, span: usize| usize::from(at) % span.max(1);
        match *edit {
            Edit::Set { at, byte } => {
                if len > 0 {
                    let i = pos(at, len);
                    out[i] = byte;
                }
            }
            Edit::Insert { at, byte } => out.insert(pos(at, len + 1), byte),
            Edit::Remove { at, len: n } => {
                if len > 0 {
                    let start = pos(at, len);
                    let end = (start + usize::from(n)).min(len);
                    out.drain(start..end);
                }
            }
            Edit::Token { at, index } => {
                let count = dictionary.len() + JSON_TOKENS.len();
                let i = usize::from(index) % count;
                let token = dictionary
                    .get(i)
                    .copied()
                    .unwrap_or_else(|| JSON_TOKENS[i - dictionary.len()]);
                let at = pos(at, len + 1);
                out.splice(at..at, token.bytes());
            }
            Edit::Repeat { at, len: n } => {
                if len > 0 {
                    let start = pos(at, len);
                    let end = (start + usize::from(n)).min(len);
                    let copy = out[start..end].to_vec();
                    out.splice(end..end, copy);
                }
            }
            Edit::Truncate { at } => out.truncate(pos(at, len + 1)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_wrap_positions_and_use_the_dictionary_first() {
        let out = apply_edits(
            b"abc",
            &[
                Edit::Set { at: 4, byte: b'X' },
                Edit::Token { at: 0, index: 0 },
                Edit::Repeat { at: 0, len: 2 },
                Edit::Remove { at: 5, len: 16 },
            ],
            &["<>"],
        );
        assert_eq!(out, b"<><>a");
        assert_eq!(
            apply_edits(b"", &[Edit::Remove { at: 3, len: 1 }], &[]),
            b""
        );
        assert_eq!(apply_edits(b"abc", &[Edit::Truncate { at: 1 }], &[]), b"a");
        assert_eq!(
            apply_edits(b"", &[Edit::Token { at: 9, index: 1 }], &["x"]),
            b"{"
        );
    }
}
