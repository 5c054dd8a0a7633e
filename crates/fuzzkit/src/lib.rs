//! Input generators and mutators shared by the `fuzz_*` targets of the workspace.
//!
//! Every parser that reads untrusted input has [bolero](https://docs.rs/bolero) targets next to
//! its crate's tests. They run as ordinary `#[test]`s with a bounded iteration count (so
//! `cargo test` and CI run them) and, through `scripts/fuzz.sh`, for millions of inputs.
//!
//! Uniformly random bytes rarely get past a JSON or form parser's first byte, so this crate
//! shapes fuzz input into what reaches deeper: [`Text`] rich in the characters that need escaping,
//! [`Edit`]s that damage a valid seed message one byte or token at a time, and [`Json`] trees
//! whose keys and strings come from a dictionary of the schema under test.
//!
//! It is a dev-dependency only: nothing in it ships in the engine.

mod edit;
mod json;
mod text;

pub use edit::{Edit, apply_edits};
pub use json::{INTERESTING_NUMBERS, Json, Key};
pub use text::{NON_ASCII, Text, text_from_bytes};
