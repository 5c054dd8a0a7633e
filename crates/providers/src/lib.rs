//! Streaming provider adapters: speech-to-text, LLM and text-to-speech.
//!
//! One trait per kind (`stt`, `llm`, `tts`), one file per provider. Every adapter takes its
//! base URL from configuration, so the same code talks to the vendor, a proxy or the fakes in
//! `switchboard-testkit`.

pub mod catalog;
pub mod check;
pub mod error;

pub mod llm;
pub mod registry;
pub mod stt;
pub mod tts;

pub mod anthropic;
pub mod openai;
pub mod slots;
pub mod sse;
pub mod transcode;
pub(crate) mod ws;

#[cfg(test)]
mod fuzz_tests;

pub use error::ProviderError;
