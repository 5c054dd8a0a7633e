//! Protocol-faithful fakes of every outside service the engine talks to, served on 127.0.0.1,
//! and a fake Twilio caller that replays recorded calls. Used by tests, the load harness and
//! `switchboard demo`. Written from `shared/protocols.md`, independently of the adapters, so a
//! misunderstanding of a protocol is not shared by both sides.

pub mod anthropic;
pub mod deepgram;
pub mod elevenlabs;
pub mod latency;
pub mod openai;
pub mod stack;
pub mod twilio;
