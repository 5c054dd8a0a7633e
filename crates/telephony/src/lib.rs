//! Everything Switchboard needs to speak Twilio, with no server in it.
//!
//! - [`media`]: the Media Streams websocket messages in both directions. Parsing an inbound
//!   `media` frame borrows from the JSON text and decodes base64 into a caller-owned buffer, so the
//!   per-frame hot path allocates nothing in steady state.
//! - [`twiml`]: safe TwiML construction (everything XML-escaped, stream URLs checked).
//! - [`signature`]: `X-Twilio-Signature` computation and validation, exactly as Twilio's SDKs do it.
//! - [`stream_token`]: a short-lived HMAC token that binds a media stream to the call, assistant and
//!   organisation our voice webhook accepted, so nobody can open a stream for someone else's call.
//! - [`rest`]: a small Twilio REST client (create/update/hang up calls, send SMS);
//!   [`conference`] adds conferences and participants (warm transfer).
//! - [`webhook`]: typed forms of the voice webhook and the status callbacks.
//!
//! Wire details follow `docs/providers/twilio.md`.

pub mod conference;
pub mod media;
pub mod rest;
pub mod signature;
pub mod stream_token;
pub mod twiml;
pub mod webhook;
