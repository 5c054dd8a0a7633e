//! Protocol-faithful fakes of every outside service the engine talks to, served on 127.0.0.1,
//! and a fake Twilio caller that replays recorded calls. Used by tests, the load harness and
//! `switchboard demo`. Written from `docs/providers/`, independently of the adapters, so a
//! misunderstanding of a protocol is not shared by both sides.

/// Read buffer (bytes) of every fake's websocket: tungstenite zero-fills the whole buffer
/// before each read, and the default 128 KiB made that memset dominate at hundreds of calls.
pub const SMALL_WS_READ_BUFFER: usize = 8 * 1024;

pub mod anthropic;
pub mod cartesia;
pub mod deepgram;
pub mod elevenlabs;
pub mod elevenlabs_stt;
pub mod fault;
pub mod latency;
pub mod openai;
pub mod openai_embeddings;
pub mod openai_speech;
pub mod otlp;
pub mod plain_http;
pub mod soniox;
pub mod speechmatics;
pub mod stack;
pub mod stt_common;
pub mod synth;
pub mod tcp_proxy;
mod tcp_server;
pub mod telnyx_stt;
pub mod tls;
pub mod tool_server;
pub mod twilio;
