//! Fake Twilio, written from Twilio's documentation independently of the engine's adapter (only
//! `signature::sign` is shared, and it is checked against Twilio's published vectors):
//!
//! - [`FakeTwilioRest`]: the REST API the engine calls (create/update calls, SMS, fetch the
//!   account, list its numbers), holding accounts and the numbers each owns, with Basic auth and
//!   form bodies checked and every request recorded; it can "dial" the engine for each created
//!   call ([`FakeTwilioRest::dial_engine`]).
//!   Conferences and participants (warm transfer): [`LegOutcome`] scripts each dialled leg.
//!   Agents dialled with inline TwiML (a warm transfer's briefing and `<Gather>`):
//!   [`FakeTwilioRest::script_agent`] scripts what each does ([`AgentScript`]).
//! - [`FakeCall`]: one phone call as Twilio runs it: signed voice webhook, TwiML, signed media
//!   stream, caller audio in real time, bot audio on a real-time playback clock with mark echoes
//!   and `clear`, `stop`, status callbacks; returns a [`CallReport`]. The load harness runs
//!   hundreds of these concurrently.
//! - [`CallScript`]: caller audio and utterance timeline, from `fixtures/calls/` or synthetic.
//!
//! ```no_run
//! # async fn demo() {
//! use std::sync::Arc;
//! use switchboard_testkit::twilio::{CallScript, FakeCall, FakeCallConfig};
//! let http = reqwest::Client::new();
//! let script = Arc::new(CallScript::load("fixtures/calls".as_ref(), "weather").unwrap());
//! let mut cfg = FakeCallConfig::new("https://calls.example.com/twilio/voice", "auth-token", http);
//! cfg.connect_to = Some("127.0.0.1:8080".into()); // where the engine really listens
//! let report = FakeCall::new(cfg, script).run().await;
//! println!("{}", serde_json::to_string(&report).unwrap());
//! # }
//! ```

mod agent;
mod call;
mod conference;
#[cfg(test)]
mod conference_tests;
mod rest;
mod script;
#[cfg(test)]
mod tests;
mod twiml;

pub use agent::{AgentAnswer, AgentLeg, AgentScript};
pub use call::{
    CallControl, CallError, CallOutcome, CallReport, ChunkRecord, EndedBy, FRAME_BYTES, FRAME_MS,
    FakeCall, FakeCallConfig, MarkRecord, PlaybackSegment, PlayedAudio, RemoteEnd,
    UNDERRUN_EPSILON_MS, Underrun, local_url, new_sid, rfc2822_now,
};
pub use conference::{
    ConferenceRequest, FakeConference, FakeParticipant, LegOutcome, PostedCallback,
};
pub use rest::{
    CallUpdateRecord, CreatedCall, DialHook, DialRequest, FakeTwilioRest, InjectedError,
    NumberLookup, SentMessage,
};
pub use script::{
    CallScript, DtmfPress, ScriptError, ULAW_BYTES_PER_MS, ULAW_SILENCE, Utterance, UtteranceKind,
    linear_to_ulaw,
};
pub use twiml::{
    Element, Node, ParsedTwiml, TwimlDial, TwimlParseError, TwimlStream, parse_twiml, parse_xml,
};
