//! Structured JSON: trees whose keys and strings come (mostly) from the schema under test, with
//! boundary numbers, so a generated value reaches the checks behind deserialisation.

use bolero::generator::TypeGenerator;
use serde_json::{Map, Number, Value};

use crate::text::Text;

/// Numbers at the edges of the ranges parsers and validators care about: zero and signs,
/// fractions, `u8`/`u16`/`u32`/`i64`/`u64` limits and one past them, common sample rates and
/// timeouts, and the extremes of `f64`.
pub const INTERESTING_NUMBERS: &[f64] = &[
    0.0,
    -0.0,
    1.0,
    -1.0,
    2.0,
    3.0,
    5.0,
    10.0,
    0.5,
    -0.5,
    0.0001,
    1.0001,
    2.0001,
    255.0,
    256.0,
    1000.0,
    1001.0,
    8000.0,
    16000.0,
    44100.0,
    65535.0,
    65536.0,
    4294967295.0,
    4294967296.0,
    1e308,
    -1e308,
    5e-324,
];

/// An object key: usually one of the caller's words (field names of the schema), sometimes
/// arbitrary text (an unknown field).
#[derive(Debug, Clone, TypeGenerator)]
pub struct Key {
    /// Below 224: `words[index % words.len()]`; from 224 on: [`Key::text`].
    pub index: u8,
    /// The key when it is not a word.
    pub text: Text,
}

/// A JSON value to generate. Arrays and objects hold at most four children; bolero bounds the
/// depth.
#[derive(Debug, Clone, TypeGenerator)]
pub enum Json {
    /// `null`
    Null,
    /// `true` / `false`
    Bool(bool),
    /// Any `i64`.
    Int(i64),
    /// Any `u64` (above `i64::MAX` too).
    UInt(u64),
    /// Any finite `f64` (NaN and infinities, which JSON cannot carry, become `null`).
    Float(f64),
    /// One of [`INTERESTING_NUMBERS`], or an integer limit (`u64::MAX`, `i64::MIN`).
    Interesting(u8),
    /// One of the caller's words as a string (enum values, provider names, URLs…).
    Word(u8),
    /// Arbitrary text.
    Str(Text),
    /// An array of up to four values.
    Array(#[generator(Vec::produce().with().len(0usize..4))] Vec<Json>),
    /// An object of up to four members.
    Object(#[generator(Vec::produce().with().len(0usize..4))] Vec<(Key, Json)>),
}

fn word<'w>(words: &[&'w str], index: u8) -> &'w str {
    if words.is_empty() {
        ""
    } else {
        words[usize::from(index) % words.len()]
    }
}

impl Key {
    /// The key as a string.
    pub fn to_key(&self, words: &[&str]) -> String {
        if self.index < 224 && !words.is_empty() {
            word(words, self.index).to_owned()
        } else {
            self.text.string()
        }
    }
}

impl Json {
    /// The `serde_json` value, with keys and [`Json::Word`]s taken from `keys` and `words`.
    pub fn to_value(&self, keys: &[&str], words: &[&str]) -> Value {
        match self {
            Json::Null => Value::Null,
            Json::Bool(b) => Value::Bool(*b),
            Json::Int(i) => Value::from(*i),
            Json::UInt(u) => Value::from(*u),
            Json::Float(f) => Number::from_f64(*f).map_or(Value::Null, Value::Number),
            Json::Interesting(i) => {
                let i = usize::from(*i);
                match i % (INTERESTING_NUMBERS.len() + 2) {
                    n if n < INTERESTING_NUMBERS.len() => {
                        Number::from_f64(INTERESTING_NUMBERS[n]).map_or(Value::Null, |n| {
                            // Whole numbers as JSON integers too, as clients send them.
                            match n.as_f64() {
                                Some(f) if i % 2 == 0 && f.fract() == 0.0 && f.abs() < 1e15 => {
                                    Value::from(f as i64)
                                }
                                _ => Value::Number(n),
                            }
                        })
                    }
                    n if n == INTERESTING_NUMBERS.len() => Value::from(u64::MAX),
                    _ => Value::from(i64::MIN),
                }
            }
            Json::Word(i) => Value::String(word(words, *i).to_owned()),
            Json::Str(t) => Value::String(t.string()),
            Json::Array(items) => {
                Value::Array(items.iter().map(|v| v.to_value(keys, words)).collect())
            }
            Json::Object(members) => Value::Object(
                members
                    .iter()
                    .map(|(k, v)| (k.to_key(keys), v.to_value(keys, words)))
                    .collect::<Map<String, Value>>(),
            ),
        }
    }
}
